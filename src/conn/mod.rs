//! One client connection: its phase, its codec state and its write queue.
//!
//! The reactor owns every `Conn` in a slab and calls into it with bytes it read and
//! with timer expiries; a `Conn` never touches the poll registry itself. Phases:
//!
//! ```text
//!  accept ──> Handshake ──101──> Open ──close frame / error / timeout──> Closing
//!                │                 │                                      │
//!                └──4xx──┐         └──peer close: reply──┐    peer close ─┘
//!                        v                               v
//!                    Finishing: flush the queue, shutdown(Write), read to EOF, drop
//! ```

pub mod shared;
pub mod transport;
pub mod write_queue;

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use crate::config::{Mode, ServerConfig};
use crate::reactor::stats::Stats;
use crate::reactor::{Dispatch, Handle};
use crate::work::Job;
use crate::ws::close_code;
use crate::ws::deflate::{self, ConnDeflate};
use crate::ws::error::ProtocolError;
use crate::ws::frame::{close_payload, Decoder, Incoming, Opcode};
use crate::ws::handshake::{self, HandshakeError};
use shared::ConnShared;
use transport::Transport;
use write_queue::{BufPool, WriteQueue};

/// A handle on a connection that can outlive it: the slab slot plus the generation the
/// slot had when the connection was accepted. The reactor resolves it in one place
/// (`Reactor::conn_mut`) and drops it when the generation no longer matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ConnId {
    /// Slab index, also the mio token.
    pub slot: u32,
    /// Unique per accepted connection.
    pub gen: u32,
}

/// Where the connection is in its life.
pub enum Phase {
    /// Reading the upgrade request; the bytes so far.
    Handshake(Vec<u8>),
    /// Exchanging messages.
    Open,
    /// The server sent a close frame and waits for the peer's.
    Closing,
    /// Flush what is queued, then shut down writing and read until EOF.
    Finishing {
        /// `shutdown(Write)` already done.
        shut: bool,
    },
    /// Nothing more to do; the reactor frees the slot after the event batch.
    Dead,
}

/// Per-reactor things a connection borrows while it handles an event.
pub struct Shared<'a> {
    /// Settings.
    pub cfg: &'a ServerConfig,
    /// Pooled write buffers.
    pub pool: &'a mut BufPool,
    /// Counters.
    pub stats: &'a mut Stats,
    /// The time of this event batch.
    pub now: Instant,
    /// The reactor's handle, for application connections.
    pub handle: &'a Arc<Handle>,
    /// Jobs this event produced, for the worker pool.
    pub jobs: &'a mut Vec<Job>,
}

/// Application state of a connection (Configurapi mode).
pub struct AppConn {
    /// What worker threads share with the reactor.
    pub shared: Arc<ConnShared>,
    /// on_connect accepted it (or there is none).
    pub accepted: bool,
    /// It is in the reactor's registry of accepted connections.
    pub registered: bool,
    /// on_close has been dispatched.
    pub closed_notified: bool,
    /// Message jobs that arrived before acceptance (6.5.4).
    pub waiting: Vec<Job>,
}

/// Everything of a connection except its decoder, so a decoded message (which borrows
/// the decoder) can be handled with mutable access to the rest.
pub struct ConnState {
    /// Identity in the connection table.
    pub id: ConnId,
    /// The socket, plain or TLS.
    pub sock: Transport,
    /// The peer's address.
    pub peer: SocketAddr,
    /// Life-cycle phase.
    pub phase: Phase,
    /// Bytes waiting for the socket.
    pub wq: WriteQueue,
    /// Interest currently registered with the poll.
    pub registered: Option<mio::Interest>,
    /// When the connection was accepted.
    pub connected_at: Instant,
    /// When bytes last arrived (idle timeout).
    pub last_read: Instant,
    /// When the phase last changed (handshake and close timeouts).
    pub phase_since: Instant,
    /// A keep-alive ping is out and unanswered.
    pub ping_outstanding: bool,
    /// Reading is paused because the write queue is over the high-water mark.
    pub read_paused: bool,
    /// Earliest timer entry this connection has in the reactor's heap.
    pub timer_armed: Option<Instant>,
    /// Configurapi-mode state; `None` in echo mode and before the upgrade.
    pub app: Option<AppConn>,
    /// Since when the queue has been over `max_queued` (the grace period's start).
    pub over_cap_since: Option<Instant>,
    /// Pongs queued since the queue was last empty (see [`PONG_BURST`]).
    pub pongs_queued: u8,
    /// The latest ping's payload, answered once the queue drains: pings beyond the
    /// burst replace each other (RFC 6455 5.5.3) instead of growing the queue.
    pub deferred_pong: Option<Box<[u8]>>,
    /// The most bytes [`ConnState::queued`] has held at once (a high-water mark, not a
    /// sample): noted at every push and after every flush, the only places it grows.
    pub queued_peak: usize,
    /// The largest upgrade head buffer this connection has held, by capacity.
    pub head_peak: usize,
    /// The largest reassembly buffer (a message in progress) this connection has held,
    /// by capacity.
    pub message_peak: usize,
    /// deflate: permessage-deflate state when it was negotiated.
    pub deflate: Option<ConnDeflate>,
}

/// A connection: codec plus state.
pub struct Conn {
    /// Receiving half of the RFC 6455 codec.
    pub dec: Decoder,
    /// The rest.
    pub st: ConnState,
}

/// What a read pass ended with.
pub enum ReadOutcome {
    /// The socket has no more bytes for now.
    WouldBlock,
    /// Stopped early (fairness or backpressure); revisit if not paused.
    Yielded,
    /// EOF or a socket error: the connection is over.
    Closed,
}

/// Reads per readable event before other connections get their turn.
const READS_PER_EVENT: usize = 8;

impl Conn {
    /// A freshly accepted connection.
    pub fn new(
        id: ConnId,
        sock: Transport,
        peer: SocketAddr,
        cfg: &ServerConfig,
        now: Instant,
    ) -> Conn {
        Conn {
            dec: Decoder::new(cfg.limits),
            st: ConnState {
                id,
                sock,
                peer,
                phase: Phase::Handshake(Vec::new()),
                wq: WriteQueue::default(),
                registered: None,
                connected_at: now,
                last_read: now,
                phase_since: now,
                ping_outstanding: false,
                read_paused: false,
                timer_armed: None,
                app: None,
                over_cap_since: None,
                pongs_queued: 0,
                deferred_pong: None,
                queued_peak: 0,
                head_peak: 0,
                message_peak: 0,
                deflate: None,
            },
        }
    }

    /// Read and handle bytes until the socket would block, a limit is hit, or the
    /// connection ends. `rbuf` is the reactor's shared read buffer.
    /// `peer_closed` is the poll's read-closed flag: then the loop reads on to EOF.
    pub fn read_ready(
        &mut self,
        rbuf: &mut [u8],
        peer_closed: bool,
        sh: &mut Shared<'_>,
    ) -> ReadOutcome {
        for _ in 0..READS_PER_EVENT {
            if self.st.reading_blocked() || matches!(self.st.phase, Phase::Dead) {
                return ReadOutcome::Yielded;
            }
            let n = match self.st.sock.read(rbuf) {
                Ok(0) => return ReadOutcome::Closed,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return ReadOutcome::WouldBlock,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => return ReadOutcome::Closed,
            };
            sh.stats.bytes_in += n as u64;
            self.st.last_read = sh.now;
            self.st.ping_outstanding = false;
            self.on_bytes(&mut rbuf[..n], sh);
            // The reassembly buffer only grows inside on_bytes and only shrinks when
            // the connection is idle, so noting it here misses no peak.
            self.st.message_peak = self.st.message_peak.max(self.dec.buffered_capacity());
            if self.st.queued() > sh.cfg.high_water {
                // Backpressure: a peer that does not read its answers stops being read.
                self.st.read_paused = true;
                sh.stats.read_pauses += 1;
                return ReadOutcome::Yielded;
            }
            if n < rbuf.len() && !peer_closed && !self.st.sock.may_have_more() {
                // A short read emptied the socket's receive queue. With edge-triggered
                // polling, bytes that arrive later raise a new event, so the read that
                // would only say WouldBlock is skipped: one syscall less per message.
                return ReadOutcome::WouldBlock;
            }
        }
        ReadOutcome::Yielded
    }

    fn on_bytes(&mut self, data: &mut [u8], sh: &mut Shared<'_>) {
        match &mut self.st.phase {
            Phase::Handshake(buf) => {
                let read = handshake::read_head(buf, data, &sh.cfg.handshake_limits);
                // Noted here: a head that completes is dropped before on_bytes returns.
                self.st.head_peak = self.st.head_peak.max(buf.capacity());
                match read {
                    Ok(None) => {}
                    Ok(Some(_)) if sh.stats.open as usize > sh.cfg.max_connections => {
                        self.reject_handshake(HandshakeError::Overloaded, sh)
                    }
                    // 9.5: the listener stays up during a drain to say so.
                    Ok(Some(_)) if sh.handle.is_draining() => {
                        self.reject_handshake(HandshakeError::Draining, sh)
                    }
                    Ok(Some((req, used))) => {
                        let mut rest = buf.split_off(used);
                        // deflate: answer a permessage-deflate offer and let RSV1 in.
                        let deflate =
                            ConnDeflate::negotiate(req.extension_offers(), &sh.cfg.deflate);
                        let answer = deflate.as_ref().map(|(_, a)| a.as_str());
                        self.st.wq.push_raw(sh.pool, &req.response_with(answer));
                        if let Some((d, _)) = deflate {
                            self.dec.enable_deflate();
                            self.st.deflate = Some(d);
                        }
                        self.st.note_queued();
                        sh.stats.handshakes_ok += 1;
                        self.st.set_phase(Phase::Open, sh.now);
                        if let Mode::App(app) = &sh.cfg.mode {
                            let shared = Arc::new(ConnShared::new(
                                self.st.id,
                                req.subprotocol.clone(),
                                sh.handle.clone(),
                                sh.cfg.high_water,
                                sh.cfg.low_water,
                            ));
                            let on_connect = app.on_open(&shared, &req);
                            self.st.app = Some(AppConn {
                                shared,
                                accepted: on_connect.is_none(),
                                registered: false,
                                closed_notified: false,
                                waiting: Vec::new(),
                            });
                            sh.jobs.extend(on_connect);
                        }
                        log::debug!("{} {}: connection open", self.st.who(), self.st.peer);
                        if !rest.is_empty() {
                            // Frames pipelined with the handshake.
                            self.on_frames(&mut rest, sh);
                        }
                    }
                    Err(e) => self.reject_handshake(e, sh),
                }
            }
            Phase::Open | Phase::Closing => self.on_frames(data, sh),
            // After the close handshake or a failure, input is read and dropped.
            Phase::Finishing { .. } | Phase::Dead => {}
        }
    }

    fn reject_handshake(&mut self, e: HandshakeError, sh: &mut Shared<'_>) {
        sh.stats.record_rejected(&e);
        log::debug!(
            "{}: handshake rejected: {} {}",
            self.st.peer,
            e.status(),
            e.reason()
        );
        self.st.wq.push_raw(sh.pool, &e.response());
        self.st.note_queued();
        self.st.set_phase(Phase::Finishing { shut: false }, sh.now);
    }

    fn on_frames(&mut self, data: &mut [u8], sh: &mut Shared<'_>) {
        let mut pos = 0;
        while pos < data.len() {
            if !matches!(self.st.phase, Phase::Open | Phase::Closing) {
                return;
            }
            let res = match self.dec.decode(&mut data[pos..]) {
                Ok((used, item)) => {
                    pos += used;
                    match item {
                        // deflate: inflated, then handled as any other message.
                        Some(Incoming::Compressed { text, payload }) => {
                            self.st.on_compressed(text, payload, sh)
                        }
                        Some(item) => {
                            self.st.on_item(item, sh);
                            Ok(())
                        }
                        None => Ok(()),
                    }
                }
                Err(e) => Err(e),
            };
            match res {
                Ok(()) => {}
                Err(e) => {
                    log::debug!("{}: protocol error: {e}", self.st.peer);
                    sh.stats.protocol_errors += 1;
                    self.st.fail(e.close_code(), e.reason(), sh);
                    return;
                }
            }
        }
    }

    /// Give back buffers an idle connection does not need.
    pub fn release_idle_buffers(&mut self) {
        self.dec.release_buffers();
    }
}

/// Data frames count as messages out; control frames do not.
fn count_out(opcode: Opcode, stats: &mut Stats) {
    if opcode == Opcode::Text || opcode == Opcode::Binary {
        stats.messages_out += 1;
    }
}

/// Pongs a connection may have queued at once. Pings past it while the peer is not
/// taking its bytes are coalesced into one deferred pong, so a ping flood that is not
/// read costs a bounded queue, while a burst of a few pings (Autobahn 2.10) still gets
/// one pong each.
pub const PONG_BURST: u8 = 16;

/// Messages that may wait for on_connect (6.5.4) before the connection stops being
/// read: a client cannot grow the server's memory while its on_connect is slow.
pub const MAX_WAITING_MESSAGES: usize = 64;

impl ConnState {
    /// Reading is paused: the write queue is over the high-water mark, or on_connect
    /// has not answered and enough messages wait for it. The reactor revisits the
    /// connection when the queue drains or on_connect accepts.
    pub fn reading_blocked(&self) -> bool {
        self.read_paused
            || self
                .app
                .as_ref()
                .is_some_and(|a| !a.accepted && a.waiting.len() >= MAX_WAITING_MESSAGES)
    }

    /// Bytes not yet on the wire: the write queue's plus what the transport holds
    /// (TLS records rustls made and the socket has not taken). Exact.
    #[inline]
    pub fn queued(&self) -> usize {
        self.wq.queued() + self.sock.held()
    }

    /// Raise the recorded peak to what is queued now. Called after everything that can
    /// grow [`ConnState::queued`], so the peak is exact, not sampled.
    #[inline]
    pub fn note_queued(&mut self) {
        let q = self.queued();
        if q > self.queued_peak {
            self.queued_peak = q;
        }
    }

    /// Nothing waits to be written, in the queue or in the transport.
    #[inline]
    pub fn is_flushed(&self) -> bool {
        self.wq.is_empty() && !self.sock.wants_write()
    }

    /// Change phase and restart the phase clock.
    pub fn set_phase(&mut self, phase: Phase, now: Instant) {
        self.phase = phase;
        self.phase_since = now;
    }

    /// deflate: a compressed message, inflated into the thread's buffer (counted against
    /// the message limit as it grows) and handled like an uncompressed one.
    fn on_compressed(
        &mut self,
        text: bool,
        payload: &[u8],
        sh: &mut Shared<'_>,
    ) -> Result<(), ProtocolError> {
        if self.deflate.is_none() {
            return Err(ProtocolError::ReservedBitsSet);
        }
        deflate::with_scratch(|msg| {
            if let Some(d) = self.deflate.as_mut() {
                d.inflate(payload, msg, sh.cfg.limits.max_message)?;
            }
            if text {
                std::str::from_utf8(msg).map_err(|_| ProtocolError::InvalidUtf8)?;
                self.on_item(Incoming::Text(msg), sh);
            } else {
                self.on_item(Incoming::Binary(msg), sh);
            }
            Ok(())
        })
    }

    fn on_item(&mut self, item: Incoming<'_>, sh: &mut Shared<'_>) {
        let closing = matches!(self.phase, Phase::Closing);
        match item {
            Incoming::Text(payload) | Incoming::Binary(payload) if !closing => {
                let opcode = if matches!(item, Incoming::Text(_)) {
                    Opcode::Text
                } else {
                    Opcode::Binary
                };
                sh.stats.messages_in += 1;
                match &sh.cfg.mode {
                    Mode::Echo => self.send_frame(opcode, payload, sh),
                    Mode::App(app) => {
                        let Some(a) = self.app.as_mut() else { return };
                        // Before acceptance the message must wait for on_connect, so it
                        // cannot be answered inline.
                        match app.on_message(&a.shared, opcode == Opcode::Text, payload, a.accepted)
                        {
                            Dispatch::Reply(frame) => {
                                self.send_frame_owned(sh.pool, sh.stats, Opcode::Text, frame)
                            }
                            Dispatch::Later => {}
                            Dispatch::Job(job) if a.accepted => sh.jobs.push(job),
                            Dispatch::Job(job) => a.waiting.push(job),
                        }
                    }
                }
            }
            Incoming::Ping(payload) if !closing => self.answer_ping(payload, sh),
            Incoming::Text(_)
            | Incoming::Binary(_)
            | Incoming::Ping(_)
            | Incoming::Pong(_)
            | Incoming::Compressed { .. } => {}
            Incoming::Close(code) => {
                if !closing {
                    // Answer once with the peer's code (RFC 6455 5.5.1), then close TCP.
                    let (payload, n) = match code {
                        Some((c, _)) => close_payload(c, ""),
                        None => ([0u8; 125], 0),
                    };
                    self.wq.push_frame(sh.pool, Opcode::Close, &payload[..n]);
                    self.note_queued();
                    let code = code.map(|(c, _)| c).unwrap_or(1005);
                    log::debug!(
                        "{} {}: closed by the peer, code {code}",
                        self.who(),
                        self.peer
                    );
                    sh.stats.record_close_sent(code);
                }
                self.set_phase(Phase::Finishing { shut: false }, sh.now);
            }
        }
    }

    fn answer_ping(&mut self, payload: &[u8], sh: &mut Shared<'_>) {
        if self.wq.is_empty() {
            self.pongs_queued = 0;
        }
        if self.pongs_queued < PONG_BURST {
            self.pongs_queued += 1;
            self.wq.push_frame(sh.pool, Opcode::Pong, payload);
            self.note_queued();
        } else {
            if self.deferred_pong.is_some() {
                sh.stats.pongs_coalesced += 1;
            }
            self.deferred_pong = Some(payload.into());
        }
    }

    /// Queue a data or control frame.
    pub fn send_frame(&mut self, opcode: Opcode, payload: &[u8], sh: &mut Shared<'_>) {
        count_out(opcode, sh.stats);
        // deflate: a data message over the threshold goes compressed.
        match self.compress(opcode, payload) {
            Some(z) => self.wq.push_frame_compressed(sh.pool, opcode, z),
            None => self.wq.push_frame(sh.pool, opcode, payload),
        }
        self.note_queued();
    }

    /// Queue a frame whose payload is given away (no copy for large payloads). Takes
    /// the pool and counters apart because the management routes and worker
    /// deliveries hold them as separate borrows.
    pub fn send_frame_owned(
        &mut self,
        pool: &mut BufPool,
        stats: &mut Stats,
        opcode: Opcode,
        payload: Vec<u8>,
    ) {
        count_out(opcode, stats);
        // deflate: as in send_frame.
        match self.compress(opcode, &payload) {
            Some(z) => self.wq.push_frame_compressed(pool, opcode, z),
            None => self.wq.push_frame_owned(pool, opcode, payload),
        }
        self.note_queued();
    }

    /// deflate: the compressed payload of a data message, when deflate is on and the
    /// message is over the threshold.
    fn compress(&mut self, opcode: Opcode, payload: &[u8]) -> Option<Vec<u8>> {
        match (&mut self.deflate, opcode) {
            (Some(d), Opcode::Text | Opcode::Binary) => d.deflate(payload),
            _ => None,
        }
    }

    /// Fail the connection: send a close frame with `code`, then finish.
    pub fn fail(&mut self, code: u16, reason: &str, sh: &mut Shared<'_>) {
        self.send_close(code, reason, sh);
        self.set_phase(Phase::Finishing { shut: false }, sh.now);
    }

    /// Start a server-initiated close handshake: send a close frame and wait for the
    /// peer's answer (up to the close timeout).
    pub fn start_close(&mut self, code: u16, reason: &str, sh: &mut Shared<'_>) {
        match self.phase {
            Phase::Open => {
                self.send_close(code, reason, sh);
                self.set_phase(Phase::Closing, sh.now);
            }
            Phase::Handshake(_) => self.set_phase(Phase::Dead, sh.now),
            _ => {}
        }
    }

    fn send_close(&mut self, code: u16, reason: &str, sh: &mut Shared<'_>) {
        // Nothing may follow a close frame.
        self.deferred_pong = None;
        let (payload, n) = close_payload(code, reason);
        self.wq.push_frame(sh.pool, Opcode::Close, &payload[..n]);
        self.note_queued();
        log::debug!(
            "{} {}: closing, code {code} {reason:?}",
            self.who(),
            self.peer
        );
        sh.stats.record_close_sent(code);
    }

    /// The connection-id the access lines show (`-` in echo mode), so a connection's
    /// open, access and close lines can be joined.
    fn who(&self) -> &str {
        self.app
            .as_ref()
            .map_or("-", |a| a.shared.connection_id.as_str())
    }

    /// Write what is queued. Ends the connection on a socket error; in `Finishing`, shuts
    /// down the write side once the queue is empty.
    pub fn flush(&mut self, sh: &mut Shared<'_>) {
        if matches!(self.phase, Phase::Dead) {
            return;
        }
        let mut before = self.wq.queued();
        let mut flushed = self.wq.flush(&mut self.sock, sh.pool);
        let pong = match flushed {
            Ok(true) => self.deferred_pong.take(),
            _ => None,
        };
        if let Some(pong) = pong {
            // The peer took everything: the latest ping gets its answer now.
            sh.stats.bytes_out += before as u64;
            self.wq.push_frame(sh.pool, Opcode::Pong, &pong);
            self.note_queued();
            self.pongs_queued = 1;
            before = self.wq.queued();
            flushed = self.wq.flush(&mut self.sock, sh.pool);
        }
        let flushed = flushed.and_then(|empty| Ok(self.sock.flush_own()? && empty));
        // Under TLS a flush moves bytes from the queue into records, which adds their
        // overhead to what is held: noted here.
        self.note_queued();
        match flushed {
            Ok(empty) => {
                sh.stats.bytes_out += (before - self.wq.queued()) as u64;
                if empty {
                    if let Phase::Finishing { shut: false } = self.phase {
                        // Our side is done; the peer's FIN (or the timeout) ends it.
                        self.sock.shutdown_write();
                        self.phase = Phase::Finishing { shut: true };
                    }
                }
            }
            Err(_) => {
                self.wq.clear(sh.pool);
                self.set_phase(Phase::Dead, sh.now);
            }
        }
        if self.read_paused && self.queued() <= sh.cfg.low_water {
            self.read_paused = false;
        }
    }

    /// When this connection next needs the timer, from its phase.
    pub fn deadline(&self, cfg: &ServerConfig) -> Option<Instant> {
        match self.phase {
            Phase::Handshake(_) => Some(self.phase_since + cfg.handshake_timeout),
            Phase::Open => {
                let cap = self.over_cap_since.map(|t| t + cfg.queued_grace);
                match (self.idle_deadline(cfg), cap) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                }
            }
            Phase::Closing | Phase::Finishing { .. } => Some(self.phase_since + cfg.close_timeout),
            Phase::Dead => None,
        }
    }

    /// When the idle timer next needs the connection: the keep-alive ping, or the close
    /// once the ping went unanswered.
    fn idle_deadline(&self, cfg: &ServerConfig) -> Option<Instant> {
        if cfg.idle_timeout.is_zero() {
            return None;
        }
        let wait = if self.ping_outstanding {
            cfg.idle_timeout
        } else {
            cfg.idle_timeout / 2
        };
        Some(self.last_read + wait)
    }

    /// The hard cap on queued bytes (`max_queued`): a peer over it for the grace period,
    /// or over twice it at any moment, is closed with 1008. What it has not begun to
    /// receive is dropped, so the close frame is next on the wire and the memory is
    /// freed now rather than when a peer that does not read finally times out.
    pub fn enforce_queued_cap(&mut self, sh: &mut Shared<'_>) {
        if !matches!(self.phase, Phase::Open) {
            self.over_cap_since = None;
            return;
        }
        let queued = self.queued();
        if queued <= sh.cfg.max_queued {
            self.over_cap_since = None;
            return;
        }
        let since = *self.over_cap_since.get_or_insert(sh.now);
        if queued <= sh.cfg.max_queued.saturating_mul(2) && sh.now < since + sh.cfg.queued_grace {
            return;
        }
        let dropped = self.wq.drop_unstarted(sh.pool);
        sh.stats.backpressure_closes += 1;
        log::info!(
            "{}: closed with 1008: {queued} bytes queued (limit {}), {dropped} dropped",
            self.peer,
            sh.cfg.max_queued
        );
        self.over_cap_since = None;
        self.fail(close_code::POLICY_VIOLATION, "backpressure limit", sh);
    }

    /// The deadline passed: act on it.
    pub fn on_timeout(&mut self, sh: &mut Shared<'_>) {
        match self.phase {
            Phase::Handshake(_) => {
                sh.stats.handshake_timeouts += 1;
                *sh.stats
                    .handshakes_rejected_by_reason
                    .entry("timeout")
                    .or_default() += 1;
                self.set_phase(Phase::Dead, sh.now);
            }
            Phase::Open => {
                self.enforce_queued_cap(sh);
                match self.idle_deadline(sh.cfg) {
                    Some(d) if d <= sh.now && matches!(self.phase, Phase::Open) => {}
                    _ => return,
                }
                if self.ping_outstanding {
                    sh.stats.idle_timeouts += 1;
                    self.start_close(close_code::GOING_AWAY, "idle timeout", sh);
                } else {
                    self.ping_outstanding = true;
                    self.wq.push_frame(sh.pool, Opcode::Ping, b"");
                    self.note_queued();
                }
            }
            Phase::Closing | Phase::Finishing { .. } => self.set_phase(Phase::Dead, sh.now),
            Phase::Dead => {}
        }
    }

    /// The poll interest this state needs, or `None` when the socket should be
    /// deregistered.
    pub fn wanted_interest(&self) -> Option<mio::Interest> {
        if matches!(self.phase, Phase::Dead) {
            return None;
        }
        let read = !self.read_paused;
        let write = !self.wq.is_empty() || self.sock.wants_write();
        match (read, write) {
            (true, true) => Some(mio::Interest::READABLE | mio::Interest::WRITABLE),
            (true, false) => Some(mio::Interest::READABLE),
            (false, true) => Some(mio::Interest::WRITABLE),
            // Paused with an empty queue cannot last: flush() unpauses below low water.
            (false, false) => Some(mio::Interest::READABLE),
        }
    }
}
