//! A request's headers (2.1.3, 6.2.5): names to JSON values, in insertion order.
//!
//! A request carries a handful of headers, so they are a vector scanned by name: no
//! hashing, one heap block (none when empty), and names of up to 24 bytes (all the
//! usual ones: `message-id`, `connection-id`, `content-type`...) kept inline. It behaves
//! as the `serde_json::Map` it replaces: setting a name that is there replaces its value
//! in place, names are compared exactly (case-sensitive, 8.13), and it serialises as a
//! JSON object in order.

use compact_str::CompactString;
use serde::ser::{Serialize, SerializeMap, Serializer};
use serde_json::{Map, Value};
use std::ops::Index;

/// Headers: names (exact, case-sensitive) to JSON values, in insertion order.
#[derive(Clone, Default, PartialEq)]
pub struct Headers(Vec<(CompactString, Value)>);

impl Headers {
    /// No headers (no allocation).
    pub const fn new() -> Headers {
        Headers(Vec::new())
    }

    /// Room for `n` headers.
    pub fn with_capacity(n: usize) -> Headers {
        Headers(Vec::with_capacity(n))
    }

    /// How many headers there are.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True when there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn position(&self, name: &str) -> Option<usize> {
        self.0.iter().position(|(k, _)| k == name)
    }

    /// The value of `name`.
    pub fn get(&self, name: &str) -> Option<&Value> {
        self.0.iter().find(|(k, _)| k == name).map(|(_, v)| v)
    }

    /// The value of `name`, to change it.
    pub fn get_mut(&mut self, name: &str) -> Option<&mut Value> {
        self.0.iter_mut().find(|(k, _)| k == name).map(|(_, v)| v)
    }

    /// True when `name` is there.
    pub fn contains_key(&self, name: &str) -> bool {
        self.position(name).is_some()
    }

    /// Sets `name` to `value`: a name already there keeps its place and gets the new
    /// value (the old one is returned), a new name goes last.
    pub fn insert(&mut self, name: CompactString, value: Value) -> Option<Value> {
        match self.position(&name) {
            Some(i) => Some(std::mem::replace(&mut self.0[i].1, value)),
            None => {
                self.0.push((name, value));
                None
            }
        }
    }

    /// Removes `name`, keeping the others in order.
    pub fn remove(&mut self, name: &str) -> Option<Value> {
        let i = self.position(name)?;
        Some(self.0.remove(i).1)
    }

    /// Removes every header.
    pub fn clear(&mut self) {
        self.0.clear();
    }

    /// `(name, value)` in order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = (&str, &Value)> + '_ {
        self.0.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// The names in order.
    pub fn keys(&self) -> impl ExactSizeIterator<Item = &str> + '_ {
        self.0.iter().map(|(k, _)| k.as_str())
    }

    /// The values in order.
    pub fn values(&self) -> impl ExactSizeIterator<Item = &Value> + '_ {
        self.0.iter().map(|(_, v)| v)
    }

    /// The headers as a JSON object (a copy).
    pub fn to_map(&self) -> Map<String, Value> {
        self.iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect()
    }
}

impl std::fmt::Debug for Headers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

impl<'a> Index<&'a str> for Headers {
    type Output = Value;
    /// The value of `name`, `Value::Null` when absent (as `serde_json::Map`'s index on a
    /// `Value` reads).
    fn index(&self, name: &'a str) -> &Value {
        static NULL: Value = Value::Null;
        self.get(name).unwrap_or(&NULL)
    }
}

impl From<Map<String, Value>> for Headers {
    fn from(map: Map<String, Value>) -> Headers {
        Headers(map.into_iter().map(|(k, v)| (k.into(), v)).collect())
    }
}

impl From<Headers> for Value {
    fn from(h: Headers) -> Value {
        Value::Object(h.0.into_iter().map(|(k, v)| (k.into(), v)).collect())
    }
}

impl<K: Into<CompactString>> FromIterator<(K, Value)> for Headers {
    /// Later values of a repeated name replace earlier ones in place, as in a map.
    fn from_iter<I: IntoIterator<Item = (K, Value)>>(iter: I) -> Headers {
        let mut h = Headers::new();
        for (k, v) in iter {
            h.insert(k.into(), v);
        }
        h
    }
}

impl<'a> IntoIterator for &'a Headers {
    type Item = (&'a str, &'a Value);
    type IntoIter = std::iter::Map<
        std::slice::Iter<'a, (CompactString, Value)>,
        fn(&'a (CompactString, Value)) -> (&'a str, &'a Value),
    >;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter().map(|(k, v)| (k.as_str(), v))
    }
}

impl Serialize for Headers {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(self.0.len()))?;
        for (k, v) in &self.0 {
            map.serialize_entry(k.as_str(), v)?;
        }
        map.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn behaves_as_an_ordered_map() {
        let mut h = Headers::new();
        assert_eq!(h.insert("b".into(), json!(1)), None);
        assert_eq!(h.insert("a".into(), json!(2)), None);
        assert_eq!(
            h.insert("b".into(), json!(3)),
            Some(json!(1)),
            "replaced in place"
        );
        assert_eq!(serde_json::to_string(&h).unwrap(), r#"{"b":3,"a":2}"#);
        assert_eq!(h.get("B"), None, "names are exact");
        assert_eq!(h["a"], json!(2));
        assert_eq!(h["x"], Value::Null);
        assert_eq!(h.remove("b"), Some(json!(3)));
        assert_eq!(h.keys().collect::<Vec<_>>(), ["a"]);
        let long = "a-header-name-longer-than-twenty-four-bytes";
        h.insert(long.into(), json!("v"));
        assert_eq!(h.get(long), Some(&json!("v")));
        let m: Map<String, Value> = h.to_map();
        assert_eq!(Headers::from(m.clone()), h);
        assert_eq!(Value::from(h), Value::Object(m));
    }
}
