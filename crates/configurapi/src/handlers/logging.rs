//! `configurapi-handler-logging`: `logRequestHandler` and `logResponseHandler`, one
//! log line each (the npm package of that name is imported by real apps, usually in
//! `on_before_request` and `on_after_request`).
//!
//! The lines go through the `log` facade at info level with the target
//! [`TARGET`], so a runner's logger decides where they land; a policy's `logLevel`
//! silences them as it does the handler's own `emit` lines (3.5.1). Parameters are
//! accepted and ignored, so configs written for the npm package load unchanged.

use log::Level;
use serde_json::Value;

use crate::{Context, Event, HandlerError, HandlerPack};

/// The `log` target of the pack's lines.
pub const TARGET: &str = "configurapi::logging";

/// The pack. Both handlers only format a line, so they may run inline.
pub fn pack() -> HandlerPack {
    HandlerPack::new(super::LOGGING_PACK)
        .with_nonblocking("logRequestHandler", log_request_handler)
        .with_nonblocking("logResponseHandler", log_response_handler)
}

/// `logRequestHandler`: `<id> - <correlation id> - Request <name> <method>`.
pub fn log_request_handler(
    event: &mut Event,
    _params: &[Value],
    ctx: &mut Context,
) -> Result<(), HandlerError> {
    if ctx.allows(Level::Info) {
        log::info!(
            target: TARGET,
            "{} - {} - Request {} {}",
            event.id,
            event.correlation_id,
            event.name,
            event.method
        );
    }
    Ok(())
}

/// `logResponseHandler`: `<id> - <correlation id> - Response <name> <method> <status>
/// [<latency>ms]`, the latency counted from when the event was built
/// ([`Event::received`]).
pub fn log_response_handler(
    event: &mut Event,
    _params: &[Value],
    ctx: &mut Context,
) -> Result<(), HandlerError> {
    if ctx.allows(Level::Info) {
        // Microseconds shown as milliseconds: most answers take well under one.
        let micros = event.received.elapsed().as_micros();
        log::info!(
            target: TARGET,
            "{} - {} - Response {} {} {} [{}.{:03}ms]",
            event.id,
            event.correlation_id,
            event.name,
            event.method,
            event.response.status_code,
            micros / 1000,
            micros % 1000
        );
    }
    Ok(())
}
