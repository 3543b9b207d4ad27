//! `Request` and `Event` (section 2).

use serde_json::{Map, Value};
use std::fmt;
use std::sync::Arc;
use std::time::Instant;

use super::identity::Identity;
use super::js;
use super::path::map_path;
use super::response::{PushDone, PushError, PushSink, Response};

/// A request payload: absent (JS `undefined`), a JSON value, text, or bytes.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum Payload {
    /// No payload (`undefined`).
    #[default]
    Absent,
    /// A parsed JSON value (including `null` and strings).
    Json(Value),
    /// Text (a `text/*` body, or a WS message that is not JSON).
    Text(String),
    /// Raw bytes.
    Bytes(Vec<u8>),
}

impl Payload {
    /// JS truthiness: bytes are an object, so truthy even when empty.
    pub fn is_truthy(&self) -> bool {
        match self {
            Payload::Absent => false,
            Payload::Json(v) => js::is_truthy(v),
            Payload::Text(s) => !s.is_empty(),
            Payload::Bytes(_) => true,
        }
    }

    /// The payload as a JSON value, if it is JSON or text.
    pub fn as_value(&self) -> Option<Value> {
        match self {
            Payload::Json(v) => Some(v.clone()),
            Payload::Text(s) => Some(Value::String(s.clone())),
            Payload::Absent | Payload::Bytes(_) => None,
        }
    }
}

/// The runner's request object (2.1.3): `{name, method, headers, params,
/// payload, query, path, pathAndQuery}`, plus the push hook.
#[derive(Clone)]
pub struct Request {
    /// The request name (WS messages carry one; HTTP requests leave it empty).
    pub name: String,
    /// The method, lower case; defaults to `get`.
    pub method: String,
    /// Headers, keys as the runner got them (HTTP lowercased, WS as sent, 8.13).
    pub headers: Map<String, Value>,
    /// Params given by the runner.
    pub params: Map<String, Value>,
    /// The payload.
    pub payload: Payload,
    /// The parsed query (a mapping, as 2.1.4 requires).
    pub query: Map<String, Value>,
    /// The path; `""` for WS messages (6.2.3).
    pub path: String,
    /// Path and query as received.
    pub path_and_query: String,
    /// The Rust form of the `push-function` header (6.2.5), set by the runner.
    pub push: Option<Arc<dyn PushSink>>,
}

impl Default for Request {
    fn default() -> Self {
        Request {
            name: String::new(),
            method: "get".to_string(),
            headers: Map::new(),
            params: Map::new(),
            payload: Payload::Absent,
            query: Map::new(),
            path: String::new(),
            path_and_query: String::new(),
            push: None,
        }
    }
}

impl Request {
    /// A request with this method (lowercased) and path, defaults elsewhere.
    pub fn new(method: &str, path: &str) -> Request {
        Request {
            method: method.to_lowercase(),
            path: path.to_string(),
            path_and_query: path.to_string(),
            ..Request::default()
        }
    }

    /// A request that names its event directly (the WS runner's form).
    pub fn named(name: &str) -> Request {
        Request {
            name: name.to_string(),
            ..Request::default()
        }
    }
}

impl fmt::Debug for Request {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Request")
            .field("name", &self.name)
            .field("method", &self.method)
            .field("headers", &self.headers)
            .field("params", &self.params)
            .field("payload", &self.payload)
            .field("query", &self.query)
            .field("path", &self.path)
            .field("path_and_query", &self.path_and_query)
            .field("push", &self.push.as_ref().map(|_| "PushSink"))
            .finish()
    }
}

/// `map.get(key)`; a short map is scanned instead of hashing the key (the same answer:
/// keys are unique).
fn get_small<'a>(map: &'a Map<String, Value>, key: &str) -> Option<&'a Value> {
    if map.len() > 8 {
        return map.get(key);
    }
    map.iter().find(|(k, _)| *k == key).map(|(_, v)| v)
}

/// A new UUID v4 in its hyphenated lower-case form, written into one exact allocation
/// (not through `fmt`).
fn new_id() -> String {
    let mut buf = uuid::Uuid::encode_buffer();
    let id: &str = uuid::Uuid::new_v4().hyphenated().encode_lower(&mut buf);
    id.to_owned()
}

/// An event: one request going through the pipeline (2.1).
#[derive(Debug)]
pub struct Event {
    /// A new UUID v4 (2.1.1).
    pub id: String,
    /// The correlation id (2.1.2).
    pub correlation_id: String,
    /// The event name, used to pick the route (2.1.6, 2.2).
    pub name: String,
    /// The method, possibly changed to `list` (2.2.3).
    pub method: String,
    /// The version segment, only when the path carries one.
    pub version: Option<String>,
    /// Params from the path and query (2.2); runners may set more (6.2.4).
    pub params: Map<String, Value>,
    /// The payload, initially the request's.
    pub payload: Payload,
    /// The request as the runner built it.
    pub request: Request,
    /// The response so far; starts as `Response("", 200, {})`.
    pub response: Response,
    /// The identity, set by a handler (3.1.6) and read by the runner (8.3).
    pub identity: Option<Identity>,
    /// When the event was built: `logResponseHandler`'s latency is measured from it.
    /// One clock read per event (about 20 ns), next to the UUID it already makes.
    pub received: Instant,
}

impl Event {
    /// Builds an event from a request (2.1, 2.2).
    pub fn new(request: Request) -> Event {
        let mut event = Event::vacant_with(request);
        event.begin();
        event
    }

    /// An event whose request is still to be filled in where it lies (a runner decodes
    /// a message straight into `event.request`), then [`Event::begin`] builds the rest:
    /// the same event as [`Event::new`] of that request, without moving the request and
    /// the event (about 1 KiB together) from frame to frame. Its clock
    /// ([`Event::received`]) is read here.
    // Inlined: built in the caller's slot (a call returned it by copying it twice).
    #[inline(always)]
    pub fn blank() -> Event {
        Event::vacant_with(Request::default())
    }

    /// What [`Event::new`] derives from the request (2.1, 2.2), for an event made with
    /// [`Event::blank`] once its request is filled in: id, correlation id, name, method,
    /// version, params and payload.
    pub fn begin(&mut self) {
        let request = &mut self.request;
        if !request
            .method
            .bytes()
            .all(|b| b.is_ascii() && !b.is_ascii_uppercase())
        {
            request.method = request.method.to_lowercase();
        }
        let id = new_id();
        self.correlation_id = if let Some(v) = request.query.get("correlationid") {
            js::to_text(v)
        } else if let Some(v) = get_small(&request.headers, "correlation-id") {
            js::to_text(v)
        } else {
            id.clone()
        };
        self.id = id;
        let key = map_path(
            &request.name,
            &request.method,
            &request.path,
            &request.query,
        );
        self.name = key.name;
        self.method = key.method;
        self.version = key.version;
        self.params = key.params;
        self.payload = request.payload.clone();
    }

    /// What is left in a caller's place when [`Service::start`](crate::Service::start)
    /// takes the event away to suspend it: empty fields, no UUID drawn.
    pub(crate) fn vacant() -> Event {
        Event::vacant_with(Request::default())
    }

    #[inline(always)]
    fn vacant_with(request: Request) -> Event {
        Event {
            id: String::new(),
            correlation_id: String::new(),
            name: String::new(),
            method: String::new(),
            version: None,
            params: Map::new(),
            payload: Payload::Absent,
            request,
            response: Response::default(),
            identity: None,
            received: Instant::now(),
        }
    }

    /// Sends a response to this event's client at once, through the
    /// runner's push sink (the `push-function` header, 6.4.1).
    pub fn push(&self, response: Response) -> Result<(), PushError> {
        match &self.request.push {
            Some(sink) => Arc::clone(sink).push(response),
            None => Err(PushError::Unsupported),
        }
    }

    /// [`Event::push`] without blocking: `then` gets the result, possibly later and on
    /// another thread (after the client made room). With a [`Context::defer`]'s
    /// completion in `then`, a handler waits for room holding no thread.
    ///
    /// [`Context::defer`]: crate::Context::defer
    pub fn push_then(&self, response: Response, then: PushDone) {
        match &self.request.push {
            Some(sink) => Arc::clone(sink).push_then(response, then),
            None => then(Err(PushError::Unsupported)),
        }
    }
}
