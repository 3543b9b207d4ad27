//! The handler API (3.1): the [`Handler`] trait, its [`Context`], and
//! [`HandlerError`], the Rust form of a thrown JS value.

use log::Level;
use serde_json::Value;
use std::fmt;
use std::path::Path;
use std::sync::Arc;

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
/// when the handler returns, so nothing can complete a policy later.
pub struct Context<'a> {
    outcome: Option<Outcome>,
    caught: Option<HandlerError>,
    policy: &'a str,
    log_level: LogLevel,
}

impl<'a> Context<'a> {
    /// A fresh context for the named policy, logging at `log_level`.
    pub fn new(policy: &'a str, log_level: LogLevel) -> Context<'a> {
        Context {
            outcome: None,
            caught: None,
            policy,
            log_level,
        }
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
}

/// A Configurapi handler: called as `handler(event, ...parameters)` (3.1.1).
///
/// `params` are the policy's parameters exactly as configured, unresolved;
/// call [`Event::resolve`] on the ones that take `$(...)` placeholders (it
/// returns a resolved copy, 2.3.8). Handlers are synchronous: the runner
/// calls them on worker threads, and a handler that waits blocks only its
/// worker. A panic is caught and becomes a 500 ErrorResponse.
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
    /// A route made only of such handlers may run on the reactor thread instead of a
    /// worker, which saves two thread hand-offs per message. Default: false.
    fn is_nonblocking(&self) -> bool {
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
