//! configurapi-runner-ws: a WebSocket runner for Configurapi.

pub mod configurapi;
pub mod handlers;
