//! The Configurapi runner: WebSocket messages through the Service pipeline on the
//! worker pool (semantics section 6).
//!
//! The reactor calls [`Runner`] (an [`App`]) on its own thread; each call copies what
//! it needs and returns a job. Jobs build the Event (6.2), run `Service::process`, and
//! send the answer back as one envelope frame (6.3) through the connection's
//! [`ConnShared`], or as a stream of chunk frames (6.4) paced by the connection's exact
//! queued-byte count.

pub mod envelope;
pub mod pack;
mod stream;

use std::sync::Arc;

use serde_json::{Map, Value};

use crate::configurapi::http::parse_query;
use crate::configurapi::{
    ErrorResponse, Event, HandlerError, HandlerRegistry, Payload, PushError, PushSink, Request,
    Response, Service,
};
use crate::conn::shared::ConnShared;
use crate::reactor::App;
use crate::work::Job;
use crate::ws::{Opcode, UpgradeRequest};

/// The built-in config served when there is no `--config` and no `./config.yaml`.
pub const DEFAULT_CONFIG: &str = include_str!("default_config.yaml");

/// A handler registry with the built-in packs plus the runner's own
/// `configurapi-handler-ws` pack (always available, 8.7). Register your own handlers on
/// it before loading the service.
pub fn registry() -> HandlerRegistry {
    let mut r = HandlerRegistry::with_builtins();
    r.add_always_on_pack(pack::pack());
    r
}

/// Runner settings beyond the reactor's.
#[derive(Debug, Clone, Default)]
pub struct RunnerOptions {
    /// Base of the `postback-url` header (`http://127.0.0.1:9100` by default when the
    /// management server runs); `None` leaves the header out (8.6).
    pub postback_base: Option<String>,
}

/// The runner: an [`App`] serving a Configurapi [`Service`].
#[derive(Clone)]
pub struct Runner {
    inner: Arc<Inner>,
}

struct Inner {
    service: Service,
    opts: RunnerOptions,
    has_on_connect: bool,
    has_on_disconnect: bool,
}

impl Runner {
    /// A runner for `service`.
    pub fn new(service: Service, opts: RunnerOptions) -> Runner {
        let has_on_connect = service.has_route("on_connect");
        let has_on_disconnect = service.has_route("on_disconnect");
        Runner {
            inner: Arc::new(Inner {
                service,
                opts,
                has_on_connect,
                has_on_disconnect,
            }),
        }
    }

    /// The service.
    pub fn service(&self) -> &Service {
        &self.inner.service
    }
}

impl App for Runner {
    fn on_open(&self, conn: &Arc<ConnShared>, req: &UpgradeRequest) -> Option<Job> {
        if !self.inner.has_on_connect {
            return None; // 6.5.3: accepted without dispatch
        }
        let inner = Arc::clone(&self.inner);
        let conn = Arc::clone(conn);
        let headers: Vec<(String, String)> = req.headers.clone();
        let query = req.query().to_string();
        Some(Box::new(move || inner.on_connect(&conn, &headers, &query)))
    }

    fn on_message(&self, conn: &Arc<ConnShared>, text: bool, payload: &[u8]) -> Job {
        let inner = Arc::clone(&self.inner);
        let conn = Arc::clone(conn);
        let payload = payload.to_vec();
        Box::new(move || inner.on_message(&conn, text, payload))
    }

    fn on_close(&self, conn: &Arc<ConnShared>) -> Option<Job> {
        if !self.inner.has_on_disconnect {
            return None; // 6.5.6: skipped without a route
        }
        let inner = Arc::clone(&self.inner);
        let conn = Arc::clone(conn);
        Some(Box::new(move || inner.on_disconnect(&conn)))
    }
}

/// How often a push waiting for room looks again (6.4.5 proposes 10-50 ms).
const PUSH_WAIT: std::time::Duration = std::time::Duration::from_millis(10);

/// The `push-function` of events from this runner (6.4.1).
struct Push {
    conn: Arc<ConnShared>,
}

impl PushSink for Push {
    fn push(&self, mut response: Response) -> Result<(), PushError> {
        if self.conn.is_closed() {
            self.conn.count_dropped();
            return Err(PushError::Gone(self.conn.connection_id.clone()));
        }
        // 6.4.1: no message-id is added; the response's own headers may carry one.
        if let Some(stream) = response.take_stream() {
            stream::StreamPump::start(
                Arc::clone(&self.conn),
                stream,
                response.status_code,
                response.headers,
            );
            return Ok(());
        }
        // 6.4.5: before each frame, wait while the client holds more than the
        // high-water mark, checking every 10 ms; never drop the frame. (Streams are
        // paced by their pump; a reply is bounded by the reactor's read pause.)
        while !self.conn.has_room() && !self.conn.is_closed() {
            std::thread::sleep(PUSH_WAIT);
        }
        let frame = envelope::encode(&response, None);
        self.conn
            .send_frame(Opcode::Text, frame)
            .map_err(|_| PushError::Gone(self.conn.connection_id.clone()))
    }
}

impl Inner {
    /// The headers every event of this connection carries (6.2.5).
    fn inject_headers(&self, headers: &mut Map<String, Value>, conn: &ConnShared) {
        headers.insert(
            "connection-id".into(),
            Value::String(conn.connection_id.clone()),
        );
        // The push-function is `Request::push`, outside the map: a client's value
        // must not pass for it. Without a postback base the header is absent (8.6).
        headers.remove("push-function");
        headers.remove("postback-url");
        if let Some(base) = &self.opts.postback_base {
            headers.insert(
                "postback-url".into(),
                Value::String(format!(
                    "{}/@connections/{}",
                    base.trim_end_matches('/'),
                    conn.connection_id
                )),
            );
        }
    }

    fn event_for(&self, conn: &Arc<ConnShared>, mut request: Request) -> Event {
        self.inject_headers(&mut request.headers, conn);
        request.push = Some(Arc::new(Push {
            conn: Arc::clone(conn),
        }));
        let merged = merge_params(&request.params, &request.query);
        let mut event = Event::new(request);
        event.params = merged; // 6.2.4
        event.identity = conn
            .identity
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        event
    }

    fn on_connect(&self, conn: &Arc<ConnShared>, headers: &[(String, String)], query: &str) {
        let mut request = Request::named("on_connect");
        for (name, value) in headers {
            // Repeated headers are joined, as Node's header map does.
            let joined = match request.headers.get(name).and_then(Value::as_str) {
                Some(prev) => format!("{prev}, {value}"),
                None => value.clone(),
            };
            request.headers.insert(name.clone(), Value::String(joined));
        }
        request.query = parse_query(query);
        let mut event = self.event_for(conn, request);
        let accepted = match self.service.process(&mut event) {
            Ok(()) => event.response.status_code < 400,
            Err(_) => false, // 6.5.2: a throwing process() counts as 500
        };
        if accepted {
            // 8.3: the identity carries over to this connection's later events.
            *conn.identity.lock().unwrap_or_else(|e| e.into_inner()) = event.identity.take();
            if conn.claim_accepted() {
                let _ = conn.reactor.accept(conn.id);
            } else if self.has_on_disconnect {
                // The client left while on_connect ran; the connection was accepted
                // all the same, so it gets its on_disconnect (8.11), from here.
                self.on_disconnect(conn);
            }
        } else {
            let _ = conn.reactor.reject(conn.id);
        }
    }

    fn on_disconnect(&self, conn: &Arc<ConnShared>) {
        let mut event = self.event_for(conn, Request::named("on_disconnect"));
        let _ = self.service.process(&mut event);
    }

    fn on_message(&self, conn: &Arc<ConnShared>, text: bool, payload: Vec<u8>) {
        let (request, message_id) = match decode_message(text, payload) {
            Ok(r) => r,
            Err((err, message_id)) => {
                // 6.6: a request that cannot be decoded is a SyntaxError: 400.
                let response = ErrorResponse::from_error(&err, 400).to_response();
                let _ = conn.send_frame(
                    Opcode::Text,
                    envelope::encode(&response, message_id.as_ref()),
                );
                return;
            }
        };
        let mut event = self.event_for(conn, request);
        let response = match self.service.process(&mut event) {
            Ok(()) => std::mem::take(&mut event.response),
            // 6.6.1: an error that escapes the pipeline (3.2.3) is a 500.
            Err(e) => ErrorResponse::from_error(&e, 500).to_response(),
        };
        self.respond(conn, response, message_id);
    }

    fn respond(&self, conn: &Arc<ConnShared>, mut response: Response, message_id: Option<Value>) {
        if let Some(stream) = response.take_stream() {
            let mut headers = response.headers;
            if let Some(id) = message_id {
                headers.insert("message-id".into(), id);
            }
            stream::StreamPump::start(Arc::clone(conn), stream, response.status_code, headers);
            return;
        }
        let frame = envelope::encode(&response, message_id.as_ref());
        // A closed connection simply gets nothing; the reactor counts the drop.
        let _ = conn.send_frame(Opcode::Text, frame);
    }
}

/// `{...params, ...query}` with the query winning (2.2.5, 6.2.4).
fn merge_params(params: &Map<String, Value>, query: &Map<String, Value>) -> Map<String, Value> {
    let mut merged = params.clone();
    for (k, v) in query {
        merged.insert(k.clone(), v.clone());
    }
    merged
}

/// A client message to a Request (6.2). The error side carries the message-id when
/// one could be read, so even a 400 can be matched by the client.
// The error is built once per bad message and consumed at once by the caller; boxing
// it would buy nothing.
#[allow(clippy::result_large_err)]
fn decode_message(
    text: bool,
    bytes: Vec<u8>,
) -> Result<(Request, Option<Value>), (HandlerError, Option<Value>)> {
    // The Request default method is already `get` (6.2.3).
    let mut request = Request::default();
    let text = if text {
        // The codec validated UTF-8 already.
        String::from_utf8(bytes)
            .map_err(|_| (HandlerError::new("Invalid UTF-8 in message."), None))?
    } else {
        match String::from_utf8(bytes) {
            Ok(s) => s,
            Err(e) => {
                // 6.2.7: binary that is not UTF-8 becomes the payload as is.
                request.payload = Payload::Bytes(e.into_bytes());
                return Ok((request, None));
            }
        }
    };
    let message = match serde_json::from_str::<Value>(&text) {
        Ok(Value::Object(m)) => m,
        Ok(_) => {
            // 6.6.2: valid JSON that is not a mapping cannot be a message.
            return Err((
                HandlerError::new("The message must be a JSON object."),
                None,
            ));
        }
        Err(_) => {
            // 6.2.2: not JSON: the raw text is the payload.
            request.payload = Payload::Text(text);
            return Ok((request, None));
        }
    };
    let mut message = message;
    request.name = match message.get("name") {
        Some(Value::String(s)) => s.clone(),
        Some(v @ (Value::Number(_) | Value::Bool(_))) => v.to_string(),
        _ => String::new(),
    };
    if let Some(Value::String(m)) = message.get("method") {
        request.method = m.to_lowercase();
    }
    if let Some(Value::Object(q)) = message.remove("query") {
        request.query = q;
    }
    if let Some(Value::Object(p)) = message.remove("params") {
        request.params = p;
    }
    if let Some(Value::Object(h)) = message.remove("headers") {
        request.headers = h;
    }
    if let Some(p) = message.remove("payload") {
        request.payload = Payload::Json(p);
    }
    let message_id = request.headers.get("message-id").cloned();
    Ok((request, message_id))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn s6_2_2_invalid_json_becomes_the_raw_payload() {
        let (req, id) = decode_message(true, b"not json {".to_vec()).unwrap();
        assert_eq!(req.payload, Payload::Text("not json {".into()));
        assert_eq!(req.name, "");
        assert!(id.is_none());
    }

    #[test]
    fn s6_6_2_json_that_is_not_a_mapping_is_a_syntax_error() {
        assert!(decode_message(true, b"42".to_vec()).is_err());
    }

    #[test]
    fn s6_2_3_message_fields_build_the_request() {
        let msg = br#"{"name":"getData","method":"POST","params":{"id":1},"query":{"q":"x"},"headers":{"message-id":"m1"},"payload":null}"#;
        let (req, id) = decode_message(true, msg.to_vec()).unwrap();
        assert_eq!(req.name, "getData");
        assert_eq!(req.method, "post");
        assert_eq!(req.params.get("id"), Some(&Value::from(1)));
        assert_eq!(req.query.get("q"), Some(&Value::from("x")));
        assert_eq!(req.payload, Payload::Json(Value::Null));
        assert_eq!(id, Some(Value::from("m1")));
    }

    #[test]
    fn s6_2_7_binary_that_is_not_utf8_is_the_payload() {
        let (req, _) = decode_message(false, vec![0xff, 0x00]).unwrap();
        assert_eq!(req.payload, Payload::Bytes(vec![0xff, 0x00]));
    }
}
