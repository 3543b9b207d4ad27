//! Responses (section 4): [`Response`], its [`Body`], [`ErrorResponse`], and the
//! hooks a runner needs for streamed bodies and pushed responses.

use base64::Engine as _;
use serde_json::{Map, Value};
use std::fmt;
use std::sync::Arc;

use super::handler::HandlerError;

/// One piece of a streamed body (6.4.3): text, bytes or a JSON value.
#[derive(Debug, Clone, PartialEq)]
pub enum Chunk {
    /// A text chunk, sent as a JSON string.
    Text(String),
    /// A byte chunk, sent as text when valid UTF-8 and as base64 otherwise.
    Bytes(Vec<u8>),
    /// An object chunk, sent as JSON.
    Json(Value),
}

/// A producer of body chunks, pulled by the runner on a worker thread.
///
/// `None` ends the stream; `Some(Err(_))` fails it (6.4.4). The runner calls
/// `next_chunk` only when the connection has room, which is the backpressure.
pub trait ChunkStream: Send {
    /// The next chunk, `None` at the end, or the error that ends the stream.
    fn next_chunk(&mut self) -> Option<Result<Chunk, HandlerError>>;

    /// For a producer fed from elsewhere (another process, a channel): a signal that
    /// says when [`ChunkStream::next_chunk`] would answer without waiting, so the
    /// runner's pump waits for it without holding a thread. Default: `None`, and
    /// `next_chunk` may block its thread, as an iterator's `next` does.
    fn ready_signal(&self) -> Option<Arc<dyn ReadySignal>> {
        None
    }
}

/// A job a [`ReadySignal`] runs once its stream is ready.
pub type ReadyJob = Box<dyn FnOnce() + Send + 'static>;

/// See [`ChunkStream::ready_signal`].
pub trait ReadySignal: Send + Sync {
    /// True when `next_chunk` would answer (a chunk, the end or an error) at once.
    fn is_ready(&self) -> bool;

    /// Keeps `wake` and runs it, on whichever thread makes the stream ready, once
    /// `next_chunk` would answer at once; when that is already so, gives `wake` back.
    fn park(&self, wake: ReadyJob) -> Option<ReadyJob>;
}

/// Any iterator of chunk results is a stream.
impl<I> ChunkStream for I
where
    I: Iterator<Item = Result<Chunk, HandlerError>> + Send,
{
    fn next_chunk(&mut self) -> Option<Result<Chunk, HandlerError>> {
        self.next()
    }
}

/// A response body. The variants keep apart what JS keeps apart.
///
/// Cloning a [`Body::Stream`] is impossible (a producer can be drained only
/// once), so `clone()` maps it to [`Body::Absent`]. Take the stream out of the
/// response with [`Response::take_stream`] before anything clones it.
#[derive(Default)]
pub enum Body {
    /// `undefined`: an envelope writes `""` (8.1), HTTP an empty body.
    #[default]
    Absent,
    /// JSON `null`: an envelope writes `null` (8.1), HTTP an empty body (4.4).
    Null,
    /// Any JSON value (mapping, sequence, number, boolean or string).
    Json(Value),
    /// Plain text, written as is.
    Text(String),
    /// Raw bytes, written raw over HTTP and as base64 in envelopes (6.3.3).
    Bytes(Vec<u8>),
    /// A streamed body, pulled chunk by chunk by the runner (6.4.2).
    Stream(Box<dyn ChunkStream>),
}

impl Body {
    /// The body a handler means by a JSON value: `null` is [`Body::Null`], a
    /// string is [`Body::Text`], anything else is [`Body::Json`].
    pub fn from_value(value: Value) -> Body {
        match value {
            Value::Null => Body::Null,
            Value::String(s) => Body::Text(s),
            other => Body::Json(other),
        }
    }

    /// The body as a JSON value, if it has one: text becomes a string, bytes,
    /// streams and absent bodies give `None`.
    pub fn as_value(&self) -> Option<Value> {
        match self {
            Body::Null => Some(Value::Null),
            Body::Json(v) => Some(v.clone()),
            Body::Text(s) => Some(Value::String(s.clone())),
            Body::Absent | Body::Bytes(_) | Body::Stream(_) => None,
        }
    }

    /// True for a stream body.
    pub fn is_stream(&self) -> bool {
        matches!(self, Body::Stream(_))
    }

    /// The HTTP body bytes (4.4 port rule): bytes raw, text as is, mappings
    /// and sequences as JSON, numbers and booleans as their JSON text, null
    /// and absent empty. A stream gives `None`: the runner must pull it.
    pub fn to_http_bytes(&self) -> Option<Vec<u8>> {
        match self {
            Body::Absent | Body::Null => Some(Vec::new()),
            Body::Text(s) => Some(s.clone().into_bytes()),
            Body::Json(Value::String(s)) => Some(s.clone().into_bytes()),
            Body::Json(Value::Null) => Some(Vec::new()),
            Body::Json(v) => Some(v.to_string().into_bytes()),
            Body::Bytes(b) => Some(b.clone()),
            Body::Stream(_) => None,
        }
    }

    /// The value a WebSocket envelope carries (8.1, 6.3.3) and whether it is
    /// base64 (`isBase64Encoded`). Absent is `""`, null is `null`, bytes are
    /// base64. A stream gives `None`: it is sent as chunk frames instead.
    pub fn to_envelope_value(&self) -> Option<(Value, bool)> {
        match self {
            Body::Absent => Some((Value::String(String::new()), false)),
            Body::Null => Some((Value::Null, false)),
            Body::Json(v) => Some((v.clone(), false)),
            Body::Text(s) => Some((Value::String(s.clone()), false)),
            Body::Bytes(b) => Some((
                Value::String(base64::engine::general_purpose::STANDARD.encode(b)),
                true,
            )),
            Body::Stream(_) => None,
        }
    }
}

impl Clone for Body {
    fn clone(&self) -> Self {
        match self {
            Body::Absent | Body::Stream(_) => Body::Absent,
            Body::Null => Body::Null,
            Body::Json(v) => Body::Json(v.clone()),
            Body::Text(s) => Body::Text(s.clone()),
            Body::Bytes(b) => Body::Bytes(b.clone()),
        }
    }
}

impl fmt::Debug for Body {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Body::Absent => f.write_str("Absent"),
            Body::Null => f.write_str("Null"),
            Body::Json(v) => f.debug_tuple("Json").field(v).finish(),
            Body::Text(s) => f.debug_tuple("Text").field(s).finish(),
            Body::Bytes(b) => f.debug_tuple("Bytes").field(&b.len()).finish(),
            Body::Stream(_) => f.write_str("Stream(..)"),
        }
    }
}

impl PartialEq for Body {
    /// Streams never compare equal; everything else compares by content.
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Body::Absent, Body::Absent) | (Body::Null, Body::Null) => true,
            (Body::Json(a), Body::Json(b)) => a == b,
            (Body::Text(a), Body::Text(b)) => a == b,
            (Body::Bytes(a), Body::Bytes(b)) => a == b,
            _ => false,
        }
    }
}

impl From<Value> for Body {
    fn from(value: Value) -> Self {
        Body::from_value(value)
    }
}

impl From<&str> for Body {
    fn from(value: &str) -> Self {
        Body::Text(value.to_string())
    }
}

impl From<String> for Body {
    fn from(value: String) -> Self {
        Body::Text(value)
    }
}

impl From<Vec<u8>> for Body {
    fn from(value: Vec<u8>) -> Self {
        Body::Bytes(value)
    }
}

/// `Response(body = "", statusCode = 200, headers = {})` (4.1).
///
/// `error` is `Some` exactly when this response is an ErrorResponse in the JS
/// sense (`instanceof ErrorResponse`), which is what the pipeline tests in
/// step 3.3.1.4. Handlers may change every field directly.
#[derive(Debug, Clone, PartialEq)]
pub struct Response {
    /// HTTP-style status code.
    pub status_code: u16,
    /// The body.
    pub body: Body,
    /// Headers, written verbatim by runners (4.5); values are JSON values.
    pub headers: Map<String, Value>,
    /// The ErrorResponse fields, when this response is one.
    pub error: Option<ErrorResponse>,
}

impl Default for Response {
    // #17 hotsplit: inlined at the runner's opt-level "s" too (docs/size.md, fourth pass).
    #[inline]
    fn default() -> Self {
        Response::new(Body::Text(String::new()), 200)
    }
}

impl Response {
    /// A response with no headers.
    pub fn new(body: impl Into<Body>, status_code: u16) -> Response {
        Response {
            status_code,
            body: body.into(),
            headers: Map::new(),
            error: None,
        }
    }

    /// `JsonResponse(body, statusCode)` (4.3): the body with
    /// `Content-Type: application/json`.
    pub fn json(body: Value, status_code: u16) -> Response {
        let mut response = Response::new(Body::from_value(body), status_code);
        response.headers.insert(
            "Content-Type".into(),
            Value::String("application/json".into()),
        );
        response
    }

    /// A response whose body is a stream (a StreamResponse, 6.4.2).
    pub fn stream(stream: impl ChunkStream + 'static, status_code: u16) -> Response {
        Response::new(Body::Stream(Box::new(stream)), status_code)
    }

    /// Adds a header, builder style.
    pub fn with_header(mut self, name: &str, value: impl Into<Value>) -> Response {
        self.headers.insert(name.to_string(), value.into());
        self
    }

    /// True when this response is an ErrorResponse (3.3.1 step 4).
    pub fn is_error_response(&self) -> bool {
        self.error.is_some()
    }

    /// Takes a stream body out, leaving [`Body::Absent`] behind.
    pub fn take_stream(&mut self) -> Option<Box<dyn ChunkStream>> {
        match std::mem::take(&mut self.body) {
            Body::Stream(s) => Some(s),
            other => {
                self.body = other;
                None
            }
        }
    }
}

/// `ErrorResponse(message, statusCode = 500, details = "")` (4.2).
///
/// As a [`Response`] it has `Content-Type: application/json` and the body
/// `{"statusCode", "message", "details"}` in that order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorResponse {
    /// The status code, also in the body.
    pub status_code: u16,
    /// The message, also in the body.
    pub message: String,
    /// The details, also in the body.
    pub details: String,
}

impl ErrorResponse {
    /// `ErrorResponse(message, statusCode, details)` for a string message.
    pub fn new(
        message: impl Into<String>,
        status_code: u16,
        details: impl Into<String>,
    ) -> ErrorResponse {
        ErrorResponse {
            status_code,
            message: message.into(),
            details: details.into(),
        }
    }

    /// `ErrorResponse(err, statusCode)` where `err` is a thrown value (4.2):
    /// an error gives its message and display text as details; an
    /// ErrorResponse is copied and `status_code` is ignored; a thrown
    /// non-error value gives its text as the message.
    ///
    /// Runners use this for errors that escape `process()` (4.7, 6.6.1).
    pub fn from_error(err: &HandlerError, status_code: u16) -> ErrorResponse {
        match err {
            HandlerError::Error {
                message, details, ..
            } => ErrorResponse::new(message.clone(), status_code, details.clone()),
            HandlerError::Response(r) => r.clone(),
            HandlerError::Thrown(text) => ErrorResponse::new(text.clone(), status_code, ""),
        }
    }

    /// `ErrorResponse("Not Implemented.", 501, ...)` for an event no route
    /// handled (3.3.1 step 3; the stray trailing `'` is kept on purpose).
    pub fn not_implemented(event_name: &str) -> ErrorResponse {
        ErrorResponse::new(
            "Not Implemented.",
            501,
            format!("Route for '{event_name}' event could not be found.'"),
        )
    }

    /// The JSON body `{"statusCode", "message", "details"}`.
    pub fn body_value(&self) -> Value {
        let mut body = Map::new();
        body.insert("statusCode".into(), Value::from(self.status_code));
        body.insert("message".into(), Value::String(self.message.clone()));
        body.insert("details".into(), Value::String(self.details.clone()));
        Value::Object(body)
    }

    /// This error as a [`Response`] (see the type docs).
    pub fn to_response(&self) -> Response {
        let mut headers = Map::new();
        headers.insert(
            "Content-Type".into(),
            Value::String("application/json".into()),
        );
        Response {
            status_code: self.status_code,
            body: Body::Json(self.body_value()),
            headers,
            error: Some(self.clone()),
        }
    }
}

impl From<ErrorResponse> for Response {
    fn from(value: ErrorResponse) -> Self {
        value.to_response()
    }
}

impl fmt::Display for ErrorResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.message, self.status_code)
    }
}

impl std::error::Error for ErrorResponse {}

/// Why a push failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PushError {
    /// The event has no push sink (it did not come from a push-capable runner).
    Unsupported,
    /// The connection is gone (6.4.1); the string names it.
    Gone(String),
    /// Any other failure.
    Failed(String),
}

impl fmt::Display for PushError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PushError::Unsupported => f.write_str("this event has no push-function"),
            PushError::Gone(id) => write!(f, "connection '{id}' is gone"),
            PushError::Failed(msg) => f.write_str(msg),
        }
    }
}

impl std::error::Error for PushError {}

impl From<PushError> for HandlerError {
    fn from(value: PushError) -> Self {
        let status = if matches!(value, PushError::Gone(_)) {
            410
        } else {
            500
        };
        HandlerError::new(value.to_string()).with_status(status)
    }
}

/// The Rust form of the `push-function` request header (6.2.5): sends a
/// response to the event's client at once. The runner provides it; handlers
/// call [`crate::Event::push`].
///
/// The methods take the `Arc` itself (callers clone it, an atomic increment): a sink
/// that must outlive the call (a stream pump, a push waiting for room) keeps it, so the
/// runner's per-connection value can be the sink and no handle is allocated per event.
pub trait PushSink: Send + Sync {
    /// Sends `response` (a stream body is sent as chunk frames). May block while the
    /// client has no room (6.4.5).
    fn push(self: Arc<Self>, response: Response) -> Result<(), PushError>;

    /// Sends `response` without blocking the caller: `then` gets the result once the
    /// frame is handed over, which may be later, on another thread, when the client
    /// had no room. The default pushes at once with [`PushSink::push`].
    fn push_then(self: Arc<Self>, response: Response, then: PushDone) {
        then(self.push(response));
    }
}

/// What [`PushSink::push_then`] calls with the push's result.
pub type PushDone = Box<dyn FnOnce(Result<(), PushError>) + Send + 'static>;
