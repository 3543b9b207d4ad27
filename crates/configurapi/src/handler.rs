//! The handler API (3.1): the [`Handler`] trait, its [`Context`], and
//! [`HandlerError`], the Rust form of a thrown JS value.

use log::Level;
use serde_json::Value;
use std::fmt;
use std::path::Path;
use std::sync::{Arc, Mutex};

use super::config::LogLevel;
use super::event::Event;
use super::response::ErrorResponse;

/// What a handler throws.
///
/// The three variants are the three cases of 3.4.1: an Error object (with an
/// optional `statusCode`), an ErrorResponse used as it is, and any other
/// thrown value (such as a string).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HandlerError {
    /// An Error: `ErrorResponse(message, status_code || 500, details)`.
    Error {
        /// `e.message`.
        message: String,
        /// `e.statusCode`, if the error carries one.
        status_code: Option<u16>,
        /// The details text (the port's stand-in for a stack trace, 3.4.3).
        details: String,
    },
    /// A thrown ErrorResponse: becomes `event.response` unchanged.
    Response(ErrorResponse),
    /// Any other thrown value, as text: `ErrorResponse("Internal Server Error", 500, text)`.
    Thrown(String),
}

impl HandlerError {
    /// An Error with this message, no status code (so 500) and the message as details.
    pub fn new(message: impl Into<String>) -> HandlerError {
        let message = message.into();
        HandlerError::Error {
            details: message.clone(),
            message,
            status_code: None,
        }
    }

    /// Sets `statusCode` on an Error (an Error with `statusCode = 418` gives 418).
    /// On the other variants it does nothing.
    pub fn with_status(mut self, status: u16) -> HandlerError {
        if let HandlerError::Error { status_code, .. } = &mut self {
            *status_code = Some(status);
        }
        self
    }

    /// Sets the details text of an Error.
    pub fn with_details(mut self, text: impl Into<String>) -> HandlerError {
        if let HandlerError::Error { details, .. } = &mut self {
            *details = text.into();
        }
        self
    }

    /// A thrown non-error value, such as `throw "boom"`.
    pub fn thrown(value: impl Into<String>) -> HandlerError {
        HandlerError::Thrown(value.into())
    }

    /// The message: `e.message`, the ErrorResponse's message, or the thrown text.
    pub fn message(&self) -> &str {
        match self {
            HandlerError::Error { message, .. } => message,
            HandlerError::Response(r) => &r.message,
            HandlerError::Thrown(text) => text,
        }
    }

    /// The response the pipeline sets for this error (3.4.1).
    pub fn to_error_response(&self) -> ErrorResponse {
        match self {
            HandlerError::Error {
                message,
                status_code,
                details,
            } => ErrorResponse::new(
                message.clone(),
                status_code.filter(|s| *s != 0).unwrap_or(500),
                details.clone(),
            ),
            HandlerError::Response(r) => r.clone(),
            HandlerError::Thrown(text) => {
                ErrorResponse::new("Internal Server Error", 500, text.clone())
            }
        }
    }
}

impl fmt::Display for HandlerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.message())
    }
}

impl std::error::Error for HandlerError {}

impl From<ErrorResponse> for HandlerError {
    fn from(value: ErrorResponse) -> Self {
        HandlerError::Response(value)
    }
}

impl From<String> for HandlerError {
    fn from(value: String) -> Self {
        HandlerError::new(value)
    }
}

impl From<&str> for HandlerError {
    fn from(value: &str) -> Self {
        HandlerError::new(value)
    }
}

impl From<std::io::Error> for HandlerError {
    fn from(value: std::io::Error) -> Self {
        HandlerError::new(value.to_string())
    }
}

impl From<serde_json::Error> for HandlerError {
    fn from(value: serde_json::Error) -> Self {
        HandlerError::new(value.to_string())
    }
}

/// A policy's outcome as read when its handler returns (3.1.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Run the route's next policy.
    Continue,
    /// Skip the rest of the route (the pipeline itself carries on, 3.1.3).
    Complete,
}

/// What a handler can do besides touching the event: the JS `this` (3.1.1).
///
/// A handler that calls neither [`Context::continue_`] nor
/// [`Context::complete`] continues; the last call wins. The outcome is read
/// when the handler returns (3.1.2), or, for a handler that called
/// [`Context::defer`], when its [`Completion`] is resolved.
pub struct Context<'a> {
    outcome: Option<Outcome>,
    caught: Option<HandlerError>,
    deferred: Option<Arc<Slot>>,
    policy: &'a str,
    log_level: LogLevel,
}

impl<'a> Context<'a> {
    /// A fresh context for the named policy, logging at `log_level`.
    pub fn new(policy: &'a str, log_level: LogLevel) -> Context<'a> {
        Context {
            outcome: None,
            caught: None,
            deferred: None,
            policy,
            log_level,
        }
    }

    /// The handler's result comes later: when the handler returns, the pipeline
    /// suspends (holding no thread), and it resumes when the returned [`Completion`] is
    /// resolved, from any thread, even before the handler has returned.
    ///
    /// What the handler itself did still counts: a handler that returns `Err` or calls
    /// [`Context::catch`] throws at once and the completion is ignored. Otherwise its
    /// [`Context::complete`]/[`Context::continue_`] are forgotten: the outcome is read
    /// from the context `apply` gets. Calling `defer` twice: the last completion counts.
    ///
    /// ```
    /// use configurapi::{handler_fn, Body, Event, HandlerRegistry, Request, Service};
    ///
    /// let mut registry = HandlerRegistry::with_builtins();
    /// registry.register(
    ///     "laterHandler",
    ///     handler_fn(|_event, _params, ctx| {
    ///         let done = ctx.defer();
    ///         // The answer comes from another thread (a client callback, a timer).
    ///         std::thread::spawn(move || {
    ///             done.resolve(|event, ctx| {
    ///                 event.response.body = Body::Text("later".into());
    ///                 ctx.complete();
    ///                 Ok(())
    ///             })
    ///         });
    ///         Ok(())
    ///     }),
    /// );
    /// let yaml = "api:\n  events:\n    - name: x\n      policies: [laterHandler]\n";
    /// let service = Service::from_str(yaml, "config.yaml", registry).unwrap();
    /// // The blocking form waits for the completion; a runner uses Service::start.
    /// let mut event = Event::new(Request::named("x"));
    /// service.process(&mut event).unwrap();
    /// assert_eq!(event.response.body, Body::Text("later".into()));
    /// ```
    pub fn defer(&mut self) -> Completion {
        let slot = Arc::new(Slot {
            state: Mutex::new(SlotState::Pending),
        });
        self.deferred = Some(Arc::clone(&slot));
        Completion { slot: Some(slot) }
    }

    /// `this.continue()`: run the next policy.
    pub fn continue_(&mut self) {
        self.outcome = Some(Outcome::Continue);
    }

    /// `this.complete()`: skip the rest of this route.
    pub fn complete(&mut self) {
        self.outcome = Some(Outcome::Complete);
    }

    /// `this.catch(err)`: the route throws `err` once the handler returns,
    /// even if the handler itself returns `Ok` (3.1.4).
    pub fn catch(&mut self, err: impl Into<HandlerError>) {
        self.caught = Some(err.into());
    }

    /// `this.emit(level, msg)`: a log line through the `log` facade, shown
    /// when the policy's log level ranks at or above `level` (3.5.1).
    pub fn emit(&self, level: Level, message: impl fmt::Display) {
        if self.log_level.allows(level) {
            log::log!(target: "configurapi", level, "{message}");
        }
    }

    /// True when a line on `level` would be shown at the policy's log level (3.5.1),
    /// for handlers that log through the facade themselves.
    pub fn allows(&self, level: Level) -> bool {
        self.log_level.allows(level)
    }

    /// The name of the policy being run.
    pub fn policy(&self) -> &str {
        self.policy
    }

    /// The outcome so far ("neither means continue").
    pub fn outcome(&self) -> Outcome {
        self.outcome.unwrap_or(Outcome::Continue)
    }

    /// Takes the error given to [`Context::catch`], if any.
    pub fn take_caught(&mut self) -> Option<HandlerError> {
        self.caught.take()
    }

    /// Takes the slot of the last [`Context::defer`], if any.
    pub(crate) fn take_deferred(&mut self) -> Option<Arc<Slot>> {
        self.deferred.take()
    }
}

/// What resumes a deferred policy: the rest of the handler's body.
pub(crate) type Apply =
    Box<dyn FnOnce(&mut Event, &mut Context) -> Result<(), HandlerError> + Send + 'static>;

/// How a deferred policy ended.
pub(crate) enum Resolution {
    /// [`Completion::resolve`] was called.
    Apply(Apply),
    /// The [`Completion`] was dropped unresolved: the policy fails with a 500.
    Dropped,
    /// The handler ran elsewhere (the blocking pool); this is what it returned.
    Ran(Ran),
}

/// A handler's result as read when it returns (3.1.2-3.1.4).
pub(crate) enum Ran {
    Failed(HandlerError),
    Deferred(Arc<Slot>),
    Went(Outcome),
}

/// What a parked pipeline is woken with: the resolution of the slot it waits on, or
/// `None` when it waited for something else (the on_first_request gate).
pub(crate) type Waker = Box<dyn FnOnce(Option<Resolution>) + Send + 'static>;

enum SlotState {
    /// Neither resolved nor waited on yet.
    Pending,
    /// Resolved before the pipeline got to wait (resolve before return).
    Resolved(Resolution),
    /// The pipeline waits: resolving wakes it.
    Parked(Waker),
    /// Handed over; later calls do nothing.
    Taken,
}

/// The rendezvous between a [`Completion`] and the pipeline waiting on it. Whichever
/// side comes second does the work under the lock, so no wake-up is lost.
pub(crate) struct Slot {
    state: Mutex<SlotState>,
}

impl Slot {
    /// The pipeline waits: the resolution when it is there already, else `make()`'s
    /// waker is kept and called (on the resolving thread) when it comes.
    pub(crate) fn park(&self, make: impl FnOnce() -> Waker) -> Option<Resolution> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        match std::mem::replace(&mut *state, SlotState::Taken) {
            SlotState::Resolved(r) => Some(r),
            SlotState::Pending => {
                *state = SlotState::Parked(make());
                None
            }
            // A slot is parked on once, by the pipeline that made it.
            other => {
                *state = other;
                None
            }
        }
    }

    /// The resolution, when it is there already (nothing is parked otherwise).
    pub(crate) fn try_take(&self) -> Option<Resolution> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        match std::mem::replace(&mut *state, SlotState::Taken) {
            SlotState::Resolved(r) => Some(r),
            other => {
                *state = other;
                None
            }
        }
    }

    fn fill(&self, resolution: Resolution) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        match std::mem::replace(&mut *state, SlotState::Taken) {
            SlotState::Pending => *state = SlotState::Resolved(resolution),
            SlotState::Parked(waker) => {
                drop(state);
                waker(Some(resolution));
            }
            other => *state = other,
        }
    }
}

/// The handle of a deferred policy (see [`Context::defer`]): `Send + 'static`, so it can
/// move to a timer, an I/O thread or a callback and be resolved from there.
///
/// Dropping it unresolved fails the policy with a 500 [`HandlerError`] ("Handler 'NAME'
/// never completed"): a lost completion never hangs its request.
pub struct Completion {
    slot: Option<Arc<Slot>>,
}

impl Completion {
    /// Resumes the pipeline: `apply` runs on the event (with a fresh [`Context`] for the
    /// same policy) as the rest of the handler's body would have; its `Err`,
    /// [`Context::catch`], [`Context::complete`]/[`Context::continue_`] count as the
    /// handler's own result (3.1.2-3.1.4). `apply` may itself call [`Context::defer`].
    ///
    /// Resolving hands the pipeline to its runner's [`Schedule`](crate::Schedule) (the
    /// WebSocket runner's worker pool), so `apply` and the rest of the pipeline do not run
    /// on the resolving thread there; resolved before the handler has returned, the
    /// pipeline simply goes on where the handler ran. With
    /// [`Service::process`](crate::Service::process) it goes on in the thread that
    /// called `process`.
    pub fn resolve<F>(mut self, apply: F)
    where
        F: FnOnce(&mut Event, &mut Context) -> Result<(), HandlerError> + Send + 'static,
    {
        if let Some(slot) = self.slot.take() {
            slot.fill(Resolution::Apply(Box::new(apply)));
        }
    }

    /// [`Completion::resolve`] with the handler's plain result (`Ok` continues).
    pub fn finish(self, result: Result<(), HandlerError>) {
        self.resolve(move |_, _| result);
    }
}

impl Drop for Completion {
    fn drop(&mut self) {
        if let Some(slot) = self.slot.take() {
            slot.fill(Resolution::Dropped);
        }
    }
}

impl fmt::Debug for Completion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Completion")
    }
}

/// A Configurapi handler: called as `handler(event, ...parameters)` (3.1.1).
///
/// `params` are the policy's parameters exactly as configured, unresolved;
/// call [`Event::resolve`] on the ones that take `$(...)` placeholders (it
/// returns a resolved copy, 2.3.8). `call` itself is synchronous; a handler whose
/// answer comes later (a timer, a reply from another process) calls
/// [`Context::defer`] and returns at once: its pipeline then waits without holding a
/// thread. A panic is caught and becomes a 500 ErrorResponse.
pub trait Handler: Send + Sync {
    /// Runs the handler. `Err` throws (3.1.4); the response is whatever the
    /// handler leaves in `event.response` (3.1.5).
    fn call(
        &self,
        event: &mut Event,
        params: &[Value],
        ctx: &mut Context,
    ) -> Result<(), HandlerError>;

    /// True when the handler never waits (no I/O, no sleeps, no locks held for long).
    /// A handler that waits by [`Context::defer`]ring, not by blocking, holds no thread
    /// and qualifies. A route made only of such handlers may start on the reactor thread
    /// instead of a worker, which saves two thread hand-offs per message. Default: false.
    fn is_nonblocking(&self) -> bool {
        false
    }

    /// True when the handler blocks its thread on I/O (a synchronous database or HTTP
    /// client, a file read). The pipeline then runs it on a separate, bounded pool of
    /// blocking threads and goes on where it was, so it never starves the worker pool
    /// that runs everyone else's CPU work. Default: false. See [`Blocking`].
    fn is_blocking(&self) -> bool {
        false
    }

    /// Called once per policy when the service is built. A handler that reads files
    /// named by the config resolves them against [`Binding::base_dir`] and checks them
    /// here, so a bad path is a start-up error naming the file and the route instead
    /// of a 500 at request time. `Ok(Some(h))` serves this policy with `h` instead;
    /// `Err(message)` fails start-up. Default: `Ok(None)`, nothing to check.
    fn bind(&self, _at: &Binding<'_>) -> Result<Option<Arc<dyn Handler>>, String> {
        Ok(None)
    }
}

/// Where a policy is bound at start-up: what [`Handler::bind`] gets.
#[derive(Debug, Clone, Copy)]
pub struct Binding<'a> {
    /// The route (event) name the policy belongs to.
    pub route: &'a str,
    /// The policy's parameters, as configured.
    pub params: &'a [Value],
    /// The folder relative paths in the config resolve against: the config file's
    /// folder (`""`, the working directory, for a config given as text).
    pub base_dir: &'a Path,
}

/// Marks a handler as blocking on I/O (see [`Handler::is_blocking`]): it runs on the
/// service's blocking pool. Such a handler holds no worker and no reactor time, so it
/// counts as non-blocking for where a route may start.
pub struct Blocking<H>(pub H);

impl<H: Handler> Handler for Blocking<H> {
    fn call(
        &self,
        event: &mut Event,
        params: &[Value],
        ctx: &mut Context,
    ) -> Result<(), HandlerError> {
        self.0.call(event, params, ctx)
    }

    fn is_nonblocking(&self) -> bool {
        true
    }

    fn is_blocking(&self) -> bool {
        true
    }

    fn bind(&self, at: &Binding<'_>) -> Result<Option<Arc<dyn Handler>>, String> {
        self.0.bind(at)
    }
}

/// Marks a handler as never blocking (see [`Handler::is_nonblocking`]). Only wrap
/// handlers that do no I/O and never wait: they may run on the reactor thread.
pub struct NonBlocking<H>(pub H);

impl<H: Handler> Handler for NonBlocking<H> {
    fn call(
        &self,
        event: &mut Event,
        params: &[Value],
        ctx: &mut Context,
    ) -> Result<(), HandlerError> {
        self.0.call(event, params, ctx)
    }

    fn is_nonblocking(&self) -> bool {
        true
    }

    fn bind(&self, at: &Binding<'_>) -> Result<Option<Arc<dyn Handler>>, String> {
        self.0.bind(at)
    }
}

impl<F> Handler for F
where
    F: Fn(&mut Event, &[Value], &mut Context) -> Result<(), HandlerError> + Send + Sync,
{
    fn call(
        &self,
        event: &mut Event,
        params: &[Value],
        ctx: &mut Context,
    ) -> Result<(), HandlerError> {
        self(event, params, ctx)
    }
}

/// Helps closures infer the handler signature, so that
/// `handler_fn(|event, params, ctx| { ... })` needs no type annotations.
///
/// ```
/// use configurapi::{handler_fn, HandlerRegistry};
/// let mut registry = HandlerRegistry::with_builtins();
/// registry.register(
///     "okHandler",
///     handler_fn(|event, _params, ctx| {
///         event.response.status_code = 204;
///         ctx.complete();
///         Ok(())
///     }),
/// );
/// ```
pub fn handler_fn<F>(f: F) -> F
where
    F: Fn(&mut Event, &[Value], &mut Context) -> Result<(), HandlerError> + Send + Sync,
{
    f
}
