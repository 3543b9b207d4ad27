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

pub mod tick;
pub mod transport;
pub mod write_queue;

use std::fmt;
use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use crate::config::ServerConfig;
use crate::stats::Stats;
use crate::ws::close_code;
use crate::ws::deflate::{self, ConnDeflate};
use crate::ws::error::ProtocolError;
use crate::ws::frame::{Decoder, Incoming, Message, Opcode};
use crate::ws::handshake::{self, HandshakeError, UpgradeRequest};
use crate::ws::session::{ClosePayload, Idle, Session, Step};
use tick::Tick;
use transport::Transport;
use write_queue::{BufPool, WriteQueue};

pub use crate::link::ConnId;

/// Where a connection reports what happened to it; the reactor implements it and
/// passes the events on to the application (or echoes, in echo mode). `A` is the
/// value the reactor keeps with the connection, which `conn` never looks into.
pub trait Sink<A> {
    /// The upgrade succeeded (the 101 is queued, the phase is `Open`).
    fn upgraded(
        &mut self,
        st: &mut ConnState,
        ext: &mut A,
        req: &UpgradeRequest,
        sh: &mut Shared<'_>,
    );
    /// A complete message arrived.
    fn message(&mut self, st: &mut ConnState, ext: &mut A, msg: Message<'_>, sh: &mut Shared<'_>);
    /// Reading should stop for now for a reason of the receiver's own.
    fn holds_reading(&self, ext: &A) -> bool;
}

/// Where the connection is in its life.
pub enum Phase {
    /// Reading the upgrade request (the bytes so far are in the decoder's buffer,
    /// [`Decoder::head_buf`]).
    Handshake,
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
    /// The same, as milliseconds since the connection clock's epoch ([`tick::ms`]).
    pub ms: u64,
    /// Set while the server drains (9.5): upgrades are refused.
    pub draining: &'a AtomicBool,
}

/// Everything of a connection except its decoder, so a decoded message (which borrows
/// the decoder) can be handled with mutable access to the rest.
///
/// Kept small (#17, docs/limits.md "Per-connection layout"): times are 32-bit ticks,
/// the peer's address is asked of the socket when a log line or the management API
/// wants it, and the high-water marks go straight into the reactor's `Stats`.
pub struct ConnState {
    /// Identity in the connection table.
    pub id: ConnId,
    /// The socket, plain or TLS.
    pub sock: Transport,
    /// Bytes waiting for the socket.
    pub wq: WriteQueue,
    /// The WebSocket session: close handshake, ping/pong and idle policy (sans-IO).
    pub session: Session,
    /// The name in log lines (the application's, e.g. the runner's connection-id).
    pub label: Option<Arc<str>>,
    /// deflate: permessage-deflate state when it was negotiated. Boxed: most
    /// connections never negotiate it, and idle connections should stay small.
    pub deflate: Option<Box<ConnDeflate>>,
    /// Earliest timer entry this connection has in the reactor's heap, in milliseconds
    /// ([`tick::ms`]); `u64::MAX` when it has none.
    pub timer_armed: u64,
    /// When the connection was accepted.
    pub connected_at: Tick,
    /// When bytes last arrived (idle timeout).
    pub last_read: Tick,
    /// When the phase last changed (handshake and close timeouts).
    pub phase_since: Tick,
    /// Since when the queue has been over `max_queued` (the grace period's start).
    pub over_cap_since: Option<Tick>,
    /// Life-cycle phase.
    pub phase: Phase,
    /// Interest currently registered with the poll.
    pub registered: Option<mio::Interest>,
    /// Reading is paused because the write queue is over the high-water mark.
    pub read_paused: bool,
}

/// The peer's address for a log line, asked of the socket only when the line is
/// written (`-` once the socket no longer knows it).
pub struct Peer<'a>(&'a Transport);

impl fmt::Display for Peer<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0.peer_addr() {
            Ok(a) => write!(f, "{a}"),
            Err(_) => f.write_str("-"),
        }
    }
}

/// A connection: codec plus state, plus the reactor's value `ext` for it.
pub struct Conn<A> {
    /// Receiving half of the RFC 6455 codec.
    pub dec: Decoder,
    /// The rest.
    pub st: ConnState,
    /// The reactor's (the application's) value; opaque here.
    pub ext: A,
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

impl<A> Conn<A> {
    /// A freshly accepted connection.
    pub fn new(id: ConnId, sock: Transport, now: Instant, ext: A) -> Conn<A> {
        let now = Tick::at(tick::ms(now));
        Conn {
            ext,
            dec: Decoder::new(),
            st: ConnState {
                id,
                sock,
                wq: WriteQueue::default(),
                session: Session::new(),
                label: None,
                deflate: None,
                timer_armed: u64::MAX,
                connected_at: now,
                last_read: now,
                phase_since: now,
                over_cap_since: None,
                phase: Phase::Handshake,
                registered: None,
                read_paused: false,
            },
        }
    }

    /// Read and handle bytes until the socket would block, a limit is hit, or the
    /// connection ends. `rbuf` is the reactor's shared read buffer.
    /// `peer_closed` is the poll's read-closed flag: then the loop reads on to EOF.
    // #17 hotsplit: inlined at the runner's opt-level "s" too (docs/size.md, fourth pass).
    #[inline]
    pub fn read_ready(
        &mut self,
        rbuf: &mut [u8],
        peer_closed: bool,
        sh: &mut Shared<'_>,
        sink: &mut impl Sink<A>,
    ) -> ReadOutcome {
        for _ in 0..READS_PER_EVENT {
            if self.reading_blocked(sink) || matches!(self.st.phase, Phase::Dead) {
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
            self.st.last_read = Tick::at(sh.ms);
            self.st.session.on_read();
            self.on_bytes(&mut rbuf[..n], sh, sink);
            // The reassembly buffer only grows inside on_bytes and only shrinks when
            // the connection is idle, so noting it here misses no peak. (Before the
            // upgrade it holds the request head, noted in on_bytes.)
            if !matches!(self.st.phase, Phase::Handshake) {
                let cap = self.dec.buffered_capacity() as u64;
                let peak = &mut sh.stats.message_buffered_peak;
                *peak = (*peak).max(cap);
            }
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

    /// Reading is paused: the write queue is over the high-water mark, or the sink
    /// holds it (the runner, while enough messages wait for on_connect). The reactor
    /// revisits the connection when the queue drains or the sink lets go.
    pub fn reading_blocked(&self, sink: &impl Sink<A>) -> bool {
        self.st.read_paused || sink.holds_reading(&self.ext)
    }

    fn on_bytes(&mut self, data: &mut [u8], sh: &mut Shared<'_>, sink: &mut impl Sink<A>) {
        match &mut self.st.phase {
            Phase::Handshake => {
                let buf = self.dec.head_buf();
                let read = handshake::read_head(buf, data, &sh.cfg.handshake_limits);
                // Noted here: a head that completes is dropped before on_bytes returns.
                let peak = &mut sh.stats.head_buffered_peak;
                *peak = (*peak).max(buf.capacity() as u64);
                match read {
                    Ok(None) => {}
                    Ok(Some(_)) if sh.stats.open as usize > sh.cfg.max_connections => {
                        self.reject_handshake(HandshakeError::Overloaded, sh)
                    }
                    // 9.5: the listener stays up during a drain to say so.
                    Ok(Some(_)) if sh.draining.load(Ordering::Relaxed) => {
                        self.reject_handshake(HandshakeError::Draining, sh)
                    }
                    Ok(Some((req, used))) => {
                        // The head is done with: the buffer becomes the decoder's again.
                        let mut rest = buf.split_off(used);
                        *buf = Vec::new();
                        // deflate: answer a permessage-deflate offer and let RSV1 in.
                        let deflate =
                            ConnDeflate::negotiate(req.extension_offers(), &sh.cfg.deflate);
                        let answer = deflate.as_ref().map(|(_, a)| a.as_str());
                        self.st.wq.push_raw(sh.pool, &req.response_with(answer));
                        if let Some((d, _)) = deflate {
                            self.dec.enable_deflate();
                            self.st.deflate = Some(Box::new(d));
                        }
                        self.st.note_queued(sh.stats);
                        sh.stats.handshakes_ok += 1;
                        self.st.set_phase(Phase::Open, sh.ms);
                        sink.upgraded(&mut self.st, &mut self.ext, &req, sh);
                        log::debug!("{} {}: connection open", self.st.who(), self.st.peer());
                        if !rest.is_empty() {
                            // Frames pipelined with the handshake.
                            self.on_frames(&mut rest, sh, sink);
                        }
                    }
                    Err(e) => self.reject_handshake(e, sh),
                }
            }
            Phase::Open | Phase::Closing => self.on_frames(data, sh, sink),
            // After the close handshake or a failure, input is read and dropped.
            Phase::Finishing { .. } | Phase::Dead => {}
        }
    }

    fn reject_handshake(&mut self, e: HandshakeError, sh: &mut Shared<'_>) {
        sh.stats.record_rejected(&e);
        log::debug!(
            "{}: handshake rejected: {} {}",
            self.st.peer(),
            e.status(),
            e.reason()
        );
        self.st.wq.push_raw(sh.pool, &e.response());
        self.st.note_queued(sh.stats);
        self.st.set_phase(Phase::Finishing { shut: false }, sh.ms);
    }

    fn on_frames(&mut self, data: &mut [u8], sh: &mut Shared<'_>, sink: &mut impl Sink<A>) {
        let mut pos = 0;
        while pos < data.len() {
            if !matches!(self.st.phase, Phase::Open | Phase::Closing) {
                return;
            }
            let res = match self.dec.decode(&mut data[pos..], &sh.cfg.limits) {
                Ok((used, item)) => {
                    pos += used;
                    match item {
                        // deflate: inflated, then handled as any other message.
                        Some(Incoming::Compressed { text, payload }) => {
                            self.st
                                .on_compressed(text, payload, &mut self.ext, sh, sink)
                        }
                        Some(item) => {
                            self.st.on_item(item, &mut self.ext, sh, sink);
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
                    log::debug!("{}: protocol error: {e}", self.st.peer());
                    sh.stats.protocol_errors += 1;
                    self.st.fail(e.close_code(), e.reason(), sh);
                    return;
                }
            }
        }
    }

    /// Give back buffers an idle connection does not need (not the request head
    /// being read, which shares the decoder's buffer).
    pub fn release_idle_buffers(&mut self) {
        if !matches!(self.st.phase, Phase::Handshake) {
            self.dec.release_buffers();
        }
    }

    /// Bytes held for reading: the request head so far, or a message in progress.
    pub fn read_buffered(&self) -> usize {
        self.dec.buffered_capacity()
    }
}

/// Data frames count as messages out; control frames do not.
fn count_out(opcode: Opcode, stats: &mut Stats) {
    if opcode == Opcode::Text || opcode == Opcode::Binary {
        stats.messages_out += 1;
    }
}

impl ConnState {
    /// Bytes not yet on the wire: the write queue's plus what the transport holds
    /// (TLS records rustls made and the socket has not taken). Exact.
    #[inline]
    pub fn queued(&self) -> usize {
        self.wq.queued() + self.sock.held()
    }

    /// Raise the recorded peak (`Stats::queued_bytes_peak`, the largest of any
    /// connection) to what is queued now. Called after everything that can grow
    /// [`ConnState::queued`], so the peak is exact, not sampled.
    #[inline]
    pub fn note_queued(&self, stats: &mut Stats) {
        let q = self.queued() as u64;
        if q > stats.queued_bytes_peak {
            stats.queued_bytes_peak = q;
        }
    }

    /// The peer's address, for log lines (asked of the socket when written).
    pub fn peer(&self) -> Peer<'_> {
        Peer(&self.sock)
    }

    /// Nothing waits to be written, in the queue or in the transport.
    #[inline]
    pub fn is_flushed(&self) -> bool {
        self.wq.is_empty() && !self.sock.wants_write()
    }

    /// Change phase and restart the phase clock.
    pub fn set_phase(&mut self, phase: Phase, now_ms: u64) {
        self.phase = phase;
        self.phase_since = Tick::at(now_ms);
    }

    /// deflate: a compressed message, inflated into the thread's buffer (counted against
    /// the message limit as it grows) and handled like an uncompressed one.
    fn on_compressed<A>(
        &mut self,
        text: bool,
        payload: &[u8],
        ext: &mut A,
        sh: &mut Shared<'_>,
        sink: &mut impl Sink<A>,
    ) -> Result<(), ProtocolError> {
        if self.deflate.is_none() {
            return Err(ProtocolError::ReservedBitsSet);
        }
        deflate::with_scratch(|msg| {
            if let Some(d) = self.deflate.as_mut() {
                d.inflate(payload, msg, sh.cfg.limits.max_message)?;
            }
            if text {
                let msg = std::str::from_utf8(msg).map_err(|_| ProtocolError::InvalidUtf8)?;
                self.on_item(Incoming::Text(msg), ext, sh, sink);
            } else {
                self.on_item(Incoming::Binary(msg), ext, sh, sink);
            }
            Ok(())
        })
    }

    fn on_item<A>(
        &mut self,
        item: Incoming<'_>,
        ext: &mut A,
        sh: &mut Shared<'_>,
        sink: &mut impl Sink<A>,
    ) {
        match self.session.on_item(item, self.wq.is_empty()) {
            Step::Message(msg) => {
                sh.stats.messages_in += 1;
                sink.message(self, ext, msg, sh);
            }
            Step::Pong(payload) => {
                self.wq.push_frame(sh.pool, Opcode::Pong, payload);
                self.note_queued(sh.stats);
            }
            Step::PongDeferred { coalesced } => {
                if coalesced {
                    sh.stats.pongs_coalesced += 1;
                }
            }
            Step::Ignore => {}
            Step::AnswerClose(answer) => {
                self.wq.push_frame(sh.pool, Opcode::Close, answer.bytes());
                self.note_queued(sh.stats);
                log::debug!(
                    "{} {}: closed by the peer, code {}",
                    self.who(),
                    self.peer(),
                    answer.code
                );
                sh.stats.record_close_sent(answer.code);
                self.set_phase(Phase::Finishing { shut: false }, sh.ms);
            }
            Step::Closed => self.set_phase(Phase::Finishing { shut: false }, sh.ms),
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
        self.note_queued(sh.stats);
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
        self.note_queued(stats);
    }

    /// Queue a frame whose payload `write` appends, written in place in the queue (no
    /// buffer of its own: an inline answer, #17). `hint`: a guess of its size.
    pub fn send_frame_with(
        &mut self,
        pool: &mut BufPool,
        stats: &mut Stats,
        opcode: Opcode,
        hint: usize,
        write: &mut dyn FnMut(&mut Vec<u8>),
    ) {
        if self.deflate.is_some() {
            // deflate: compressed from a buffer of its own, as in send_frame.
            let mut payload = Vec::with_capacity(hint);
            write(&mut payload);
            return self.send_frame_owned(pool, stats, opcode, payload);
        }
        count_out(opcode, stats);
        self.wq.push_frame_with(pool, opcode, hint, write);
        self.note_queued(stats);
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
        let close = self.session.fail(code, reason);
        self.send_close(close, reason, sh);
        self.set_phase(Phase::Finishing { shut: false }, sh.ms);
    }

    /// Start a server-initiated close handshake: send a close frame and wait for the
    /// peer's answer (up to the close timeout).
    pub fn start_close(&mut self, code: u16, reason: &str, sh: &mut Shared<'_>) {
        match self.phase {
            Phase::Open => {
                if let Some(close) = self.session.close(code, reason) {
                    self.send_close(close, reason, sh);
                    self.set_phase(Phase::Closing, sh.ms);
                }
            }
            Phase::Handshake => self.set_phase(Phase::Dead, sh.ms),
            _ => {}
        }
    }

    fn send_close(&mut self, close: ClosePayload, reason: &str, sh: &mut Shared<'_>) {
        let code = close.code;
        self.wq.push_frame(sh.pool, Opcode::Close, close.bytes());
        self.note_queued(sh.stats);
        log::debug!(
            "{} {}: closing, code {code} {reason:?}",
            self.who(),
            self.peer()
        );
        sh.stats.record_close_sent(code);
    }

    /// The connection-id the access lines show (`-` in echo mode), so a connection's
    /// open, access and close lines can be joined.
    fn who(&self) -> &str {
        self.label.as_deref().unwrap_or("-")
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
            Ok(true) => self.session.take_deferred_pong(),
            _ => None,
        };
        if let Some(pong) = pong {
            // The peer took everything: the latest ping gets its answer now.
            sh.stats.bytes_out += before as u64;
            self.wq.push_frame(sh.pool, Opcode::Pong, pong.bytes());
            self.note_queued(sh.stats);
            before = self.wq.queued();
            flushed = self.wq.flush(&mut self.sock, sh.pool);
        }
        let flushed = flushed.and_then(|empty| Ok(self.sock.flush_own()? && empty));
        // Under TLS a flush moves bytes from the queue into records, which adds their
        // overhead to what is held: noted here.
        self.note_queued(sh.stats);
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
                self.set_phase(Phase::Dead, sh.ms);
            }
        }
        if self.read_paused && self.queued() <= sh.cfg.low_water {
            self.read_paused = false;
        }
    }

    /// When this connection next needs the timer, from its phase, in milliseconds
    /// ([`tick::ms`]); `now_ms` is the current time (the ticks are read against it).
    pub fn deadline(&self, cfg: &ServerConfig, now_ms: u64) -> Option<u64> {
        let after = |t: Tick, d| t.ms(now_ms).saturating_add(tick::dur_ms(d));
        match self.phase {
            Phase::Handshake => Some(after(self.phase_since, cfg.handshake_timeout)),
            Phase::Open => {
                let cap = self.over_cap_since.map(|t| after(t, cfg.queued_grace));
                match (self.idle_deadline(cfg, now_ms), cap) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                }
            }
            Phase::Closing | Phase::Finishing { .. } => {
                Some(after(self.phase_since, cfg.close_timeout))
            }
            Phase::Dead => None,
        }
    }

    /// When the idle timer next needs the connection: the keep-alive ping, or the close
    /// once the ping went unanswered.
    // #17 hotsplit: inlined at the runner's opt-level "s" too (docs/size.md, fourth pass).
    #[inline]
    fn idle_deadline(&self, cfg: &ServerConfig, now_ms: u64) -> Option<u64> {
        self.session
            .idle_deadline(self.last_read.ms(now_ms), cfg.idle_timeout)
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
        let since = self.over_cap_since.get_or_insert(Tick::at(sh.ms)).ms(sh.ms);
        let grace_ends = since.saturating_add(tick::dur_ms(sh.cfg.queued_grace));
        if queued <= sh.cfg.max_queued.saturating_mul(2) && sh.ms < grace_ends {
            return;
        }
        let dropped = self.wq.drop_unstarted(sh.pool);
        sh.stats.backpressure_closes += 1;
        log::info!(
            "{}: closed with 1008: {queued} bytes queued (limit {}), {dropped} dropped",
            self.peer(),
            sh.cfg.max_queued
        );
        self.over_cap_since = None;
        self.fail(close_code::POLICY_VIOLATION, "backpressure limit", sh);
    }

    /// The deadline passed: act on it.
    pub fn on_timeout(&mut self, sh: &mut Shared<'_>) {
        match self.phase {
            Phase::Handshake => {
                sh.stats.handshake_timeouts += 1;
                *sh.stats
                    .handshakes_rejected_by_reason
                    .entry("timeout")
                    .or_default() += 1;
                self.set_phase(Phase::Dead, sh.ms);
            }
            Phase::Open => {
                self.enforce_queued_cap(sh);
                match self.idle_deadline(sh.cfg, sh.ms) {
                    Some(d) if d <= sh.ms && matches!(self.phase, Phase::Open) => {}
                    _ => return,
                }
                match self.session.on_idle() {
                    Idle::Close => {
                        sh.stats.idle_timeouts += 1;
                        self.start_close(close_code::GOING_AWAY, "idle timeout", sh);
                    }
                    Idle::Ping => {
                        self.wq.push_frame(sh.pool, Opcode::Ping, b"");
                        self.note_queued(sh.stats);
                    }
                }
            }
            Phase::Closing | Phase::Finishing { .. } => self.set_phase(Phase::Dead, sh.ms),
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
