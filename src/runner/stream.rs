//! Streamed responses (6.4): one frame per chunk with `x-stream: chunk` and one
//! `x-stream-id`, then a `done` frame; paced by the connection's exact byte count.
//!
//! A pump sends chunks while the connection holds less than the high-water mark. When
//! it is over, the pump parks itself on the connection and its worker goes back to the
//! pool; the reactor resubmits the pump when the queue drains under the low-water mark.
//! No thread waits and nothing polls. When the client goes, the reactor drops the parked
//! pump, and a running pump sees the closed flag before its next chunk: either way the
//! producer is dropped and stops.
//!
//! A producer fed from elsewhere (a JS stream) has a [`ReadySignal`]: while its next
//! chunk is not there the pump parks on the signal instead, and the thread that
//! delivers the chunk runs it on.

use std::sync::Arc;

use serde_json::{Map, Value};

use super::conn::Connection;
use super::MessageId; // #17 json-decode
use crate::configurapi::{ChunkStream, ErrorResponse, ReadySignal};
use crate::envelope;
use crate::link::Busy;
use crate::ws::Opcode;

pub(crate) struct StreamPump {
    /// A drain waits for the done frame (9.5).
    _busy: Busy,
    conn: Arc<Connection>,
    stream: Box<dyn ChunkStream>,
    status: u16,
    headers: Map<String, Value>,
    message_id: Option<MessageId>, // #17 json-decode
    stream_id: String,
    ready: Option<Arc<dyn ReadySignal>>,
}

impl StreamPump {
    /// Start pumping on the current thread (a worker).
    pub(crate) fn start(
        conn: Arc<Connection>,
        stream: Box<dyn ChunkStream>,
        status: u16,
        mut headers: Map<String, Value>,
    ) {
        // The message-id goes last in every frame's headers (after x-stream*).
        let message_id = headers.remove("message-id").map(MessageId::from); // #17 json-decode
        Box::new(StreamPump {
            _busy: conn.begin(),
            conn,
            ready: stream.ready_signal(),
            stream,
            status,
            headers,
            message_id,
            stream_id: uuid::Uuid::new_v4().to_string(),
        })
        .run();
    }

    fn frame(&self, status: u16, kind: &str, body: &Value, base64: bool) -> Vec<u8> {
        envelope::encode_parts(
            status,
            &self.headers,
            &[("x-stream", kind), ("x-stream-id", &self.stream_id)],
            self.message_id.as_ref(),
            body,
            base64,
        )
    }

    fn run(self: Box<Self>) {
        let mut me = Some(self);
        loop {
            let pump = me
                .as_mut()
                .expect("the pump is here until it parks or ends");
            if pump.conn.is_closed() {
                return;
            }
            if !pump.conn.has_room() {
                let conn = Arc::clone(&pump.conn);
                let parked = conn.park_with(|| {
                    let pump = me.take().expect("taken once, when parking");
                    Box::new(move || pump.run())
                });
                if parked {
                    return;
                }
                continue;
            }
            if let Some(signal) = pump.ready.clone() {
                if !signal.is_ready() {
                    let pump = me.take().expect("taken once, when parking");
                    if let Some(wake) = signal.park(Box::new(move || pump.run())) {
                        wake(); // it became ready meanwhile
                    }
                    return;
                }
            }
            let (frame, last) = match pump.stream.next_chunk() {
                Some(Ok(chunk)) => {
                    let (body, base64) = envelope::chunk_value(chunk);
                    (pump.frame(pump.status, "chunk", &body, base64), false)
                }
                None => (
                    pump.frame(pump.status, "done", &Value::String(String::new()), false),
                    true,
                ),
                Some(Err(e)) => {
                    // 6.4.4: a failure ends the stream with a 500 done frame.
                    let err = ErrorResponse::from_error(&e, 500);
                    (pump.frame(500, "done", &err.body_value(), false), true)
                }
            };
            if pump.conn.send_frame(Opcode::Text, frame).is_err() || last {
                return;
            }
        }
    }
}
