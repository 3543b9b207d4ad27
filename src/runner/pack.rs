//! The runner's own handler pack, `configurapi-handler-ws` (8.7, 8.12): always
//! available, used by the default config, the demos, the benchmarks and the tests.

use std::time::Duration;

use base64::Engine as _;
use serde_json::{json, Map, Value};

use crate::configurapi::{
    Body, Chunk, Context, Event, HandlerError, HandlerPack, Identity, Payload, Response,
};

/// The pack's name, also accepted by `import:` (it changes nothing).
pub const PACK: &str = "configurapi-handler-ws";

/// The pack with its nine handlers. None holds a thread while it waits: `delayHandler`
/// defers to the shared timer, and `pushHandler` defers while a slow client has no room
/// (6.4.5). All but `pushHandler` may start on the reactor thread; a push made there
/// would reach the reactor's command queue after the inline reply it precedes, so
/// routes that push start on a worker, which sends both through that queue in order.
pub fn pack() -> HandlerPack {
    HandlerPack::new(PACK)
        .with_nonblocking("echoHandler", echo)
        .with_nonblocking("streamHandler", stream)
        .with("pushHandler", push)
        .with_nonblocking("delayHandler", delay)
        .with_nonblocking("throwHandler", throw)
        .with_nonblocking("headerHandler", header)
        .with_nonblocking("identityHandler", identity)
        .with_nonblocking("whoamiHandler", whoami)
        .with_nonblocking("inspectEventHandler", inspect)
}

type R = Result<(), HandlerError>;

fn number(params: &[Value], i: usize) -> Option<u64> {
    match params.get(i)? {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// `echoHandler`: 200, body = payload ("" when there is none).
fn echo(event: &mut Event, _: &[Value], _: &mut Context) -> R {
    event.response.status_code = 200;
    event.response.body = match event.payload() {
        Payload::Absent => Body::Text(String::new()),
        Payload::Json(v) => Body::Json(v.clone()),
        Payload::Text(s) => Body::Text(s.clone()),
        Payload::Bytes(b) => Body::Bytes(b.clone()),
    };
    Ok(())
}

/// `streamHandler [count=3, chunkBytes=16, failAfter]`: `count` text chunks of
/// `chunkBytes` 'x' bytes; with `failAfter` below `count`, the stream fails after that
/// many chunks (6.4.4).
fn stream(event: &mut Event, params: &[Value], _: &mut Context) -> R {
    let count = number(params, 0).unwrap_or(3);
    let size = number(params, 1).unwrap_or(16) as usize;
    let fail_after = number(params, 2).filter(|&f| f < count);
    let chunk = "x".repeat(size);
    let mut sent = 0u64;
    let iter = std::iter::from_fn(move || {
        if Some(sent) == fail_after {
            sent = u64::MAX; // end after the failure
            return Some(Err(HandlerError::new("stream failed")));
        }
        if sent >= count {
            return None;
        }
        sent += 1;
        Some(Ok(Chunk::Text(chunk.clone())))
    });
    event.response = Response::stream(iter, 200);
    Ok(())
}

/// `pushHandler [body]`: pushes `{200, {"x-push": "1"}, resolved body}`, then continues.
/// While the client holds more than the high-water mark the push waits (6.4.5), and so
/// does the policy, deferred: no thread waits with it.
fn push(event: &mut Event, params: &[Value], ctx: &mut Context) -> R {
    let body = params
        .first()
        .map(|v| event.resolve(v))
        .unwrap_or(Value::Null);
    let response = Response {
        status_code: 200,
        body: Body::from_value(body),
        headers: Map::from_iter([("x-push".to_string(), json!("1"))]),
        error: None,
    };
    let done = ctx.defer();
    event.push_then(
        response,
        Box::new(move |sent| done.finish(sent.map_err(HandlerError::from))),
    );
    Ok(())
}

/// `delayHandler [ms]`: waits, then continues. The wait holds no thread: the policy
/// defers and the shared timer resolves it.
fn delay(_: &mut Event, params: &[Value], ctx: &mut Context) -> R {
    let ms = number(params, 0).unwrap_or(0);
    if ms > 0 {
        super::timer::after(Duration::from_millis(ms), ctx.defer());
    }
    Ok(())
}

/// `throwHandler [message="boom", statusCode=500]`: fails with that message and status.
fn throw(_: &mut Event, params: &[Value], _: &mut Context) -> R {
    let message = match params.first() {
        Some(Value::String(s)) => s.clone(),
        Some(v) if !v.is_null() => v.to_string(),
        _ => "boom".to_string(),
    };
    let status = number(params, 1)
        .and_then(|n| u16::try_from(n).ok())
        .unwrap_or(500);
    Err(HandlerError::new(message).with_status(status))
}

/// `headerHandler [name]`: body = the request header `name` (null when absent).
fn header(event: &mut Event, params: &[Value], _: &mut Context) -> R {
    let name = params.first().and_then(Value::as_str).unwrap_or("");
    let value = event
        .request
        .headers
        .get(name)
        .cloned()
        .unwrap_or(Value::Null);
    event.response.status_code = 200;
    event.response.body = Body::from_value(value);
    Ok(())
}

/// `identityHandler [id]`: sets the identity (id resolved with `$(...)`).
fn identity(event: &mut Event, params: &[Value], _: &mut Context) -> R {
    let id = match params.first().map(|v| event.resolve(v)) {
        Some(Value::String(s)) => s,
        Some(Value::Null) | None => String::new(),
        Some(v) => v.to_string(),
    };
    event.identity = Some(Identity::new(id, Vec::new()));
    Ok(())
}

/// `whoamiHandler`: body = the identity id, or null.
fn whoami(event: &mut Event, _: &[Value], _: &mut Context) -> R {
    event.response.status_code = 200;
    event.response.body = match &event.identity {
        Some(i) => Body::Json(Value::String(i.id.clone())),
        None => Body::Null,
    };
    Ok(())
}

fn payload_value(p: &Payload) -> Value {
    match p {
        Payload::Absent => Value::Null,
        Payload::Json(v) => v.clone(),
        Payload::Text(s) => Value::String(s.clone()),
        Payload::Bytes(b) => Value::String(base64::engine::general_purpose::STANDARD.encode(b)),
    }
}

/// `inspectEventHandler`: body = the event as JSON (8.12), for debugging.
fn inspect(event: &mut Event, _: &[Value], _: &mut Context) -> R {
    let identity = event.identity.as_ref().map_or(
        Value::Null,
        |i| json!({"id": i.id, "issuer": i.issuer, "name": i.name, "email": i.email}),
    );
    let body = json!({
        "id": event.id,
        "correlationId": event.correlation_id,
        "name": event.name,
        "method": event.method,
        "version": event.version,
        "params": event.params,
        "query": event.request.query,
        "payload": payload_value(event.payload()),
        "identity": identity,
        // push-function lives outside the header map, so nothing to remove here.
        "headers": event.request.headers,
    });
    event.response.status_code = 200;
    event.response.body = Body::Json(body);
    Ok(())
}
