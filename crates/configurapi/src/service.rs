//! The Service pipeline (section 3).
//!
//! `Service` is immutable after construction except for the
//! on_first_request readiness flag, so one instance serves many worker
//! threads at once.

use log::{Level, LevelFilter};
use serde_json::Value;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::Instant;

use super::blocking::BlockingPool;
use super::config::{Config, ConfigError, ConfigErrorKind, LogLevel};
use super::event::{Event, Request};
use super::handler::{
    Binding, Context, Handler, HandlerError, Outcome, Ran, Resolution, Slot, Waker,
};
use super::registry::{HandlerRegistry, MissingHandler};
use super::response::ErrorResponse;

/// Options a runner may set when building a service.
#[derive(Debug, Clone, Default)]
pub struct ServiceOptions {
    /// Overrides `NODE_ENV` for `when` (1.2.3). `None` reads the environment.
    pub node_env: Option<String>,
}

struct Policy {
    name: String,
    handler: Arc<dyn Handler>,
    /// Runs on the blocking pool (see `Handler::is_blocking`).
    blocking: bool,
    params: Vec<Value>,
    log_level: LogLevel,
}

struct Route {
    policies: Vec<Policy>,
    log_level: LogLevel,
    /// Every policy's handler is non-blocking.
    nonblocking: bool,
}

/// Why a step of the pipeline failed (3.3.1).
enum Failure {
    /// A handler threw, or nothing handled the event.
    Thrown(HandlerError),
    /// Step 4: `event.response` is an ErrorResponse and is thrown as it is.
    ResponseIsError,
}

/// A map keyed by route name with a fast, unseeded hash. Fit for tables whose keys are
/// fixed at start (the config's routes): a client only chooses what is looked up, and
/// that cannot make the table's own chains any longer, so there is nothing to flood.
pub type NameMap<V> = HashMap<String, V, BuildHasherDefault<NameHasher>>;

/// The FxHash step (as in rustc), eight bytes at a time.
#[derive(Default, Clone, Copy)]
pub struct NameHasher(u64);

impl NameHasher {
    const K: u64 = 0x51_7c_c1_b7_27_22_0a_95;

    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(Self::K);
    }
}

impl Hasher for NameHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            self.add(u64::from_le_bytes(c.try_into().unwrap_or_default()));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut last = [0u8; 8];
            last[..rest.len()].copy_from_slice(rest);
            self.add(u64::from_le_bytes(last));
        }
    }

    fn write_u8(&mut self, b: u8) {
        self.add(u64::from(b));
    }

    fn write_usize(&mut self, n: usize) {
        self.add(n as u64);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

/// The lifecycle routes the pipeline runs around every event (3.3), looked up once
/// when the service is built instead of by name for every event (indices into
/// `Service::routes`).
#[derive(Default)]
struct Specials {
    on_first_request: Option<usize>,
    on_before_request: Option<usize>,
    on_success: Option<usize>,
    on_error: Option<usize>,
    on_after_request: Option<usize>,
    /// Every one of the five that exists is non-blocking.
    nonblocking: bool,
}

/// The on_first_request gate (3.2.3): one pipeline at a time runs the route; the others
/// wait parked (no thread held) and look again when it ends.
#[derive(Default)]
struct Gate {
    busy: bool,
    waiters: Vec<Waker>,
}

// #17 json-io: a route found once per message, so that the runner's inline check, the
// pipeline and the metrics label share one look-up (there were three).
/// A route of a [`Service`], as [`Service::route`] found it for an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RouteId(usize);

impl RouteId {
    /// Its position among the service's routes (`0..Service::route_count()`), for a
    /// runner's tables by route.
    pub fn index(self) -> usize {
        self.0
    }
}

/// A Configurapi service: the routes of a config.yaml bound to handlers.
pub struct Service {
    routes: Vec<Route>,
    by_name: NameMap<usize>,
    specials: Specials,
    ready: AtomicBool,
    gate: Arc<Mutex<Gate>>,
    /// Threads for blocking handlers, started on first use.
    blocking: OnceLock<BlockingPool>,
    blocking_threads: usize,
}

/// Default bound of the blocking pool (see [`Service::with_blocking_threads`]).
pub const BLOCKING_THREADS: usize = 16;

/// Where a resumed pipeline runs: a runner gives its worker pool.
///
/// For every pipeline that suspends, [`Schedule::suspended`] is called once, and later
/// [`Schedule::schedule`] once with the job that resumes it (which may suspend again).
/// A runner may count suspended pipelines as work in flight with these (to wait for
/// them at shutdown). `schedule` may be called on any thread: the one that resolved a
/// [`Completion`](crate::Completion), a timer's, a worker's; it must not run a long job
/// there, and must not drop the job (its request would never be answered).
pub trait Schedule: Send + Sync {
    /// A pipeline has suspended; one `schedule` call will follow for it.
    fn suspended(&self) {}
    /// Run `job` (the rest of a suspended pipeline) soon, somewhere.
    fn schedule(&self, job: Box<dyn FnOnce() + Send + 'static>);
}

/// Runs resumed pipelines on the thread that resolves them (tests, simple embedders).
pub struct RunHere;

impl Schedule for RunHere {
    fn schedule(&self, job: Box<dyn FnOnce() + Send + 'static>) {
        job();
    }
}

/// What a suspended pipeline calls when it ends (see [`Service::start`]): any
/// `FnOnce(Event, Result<(), HandlerError>)`, or a type of the runner's own.
pub trait Finish: Send + 'static {
    /// The pipeline ended: the event and [`Service::process`]'s result.
    fn finish(self, event: Event, result: Result<(), HandlerError>);
}

impl<F> Finish for F
where
    F: FnOnce(Event, Result<(), HandlerError>) + Send + 'static,
{
    fn finish(self, event: Event, result: Result<(), HandlerError>) {
        self(event, result)
    }
}

/// What [`Service::start`] did.
#[derive(Debug)]
pub enum Started {
    /// The pipeline ran to its end on the calling thread: the event is in place, this
    /// is [`Service::process`]'s result, and `done` was never made.
    Finished(Result<(), HandlerError>),
    /// The pipeline suspended: it took the event (an empty one is left in its place),
    /// and the `done` it made is called (or already was) exactly once, on the thread
    /// that finishes it, with the event and the result.
    Suspended,
}

impl std::fmt::Debug for Service {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut names: Vec<&String> = self.by_name.keys().collect();
        names.sort();
        f.debug_struct("Service").field("routes", &names).finish()
    }
}

impl Service {
    /// Loads `path` with the built-in handler packs and runs `on_start`.
    pub fn load(path: impl AsRef<Path>) -> Result<Service, ConfigError> {
        Service::load_with(path, HandlerRegistry::with_builtins())
    }

    /// Loads `path` with these handlers and runs `on_start`.
    pub fn load_with(
        path: impl AsRef<Path>,
        registry: HandlerRegistry,
    ) -> Result<Service, ConfigError> {
        Service::load_with_options(path, registry, &ServiceOptions::default())
    }

    /// Loads `path` with these handlers and options and runs `on_start`.
    pub fn load_with_options(
        path: impl AsRef<Path>,
        registry: HandlerRegistry,
        options: &ServiceOptions,
    ) -> Result<Service, ConfigError> {
        let path = path.as_ref();
        let config = Config::load(path, node_env(options).as_deref())?;
        // Paths in the config (schema folders) are relative to the config file.
        let base = path.parent().unwrap_or(Path::new(""));
        Service::from_config_in(config, &registry, &path.display().to_string(), base)
    }

    /// Builds a service from config text; `file` names it in error messages.
    #[allow(clippy::should_implement_trait)]
    pub fn from_str(
        yaml: &str,
        file: &str,
        registry: HandlerRegistry,
    ) -> Result<Service, ConfigError> {
        Service::from_str_with_options(yaml, file, registry, &ServiceOptions::default())
    }

    /// [`Service::from_str`] with options.
    pub fn from_str_with_options(
        yaml: &str,
        file: &str,
        registry: HandlerRegistry,
        options: &ServiceOptions,
    ) -> Result<Service, ConfigError> {
        let config = Config::parse(yaml, file, node_env(options).as_deref())?;
        Service::from_config(config, &registry, file)
    }

    /// Binds a parsed config to handlers (1.3.12) and runs `on_start` once
    /// with a synthetic event (3.2.2); a failure there is a start-up error.
    /// Relative paths in the config resolve against the working directory; see
    /// [`Service::from_config_in`].
    pub fn from_config(
        config: Config,
        registry: &HandlerRegistry,
        file: &str,
    ) -> Result<Service, ConfigError> {
        Service::from_config_in(config, registry, file, Path::new(""))
    }

    /// [`Service::from_config`] with relative paths in the config (such as the schema
    /// folder of `validateJsonRequestHandler`) resolved against `base_dir`, the config
    /// file's folder. Every handler the config names but nothing provides is reported
    /// in one error, and so is every policy its handler refuses ([`Handler::bind`]).
    pub fn from_config_in(
        config: Config,
        registry: &HandlerRegistry,
        file: &str,
        base_dir: &Path,
    ) -> Result<Service, ConfigError> {
        let table = registry.resolve(&config.imports, file)?;
        let missing = registry.missing_in(&table, &config);
        if !missing.is_empty() {
            return Err(MissingHandler::error(&missing, file));
        }
        let mut refused = Vec::new();
        let mut routes = Vec::with_capacity(config.routes.len());
        let mut by_name = NameMap::default();
        for route in config.routes {
            let mut policies = Vec::with_capacity(route.policies.len());
            for policy in route.policies {
                let Some(mut handler) = table.get(&policy.handler).cloned() else {
                    continue; // reported above
                };
                let at = Binding {
                    route: &route.name,
                    params: &policy.parameters,
                    base_dir,
                };
                match handler.bind(&at) {
                    Ok(None) => {}
                    Ok(Some(bound)) => handler = bound,
                    Err(why) => refused.push(format!(
                        "{} in route '{}': {why}",
                        policy.handler, route.name
                    )),
                }
                policies.push(Policy {
                    name: policy.handler,
                    blocking: handler.is_blocking(),
                    handler,
                    params: policy.parameters,
                    log_level: policy.log_level,
                });
            }
            let nonblocking = policies.iter().all(|p| p.handler.is_nonblocking());
            // Config routes are unique by name (1.1.6); a repeat would replace.
            let at = *by_name.entry(route.name).or_insert(routes.len());
            let route = Route {
                nonblocking,
                policies,
                log_level: route.log_level,
            };
            if at == routes.len() {
                routes.push(route);
            } else {
                routes[at] = route;
            }
        }
        if !refused.is_empty() {
            return Err(ConfigError::new(
                ConfigErrorKind::HandlerSetup,
                file,
                refused.join("; "),
            ));
        }
        let special = |name: &str| by_name.get(name).copied();
        let mut specials = Specials {
            on_first_request: special("on_first_request"),
            on_before_request: special("on_before_request"),
            on_success: special("on_success"),
            on_error: special("on_error"),
            on_after_request: special("on_after_request"),
            nonblocking: false,
        };
        specials.nonblocking = [
            specials.on_first_request,
            specials.on_before_request,
            specials.on_success,
            specials.on_error,
            specials.on_after_request,
        ]
        .iter()
        .all(|r| r.is_none_or(|r| routes[r].nonblocking));
        let on_start = by_name.get("on_start").copied();
        let service = Service {
            routes,
            by_name,
            specials,
            ready: AtomicBool::new(false),
            gate: Arc::default(),
            blocking: OnceLock::new(),
            blocking_threads: BLOCKING_THREADS,
        };
        if let Some(route) = on_start {
            let mut event = Event::new(Request::named("on_start"));
            if let Err(e) = service.run_route_blocking(route, &mut event) {
                return Err(ConfigError::new(
                    ConfigErrorKind::OnStart,
                    file,
                    format!("on_start failed: {}", e.message()),
                ));
            }
        }
        Ok(service)
    }

    /// Bounds the pool that runs blocking handlers ([`crate::Blocking`],
    /// [`HandlerRegistry::register_blocking`]) at `threads` (default
    /// [`BLOCKING_THREADS`]); calls past it wait for a thread of the pool. Threads start
    /// on demand and leave after a minute idle.
    pub fn with_blocking_threads(mut self, threads: usize) -> Service {
        self.blocking_threads = threads.max(1);
        self
    }

    fn blocking_pool(&self) -> &BlockingPool {
        self.blocking
            .get_or_init(|| BlockingPool::new(self.blocking_threads))
    }

    /// Runs the blocking policy the pipeline stopped at, here (a blocking-pool thread).
    fn call_blocking(&self, run: &Run, event: &mut Event) -> Resolution {
        let Some(policy) = self
            .stage_route(run)
            .and_then(|r| r.policies.get(run.policy))
        else {
            return Resolution::Ran(Ran::Went(Outcome::Continue));
        };
        let mut ctx = Context::new(&policy.name, policy.log_level);
        let result = catch_unwind(AssertUnwindSafe(|| {
            policy.handler.call(event, &policy.params, &mut ctx)
        }));
        Resolution::Ran(read_result(&policy.name, result, &mut ctx))
    }

    /// True when the config has an enabled route of this name (a runner
    /// skips `on_connect`/`on_disconnect` dispatch without one, 6.5.3).
    pub fn has_route(&self, name: &str) -> bool {
        self.by_name.contains_key(name)
    }

    /// True when processing an event of this name (and method) runs only non-blocking
    /// handlers: the special routes, and the route 3.3 would pick (name, else method,
    /// else catchall). Such an event may be processed on the reactor thread.
    pub fn is_nonblocking(&self, name: &str, method: &str) -> bool {
        self.specials.nonblocking
            && self
                .lookup(name, method)
                .is_none_or(|r| self.routes[r].nonblocking)
    }

    // #17 json-io: see RouteId.
    /// The route 3.3.1 step 2 picks for an event of this name and method: by name,
    /// else by method, else `catchall`; `None` when no route handles it.
    pub fn route(&self, name: &str, method: &str) -> Option<RouteId> {
        self.lookup(name, method).map(RouteId)
    }

    /// The route of this name itself (no fallback to method or catchall).
    pub fn route_named(&self, name: &str) -> Option<RouteId> {
        self.by_name.get(name).copied().map(RouteId)
    }

    /// How many routes the service has ([`RouteId::index`] is below it).
    pub fn route_count(&self) -> usize {
        self.routes.len()
    }

    /// [`Service::is_nonblocking`] for an event whose route was found already.
    pub fn route_is_nonblocking(&self, route: Option<RouteId>) -> bool {
        self.specials.nonblocking && route.is_none_or(|r| self.routes[r.0].nonblocking)
    }

    /// The route names, sorted.
    pub fn route_names(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self.by_name.keys().map(String::as_str).collect();
        names.sort_unstable();
        names
    }

    /// The name of the route 3.3.1 step 2 picks for an event of this name and method
    /// (runners label metrics with it): `None` when no route handles it.
    pub fn route_name(&self, name: &str, method: &str) -> Option<&str> {
        self.pick(name, method).map(|(name, _)| name)
    }

    /// The route 3.3.1 step 2 picks: by name, else by method, else `catchall`.
    // Called twice per message (is_nonblocking, drive): a call frame was a tenth of it.
    #[inline(always)]
    fn lookup(&self, name: &str, method: &str) -> Option<usize> {
        self.pick(name, method).map(|(_, at)| at)
    }

    #[inline(always)]
    fn pick(&self, name: &str, method: &str) -> Option<(&str, usize)> {
        self.by_name
            .get_key_value(name)
            .or_else(|| self.by_name.get_key_value(method))
            .or_else(|| self.by_name.get_key_value("catchall"))
            .map(|(name, &at)| (name.as_str(), at))
    }

    /// Runs the pipeline for one event (3.3), blocking the calling thread while a
    /// handler's [`Completion`](crate::Completion) is outstanding. The result is in
    /// `event.response`. `Err` only in the case of 3.2.3: `on_first_request`
    /// failed; the response and `on_error` have already been handled and the
    /// original error is returned for the runner to map (6.6.1).
    pub fn process(&self, event: &mut Event) -> Result<(), HandlerError> {
        let mut run = Run::new();
        let mut resumed = None;
        loop {
            match self.drive(&mut run, event, resumed.take()) {
                Step::Done(result) => return result,
                Step::Park(parking) => resumed = self.wait(parking),
            }
        }
    }

    /// Runs the pipeline for one event without blocking (3.3): it runs on the calling
    /// thread until it ends or a handler defers. When it ends here, the answer is
    /// [`Started::Finished`], the event is in place and `done` is never called. When it
    /// suspends, the event is moved out (an empty one is left), `done()` makes the
    /// [`Finish`] that will get the event and the result of [`Service::process`] when
    /// the pipeline ends, and [`Started::Suspended`] comes back; the pipeline holds no
    /// thread while it waits, and goes on through `resume` ([`Schedule`]) once
    /// resolved.
    ///
    /// A route that never defers costs what `process` costs: the event is not moved,
    /// nothing is boxed, `done` is not called (so what it would capture need not be
    /// cloned) and `resume` is not cloned.
    pub fn start<D: Finish>(
        self: &Arc<Self>,
        event: &mut Event,
        resume: &Arc<dyn Schedule>,
        done: impl FnOnce() -> D,
    ) -> Started {
        self.start_routed(event, &mut None, resume, done)
    }

    // #17 json-io: see RouteId.
    /// [`Service::start`] for an event whose route the caller found already
    /// ([`Service::route`] of `event.name` and `event.method` as they are now; `None`:
    /// not looked up, or no route). When the pipeline ends here, `route` is the route its
    /// main stage ran (`None` when it did not get there or no route took the event).
    pub fn start_routed<D: Finish>(
        self: &Arc<Self>,
        event: &mut Event,
        route: &mut Option<RouteId>,
        resume: &Arc<dyn Schedule>,
        done: impl FnOnce() -> D,
    ) -> Started {
        let mut run = Run::new();
        run.offload = true;
        // on_before_request may rename the event: the route is then looked up after it.
        if let (Some(at), None) = (*route, self.specials.on_before_request) {
            run.main = Some(at.0);
            run.level = self.routes[at.0].log_level;
            // #17 json-event: once ready, what the first turn of `drive` would decide
            // (no on_before_request: the main stage), without that turn.
            if self.ready.load(Ordering::Acquire) {
                run.stage = Stage::Main;
            }
        }
        let mut resumed = None;
        // #17 json-event: the usual pipeline (its main stage and the end) without the
        // state machine; what it cannot finish goes on in `drive`.
        let mut first = match (run.stage, run.main) {
            (Stage::Main, Some(at))
                if self.specials.on_success.is_none()
                    && self.specials.on_after_request.is_none() =>
            {
                self.run_main(at, &mut run, event, &mut resumed)
            }
            _ => None,
        };
        let parking = loop {
            let step = match first.take() {
                Some(step) => step,
                None => self.drive(&mut run, event, resumed.take()),
            };
            match step {
                Step::Done(result) => {
                    *route = run.main.map(RouteId);
                    return Started::Finished(result);
                }
                // Resolved before the handler returned: go on here, nothing boxed.
                Step::Park(Parking::Slot(slot)) => match slot.try_take() {
                    Some(r) => resumed = Some(r),
                    None => break Parking::Slot(slot),
                },
                Step::Park(parking) => break parking,
            }
        };
        let pipeline = Box::new(Suspended {
            service: Arc::clone(self),
            event: std::mem::replace(event, Event::vacant()),
            run,
            resume: Arc::clone(resume),
            done: done(),
        });
        pipeline.park(parking);
        Started::Suspended
    }

    /// The blocking wait of [`Service::process`]: the resolution of the slot, or
    /// `None` once the on_first_request gate was released.
    fn wait(&self, parking: Parking) -> Option<Resolution> {
        type Cell = (Mutex<Option<Option<Resolution>>>, Condvar);
        let cell: Arc<Cell> = Arc::default();
        let waker = || -> Waker {
            let cell = Arc::clone(&cell);
            Box::new(move |r| {
                *cell.0.lock().unwrap_or_else(|e| e.into_inner()) = Some(r);
                cell.1.notify_one();
            })
        };
        match parking {
            Parking::Slot(slot) => {
                if let Some(r) = slot.park(waker) {
                    return Some(r);
                }
            }
            Parking::Gate => {
                if !self.park_at_gate(waker) {
                    return None;
                }
            }
            // The blocking form runs blocking handlers where it is (`run.offload` is
            // off): never asked to move.
            Parking::Offload => return None,
        }
        let mut got = cell.0.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if let Some(r) = got.take() {
                return r;
            }
            got = cell.1.wait(got).unwrap_or_else(|e| e.into_inner());
        }
    }

    /// Parks a pipeline at the on_first_request gate; `false` when the gate is free
    /// again (or the service is ready), and the caller goes on at once.
    fn park_at_gate(&self, make: impl FnOnce() -> Waker) -> bool {
        let mut gate = self.gate.lock().unwrap_or_else(|e| e.into_inner());
        if !gate.busy || self.ready.load(Ordering::Acquire) {
            return false;
        }
        gate.waiters.push(make());
        true
    }

    /// The pipeline as a state machine (3.3): runs stage after stage until the end or
    /// until a policy defers (or the on_first_request gate is taken).
    fn drive(&self, run: &mut Run, event: &mut Event, mut resumed: Option<Resolution>) -> Step {
        loop {
            // The stage's route (an index into `routes`), if the config has it.
            let at = match run.stage {
                Stage::FirstRequest if run.gate.is_none() => {
                    // 3.2.3: until it succeeds once, one pipeline at a time runs it.
                    if self.ready.load(Ordering::Acquire) {
                        // Missing lifecycle routes are skipped without a turn of the loop.
                        run.stage = match self.specials.on_before_request {
                            Some(_) => Stage::BeforeRequest,
                            None => Stage::Main,
                        };
                        continue;
                    }
                    if self.specials.on_first_request.is_none() {
                        self.ready.store(true, Ordering::Release);
                        run.stage = Stage::BeforeRequest;
                        continue;
                    }
                    let mut gate = self.gate.lock().unwrap_or_else(|e| e.into_inner());
                    if self.ready.load(Ordering::Acquire) {
                        run.stage = Stage::BeforeRequest;
                        continue;
                    }
                    if gate.busy {
                        return Step::Park(Parking::Gate);
                    }
                    gate.busy = true;
                    drop(gate);
                    run.gate = Some(GateHold(Arc::clone(&self.gate)));
                    self.specials.on_first_request
                }
                Stage::FirstRequest => self.specials.on_first_request,
                Stage::BeforeRequest => self.specials.on_before_request,
                Stage::Main if run.main.is_none() => {
                    // Looked up after on_before_request, which may rename the event.
                    match self.lookup(&event.name, &event.method) {
                        Some(at) => {
                            run.main = Some(at);
                            run.level = self.routes[at].log_level;
                            Some(at)
                        }
                        None => {
                            let e =
                                HandlerError::Response(ErrorResponse::not_implemented(&event.name));
                            self.fail(run, event, Failure::Thrown(e), Next::AfterRequest);
                            continue;
                        }
                    }
                }
                Stage::Main => run.main,
                Stage::Success => self.specials.on_success,
                Stage::OnError => self.specials.on_error,
                Stage::AfterRequest => self.specials.on_after_request,
            };
            let result = match at {
                None => Ok(()),
                Some(at) => match self.run_policies(&self.routes[at], run, event, resumed.take()) {
                    RouteStep::Finished(result) => result,
                    RouteStep::Defer(slot) => return Step::Park(Parking::Slot(slot)),
                    RouteStep::Offload => return Step::Park(Parking::Offload),
                },
            };
            run.policy = 0;
            match result {
                Ok(()) => match run.stage {
                    Stage::FirstRequest => {
                        if let Some(hold) = run.gate.take() {
                            hold.release(Some(&self.ready));
                        }
                        run.stage = Stage::BeforeRequest;
                    }
                    Stage::BeforeRequest => run.stage = Stage::Main,
                    Stage::Main if event.response.is_error_response() => {
                        self.fail(run, event, Failure::ResponseIsError, Next::AfterRequest);
                    }
                    Stage::Main
                        if self.specials.on_success.is_none()
                            && self.specials.on_after_request.is_none() =>
                    {
                        return Step::Done(self.finish(run, event));
                    }
                    Stage::Main => run.stage = Stage::Success,
                    Stage::Success => run.stage = Stage::AfterRequest,
                    Stage::AfterRequest => return Step::Done(self.finish(run, event)),
                    Stage::OnError => {
                        if let Some(step) = self.after_on_error(run, event) {
                            return step;
                        }
                    }
                },
                Err(e) => match run.stage {
                    Stage::FirstRequest => {
                        if let Some(hold) = run.gate.take() {
                            hold.release(None);
                        }
                        let level = self
                            .specials
                            .on_first_request
                            .map_or(run.level, |r| self.routes[r].log_level);
                        let saved = run.level;
                        run.level = level;
                        self.fail(run, event, Failure::Thrown(e.clone()), Next::Rethrow(e));
                        run.level = saved;
                    }
                    Stage::BeforeRequest | Stage::Main | Stage::Success => {
                        self.fail(run, event, Failure::Thrown(e), Next::AfterRequest);
                    }
                    // 3.3.4: an error here is handled too, and process() still succeeds.
                    Stage::AfterRequest => self.fail(run, event, Failure::Thrown(e), Next::Finish),
                    Stage::OnError => {
                        self.on_error_failed(event, &e);
                        if let Some(step) = self.after_on_error(run, event) {
                            return step;
                        }
                    }
                },
            }
        }
    }

    /// [`Service::drive`] from the main stage of route `at` for a pipeline with no
    /// on_success and no on_after_request route: the route's policies, then the end
    /// when they succeed with a response that is not an error (3.3.1). `None` when
    /// `drive` is to go on from here: `resumed` is then what the route stopped with (the
    /// result of the policy at `run.policy`), which `drive` reads as its own run of the
    /// route would have (an error: 3.4; an error response: 3.3.1 step 3).
    // #17 json-event: out of line, once (`start_routed` is generic); it saves `drive`'s
    // frame and the turns of its loop (~200 instructions a message).
    #[inline(never)]
    fn run_main(
        &self,
        at: usize,
        run: &mut Run,
        event: &mut Event,
        resumed: &mut Option<Resolution>,
    ) -> Option<Step> {
        match self.run_policies(&self.routes[at], run, event, None) {
            RouteStep::Finished(Ok(())) if !event.response.is_error_response() => {
                Some(Step::Done(self.finish(run, event)))
            }
            // The route ran to its end or completed at `run.policy`: read again, a
            // completion there ends it the same way.
            RouteStep::Finished(Ok(())) => {
                *resumed = Some(Resolution::Ran(Ran::Went(Outcome::Complete)));
                None
            }
            RouteStep::Finished(Err(e)) => {
                *resumed = Some(Resolution::Ran(Ran::Failed(e)));
                None
            }
            RouteStep::Defer(slot) => Some(Step::Park(Parking::Slot(slot))),
            RouteStep::Offload => Some(Step::Park(Parking::Offload)),
        }
    }

    /// What follows the on_error route: on_after_request, or the end.
    fn after_on_error(&self, run: &mut Run, event: &Event) -> Option<Step> {
        match std::mem::replace(&mut run.next, Next::Finish) {
            Next::AfterRequest => {
                run.stage = Stage::AfterRequest;
                None
            }
            Next::Finish => Some(Step::Done(self.finish(run, event))),
            Next::Rethrow(e) => Some(Step::Done(Err(e))),
        }
    }

    /// The end of a pipeline that did not re-throw: the per-request trace line.
    fn finish(&self, run: &Run, event: &Event) -> Result<(), HandlerError> {
        if let Some(start) = run.started.filter(|_| run.level.allows(Level::Trace)) {
            log::trace!(
                target: "configurapi",
                "{} - {} - Handled {} [{}ms]",
                event.id,
                event.correlation_id,
                event.name,
                start.elapsed().as_millis()
            );
        }
        Ok(())
    }

    /// The route the pipeline's stage runs, if the config has it.
    fn stage_route(&self, run: &Run) -> Option<&Route> {
        let at = match run.stage {
            Stage::FirstRequest => self.specials.on_first_request,
            Stage::BeforeRequest => self.specials.on_before_request,
            Stage::Main => run.main,
            Stage::Success => self.specials.on_success,
            Stage::OnError => self.specials.on_error,
            Stage::AfterRequest => self.specials.on_after_request,
        };
        at.map(|at| &self.routes[at])
    }

    /// 3.4: sets the response from the failure and logs it; the pipeline goes on with
    /// `on_error`, then `next`.
    fn fail(&self, run: &mut Run, event: &mut Event, failure: Failure, next: Next) {
        let message = match failure {
            Failure::Thrown(err) => {
                event.response = err.to_error_response().to_response();
                err.message().to_string()
            }
            Failure::ResponseIsError => event
                .response
                .error
                .as_ref()
                .map(|e| e.message.clone())
                .unwrap_or_default(),
        };
        if run.level.allows(Level::Error) {
            // 3.5.1's error channel; its severity says whose fault it is: a 4xx (a bad
            // payload) or an event no route takes (the 501 of 3.3.1, found in the main
            // stage before any route ran) is the client's and must not page anyone.
            let unrouted = matches!(run.stage, Stage::Main) && run.main.is_none();
            let severity = if event.response.status_code < 500 || unrouted {
                log::Level::Warn
            } else {
                log::Level::Error
            };
            log::log!(
                target: "configurapi",
                severity,
                "{} - {} - Failed to handle {}: {}",
                event.id,
                event.correlation_id,
                event.name,
                message
            );
        }
        run.stage = Stage::OnError;
        run.policy = 0;
        run.next = next;
    }

    /// 3.4.2: a failing on_error is logged and swallowed.
    fn on_error_failed(&self, event: &Event, e: &HandlerError) {
        let level = self
            .specials
            .on_error
            .map_or(LogLevel::default(), |r| self.routes[r].log_level);
        if level.allows(Level::Error) {
            log::error!(
                target: "configurapi",
                "{} - {} - Failed to handle on_error: {}",
                event.id,
                event.correlation_id,
                e.message()
            );
        }
    }

    /// Runs one route to its end on this thread, waiting for deferred policies
    /// (on_start).
    fn run_route_blocking(&self, route: usize, event: &mut Event) -> Result<(), HandlerError> {
        let mut run = Run::new();
        let mut resumed = None;
        loop {
            match self.run_policies(&self.routes[route], &mut run, event, resumed.take()) {
                RouteStep::Finished(result) => return result,
                RouteStep::Defer(slot) => resumed = self.wait(Parking::Slot(slot)),
                RouteStep::Offload => unreachable!("on_start runs blocking handlers in place"),
            }
        }
    }

    /// Runs a route's policies in order from `run.policy` (3.1); `resumed` is the
    /// resolution of the policy at `run.policy`, which deferred. Completed skips the
    /// rest; an error or panic stops the route and is returned; a deferral stops here
    /// with `run.policy` on the deferring policy.
    #[inline(always)]
    fn run_policies(
        &self,
        route: &Route,
        run: &mut Run,
        event: &mut Event,
        mut resumed: Option<Resolution>,
    ) -> RouteStep {
        let timing = trace_enabled();
        while let Some(policy) = route.policies.get(run.policy) {
            let mut ctx = Context::new(&policy.name, policy.log_level);
            let ran = match resumed.take() {
                None => {
                    if policy.blocking && run.offload {
                        // To the blocking pool; the result comes back as `Ran`.
                        return RouteStep::Offload;
                    }
                    if timing {
                        run.policy_started = Some(Instant::now());
                    }
                    let result = catch_unwind(AssertUnwindSafe(|| {
                        policy.handler.call(event, &policy.params, &mut ctx)
                    }));
                    read_result(&policy.name, result, &mut ctx)
                }
                Some(Resolution::Apply(apply)) => {
                    let result = catch_unwind(AssertUnwindSafe(|| apply(event, &mut ctx)));
                    read_result(&policy.name, result, &mut ctx)
                }
                Some(Resolution::Dropped) => Ran::Failed(
                    HandlerError::new(format!("Handler '{}' never completed", policy.name))
                        .with_status(500),
                ),
                Some(Resolution::Ran(ran)) => ran,
            };
            let result = match ran {
                Ran::Failed(e) => Err(e),
                Ran::Deferred(slot) => return RouteStep::Defer(slot),
                Ran::Went(outcome) => Ok(outcome),
            };
            if let Some(start) = run
                .policy_started
                .take()
                .filter(|_| policy.log_level.allows(Level::Trace))
            {
                log::trace!(
                    target: "configurapi",
                    "{} - {} - Executed {} policy [{}ms]",
                    event.id,
                    event.correlation_id,
                    policy.name,
                    start.elapsed().as_millis()
                );
            }
            match result {
                Err(e) => return RouteStep::Finished(Err(e)),
                Ok(Outcome::Complete) => break,
                Ok(Outcome::Continue) => run.policy += 1,
            }
        }
        RouteStep::Finished(Ok(()))
    }
}

/// Where a pipeline is in 3.3.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// 3.2.3, before the service is ready.
    FirstRequest,
    /// 3.3.1 step 1.
    BeforeRequest,
    /// Steps 2 to 4: the event's own route.
    Main,
    /// Step 5.
    Success,
    /// 3.4.2, then `Run::next`.
    OnError,
    /// Step 6.
    AfterRequest,
}

/// What follows the on_error route.
enum Next {
    AfterRequest,
    Finish,
    /// 3.2.3: process() re-throws the on_first_request error.
    Rethrow(HandlerError),
}

/// The pipeline's state between two steps: explicit, so that it can be put aside when
/// a policy defers and taken up on another thread.
struct Run {
    stage: Stage,
    /// The event's route, once looked up (step 2).
    main: Option<usize>,
    /// The policy of the stage's route to run (or being waited on).
    policy: usize,
    /// The event route's log level, for the per-request log lines (saved error level).
    level: LogLevel,
    /// After on_error.
    next: Next,
    /// Set while this pipeline holds the on_first_request gate.
    gate: Option<GateHold>,
    /// Blocking policies go to the blocking pool (set by `start`; the blocking form
    /// runs them where it is).
    offload: bool,
    /// Read only when trace lines can be written.
    started: Option<Instant>,
    policy_started: Option<Instant>,
}

impl Run {
    // #17 hotsplit: inlined at the runner's opt-level "s" too (docs/size.md, fourth pass).
    #[inline]
    fn new() -> Run {
        Run {
            stage: Stage::FirstRequest,
            main: None,
            policy: 0,
            level: LogLevel::default(),
            next: Next::Finish,
            gate: None,
            offload: false,
            // The clock is read only when a trace line can be written.
            started: trace_enabled().then(Instant::now),
            policy_started: None,
        }
    }
}

/// The on_first_request gate, held. Dropped without [`GateHold::release`] (a pipeline
/// that is never resumed), it still frees the gate, so later requests do not wait for
/// ever.
struct GateHold(Arc<Mutex<Gate>>);

impl GateHold {
    /// Frees the gate (marking the service ready on success) and wakes the waiters,
    /// which look again.
    fn release(self, ready: Option<&AtomicBool>) {
        let mut gate = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(ready) = ready {
            ready.store(true, Ordering::Release);
        }
        gate.busy = false;
        let waiters = std::mem::take(&mut gate.waiters);
        drop(gate);
        // Released by hand: the Drop below sees a free gate and does nothing more.
        for w in waiters {
            w(None);
        }
    }
}

impl Drop for GateHold {
    fn drop(&mut self) {
        let mut gate = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if gate.busy {
            gate.busy = false;
            let waiters = std::mem::take(&mut gate.waiters);
            drop(gate);
            for w in waiters {
                w(None);
            }
        }
    }
}

/// What stopped [`Service::drive`].
enum Step {
    Done(Result<(), HandlerError>),
    Park(Parking),
}

/// What a stopped pipeline waits for.
enum Parking {
    /// A deferred policy's completion.
    Slot(Arc<Slot>),
    /// The on_first_request gate, which another pipeline holds.
    Gate,
    /// A blocking policy, to run on the blocking pool.
    Offload,
}

/// What stopped [`Service::run_policies`].
enum RouteStep {
    Finished(Result<(), HandlerError>),
    Defer(Arc<Slot>),
    /// A blocking policy is next and the pipeline may not block here.
    Offload,
}

/// A handler's return read as 3.1.2-3.1.4 say: an error or panic throws, then
/// `catch`, then a deferral, then complete/continue.
#[inline(always)]
fn read_result(
    policy: &str,
    result: std::thread::Result<Result<(), HandlerError>>,
    ctx: &mut Context,
) -> Ran {
    match result {
        Err(panic) => Ran::Failed(panic_error(policy, panic.as_ref())),
        Ok(Err(e)) => Ran::Failed(e),
        Ok(Ok(())) => match (ctx.take_caught(), ctx.take_deferred()) {
            (Some(e), _) => Ran::Failed(e),
            (None, Some(slot)) => Ran::Deferred(slot),
            (None, None) => Ran::Went(ctx.outcome()),
        },
    }
}

/// A pipeline put aside by [`Service::start`].
struct Suspended<F> {
    service: Arc<Service>,
    event: Event,
    run: Run,
    resume: Arc<dyn Schedule>,
    done: F,
}

impl<F: Finish> Suspended<F> {
    /// Waits for `parking` without a thread: the pipeline moves into the waker, which
    /// schedules it through `resume`. When the wait is over already (resolved before
    /// the handler returned, gate free again), it goes on here.
    fn park(self: Box<Self>, mut parking: Parking) {
        let service = Arc::clone(&self.service);
        let mut me = Some(self);
        loop {
            let make = || -> Waker {
                let p = me.take().expect("the pipeline is parked once per wait");
                p.resume.suspended();
                Box::new(move |resolution| {
                    let resume = Arc::clone(&p.resume);
                    resume.schedule(Box::new(move || p.advance(resolution)));
                })
            };
            let resumed = match parking {
                Parking::Slot(slot) => match slot.park(make) {
                    Some(r) => Some(r),
                    None => return,
                },
                Parking::Gate => {
                    if service.park_at_gate(make) {
                        return;
                    }
                    None
                }
                Parking::Offload => {
                    let mut p = me.take().expect("not parked");
                    p.resume.suspended();
                    service.blocking_pool().execute(Box::new(move || {
                        let ran = p.service.call_blocking(&p.run, &mut p.event);
                        // Back where pipelines resume: the rest is the workers' job.
                        let resume = Arc::clone(&p.resume);
                        resume.schedule(Box::new(move || p.advance(Some(ran))));
                    }));
                    return;
                }
            };
            let mut p = me.take().expect("not parked");
            match p.service.drive(&mut p.run, &mut p.event, resumed) {
                Step::Done(result) => {
                    let Suspended { event, done, .. } = *p;
                    done.finish(event, result);
                    return;
                }
                Step::Park(next) => {
                    parking = next;
                    me = Some(p);
                }
            }
        }
    }

    /// Resumed (on the scheduler's thread): runs on until the end or the next wait.
    fn advance(mut self: Box<Self>, resumed: Option<Resolution>) {
        match self.service.drive(&mut self.run, &mut self.event, resumed) {
            Step::Done(result) => {
                let Suspended { event, done, .. } = *self;
                done.finish(event, result);
            }
            Step::Park(parking) => self.park(parking),
        }
    }
}

/// Trace lines can be written at all (`log::trace!` checks the same level): when not,
/// the pipeline does not read the clock for them.
fn trace_enabled() -> bool {
    log::max_level() >= LevelFilter::Trace
}

fn node_env(options: &ServiceOptions) -> Option<String> {
    options
        .node_env
        .clone()
        .or_else(|| std::env::var("NODE_ENV").ok())
}

/// A panicking handler is an Error with status 500 (never a crash).
fn panic_error(policy: &str, payload: &(dyn std::any::Any + Send)) -> HandlerError {
    let text = payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".to_string());
    HandlerError::new(format!("Handler '{policy}' panicked: {text}")).with_status(500)
}
