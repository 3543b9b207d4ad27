//! The Configurapi runner: WebSocket messages through the Service pipeline on the
//! worker pool (semantics section 6).
//!
//! The reactor calls [`Runner`] (an [`App`]) on its own thread; each call copies what
//! it needs and returns a job. Jobs build the Event (6.2), run `Service::start`, and
//! send the answer back as one envelope frame (6.3) through the connection's
//! [`ConnShared`], or as a stream of chunk frames (6.4) paced by the connection's exact
//! queued-byte count. A pipeline whose handler defers holds no thread; it resumes on the
//! worker pool and sends its answer from there (`Answer`).

pub mod envelope;
pub mod pack;
mod stream;
mod timer;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::{Duration, Instant};

use serde_json::{Map, Value};

use crate::configurapi::http::parse_query;
use crate::configurapi::service::NameMap;
use crate::configurapi::{
    ChunkStream, ErrorResponse, Event, Finish, HandlerError, HandlerRegistry, Payload, PushDone,
    PushError, PushSink, Request, Response, RunHere, Schedule, Service, Started,
};
use crate::conn::shared::{Busy, ConnShared};
use crate::mgmt::{Histogram, MetricsSnapshot, LATENCY_BUCKETS};
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

/// The runner: an [`App`] serving a Configurapi [`Service`], which
/// [`Runner::reload`] replaces while it serves.
#[derive(Clone)]
pub struct Runner {
    /// The current service and what goes with it. Each message takes the current one
    /// and keeps it to its end: a reload never changes a request under way.
    inner: Arc<RwLock<Arc<Inner>>>,
}

struct Inner {
    service: Arc<Service>,
    /// Where suspended pipelines resume: the worker pool once the reactor has started
    /// it, else the resolving thread.
    resume: OnceLock<Arc<dyn Schedule>>,
    opts: RunnerOptions,
    has_on_connect: bool,
    has_on_disconnect: bool,
    /// The management listener's URL, the default postback base (8.6).
    management_url: OnceLock<String>,
    metrics: RunnerMetrics,
}

/// Handler latency by route and responses by status, for `/metrics`. Counted with
/// atomics: recording a message takes no lock (the label set is fixed at start).
struct RunnerMetrics {
    /// Index into `latency` of each route name.
    labels: NameMap<usize>,
    /// Index into `latency` of [`UNMATCHED`].
    unmatched: usize,
    /// Shared with the metrics of the configs before and after a reload, so a route
    /// that stays keeps its series.
    latency: Vec<(String, Arc<AtomicHistogram>)>,
    /// Responses by status, for statuses under [`STATUS_SLOTS`].
    responses: Arc<[AtomicU64]>,
    /// Responses with any other status (a handler may set any `u16`).
    responses_other: Arc<Mutex<BTreeMap<u16, u64>>>,
}

/// Statuses counted without a lock: every status a handler sensibly sets.
const STATUS_SLOTS: usize = 1000;

impl RunnerMetrics {
    fn new(service: &Service) -> RunnerMetrics {
        RunnerMetrics::carried(
            service,
            None,
            (0..STATUS_SLOTS).map(|_| AtomicU64::new(0)).collect(),
            Arc::default(),
        )
    }

    /// The metrics of a reloaded config: the counters go on, the series of routes
    /// that stay go on, a new route starts its own.
    fn reloaded(&self, service: &Service) -> RunnerMetrics {
        RunnerMetrics::carried(
            service,
            Some(self),
            Arc::clone(&self.responses),
            Arc::clone(&self.responses_other),
        )
    }

    fn carried(
        service: &Service,
        old: Option<&RunnerMetrics>,
        responses: Arc<[AtomicU64]>,
        responses_other: Arc<Mutex<BTreeMap<u16, u64>>>,
    ) -> RunnerMetrics {
        let mut labels = NameMap::default();
        let mut latency = Vec::new();
        // A route named like UNMATCHED shares its series, as it did when labels were
        // map keys.
        for name in service.route_names().into_iter().chain([UNMATCHED]) {
            if !labels.contains_key(name) {
                let series = old
                    .and_then(|o| o.labels.get(name).map(|&i| Arc::clone(&o.latency[i].1)))
                    .unwrap_or_default();
                labels.insert(name.to_string(), latency.len());
                latency.push((name.to_string(), series));
            }
        }
        RunnerMetrics {
            unmatched: labels[UNMATCHED],
            labels,
            latency,
            responses,
            responses_other,
        }
    }

    /// Latency of an event named `name` (an unknown name counts as [`UNMATCHED`]) that
    /// was answered with `status`.
    fn record(&self, name: &str, took: Duration, status: u16) {
        let i = self.labels.get(name).copied().unwrap_or(self.unmatched);
        self.latency[i].1.observe(took);
        match self.responses.get(usize::from(status)) {
            Some(n) => {
                n.fetch_add(1, Ordering::Relaxed);
            }
            None => {
                let mut other = self
                    .responses_other
                    .lock()
                    .unwrap_or_else(|e| e.into_inner());
                *other.entry(status).or_default() += 1;
            }
        }
    }

    /// The series observed so far, as `/metrics` shows them.
    fn fill(&self, m: &mut MetricsSnapshot) {
        m.handler_latency = self
            .latency
            .iter()
            .filter_map(|(label, h)| {
                let h = h.snapshot();
                (h.count > 0).then(|| (label.clone(), h))
            })
            .collect();
        let mut responses = self
            .responses_other
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        for (status, n) in self.responses.iter().enumerate() {
            let n = n.load(Ordering::Relaxed);
            if n > 0 {
                responses.insert(status as u16, n);
            }
        }
        m.responses_by_status = responses;
    }
}

/// A [`Histogram`] updated with atomics.
#[derive(Default)]
struct AtomicHistogram {
    buckets: [AtomicU64; LATENCY_BUCKETS.len()],
    count: AtomicU64,
    /// The sum in seconds, as `f64` bits.
    sum_bits: AtomicU64,
}

impl AtomicHistogram {
    fn observe(&self, d: Duration) {
        let s = d.as_secs_f64();
        if let Some(i) = LATENCY_BUCKETS.iter().position(|&b| s <= b) {
            self.buckets[i].fetch_add(1, Ordering::Relaxed);
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        let _ = self
            .sum_bits
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |bits| {
                Some((f64::from_bits(bits) + s).to_bits())
            });
    }

    fn snapshot(&self) -> Histogram {
        Histogram {
            buckets: std::array::from_fn(|i| self.buckets[i].load(Ordering::Relaxed)),
            count: self.count.load(Ordering::Relaxed),
            sum_seconds: f64::from_bits(self.sum_bits.load(Ordering::Relaxed)),
        }
    }
}

/// Latency of events whose name is no route is recorded under this label, so a client
/// cannot grow the metrics with made-up names.
const UNMATCHED: &str = "(unmatched)";

impl Runner {
    /// A runner for `service`.
    pub fn new(service: Service, opts: RunnerOptions) -> Runner {
        let has_on_connect = service.has_route("on_connect");
        let has_on_disconnect = service.has_route("on_disconnect");
        let metrics = RunnerMetrics::new(&service);
        Runner {
            inner: Arc::new(RwLock::new(Arc::new(Inner {
                service: Arc::new(service),
                resume: OnceLock::new(),
                opts,
                has_on_connect,
                has_on_disconnect,
                management_url: OnceLock::new(),
                metrics,
            }))),
        }
    }

    /// The current service.
    pub fn service(&self) -> Arc<Service> {
        Arc::clone(&self.current().service)
    }

    /// Serve `service` from now on (a reload, 9.5/#14): messages that arrive from now
    /// on use it; those under way finish with the service they started with.
    pub fn reload(&self, service: Service) {
        let old = self.current();
        let inner = Inner {
            has_on_connect: service.has_route("on_connect"),
            has_on_disconnect: service.has_route("on_disconnect"),
            metrics: old.metrics.reloaded(&service),
            service: Arc::new(service),
            resume: old.resume.clone(),
            opts: old.opts.clone(),
            management_url: old.management_url.clone(),
        };
        *self.inner.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(inner);
    }

    /// The current service and what goes with it.
    fn current(&self) -> Arc<Inner> {
        Arc::clone(&self.inner.read().unwrap_or_else(|e| e.into_inner()))
    }
}

impl App for Runner {
    fn on_open(&self, conn: &Arc<ConnShared>, req: &UpgradeRequest) -> Option<Job> {
        let inner = self.current();
        if !inner.has_on_connect {
            return None; // 6.5.3: accepted without dispatch
        }
        let conn = Arc::clone(conn);
        let headers: Vec<(String, String)> = req.headers.clone();
        let query = req.query().to_string();
        // A drain waits for on_connect and the messages it lets through (9.5).
        let busy = conn.begin();
        Some(Box::new(move || {
            Inner::on_connect(inner, conn, &headers, &query);
            drop(busy);
        }))
    }

    fn on_message(
        &self,
        conn: &Arc<ConnShared>,
        text: bool,
        payload: &[u8],
        inline_ok: bool,
    ) -> Dispatch {
        let inner = &self.current();
        // Received: a drain answers it before the connection's 1001 (9.5). A job holds
        // the guard to its end; a suspended pipeline's Answer takes its own.
        let busy = conn.begin();
        if !(inline_ok && inner.opts.inline) {
            let (inner, conn) = (Arc::clone(inner), Arc::clone(conn));
            let payload = payload.to_vec();
            return Dispatch::Job(Box::new(move || {
                Inner::handle(&inner, conn, decode_message(text, &payload));
                drop(busy);
            }));
        }
        // Decode here to learn the route; run it here when every handler it can reach
        // is non-blocking (measured in docs/benchmarks.md: it saves two thread hand-offs
        // per message), else on a worker. A handler that defers is non-blocking: the
        // pipeline suspends and the answer goes out later from a worker.
        let decoded = decode_message(text, payload);
        let nonblocking = match &decoded {
            Ok((req, _)) => inner.service.is_nonblocking(&req.name, &req.method),
            Err(_) => true,
        };
        if !nonblocking {
            let (inner, conn) = (Arc::clone(inner), Arc::clone(conn));
            return Dispatch::Job(Box::new(move || {
                Inner::handle(&inner, conn, decoded);
                drop(busy);
            }));
        }
        match Inner::answer_here(inner, conn, decoded) {
            None => Dispatch::Later,
            Some(Outcome::Frame(frame)) => Dispatch::Reply(frame),
            Some(stream) => {
                let conn = Arc::clone(conn);
                Dispatch::Job(Box::new(move || {
                    stream.send(conn);
                    drop(busy);
                }))
            }
        }
    }

    fn set_resume(&self, resume: Arc<dyn Schedule>) {
        let _ = self.current().resume.set(resume);
    }

    fn set_management_url(&self, base: &str) {
        let _ = self.current().management_url.set(base.to_string());
    }

    fn fill_metrics(&self, m: &mut MetricsSnapshot) {
        self.current().metrics.fill(m);
    }

    fn on_close(&self, conn: &Arc<ConnShared>) -> Option<Job> {
        let inner = self.current();
        if !inner.has_on_disconnect {
            return None; // 6.5.6: skipped without a route
        }
        let conn = Arc::clone(conn);
        Some(Box::new(move || Inner::on_disconnect(inner, conn)))
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

    fn push_then(&self, response: Response, then: PushDone) {
        if self.conn.is_closed() || response.body.is_stream() {
            // Nothing to wait for: a stream is paced by its own pump.
            then(self.push(response));
            return;
        }
        let frame = envelope::encode(&response, None);
        Box::new(PendingPush {
            _busy: self.conn.begin(),
            conn: Arc::clone(&self.conn),
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
    conn: Arc<ConnShared>,
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
                    .map_err(|_| PushError::Gone(p.conn.connection_id.clone()));
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
            then(Err(PushError::Gone(self.conn.connection_id.clone())));
        }
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
        // (A client rarely sends either: a short map is scanned before two hashed
        // removals are paid for; the removals, when made, are the same.)
        let may_have = |k: &str| k == "push-function" || k == "postback-url";
        if headers.len() > 8 || headers.keys().any(|k| may_have(k)) {
            headers.remove("push-function");
            headers.remove("postback-url");
        }
        let base = self
            .opts
            .postback_base
            .as_ref()
            .or(self.management_url.get());
        if let Some(base) = base {
            // `{base}/@connections/{id}`, in one exact allocation.
            const PATH: &str = "/@connections/";
            let base = base.trim_end_matches('/');
            let mut url = String::with_capacity(base.len() + PATH.len() + conn.connection_id.len());
            url.push_str(base);
            url.push_str(PATH);
            url.push_str(&conn.connection_id);
            headers.insert("postback-url".into(), Value::String(url));
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

    /// Where suspended pipelines resume.
    fn resume(&self) -> &Arc<dyn Schedule> {
        static HERE: OnceLock<Arc<dyn Schedule>> = OnceLock::new();
        self.resume
            .get()
            .unwrap_or_else(|| HERE.get_or_init(|| Arc::new(RunHere)))
    }

    fn on_connect(
        inner: Arc<Inner>,
        conn: Arc<ConnShared>,
        headers: &[(String, String)],
        query: &str,
    ) {
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
        let mut event = inner.event_for(&conn, request);
        let started = inner
            .service
            .start(&mut event, inner.resume(), || Connected {
                _busy: conn.begin(),
                inner: Arc::clone(&inner),
                conn: Arc::clone(&conn),
            });
        if let Started::Finished(result) = started {
            let _busy = conn.begin();
            Connected { _busy, inner, conn }.finish(event, result);
        }
    }

    fn on_disconnect(inner: Arc<Inner>, conn: Arc<ConnShared>) {
        let mut event = inner.event_for(&conn, Request::named("on_disconnect"));
        // Its response is ignored (6.5.6); a suspended one still counts as work in
        // flight, so shutdown waits for it.
        let _ = inner.service.start(&mut event, inner.resume(), || {
            |_: Event, _: Result<(), HandlerError>| {}
        });
    }

    /// Process a decoded message on a worker and send the answer (now, or when the
    /// pipeline ends if it suspends).
    fn handle(inner: &Arc<Inner>, conn: Arc<ConnShared>, decoded: Decoded) {
        if let Some(out) = Inner::answer_here(inner, &conn, decoded) {
            out.send(conn);
        }
    }

    /// Process a decoded message. The answer when the pipeline ended here (not sent
    /// yet); `None` when it suspended, and the answer is sent when it ends.
    fn answer_here(
        inner: &Arc<Inner>,
        conn: &Arc<ConnShared>,
        decoded: Decoded,
    ) -> Option<Outcome> {
        let (request, message_id) = match decoded {
            Ok(r) => r,
            Err(e) => {
                let (err, message_id) = *e;
                // 6.6: a request that cannot be decoded is a SyntaxError: 400.
                let response = ErrorResponse::from_error(&err, 400).to_response();
                return Some(Outcome::Frame(envelope::encode(
                    &response,
                    message_id.as_ref(),
                )));
            }
        };
        let mut event = inner.event_for(conn, request);
        let started = Instant::now();
        let mut message_id = Some(message_id);
        // The Answer (and its clones) is made only if the pipeline suspends.
        let done = || Answer {
            _busy: conn.begin(),
            inner: Arc::clone(inner),
            conn: Arc::clone(conn),
            message_id: message_id.take().flatten(),
            started,
        };
        match inner.service.start(&mut event, inner.resume(), done) {
            Started::Finished(result) => {
                Some(inner.outcome(&mut event, result, message_id.flatten(), started))
            }
            Started::Suspended => None,
        }
    }

    /// The answer to a message whose pipeline ended.
    // Inline: on the reactor's inline path a call frame here was measurable.
    #[inline(always)]
    fn outcome(
        &self,
        event: &mut Event,
        result: Result<(), HandlerError>,
        message_id: Option<Value>,
        started: Instant,
    ) -> Outcome {
        let mut response = match result {
            Ok(()) => std::mem::take(&mut event.response),
            // 6.6.1: an error that escapes the pipeline (3.2.3) is a 500.
            Err(e) => ErrorResponse::from_error(&e, 500).to_response(),
        };
        self.metrics
            .record(&event.name, started.elapsed(), response.status_code);
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

/// The end of a suspended message's pipeline: the answer to its client.
struct Answer {
    /// A drain waits for the answer (9.5).
    _busy: Busy,
    inner: Arc<Inner>,
    conn: Arc<ConnShared>,
    message_id: Option<Value>,
    started: Instant,
}

impl Finish for Answer {
    /// A suspended pipeline ended (on a worker): send the answer from here.
    fn finish(self, mut event: Event, result: Result<(), HandlerError>) {
        let Answer {
            _busy,
            inner,
            conn,
            message_id,
            started,
        } = self;
        inner
            .outcome(&mut event, result, message_id, started)
            .send(conn);
    }
}

/// The end of an on_connect pipeline: accept or reject the connection (6.5.2).
struct Connected {
    /// A drain waits for on_connect (9.5).
    _busy: Busy,
    inner: Arc<Inner>,
    conn: Arc<ConnShared>,
}

impl Finish for Connected {
    fn finish(self, mut event: Event, result: Result<(), HandlerError>) {
        let Connected { inner, conn, .. } = self;
        let accepted = match result {
            Ok(()) => event.response.status_code < 400,
            Err(_) => false, // 6.5.2: a throwing process() counts as 500
        };
        if accepted {
            // 8.3: the identity carries over to this connection's later events.
            *conn.identity.lock().unwrap_or_else(|e| e.into_inner()) =
                event.identity.take().map(Box::new);
            if conn.claim_accepted() {
                let _ = conn.reactor.accept(conn.id);
            } else if inner.has_on_disconnect {
                // The client left while on_connect ran; the connection was accepted
                // all the same, so it gets its on_disconnect (8.11), from here.
                Inner::on_disconnect(inner, conn);
            }
        } else {
            let _ = conn.reactor.reject(conn.id);
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
    // The message is read into `request` as it is parsed (no map of the whole message).
    let mut de = serde_json::Deserializer::from_str(text);
    match message::into(&mut request, &mut de).and_then(|object| de.end().map(|()| object)) {
        Ok(true) => {}
        Ok(false) => {
            // 6.6.2: valid JSON that is not a mapping cannot be a message.
            return Err(Box::new((
                HandlerError::new("The message must be a JSON object."),
                None,
            )));
        }
        Err(_) => {
            // 6.2.2: not JSON: the raw text is the payload.
            let request = Request {
                payload: Payload::Text(text.to_string()),
                ..Request::default()
            };
            return Ok((request, None));
        }
    }
    let message_id = request.headers.get("message-id").cloned();
    Ok((request, message_id))
}

/// `s.to_lowercase()`, without a new string when it is lower case already.
fn to_lowercase(s: String) -> String {
    if s.bytes().all(|b| b.is_ascii() && !b.is_ascii_uppercase()) {
        s
    } else {
        s.to_lowercase()
    }
}

/// Reading a client message (6.2.3) straight off the JSON parser into a [`Request`]:
/// the keys the runner uses are parsed as JSON values, the others are parsed and
/// dropped. This accepts and rejects exactly the texts `serde_json::from_str::<Value>`
/// does (every value goes through `Value`'s own deserializer), and a repeated key counts
/// with its last value only, as in a `Map`.
mod message {
    use std::fmt;

    use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
    use serde_json::{Map, Value};

    use super::to_lowercase;
    use crate::configurapi::{Payload, Request};

    /// Read one JSON value; when it is an object, its keys set `request`'s fields and
    /// the answer is `true`. `false`: some other JSON value (`request` is untouched).
    /// On an error `request` may be partly set.
    pub(super) fn into<'de, D: Deserializer<'de>>(
        request: &mut Request,
        d: D,
    ) -> Result<bool, D::Error> {
        MessageSeed(request).deserialize(d)
    }

    enum Key {
        Name,
        Method,
        Query,
        Params,
        Headers,
        Payload,
        Other,
    }

    impl<'de> de::Deserialize<'de> for Key {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Key, D::Error> {
            struct KeyVisitor;
            impl Visitor<'_> for KeyVisitor {
                type Value = Key;
                fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                    f.write_str("an object key")
                }
                fn visit_str<E: de::Error>(self, s: &str) -> Result<Key, E> {
                    Ok(match s {
                        "name" => Key::Name,
                        "method" => Key::Method,
                        "query" => Key::Query,
                        "params" => Key::Params,
                        "headers" => Key::Headers,
                        "payload" => Key::Payload,
                        _ => Key::Other,
                    })
                }
            }
            d.deserialize_str(KeyVisitor)
        }
    }

    struct MessageSeed<'a>(&'a mut Request);

    impl<'de> DeserializeSeed<'de> for MessageSeed<'_> {
        type Value = bool;
        fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<bool, D::Error> {
            d.deserialize_any(self)
        }
    }

    /// A mapping's value, or an empty mapping for anything else.
    fn object(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => Map::new(),
        }
    }

    impl<'de> Visitor<'de> for MessageSeed<'_> {
        type Value = bool;

        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("any JSON value")
        }

        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<bool, A::Error> {
            let r = self.0;
            while let Some(key) = map.next_key::<Key>()? {
                let v = map.next_value::<Value>()?;
                // Each assignment stands for the whole field, so a repeated key ends
                // up as its last value alone decides.
                match key {
                    Key::Name => {
                        r.name = match v {
                            Value::String(s) => s,
                            v @ (Value::Number(_) | Value::Bool(_)) => v.to_string(),
                            _ => String::new(),
                        }
                    }
                    Key::Method => {
                        r.method = match v {
                            Value::String(m) => to_lowercase(m),
                            // The Request default (6.2.3).
                            _ => Request::default().method,
                        }
                    }
                    Key::Query => r.query = object(v),
                    Key::Params => r.params = object(v),
                    Key::Headers => r.headers = object(v),
                    Key::Payload => r.payload = Payload::Json(v),
                    // Parsed as a Value all the same, so that the same texts fail.
                    Key::Other => {}
                }
            }
            Ok(true)
        }

        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<bool, A::Error> {
            while seq.next_element::<Value>()?.is_some() {}
            Ok(false)
        }

        fn visit_unit<E: de::Error>(self) -> Result<bool, E> {
            Ok(false)
        }

        fn visit_bool<E: de::Error>(self, _: bool) -> Result<bool, E> {
            Ok(false)
        }

        fn visit_i64<E: de::Error>(self, _: i64) -> Result<bool, E> {
            Ok(false)
        }

        fn visit_u64<E: de::Error>(self, _: u64) -> Result<bool, E> {
            Ok(false)
        }

        fn visit_f64<E: de::Error>(self, _: f64) -> Result<bool, E> {
            Ok(false)
        }

        fn visit_str<E: de::Error>(self, _: &str) -> Result<bool, E> {
            Ok(false)
        }
    }
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

    /// The decoding as it was written first: the whole message parsed as a `Value`,
    /// then its keys taken out. `decode_message` must agree with it on every text.
    fn decode_reference(text: &str) -> Result<(Request, Option<Value>), ()> {
        let mut request = Request::default();
        let mut message = match serde_json::from_str::<Value>(text) {
            Ok(Value::Object(m)) => m,
            Ok(_) => return Err(()),
            Err(_) => {
                request.payload = Payload::Text(text.to_string());
                return Ok((request, None));
            }
        };
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

    #[test]
    fn decoding_agrees_with_parsing_the_whole_message_as_a_value() {
        let deep = |n: usize, open: &str, close: &str| {
            format!("{{\"x\":{}1{}}}", open.repeat(n), close.repeat(n))
        };
        let mut texts: Vec<String> = [
            r#"{"name":"a","method":"POST","params":{"id":1},"query":{"q":"x"},"headers":{"message-id":"m1","b":[1]},"payload":{"k":[null,true,1.5]}}"#,
            r#"{"name":"a","name":"b","headers":{"message-id":1},"headers":{"message-id":2}}"#,
            r#"{"headers":{"message-id":"x"},"headers":5}"#,
            r#"{"method":"POST","method":5,"name":1,"name":[]}"#,
            r#"{"method":5,"method":"PUT","payload":1,"payload":null}"#,
            r#"{"query":{"a":1},"query":[],"params":{"b":2},"params":{"c":3}}"#,
            r#"{"na\u006de":"escaped","\u0070ayload":null}"#,
            r#"{"name":12.5,"method":"G\u00c9T"}"#,
            r#"{"name":true,"method":"ÄÖ","payload":"text"}"#,
            r#"{"name":null,"method":7,"query":[1],"params":"p","headers":null}"#,
            r#"{"name":{"a":1},"other":{"deep":[1,2,{"x":null}]},"payload":[]}"#,
            r#"{"other":1e400}"#,
            r#"{"other":"\ud800"}"#,
            r#"{"payload":1e400}"#,
            r#"{"name":"a"} trailing"#,
            r#"{"name":"a"}   "#,
            r#"{"name":"a",}"#,
            r#"{"name""#,
            "{}",
            "[]",
            "[1,{\"a\":2},[3]]",
            "[1,2",
            "[1e400]",
            "42",
            "-1",
            "1.5",
            "1e400",
            "true",
            "null",
            "\"str\"",
            "\"\\ud800\"",
            "",
            "   ",
            "not json {",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        for n in [100, 126, 127, 128, 129, 200] {
            texts.push(deep(n, "[", "]"));
            texts.push(deep(n, "{\"a\":", "}"));
            texts.push(format!("{}1{}", "[".repeat(n), "]".repeat(n)));
        }
        for text in &texts {
            let got = decode_message(true, text.as_bytes());
            match (got, decode_reference(text)) {
                (Ok((a, id_a)), Ok((b, id_b))) => {
                    assert_eq!(format!("{a:?}"), format!("{b:?}"), "{text}");
                    assert_eq!(id_a, id_b, "{text}");
                }
                (Err(_), Err(())) => {}
                (got, want) => panic!(
                    "{text}: got {:?}, want {:?}",
                    got.map(|(r, _)| r),
                    want.map(|(r, _)| r)
                ),
            }
        }
    }

    #[test]
    fn metrics_count_routes_unmatched_names_and_every_status() {
        let service = Service::from_str(DEFAULT_CONFIG, "default", registry()).unwrap();
        let metrics = RunnerMetrics::new(&service);
        let took = [
            Duration::from_micros(300),
            Duration::from_millis(3),
            Duration::from_secs(20),
        ];
        for d in took {
            metrics.record("echo", d, 200);
        }
        metrics.record("made-up", took[1], 501);
        metrics.record(UNMATCHED, took[0], 4000);
        let mut m = MetricsSnapshot::default();
        metrics.fill(&mut m);

        let mut echo = Histogram::default();
        took.iter().for_each(|d| echo.observe(*d));
        let mut unmatched = Histogram::default();
        unmatched.observe(took[1]);
        unmatched.observe(took[0]);
        let want: BTreeMap<String, Histogram> = [
            ("echo".to_string(), echo),
            (UNMATCHED.to_string(), unmatched),
        ]
        .into();
        assert_eq!(m.handler_latency, want);
        let want: BTreeMap<u16, u64> = [(200, 3), (501, 1), (4000, 1)].into();
        assert_eq!(m.responses_by_status, want);
    }
}
