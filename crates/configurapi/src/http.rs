//! Building a [`Request`] from an HTTP request the way runner-self does
//! (4.6), for HTTP front ends such as the management API.

use serde_json::{Map, Value};
use std::fmt;

use super::event::{lowercase, Payload, Request};
use super::headers::Headers;

/// A request that cannot be decoded: the runner answers 400 (the JS
/// SyntaxError of 4.6 and 6.6.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyntaxError(pub String);

impl fmt::Display for SyntaxError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for SyntaxError {}

impl Request {
    /// Builds a request from an HTTP method, request target, headers and body
    /// (4.6): the method is lowercased; header names are lowercased (repeated
    /// headers are joined with `, `); the query is parsed, repeated keys
    /// becoming arrays; an empty body is no payload; `text/*` is UTF-8 text;
    /// `application/json*` is parsed JSON, and a parse failure is a
    /// [`SyntaxError`]; any other type is raw bytes.
    pub fn from_http(
        method: &str,
        target: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Result<Request, SyntaxError> {
        let (path, query) = match target.split_once('?') {
            Some((p, q)) => (p, q),
            None => (target, ""),
        };
        let header_map = join_headers(headers.iter().copied());
        let content_type = header_map
            .get("content-type")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_ascii_lowercase();
        let payload = if body.is_empty() {
            Payload::Absent
        } else if content_type.starts_with("text/") {
            Payload::Text(String::from_utf8_lossy(body).into_owned())
        } else if content_type.starts_with("application/json") {
            Payload::Json(
                serde_json::from_slice(body)
                    .map_err(|e| SyntaxError(format!("Invalid JSON payload: {e}")))?,
            )
        } else {
            Payload::Bytes(body.to_vec())
        };
        Ok(Request {
            name: Default::default(),
            method: lowercase(method),
            headers: header_map,
            params: Map::new(),
            payload,
            query: parse_query(query),
            path: path.to_string(),
            path_and_query: target.to_string(),
            push: None,
        })
    }
}

/// Parses a query string; repeated keys become arrays, as Node's `querystring`.
pub fn parse_query(query: &str) -> Map<String, Value> {
    let mut map = Map::new();
    for (k, v) in query_pairs(query) {
        let v = Value::String(v);
        match map.get_mut(&k) {
            Some(Value::Array(items)) => items.push(v),
            Some(prev) => {
                let first = prev.take();
                *prev = Value::Array(vec![first, v]);
            }
            None => {
                map.insert(k, v);
            }
        }
    }
    map
}

/// A query string (without the `?`) as decoded `(key, value)` pairs, in order, `+` being
/// a space. Empty pieces (`a=1&&b=2`) are skipped; a key without `=` has the value `""`.
pub fn query_pairs(query: &str) -> impl Iterator<Item = (String, String)> + '_ {
    query.split('&').filter(|p| !p.is_empty()).map(|p| {
        let (k, v) = p.split_once('=').unwrap_or((p, ""));
        (percent_decode(k, true), percent_decode(v, true))
    })
}

/// Decodes `%XX` escapes (and `+` as a space when `plus_is_space`), leniently as Node's
/// `querystring`: a `%` not followed by two hex digits stays as written. Bytes that do
/// not form UTF-8 after decoding become U+FFFD.
pub fn percent_decode(text: &str, plus_is_space: bool) -> String {
    let b = text.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' => match (hex(b.get(i + 1)), hex(b.get(i + 2))) {
                (Some(h), Some(l)) => {
                    out.push(h << 4 | l);
                    i += 3;
                    continue;
                }
                _ => out.push(b'%'),
            },
            b'+' if plus_is_space => out.push(b' '),
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8(out).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

fn hex(c: Option<&u8>) -> Option<u8> {
    match c? {
        c @ b'0'..=b'9' => Some(c - b'0'),
        c @ b'a'..=b'f' => Some(c - b'a' + 10),
        c @ b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// The header map an event carries (4.6, 6.2.5): names lowercased, a repeated header's
/// values joined with `, ` in order, as Node's header map does.
pub fn join_headers<'a>(headers: impl IntoIterator<Item = (&'a str, &'a str)>) -> Headers {
    let mut map = Headers::new();
    for (name, value) in headers {
        let name = name.to_ascii_lowercase();
        match map.get_mut(&name) {
            Some(Value::String(prev)) => {
                prev.push_str(", ");
                prev.push_str(value);
            }
            _ => {
                map.insert(name.into(), Value::String(value.to_string()));
            }
        }
    }
    map
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn decodes_escapes_and_plus_and_keeps_bad_escapes_literal() {
        for (text, plus_is_space, want) in [
            ("a%20b+c", true, "a b c"),
            ("a+b", false, "a+b"),
            ("%40connections", false, "@connections"),
            ("%e2%82%ac", false, "\u{20ac}"),
            ("100%", true, "100%"),
            ("%4", true, "%4"),
            ("%zz%41", true, "%zzA"),
            ("%ff", true, "\u{fffd}"),
        ] {
            assert_eq!(percent_decode(text, plus_is_space), want, "{text}");
        }
    }

    #[test]
    fn query_pairs_in_order_and_repeats_as_arrays() {
        let pairs: Vec<_> = query_pairs("id=abc&x&&y=1%262&id=2").collect();
        let s = |a: &str, b: &str| (a.to_string(), b.to_string());
        assert_eq!(
            pairs,
            [s("id", "abc"), s("x", ""), s("y", "1&2"), s("id", "2")]
        );
        assert_eq!(query_pairs("").count(), 0);
        assert_eq!(
            Value::Object(parse_query("id=abc&x&&y=1%262&id=2&id=3")),
            json!({"id": ["abc", "2", "3"], "x": "", "y": "1&2"})
        );
    }

    #[test]
    fn headers_are_lowercased_and_repeats_joined() {
        let h = join_headers([("A", "1"), ("b", "2"), ("a", "3")]);
        assert_eq!(Value::from(h), json!({"a": "1, 3", "b": "2"}));
    }
}
