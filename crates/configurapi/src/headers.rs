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
use std::collections::HashMap;
use std::ops::Index;
use std::sync::{Arc, OnceLock};

/// Headers: names (exact, case-sensitive) to JSON values, in insertion order.
#[derive(Clone, Default)]
pub struct Headers(Vec<(CompactString, Slot)>);

/// A header's value: a JSON value; a string held as it is (inline up to 24 bytes: a
/// client's `message-id`, #17) whose `Value` is made only when read as one; or a UUID
/// (after a fixed prefix) whose text is written only when the value is read (a
/// runner's `connection-id` and `postback-url`, 6.2.5, 8.6: most events never read
/// them).
#[derive(Clone)]
enum Slot {
    Value(Value),
    Str(CompactString, Made),
    Uuid(Option<Arc<str>>, uuid::Uuid, Made),
}

/// The `Value` of a [`Slot::Str`] or [`Slot::Uuid`], once read as one. Boxed: rarely
/// made, and a `Value` in place would make every slot, `Value`s' included, 40 bytes
/// larger (#17: a slot is moved as each header is set).
type Made = OnceLock<Box<Value>>;

impl Slot {
    fn value(&self) -> &Value {
        match self {
            Slot::Value(v) => v,
            Slot::Str(s, value) => value.get_or_init(|| Box::new(Value::String(s.as_str().into()))),
            Slot::Uuid(prefix, id, text) => text.get_or_init(|| Box::new(uuid_text(prefix, id))),
        }
    }

    fn value_mut(&mut self) -> &mut Value {
        let v = match self {
            Slot::Value(v) => return v,
            Slot::Str(s, value) => value
                .take()
                .map_or_else(|| Value::String(s.as_str().into()), |v| *v),
            Slot::Uuid(prefix, id, text) => {
                text.take().map_or_else(|| uuid_text(prefix, id), |v| *v)
            }
        };
        *self = Slot::Value(v);
        match self {
            Slot::Value(v) => v,
            _ => unreachable!("made a value above"),
        }
    }

    fn into_value(self) -> Value {
        match self {
            Slot::Value(v) => v,
            Slot::Str(s, value) => value
                .into_inner()
                .map_or_else(|| Value::String(s.into_string()), |v| *v),
            Slot::Uuid(prefix, id, text) => text
                .into_inner()
                .map_or_else(|| uuid_text(&prefix, &id), |v| *v),
        }
    }

    /// The value when it is a string, read without making a `Value` of it.
    fn as_str(&self) -> Option<&str> {
        match self {
            Slot::Str(s, _) => Some(s),
            Slot::Value(Value::String(s)) => Some(s),
            Slot::Value(_) => None,
            Slot::Uuid(..) => self.value().as_str(),
        }
    }
}

/// A UUID's text as the runners write it (hyphenated, lower case) after `prefix`.
fn uuid_text(prefix: &Option<Arc<str>>, id: &uuid::Uuid) -> Value {
    let prefix = prefix.as_deref().unwrap_or("");
    let mut s = String::with_capacity(prefix.len() + uuid::fmt::Hyphenated::LENGTH);
    s.push_str(prefix);
    s.push_str(
        id.hyphenated()
            .encode_lower(&mut uuid::Uuid::encode_buffer()),
    );
    Value::String(s)
}

impl Serialize for Slot {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Slot::Value(v) => v.serialize(s),
            Slot::Str(text, _) => s.serialize_str(text),
            // Written from a buffer: no string made for it.
            Slot::Uuid(None, id, _) => s.serialize_str(
                id.hyphenated()
                    .encode_lower(&mut uuid::Uuid::encode_buffer()),
            ),
            Slot::Uuid(Some(_), ..) => self.value().serialize(s),
        }
    }
}

impl PartialEq for Headers {
    fn eq(&self, other: &Headers) -> bool {
        self.len() == other.len() && self.iter().zip(other.iter()).all(|(a, b)| a == b)
    }
}

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
    // #17 hotsplit: inlined at the runner's opt-level "s" too (docs/size.md, fourth pass).
    #[inline]
    pub fn get(&self, name: &str) -> Option<&Value> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.value())
    }

    /// The value of `name` when it is a string: as [`Headers::get`], without making a
    /// `Value` of a string held inline.
    #[inline]
    pub fn get_str(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .and_then(|(_, v)| v.as_str())
    }

    /// The value of `name` as JS `String(value)` writes it ([`crate::js::to_text`]): a
    /// string as it is, with no `Value` made of one held inline.
    pub(crate) fn text(&self, name: &str) -> Option<String> {
        let (_, slot) = self.0.iter().find(|(k, _)| k == name)?;
        Some(match slot.as_str() {
            Some(s) => s.to_owned(),
            None => crate::js::to_text(slot.value()),
        })
    }

    /// The value of `name`, to change it.
    pub fn get_mut(&mut self, name: &str) -> Option<&mut Value> {
        self.0
            .iter_mut()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.value_mut())
    }

    /// True when `name` is there.
    pub fn contains_key(&self, name: &str) -> bool {
        self.position(name).is_some()
    }

    /// Sets `name` to `value`: a name already there keeps its place and gets the new
    /// value (the old one is returned), a new name goes last.
    pub fn insert(&mut self, name: CompactString, value: Value) -> Option<Value> {
        self.set(name, Slot::Value(value)).map(Slot::into_value)
    }

    /// [`Headers::insert`] of a UUID's text (hyphenated, lower case), written only when
    /// the value is read: until then the header holds the 16 bytes.
    pub fn insert_uuid(&mut self, name: CompactString, id: uuid::Uuid) -> Option<Value> {
        self.set(name, Slot::Uuid(None, id, OnceLock::new()))
            .map(Slot::into_value)
    }

    /// [`Headers::insert_uuid`] with the text after `prefix` (e.g. a URL ending in the
    /// id): the prefix is shared, the text written only when read.
    pub fn insert_uuid_after(
        &mut self,
        name: CompactString,
        prefix: Arc<str>,
        id: uuid::Uuid,
    ) -> Option<Value> {
        self.set(name, Slot::Uuid(Some(prefix), id, OnceLock::new()))
            .map(Slot::into_value)
    }

    /// [`Headers::insert_uuid`] (after `prefix` when there is one: as
    /// [`Headers::insert_uuid_after`]) of a name the caller knows is not there: it goes
    /// last, with no scan for it. (#17 json-prep: a runner adds its own names after one
    /// pass over the client's.) A name already there would be there twice: the caller
    /// must not.
    #[inline]
    pub fn append_uuid(&mut self, name: CompactString, prefix: Option<Arc<str>>, id: uuid::Uuid) {
        debug_assert!(!self.contains_key(&name), "{name} is there already");
        self.0.push((name, Slot::Uuid(prefix, id, OnceLock::new())));
    }

    /// The old slot (not its value: the builder drops it unread).
    fn set(&mut self, name: CompactString, slot: Slot) -> Option<Slot> {
        match self.position(&name) {
            Some(i) => Some(std::mem::replace(&mut self.0[i].1, slot)),
            None => {
                self.0.push((name, slot));
                None
            }
        }
    }

    /// Removes `name`, keeping the others in order.
    pub fn remove(&mut self, name: &str) -> Option<Value> {
        let i = self.position(name)?;
        Some(self.0.remove(i).1.into_value())
    }

    /// How many headers there is room for without a new block.
    pub fn capacity(&self) -> usize {
        self.0.capacity()
    }

    /// Removes every header.
    pub fn clear(&mut self) {
        self.0.clear();
    }

    /// `(name, value)` in order.
    pub fn iter(&self) -> Iter<'_> {
        Iter(self.0.iter())
    }

    /// The names in order.
    pub fn keys(&self) -> impl ExactSizeIterator<Item = &str> + '_ {
        self.0.iter().map(|(k, _)| k.as_str())
    }

    /// The values in order.
    pub fn values(&self) -> impl ExactSizeIterator<Item = &Value> + '_ {
        self.0.iter().map(|(_, v)| v.value())
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
        Headers(
            map.into_iter()
                .map(|(k, v)| (k.into(), Slot::Value(v)))
                .collect(),
        )
    }
}

impl From<Headers> for Value {
    fn from(h: Headers) -> Value {
        Value::Object(
            h.0.into_iter()
                .map(|(k, v)| (k.into(), v.into_value()))
                .collect(),
        )
    }
}

impl<K: Into<CompactString>> FromIterator<(K, Value)> for Headers {
    /// Later values of a repeated name replace earlier ones in place, as in a map.
    fn from_iter<I: IntoIterator<Item = (K, Value)>>(iter: I) -> Headers {
        let iter = iter.into_iter();
        let mut b = HeadersBuilder::with_capacity(iter.size_hint().0);
        for (k, v) in iter {
            b.insert(k.into(), v);
        }
        b.finish()
    }
}

/// Up to this many headers a new name is looked for by scanning (cheaper than hashing
/// for the handful a request carries); past it, through an index.
const SCAN_MAX: usize = 16;

/// Headers read one by one from a source that decides how many there are (a client's
/// message): [`Headers::insert`]'s meaning (a repeated name keeps its first place and
/// takes the last value), in time linear in the count. `insert` alone scans, so a
/// message with 100,000 headers would cost ~10^10 comparisons on the reactor.
pub struct HeadersBuilder {
    headers: Headers,
    /// Name -> position, made once the headers outgrow [`SCAN_MAX`]. (Boxed: dropping
    /// the usual `None` is then a test inline, not a call; #17 json-prep.)
    #[allow(clippy::box_collection)] // the one block is rare; the small field is not
    index: Option<Box<HashMap<CompactString, usize>>>,
}

impl HeadersBuilder {
    /// Room for `n` headers (capped: `n` may come from the source).
    pub fn with_capacity(n: usize) -> HeadersBuilder {
        HeadersBuilder {
            headers: Headers::with_capacity(n.min(SCAN_MAX)),
            index: None,
        }
    }

    /// [`HeadersBuilder::with_capacity`] in the room of `headers`, emptied first: its
    /// heap block is kept (#17 json-prep: a runner's recycled event reads each message's
    /// headers into the last one's block, none made and freed a message).
    pub fn reusing(mut headers: Headers, n: usize) -> HeadersBuilder {
        headers.0.clear();
        headers.0.reserve(n.min(SCAN_MAX));
        HeadersBuilder {
            headers,
            index: None,
        }
    }

    /// Adds `name`: as [`Headers::insert`].
    #[inline]
    pub fn insert(&mut self, name: CompactString, value: Value) {
        self.insert_slot(name, Slot::Value(value));
    }

    /// Adds `name` with a string value, as [`HeadersBuilder::insert`] of
    /// `Value::String`: the string is held as it is (no heap block when it is inline, up
    /// to 24 bytes) and made a `Value` only if it is read as one.
    #[inline]
    pub fn insert_str(&mut self, name: CompactString, value: CompactString) {
        self.insert_slot(name, Slot::Str(value, OnceLock::new()));
    }

    // #17 json-prep: the usual case (a few names, no index) inline where the header is
    // read: the slot is moved once, not through two calls.
    #[inline(always)]
    fn insert_slot(&mut self, name: CompactString, slot: Slot) {
        let list = &mut self.headers.0;
        if self.index.is_none() && list.len() < SCAN_MAX {
            match list.iter().position(|(k, _)| *k == name) {
                Some(i) => list[i].1 = slot,
                None => list.push((name, slot)),
            }
        } else {
            self.insert_indexed(name, slot);
        }
    }

    /// [`HeadersBuilder::insert_slot`] past [`SCAN_MAX`] names: through the index (made
    /// on the first call).
    #[inline(never)]
    fn insert_indexed(&mut self, name: CompactString, slot: Slot) {
        let list = &mut self.headers.0;
        let index = self.index.get_or_insert_with(|| {
            Box::new(
                list.iter()
                    .enumerate()
                    .map(|(i, (k, _))| (k.clone(), i))
                    .collect(),
            )
        });
        match index.get(&name) {
            Some(&i) => list[i].1 = slot,
            None => {
                index.insert(name.clone(), list.len());
                list.push((name, slot));
            }
        }
    }

    /// The headers.
    pub fn finish(self) -> Headers {
        self.headers
    }
}

impl<'a> IntoIterator for &'a Headers {
    type Item = (&'a str, &'a Value);
    type IntoIter = Iter<'a>;
    fn into_iter(self) -> Iter<'a> {
        Iter(self.0.iter())
    }
}

/// [`Headers::iter`]: `(name, value)` in order.
pub struct Iter<'a>(std::slice::Iter<'a, (CompactString, Slot)>);

impl<'a> Iterator for Iter<'a> {
    type Item = (&'a str, &'a Value);
    fn next(&mut self) -> Option<(&'a str, &'a Value)> {
        self.0.next().map(|(k, v)| (k.as_str(), v.value()))
    }
    fn size_hint(&self) -> (usize, Option<usize>) {
        self.0.size_hint()
    }
}

impl ExactSizeIterator for Iter<'_> {}

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

    #[test]
    fn the_builder_reads_any_count_of_names_as_inserting_them_one_by_one_would() {
        // Repeats on both sides of the scan/index switch, long and short names.
        for count in [0, 1, 5, 15, 16, 17, 40, 1000] {
            let pairs: Vec<(String, Value)> = (0..count)
                .map(|i: usize| {
                    let name = if i % 7 == 3 {
                        format!("n{}", i / 3) // repeats an earlier name
                    } else if i % 5 == 0 {
                        format!("a-name-over-twenty-four-bytes-{i}")
                    } else {
                        format!("n{i}")
                    };
                    (name, json!(i))
                })
                .collect();
            let mut one_by_one = Headers::new();
            let mut map = Map::new();
            let mut b = HeadersBuilder::with_capacity(usize::MAX);
            for (k, v) in &pairs {
                one_by_one.insert(k.as_str().into(), v.clone());
                map.insert(k.clone(), v.clone());
                b.insert(k.as_str().into(), v.clone());
            }
            let built = b.finish();
            assert_eq!(built, one_by_one, "{count} names");
            assert_eq!(
                Value::from(built.clone()),
                Value::Object(map),
                "{count} names"
            );
            let collected: Headers = pairs.into_iter().collect();
            assert_eq!(collected, built, "{count} names");
        }
    }

    /// Headers with `a` held as a string (inline when short) and the same headers
    /// held as values: they must read, serialise and compare alike.
    fn str_and_value(text: &str) -> (Headers, Headers) {
        let mut b = HeadersBuilder::with_capacity(2);
        b.insert("n".into(), json!(1));
        b.insert_str("a".into(), text.into());
        let as_value: Headers = [("n", json!(1)), ("a", json!(text))].into_iter().collect();
        (b.finish(), as_value)
    }

    #[test]
    fn a_string_header_held_as_it_is_reads_as_its_value_wherever_it_is_read() {
        for text in [
            "",
            "3-17",
            "q\"\u{e9}\n",
            "a-string-longer-than-twenty-four-bytes",
        ] {
            let (h, want) = str_and_value(text);
            assert_eq!(h.get_str("a"), Some(text));
            assert_eq!(want.get_str("a"), Some(text));
            assert_eq!(h.get_str("n"), None, "not a string");
            assert_eq!(h.text("a").as_deref(), Some(text));
            assert_eq!(h.text("n").as_deref(), Some("1"), "as JS writes it");
            assert_eq!(h.text("x"), None);
            assert_eq!(
                serde_json::to_string(&h).unwrap(),
                serde_json::to_string(&want).unwrap(),
                "serialised unread"
            );
            assert_eq!(h.get("a"), Some(&json!(text)));
            assert_eq!(h["a"], json!(text));
            assert_eq!(h, want);
            assert_eq!(format!("{h:?}"), format!("{want:?}"));
            assert_eq!(h.values().nth(1), Some(&json!(text)));
            assert_eq!(Value::from(h.clone()), Value::from(want.clone()));
            assert_eq!(h.to_map(), want.to_map());

            // Changed in place: through get_mut, before and after it was read.
            for read_first in [false, true] {
                let (mut changed, _) = str_and_value(text);
                if read_first {
                    assert_eq!(changed.get("a"), Some(&json!(text)));
                }
                let v = changed.get_mut("a").unwrap();
                assert_eq!(*v, json!(text));
                *v = json!(["x"]);
                assert_eq!(changed["a"], json!(["x"]));
                assert_eq!(changed.get_str("a"), None);
                assert_eq!(
                    serde_json::to_string(&changed).unwrap(),
                    r#"{"n":1,"a":["x"]}"#
                );
            }

            // Replaced, removed, and replaced by the builder (a repeated name).
            let (mut replaced, _) = str_and_value(text);
            assert_eq!(replaced.insert("a".into(), json!(2)), Some(json!(text)));
            assert_eq!(
                replaced.keys().collect::<Vec<_>>(),
                ["n", "a"],
                "kept its place"
            );
            let (mut removed, _) = str_and_value(text);
            assert_eq!(removed.remove("a"), Some(json!(text)));
            let mut b = HeadersBuilder::with_capacity(1);
            b.insert_str("a".into(), text.into());
            b.insert("n".into(), json!(1));
            b.insert_str("a".into(), "second".into());
            let built = b.finish();
            assert_eq!(
                serde_json::to_string(&built).unwrap(),
                r#"{"a":"second","n":1}"#
            );
        }
    }

    /// #17 json-prep: a builder in old headers' room: none of them is left, the block is
    /// the same, and it reads names as a new builder does.
    #[test]
    fn a_builder_reusing_headers_empties_them_and_keeps_their_block() {
        let mut old = Headers::with_capacity(8);
        for i in 0..5 {
            old.insert(format!("old-{i}").into(), json!(i));
        }
        let block = old.0.as_ptr();
        let mut b = HeadersBuilder::reusing(old, 3);
        b.insert_str("a".into(), "1".into());
        b.insert("n".into(), json!(1));
        b.insert_str("a".into(), "2".into());
        let built = b.finish();
        assert_eq!(built.0.as_ptr(), block, "the same heap block");
        assert_eq!(serde_json::to_string(&built).unwrap(), r#"{"a":"2","n":1}"#);
        // Past the scan limit, as a new builder.
        let mut b = HeadersBuilder::reusing(built, 40);
        let mut want = HeadersBuilder::with_capacity(40);
        for i in 0..40 {
            b.insert(format!("h{}", i % 25).into(), json!(i));
            want.insert(format!("h{}", i % 25).into(), json!(i));
        }
        assert_eq!(b.finish(), want.finish());
    }

    /// #17 json-prep: a UUID header appended reads as one inserted.
    #[test]
    fn an_appended_uuid_header_is_as_an_inserted_one() {
        let id = uuid::Uuid::from_u128(0x0123_4567_89ab_cdef_0123_4567_89ab_cdef);
        let prefix: Arc<str> = "http://h/@connections/".into();
        let mut appended = Headers::new();
        appended.insert("x".into(), json!(1));
        appended.append_uuid("connection-id".into(), None, id);
        appended.append_uuid("postback-url".into(), Some(Arc::clone(&prefix)), id);
        let mut inserted = Headers::new();
        inserted.insert("x".into(), json!(1));
        inserted.insert_uuid("connection-id".into(), id);
        inserted.insert_uuid_after("postback-url".into(), prefix, id);
        assert_eq!(
            serde_json::to_value(&appended).unwrap(),
            json!({
                "x": 1,
                "connection-id": "01234567-89ab-cdef-0123-456789abcdef",
                "postback-url": "http://h/@connections/01234567-89ab-cdef-0123-456789abcdef",
            })
        );
        assert_eq!(appended, inserted);
    }

    #[test]
    fn a_uuid_header_reads_as_its_text_wherever_it_is_read() {
        let id = uuid::Uuid::from_u128(0x0123_4567_89ab_cdef_0123_4567_89ab_cdef);
        let text = "01234567-89ab-cdef-0123-456789abcdef";
        let mut h = Headers::new();
        h.insert("a".into(), json!(1));
        h.insert_uuid("connection-id".into(), id);
        let want = json!({"a": 1, "connection-id": text});
        assert_eq!(serde_json::to_value(&h).unwrap(), want, "serialised unread");
        assert_eq!(h.get("connection-id"), Some(&json!(text)));
        assert_eq!(h.get_str("connection-id"), Some(text));
        assert_eq!(h.text("connection-id").as_deref(), Some(text));
        assert_eq!(h.iter().nth(1), Some(("connection-id", &json!(text))));
        assert_eq!(Value::from(h.clone()), want);
        let mut changed = h.clone();
        *changed.get_mut("connection-id").unwrap() = json!("x");
        assert_eq!(changed["connection-id"], json!("x"));
        assert_eq!(h.remove("connection-id"), Some(json!(text)));
        h.insert_uuid("a".into(), id);
        assert_eq!(
            h.insert("a".into(), json!(2)),
            Some(json!(text)),
            "kept its place"
        );
    }
}
