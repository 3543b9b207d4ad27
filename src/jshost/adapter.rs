//! A JS handler as a Rust [`Handler`]: the event goes to the host as JSON, and what the
//! handler changed comes back into the event (9.3).

use base64::Engine as _;
use serde_json::{json, Map, Value};

use super::{JsHost, JsOutcome, JsStream};
use crate::configurapi::{
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
        let completion = ctx.defer();
        let host = self.host.clone();
        self.host.call(
            &self.name,
            event_json(event),
            params,
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

fn payload_into(m: &mut Map<String, Value>, payload: &Payload) {
    match payload {
        Payload::Absent => {
            m.insert("payloadAbsent".into(), Value::Bool(true));
        }
        Payload::Json(v) => {
            m.insert("payload".into(), v.clone());
        }
        Payload::Text(s) => {
            m.insert("payload".into(), Value::String(s.clone()));
        }
        Payload::Bytes(b) => {
            m.insert("payload".into(), Value::String(b64().encode(b)));
            m.insert("payloadB64".into(), Value::Bool(true));
        }
    }
}

fn response_json(r: &Response) -> Value {
    let mut m = Map::new();
    m.insert("statusCode".into(), Value::from(r.status_code));
    m.insert("headers".into(), Value::Object(r.headers.clone()));
    match &r.body {
        Body::Absent | Body::Stream(_) => {
            m.insert("absent".into(), Value::Bool(true));
        }
        Body::Null => {
            m.insert("body".into(), Value::Null);
        }
        Body::Json(v) => {
            m.insert("body".into(), v.clone());
        }
        Body::Text(s) => {
            m.insert("body".into(), Value::String(s.clone()));
        }
        Body::Bytes(b) => {
            m.insert("body".into(), Value::String(b64().encode(b)));
            m.insert("b64".into(), Value::Bool(true));
        }
    }
    if let Some(e) = &r.error {
        m.insert(
            "error".into(),
            json!({"message": e.message, "details": e.details}),
        );
    }
    Value::Object(m)
}

/// The event as the bridge rebuilds it (the Node core's fields, 2.1).
pub(crate) fn event_json(event: &Event) -> Value {
    let rq = &event.request;
    let mut request = Map::new();
    request.insert("name".into(), Value::String(rq.name.clone()));
    request.insert("method".into(), Value::String(rq.method.clone()));
    request.insert("headers".into(), Value::Object(rq.headers.clone()));
    request.insert("params".into(), Value::Object(rq.params.clone()));
    request.insert("query".into(), Value::Object(rq.query.clone()));
    request.insert("path".into(), Value::String(rq.path.clone()));
    request.insert(
        "pathAndQuery".into(),
        Value::String(rq.path_and_query.clone()),
    );
    payload_into(&mut request, &rq.payload);
    let mut m = Map::new();
    m.insert("id".into(), Value::String(event.id.clone()));
    m.insert(
        "correlationId".into(),
        Value::String(event.correlation_id.clone()),
    );
    m.insert("name".into(), Value::String(event.name.clone()));
    m.insert("method".into(), Value::String(event.method.clone()));
    if let Some(v) = &event.version {
        m.insert("version".into(), Value::String(v.clone()));
    }
    m.insert("params".into(), Value::Object(event.params.clone()));
    payload_into(&mut m, &event.payload);
    if let Some(i) = &event.identity {
        m.insert("identity".into(), i.to_json());
    }
    m.insert("request".into(), Value::Object(request));
    m.insert("response".into(), response_json(&event.response));
    m.insert("push".into(), Value::Bool(rq.push.is_some()));
    Value::Object(m)
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
            event.name = name;
        }
        if let Some(Value::Object(params)) = changed.remove("params") {
            event.params = params;
        }
        event.identity = changed.get("identity").and_then(identity_from);
        event.payload = payload_from(&changed);
        if let Some(Value::Object(headers)) = changed.remove("headers") {
            event.request.headers = headers;
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
