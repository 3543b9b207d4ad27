//! The response envelope (6.3): `{"statusCode": n, "headers": {..., "message-id": id},
//! "body": <JSON value>}`, plus `"isBase64Encoded": true` for byte bodies. The one writer
//! of it: the runner's answer frames ([`encode`], [`encode_parts`]), a management post
//! (6.7.4) and the postback client (6.8) ([`Envelope::to_json`]).
//!
//! Written straight into one buffer, once: an answer made inline on the reactor is
//! written into the connection's write queue after room for the frame header
//! ([`estimate`] picks the room); an answer made on a worker into a frame `Vec` the
//! reactor queues as it is.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use serde_json::{Map, Value};

use configurapi::{Body, Chunk, Response};

// #17 json-decode: the message-id as decoded (a string inline), not a `Value`.
use crate::message::MessageId;

/// An envelope held as values: what a management post (6.7.4) sends and what the postback
/// client (6.8) POSTs.
#[derive(Debug, Clone, PartialEq)]
pub struct Envelope {
    /// `statusCode`, 200 when absent.
    pub status_code: u16,
    /// `headers`; a `message-id` in it is kept (a late answer can be matched).
    pub headers: Map<String, Value>,
    /// `body`, embedded as a JSON value; `null` stays `null` (8.1).
    pub body: Value,
    /// Any other top-level keys (e.g. `isBase64Encoded`), written after `body` unchanged.
    pub extra: Map<String, Value>,
}

impl Envelope {
    /// An envelope with no extra keys.
    pub fn new(status_code: u16, headers: Map<String, Value>, body: Value) -> Envelope {
        Envelope {
            status_code,
            headers,
            body,
            extra: Map::new(),
        }
    }

    /// The JSON text: `{"statusCode":..,"headers":{..},"body":..}` then any other keys.
    pub fn to_json(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(head_capacity(&self.headers) + 64);
        write_head(&mut out, self.status_code, &self.headers, &[], None);
        let _ = serde_json::to_writer(&mut out, &self.body);
        for (k, v) in &self.extra {
            out.push(b',');
            let _ = serde_json::to_writer(&mut out, k);
            out.push(b':');
            let _ = serde_json::to_writer(&mut out, v);
        }
        out.push(b'}');
        out
    }
}

/// Encode a complete (non-stream) response. `message_id` is the request's, echoed in
/// the headers (6.3.2).
///
/// The body is written from the response as it is (no copy into a JSON value first):
/// the same bytes as `encode_parts` with [`Body::to_envelope_value`].
pub fn encode(response: &Response, message_id: Option<&MessageId>) -> Vec<u8> {
    let mut out = Vec::with_capacity(size_hint(response));
    encode_into(&mut out, response, message_id);
    out
}

/// A first guess at [`encode`]'s size, so that most envelopes are written without
/// growing their buffer.
pub fn size_hint(response: &Response) -> usize {
    let body = match &response.body {
        Body::Text(s) => s.len() + 2,
        Body::Bytes(b) => b.len() / 3 * 4 + 32,
        _ => 64,
    };
    head_capacity(&response.headers) + body
}

/// About the length of [`encode`]'s envelope (exact when nothing needs escaping and the
/// values are strings): an answer written into the write queue leaves room for the
/// frame header this calls for (#17).
pub fn estimate(response: &Response, message_id: Option<&MessageId>) -> usize {
    let value = |v: &Value| match v {
        Value::String(s) => s.len() + 2,
        Value::Null | Value::Bool(_) => 5,
        Value::Number(_) => 8,
        _ => 64,
    };
    // `{"statusCode":200,"headers":{},"body":}`, then each header `"k":v` and a comma
    // between two.
    let mut n = 39;
    for (k, v) in &response.headers {
        n += k.len() + 4 + value(v);
    }
    match message_id {
        Some(MessageId::Str(s)) => n += 16 + s.len(),
        Some(MessageId::Value(id)) => n += 14 + value(id), // #17 json-decode
        None => {}
    }
    if !response.headers.is_empty() || message_id.is_some() {
        n -= 1;
    }
    n + match &response.body {
        Body::Absent | Body::Stream(_) => 2,
        Body::Null => 4,
        Body::Json(v) => value(v),
        Body::Text(s) => s.len() + 2,
        Body::Bytes(b) => b.len().div_ceil(3) * 4 + 25,
    }
}

/// [`encode`], appended to `out` (#17: an inline answer is written straight into the
/// connection's write queue).
pub fn encode_into(out: &mut Vec<u8>, response: &Response, message_id: Option<&MessageId>) {
    write_head(
        out,
        response.status_code,
        &response.headers,
        &[],
        message_id,
    );
    let mut base64 = false;
    match &response.body {
        // #17 json-reply: a string body with nothing to escape (an echo's), its closing
        // quote and the envelope's brace in one piece.
        Body::Text(s) | Body::Json(Value::String(s)) if !needs_escape(s.as_bytes()) => {
            out.push(b'"');
            out.extend_from_slice(s.as_bytes());
            out.extend_from_slice(b"\"}");
            return;
        }
        // A stream is sent as chunk frames; here it counts as no body, as absent does.
        Body::Absent | Body::Stream(_) => out.extend_from_slice(b"\"\""),
        Body::Null => out.extend_from_slice(b"null"),
        Body::Json(v) => write_value(out, v),
        Body::Text(s) => write_str(out, s),
        Body::Bytes(b) => {
            // The base64 alphabet needs no JSON escaping.
            out.push(b'"');
            out.extend_from_slice(STANDARD.encode(b).as_bytes());
            out.push(b'"');
            base64 = true;
        }
    }
    write_tail(out, base64);
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
    message_id: Option<&MessageId>,
    body: &Value,
    base64: bool,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(head_capacity(headers) + 64);
    write_head(&mut out, status, headers, extra, message_id);
    let _ = serde_json::to_writer(&mut out, body);
    write_tail(&mut out, base64);
    out
}

/// A first guess at the head's size, so that most frames are written without growing.
fn head_capacity(headers: &Map<String, Value>) -> usize {
    64 + headers.len() * 32
}

/// `{"statusCode":n,"headers":{...},"body":` (the body comes next).
fn write_head(
    out: &mut Vec<u8>,
    status: u16,
    headers: &Map<String, Value>,
    extra: &[(&str, &str)],
    message_id: Option<&MessageId>,
) {
    // #17 json-reply: a three-digit status (every HTTP one) in one fixed-size piece with
    // the keys around it: a few stores, no digit loop, one capacity check.
    if (100..1000).contains(&status) {
        let mut head = *b"{\"statusCode\":000,\"headers\":{";
        head[14] += (status / 100) as u8;
        head[15] += (status / 10 % 10) as u8;
        head[16] += (status % 10) as u8;
        out.extend_from_slice(&head);
    } else {
        out.extend_from_slice(b"{\"statusCode\":");
        push_decimal(out, status);
        out.extend_from_slice(b",\"headers\":{");
    }
    let mut first = true;
    let mut field = |out: &mut Vec<u8>, k: &str| {
        if !first {
            out.push(b',');
        }
        first = false;
        write_str(out, k);
        out.push(b':');
    };
    for (k, v) in headers {
        let overridden =
            extra.iter().any(|(e, _)| e == k) || (message_id.is_some() && k == "message-id");
        if !overridden {
            field(out, k);
            write_value(out, v);
        }
    }
    for (k, v) in extra {
        field(out, k);
        write_str(out, v);
    }
    if let Some(id) = message_id {
        // A constant key: written as it is, not through write_str's escape check.
        if !first {
            out.push(b',');
        }
        out.extend_from_slice(b"\"message-id\":");
        match id {
            MessageId::Str(s) => write_str(out, s),
            MessageId::Value(v) => write_value(out, v),
        }
    }
    out.extend_from_slice(b"},\"body\":");
}

/// A JSON value as serde_json writes it; strings through [`write_str`].
// #17 hotsplit: inlined at the runner's opt-level "s" too (docs/size.md, fourth pass).
#[inline]
fn write_value(out: &mut Vec<u8>, v: &Value) {
    match v {
        Value::String(s) => write_str(out, s),
        // Writing into a Vec cannot fail.
        _ => {
            let _ = serde_json::to_writer(&mut *out, v);
        }
    }
}

/// A JSON string as serde_json writes it. Most header names, ids and short bodies need
/// no escaping: those are copied between quotes in one go (serde_json's writer goes
/// through its escape table a byte at a time and `io::Write` a piece at a time).
// #17 json-reply: the copy inlined where strings are written, the escaping writer out of
// line (a call and its register saves were a third of a short id's cost).
#[inline]
fn write_str(out: &mut Vec<u8>, s: &str) {
    if needs_escape(s.as_bytes()) {
        return write_escaped(out, s);
    }
    out.reserve(s.len() + 2);
    out.push(b'"');
    out.extend_from_slice(s.as_bytes());
    out.push(b'"');
}

/// [`write_str`] for a string with something to escape: serde_json's writer.
#[cold]
#[inline(never)]
fn write_escaped(out: &mut Vec<u8>, s: &str) {
    let _ = serde_json::to_writer(&mut *out, s);
}

/// Whether `b` has a byte JSON escapes: a control byte, `"` or `\\`. Eight bytes at a
/// time (a byte-wise loop was a quarter of the envelope's instructions); the end of a
/// long one is the last eight bytes again, a short one two overlapping 4-byte reads (its
/// bytes one by one under 4).
#[inline] // #17 json-reply: a few instructions for a short string: no call
fn needs_escape(b: &[u8]) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    // The high bit of each byte of the answer is set where that byte of `w` is zero
    // (exact for every byte, not just "a zero somewhere").
    let zero = |w: u64| !(((w & !HIGH) + !HIGH) | w) & HIGH;
    // A byte under 0x20 has its top three bits clear.
    let bad = |w: u64| {
        zero(w & (0xE0 * ONES)) | zero(w ^ (b'"' as u64 * ONES)) | zero(w ^ (b'\\' as u64 * ONES))
            != 0
    };
    let word = |c: &[u8]| u64::from_le_bytes(c.try_into().unwrap_or([b' '; 8]));
    if b.len() < 8 {
        // #17 json-reply: 4 to 7 bytes (most ids and short bodies) as two overlapping
        // 4-byte reads, fewer a byte at a time: no copy into a padded word (a call to
        // memcpy).
        if b.len() >= 4 {
            let half = |c: &[u8]| u32::from_le_bytes(c.try_into().unwrap_or([b' '; 4]));
            let w = u64::from(half(&b[..4])) | u64::from(half(&b[b.len() - 4..])) << 32;
            return bad(w);
        }
        return b.iter().any(|&c| c < 0x20 || c == b'"' || c == b'\\');
    }
    let mut chunks = b.chunks_exact(8);
    if chunks.any(|c| bad(word(c))) {
        return true;
    }
    b.len() % 8 != 0 && bad(word(&b[b.len() - 8..]))
}

/// The end of the frame, after the body.
fn write_tail(out: &mut Vec<u8>, base64: bool) {
    if base64 {
        out.extend_from_slice(b",\"isBase64Encoded\":true");
    }
    out.push(b'}');
}

/// `n` in decimal, without going through `fmt`.
fn push_decimal(out: &mut Vec<u8>, mut n: u16) {
    let mut digits = [0u8; 5];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
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
        let v = parse(&encode(&r, Some(&MessageId::Str("m-1".into()))));
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
        let v = parse(&encode(&r, Some(&json!("request").into())));
        assert_eq!(v["headers"], json!({"message-id": "request"}));
    }

    #[test]
    fn envelope_to_json_is_the_value_serialized_in_field_order() {
        let mut extra = Map::new();
        extra.insert("isBase64Encoded".into(), json!(false));
        extra.insert("z\"k".into(), json!([1, null]));
        let headers = json!({"message-id": "m1", "X": "y\u{e9}"});
        let Value::Object(headers) = headers else {
            unreachable!()
        };
        for (status, body, extra) in [
            (200, json!(""), Map::new()),
            (201, json!({"b": 1, "a": 2}), extra.clone()),
            (599, Value::Null, extra),
        ] {
            let e = Envelope {
                status_code: status,
                headers: headers.clone(),
                body: body.clone(),
                extra: extra.clone(),
            };
            let mut m = Map::new();
            m.insert("statusCode".into(), json!(status));
            m.insert("headers".into(), Value::Object(headers.clone()));
            m.insert("body".into(), body);
            m.extend(extra);
            assert_eq!(e.to_json(), serde_json::to_vec(&Value::Object(m)).unwrap());
        }
    }

    #[test]
    fn encode_writes_the_bytes_of_the_envelope_value() {
        let bodies = [
            Body::Absent,
            Body::Null,
            Body::Json(json!({"a": [1, 2.5, "x\"y"], "b": null})),
            Body::Json(json!("s")),
            Body::Json(json!("j\"\u{1}")),
            Body::Text("t\u{e9}\n\"".into()),
            Body::Text("plain".into()),
            Body::Bytes(vec![0xff, 0x00, 0x10]),
            Body::Bytes(Vec::new()),
        ];
        // Both sides of the three-digit statuses' fixed-size head (#17 json-reply).
        for status in [0, 7, 99, 100, 200, 404, 999, 1000, 65535] {
            for body in &bodies {
                let mut r = Response::new(body.clone(), status)
                    .with_header("x", "y")
                    .with_header("message-id", "h");
                r.headers.insert("n".into(), json!(1));
                // #17 json-decode: an inline id writes what its `Value` writes.
                let ids = [
                    None,
                    Some(json!("m").into()),
                    Some(MessageId::Str("m\"\u{e9}".into())),
                    Some(json!(3).into()),
                ];
                for id in ids {
                    let (value, base64) = body.to_envelope_value().unwrap();
                    let expected =
                        encode_parts(status, &r.headers, &[], id.as_ref(), &value, base64);
                    assert_eq!(encode(&r, id.as_ref()), expected, "{body:?} {status}");
                    if let Some(MessageId::Str(s)) = &id {
                        let as_value = MessageId::from(json!(s.as_str()));
                        assert_eq!(expected, encode(&r, Some(&as_value)), "{s}");
                    }
                }
            }
        }
    }

    #[test]
    fn every_status_is_written_as_serde_json_writes_it() {
        // #17 json-reply: three-digit statuses take a fixed-size head, the others the
        // digit loop; both must be serde_json's bytes. (With a message-id: the test
        // above, against encode_parts.)
        for status in [
            0, 1, 9, 10, 99, 100, 101, 200, 204, 404, 500, 999, 1000, 65535,
        ] {
            let r = Response::new("b", status).with_header("x", "y");
            let want = serde_json::to_vec(&json!({
                "statusCode": status,
                "headers": {"x": "y"},
                "body": "b"
            }))
            .unwrap();
            assert_eq!(encode(&r, None), want, "{status}");
        }
    }

    #[test]
    fn estimate_is_exact_for_envelopes_of_plain_strings() {
        let bodies = [
            Body::Absent,
            Body::Null,
            Body::Text("hello".into()),
            Body::Json(json!("hello")),
        ];
        for body in bodies {
            for id in [
                None,
                Some(json!("m-17").into()),
                Some(MessageId::Str("m-17".into())),
            ] {
                let r = Response::new(body.clone(), 200).with_header("x-a", "value");
                assert_eq!(
                    estimate(&r, id.as_ref()),
                    encode(&r, id.as_ref()).len(),
                    "{body:?} {id:?}"
                );
            }
        }
    }

    #[test]
    fn encode_into_appends_what_encode_returns() {
        let r = Response::json(json!({"a": "b"}), 202).with_header("x", "y");
        let id = MessageId::Str("m-7".into());
        let mut out = b"already here".to_vec();
        encode_into(&mut out, &r, Some(&id));
        let mut want = b"already here".to_vec();
        want.extend_from_slice(&encode(&r, Some(&id)));
        assert_eq!(out, want);
    }

    #[test]
    fn needs_escape_finds_every_escaped_byte_at_every_position() {
        for len in 0..20 {
            let clean = vec![b'a'; len];
            assert!(!needs_escape(&clean));
            for at in 0..len {
                for byte in 0..=255u8 {
                    let mut b = clean.clone();
                    b[at] = byte;
                    let want = byte < 0x20 || byte == b'"' || byte == b'\\';
                    assert_eq!(needs_escape(&b), want, "byte {byte:#x} at {at} of {len}");
                }
            }
        }
    }

    #[test]
    fn strings_are_written_as_serde_json_writes_them() {
        let cases = [
            "",
            "17",
            "message-id",
            "hello world",
            "caf\u{e9} \u{1F600}",
            "a\"b",
            "a\\b",
            "tab\there",
            "nl\n",
            "\u{0}",
            "\u{1f}",
            "\u{7f}",
            " ~",
            "</script>",
        ];
        for s in cases {
            let mut out = Vec::new();
            write_str(&mut out, s);
            assert_eq!(out, serde_json::to_vec(s).unwrap(), "{s:?}");
            let v = Value::String(s.to_string());
            let mut out = Vec::new();
            write_value(&mut out, &v);
            assert_eq!(out, serde_json::to_vec(&v).unwrap(), "{s:?}");
            let r = Response::new(s, 200).with_header(s, s);
            let mut m = Map::new();
            m.insert("statusCode".into(), json!(200));
            let mut h = Map::new();
            h.insert(s.to_string(), json!(s));
            h.insert("message-id".into(), json!(s));
            m.insert("headers".into(), Value::Object(h));
            m.insert("body".into(), json!(s));
            let want = serde_json::to_vec(&Value::Object(m)).unwrap();
            if s != "message-id" {
                // #17 json-decode: as decoded (a string inline) and as a value.
                for id in [MessageId::Str(s.into()), json!(s).into()] {
                    assert_eq!(encode(&r, Some(&id)), want, "{s:?}");
                }
            }
        }
    }
}
