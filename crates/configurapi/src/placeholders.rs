//! `$(...)` placeholder resolution (2.3), as methods of [`Event`].

use serde_json::Value;
use std::borrow::Cow;

use super::event::{Event, Payload};
use super::js;

impl Event {
    /// `event.resolve(x)` on a copy (2.3.8): strings have their placeholders
    /// replaced, mappings and sequences are resolved value by value, and
    /// other values come back unchanged. The argument is never modified, so
    /// a policy's configured parameters stay the same for every event.
    pub fn resolve(&self, value: &Value) -> Value {
        // A copy (mappings keep their keys and hash table: nothing is rehashed), then
        // only the strings that hold a token are rewritten.
        let mut copy = value.clone();
        self.resolve_in_place(&mut copy);
        copy
    }

    fn resolve_in_place(&self, value: &mut Value) {
        match value {
            Value::String(s) if find_token(s).is_some() => *s = self.resolve_str(s),
            Value::Array(items) => items.iter_mut().for_each(|v| self.resolve_in_place(v)),
            Value::Object(map) => map.values_mut().for_each(|v| self.resolve_in_place(v)),
            _ => {}
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
        while let Some(start) = find_token(rest) {
            let after = &rest[start + 2..];
            let Some(len) = after.find(')') else {
                break;
            };
            let key = &after[..len];
            let token_end = start + 2 + len + 1;
            out.push_str(&rest[..start]);
            match self.lookup(key) {
                Some(value) => match &*value {
                    Value::String(s) => out.push_str(s),
                    other => out.push_str(&js::to_text(other)),
                },
                None => out.push_str(&rest[start..token_end]),
            }
            rest = &rest[token_end..];
        }
        out.push_str(rest);
        out
    }

    /// The value of a placeholder key, by the first rule of 2.3.3 that
    /// applies; `None` is JS `undefined` (leave the token).
    fn lookup(&self, key: &str) -> Option<Cow<'_, Value>> {
        if let Some(name) = key.strip_prefix("$env.") {
            return std::env::var(name)
                .ok()
                .map(|v| Cow::Owned(Value::String(v)));
        }
        if self.payload().is_truthy() {
            if let Some(path) = key.strip_prefix("$event.payload.") {
                return match self.payload() {
                    Payload::Json(root) => get_path(root, path).map(Cow::Borrowed),
                    // Stepping into text or bytes is a TypeError in Node;
                    // the port leaves the token (2.3.6).
                    _ => None,
                };
            }
            if key == "$event.payload" {
                return Some(match self.payload() {
                    Payload::Json(v) => Cow::Borrowed(v),
                    Payload::Text(s) => Cow::Owned(Value::String(s.clone())),
                    Payload::Bytes(b) => {
                        Cow::Owned(Value::String(String::from_utf8_lossy(b).into_owned()))
                    }
                    Payload::Absent => return None,
                });
            }
        }
        if let Some(v) = self.params.get(key) {
            return Some(Cow::Borrowed(v));
        }
        let (head, rest) = key.split_once('.')?;
        match self.params.get(head)? {
            v @ (Value::Object(_) | Value::Array(_)) => get_path(v, rest).map(Cow::Borrowed),
            // 2.3.3 e quirk kept: `$(user.name)` is `bob` when `user` is "bob".
            v @ (Value::String(_) | Value::Number(_)) => Some(Cow::Borrowed(v)),
            _ => None,
        }
    }
}

/// The value at a dotted path (`[n]` means `.n`), or `None` when a step is
/// missing or steps into a scalar (2.3.6: unresolved, never an error).
fn get_path<'a>(root: &'a Value, path: &str) -> Option<&'a Value> {
    let normalised: Cow<str> = if path.contains(['[', ']']) {
        Cow::Owned(path.replace('[', ".").replace(']', ""))
    } else {
        Cow::Borrowed(path)
    };
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
    Some(current)
}

/// Where the first `$(` starts: a byte search for `$` (a `str` pattern search costs
/// more to set up than these short strings take to scan).
fn find_token(text: &str) -> Option<usize> {
    let bytes = text.as_bytes();
    let mut from = 0;
    while let Some(i) = bytes[from..].iter().position(|&b| b == b'$') {
        let at = from + i;
        if bytes.get(at + 1) == Some(&b'(') {
            return Some(at);
        }
        from = at + 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::find_token;

    #[test]
    fn find_token_is_the_first_dollar_paren() {
        for text in [
            "",
            "$",
            "($",
            "a$b$",
            "$)$ (",
            "x$(",
            "$$(a)",
            "ab$(c)$(d)",
            "é$(x)",
        ] {
            assert_eq!(find_token(text), text.find("$("), "{text:?}");
        }
    }
}
