//! A JS handler as a Rust [`Handler`]: the event goes to the host as JSON, and what the
//! handler changed comes back into the event (9.3).

use base64::Engine as _;
use serde_json::{json, Map, Value};

use super::{JsHost, JsOutcome, JsStream};
use configurapi::{
    Body, Chunk, Claim, Context, ErrorResponse, Event, Handler, HandlerError, Identity, Payload,
    Response, Scope,
};

fn b64() -> base64::engine::GeneralPurpose {
    base64::engine::general_purpose::STANDARD
}

/// A handler that runs in the JS host under `name`.
pub struct JsHandler {
    host: JsHost,
    name: String,
}

impl JsHandler {
    /// The JS handler `name` of `host`.
    pub fn new(host: JsHost, name: &str) -> JsHandler {
        JsHandler {
            host,
            name: name.to_string(),
        }
    }
}

impl Handler for JsHandler {
    /// Sends the call and defers: the pipeline suspends until the host answers (the
    /// handler settles, the host dies, or the deadline passes: every call is answered).
    fn call(
        &self,
        event: &mut Event,
        params: &[Value],
        ctx: &mut Context,
    ) -> Result<(), HandlerError> {
        // The policy's log level as its 3.5.1 rank: the bridge drops `this.emit` lines
        // it does not allow, as the Node core's per-policy level does.
        let log_rank = [
            (log::Level::Debug, 100),
            (log::Level::Trace, 75),
            (log::Level::Info, 25),
            (log::Level::Error, 10),
        ]
        .into_iter()
        .find(|(level, _)| ctx.allows(*level))
        .map_or(1, |(_, rank)| rank);
        let completion = ctx.defer();
        let host = self.host.clone();
        self.host.call(
            &self.name,
            &event_bytes(event),
            params,
            log_rank,
            event.request.push.clone(),
            Box::new(move |outcome| {
                completion.resolve(move |event, ctx| apply(&host, outcome, event, ctx));
            }),
        );
        Ok(())
    }

    /// It holds no thread while Node runs the call (it defers), so a route of JS and
    /// non-blocking handlers may start on the reactor thread.
    fn is_nonblocking(&self) -> bool {
        true
    }
}

/// Appends `"key":` and the JSON of `value`.
fn field(out: &mut Vec<u8>, key: &str, value: &impl serde::Serialize) {
    out.push(b'"');
    out.extend_from_slice(key.as_bytes());
    out.extend_from_slice(b"\":");
    let _ = serde_json::to_writer(&mut *out, value);
    out.push(b',');
}

/// The payload keys: `payload` (bytes as base64 with `payloadB64`), or `payloadAbsent`.
fn payload_fields(out: &mut Vec<u8>, payload: &Payload) {
    match payload {
        Payload::Absent => out.extend_from_slice(b"\"payloadAbsent\":true,"),
        Payload::Json(v) => field(out, "payload", v),
        Payload::Text(s) => field(out, "payload", s),
        Payload::Bytes(b) => {
            field(out, "payload", &b64().encode(b));
            out.extend_from_slice(b"\"payloadB64\":true,");
        }
    }
}

fn response_fields(out: &mut Vec<u8>, r: &Response) {
    out.push(b'{');
    field(out, "statusCode", &r.status_code);
    field(out, "headers", &r.headers);
    match &r.body {
        Body::Absent | Body::Stream(_) => out.extend_from_slice(b"\"absent\":true,"),
        Body::Null => out.extend_from_slice(b"\"body\":null,"),
        Body::Json(v) => field(out, "body", v),
        Body::Text(s) => field(out, "body", s),
        Body::Bytes(b) => {
            field(out, "body", &b64().encode(b));
            out.extend_from_slice(b"\"b64\":true,");
        }
    }
    if let Some(e) = &r.error {
        field(
            out,
            "error",
            &json!({"message": e.message, "details": e.details}),
        );
    }
    out.pop(); // the last comma
    out.push(b'}');
}

/// The event as the bridge rebuilds it (the Node core's fields, 2.1), as JSON text:
/// written straight from the event, no `Value` tree is built.
pub(crate) fn event_bytes(event: &Event) -> Vec<u8> {
    let rq = &event.request;
    let mut out = Vec::with_capacity(512);
    out.extend_from_slice(b"{\"request\":{");
    field(&mut out, "name", &rq.name);
    field(&mut out, "method", &rq.method);
    field(&mut out, "headers", &rq.headers);
    field(&mut out, "params", &rq.params);
    field(&mut out, "query", &rq.query);
    field(&mut out, "path", &rq.path);
    field(&mut out, "pathAndQuery", &rq.path_and_query);
    if event.payload_is_the_requests() || rq.payload == *event.payload() {
        // Usually so (2.1.5: the event's payload starts as the request's): sent once,
        // and in Node both names then hold the same object, as in the Node core.
        out.extend_from_slice(b"\"payloadSame\":true,");
    } else {
        payload_fields(&mut out, &rq.payload);
    }
    out.pop();
    out.extend_from_slice(b"},");
    field(&mut out, "id", &event.id);
    field(&mut out, "correlationId", &event.correlation_id);
    field(&mut out, "name", &event.name);
    field(&mut out, "method", &event.method);
    if let Some(v) = &event.version {
        field(&mut out, "version", v);
    }
    field(&mut out, "params", &event.params);
    payload_fields(&mut out, event.payload());
    if let Some(i) = &event.identity {
        field(&mut out, "identity", &i.to_json());
    }
    out.extend_from_slice(b"\"response\":");
    response_fields(&mut out, &event.response);
    out.extend_from_slice(if rq.push.is_some() {
        b",\"push\":true}"
    } else {
        b",\"push\":false}"
    });
    out
}

fn opt_string(v: &Value) -> Option<String> {
    match v {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}

fn identity_from(v: &Value) -> Option<Identity> {
    let m = v.as_object()?;
    let claims = m
        .get("claims")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .map(|c| {
                    let scope = match &c["scope"] {
                        Value::String(s) => Scope::One(s.clone()),
                        Value::Array(list) => Scope::Many(
                            list.iter()
                                .map(|s| s.as_str().map(String::from).unwrap_or(s.to_string()))
                                .collect(),
                        ),
                        _ => Scope::None,
                    };
                    Claim::new(
                        c["type"].as_str().unwrap_or_default(),
                        c["value"].as_str().unwrap_or_default(),
                        scope,
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    let mut identity = Identity::new(m.get("id").and_then(opt_string).unwrap_or_default(), claims);
    identity.issuer = m.get("issuer").and_then(opt_string);
    identity.name = m.get("name").and_then(opt_string);
    identity.email = m.get("email").and_then(opt_string);
    Some(identity)
}

fn payload_from(m: &Map<String, Value>) -> Payload {
    if m.get("payloadAbsent") == Some(&Value::Bool(true)) {
        return Payload::Absent;
    }
    let v = m.get("payload").cloned().unwrap_or(Value::Null);
    if m.get("payloadB64") == Some(&Value::Bool(true)) {
        if let Some(bytes) = v.as_str().and_then(|s| b64().decode(s).ok()) {
            return Payload::Bytes(bytes);
        }
    }
    match v {
        Value::String(s) => Payload::Text(s),
        other => Payload::Json(other),
    }
}

/// A response from the bridge's JSON; a stream body becomes a [`JsStream`].
pub(crate) fn response_from(
    host: &JsHost,
    generation: u64,
    v: Value,
) -> Result<Response, HandlerError> {
    let Value::Object(mut m) = v else {
        return Err(HandlerError::new(
            "The JS handler's response is not an object.",
        ));
    };
    let status = m
        .get("statusCode")
        .and_then(Value::as_f64)
        .filter(|s| (0.0..=65535.0).contains(s))
        .map(|s| s as u16)
        .unwrap_or(200);
    let headers = match m.remove("headers") {
        Some(Value::Object(h)) => h,
        _ => Map::new(),
    };
    let body = if let Some(sid) = m.get("stream").and_then(Value::as_u64) {
        Body::Stream(Box::new(JsStream::new(host, generation, sid)))
    } else if m.get("absent") == Some(&Value::Bool(true)) {
        Body::Absent
    } else if m.get("b64") == Some(&Value::Bool(true)) {
        let s = m.get("body").and_then(Value::as_str).unwrap_or_default();
        Body::Bytes(b64().decode(s).unwrap_or_default())
    } else {
        Body::from_value(m.remove("body").unwrap_or(Value::Null))
    };
    let error = m.get("error").map(|e| {
        ErrorResponse::new(
            e["message"].as_str().unwrap_or_default(),
            status,
            e["details"].as_str().unwrap_or_default(),
        )
    });
    Ok(Response {
        status_code: status,
        body,
        headers,
        error,
    })
}

/// A thrown value as the bridge encoded it (3.4.1).
pub(crate) fn handler_error(e: &Value) -> HandlerError {
    let message = e["message"].as_str().unwrap_or_default().to_string();
    let details = e["details"].as_str().unwrap_or_default().to_string();
    let status = e["statusCode"]
        .as_f64()
        .filter(|s| (1.0..=65535.0).contains(s))
        .map(|s| s as u16);
    match e["kind"].as_str() {
        Some("response") => {
            HandlerError::Response(ErrorResponse::new(message, status.unwrap_or(500), details))
        }
        Some("thrown") => HandlerError::Thrown(message),
        _ => HandlerError::Error {
            message,
            status_code: status,
            details,
        },
    }
}

/// A stream chunk message (6.4.3): text, bytes (base64 on the pipe) or JSON.
pub(crate) fn chunk_from(msg: &Value) -> Chunk {
    if msg["b64"] == true {
        let bytes = msg["chunk"]
            .as_str()
            .and_then(|s| b64().decode(s).ok())
            .unwrap_or_default();
        return Chunk::Bytes(bytes);
    }
    match &msg["chunk"] {
        Value::String(s) if msg["json"] != true => Chunk::Text(s.clone()),
        other => Chunk::Json(other.clone()),
    }
}

/// What the JS handler did, applied to the event and the context.
pub(crate) fn apply(
    host: &JsHost,
    outcome: JsOutcome,
    event: &mut Event,
    ctx: &mut Context,
) -> Result<(), HandlerError> {
    let mut done = match outcome {
        JsOutcome::Done(v) => v,
        JsOutcome::Failed { status, message } => {
            return Err(HandlerError::new(message).with_status(status));
        }
    };
    if done["state"] == "complete" {
        ctx.complete();
    } else {
        ctx.continue_();
    }
    if let Value::Object(mut changed) = done["event"].take() {
        if let Some(Value::String(name)) = changed.remove("name") {
            event.name = name.into();
        }
        if let Some(Value::Object(params)) = changed.remove("params") {
            event.params = params;
        }
        event.identity = changed.get("identity").and_then(identity_from);
        event.set_payload(payload_from(&changed));
        if let Some(Value::Object(headers)) = changed.remove("headers") {
            event.request.headers = headers.into();
        }
        if let Some(r) = changed.remove("response") {
            let g = done["generation"].as_u64().unwrap_or(0);
            event.response = response_from(host, g, r)?;
        }
    }
    match done.get("error") {
        Some(e) => Err(handler_error(e)),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use configurapi::Request;

    #[test]
    fn the_event_text_is_json_with_the_node_core_fields() {
        let mut rq = Request::named("x");
        rq.payload = Payload::Bytes(vec![0xff, 0]);
        rq.headers.insert("message-id".into(), json!("m\"1"));
        let mut event = Event::new(rq);
        event.params.insert("a".into(), json!([1, null]));
        event.identity = Some(Identity::new("ann", vec![]));
        event.response = ErrorResponse::new("no", 403, "d").to_response();
        let v: Value = serde_json::from_slice(&event_bytes(&event)).unwrap();
        assert_eq!(v["name"], "x");
        assert_eq!(v["id"], json!(event.id));
        assert_eq!(v["params"], json!({"a": [1, null]}));
        assert_eq!(v["payload"], "/wA=");
        assert_eq!(v["payloadB64"], true);
        assert_eq!(v["request"]["headers"]["message-id"], "m\"1");
        assert_eq!(v["request"]["payloadSame"], true);
        assert!(v["request"].get("payload").is_none());
        assert_eq!(v["identity"]["id"], "ann");
        assert_eq!(v["response"]["statusCode"], 403);
        assert_eq!(
            v["response"]["error"],
            json!({"message": "no", "details": "d"})
        );
        assert_eq!(v["push"], false);
        assert!(v.get("version").is_none());

        let empty: Value =
            serde_json::from_slice(&event_bytes(&Event::new(Request::default()))).unwrap();
        assert_eq!(empty["payloadAbsent"], true);
        assert_eq!(empty["response"]["body"], "");
    }
}
