//! The body of `POST /@connections/{id}`: `{statusCode?, headers?, body?}` checked and
//! turned into the response envelope the client receives (semantics 6.3, 6.7.4, 8.14).

use serde_json::{Map, Value};

pub use crate::envelope::Envelope;

/// Why a post body was refused; the management server answers 400 with this text as
/// the ErrorResponse details.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BadBody(pub &'static str);

/// Check a post body. Call it only after the target connection is known to be connected:
/// 8.5 answers 410 for a gone id before the body is looked at. An empty body (or only
/// whitespace) means every default, as `{}` does: the seed README's bare
/// `curl -X POST .../post_@connection?id=...` sends none.
pub fn parse_post_body(body: &[u8]) -> Result<Envelope, BadBody> {
    let value: Value = if body.iter().all(u8::is_ascii_whitespace) {
        Value::Object(Map::new())
    } else {
        serde_json::from_slice(body).map_err(|_| BadBody("the body is not valid JSON"))?
    };
    let Value::Object(mut obj) = value else {
        return Err(BadBody("the body is not a JSON object"));
    };
    let status_code = match obj.shift_remove("statusCode") {
        None => 200,
        Some(v) => match v.as_u64() {
            Some(n @ 100..=599) => n as u16,
            _ => return Err(BadBody("statusCode must be an integer from 100 to 599")),
        },
    };
    let headers = match obj.shift_remove("headers") {
        None => Map::new(),
        Some(Value::Object(h)) => h,
        Some(_) => return Err(BadBody("headers must be a JSON object")),
    };
    let body = obj
        .shift_remove("body")
        .unwrap_or_else(|| Value::String(String::new()));
    Ok(Envelope {
        status_code,
        headers,
        body,
        extra: obj,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(body: &str) -> String {
        String::from_utf8(parse_post_body(body.as_bytes()).unwrap().to_json()).unwrap()
    }

    #[test]
    fn defaults_fill_in() {
        assert_eq!(frame("{}"), r#"{"statusCode":200,"headers":{},"body":""}"#);
        // No body at all is the same as `{}`.
        assert_eq!(frame(""), frame("{}"));
        assert_eq!(frame(" \r\n"), frame("{}"));
    }

    #[test]
    fn fields_are_kept_in_envelope_order_with_message_id() {
        assert_eq!(
            frame(
                r#"{"body":{"b":1,"a":2},"isBase64Encoded":false,"headers":{"message-id":"m1","X":"y"},"statusCode":201}"#
            ),
            r#"{"statusCode":201,"headers":{"message-id":"m1","X":"y"},"body":{"b":1,"a":2},"isBase64Encoded":false}"#
        );
        assert_eq!(
            frame(r#"{"body":null}"#),
            r#"{"statusCode":200,"headers":{},"body":null}"#
        );
        assert_eq!(
            frame(r#"{"body":[1,"two",3.5,true]}"#),
            r#"{"statusCode":200,"headers":{},"body":[1,"two",3.5,true]}"#
        );
    }

    #[test]
    fn bad_bodies_are_refused() {
        for b in [
            "not json",
            "{",
            "42",
            "\"str\"",
            "[]",
            "null",
            r#"{"statusCode":"200"}"#,
            r#"{"statusCode":99}"#,
            r#"{"statusCode":600}"#,
            r#"{"statusCode":200.5}"#,
            r#"{"statusCode":-1}"#,
            r#"{"statusCode":null}"#,
            r#"{"headers":[]}"#,
            r#"{"headers":"x"}"#,
        ] {
            assert!(parse_post_body(b.as_bytes()).is_err(), "{b}");
        }
        assert!(parse_post_body(b"\xff\xfe").is_err());
    }
}
