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
use std::sync::{Arc, Mutex};
use std::time::Instant;

use super::config::{Config, ConfigError, ConfigErrorKind, LogLevel};
use super::event::{Event, Request};
use super::handler::{Binding, Context, Handler, HandlerError, Outcome};
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
/// when the service is built instead of by name for every event.
#[derive(Default)]
struct Specials {
    on_first_request: Option<Arc<Route>>,
    on_before_request: Option<Arc<Route>>,
    on_success: Option<Arc<Route>>,
    on_error: Option<Arc<Route>>,
    on_after_request: Option<Arc<Route>>,
    /// Every one of the five that exists is non-blocking.
    nonblocking: bool,
}

/// A Configurapi service: the routes of a config.yaml bound to handlers.
pub struct Service {
    routes: NameMap<Arc<Route>>,
    specials: Specials,
    ready: AtomicBool,
    first_request: Mutex<()>,
}

impl std::fmt::Debug for Service {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut names: Vec<&String> = self.routes.keys().collect();
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
        let mut routes = NameMap::default();
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
                    handler,
                    params: policy.parameters,
                    log_level: policy.log_level,
                });
            }
            let nonblocking = policies.iter().all(|p| p.handler.is_nonblocking());
            routes.insert(
                route.name,
                Arc::new(Route {
                    nonblocking,
                    policies,
                    log_level: route.log_level,
                }),
            );
        }
        if !refused.is_empty() {
            return Err(ConfigError::new(
                ConfigErrorKind::HandlerSetup,
                file,
                refused.join("; "),
            ));
        }
        let special = |name: &str| routes.get(name).cloned();
        let mut specials = Specials {
            on_first_request: special("on_first_request"),
            on_before_request: special("on_before_request"),
            on_success: special("on_success"),
            on_error: special("on_error"),
            on_after_request: special("on_after_request"),
            nonblocking: false,
        };
        specials.nonblocking = [
            &specials.on_first_request,
            &specials.on_before_request,
            &specials.on_success,
            &specials.on_error,
            &specials.on_after_request,
        ]
        .iter()
        .all(|r| r.as_ref().is_none_or(|r| r.nonblocking));
        let service = Service {
            routes,
            specials,
            ready: AtomicBool::new(false),
            first_request: Mutex::new(()),
        };
        if let Some(route) = service.routes.get("on_start") {
            let mut event = Event::new(Request::named("on_start"));
            if let Err(e) = service.run_route(route, &mut event) {
                return Err(ConfigError::new(
                    ConfigErrorKind::OnStart,
                    file,
                    format!("on_start failed: {}", e.message()),
                ));
            }
        }
        Ok(service)
    }

    /// True when the config has an enabled route of this name (a runner
    /// skips `on_connect`/`on_disconnect` dispatch without one, 6.5.3).
    pub fn has_route(&self, name: &str) -> bool {
        self.routes.contains_key(name)
    }

    /// True when processing an event of this name (and method) runs only non-blocking
    /// handlers: the special routes, and the route 3.3 would pick (name, else method,
    /// else catchall). Such an event may be processed on the reactor thread.
    pub fn is_nonblocking(&self, name: &str, method: &str) -> bool {
        self.specials.nonblocking
            && self
                .routes
                .get(name)
                .or_else(|| self.routes.get(method))
                .or_else(|| self.routes.get("catchall"))
                .is_none_or(|r| r.nonblocking)
    }

    /// The route names, sorted.
    pub fn route_names(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self.routes.keys().map(String::as_str).collect();
        names.sort_unstable();
        names
    }

    /// Runs the pipeline for one event (3.3). The result is in
    /// `event.response`. `Err` only in the case of 3.2.3: `on_first_request`
    /// failed; the response and `on_error` have already been handled and the
    /// original error is returned for the runner to map (6.6.1).
    pub fn process(&self, event: &mut Event) -> Result<(), HandlerError> {
        // The clock is read only when a trace line can be written.
        let start = trace_enabled().then(Instant::now);
        if !self.ready.load(Ordering::Acquire) {
            self.first_request(event)?;
        }

        let mut level = LogLevel::default();
        let result = self.main_steps(event, &mut level);
        if let Err(failure) = result {
            self.handle_error(event, failure, level);
        }
        // 3.3.4: an error here is handled too, and process() still succeeds.
        if let Err(failure) = self.run_special(&self.specials.on_after_request, event) {
            self.handle_error(event, failure, level);
        }

        if let Some(start) = start.filter(|_| level.allows(Level::Trace)) {
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

    /// Steps 1 to 5 of 3.3.1. The route is looked up after
    /// `on_before_request`, which may rename the event; `level` gets the
    /// route's log level for the per-request log lines.
    fn main_steps(&self, event: &mut Event, level: &mut LogLevel) -> Result<(), Failure> {
        self.run_special(&self.specials.on_before_request, event)?;
        let route = self
            .routes
            .get(&event.name)
            .or_else(|| self.routes.get(&event.method))
            .or_else(|| self.routes.get("catchall"));
        let Some(route) = route else {
            return Err(Failure::Thrown(HandlerError::Response(
                ErrorResponse::not_implemented(&event.name),
            )));
        };
        *level = route.log_level;
        self.run_route(route, event).map_err(Failure::Thrown)?;
        if event.response.is_error_response() {
            return Err(Failure::ResponseIsError);
        }
        self.run_special(&self.specials.on_success, event)
    }

    /// 3.2.3: runs `on_first_request` until it succeeds once. Concurrent
    /// first requests wait for each other so it never runs twice at once.
    fn first_request(&self, event: &mut Event) -> Result<(), HandlerError> {
        let Some(route) = &self.specials.on_first_request else {
            self.ready.store(true, Ordering::Release);
            return Ok(());
        };
        let _guard = self
            .first_request
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if self.ready.load(Ordering::Acquire) {
            return Ok(());
        }
        match self.run_route(route, event) {
            Ok(()) => {
                self.ready.store(true, Ordering::Release);
                Ok(())
            }
            Err(e) => {
                self.handle_error(event, Failure::Thrown(e.clone()), route.log_level);
                Err(e)
            }
        }
    }

    /// Runs a lifecycle route if the config has it; a missing one is skipped.
    fn run_special(&self, route: &Option<Arc<Route>>, event: &mut Event) -> Result<(), Failure> {
        match route {
            Some(route) => self.run_route(route, event).map_err(Failure::Thrown),
            None => Ok(()),
        }
    }

    /// 3.4: sets the response from the failure, then runs `on_error`, whose
    /// own failure is logged and swallowed.
    fn handle_error(&self, event: &mut Event, failure: Failure, level: LogLevel) {
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
        if level.allows(Level::Error) {
            log::error!(
                target: "configurapi",
                "{} - {} - Failed to handle {}: {}",
                event.id,
                event.correlation_id,
                event.name,
                message
            );
        }
        if let Some(route) = &self.specials.on_error {
            if let Err(e) = self.run_route(route, event) {
                if route.log_level.allows(Level::Error) {
                    log::error!(
                        target: "configurapi",
                        "{} - {} - Failed to handle on_error: {}",
                        event.id,
                        event.correlation_id,
                        e.message()
                    );
                }
            }
        }
    }

    /// Runs a route's policies in order (3.1). Completed skips the rest;
    /// an error or panic stops the route and is returned.
    fn run_route(&self, route: &Route, event: &mut Event) -> Result<(), HandlerError> {
        let timing = trace_enabled();
        for policy in &route.policies {
            let start = timing.then(Instant::now);
            let mut ctx = Context::new(&policy.name, policy.log_level);
            let result = catch_unwind(AssertUnwindSafe(|| {
                policy.handler.call(event, &policy.params, &mut ctx)
            }));
            if let Some(start) = start.filter(|_| policy.log_level.allows(Level::Trace)) {
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
                Err(panic) => return Err(panic_error(&policy.name, panic.as_ref())),
                Ok(Err(e)) => return Err(e),
                Ok(Ok(())) => {
                    if let Some(e) = ctx.take_caught() {
                        return Err(e);
                    }
                    if ctx.outcome() == Outcome::Complete {
                        break;
                    }
                }
            }
        }
        Ok(())
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
