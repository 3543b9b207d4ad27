//! # configurapi-runner-ws
//!
//! A WebSocket runner for the Configurapi API framework: one mio reactor thread does the
//! HTTP upgrade and the RFC 6455 framing itself, keeps connections in a slab with
//! per-connection write queues (exact byte counts for backpressure), and serves every
//! socket from the same loop.
//!
//! ```text
//!            ┌──────────────────────── reactor thread ─────────────────────────┐
//!  clients ──┤ listener ─accept─> Slab<Conn>  (slot = mio token, + generation) │
//!            │                     │  Handshake ─> Open ─> Closing/Finishing   │
//!            │   shared read buf ──┤  ws::Decoder (sans-IO)                    │
//!            │                     └─ WriteQueue (exact queued bytes) ─writev─>│
//!            │   timer heap (lazy)    command channel + Waker <── Handle ──────┼── other threads
//!            └─────────────────────────────────────────────────────────────────┘
//! ```
//!
//! Layers: [`ws`] is the sans-IO protocol (handshake, frames, masking, UTF-8, close
//! codes, the close/ping session); [`conn`] is one connection's phases, transport and
//! write queue, reporting what happened to a sink; [`reactor`] owns the sockets, the
//! slab, the timers and the cross-thread [`reactor::Handle`], and passes connection
//! events to an [`app::App`]. [`config`] and [`stats`] are plain data below both;
//! [`link::Link`] is the cross-thread half of a connection. [`runner`] is the
//! Configurapi application; [`harness`] drives it without a server.
//! [`configurapi`] is the framework itself (config.yaml, events, the Service pipeline)
//! and [`handlers`] its built-in handler packs.
#![deny(missing_docs)]

pub mod app;
pub mod cli;
pub mod cluster;
pub mod config;
pub mod healthcheck;
pub use configurapi;
pub mod conn;
// #17 hotsplit: in crates/runner-json (built at opt-level 2).
pub(crate) use runner_json::envelope;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
pub use configurapi::handlers;
pub mod harness;
pub(crate) mod http;
pub(crate) use runner_cold::jshost;
mod launch;
pub mod link;
pub mod logging;
pub mod mgmt;
pub mod postback;
pub mod reactor;
pub mod runner;
pub use runner_cold::sdnotify;
pub mod stats;
pub use runner_cold::tls;
pub(crate) mod work;
pub mod ws;

pub use config::{Mode, Reloaded, Reloader, ServerConfig, TlsSettings};
pub use link::ConnId;
pub use reactor::{Handle, Outgoing, Server};
