//! `configurapi-handler-http`: response setters, the empty-payload check and
//! CORS (section 5, 5.1).

use regex::Regex;
use serde_json::{Map, Value};
use std::collections::HashMap;
use std::sync::{LazyLock, Mutex};

use super::params;
use crate::{js, Body, Context, ErrorResponse, Event, HandlerError, HandlerPack};

/// The pack. `setJsonResponseHandler` is in it too, as in older versions of
/// the Node package.
pub fn pack() -> HandlerPack {
    HandlerPack::new(super::HTTP_PACK)
        .with_nonblocking("setResponseHandler", set_response_handler)
        .with_nonblocking("setResponseBodyHandler", set_response_body_handler)
        .with_nonblocking("setResponseHeaderHandler", set_response_header_handler)
        .with_nonblocking(
            "setResponseStatusCodeHandler",
            set_response_status_code_handler,
        )
        .with_nonblocking(
            "validateEmptyRequestPayloadHandler",
            validate_empty_request_payload_handler,
        )
        .with_nonblocking(
            "allowCrossOriginResourceSharingHandler",
            allow_cross_origin_resource_sharing_handler,
        )
        .with_nonblocking(
            "setJsonResponseHandler",
            super::json::set_json_response_handler,
        )
}

/// `setResponseHandler [statusCode=200, body="", headers?]`: sets the status,
/// the body resolved with `$(...)` (on a copy), and merges the headers.
pub fn set_response_handler(
    event: &mut Event,
    params: &[Value],
    _ctx: &mut Context,
) -> Result<(), HandlerError> {
    let status = params::status(params.first(), Some(200))?;
    let body = match params.get(1) {
        Some(body) => event.resolve(body),
        None => Value::String(String::new()),
    };
    event.response.status_code = status;
    event.response.body = Body::from_value(body);
    if let Some(Value::Object(headers)) = params.get(2) {
        merge_headers(&mut event.response.headers, headers);
    }
    Ok(())
}

/// `setResponseBodyHandler [body]`: the body, resolved with `$(...)`.
pub fn set_response_body_handler(
    event: &mut Event,
    params: &[Value],
    _ctx: &mut Context,
) -> Result<(), HandlerError> {
    event.response.body = match params.first() {
        Some(body) => Body::from_value(event.resolve(body)),
        None => Body::Absent,
    };
    Ok(())
}

/// `setResponseHeaderHandler [name, value]`: one header, not resolved.
pub fn set_response_header_handler(
    event: &mut Event,
    params: &[Value],
    _ctx: &mut Context,
) -> Result<(), HandlerError> {
    if let (Some(name), Some(value)) = (params.first(), params.get(1)) {
        event
            .response
            .headers
            .insert(js::key_text(name), value.clone());
    }
    Ok(())
}

/// `setResponseStatusCodeHandler [statusCode]`: the status; a numeric
/// string such as a quoted YAML `"204"` becomes the number.
pub fn set_response_status_code_handler(
    event: &mut Event,
    params: &[Value],
    _ctx: &mut Context,
) -> Result<(), HandlerError> {
    event.response.status_code = params::status(params.first(), None)?;
    Ok(())
}

/// `validateEmptyRequestPayloadHandler`: a JS-truthy request payload gives
/// `ErrorResponse('Request payload should be empty.', 400)` and completes.
pub fn validate_empty_request_payload_handler(
    event: &mut Event,
    _params: &[Value],
    ctx: &mut Context,
) -> Result<(), HandlerError> {
    if event.request.payload.is_truthy() {
        event.response = ErrorResponse::new("Request payload should be empty.", 400, "").into();
        ctx.complete();
    }
    Ok(())
}

/// `allowCrossOriginResourceSharingHandler [allowOrigin, allowMethods,
/// allowHeaders, allowCredentials, maxAge, exposeHeaders]` (5.1): each header
/// is set, in this order, only when its value is JS-truthy.
pub fn allow_cross_origin_resource_sharing_handler(
    event: &mut Event,
    params: &[Value],
    _ctx: &mut Context,
) -> Result<(), HandlerError> {
    let param = |i: usize| params.get(i).filter(|v| js::is_truthy(v)).cloned();
    let request_header = |name: &str| {
        event
            .request
            .headers
            .get(name)
            .filter(|v| js::is_truthy(v))
            .cloned()
    };
    let origin = request_header("origin");

    let methods = param(1).or_else(|| request_header("access-control-request-method"));
    let headers = param(2).or_else(|| request_header("access-control-request-headers"));
    let allow_origin = match params.first() {
        Some(Value::Bool(true)) => origin.clone(),
        Some(Value::Array(items)) => Some(Value::String(js::to_text(&Value::Array(items.clone())))),
        Some(Value::String(pattern)) if !pattern.is_empty() => match &origin {
            Some(o) => {
                let re = origin_pattern(pattern)?;
                // Unanchored, as JS RegExp.test: a match anywhere echoes the origin.
                re.is_match(&js::to_text(o)).then(|| o.clone())
            }
            None => None,
        },
        _ => None,
    };

    let out = &mut event.response.headers;
    for (name, value) in [
        ("Access-Control-Allow-Methods", methods),
        ("Access-Control-Allow-Headers", headers),
        ("Access-Control-Allow-Origin", allow_origin),
        ("Access-Control-Allow-Credentials", param(3)),
        ("Access-Control-Max-Age", param(4)),
        ("Access-Control-Expose-Headers", param(5)),
    ] {
        if let Some(value) = value.filter(js::is_truthy) {
            out.insert(name.to_string(), header_value(value));
        }
    }
    Ok(())
}

/// Compiled allowOrigin patterns, so a preflight does not recompile its regex.
fn origin_pattern(pattern: &str) -> Result<Regex, HandlerError> {
    static CACHE: LazyLock<Mutex<HashMap<String, Regex>>> = LazyLock::new(Default::default);
    let mut cache = CACHE.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(re) = cache.get(pattern) {
        return Ok(re.clone());
    }
    let re = Regex::new(pattern)
        .map_err(|e| HandlerError::new(format!("Invalid allowOrigin pattern: {e}")))?;
    cache.insert(pattern.to_string(), re.clone());
    Ok(re)
}

/// A sequence header value is written as its items joined with `,`.
fn header_value(value: Value) -> Value {
    match value {
        Value::Array(_) => Value::String(js::to_text(&value)),
        other => other,
    }
}

pub(crate) fn merge_headers(into: &mut Map<String, Value>, from: &Map<String, Value>) {
    for (k, v) in from {
        into.insert(k.clone(), v.clone());
    }
}
