//! One WebSocket session above the codec, sans-IO: the close handshake (RFC 6455 7.1)
//! and the ping/pong and idle policy. It takes decoded items and timer expiries and
//! answers what to do (hand a message on, send this control frame, finish); `conn/`
//! keeps the bytes, the transport, the write queue and the timers.
//!
//! ```text
//!   Open ──close()──────────► CloseSent ──peer's close──► Done
//!    │                                                     ▲
//!    └──peer's close: answer it──► CloseReceived ──────────┘ (the TCP close follows)
//!   fail(): a close frame with the error's code, then Done
//! ```

use std::time::Duration;

use crate::conn::tick;

use super::frame::{close_payload, Incoming, Message};

/// Pongs a connection may have queued at once. Pings past it while the peer is not
/// taking its bytes are coalesced into one deferred pong, so a ping flood that is not
/// read costs a bounded queue, while a burst of a few pings (Autobahn 2.10) still gets
/// one pong each.
pub const PONG_BURST: u8 = 16;

/// Where the close handshake is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Messages flow both ways.
    Open,
    /// We sent a close frame and wait for the peer's; its messages are dropped.
    CloseSent,
    /// The peer sent a close frame and we answered it.
    CloseReceived,
    /// The handshake is over (or failed): nothing more is read or sent.
    Done,
}

/// A close frame's payload: code and reason, at most 125 bytes.
#[derive(Clone, Copy)]
pub struct ClosePayload {
    buf: [u8; 125],
    len: usize,
    /// The code it carries (1005, "no status", for an empty payload).
    pub code: u16,
}

impl ClosePayload {
    fn new(code: u16, reason: &str) -> ClosePayload {
        let (buf, len) = close_payload(code, reason);
        ClosePayload { buf, len, code }
    }

    /// The bytes to put in the close frame.
    pub fn bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

/// What to do with a decoded item.
pub enum Step<'a> {
    /// A complete message for the application.
    Message(Message<'a>),
    /// Send a pong with this payload now.
    Pong(&'a [u8]),
    /// The pong is deferred until the queue drains ([`Session::take_deferred_pong`]);
    /// `coalesced`: it replaced an earlier deferred one.
    PongDeferred {
        /// An earlier deferred pong was dropped for this one.
        coalesced: bool,
    },
    /// The peer's close: send this answer (with the peer's code), then finish the TCP
    /// connection.
    AnswerClose(ClosePayload),
    /// The peer answered our close: finish the TCP connection.
    Closed,
    /// Nothing to do (a pong, or data after a close).
    Ignore,
}

/// What the idle timer decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Idle {
    /// Send a keep-alive ping (empty payload).
    Ping,
    /// The ping went unanswered: close with 1001.
    Close,
}

/// One session's protocol state.
#[derive(Debug)]
pub struct Session {
    state: State,
    /// A keep-alive ping is out and nothing has arrived since.
    ping_outstanding: bool,
    /// Pongs queued since the write queue was last empty (see [`PONG_BURST`]).
    pongs_queued: u8,
    /// The latest ping's payload, answered once the queue drains: pings beyond the
    /// burst replace each other (RFC 6455 5.5.3) instead of growing the queue.
    /// Boxed thin (one word), not `Box<[u8]>` (two): every connection has the field.
    deferred_pong: Option<Box<PongPayload>>,
}

/// A deferred pong's payload (a ping's: at most 125 bytes).
pub struct PongPayload {
    len: u8,
    buf: [u8; 125],
}

impl PongPayload {
    fn new(payload: &[u8]) -> Box<PongPayload> {
        // The decoder refuses control frames over 125 bytes.
        let len = payload.len().min(125);
        let mut p = Box::new(PongPayload {
            len: len as u8,
            buf: [0; 125],
        });
        p.buf[..len].copy_from_slice(&payload[..len]);
        p
    }

    /// The bytes to put in the pong.
    pub fn bytes(&self) -> &[u8] {
        &self.buf[..self.len as usize]
    }
}

impl std::fmt::Debug for PongPayload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.bytes().fmt(f)
    }
}

impl Default for Session {
    fn default() -> Self {
        Session::new()
    }
}

impl Session {
    /// A session that has just been upgraded.
    pub fn new() -> Session {
        Session {
            state: State::Open,
            ping_outstanding: false,
            pongs_queued: 0,
            deferred_pong: None,
        }
    }

    /// Where the close handshake is.
    pub fn state(&self) -> State {
        self.state
    }

    /// A decoded item arrived. `queue_empty`: nothing waits to be written to the
    /// peer (then the pong burst starts again).
    pub fn on_item<'a>(&mut self, item: Incoming<'a>, queue_empty: bool) -> Step<'a> {
        let open = self.state == State::Open;
        match item {
            Incoming::Text(text) if open => Step::Message(Message::Text(text)),
            Incoming::Binary(payload) if open => Step::Message(Message::Binary(payload)),
            Incoming::Ping(payload) if open => {
                if queue_empty {
                    self.pongs_queued = 0;
                }
                if self.pongs_queued < PONG_BURST {
                    self.pongs_queued += 1;
                    Step::Pong(payload)
                } else {
                    let coalesced = self
                        .deferred_pong
                        .replace(PongPayload::new(payload))
                        .is_some();
                    Step::PongDeferred { coalesced }
                }
            }
            // A compressed message reaches the session inflated, as Text or Binary (the
            // connection owns the inflater); data after a close is dropped.
            Incoming::Text(_)
            | Incoming::Binary(_)
            | Incoming::Ping(_)
            | Incoming::Pong(_)
            | Incoming::Compressed { .. } => Step::Ignore,
            Incoming::Close(code) => match self.state {
                // Answer once with the peer's code (RFC 6455 5.5.1), then close TCP.
                State::Open => {
                    self.state = State::CloseReceived;
                    self.deferred_pong = None;
                    Step::AnswerClose(match code {
                        Some((c, _)) => ClosePayload::new(c, ""),
                        None => ClosePayload {
                            buf: [0; 125],
                            len: 0,
                            code: 1005,
                        },
                    })
                }
                _ => {
                    self.state = State::Done;
                    Step::Closed
                }
            },
        }
    }

    /// Start a server-initiated close: the close frame to send, or `None` when the
    /// session is not open (a close is already under way).
    pub fn close(&mut self, code: u16, reason: &str) -> Option<ClosePayload> {
        if self.state != State::Open {
            return None;
        }
        self.state = State::CloseSent;
        // Nothing may follow a close frame.
        self.deferred_pong = None;
        Some(ClosePayload::new(code, reason))
    }

    /// Fail the session (a protocol error, the backpressure cap): the close frame to
    /// send; the session is done.
    pub fn fail(&mut self, code: u16, reason: &str) -> ClosePayload {
        self.state = State::Done;
        self.deferred_pong = None;
        ClosePayload::new(code, reason)
    }

    /// Bytes arrived from the peer: it is alive.
    pub fn on_read(&mut self) {
        self.ping_outstanding = false;
    }

    /// When the idle timer next needs the session, given when bytes last arrived:
    /// the keep-alive ping at half of `timeout`, the close a half later. `None` when
    /// idle timeouts are off (zero) or the session is not open.
    /// Times are milliseconds ([`tick::ms`]).
    pub fn idle_deadline(&self, last_read: u64, timeout: Duration) -> Option<u64> {
        if timeout.is_zero() || self.state != State::Open {
            return None;
        }
        let wait = if self.ping_outstanding {
            timeout
        } else {
            timeout / 2
        };
        Some(last_read.saturating_add(tick::dur_ms(wait)))
    }

    /// The idle deadline passed.
    pub fn on_idle(&mut self) -> Idle {
        if self.ping_outstanding {
            Idle::Close
        } else {
            self.ping_outstanding = true;
            Idle::Ping
        }
    }

    /// The write queue drained: the deferred pong's payload, to send now.
    pub fn take_deferred_pong(&mut self) -> Option<Box<PongPayload>> {
        let pong = self.deferred_pong.take()?;
        self.pongs_queued = 1;
        Some(pong)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ws::frame::{Decoder, Limits};

    /// Decode one masked client frame from bytes and give it to the session.
    fn feed(s: &mut Session, bytes: &[u8], queue_empty: bool) -> String {
        let mut dec = Decoder::new();
        let mut buf = bytes.to_vec();
        let (_, item) = dec
            .decode(&mut buf, &Limits::default())
            .expect("a valid frame");
        match s.on_item(item.expect("a whole frame"), queue_empty) {
            Step::Message(m) => {
                format!("message {} {:?}", matches!(m, Message::Text(_)), m.bytes())
            }
            Step::Pong(p) => format!("pong {p:?}"),
            Step::PongDeferred { coalesced } => format!("deferred {coalesced}"),
            Step::AnswerClose(c) => format!("answer {} {:?}", c.code, c.bytes()),
            Step::Closed => "closed".into(),
            Step::Ignore => "ignore".into(),
        }
    }

    // Masked with key 0,0,0,0 so the payload reads as-is.
    const TEXT_HI: &[u8] = b"\x81\x82\0\0\0\0hi";
    const PING_P: &[u8] = b"\x89\x81\0\0\0\0p";
    const PONG: &[u8] = b"\x8a\x80\0\0\0\0";
    const CLOSE_1000: &[u8] = b"\x88\x82\0\0\0\0\x03\xe8";
    const CLOSE_EMPTY: &[u8] = b"\x88\x80\0\0\0\0";

    #[test]
    fn open_session_passes_messages_on_and_answers_pings() {
        let mut s = Session::new();
        assert_eq!(feed(&mut s, TEXT_HI, true), "message true [104, 105]");
        assert_eq!(feed(&mut s, PING_P, true), "pong [112]");
        assert_eq!(feed(&mut s, PONG, true), "ignore");
        assert_eq!(s.state(), State::Open);
    }

    #[test]
    fn peer_close_is_answered_once_with_its_code_then_the_session_is_done() {
        let mut s = Session::new();
        assert_eq!(feed(&mut s, CLOSE_1000, true), "answer 1000 [3, 232]");
        assert_eq!(s.state(), State::CloseReceived);
        // Data after the close is dropped; a second close ends it.
        assert_eq!(feed(&mut s, TEXT_HI, true), "ignore");
        assert_eq!(feed(&mut s, CLOSE_1000, true), "closed");
        assert_eq!(s.state(), State::Done);
    }

    #[test]
    fn peer_close_without_a_code_is_answered_with_an_empty_close() {
        let mut s = Session::new();
        assert_eq!(feed(&mut s, CLOSE_EMPTY, true), "answer 1005 []");
    }

    #[test]
    fn server_close_waits_for_the_peer_and_drops_its_data_meanwhile() {
        let mut s = Session::new();
        let c = s.close(1001, "bye").expect("open");
        assert_eq!(c.bytes(), b"\x03\xe9bye");
        assert_eq!(s.state(), State::CloseSent);
        assert!(s.close(1000, "").is_none(), "one close frame only");
        assert_eq!(feed(&mut s, TEXT_HI, true), "ignore");
        assert_eq!(feed(&mut s, PING_P, true), "ignore");
        assert_eq!(feed(&mut s, CLOSE_1000, true), "closed");
        assert_eq!(s.state(), State::Done);
    }

    #[test]
    fn pings_past_the_burst_are_coalesced_into_one_deferred_pong() {
        let mut s = Session::new();
        for _ in 0..PONG_BURST {
            assert_eq!(feed(&mut s, PING_P, false), "pong [112]");
        }
        assert_eq!(feed(&mut s, PING_P, false), "deferred false");
        assert_eq!(feed(&mut s, b"\x89\x81\0\0\0\0q", false), "deferred true");
        let pong = s.take_deferred_pong().map(|p| p.bytes().to_vec());
        assert_eq!(pong, Some(b"q".to_vec()));
        assert!(s.take_deferred_pong().is_none());
        // An empty queue starts a new burst.
        assert_eq!(feed(&mut s, PING_P, true), "pong [112]");
    }

    #[test]
    fn a_close_drops_the_deferred_pong() {
        let mut s = Session::new();
        for _ in 0..=PONG_BURST {
            feed(&mut s, PING_P, false);
        }
        assert!(s.close(1000, "").is_some());
        assert!(s.take_deferred_pong().is_none());
    }

    #[test]
    fn idle_policy_pings_at_half_the_timeout_then_closes() {
        let mut s = Session::new();
        let t0 = 1_000;
        let timeout = Duration::from_secs(10);
        assert_eq!(s.idle_deadline(t0, timeout), Some(6_000));
        assert_eq!(s.on_idle(), Idle::Ping);
        assert_eq!(s.idle_deadline(t0, timeout), Some(11_000));
        assert_eq!(s.on_idle(), Idle::Close);
        // Bytes from the peer answer the ping.
        s.on_read();
        assert_eq!(s.on_idle(), Idle::Ping);
        assert_eq!(s.idle_deadline(t0, Duration::ZERO), None, "off");
        s.fail(1002, "protocol error");
        assert_eq!(s.idle_deadline(t0, timeout), None, "not open");
    }
}
