//! The single-threaded mio reactor: it owns the listener, the connection slab, the
//! timers and the command channel, and is the only code that touches sockets.
//!
//! Token space: slab slots are tokens `0..`; the listener and the waker sit at the top
//! of the `usize` range, where the slab never reaches.
//!
//! Rules kept here (from mio's own docs): reads and accepts are drained to
//! `WouldBlock` (or the connection is put on a revisit list when it yields early);
//! spurious events and events for unknown tokens are normal and ignored; WRITABLE is
//! asked for only while bytes are queued; slots are freed only after the whole event
//! batch, so a token in the same batch never names a newer connection.

/// The seam to the application, kept under its old path (`reactor::app`).
pub use crate::app;
mod cluster;
mod jobs;
pub mod mgmt;
/// The counters, kept under their old path (`reactor::stats::Stats`).
pub use crate::stats;

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use mio::net::TcpListener;
use mio::{Events, Interest, Poll, Token, Waker};
use slab::Slab;

pub use crate::app::{App, Dispatch};
use crate::app::{AppConn, NoteVerdict, ReplyOut};
pub use crate::config::MgmtConfig;
use crate::config::{Mode, ServerConfig};
use crate::conn::transport::Transport;
use crate::conn::write_queue::BufPool;
use crate::conn::{tick, Conn, ConnId, ConnState, Phase, ReadOutcome, Shared, Sink};
use crate::link::{Courier, Gone, Link, LinkHome};
use crate::work::{Job, WorkerPool};
use crate::ws::UpgradeRequest;
use crate::ws::{close_code, Message, Opcode};
use jobs::Jobs;
use mgmt::MgmtConn;
use stats::Stats;

/// The per-event context a connection borrows, built from disjoint fields of the
/// reactor (a macro, so the borrows stay field by field).
macro_rules! shared {
    ($r:ident, $now:expr) => {{
        let now = $now;
        Shared {
            cfg: &$r.cfg,
            pool: &mut $r.pool,
            stats: &mut $r.stats,
            now,
            ms: tick::ms(now),
            draining: &$r.handle.draining,
        }
    }};
}

/// The sink a connection reports its events to, built from disjoint fields of the
/// reactor like `shared!`.
macro_rules! events {
    ($r:ident) => {
        AppEvents {
            app: match &$r.cfg.mode {
                Mode::App(app) => Some(app),
                Mode::Echo => None,
            },
            jobs: &mut $r.work.pending,
            links: &$r.links,
        }
    };
}

/// The reactor's value for each connection: the application's (Configurapi mode, once
/// upgraded), which holds the connection's `Link`; `None` in echo mode and before the
/// upgrade. The link's closed flag says whether `on_close` has run: the two happen
/// together, and a flag of its own would cost every connection a word.
pub(crate) type Ext = Option<Arc<dyn AppConn>>; // #17 idle-runner: was `Box`

/// Passes a connection's events to the application (or echoes, in echo mode).
struct AppEvents<'a> {
    app: Option<&'a Arc<dyn App>>,
    jobs: &'a mut Vec<Job>,
    // #17 idle-runner: what the links share (courier, water marks), made once.
    links: &'a Arc<LinkHome>,
}

impl Sink<Ext> for AppEvents<'_> {
    fn upgraded(
        &mut self,
        st: &mut ConnState,
        ext: &mut Ext,
        req: &UpgradeRequest,
        _: &mut Shared<'_>,
    ) {
        let Some(app) = self.app else { return };
        let link = Link::new(st.id, self.links);
        let conn = app.on_open(link, req, self.jobs);
        // #17 idle-runner: the label is rendered (an allocation) only when the lines
        // that show it are logged; the level is fixed at start-up.
        if log::log_enabled!(target: "configurapi_runner_ws::conn", log::Level::Debug) {
            st.label = Some(conn.label());
        }
        *ext = Some(conn);
    }

    fn message(
        &mut self,
        st: &mut ConnState,
        ext: &mut Ext,
        msg: Message<'_>,
        sh: &mut Shared<'_>,
    ) {
        match ext.take() {
            // #17 idle-runner: the application's value is shared (`Arc`); lent to the
            // call and put back (#17: a clone and its drop are two atomic operations).
            Some(a) => {
                let (dispatch, a) = a.on_message(msg, &mut QueueOut { st, sh });
                *ext = Some(a);
                match dispatch {
                    Dispatch::Reply(frame) => {
                        st.send_frame_owned(sh.pool, sh.stats, Opcode::Text, frame)
                    }
                    Dispatch::Later => {}
                    Dispatch::Job(job) => self.jobs.push(job),
                }
            }
            None if self.app.is_none() => {
                let opcode = match msg {
                    Message::Text(_) => Opcode::Text,
                    Message::Binary(_) => Opcode::Binary,
                };
                st.send_frame(opcode, msg.bytes(), sh);
            }
            None => {}
        }
    }

    fn holds_reading(&self, ext: &Ext) -> bool {
        ext.as_ref().is_some_and(|a| a.holds_reading())
    }
}

/// An inline answer written straight into the connection's write queue.
struct QueueOut<'a, 'b> {
    st: &'a mut ConnState,
    sh: &'a mut Shared<'b>,
}

impl ReplyOut for QueueOut<'_, '_> {
    fn text_frame(&mut self, hint: usize, write: &mut dyn FnMut(&mut Vec<u8>)) {
        let sh = &mut *self.sh;
        self.st
            .send_frame_with(sh.pool, sh.stats, Opcode::Text, hint, write);
    }

    #[inline]
    fn received(&self) -> Instant {
        self.sh.now
    }
}

/// Listen queue length asked for (the kernel caps it at `net.core.somaxconn`, 4096 on
/// current Linux). std and mio use 128, which a burst of connects overflows while the
/// loop is busy: each overflowed SYN costs the client a 1 s retransmit.
const BACKLOG: i32 = 4096;

/// Bind a non-blocking listener with `SO_REUSEADDR` and a [`BACKLOG`]-long queue. `::`
/// listens dual-stack (IPv4 clients as v4-mapped addresses) where the system allows
/// it; where it does not, it stays IPv6 only rather than failing.
pub(crate) fn listen(addr: SocketAddr) -> io::Result<TcpListener> {
    listen_shared(addr, false)
}

/// [`listen`], with `SO_REUSEPORT` when `reuse_port` (several processes on one port).
pub(crate) fn listen_shared(addr: SocketAddr, reuse_port: bool) -> io::Result<TcpListener> {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    socket.set_reuse_address(true)?;
    // cluster: --reuse-port
    if reuse_port {
        socket.set_reuse_port(true)?;
    }
    if addr.is_ipv6() && addr.ip().is_unspecified() {
        let _ = socket.set_only_v6(false);
    }
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(BACKLOG)?;
    Ok(TcpListener::from_std(socket.into()))
}

/// Run the reload (SIGHUP, `POST /@reload`) and log its outcome in one line.
fn run_reloader(cfg: &ServerConfig) -> Result<crate::config::Reloaded, String> {
    let Some(reload) = &cfg.reload else {
        let why = "reloading is not available (no config file to read again)".to_string();
        log::warn!("reload: {why}");
        return Err(why);
    };
    match (reload.0)() {
        Ok(r) => {
            log::info!("reloaded: {}", r.summary);
            Ok(r)
        }
        Err(e) => {
            log::error!("reload failed, still serving the previous config: {e}");
            Err(e)
        }
    }
}

/// While draining, how often the connections' outstanding work is looked at.
const DRAIN_TICK: Duration = Duration::from_millis(10);

/// How long accepting pauses when descriptors ran out and none could be freed.
const ACCEPT_RETRY: Duration = Duration::from_millis(100);

/// The answer a shed connection gets, best effort, before it is closed.
const SHED_RESPONSE: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\nConnection: close\r\nContent-Length: 0\r\n\r\n";

/// `accept` failed because this process (EMFILE) or the system (ENFILE) is out of
/// file descriptors; ENOBUFS and ENOMEM are the same shortage in other words.
fn is_fd_exhaustion(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
    )
}

/// The reserve-fd technique: give up the spare descriptor, accept the connection
/// waiting at the head of the queue, answer it 503 and close it, then take the spare
/// again. `Some(true)`: one was shed, try the next; `Some(false)`: the queue is empty;
/// `None`: there was no spare (the caller retries later).
fn shed_one(
    listener: &TcpListener,
    reserve: &mut Option<std::fs::File>,
    stats: &mut Stats,
) -> Option<bool> {
    reserve.take()?;
    let shed = match listener.accept() {
        Ok((mut sock, _)) => {
            use std::io::Write;
            let _ = sock.write(SHED_RESPONSE);
            stats.fd_shed += 1;
            log::debug!("out of file descriptors: shed a connection with 503");
            true
        }
        Err(e) => e.kind() == io::ErrorKind::Interrupted,
    };
    *reserve = std::fs::File::open("/dev/null").ok();
    Some(shed)
}

const LISTENER: Token = Token(usize::MAX - 1);
const WAKER: Token = Token(usize::MAX - 2);
const MGMT_LISTENER: Token = Token(usize::MAX - 3);
const SECURE_LISTENER: Token = Token(usize::MAX - 4);
/// Management connections use tokens `MGMT_BASE + slot` (their own slab).
const MGMT_BASE: usize = usize::MAX / 2;
/// Timer entries of management connections carry this bit in their slot field.
const MGMT_TIMER: u32 = 1 << 31;
/// The shared read buffer: every connection reads into it in turn.
const READ_BUF: usize = 64 * 1024;

/// A message for a connection, sent from any thread.
#[derive(Debug, Clone)]
pub enum Outgoing {
    /// A text frame.
    Text(String),
    /// A binary frame.
    Binary(Vec<u8>),
    /// Close with a code and reason.
    Close(u16, String),
}

/// Requests from other threads, delivered through the channel + waker.
enum Command {
    Send(ConnId, Outgoing),
    /// An encoded frame payload from a worker; `transit` bytes move from the
    /// connection's in-transit count to its write queue.
    Deliver {
        to: ConnId,
        opcode: Opcode,
        payload: Vec<u8>,
        transit: usize,
    },
    /// A note for the application's value of a connection ([`Link::notify`]).
    Note(ConnId, u32),
    /// A worker finished a job while the reactor held jobs it could not submit.
    Capacity,
    List(Sender<Vec<ConnId>>),
    Stats(Sender<Stats>),
    Shutdown,
    /// SIGHUP: run the config's [`crate::config::Reloader`] and answer its outcome.
    Reload(Sender<Result<String, String>>),
    /// cluster: an answer to a parked management request, or a peer's request.
    Cluster(crate::cluster::ToReactor),
}

/// A cheap, cloneable, thread-safe handle on a running reactor.
#[derive(Clone)]
pub struct Handle {
    tx: Sender<Command>,
    waker: Arc<Waker>,
    /// Set while a wake-up is on its way: later commands ride on it, so a burst of
    /// worker results costs one eventfd write, not one each.
    wake_pending: Arc<AtomicBool>,
    /// Set from the first shutdown on: the drain (9.5) refuses new upgrades.
    draining: Arc<AtomicBool>,
    addr: SocketAddr,
}

/// The reactor has stopped; the command was not delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stopped;

impl Handle {
    /// The WebSocket listener's bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    fn command(&self, cmd: Command) -> Result<(), Stopped> {
        self.tx.send(cmd).map_err(|_| Stopped)?;
        if !self.wake_pending.swap(true, Ordering::SeqCst) {
            self.waker.wake().map_err(|_| Stopped)?;
        }
        Ok(())
    }

    /// Queue a message for a connection. A connection that has gone (even if its slot
    /// now holds a new client) never receives it; the reactor counts it as stale.
    pub fn send(&self, to: ConnId, msg: Outgoing) -> Result<(), Stopped> {
        self.command(Command::Send(to, msg))
    }

    /// Ids of the open connections.
    pub fn connections(&self) -> Result<Vec<ConnId>, Stopped> {
        let (tx, rx) = mpsc::channel();
        self.command(Command::List(tx))?;
        rx.recv().map_err(|_| Stopped)
    }

    /// A snapshot of the reactor's counters.
    pub fn stats(&self) -> Result<Stats, Stopped> {
        let (tx, rx) = mpsc::channel();
        self.command(Command::Stats(tx))?;
        rx.recv().map_err(|_| Stopped)
    }

    /// Drain (9.5) and return from `run`: `/healthz` answers 503 and new upgrades
    /// 503 with `Retry-After`; every message already received is answered (streams
    /// and pushes included), then its connection gets 1001 and on_disconnect; `run`
    /// returns when all is done or `shutdown_timeout` has passed.
    pub fn shutdown(&self) -> Result<(), Stopped> {
        self.command(Command::Shutdown)
    }

    /// Reload the config and TLS files (SIGHUP). Waits for the outcome: what was
    /// reloaded, or why nothing was (the old config and certificate stay in use).
    pub fn reload(&self) -> Result<Result<String, String>, Stopped> {
        let (tx, rx) = mpsc::channel();
        self.command(Command::Reload(tx))?;
        rx.recv().map_err(|_| Stopped)
    }

    /// cluster: hand the reactor an answer or a peer's request (docs/cluster.md).
    pub fn cluster(&self, work: crate::cluster::ToReactor) -> Result<(), Stopped> {
        self.command(Command::Cluster(work))
    }

    /// A shutdown has started: the server is draining.
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }
}

impl Courier for Handle {
    /// The caller has counted `transit` bytes as in transit on the link.
    fn deliver(
        &self,
        to: ConnId,
        opcode: Opcode,
        payload: Vec<u8>,
        transit: usize,
    ) -> Result<(), Gone> {
        self.command(Command::Deliver {
            to,
            opcode,
            payload,
            transit,
        })
        .map_err(|_| Gone)
    }

    fn notify(&self, to: ConnId, note: u32) -> Result<(), Gone> {
        self.command(Command::Note(to, note)).map_err(|_| Gone)
    }
}

/// A bound server, ready to run.
pub struct Server {
    reactor: Reactor,
    handle: Handle,
    mgmt_addr: Option<SocketAddr>,
    secure_addr: Option<SocketAddr>,
}

impl Server {
    /// Bind the listener and set up the poll. Fails when the port is taken.
    pub fn bind(cfg: ServerConfig) -> io::Result<Server> {
        let poll = Poll::new()?;
        let mut listener = listen_shared(cfg.listen, cfg.reuse_port).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!(
                    "cannot listen on port {} ({}): {e}",
                    cfg.listen.port(),
                    cfg.listen.ip()
                ),
            )
        })?;
        poll.registry()
            .register(&mut listener, LISTENER, Interest::READABLE)?;
        let (secure_listener, secure_addr) = match &cfg.tls {
            Some(tls) => {
                let mut l = listen_shared(tls.listen, cfg.reuse_port).map_err(|e| {
                    io::Error::new(
                        e.kind(),
                        format!(
                            "cannot listen on secure port {} ({}): {e}",
                            tls.listen.port(),
                            tls.listen.ip()
                        ),
                    )
                })?;
                poll.registry()
                    .register(&mut l, SECURE_LISTENER, Interest::READABLE)?;
                let a = l.local_addr()?;
                (Some(l), Some(a))
            }
            None => (None, None),
        };
        let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
        let addr = listener.local_addr()?;
        let (tx, rx) = mpsc::channel();
        let handle = Handle {
            tx,
            waker,
            wake_pending: Arc::new(AtomicBool::new(false)),
            draining: Arc::new(AtomicBool::new(false)),
            addr,
        };
        let (mgmt_listener, mgmt_addr) = match &cfg.management {
            Some(m) => {
                let (l, a) = Reactor::mgmt_bind(poll.registry(), m).map_err(|e| {
                    io::Error::new(
                        e.kind(),
                        format!(
                            "cannot listen on management port {} ({}): {e}",
                            m.listen.port(),
                            m.listen.ip()
                        ),
                    )
                })?;
                (Some(l), Some(a))
            }
            None => (None, None),
        };
        if let (Mode::App(app), Some(addr)) = (&cfg.mode, mgmt_addr) {
            let scheme = match cfg.management.as_ref().and_then(|m| m.tls.as_ref()) {
                Some(_) => "https",
                None => "http",
            };
            app.set_management_url(&crate::mgmt::base_url_with_scheme(scheme, addr));
        }
        let workers = match &cfg.mode {
            Mode::App(_) => {
                let hook = handle.clone();
                let on_capacity = Box::new(move || {
                    let _ = hook.command(Command::Capacity);
                });
                let pool =
                    WorkerPool::new(cfg.workers, cfg.job_queue, cfg.max_waiting, on_capacity)?;
                if let Mode::App(app) = &cfg.mode {
                    app.set_resume(pool.resumer());
                }
                Some(pool)
            }
            Mode::Echo => None,
        };
        let courier: Arc<Handle> = Arc::new(handle.clone());
        let reactor = Reactor {
            links: LinkHome::new(courier.clone(), cfg.high_water, cfg.low_water),
            handle: courier,
            work: Jobs::new(workers),
            mgmt_listener,
            mgmt: Slab::new(),
            poll,
            listener: Some(listener),
            secure_listener,
            conns: Slab::new(),
            next_gen: 0,
            pool: BufPool::new(16 * 1024, 256),
            rbuf: vec![0; READ_BUF],
            timers: BinaryHeap::new(),
            batch_ms: 0,
            handshakes: VecDeque::new(),
            to_free: Vec::new(),
            revisit: Vec::new(),
            cmd_rx: rx,
            cfg,
            stats: Stats::default(),
            shutdown_at: None,
            drain_next: Instant::now(),
            reserve_fd: std::fs::File::open("/dev/null").ok(),
            accept_retry: None,
        };
        Ok(Server {
            reactor,
            handle,
            mgmt_addr,
            secure_addr,
        })
    }

    /// The bound address (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.handle.addr
    }

    /// The secure (WSS) listener's bound address, when TLS is on.
    pub fn secure_addr(&self) -> Option<SocketAddr> {
        self.secure_addr
    }

    /// The management listener's bound address, when it is on.
    pub fn management_addr(&self) -> Option<SocketAddr> {
        self.mgmt_addr
    }

    /// A handle for other threads.
    pub fn handle(&self) -> Handle {
        self.handle.clone()
    }

    /// Run the reactor on this thread until shutdown.
    pub fn run(self) -> io::Result<()> {
        let Server {
            mut reactor,
            handle,
            ..
        } = self;
        drop(handle);
        reactor.run()
    }

    /// Run the reactor on a new thread.
    pub fn spawn(self) -> (Handle, JoinHandle<io::Result<()>>) {
        let handle = self.handle();
        let join = std::thread::Builder::new()
            .name("reactor".into())
            .spawn(move || self.run())
            .expect("spawning the reactor thread");
        (handle, join)
    }
}

/// The counters with the figures of this moment filled in (queued bytes, read
/// buffers, the open connections' peaks, waiting producers, suspended pipelines): the
/// one snapshot that `Handle::stats` and `/metrics` both read.
fn snapshot(stats: &Stats, conns: &Slab<Conn<Ext>>, waiting: u64) -> Stats {
    let mut s = stats.clone();
    s.waiting = waiting;
    for (_, c) in conns.iter() {
        let q = c.st.queued() as u64;
        s.queued_bytes_sum += q;
        s.queued_bytes_max = s.queued_bytes_max.max(q);
        s.read_buffered_max = s.read_buffered_max.max(c.read_buffered() as u64);
        if let Some(a) = &c.ext {
            s.producers_waiting += a.link().waiting_producers() as u64;
        }
    }
    s
}

struct Reactor {
    handle: Arc<Handle>,
    /// #17 idle-runner: what every connection's `Link` shares.
    links: Arc<LinkHome>,
    /// The worker pool, the jobs on their way to it and the backlog.
    work: Jobs,
    mgmt_listener: Option<TcpListener>,
    mgmt: Slab<MgmtConn>,
    poll: Poll,
    listener: Option<TcpListener>,
    /// The TLS (WSS) listener, when a key and certificate are set.
    secure_listener: Option<TcpListener>,
    conns: Slab<Conn<Ext>>,
    next_gen: u32,
    pool: BufPool,
    rbuf: Vec<u8>,
    /// Lazy timers: at most a few entries per connection; an entry that fires early is
    /// re-armed from the connection's current deadline.
    timers: BinaryHeap<Reverse<(u64, u32, u32)>>,
    /// Connections reading their upgrade request, in accept order, which is their
    /// handshake deadlines' order (one timeout for all): a FIFO instead of an entry
    /// each in `timers`, which would stay there, and in memory, long after the upgrade.
    /// Entries of connections that have upgraded or gone are dropped at the front as
    /// the loop passes, so it holds about the handshakes in progress.
    handshakes: VecDeque<ConnId>,
    /// The time of the current event batch in milliseconds ([`tick::ms`]), which the
    /// connections' ticks are read against.
    batch_ms: u64,
    to_free: Vec<usize>,
    /// Connections that stopped reading before `WouldBlock`.
    revisit: Vec<ConnId>,
    cmd_rx: Receiver<Command>,
    cfg: ServerConfig,
    stats: Stats,
    shutdown_at: Option<Instant>,
    /// While draining, when the connections are looked at next.
    drain_next: Instant,
    /// A descriptor held in reserve (`/dev/null`): when accept fails for want of file
    /// descriptors, it is closed to make room to accept the pending connection and
    /// close it at once, then opened again. Without it, an edge-triggered listener
    /// with a full process table would leave its queue stuck until the next arrival.
    reserve_fd: Option<std::fs::File>,
    /// Out of descriptors with no reserve: accepting is tried again at this time
    /// instead of spinning on a readiness that cannot be cleared.
    accept_retry: Option<Instant>,
}

impl Reactor {
    fn run(&mut self) -> io::Result<()> {
        let mut events = Events::with_capacity(1024);
        loop {
            let now = Instant::now();
            let timeout = if !self.revisit.is_empty() {
                Some(Duration::ZERO)
            } else {
                let next = self.timers.peek().map(|Reverse((t, _, _))| *t);
                let next = match (next, self.next_handshake_deadline()) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                };
                let next = next.map(tick::instant);
                let next = match (next, self.accept_retry) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                };
                // Draining: look at the connections' work again shortly (a worker that
                // ends a request does not wake the loop when it has nothing to send).
                let next = match (next, self.shutdown_at.map(|_| self.drain_next)) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                };
                next.map(|t| t.saturating_duration_since(now))
            };
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            let now = Instant::now();
            self.batch_ms = tick::ms(now);
            for ev in events.iter() {
                match ev.token() {
                    LISTENER => self.accept(false, now),
                    SECURE_LISTENER => self.accept(true, now),
                    MGMT_LISTENER => self.mgmt_accept(now),
                    WAKER => {
                        self.handle.wake_pending.store(false, Ordering::SeqCst);
                        self.commands(now)
                    }
                    // After the fixed tokens, which also sit above MGMT_BASE.
                    Token(t) if t >= MGMT_BASE => {
                        let readable = ev.is_readable() || ev.is_read_closed() || ev.is_error();
                        self.mgmt_event(t - MGMT_BASE, readable, now);
                    }
                    Token(slot) => {
                        let closed = ev.is_read_closed() || ev.is_error();
                        self.conn_event(
                            slot,
                            ev.is_readable() || closed,
                            closed,
                            ev.is_writable(),
                            now,
                        );
                    }
                }
            }
            for id in std::mem::take(&mut self.revisit) {
                if self.lookup(id) {
                    self.conn_event(id.slot as usize, true, false, false, now);
                }
            }
            if self.accept_retry.is_some_and(|t| t <= now) {
                self.accept_retry = None;
                self.accept(false, now);
                self.accept(true, now);
                self.mgmt_accept(now);
            }
            self.fire_timers(now);
            self.fire_handshakes(now);
            // At most once a tick: a busy loop must not scan every connection per event.
            if self.shutdown_at.is_some() && now >= self.drain_next && self.drain_step(now) {
                self.free_dead();
                return Ok(());
            }
            self.free_dead();
        }
    }

    /// The one place a `ConnId` is resolved: true when the slot still holds that
    /// connection and it is alive.
    fn lookup(&self, id: ConnId) -> bool {
        match self.conns.get(id.slot as usize) {
            Some(c) => c.st.id.gen == id.gen && !matches!(c.st.phase, Phase::Dead),
            None => false,
        }
    }

    /// Resolve a delivery's target to its slot, counting it as stale when the
    /// connection is gone (even if a newer connection now has the slot).
    fn resolve(&mut self, id: ConnId) -> Option<usize> {
        if self.lookup(id) {
            Some(id.slot as usize)
        } else {
            self.stats.stale_dropped += 1;
            None
        }
    }

    fn accept(&mut self, secure: bool, now: Instant) {
        loop {
            let listener = if secure {
                self.secure_listener.as_ref()
            } else {
                self.listener.as_ref()
            };
            let Some(listener) = listener else {
                return;
            };
            let (mut sock, _peer) = match listener.accept() {
                Ok(s) => s,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if is_fd_exhaustion(&e) => {
                    match shed_one(listener, &mut self.reserve_fd, &mut self.stats) {
                        Some(true) => continue,
                        Some(false) => return,
                        None => {
                            self.retry_accept_later(now, &e);
                            return;
                        }
                    }
                }
                Err(e) => {
                    log::warn!("accept failed: {e}");
                    return;
                }
            };
            let _ = sock.set_nodelay(true);
            let entry = self.conns.vacant_entry();
            let slot = entry.key();
            self.next_gen = self.next_gen.wrapping_add(1);
            let id = ConnId {
                slot: slot as u32,
                gen: self.next_gen,
            };
            if self
                .poll
                .registry()
                .register(&mut sock, Token(slot), Interest::READABLE)
                .is_err()
            {
                continue;
            }
            let transport = match (secure, &self.cfg.tls) {
                (true, Some(tls)) => {
                    match rustls::ServerConnection::new(tls.server_config.clone()) {
                        Ok(c) => Transport::tls(sock, c),
                        Err(e) => {
                            log::warn!("TLS session setup failed: {e}");
                            let _ = self.poll.registry().deregister(&mut sock);
                            continue;
                        }
                    }
                }
                _ => Transport::Plain(sock),
            };
            let mut conn = Conn::new(id, transport, now, None);
            conn.st.registered = Some(Interest::READABLE);
            entry.insert(conn);
            self.stats.accepted += 1;
            self.stats.open += 1;
            // The handshake timeout (see `handshakes`).
            self.handshakes.push_back(id);
        }
    }

    /// Out of descriptors and no reserve to shed with: try again shortly (the listener
    /// is edge-triggered, so waiting for its next event could wait forever).
    fn retry_accept_later(&mut self, now: Instant, e: &io::Error) {
        if self.accept_retry.is_none() {
            log::warn!("accept failed: {e}; retrying in {ACCEPT_RETRY:?}");
        }
        self.accept_retry = Some(now + ACCEPT_RETRY);
        if self.reserve_fd.is_none() {
            self.reserve_fd = std::fs::File::open("/dev/null").ok();
        }
    }

    fn conn_event(
        &mut self,
        slot: usize,
        readable: bool,
        peer_closed: bool,
        writable: bool,
        now: Instant,
    ) {
        let Some(conn) = self.conns.get_mut(slot) else {
            return;
        };
        if matches!(conn.st.phase, Phase::Dead) {
            return;
        }
        let mut sh = shared!(self, now);
        if writable {
            conn.st.flush(&mut sh);
        }
        let saturated = self.work.saturated();
        if readable && saturated {
            // The workers are saturated, or too many pipelines wait: leave the bytes in
            // the kernel (TCP backpressure) and come back when room is reported.
            sh.stats.backlog_stalls += 1;
            self.work.stall(conn.st.id);
        } else if readable {
            let mut ev = events!(self);
            match conn.read_ready(&mut self.rbuf, peer_closed, &mut sh, &mut ev) {
                ReadOutcome::WouldBlock => {}
                ReadOutcome::Yielded => {
                    if !conn.reading_blocked(&ev) {
                        self.revisit.push(conn.st.id);
                    }
                }
                ReadOutcome::Closed => {
                    conn.st.wq.clear(sh.pool);
                    conn.st.set_phase(Phase::Dead, sh.ms);
                }
            }
        }
        // Write what this event produced right away: usually it all fits and no
        // WRITABLE registration is needed. A connection that has just entered
        // Finishing with nothing queued (the peer answered our close) needs the
        // flush too: that is where its write side is shut down.
        if !conn.st.is_flushed() || matches!(conn.st.phase, Phase::Finishing { shut: false }) {
            let was_paused = conn.st.read_paused;
            conn.st.flush(&mut sh);
            if was_paused && !conn.st.read_paused {
                // Edge-triggered: bytes that arrived while paused raise no new event.
                self.revisit.push(conn.st.id);
            }
        }
        conn.release_idle_buffers();
        self.after_event(slot);
    }

    /// Re-derive poll interest, timers and application bookkeeping from the
    /// connection's state, then submit the jobs the event produced.
    fn after_event(&mut self, slot: usize) {
        let Some(conn) = self.conns.get_mut(slot) else {
            return;
        };
        if conn.st.queued() > self.cfg.max_queued {
            let mut sh = shared!(self, Instant::now());
            conn.st.enforce_queued_cap(&mut sh);
            conn.st.flush(&mut sh);
        } else {
            conn.st.over_cap_since = None;
        }
        let queued = conn.st.queued();
        if let Some(a) = conn.ext.as_mut() {
            if matches!(conn.st.phase, Phase::Open) {
                // #17 json-reply: appended where they go (usually none: extending by an
                // empty `Vec` and dropping it was ~140 instructions an event).
                a.link().set_queued(queued, &mut self.work.pending);
            } else if !a.link().is_closed() {
                // The connection has ended for the application, once (8.11). Parked
                // stream producers are dropped first: their streams end here.
                drop(a.link().mark_closed());
                self.work.pending.extend(Arc::clone(a).on_close());
            }
        }
        match conn.st.wanted_interest() {
            None => {
                if conn.st.registered.take().is_some() {
                    let _ = self.poll.registry().deregister(conn.st.sock.socket());
                }
                self.to_free.push(slot);
            }
            Some(want) if conn.st.registered != Some(want) => {
                if self
                    .poll
                    .registry()
                    .reregister(conn.st.sock.socket(), Token(slot), want)
                    .is_ok()
                {
                    conn.st.registered = Some(want);
                } else {
                    conn.st.set_phase(Phase::Dead, tick::ms(Instant::now()));
                    self.to_free.push(slot);
                }
            }
            Some(_) => {}
        }
        self.arm(slot);
        self.submit_jobs();
    }

    fn submit_jobs(&mut self) {
        self.work.submit(&mut self.stats);
    }

    /// One look at the drain (9.5): close with 1001 the open connections whose work
    /// is all answered, and say whether the drain is over (everything done, or the
    /// deadline passed, which is logged with what was still running).
    fn drain_step(&mut self, now: Instant) -> bool {
        self.drain_next = now + DRAIN_TICK;
        // The counts are read before the commands are taken: a worker hands its last
        // frame to the channel before it drops its guard, so a count seen at zero
        // means that frame is in the channel now and is queued ahead of the close.
        let idle: Vec<usize> = self
            .conns
            .iter()
            .filter(|(_, c)| {
                matches!(c.st.phase, Phase::Open)
                    && c.ext.as_ref().is_none_or(|a| a.link().busy() == 0)
            })
            .map(|(k, _)| k)
            .collect();
        self.commands(now);
        for slot in idle {
            let conn = &mut self.conns[slot];
            let mut sh = shared!(self, now);
            conn.st
                .start_close(close_code::GOING_AWAY, "server shutdown", &mut sh);
            conn.st.flush(&mut sh);
            self.after_event(slot);
        }
        // Upgrades still being read are not waited for: they would be refused.
        let conns_left = self
            .conns
            .iter()
            .filter(|(_, c)| !matches!(c.st.phase, Phase::Handshake | Phase::Dead))
            .count();
        let jobs = self.work.in_flight();
        if conns_left == 0 && jobs == 0 {
            self.work.shutdown(now); // nothing in flight: the threads leave and are joined
            return true;
        }
        if self.shutdown_at.is_some_and(|d| now >= d) {
            let requests: usize = self
                .conns
                .iter()
                .filter_map(|(_, c)| c.ext.as_ref().map(|a| a.link().busy()))
                .sum();
            log::warn!(
                "shutdown timeout ({:?}) reached: exiting with {requests} requests still \
                 running on {conns_left} connections ({jobs} worker jobs in flight)",
                self.cfg.shutdown_timeout
            );
            // Best effort: the connections still open are told, without waiting.
            let slots: Vec<usize> = self.conns.iter().map(|(k, _)| k).collect();
            for slot in slots {
                let conn = &mut self.conns[slot];
                let mut sh = shared!(self, now);
                conn.st
                    .start_close(close_code::GOING_AWAY, "server shutdown", &mut sh);
                conn.st.flush(&mut sh);
            }
            self.work.shutdown(now);
            return true;
        }
        false
    }

    /// Make sure the timer heap has an entry no later than the connection's deadline
    /// (the handshake's is kept in `handshakes`).
    fn arm(&mut self, slot: usize) {
        let Some(conn) = self.conns.get_mut(slot) else {
            return;
        };
        if matches!(conn.st.phase, Phase::Handshake) {
            return;
        }
        let Some(deadline) = conn.st.deadline(&self.cfg, self.batch_ms) else {
            return;
        };
        if deadline < conn.st.timer_armed {
            conn.st.timer_armed = deadline;
            self.timers
                .push(Reverse((deadline, conn.st.id.slot, conn.st.id.gen)));
        }
    }

    fn fire_timers(&mut self, now: Instant) {
        let now_ms = tick::ms(now);
        while let Some(&Reverse((when, slot, gen))) = self.timers.peek() {
            if when > now_ms {
                return;
            }
            self.timers.pop();
            if slot & MGMT_TIMER != 0 {
                self.mgmt_timer((slot & !MGMT_TIMER) as usize, gen, when, now);
                continue;
            }
            let id = ConnId { slot, gen };
            if !self.lookup(id) {
                self.stats.stale_timers += 1;
                continue;
            }
            let slot = slot as usize;
            let conn = &mut self.conns[slot];
            if conn.st.timer_armed == when {
                conn.st.timer_armed = u64::MAX;
            }
            match conn.st.deadline(&self.cfg, now_ms) {
                Some(d) if d <= now_ms => {
                    let mut sh = shared!(self, now);
                    conn.st.on_timeout(&mut sh);
                    conn.st.flush(&mut sh);
                }
                _ => {}
            }
            self.after_event(slot);
        }
    }

    /// The connection at the front of `handshakes` if it is still reading its upgrade
    /// request; the entries in front of it that are done with are dropped.
    fn handshake_front(&mut self) -> Option<usize> {
        while let Some(&id) = self.handshakes.front() {
            let slot = id.slot as usize;
            let pending = self
                .conns
                .get(slot)
                .is_some_and(|c| c.st.id == id && matches!(c.st.phase, Phase::Handshake));
            if pending {
                return Some(slot);
            }
            self.handshakes.pop_front();
        }
        if self.handshakes.capacity() > 1024 {
            // A burst of connects is over: give its memory back.
            self.handshakes = VecDeque::new();
        }
        None
    }

    /// When the oldest upgrade still being read times out (ms).
    fn next_handshake_deadline(&mut self) -> Option<u64> {
        let slot = self.handshake_front()?;
        self.conns[slot].st.deadline(&self.cfg, self.batch_ms)
    }

    /// Time out the upgrades that are past the handshake timeout, oldest first.
    fn fire_handshakes(&mut self, now: Instant) {
        let now_ms = tick::ms(now);
        while let Some(slot) = self.handshake_front() {
            let conn = &mut self.conns[slot];
            match conn.st.deadline(&self.cfg, now_ms) {
                Some(d) if d <= now_ms => {}
                _ => return,
            }
            self.handshakes.pop_front();
            let mut sh = shared!(self, now);
            conn.st.on_timeout(&mut sh);
            conn.st.flush(&mut sh);
            self.after_event(slot);
        }
    }

    fn free_dead(&mut self) {
        for slot in std::mem::take(&mut self.to_free) {
            let dead = self
                .conns
                .get(slot)
                .is_some_and(|c| matches!(c.st.phase, Phase::Dead));
            if dead {
                let mut conn = self.conns.remove(slot);
                conn.st.wq.clear(&mut self.pool);
                self.stats.open -= 1;
            }
        }
    }

    fn commands(&mut self, now: Instant) {
        while let Ok(cmd) = self.cmd_rx.try_recv() {
            match cmd {
                Command::Send(id, msg) => {
                    let Some(slot) = self.resolve(id) else {
                        continue;
                    };
                    let conn = &mut self.conns[slot];
                    if !matches!(conn.st.phase, Phase::Open) {
                        continue;
                    }
                    let mut sh = shared!(self, now);
                    match msg {
                        Outgoing::Text(t) => {
                            conn.st.send_frame(Opcode::Text, t.as_bytes(), &mut sh)
                        }
                        Outgoing::Binary(b) => conn.st.send_frame(Opcode::Binary, &b, &mut sh),
                        Outgoing::Close(code, reason) => {
                            conn.st.start_close(code, &reason, &mut sh)
                        }
                    }
                    conn.st.flush(&mut sh);
                    self.after_event(slot);
                }
                Command::Deliver {
                    to,
                    opcode,
                    payload,
                    transit,
                } => {
                    let Some(slot) = self.resolve(to) else {
                        continue;
                    };
                    let conn = &mut self.conns[slot];
                    if !matches!(conn.st.phase, Phase::Open) {
                        if let Some(a) = &conn.ext {
                            a.link().transit_arrived(transit);
                        }
                        // Closing or finishing: the connection has ended for the
                        // application (on_disconnect is under way), so this is stale too.
                        self.stats.stale_dropped += 1;
                        continue;
                    }
                    conn.st
                        .send_frame_owned(&mut self.pool, &mut self.stats, opcode, payload);
                    if let Some(a) = &conn.ext {
                        // Count the frame as queued before it stops counting as in
                        // transit: a producer looking in between would otherwise see
                        // it in neither and send past the high-water mark.
                        a.link()
                            .set_queued(conn.st.queued(), &mut self.work.pending);
                        a.link().transit_arrived(transit);
                    }
                    let mut sh = shared!(self, now);
                    conn.st.flush(&mut sh);
                    self.after_event(slot);
                }
                Command::Note(id, note) => {
                    let Some(slot) = self.resolve(id) else {
                        continue;
                    };
                    let conn = &mut self.conns[slot];
                    let verdict = match conn.ext.as_mut() {
                        Some(a) if !a.link().is_closed() => {
                            Arc::clone(a).on_note(note, &mut self.work.pending)
                        }
                        _ => NoteVerdict::Nothing,
                    };
                    match verdict {
                        NoteVerdict::Nothing => {}
                        // Reading may have stopped while the application held it; with
                        // edge-triggered polling nothing else would resume it.
                        NoteVerdict::ResumeReading => self.revisit.push(id),
                        NoteVerdict::Close(code, reason) => {
                            let mut sh = shared!(self, now);
                            conn.st.start_close(code, reason, &mut sh);
                            conn.st.flush(&mut sh);
                        }
                    }
                    self.after_event(slot);
                }
                Command::Capacity => self.work.drain_backlog(&mut self.revisit),
                Command::List(reply) => {
                    let ids = self
                        .conns
                        .iter()
                        .filter(|(_, c)| matches!(c.st.phase, Phase::Open))
                        .map(|(_, c)| c.st.id)
                        .collect();
                    let _ = reply.send(ids);
                }
                Command::Stats(reply) => {
                    let waiting = self.work.waiting();
                    let _ = reply.send(snapshot(&self.stats, &self.conns, waiting));
                }
                Command::Shutdown => self.begin_shutdown(now),
                // cluster: see reactor/cluster.rs
                Command::Cluster(work) => self.cluster_work(work, now),
                Command::Reload(reply) => {
                    let outcome = match run_reloader(&self.cfg) {
                        Ok(r) => {
                            self.use_tls(r.tls);
                            Ok(r.summary)
                        }
                        Err(e) => Err(e),
                    };
                    let _ = reply.send(outcome);
                }
            }
        }
    }

    /// New handshakes on the WSS listener (and an HTTPS management API) use this
    /// certificate; sessions already set up keep theirs.
    fn use_tls(&mut self, tls: Option<Arc<rustls::ServerConfig>>) {
        let Some(tls) = tls else { return };
        if let Some(t) = &mut self.cfg.tls {
            t.server_config = Arc::clone(&tls);
        }
        if let Some(m) = &mut self.cfg.management {
            if m.tls.is_some() {
                m.tls = Some(tls);
            }
        }
    }

    /// The drain starts (9.5): the listeners stay up so upgrades get their 503, and
    /// `drain_step` closes each connection once its work is answered.
    fn begin_shutdown(&mut self, now: Instant) {
        if self.shutdown_at.is_some() {
            return;
        }
        self.shutdown_at = Some(now + self.cfg.shutdown_timeout);
        self.handle.draining.store(true, Ordering::SeqCst);
        let open = self
            .conns
            .iter()
            .filter(|(_, c)| matches!(c.st.phase, Phase::Open))
            .count();
        log::info!(
            "draining {open} connections (up to {:?})",
            self.cfg.shutdown_timeout
        );
    }
}
