//! Server settings shared by the CLI, the library API and the tests: plain data below
//! `conn/` and `reactor/`, which read it; it imports neither.

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::app::App;
use crate::ws::{HandshakeLimits, Limits};

/// What the server does with messages.
#[derive(Clone)]
pub enum Mode {
    /// Echo every text/binary message with its opcode, on the reactor thread
    /// (conformance and framing benchmarks).
    Echo,
    /// Hand connections and messages to an application (the Configurapi runner) whose
    /// jobs run on the worker pool.
    App(Arc<dyn App>),
}

impl fmt::Debug for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Mode::Echo => f.write_str("Echo"),
            Mode::App(_) => f.write_str("App"),
        }
    }
}

/// Everything the reactor needs to know. `Default` gives the documented defaults.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Address of the WebSocket listener (default `0.0.0.0:8000`).
    pub listen: SocketAddr,
    /// Message handling.
    pub mode: Mode,
    /// Frame and message size limits (default 16 MiB each).
    pub limits: Limits,
    /// Upgrade request limits (16 KiB, 100 headers).
    pub handshake_limits: HandshakeLimits,
    /// Time a client has to complete the upgrade (default 10 s).
    pub handshake_timeout: Duration,
    /// With no bytes from the peer for half of this, the server pings; with none for all
    /// of it, the server closes with 1001. Zero turns it off. Default 120 s.
    pub idle_timeout: Duration,
    /// How long a closing connection may take to finish the close handshake and the TCP
    /// close before it is dropped (default 5 s).
    pub close_timeout: Duration,
    /// Stop reading from a peer while this many bytes wait to be written to it
    /// (default 1 MiB); reading resumes below `low_water`.
    pub high_water: usize,
    /// See `high_water` (default 256 KiB).
    pub low_water: usize,
    /// Hard cap on one connection's queued bytes: a peer that stays over it for
    /// `queued_grace`, or goes over twice it at any moment, is closed with 1008 and the
    /// rest of its queue is dropped (default 16 MiB). Producers stop at `high_water`
    /// long before; this bounds what they cannot pace (replies in flight, management
    /// posts, one large message).
    pub max_queued: usize,
    /// See `max_queued` (default 10 s).
    pub queued_grace: Duration,
    /// Most management connections at once; past it a new one gets 503 and is closed
    /// (default 64).
    pub max_management_connections: usize,
    /// Most connections held at once; past it the upgrade answers 503 with
    /// `Retry-After` (accepting goes on, so the listen queue never fills). Default 50,000.
    pub max_connections: usize,
    /// Worker threads for application jobs (default: the number of cores).
    pub workers: usize,
    /// Jobs that may wait for a worker before the reactor stops reading (default 1024).
    pub job_queue: usize,
    /// Suspended pipelines (handlers waiting on a timer, a reply, room) held at once;
    /// at the cap the reactor stops reading until one finishes (default 10,000).
    pub max_waiting: usize,
    /// How long a graceful shutdown waits for running handlers (default 5 s).
    pub shutdown_timeout: Duration,
    /// The management HTTP API; `None` (the library default) turns it off. The CLI
    /// turns it on at 127.0.0.1:9100 in Configurapi mode.
    pub management: Option<MgmtConfig>,
    /// The secure (WSS) listener beside the plain one; `None` turns it off.
    pub tls: Option<TlsSettings>,
    /// What SIGHUP and `POST /@reload` run; `None`: reloading is not offered.
    pub reload: Option<Reloader>,
    /// `--cluster`: the directory and the management requests other nodes answer
    /// (docs/cluster.md); `None`: this node alone, and no Redis anywhere.
    pub cluster: Option<Arc<crate::cluster::ClusterLink>>,
    /// `--reuse-port`: `SO_REUSEPORT` on the WebSocket listeners, so several runner
    /// processes share one port and the kernel spreads connections over them.
    pub reuse_port: bool,
    /// permessage-deflate (`--deflate`, `--deflate-threshold`; default shared, 1 KiB).
    pub deflate: crate::ws::deflate::DeflateConfig,
}

/// Loads the application's config and TLS files again and switches the application
/// to the new config (it runs on the reactor thread, which then serves new handshakes
/// with the certificate it returns). `Err` is the one-line reason; the old config
/// and certificate stay in use.
#[derive(Clone)]
pub struct Reloader(pub Arc<dyn Fn() -> Result<Reloaded, String> + Send + Sync>);

impl fmt::Debug for Reloader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Reloader")
    }
}

/// What a successful reload gives the reactor.
pub struct Reloaded {
    /// The new certificate and key for the WSS listener (and an HTTPS management
    /// API), when TLS is on.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// What was reloaded, for the log and the `/@reload` answer.
    pub summary: String,
}

/// The secure listener: where, and the rustls configuration (see [`crate::tls`]).
#[derive(Clone)]
pub struct TlsSettings {
    /// Address of the WSS listener (the CLI's default port is 8443).
    pub listen: SocketAddr,
    /// Certificate chain, key, ALPN `http/1.1`.
    pub server_config: Arc<rustls::ServerConfig>,
}

impl fmt::Debug for TlsSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsSettings")
            .field("listen", &self.listen)
            .finish_non_exhaustive()
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: SocketAddr::from(([0, 0, 0, 0], 8000)),
            mode: Mode::Echo,
            limits: Limits::default(),
            handshake_limits: HandshakeLimits::default(),
            handshake_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(120),
            close_timeout: Duration::from_secs(5),
            high_water: 1 << 20,
            low_water: 256 << 10,
            max_queued: 16 << 20,
            queued_grace: Duration::from_secs(10),
            max_management_connections: 64,
            max_connections: 50_000,
            workers: std::thread::available_parallelism().map_or(2, |n| n.get()),
            job_queue: 1024,
            max_waiting: 10_000,
            shutdown_timeout: Duration::from_secs(5),
            management: None,
            tls: None,
            reload: None,
            cluster: None,
            reuse_port: false,
            deflate: Default::default(),
        }
    }
}

/// Management listener settings.
#[derive(Debug, Clone)]
pub struct MgmtConfig {
    /// Where to listen (default 127.0.0.1:9100: loopback only, 6.7.6).
    pub listen: SocketAddr,
    /// When set, every request needs `Authorization: Bearer <token>` (else 401).
    pub token: Option<String>,
    /// Request limits (head 16 KiB / 100 headers, body 1 MiB).
    pub limits: crate::http::Limits,
    /// An idle keep-alive connection, or a request that stops arriving, is closed
    /// after this long without a byte (default 10 s).
    pub idle_timeout: Duration,
    /// Serve HTTPS instead of HTTP (`--management-tls`: the WSS certificate).
    pub tls: Option<Arc<rustls::ServerConfig>>,
}

impl Default for MgmtConfig {
    fn default() -> Self {
        MgmtConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], crate::mgmt::DEFAULT_PORT)),
            token: None,
            limits: crate::http::Limits::default(),
            idle_timeout: crate::mgmt::DEFAULT_IDLE_TIMEOUT,
            tls: None,
        }
    }
}
