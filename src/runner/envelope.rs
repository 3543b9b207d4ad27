//! The response frame (6.3): `{"statusCode": n, "headers": {..., "message-id": id},
//! "body": <JSON value>}`, plus `"isBase64Encoded": true` for byte bodies.
//!
//! Written straight into one buffer: the frame's JSON is produced once, on the worker
//! thread, and the reactor only prefixes the frame header.

use serde_json::{Map, Value};

use crate::configurapi::{Body, Chunk, Response};

/// Encode a complete (non-stream) response. `message_id` is the request's, echoed in
/// the headers (6.3.2).
pub fn encode(response: &Response, message_id: Option<&Value>) -> Vec<u8> {
    let (body, base64) = response
        .body
        .to_envelope_value()
        .unwrap_or((Value::String(String::new()), false));
    encode_parts(
        response.status_code,
        &response.headers,
        &[],
        message_id,
        &body,
        base64,
    )
}

/// The body value of a stream chunk (6.4.3): text as a string, bytes as UTF-8 text
/// when valid and base64 otherwise, objects as JSON.
pub fn chunk_value(chunk: Chunk) -> (Value, bool) {
    match chunk {
        Chunk::Text(s) => (Value::String(s), false),
        Chunk::Json(v) => (v, false),
        Chunk::Bytes(b) => match String::from_utf8(b) {
            Ok(s) => (Value::String(s), false),
            Err(e) => Body::Bytes(e.into_bytes())
                .to_envelope_value()
                .unwrap_or((Value::Null, false)),
        },
    }
}

/// Encode one frame: the response headers, then `extra` headers (`x-stream`,
/// `x-stream-id` for stream frames), then the message-id; then the body.
pub fn encode_parts(
    status: u16,
    headers: &Map<String, Value>,
    extra: &[(&str, &str)],
    message_id: Option<&Value>,
    body: &Value,
    base64: bool,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(64 + headers.len() * 32);
    out.extend_from_slice(b"{\"statusCode\":");
    out.extend_from_slice(status.to_string().as_bytes());
    out.extend_from_slice(b",\"headers\":{");
    let mut first = true;
    let mut field = |out: &mut Vec<u8>, k: &str, v: &Value| {
        if !first {
            out.push(b',');
        }
        first = false;
        // Writing into a Vec cannot fail.
        let _ = serde_json::to_writer(&mut *out, k);
        out.push(b':');
        let _ = serde_json::to_writer(&mut *out, v);
    };
    for (k, v) in headers {
        let overridden =
            extra.iter().any(|(e, _)| e == k) || (message_id.is_some() && k == "message-id");
        if !overridden {
            field(&mut out, k, v);
        }
    }
    for (k, v) in extra {
        field(&mut out, k, &Value::String((*v).to_string()));
    }
    if let Some(id) = message_id {
        field(&mut out, "message-id", id);
    }
    out.extend_from_slice(b"},\"body\":");
    let _ = serde_json::to_writer(&mut out, body);
    if base64 {
        out.extend_from_slice(b",\"isBase64Encoded\":true");
    }
    out.push(b'}');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(b: &[u8]) -> Value {
        serde_json::from_slice(b).unwrap()
    }

    #[test]
    fn s6_3_1_envelope_has_status_headers_and_body_with_message_id() {
        let r = Response::json(json!({"a": 1}), 201).with_header("x", "y");
        let v = parse(&encode(&r, Some(&json!("m-1"))));
        assert_eq!(
            v,
            json!({
                "statusCode": 201,
                "headers": {"Content-Type": "application/json", "x": "y", "message-id": "m-1"},
                "body": {"a": 1}
            })
        );
    }

    #[test]
    fn s8_1_absent_body_is_empty_string_and_null_is_null() {
        let mut r = Response::new("", 200);
        r.body = Body::Absent;
        assert_eq!(parse(&encode(&r, None))["body"], json!(""));
        r.body = Body::Null;
        assert_eq!(parse(&encode(&r, None))["body"], Value::Null);
    }

    #[test]
    fn s6_3_3_bytes_are_base64_with_a_flag() {
        let mut r = Response::new("", 200);
        r.body = Body::Bytes(vec![0xff, 0x00]);
        let v = parse(&encode(&r, None));
        assert_eq!(v["body"], json!("/wA="));
        assert_eq!(v["isBase64Encoded"], json!(true));
    }

    #[test]
    fn s6_3_2_request_message_id_wins_over_a_handler_header() {
        let r = Response::new("x", 200).with_header("message-id", "handler");
        let v = parse(&encode(&r, Some(&json!("request"))));
        assert_eq!(v["headers"], json!({"message-id": "request"}));
    }
}
