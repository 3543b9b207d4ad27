//! Building a [`Request`] from an HTTP request the way runner-self does
//! (4.6), for HTTP front ends such as the management API.

use serde_json::{Map, Value};
use std::fmt;

use super::event::{Payload, Request};

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
        let mut header_map = Map::new();
        for (name, value) in headers {
            let name = name.to_ascii_lowercase();
            let joined = match header_map.get(&name).and_then(Value::as_str) {
                Some(prev) => format!("{prev}, {value}"),
                None => value.to_string(),
            };
            header_map.insert(name, Value::String(joined));
        }
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
            name: String::new(),
            method: method.to_lowercase(),
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
    for part in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = part.split_once('=').unwrap_or((part, ""));
        let (k, v) = (percent_decode(k), Value::String(percent_decode(v)));
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

/// `+` is a space and `%XX` a byte; bad escapes stay as written.
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3])
                    .ok()
                    .filter(|h| h.bytes().all(|c| c.is_ascii_hexdigit()));
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()).ok_or(()) {
                    Ok(b) => {
                        out.push(b);
                        i += 2;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}
