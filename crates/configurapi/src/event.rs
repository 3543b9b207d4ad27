//! `Request` and `Event` (section 2).

use compact_str::CompactString;
use serde::ser::{Serialize, Serializer};
use serde_json::{Map, Value};
use std::cell::Cell;
use std::fmt;
use std::sync::Arc;
use std::time::Instant;

use super::headers::Headers;

use super::identity::Identity;
use super::js;
use super::path::map_path;
use super::response::{Body, PushDone, PushError, PushSink, Response};

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
    /// The request name (WS messages carry one; HTTP requests leave it empty). Up to 24
    /// bytes it is held inline (no heap block), as the method.
    pub name: CompactString,
    /// The method, lower case; defaults to `get`.
    pub method: CompactString,
    /// Headers, keys as the runner got them (HTTP lowercased, WS as sent, 8.13).
    pub headers: Headers,
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
    // #17 hotsplit: inlined at the runner's opt-level "s" too (docs/size.md, fourth pass).
    #[inline]
    fn default() -> Self {
        Request {
            name: CompactString::const_new(""),
            method: CompactString::const_new("get"),
            headers: Headers::new(),
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
            method: lowercase(method),
            path: path.to_string(),
            path_and_query: path.to_string(),
            ..Request::default()
        }
    }

    /// A request that names its event directly (the WS runner's form).
    pub fn named(name: &str) -> Request {
        Request {
            name: name.into(),
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

/// `s` in lower case (inline when short, as the request keeps it).
pub(crate) fn lowercase(s: &str) -> CompactString {
    if s.bytes().all(|b| b.is_ascii() && !b.is_ascii_uppercase()) {
        s.into()
    } else {
        s.to_lowercase().into()
    }
}

/// An event id (2.1.1): a UUID v4 kept as its 16 bytes and written out (hyphenated,
/// lower case, as JS's `uuid.v4()`) only when something asks for its text: a log line,
/// the JS host, a handler. Compares equal to its text.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct EventId(uuid::Uuid);

impl EventId {
    /// A new random id.
    pub fn new() -> EventId {
        EventId(uuid::Uuid::new_v4())
    }

    /// The id as a UUID.
    pub fn uuid(&self) -> uuid::Uuid {
        self.0
    }

    /// The id's text written into `buf` (no allocation).
    pub fn encode<'b>(&self, buf: &'b mut [u8; 36]) -> &'b str {
        self.0.hyphenated().encode_lower(buf)
    }
}

/// What an id that is written out only when asked shares: it reads, serialises and
/// compares as its text (`encode` into a stack buffer, no allocation).
macro_rules! as_its_text {
    ($t:ty) => {
        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.encode(&mut [0; 36]))
            }
        }

        impl fmt::Debug for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Debug::fmt(self.encode(&mut [0; 36]), f)
            }
        }

        impl Serialize for $t {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.encode(&mut [0; 36]))
            }
        }

        impl PartialEq<str> for $t {
            fn eq(&self, other: &str) -> bool {
                self.encode(&mut [0; 36]) == other
            }
        }

        impl PartialEq<&str> for $t {
            fn eq(&self, other: &&str) -> bool {
                *self == **other
            }
        }

        impl PartialEq<String> for $t {
            fn eq(&self, other: &String) -> bool {
                *self == **other
            }
        }
    };
}

as_its_text!(EventId);

/// A correlation id (2.1.2): the one the request gave, or else its event's own id (then
/// held as those 16 bytes, not as a copy of its text). Compares equal to its text.
#[derive(Clone, PartialEq, Eq)]
pub enum CorrelationId {
    /// The event's id.
    Event(EventId),
    /// From the request (the `correlationid` query key or the `correlation-id` header).
    Given(String),
}

impl Default for CorrelationId {
    fn default() -> Self {
        CorrelationId::Event(EventId::default())
    }
}

impl CorrelationId {
    /// The id's text (borrowed when given, written into `buf` when the event's).
    pub fn encode<'b>(&'b self, buf: &'b mut [u8; 36]) -> &'b str {
        match self {
            CorrelationId::Event(id) => id.encode(buf),
            CorrelationId::Given(s) => s,
        }
    }
}

as_its_text!(CorrelationId);

impl PartialEq<EventId> for CorrelationId {
    fn eq(&self, other: &EventId) -> bool {
        match self {
            CorrelationId::Event(id) => id == other,
            CorrelationId::Given(s) => *other == **s,
        }
    }
}

thread_local! {
    /// This thread's kept event ([`Event::spare`], [`Event::recycle`]).
    static SPARE: Cell<Option<Box<Event>>> = const { Cell::new(None) };
}

/// Entries a kept event's map or header list keeps room for: one that held more is
/// made anew (one huge message must not pin its memory to the thread). A map a handler
/// emptied itself keeps its room (`serde_json::Map` does not tell it): one event's worth
/// a thread at most.
const KEEP: usize = 32;

/// `map` emptied; its room kept when it held at most [`KEEP`] entries.
#[inline(always)]
fn empty(map: &mut Map<String, Value>) {
    if !map.is_empty() {
        empty_now(map);
    }
}

// Out of line (one copy, not one a map): most maps an event has are empty already.
#[inline(never)]
fn empty_now(map: &mut Map<String, Value>) {
    if map.len() > KEEP {
        *map = Map::new();
    } else {
        map.clear();
    }
}

/// `s` emptied; its room kept up to a bound, as for maps.
#[inline(always)]
fn empty_text(s: &mut String) {
    if s.capacity() > KEEP * 8 {
        *s = String::new();
    } else {
        s.clear();
    }
}

/// An event: one request going through the pipeline (2.1).
#[derive(Debug)]
pub struct Event {
    /// A new UUID v4 (2.1.1).
    pub id: EventId,
    /// The correlation id (2.1.2).
    pub correlation_id: CorrelationId,
    /// The event name, used to pick the route (2.1.6, 2.2).
    pub name: CompactString,
    /// The method, possibly changed to `list` (2.2.3).
    pub method: CompactString,
    /// The version segment, only when the path carries one.
    pub version: Option<String>,
    /// Params from the path and query (2.2); runners may set more (6.2.4).
    pub params: Map<String, Value>,
    /// The payload once it differs from the request's ([`Event::payload`]): until a
    /// handler changes it, the event's payload is the request's, not a copy of it.
    payload: Option<Payload>,
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

    /// A blank event as [`Event::blank`] makes, boxed: the one this thread's last
    /// [`Event::recycle`] kept when there is one (its maps and strings are empty but keep
    /// their room, so no map is made or dropped per message), else a new one. Its clock
    /// ([`Event::received`]) is read here.
    // #17 json-event: a runner builds and drops an event per message; reusing one saves
    // the init and copies of ~1 KiB and the making and dropping of five empty maps.
    pub fn spare() -> Box<Event> {
        Event::spare_at(Instant::now())
    }

    /// [`Event::spare`] received at `received` (a clock the caller read already: a
    /// runner's reactor reads one per wake, #17).
    #[inline]
    pub fn spare_at(received: Instant) -> Box<Event> {
        // (The first one of a thread is made out of line: `vacant`'s code, once.)
        // (`try_with`: a thread tearing down its locals makes a new one, no panic.)
        let mut event = SPARE
            .try_with(Cell::take)
            .ok()
            .flatten()
            .unwrap_or_else(|| Box::new(Event::vacant()));
        event.received = received;
        event
    }

    /// Empties `event` (what it holds is dropped now) and keeps it for this thread's
    /// next [`Event::spare`].
    pub fn recycle(mut event: Box<Event>) {
        event.reset();
        // Past a thread's teardown the event is simply dropped.
        let _ = SPARE.try_with(|spare| spare.set(Some(event)));
    }

    /// Puts the event back as [`Event::blank`] made it (but for its clock), keeping the
    /// room its maps, header list and path strings have (up to a bound).
    fn reset(&mut self) {
        let request = &mut self.request;
        request.name = CompactString::const_new("");
        request.method = CompactString::const_new("get");
        if request.headers.capacity() > KEEP {
            request.headers = Headers::new();
        } else {
            request.headers.clear();
        }
        empty(&mut request.params);
        empty(&mut request.query);
        // #17 json-prep: the usual payload and echoed body are strings: freed here, not
        // through the generic drop code's calls (`Value`'s, `Body`'s).
        match std::mem::take(&mut request.payload) {
            Payload::Json(Value::String(s)) | Payload::Text(s) => drop(s),
            other => drop(other),
        }
        empty_text(&mut request.path);
        empty_text(&mut request.path_and_query);
        request.push = None;
        self.id = EventId::default();
        self.correlation_id = CorrelationId::default();
        self.name = CompactString::const_new("");
        self.method = CompactString::const_new("");
        self.version = None;
        empty(&mut self.params);
        self.payload = None;
        let response = &mut self.response;
        response.status_code = 200;
        match std::mem::replace(&mut response.body, Body::Text(String::new())) {
            Body::Json(Value::String(s)) | Body::Text(s) => drop(s),
            other => drop(other),
        }
        empty(&mut response.headers);
        response.error = None;
        if self.identity.is_some() {
            self.identity = None; // (a call to drop even a `None`, else)
        }
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
        let id = EventId::new();
        // #17 json-event: an empty query (the usual) is not looked in.
        let given = match request.query.is_empty() {
            true => None,
            false => request.query.get("correlationid"),
        };
        self.correlation_id = if let Some(v) = given {
            CorrelationId::Given(js::to_text(v))
        } else if let Some(text) = request.headers.text("correlation-id") {
            // #17 json-decode: no `Value` made of a string header held inline.
            CorrelationId::Given(text)
        } else {
            CorrelationId::Event(id)
        };
        self.id = id;
        self.payload = None;
        // #17 json-event: no path segment (every WS message, 6.2.3): 2.2.1 maps
        // nothing, so the name and method are the request's and there are no params.
        // (Segments all empty is a path of slashes only: tested bytewise, as a split
        // costs ~80 instructions even on an empty path.)
        if request.path.bytes().all(|b| b == b'/') {
            self.name = request.name.clone();
            self.method = request.method.clone();
            self.version = None;
            empty(&mut self.params);
            return;
        }
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
    }

    /// What is left in a caller's place when [`Service::start`](crate::Service::start)
    /// takes the event away to suspend it: empty fields, no UUID drawn.
    // Out of line: rare (a suspension, a thread's first spare event), and ~2 KiB.
    #[inline(never)]
    pub(crate) fn vacant() -> Event {
        Event::vacant_with(Request::default())
    }

    #[inline(always)]
    fn vacant_with(request: Request) -> Event {
        Event {
            id: EventId::default(),
            correlation_id: CorrelationId::default(),
            name: CompactString::const_new(""),
            method: CompactString::const_new(""),
            version: None,
            params: Map::new(),
            payload: None,
            request,
            response: Response::default(),
            identity: None,
            received: Instant::now(),
        }
    }

    /// The event's payload (2.1.5): the request's until it is changed.
    pub fn payload(&self) -> &Payload {
        self.payload.as_ref().unwrap_or(&self.request.payload)
    }

    /// The event's payload to change in place; the first change makes the event's own
    /// copy (the request's payload stays as it came).
    pub fn payload_mut(&mut self) -> &mut Payload {
        self.payload
            .get_or_insert_with(|| self.request.payload.clone())
    }

    /// Sets the event's payload (the request's stays as it came).
    pub fn set_payload(&mut self, payload: Payload) {
        self.payload = Some(payload);
    }

    /// True while the event's payload is the request's, unchanged.
    pub fn payload_is_the_requests(&self) -> bool {
        self.payload.is_none()
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
