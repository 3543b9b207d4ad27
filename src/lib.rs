//! configurapi-runner-ws: a WebSocket runner for Configurapi.

pub mod ws;
