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
//! codes); [`conn`] is one connection's phase machine and write queue; [`reactor`] owns
//! the sockets, the slab, the timers and the cross-thread [`reactor::Handle`].
//! [`configurapi`] is the framework itself (config.yaml, events, the Service pipeline)
//! and [`handlers`] its built-in handler packs.
#![deny(missing_docs)]

pub mod cli;
pub mod cluster;
pub mod config;
pub use configurapi;
pub mod conn;
pub(crate) mod envelope;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
pub use configurapi::handlers;
pub(crate) mod http;
pub mod jshost;
mod launch;
pub mod logging;
pub mod mgmt;
pub mod postback;
pub mod reactor;
pub mod runner;
pub mod tls;
pub(crate) mod work;
pub mod ws;

pub use config::{Mode, Reloaded, Reloader, ServerConfig, TlsSettings};
pub use conn::ConnId;
pub use reactor::{Handle, Outgoing, Server};
