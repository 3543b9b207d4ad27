//! `$(...)` placeholder resolution (2.3), as methods of [`Event`].

use serde_json::Value;

use super::event::{Event, Payload};
use super::js;

impl Event {
    /// `event.resolve(x)` on a copy (2.3.8): strings have their placeholders
    /// replaced, mappings and sequences are resolved value by value, and
    /// other values come back unchanged. The argument is never modified, so
    /// a policy's configured parameters stay the same for every event.
    pub fn resolve(&self, value: &Value) -> Value {
        match value {
            Value::String(s) => Value::String(self.resolve_str(s)),
            Value::Array(items) => Value::Array(items.iter().map(|v| self.resolve(v)).collect()),
            Value::Object(map) => Value::Object(
                map.iter()
                    .map(|(k, v)| (k.clone(), self.resolve(v)))
                    .collect(),
            ),
            other => other.clone(),
        }
    }

    /// Resolves the `$(...)` tokens of one string (2.3.2 to 2.3.7).
    ///
    /// Tokens are `$(` up to the next `)`; nesting is not supported. A token
    /// whose key resolves to nothing is left as written. Values are inserted
    /// literally (no `$&` or `$$` patterns) and never rescanned.
    pub fn resolve_str(&self, text: &str) -> String {
        let mut out = String::with_capacity(text.len());
        let mut rest = text;
        while let Some(start) = rest.find("$(") {
            let after = &rest[start + 2..];
            let Some(len) = after.find(')') else {
                break;
            };
            let key = &after[..len];
            let token_end = start + 2 + len + 1;
            out.push_str(&rest[..start]);
            match self.lookup(key) {
                Some(value) => out.push_str(&js::to_text(&value)),
                None => out.push_str(&rest[start..token_end]),
            }
            rest = &rest[token_end..];
        }
        out.push_str(rest);
        out
    }

    /// The value of a placeholder key, by the first rule of 2.3.3 that
    /// applies; `None` is JS `undefined` (leave the token).
    fn lookup(&self, key: &str) -> Option<Value> {
        if let Some(name) = key.strip_prefix("$env.") {
            return std::env::var(name).ok().map(Value::String);
        }
        if self.payload.is_truthy() {
            if let Some(path) = key.strip_prefix("$event.payload.") {
                return match &self.payload {
                    Payload::Json(root) => get_path(root, path),
                    // Stepping into text or bytes is a TypeError in Node;
                    // the port leaves the token (2.3.6).
                    _ => None,
                };
            }
            if key == "$event.payload" {
                return Some(match &self.payload {
                    Payload::Json(v) => v.clone(),
                    Payload::Text(s) => Value::String(s.clone()),
                    Payload::Bytes(b) => Value::String(String::from_utf8_lossy(b).into_owned()),
                    Payload::Absent => return None,
                });
            }
        }
        if let Some(v) = self.params.get(key) {
            return Some(v.clone());
        }
        let (head, rest) = key.split_once('.')?;
        match self.params.get(head)? {
            v @ (Value::Object(_) | Value::Array(_)) => get_path(v, rest),
            // 2.3.3 e quirk kept: `$(user.name)` is `bob` when `user` is "bob".
            v @ (Value::String(_) | Value::Number(_)) => Some(v.clone()),
            _ => None,
        }
    }
}

/// The value at a dotted path (`[n]` means `.n`), or `None` when a step is
/// missing or steps into a scalar (2.3.6: unresolved, never an error).
fn get_path(root: &Value, path: &str) -> Option<Value> {
    let normalised = path.replace('[', ".").replace(']', "");
    // `[0].a` at the start becomes `.0.a`; the leading dot is not a key.
    let normalised = normalised.strip_prefix('.').unwrap_or(&normalised);
    let mut current = root;
    for segment in normalised.split('.') {
        current = match current {
            Value::Object(map) => map.get(segment)?,
            Value::Array(items) => items.get(segment.parse::<usize>().ok()?)?,
            _ => return None,
        };
    }
    Some(current.clone())
}
