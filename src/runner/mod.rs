//! The Configurapi runner: WebSocket messages through the Service pipeline on the
//! worker pool (semantics section 6).
//!
//! The reactor calls [`Runner`] (an [`App`](crate::app::App), in `app.rs`) on its own thread; each call copies what
//! it needs and returns a job. Jobs build the Event (6.2), run `Service::start`, and
//! send the answer back as one envelope frame (6.3) through the connection's
//! [`Connection`](conn::Connection), or as a stream of chunk frames (6.4) paced by the connection's exact
//! queued-byte count. A pipeline whose handler defers holds no thread; it resumes on the
//! worker pool and sends its answer from there (`Answer`).

mod app;
pub mod conn;
// #17 hotsplit: the message decoding is in crates/runner-json (built at opt-level 2).
use runner_json::message;
mod metrics;
pub mod pack;
mod push;
mod stream;
mod timer;

#[cfg(feature = "fuzzing")]
pub(crate) use message::decode_message;
pub(crate) use message::{merge_params, DecodedId};
// #17 json-decode: the message-id as decoded (a string inline), not a `Value`.
use message::MessageId;
use metrics::RunnerMetrics;

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, RwLock};
use std::time::{Duration, Instant};

use serde_json::{Map, Value};

use crate::app::ReplyOut;
use crate::configurapi::http::{join_headers, parse_query};
use crate::configurapi::{
    Body, ChunkStream, CompactString, ErrorResponse, Event, Finish, HandlerError, HandlerRegistry,
    Headers, Response, RouteId, RunHere, Schedule, Service, Started,
};
use crate::envelope;
use crate::link::Busy;
use crate::ws::Opcode;
use conn::{Connection, Registry};

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
    /// `--cluster`: accepted connections are recorded in the cluster's directory and
    /// leave it when they end (docs/cluster.md); `None`: this node alone.
    pub directory: Option<Arc<crate::cluster::ClusterLink>>,
}

impl Default for RunnerOptions {
    fn default() -> Self {
        RunnerOptions {
            postback_base: None,
            inline: true,
            directory: None,
        }
    }
}

/// The runner: an [`App`](crate::app::App) serving a Configurapi [`Service`],
/// which [`Runner::reload`] replaces while it serves.
// #17 idle-runner: one `Arc` (was two): every connection holds a `Runner`, 8 B not 16.
#[derive(Clone)]
pub struct Runner(Arc<Shared>);

/// What the clones of a [`Runner`] share.
struct Shared {
    /// The current service and what goes with it. Each message takes the current one
    /// and keeps it to its end: a reload never changes a request under way.
    inner: RwLock<Arc<Inner>>,
    /// Bumped by each reload once `inner` is replaced: a thread's copy of an older one
    /// ([`Runner::with_current`]) is stale.
    generation: AtomicU64,
    /// This runner among the process's runners (tests make many on one thread), for the
    /// per-thread copy; never reused, unlike an address.
    id: u64,
    /// Accepted connections by connection-id; kept across reloads.
    registry: Registry,
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
    /// #17 json-model: `{postback base}/@connections/`, made at the first event that has
    /// a base ([`Inner::postback_prefix`]).
    postback_prefix: OnceLock<Arc<str>>,
    metrics: RunnerMetrics,
}

impl Runner {
    /// A runner for `service`.
    pub fn new(service: Service, opts: RunnerOptions) -> Runner {
        let has_on_connect = service.has_route("on_connect");
        let has_on_disconnect = service.has_route("on_disconnect");
        let metrics = RunnerMetrics::new(&service);
        let registry = Registry::new(opts.directory.clone());
        Runner(Arc::new(Shared {
            inner: RwLock::new(Arc::new(Inner {
                service: Arc::new(service),
                resume: OnceLock::new(),
                opts,
                has_on_connect,
                has_on_disconnect,
                management_url: OnceLock::new(),
                postback_prefix: OnceLock::new(), // #17 json-model
                metrics,
            })),
            generation: AtomicU64::new(0),
            id: RUNNER_IDS.fetch_add(1, Ordering::Relaxed),
            registry,
        }))
    }

    /// The registry by connection-id.
    fn registry(&self) -> &Registry {
        &self.0.registry
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
            postback_prefix: old.postback_prefix.clone(), // #17 json-model
        };
        *self.0.inner.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(inner);
        self.0.generation.fetch_add(1, Ordering::Release);
        // A reload runs on the reactor thread (launch.rs): its copy of the old service
        // goes now, not at the next message (which may be long in coming).
        let id = self.0.id;
        let stale = CURRENT.try_with(|c| {
            let mut c = c.borrow_mut();
            match &*c {
                Some(((of, _), _)) if *of == id => c.take(),
                _ => None,
            }
        });
        drop(stale);
    }

    /// The current service and what goes with it.
    // #17 hotsplit: inlined at the runner's opt-level "s" too (docs/size.md, fourth pass).
    #[inline]
    fn current(&self) -> Arc<Inner> {
        Arc::clone(&self.0.inner.read().unwrap_or_else(|e| e.into_inner()))
    }

    /// `f` of the current service, as [`Runner::current`] gives it, read from this
    /// thread's copy while no reload has come since it was taken: no lock and no
    /// reference count (#17: four atomic operations a message less, ~8 ns each here).
    /// The copy keeps a replaced service's memory until the thread's next message (a
    /// reload stops the old JS host itself, launch.rs).
    #[inline]
    fn with_current<R>(&self, f: impl FnOnce(&Arc<Inner>) -> R) -> R {
        let key = (self.0.id, self.0.generation.load(Ordering::Acquire));
        let copy = CURRENT.try_with(|c| {
            let mut stale = None;
            let copy = {
                let mut c = c.borrow_mut();
                match &*c {
                    Some((k, inner)) if *k == key => Rc::clone(inner),
                    _ => {
                        let inner = Rc::new(self.current());
                        stale = c.replace((key, Rc::clone(&inner)));
                        inner
                    }
                }
            };
            // Dropped with the cell free again (a service's drop may run code).
            drop(stale);
            copy
        });
        match copy {
            Ok(inner) => f(&inner),
            // The thread is tearing down its locals.
            Err(_) => f(&self.current()),
        }
    }
}

/// Numbers for [`Shared::id`].
static RUNNER_IDS: AtomicU64 = AtomicU64::new(0);

/// The key of a copy: runner id, generation.
type CopyKey = (u64, u64);

thread_local! {
    /// This thread's copy of a runner's current service ([`Runner::with_current`]): an
    /// `Rc`, so taking it for one message counts without an atomic operation (the extra
    /// block is the point: the `Arc`'s count is not touched).
    #[allow(clippy::redundant_allocation)]
    static CURRENT: RefCell<Option<(CopyKey, Rc<Arc<Inner>>)>> = const { RefCell::new(None) };
}

impl Inner {
    /// The headers every event of this connection carries (6.2.5).
    fn inject_headers(&self, headers: &mut Headers, conn: &Connection) {
        // #17 json-prep: inline names (no copy of a text per message), and one pass over
        // the client's headers tells whether it sent any of the runner's names (rare):
        // when it did not, the runner's are appended with no scan for them.
        const CONNECTION_ID: CompactString = CompactString::const_new("connection-id");
        const POSTBACK_URL: CompactString = CompactString::const_new("postback-url");
        let (mut id_sent, mut push_sent) = (false, false);
        for k in headers.keys() {
            match k {
                "connection-id" => id_sent = true,
                "push-function" | "postback-url" => push_sent = true,
                _ => {}
            }
        }
        // #17 json-model: its text is written only if something reads it.
        if id_sent {
            headers.insert_uuid(CONNECTION_ID, conn.uuid());
        } else {
            headers.append_uuid(CONNECTION_ID, None, conn.uuid());
        }
        // The push-function is `Request::push`, outside the map: a client's value
        // must not pass for it. Without a postback base the header is absent (8.6).
        if push_sent {
            headers.remove("push-function");
            headers.remove("postback-url");
        }
        // #17 json-model: `{base}/@connections/{id}`, the prefix shared, the text
        // written only when read. (Not there now: appended.)
        if let Some(prefix) = self.postback_prefix() {
            headers.append_uuid(POSTBACK_URL, Some(Arc::clone(prefix)), conn.uuid());
        }
    }

    /// `{base}/@connections/` for the `postback-url` header (8.6), made once; `None`
    /// while there is no postback base.
    // #17 json-model
    fn postback_prefix(&self) -> Option<&Arc<str>> {
        if let Some(prefix) = self.postback_prefix.get() {
            return Some(prefix);
        }
        let base = self
            .opts
            .postback_base
            .as_ref()
            .or(self.management_url.get())?;
        Some(
            self.postback_prefix
                .get_or_init(|| format!("{}/@connections/", base.trim_end_matches('/')).into()),
        )
    }

    /// An event of this connection (6.2) from `event.request`, filled in where it lies
    /// (an [`Event::blank`]).
    fn prepare(&self, conn: &Arc<Connection>, event: &mut Event) {
        let request = &mut event.request;
        // #17 json-model: a message without params or query (the usual) has nothing to
        // merge, and its path-less route key's params are already the empty mapping.
        let merged =
            (!request.params.is_empty() || !request.query.is_empty() || !request.path.is_empty())
                .then(|| merge_params(&request.params, &request.query));
        // #17 json-event: before the runner's headers are in, so its look-up of the
        // client's correlation-id scans the client's headers only (the runner's
        // connection-id, postback-url and push-function are never that name).
        event.begin();
        let request = &mut event.request;
        self.inject_headers(&mut request.headers, conn);
        // The connection is the push-function: one more reference, no allocation.
        request.push = Some(Arc::clone(conn) as Arc<dyn crate::configurapi::PushSink>);
        if let Some(merged) = merged {
            event.params = merged; // 6.2.4
        }
        // #17 json-event: set only when there is one (the event's is none): no drop.
        if let Some(identity) = conn.identity() {
            event.identity = Some(identity);
        }
    }

    /// An event of this connection for a lifecycle route.
    fn lifecycle_event(name: &str) -> Event {
        let mut event = Event::blank();
        event.request.name = name.into();
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
        conn: Arc<Connection>,
        headers: &[(String, String)],
        query: &str,
    ) {
        let mut event = Inner::lifecycle_event("on_connect");
        let request = &mut event.request;
        request.headers = join_headers(headers.iter().map(|(n, v)| (n.as_str(), v.as_str())));
        request.query = parse_query(query);
        inner.prepare(&conn, &mut event);
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

    fn on_disconnect(inner: Arc<Inner>, conn: Arc<Connection>) {
        let mut event = Inner::lifecycle_event("on_disconnect");
        inner.prepare(&conn, &mut event);
        // Its response is ignored (6.5.6); a suspended one still counts as work in
        // flight, so shutdown waits for it.
        let _ = inner.service.start(&mut event, inner.resume(), || {
            |_: Event, _: Result<(), HandlerError>| {}
        });
    }

    /// Process a message decoded into `event.request` on a worker and send the answer
    /// (now, or when the pipeline ends if it suspends).
    fn handle(inner: &Arc<Inner>, conn: Arc<Connection>, event: &mut Event, decoded: DecodedId) {
        if let Some(out) = Inner::answer_here(inner, &conn, event, decoded, None, None) {
            out.send(conn);
        }
    }

    /// Process a message decoded into `event.request` (an [`Event::blank`]). The answer
    /// when the pipeline ended here (not sent yet, or written into `out` when given);
    /// `None` when it suspended, and the answer is sent when it ends. `found`: the
    /// route of the request's name and method when the caller looked it up already.
    fn answer_here(
        inner: &Arc<Inner>,
        conn: &Arc<Connection>,
        event: &mut Event,
        decoded: DecodedId,
        found: Option<Option<RouteId>>,
        out: Option<&mut dyn ReplyOut>,
    ) -> Option<Reply> {
        let mut message_id = match decoded {
            Ok(id) => id,
            Err(e) => {
                let (err, message_id) = *e;
                // 6.6: a request that cannot be decoded is a SyntaxError: 400.
                let response = ErrorResponse::from_error(&err, 400).to_response();
                // Every answer frame is counted and logged, this one included.
                inner.metrics.record_status(400);
                access_line(conn, "", 400, Duration::ZERO);
                // A client mistake: below error (docs/operations.md#logs).
                log::debug!(
                    "{}: undecodable message: {}",
                    conn.connection_id(),
                    err.message()
                );
                return Some(Reply::frame(out, &response, message_id.as_ref()));
            }
        };
        inner.prepare(conn, event);
        // The route of the request's name and method is the event's unless building
        // the event changed them (a path can): one look-up a message, not three.
        // #17 json-event: a request without a path keeps them (Event::begin): no compare.
        let same = |e: &Event| {
            e.request.path.is_empty() || (e.name == e.request.name && e.method == e.request.method)
        };
        let mut route = match found {
            Some(route) if same(event) => route,
            _ => inner.service.route(&event.name, &event.method),
        };
        // The event's own clock read (made as it was built) starts the latency too.
        let started = event.received;
        // The Answer (and its clones) is made only if the pipeline suspends.
        let done = || Answer {
            _busy: conn.begin(),
            inner: Arc::clone(inner),
            conn: Arc::clone(conn),
            message_id: message_id.take(),
            started,
        };
        match inner
            .service
            .start_routed(event, &mut route, inner.resume(), done)
        {
            Started::Finished(result) => {
                Some(inner.outcome(conn, event, result, (message_id, route), started, out))
            }
            Started::Suspended => None,
        }
    }

    /// The answer to a message whose pipeline ended.
    // Inline: on the reactor's inline path a call frame here was measurable.
    #[inline(always)]
    fn outcome(
        &self,
        conn: &Connection,
        event: &mut Event,
        result: Result<(), HandlerError>,
        (message_id, route): (Option<MessageId>, Option<RouteId>), // #17 json-decode
        started: Instant,
        out: Option<&mut dyn ReplyOut>,
    ) -> Reply {
        // Read where it lies (#17: no move out of the event, no empty one left behind).
        let mut error;
        let response = match result {
            Ok(()) => &mut event.response,
            // 6.6.1: an error that escapes the pipeline (3.2.3) is a 500.
            Err(e) => {
                error = ErrorResponse::from_error(&e, 500).to_response();
                &mut error
            }
        };
        let took = started.elapsed();
        // Labelled with the route the pipeline ran; looked up by the event's name when
        // it is not known (a pipeline that suspended, or ended before its main stage).
        match route {
            Some(route) => self.metrics.record_route(route, took, response.status_code),
            None => self.metrics.record(
                self.service.route_name(&event.name, &event.method),
                took,
                response.status_code,
            ),
        }
        access_line(conn, &event.name, response.status_code, took);
        let stream = match response.body {
            Body::Stream(_) => response.take_stream(),
            _ => None,
        };
        match stream {
            Some(stream) => {
                let mut headers = std::mem::take(&mut response.headers);
                if let Some(id) = message_id {
                    headers.insert("message-id".into(), id.into_value()); // #17 json-decode
                }
                Reply::Stream {
                    stream,
                    status: response.status_code,
                    headers,
                }
            }
            None => Reply::frame(out, response, message_id.as_ref()),
        }
    }
}

/// The access line of one answered message (`--access-log`, docs/operations.md#logs).
/// `event` is empty for a message that could not be decoded.
#[inline]
fn access_line(conn: &Connection, event: &str, status: u16, took: Duration) {
    if crate::logging::access_enabled() {
        log::info!(
            target: crate::logging::ACCESS_TARGET,
            conn = &*conn.connection_id(),
            event = event,
            status = status,
            latency_ms = (took.as_secs_f64() * 1e6).round() / 1000.0;
            "handled"
        );
    }
}

/// The end of a suspended message's pipeline: the answer to its client.
struct Answer {
    /// A drain waits for the answer (9.5).
    _busy: Busy,
    inner: Arc<Inner>,
    conn: Arc<Connection>,
    message_id: Option<MessageId>, // #17 json-decode
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
            .outcome(&conn, &mut event, result, (message_id, None), started, None)
            .send(conn);
    }
}

/// The end of an on_connect pipeline: accept or reject the connection (6.5.2).
struct Connected {
    /// A drain waits for on_connect (9.5).
    _busy: Busy,
    inner: Arc<Inner>,
    conn: Arc<Connection>,
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
            conn.set_identity(event.identity.take());
            if conn.claim_accepted() {
                let _ = conn.notify(conn::NOTE_ACCEPT);
            } else if inner.has_on_disconnect {
                // The client left while on_connect ran; the connection was accepted
                // all the same, so it gets its on_disconnect (8.11), from here.
                Inner::on_disconnect(inner, conn);
            }
        } else {
            let _ = conn.notify(conn::NOTE_REJECT);
        }
    }
}

/// A processed message: one frame, or a stream to pump.
enum Reply {
    Frame(Vec<u8>),
    /// The frame was written into the reactor's [`ReplyOut`].
    Sent,
    Stream {
        stream: Box<dyn ChunkStream>,
        status: u16,
        headers: Map<String, Value>,
    },
}

impl Reply {
    /// The envelope of `response`: written into `out` when given (the reactor's write
    /// queue, #17), else one frame of its own.
    // #17 hotsplit: inlined at the runner's opt-level "s" too (docs/size.md, fourth pass).
    #[inline]
    // #17 json-decode: `id` as decoded.
    fn frame(out: Option<&mut dyn ReplyOut>, response: &Response, id: Option<&MessageId>) -> Reply {
        match out {
            Some(out) => {
                out.text_frame(envelope::estimate(response, id), &mut |buf| {
                    envelope::encode_into(buf, response, id)
                });
                Reply::Sent
            }
            None => Reply::Frame(envelope::encode(response, id)),
        }
    }

    /// Send it from a worker thread. A closed connection simply gets nothing; the
    /// reactor counts the drop.
    fn send(self, conn: Arc<Connection>) {
        match self {
            Reply::Frame(frame) => {
                let _ = conn.send_frame(Opcode::Text, frame);
            }
            Reply::Sent => {}
            Reply::Stream {
                stream,
                status,
                headers,
            } => stream::StreamPump::start(conn, stream, status, headers),
        }
    }
}
