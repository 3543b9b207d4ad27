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

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use serde_json::{Map, Value};

use crate::configurapi::http::parse_query;
use crate::configurapi::{
    ChunkStream, ErrorResponse, Event, HandlerError, HandlerRegistry, Payload, PushError, PushSink,
    Request, Response, Service,
};
use crate::conn::shared::ConnShared;
use crate::mgmt::{Histogram, MetricsSnapshot};
use crate::reactor::{App, Dispatch};
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
#[derive(Debug, Clone)]
pub struct RunnerOptions {
    /// Base of the `postback-url` header (`http://127.0.0.1:9100` by default when the
    /// management server runs); `None` leaves the header out (8.6).
    pub postback_base: Option<String>,
    /// Run messages whose route is made only of non-blocking handlers on the reactor
    /// thread (default true; `--no-inline` turns it off for comparison).
    pub inline: bool,
}

impl Default for RunnerOptions {
    fn default() -> Self {
        RunnerOptions {
            postback_base: None,
            inline: true,
        }
    }
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
    /// The management listener's URL, the default postback base (8.6).
    management_url: OnceLock<String>,
    metrics: Mutex<RunnerMetrics>,
}

/// Handler latency by route and responses by status, for `/metrics`.
#[derive(Default)]
struct RunnerMetrics {
    latency: BTreeMap<String, Histogram>,
    responses: BTreeMap<u16, u64>,
}

/// Latency of events whose name is no route is recorded under this label, so a client
/// cannot grow the metrics with made-up names.
const UNMATCHED: &str = "(unmatched)";

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
                management_url: OnceLock::new(),
                metrics: Mutex::new(RunnerMetrics::default()),
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

    fn on_message(
        &self,
        conn: &Arc<ConnShared>,
        text: bool,
        payload: &[u8],
        inline_ok: bool,
    ) -> Dispatch {
        let inner = Arc::clone(&self.inner);
        let conn = Arc::clone(conn);
        if !(inline_ok && inner.opts.inline) {
            let payload = payload.to_vec();
            return Dispatch::Job(Box::new(move || {
                let out = inner.handle(&conn, decode_message(text, &payload));
                out.send(conn);
            }));
        }
        // Decode here to learn the route; run it here when every handler it can reach
        // is non-blocking (measured in docs/benchmarks.md: it saves two thread hand-offs
        // per message), else on a worker.
        let decoded = decode_message(text, payload);
        let nonblocking = match &decoded {
            Ok((req, _)) => inner.service.is_nonblocking(&req.name, &req.method),
            Err(_) => true,
        };
        if !nonblocking {
            return Dispatch::Job(Box::new(move || inner.handle(&conn, decoded).send(conn)));
        }
        match inner.handle(&conn, decoded) {
            Outcome::Frame(frame) => Dispatch::Reply(frame),
            stream => Dispatch::Job(Box::new(move || stream.send(conn))),
        }
    }

    fn set_management_url(&self, base: &str) {
        let _ = self.inner.management_url.set(base.to_string());
    }

    fn fill_metrics(&self, m: &mut MetricsSnapshot) {
        let metrics = self.inner.metrics.lock().unwrap_or_else(|e| e.into_inner());
        m.handler_latency = metrics.latency.clone();
        m.responses_by_status = metrics.responses.clone();
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
        // high-water mark; never drop the frame. The reactor wakes this thread when
        // the queue drains. (Streams are paced by their pump; a reply is bounded by the
        // reactor's read pause.)
        self.conn.wait_for_room();
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
        let base = self
            .opts
            .postback_base
            .as_ref()
            .or(self.management_url.get());
        if let Some(base) = base {
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
            .as_deref()
            .cloned();
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
            *conn.identity.lock().unwrap_or_else(|e| e.into_inner()) =
                event.identity.take().map(Box::new);
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

    fn record(&self, name: &str, took: Duration, status: u16) {
        let label = if self.service.has_route(name) {
            name
        } else {
            UNMATCHED
        };
        let mut m = self.metrics.lock().unwrap_or_else(|e| e.into_inner());
        match m.latency.get_mut(label) {
            Some(h) => h.observe(took),
            None => {
                let mut h = Histogram::default();
                h.observe(took);
                m.latency.insert(label.to_string(), h);
            }
        }
        *m.responses.entry(status).or_default() += 1;
    }

    /// Process a decoded message; the answer is not sent yet.
    fn handle(&self, conn: &Arc<ConnShared>, decoded: Decoded) -> Outcome {
        let (request, message_id) = match decoded {
            Ok(r) => r,
            Err(e) => {
                let (err, message_id) = *e;
                // 6.6: a request that cannot be decoded is a SyntaxError: 400.
                let response = ErrorResponse::from_error(&err, 400).to_response();
                return Outcome::Frame(envelope::encode(&response, message_id.as_ref()));
            }
        };
        let mut event = self.event_for(conn, request);
        let started = Instant::now();
        let result = self.service.process(&mut event);
        let mut response = match result {
            Ok(()) => std::mem::take(&mut event.response),
            // 6.6.1: an error that escapes the pipeline (3.2.3) is a 500.
            Err(e) => ErrorResponse::from_error(&e, 500).to_response(),
        };
        self.record(&event.name, started.elapsed(), response.status_code);
        match response.take_stream() {
            Some(stream) => {
                let mut headers = response.headers;
                if let Some(id) = message_id {
                    headers.insert("message-id".into(), id);
                }
                Outcome::Stream {
                    stream,
                    status: response.status_code,
                    headers,
                }
            }
            None => Outcome::Frame(envelope::encode(&response, message_id.as_ref())),
        }
    }
}

/// A processed message: one frame, or a stream to pump.
enum Outcome {
    Frame(Vec<u8>),
    Stream {
        stream: Box<dyn ChunkStream>,
        status: u16,
        headers: Map<String, Value>,
    },
}

impl Outcome {
    /// Send it from a worker thread. A closed connection simply gets nothing; the
    /// reactor counts the drop.
    fn send(self, conn: Arc<ConnShared>) {
        match self {
            Outcome::Frame(frame) => {
                let _ = conn.send_frame(Opcode::Text, frame);
            }
            Outcome::Stream {
                stream,
                status,
                headers,
            } => stream::StreamPump::start(conn, stream, status, headers),
        }
    }
}

/// A decoded message with its message-id, or the decoding error (boxed: it is rare and
/// large) with the message-id when one could be read.
pub(crate) type Decoded = Result<(Request, Option<Value>), Box<(HandlerError, Option<Value>)>>;

/// `{...params, ...query}` with the query winning (2.2.5, 6.2.4).
pub(crate) fn merge_params(
    params: &Map<String, Value>,
    query: &Map<String, Value>,
) -> Map<String, Value> {
    let mut merged = params.clone();
    for (k, v) in query {
        merged.insert(k.clone(), v.clone());
    }
    merged
}

/// A client message to a Request (6.2). The error side carries the message-id when
/// one could be read, so even a 400 can be matched by the client.
pub(crate) fn decode_message(text: bool, bytes: &[u8]) -> Decoded {
    // The Request default method is already `get` (6.2.3).
    let mut request = Request::default();
    let Ok(text) = std::str::from_utf8(bytes) else {
        if text {
            // Cannot happen: the codec validated text frames.
            return Err(Box::new((
                HandlerError::new("Invalid UTF-8 in message."),
                None,
            )));
        }
        // 6.2.7: binary that is not UTF-8 becomes the payload as is.
        request.payload = Payload::Bytes(bytes.to_vec());
        return Ok((request, None));
    };
    let message = match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(m)) => m,
        Ok(_) => {
            // 6.6.2: valid JSON that is not a mapping cannot be a message.
            return Err(Box::new((
                HandlerError::new("The message must be a JSON object."),
                None,
            )));
        }
        Err(_) => {
            // 6.2.2: not JSON: the raw text is the payload.
            request.payload = Payload::Text(text.to_string());
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
        let (req, id) = decode_message(true, b"not json {").unwrap();
        assert_eq!(req.payload, Payload::Text("not json {".into()));
        assert_eq!(req.name, "");
        assert!(id.is_none());
    }

    #[test]
    fn s6_6_2_json_that_is_not_a_mapping_is_a_syntax_error() {
        assert!(decode_message(true, b"42").is_err());
    }

    #[test]
    fn s6_2_3_message_fields_build_the_request() {
        let msg = br#"{"name":"getData","method":"POST","params":{"id":1},"query":{"q":"x"},"headers":{"message-id":"m1"},"payload":null}"#;
        let (req, id) = decode_message(true, msg).unwrap();
        assert_eq!(req.name, "getData");
        assert_eq!(req.method, "post");
        assert_eq!(req.params.get("id"), Some(&Value::from(1)));
        assert_eq!(req.query.get("q"), Some(&Value::from("x")));
        assert_eq!(req.payload, Payload::Json(Value::Null));
        assert_eq!(id, Some(Value::from("m1")));
    }

    #[test]
    fn s6_2_7_binary_that_is_not_utf8_is_the_payload() {
        let (req, _) = decode_message(false, &[0xff, 0x00]).unwrap();
        assert_eq!(req.payload, Payload::Bytes(vec![0xff, 0x00]));
    }
}
