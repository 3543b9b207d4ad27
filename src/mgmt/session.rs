//! One management connection: bytes in, answers out. This is all the reactor has to drive
//! per socket besides reading, writing and timeouts.

use super::{handle, MgmtContext, MgmtResponse};
use crate::http::{HttpParser, Limits, Parsed, CONTINUE_RESPONSE};

/// The protocol state of one management connection.
#[derive(Debug)]
pub struct Session {
    parser: HttpParser,
    closing: bool,
    answered: u64,
    /// A request handed to the cluster: its `HEAD` and close flags, kept for the
    /// answer. Input after it waits in `held`, so answers stay in request order.
    parked: Option<(bool, bool)>,
    held: Vec<u8>,
}

impl Session {
    /// A session for a newly accepted connection.
    pub fn new(limits: Limits) -> Session {
        Session {
            parser: HttpParser::new(limits),
            closing: false,
            answered: 0,
            parked: None,
            held: Vec::new(),
        }
    }

    /// Feed bytes read from the socket. Every complete request is answered in order
    /// (pipelined ones included) by appending to `out`; a `100 Continue` is appended when
    /// a client waits for one. Returns `true` when the connection is to be closed once
    /// `out` has been written; input after that point is ignored.
    pub fn on_bytes(
        &mut self,
        mut input: &[u8],
        ctx: &mut dyn MgmtContext,
        out: &mut Vec<u8>,
    ) -> bool {
        if self.parked.is_some() {
            self.held.extend_from_slice(input);
            return self.closing;
        }
        while !self.closing {
            match self.parser.feed(input) {
                Ok(Parsed::Request { request, consumed }) => {
                    input = &input[consumed..];
                    let r = handle(&request, ctx);
                    if r.parked {
                        self.parked = Some((r.head, r.close));
                        self.held.extend_from_slice(input);
                        break;
                    }
                    r.write(out);
                    self.answered += 1;
                    self.closing = r.close;
                }
                Ok(Parsed::NeedMore) => {
                    if self.parser.take_continue() {
                        out.extend_from_slice(CONTINUE_RESPONSE);
                    }
                    break;
                }
                Err(e) => {
                    MgmtResponse::from_http_error(&e).write(out);
                    self.closing = true;
                }
            }
        }
        self.closing
    }

    /// The cluster's answer to the parked request: write it (with the request's `HEAD`
    /// and close flags), then go on with the input that waited behind it.
    pub fn resume(
        &mut self,
        mut r: MgmtResponse,
        ctx: &mut dyn MgmtContext,
        out: &mut Vec<u8>,
    ) -> bool {
        let Some((head, close)) = self.parked.take() else {
            return self.closing;
        };
        r.head = head;
        r.close |= close;
        r.write(out);
        self.answered += 1;
        self.closing = r.close;
        let held = std::mem::take(&mut self.held);
        self.on_bytes(&held, ctx, out)
    }

    /// Whether a request waits for the cluster's answer.
    pub fn is_parked(&self) -> bool {
        self.parked.is_some()
    }

    /// Whether a request has started arriving and is not complete. The reactor may use
    /// it to tell an idle keep-alive connection from a slow request; both time out after
    /// [`super::DEFAULT_IDLE_TIMEOUT`] without a byte.
    pub fn in_progress(&self) -> bool {
        self.parser.in_progress()
    }

    /// How many requests have been answered so far (a request that ends lets the
    /// next one's time to arrive start afresh).
    pub fn answered(&self) -> u64 {
        self.answered
    }

    /// Whether the connection is to be closed (after its last answer is written).
    pub fn is_closing(&self) -> bool {
        self.closing
    }
}
