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
}

impl Session {
    /// A session for a newly accepted connection.
    pub fn new(limits: Limits) -> Session {
        Session {
            parser: HttpParser::new(limits),
            closing: false,
            answered: 0,
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
        while !self.closing {
            match self.parser.feed(input) {
                Ok(Parsed::Request { request, consumed }) => {
                    input = &input[consumed..];
                    let r = handle(&request, ctx);
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
