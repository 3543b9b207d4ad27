//! The `push-function` of this runner's events (6.4.1, 6.4.5): a response pushed to the
//! connection outside any request, waiting for room without holding a thread.

use std::sync::Arc;

use super::conn::Connection;
use super::stream;
use crate::configurapi::{PushDone, PushError, PushSink, Response};
use crate::envelope;
use crate::link::Busy;
use crate::ws::Opcode;

/// The `push-function` of events from this runner (6.4.1) is the connection itself:
/// each event holds one more reference to it, no handle is allocated per message.
impl PushSink for Connection {
    fn push(self: Arc<Self>, mut response: Response) -> Result<(), PushError> {
        if self.is_closed() {
            self.count_dropped();
            return Err(PushError::Gone(self.connection_id_string()));
        }
        // 6.4.1: no message-id is added; the response's own headers may carry one.
        if let Some(stream) = response.take_stream() {
            let (status, headers) = (response.status_code, response.headers);
            stream::StreamPump::start(self, stream, status, headers);
            return Ok(());
        }
        // 6.4.5: before each frame, wait while the client holds more than the
        // high-water mark; never drop the frame. The reactor wakes this thread when
        // the queue drains. (Streams are paced by their pump; a reply is bounded by the
        // reactor's read pause.)
        self.wait_for_room();
        let frame = envelope::encode(&response, None);
        self.send_frame(Opcode::Text, frame)
            .map_err(|_| PushError::Gone(self.connection_id_string()))
    }

    fn push_then(self: Arc<Self>, response: Response, then: PushDone) {
        if self.is_closed() || response.body.is_stream() {
            // Nothing to wait for: a stream is paced by its own pump.
            then(self.push(response));
            return;
        }
        let frame = envelope::encode(&response, None);
        Box::new(PendingPush {
            _busy: self.begin(),
            conn: self,
            frame: Some(frame),
            then: Some(then),
        })
        .run();
    }
}

/// A push waiting for room (6.4.5) without a thread: parked on the connection like a
/// stream pump, resumed on a worker when the queue drains under the low-water mark.
/// Dropped while parked (the client left), it reports the connection gone.
struct PendingPush {
    /// A drain waits for the push (9.5).
    _busy: Busy,
    conn: Arc<Connection>,
    frame: Option<Vec<u8>>,
    then: Option<PushDone>,
}

impl PendingPush {
    fn run(self: Box<Self>) {
        let mut me = Some(self);
        loop {
            let p = me.as_mut().expect("here until parked or done");
            if p.conn.is_closed() || p.conn.has_room() {
                let frame = p.frame.take().unwrap_or_default();
                let sent = p
                    .conn
                    .send_frame(Opcode::Text, frame)
                    .map_err(|_| PushError::Gone(p.conn.connection_id_string()));
                if let Some(then) = p.then.take() {
                    then(sent);
                }
                return;
            }
            let conn = Arc::clone(&p.conn);
            let parked = conn.park_with(|| {
                let p = me.take().expect("taken once, when parking");
                Box::new(move || p.run())
            });
            if parked {
                return;
            }
        }
    }
}

impl Drop for PendingPush {
    fn drop(&mut self) {
        if let Some(then) = self.then.take() {
            self.conn.count_dropped();
            then(Err(PushError::Gone(self.conn.connection_id_string())));
        }
    }
}
