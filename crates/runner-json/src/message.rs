//! A client message (6.2) to a [`Request`]: JSON read straight off the parser into the
//! request's fields, with the message-id kept for the answer even when decoding fails.

use serde_json::{Map, Value};

use crate::Message;
use configurapi::{CompactString, HandlerError, Headers, Payload, Request};

/// A decoded message with its message-id, or the decoding error (boxed: it is rare and
/// large) with the message-id when one could be read.
pub type Decoded = Result<(Request, Option<MessageId>), Box<(HandlerError, Option<MessageId>)>>;

/// [`Decoded`] for a message read into a request in place ([`decode_into`]): the
/// message-id, or the error.
pub type DecodedId = Result<Option<MessageId>, Box<(HandlerError, Option<MessageId>)>>;

/// The message-id the client sent, kept for the answer (6.3.2: the answer carries it
/// whatever a handler does to the request's headers). A string is held as it is, inline
/// up to 24 bytes (#17: the usual id costs no heap block, neither here nor in the
/// headers); any other JSON value as a `Value`, boxed (rare: the id is moved along the
/// answer's path, 24 bytes this way).
#[derive(Clone, Debug)]
pub enum MessageId {
    Str(CompactString),
    Value(Box<Value>),
}

impl MessageId {
    /// The `message-id` header of `headers`, if there is one.
    pub fn of(headers: &Headers) -> Option<MessageId> {
        match headers.get_str("message-id") {
            Some(s) => Some(MessageId::Str(s.into())),
            None => headers.get("message-id").cloned().map(MessageId::from),
        }
    }

    /// As a JSON value.
    pub fn into_value(self) -> Value {
        match self {
            MessageId::Str(s) => Value::String(s.into_string()),
            MessageId::Value(v) => *v,
        }
    }
}

impl From<Value> for MessageId {
    fn from(v: Value) -> MessageId {
        MessageId::Value(Box::new(v))
    }
}

/// Compared as the JSON values they stand for.
impl PartialEq for MessageId {
    fn eq(&self, other: &MessageId) -> bool {
        match (self, other) {
            (MessageId::Str(a), MessageId::Str(b)) => a == b,
            (MessageId::Str(a), MessageId::Value(b)) | (MessageId::Value(b), MessageId::Str(a)) => {
                b.as_str() == Some(a.as_str())
            }
            (MessageId::Value(a), MessageId::Value(b)) => a == b,
        }
    }
}

impl PartialEq<Value> for MessageId {
    fn eq(&self, other: &Value) -> bool {
        match self {
            MessageId::Str(s) => other.as_str() == Some(s.as_str()),
            MessageId::Value(v) => **v == *other,
        }
    }
}

/// `{...params, ...query}` with the query winning (2.2.5, 6.2.4).
pub fn merge_params(params: &Map<String, Value>, query: &Map<String, Value>) -> Map<String, Value> {
    let mut merged = params.clone();
    for (k, v) in query {
        merged.insert(k.clone(), v.clone());
    }
    merged
}

/// A client message to a Request (6.2). The error side carries the message-id when
/// one could be read, so even a 400 can be matched by the client.
pub fn decode_message(text: bool, bytes: &[u8]) -> Decoded {
    let mut request = Request::default();
    // #17 json-io: the codec hands text on as `&str` (checked once); this form (tests,
    // fuzzing) checks it here.
    let msg = match (text, std::str::from_utf8(bytes)) {
        (true, Ok(s)) => Message::Text(s),
        (true, Err(_)) => {
            return Err(Box::new((
                HandlerError::new("Invalid UTF-8 in message."),
                None,
            )))
        }
        (false, _) => Message::Binary(bytes),
    };
    decode_into(msg, &mut request).map(|id| (request, id))
}

/// [`decode_message`] into `request` where it lies, a default [`Request`] (the event's,
/// see [`Event::blank`](configurapi::Event::blank)): the message-id, or the
/// error (`request` may then be partly set).
pub fn decode_into(msg: Message<'_>, request: &mut Request) -> DecodedId {
    // The Request default method is already `get` (6.2.3).
    // #17 json-io: text comes checked as UTF-8 by the codec (it was checked twice).
    let text = match msg {
        Message::Text(s) => s,
        Message::Binary(bytes) => match std::str::from_utf8(bytes) {
            Ok(s) => s,
            Err(_) => {
                // 6.2.7: binary that is not UTF-8 becomes the payload as is.
                request.payload = Payload::Bytes(bytes.to_vec());
                return Ok(None);
            }
        },
    };
    // The message is read into `request` as it is parsed (no map of the whole message).
    let mut de = serde_json::Deserializer::from_str(text);
    match seed::into(request, &mut de).and_then(|object| de.end().map(|()| object)) {
        Ok(true) => {}
        Ok(false) => {
            // 6.6.2: valid JSON that is not a mapping cannot be a message.
            return Err(Box::new((
                HandlerError::new("The message must be a JSON object."),
                None,
            )));
        }
        Err(_) => {
            // 6.2.2: not JSON: the raw text is the payload (whatever the parser had
            // set before it failed is undone).
            *request = Request {
                payload: Payload::Text(text.to_string()),
                ..Request::default()
            };
            return Ok(None);
        }
    }
    Ok(MessageId::of(&request.headers))
}

/// Reading a client message (6.2.3) straight off the JSON parser into a [`Request`]:
/// the keys the runner uses are parsed as JSON values, the others are parsed and
/// dropped. This accepts and rejects exactly the texts `serde_json::from_str::<Value>`
/// does (every value is read in full, as `Value`'s own deserializer reads it), and a
/// repeated key counts with its last value only, as in a `Map`. Strings for the name and
/// method, and header names, are read straight into inline strings: no heap block for
/// the short ones.
mod seed {
    use std::fmt;

    use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
    use serde_json::{Map, Value};

    use configurapi::{CompactString, Headers, HeadersBuilder, Payload, Request};

    /// Read one JSON value; when it is an object, its keys set `request`'s fields and
    /// the answer is `true`. `false`: some other JSON value (`request` is untouched).
    /// On an error `request` may be partly set.
    pub(super) fn into<'de, D: Deserializer<'de>>(
        request: &mut Request,
        d: D,
    ) -> Result<bool, D::Error> {
        MessageSeed(request).deserialize(d)
    }

    enum Key {
        Name,
        Method,
        Query,
        Params,
        Headers,
        Payload,
        Other,
    }

    impl<'de> de::Deserialize<'de> for Key {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Key, D::Error> {
            struct KeyVisitor;
            impl Visitor<'_> for KeyVisitor {
                type Value = Key;
                fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                    f.write_str("an object key")
                }
                fn visit_str<E: de::Error>(self, s: &str) -> Result<Key, E> {
                    Ok(match s {
                        "name" => Key::Name,
                        "method" => Key::Method,
                        "query" => Key::Query,
                        "params" => Key::Params,
                        "headers" => Key::Headers,
                        "payload" => Key::Payload,
                        _ => Key::Other,
                    })
                }
            }
            d.deserialize_str(KeyVisitor)
        }
    }

    struct MessageSeed<'a>(&'a mut Request);

    impl<'de> DeserializeSeed<'de> for MessageSeed<'_> {
        type Value = bool;
        fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<bool, D::Error> {
            d.deserialize_any(self)
        }
    }

    /// A mapping's value, or an empty mapping for anything else.
    fn object(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => Map::new(),
        }
    }

    /// A JSON value where a string is what is wanted: a string is read into an inline
    /// string (no `Value`, no heap block when short); anything else as a `Value`.
    enum Text {
        Str(CompactString),
        Other(Value),
    }

    /// Reads a [`Text`].
    struct TextSeed;

    impl<'de> DeserializeSeed<'de> for TextSeed {
        type Value = Text;
        fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Text, D::Error> {
            d.deserialize_any(AnyVisitor(|s: &str| Text::Str(s.into()), Text::Other))
        }
    }

    /// The client's headers: a mapping read straight into [`Headers`] (a repeated name
    /// keeps its first place and its last value, as in a `Map`); anything else is read
    /// as a `Value` and means no headers.
    // #17 json-prep: it holds the request's old headers, whose room the new ones take.
    struct HeadersSeed(Headers);

    impl<'de> DeserializeSeed<'de> for HeadersSeed {
        type Value = Headers;
        fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Headers, D::Error> {
            struct HeadersVisitor(Headers);
            impl<'de> Visitor<'de> for HeadersVisitor {
                type Value = Headers;
                fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                    f.write_str("any JSON value")
                }
                fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Headers, A::Error> {
                    // The client decides the count: linear, not a scan per name.
                    let n = map.size_hint().unwrap_or(4);
                    let mut headers = HeadersBuilder::reusing(self.0, n); // #17 json-prep
                    while let Some(name) = map.next_key::<CompactString>()? {
                        // #17: a string that fits inline is kept as it is (no heap block).
                        match map.next_value_seed(TextSeed)? {
                            Text::Str(s) if !s.is_heap_allocated() => headers.insert_str(name, s),
                            // Its heap block becomes the `Value`'s (no copy).
                            Text::Str(s) => headers.insert(name, Value::String(s.into_string())),
                            Text::Other(v) => headers.insert(name, v),
                        }
                    }
                    Ok(headers.finish())
                }
                fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Headers, A::Error> {
                    AnyVisitor(|_: &str| (), |_| ()).visit_seq(seq)?;
                    Ok(Headers::new())
                }
                fn visit_unit<E: de::Error>(self) -> Result<Headers, E> {
                    Ok(Headers::new())
                }
                fn visit_bool<E: de::Error>(self, _: bool) -> Result<Headers, E> {
                    Ok(Headers::new())
                }
                fn visit_i64<E: de::Error>(self, _: i64) -> Result<Headers, E> {
                    Ok(Headers::new())
                }
                fn visit_u64<E: de::Error>(self, _: u64) -> Result<Headers, E> {
                    Ok(Headers::new())
                }
                fn visit_f64<E: de::Error>(self, _: f64) -> Result<Headers, E> {
                    Ok(Headers::new())
                }
                fn visit_str<E: de::Error>(self, _: &str) -> Result<Headers, E> {
                    Ok(Headers::new())
                }
            }
            d.deserialize_any(HeadersVisitor(self.0))
        }
    }

    /// Any JSON value, read in full as `Value` reads it: a string goes to `S`, anything
    /// else is built as a `Value` and goes to `V`.
    struct AnyVisitor<S, V>(S, V);

    impl<'de, T, S: FnOnce(&str) -> T, V: FnOnce(Value) -> T> Visitor<'de> for AnyVisitor<S, V> {
        type Value = T;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("any JSON value")
        }
        fn visit_str<E: de::Error>(self, s: &str) -> Result<T, E> {
            Ok((self.0)(s))
        }
        fn visit_unit<E: de::Error>(self) -> Result<T, E> {
            Ok((self.1)(Value::Null))
        }
        fn visit_bool<E: de::Error>(self, b: bool) -> Result<T, E> {
            Ok((self.1)(Value::Bool(b)))
        }
        fn visit_i64<E: de::Error>(self, n: i64) -> Result<T, E> {
            Ok((self.1)(Value::from(n)))
        }
        fn visit_u64<E: de::Error>(self, n: u64) -> Result<T, E> {
            Ok((self.1)(Value::from(n)))
        }
        fn visit_f64<E: de::Error>(self, n: f64) -> Result<T, E> {
            // As `Value` reads it (a parsed number is finite).
            Ok((self.1)(Value::from(n)))
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<T, A::Error> {
            let mut items = Vec::new();
            while let Some(v) = seq.next_element::<Value>()? {
                items.push(v);
            }
            Ok((self.1)(Value::Array(items)))
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<T, A::Error> {
            let mut m = Map::new();
            while let Some((k, v)) = map.next_entry::<String, Value>()? {
                m.insert(k, v);
            }
            Ok((self.1)(Value::Object(m)))
        }
    }

    impl<'de> Visitor<'de> for MessageSeed<'_> {
        type Value = bool;

        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("any JSON value")
        }

        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<bool, A::Error> {
            let r = self.0;
            while let Some(key) = map.next_key::<Key>()? {
                // Each assignment stands for the whole field, so a repeated key ends
                // up as its last value alone decides.
                match key {
                    Key::Name => {
                        r.name = match map.next_value_seed(TextSeed)? {
                            Text::Str(s) => s,
                            Text::Other(v @ (Value::Number(_) | Value::Bool(_))) => {
                                v.to_string().into()
                            }
                            Text::Other(_) => CompactString::default(),
                        }
                    }
                    Key::Method => {
                        r.method = match map.next_value_seed(TextSeed)? {
                            Text::Str(m)
                                if m.bytes().any(|b| !b.is_ascii() || b.is_ascii_uppercase()) =>
                            {
                                m.to_lowercase()
                            }
                            Text::Str(m) => m,
                            // The Request default (6.2.3).
                            Text::Other(_) => Request::default().method,
                        }
                    }
                    Key::Query => r.query = object(map.next_value()?),
                    Key::Params => r.params = object(map.next_value()?),
                    // #17 json-prep: read into the old headers' room. What `take` left
                    // is an empty list with no heap block: nothing to drop (a call, else).
                    Key::Headers => {
                        let old = std::mem::take(&mut r.headers);
                        let new = map.next_value_seed(HeadersSeed(old))?;
                        std::mem::forget(std::mem::replace(&mut r.headers, new));
                    }
                    Key::Payload => r.payload = Payload::Json(map.next_value()?),
                    // Parsed as a Value all the same, so that the same texts fail.
                    Key::Other => {
                        map.next_value::<Value>()?;
                    }
                }
            }
            Ok(true)
        }

        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<bool, A::Error> {
            while seq.next_element::<Value>()?.is_some() {}
            Ok(false)
        }

        fn visit_unit<E: de::Error>(self) -> Result<bool, E> {
            Ok(false)
        }

        fn visit_bool<E: de::Error>(self, _: bool) -> Result<bool, E> {
            Ok(false)
        }

        fn visit_i64<E: de::Error>(self, _: i64) -> Result<bool, E> {
            Ok(false)
        }

        fn visit_u64<E: de::Error>(self, _: u64) -> Result<bool, E> {
            Ok(false)
        }

        fn visit_f64<E: de::Error>(self, _: f64) -> Result<bool, E> {
            Ok(false)
        }

        fn visit_str<E: de::Error>(self, _: &str) -> Result<bool, E> {
            Ok(false)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn s6_2_2_invalid_json_becomes_the_raw_payload() {
        let (req, id) = decode_message(true, b"not json {").unwrap();
        assert_eq!(req.payload, Payload::Text("not json {".into()));
        assert_eq!(req.name, "");
        assert!(id.is_none());
    }

    #[test]
    fn s6_6_2_json_that_is_not_a_mapping_is_a_syntax_error() {
        assert!(decode_message(true, b"42").is_err());
    }

    #[test]
    fn s6_2_3_message_fields_build_the_request() {
        let msg = br#"{"name":"getData","method":"POST","params":{"id":1},"query":{"q":"x"},"headers":{"message-id":"m1"},"payload":null}"#;
        let (req, id) = decode_message(true, msg).unwrap();
        assert_eq!(req.name, "getData");
        assert_eq!(req.method, "post");
        assert_eq!(req.params.get("id"), Some(&Value::from(1)));
        assert_eq!(req.query.get("q"), Some(&Value::from("x")));
        assert_eq!(req.payload, Payload::Json(Value::Null));
        assert_eq!(id, Some(MessageId::Str("m1".into())), "held inline");
        assert_eq!(id.map(MessageId::into_value), Some(Value::from("m1")));
    }

    #[test]
    fn a_message_id_is_read_from_any_header_form_and_compares_as_its_value() {
        use configurapi::{Headers, HeadersBuilder};
        let mut b = HeadersBuilder::with_capacity(1);
        b.insert_str("message-id".into(), "m-1".into());
        let inline = b.finish();
        let as_value: Headers = [("message-id", json_str("m-1"))].into_iter().collect();
        let number: Headers = [("message-id", Value::from(7))].into_iter().collect();
        let mut uuid = Headers::new();
        uuid.insert_uuid("message-id".into(), Default::default());
        let nil = "00000000-0000-0000-0000-000000000000";
        for (h, want) in [
            (&inline, json_str("m-1")),
            (&as_value, json_str("m-1")),
            (&number, Value::from(7)),
            (&uuid, json_str(nil)),
        ] {
            let id = MessageId::of(h).unwrap();
            assert_eq!(id, want);
            assert_eq!(id, MessageId::from(want.clone()));
            assert_eq!(MessageId::from(want.clone()), id);
            assert_eq!(id.into_value(), want);
        }
        assert!(matches!(MessageId::of(&inline), Some(MessageId::Str(_))));
        assert!(MessageId::of(&Headers::new()).is_none());
        assert_ne!(MessageId::Str("7".into()), Value::from(7));
        assert_ne!(MessageId::Str("7".into()), MessageId::from(Value::from(7)));
        assert_ne!(MessageId::Str("a".into()), MessageId::Str("b".into()));
    }

    fn json_str(s: &str) -> Value {
        Value::String(s.into())
    }

    #[test]
    fn s6_2_7_binary_that_is_not_utf8_is_the_payload() {
        let (req, _) = decode_message(false, &[0xff, 0x00]).unwrap();
        assert_eq!(req.payload, Payload::Bytes(vec![0xff, 0x00]));
    }

    /// The decoding as it was written first: the whole message parsed as a `Value`,
    /// then its keys taken out. `decode_message` must agree with it on every text.
    fn decode_reference(text: &str) -> Result<(Request, Option<Value>), ()> {
        let mut request = Request::default();
        let mut message = match serde_json::from_str::<Value>(text) {
            Ok(Value::Object(m)) => m,
            Ok(_) => return Err(()),
            Err(_) => {
                request.payload = Payload::Text(text.to_string());
                return Ok((request, None));
            }
        };
        request.name = match message.get("name") {
            Some(Value::String(s)) => s.as_str().into(),
            Some(v @ (Value::Number(_) | Value::Bool(_))) => v.to_string().into(),
            _ => Default::default(),
        };
        if let Some(Value::String(m)) = message.get("method") {
            request.method = m.to_lowercase().into();
        }
        if let Some(Value::Object(q)) = message.remove("query") {
            request.query = q;
        }
        if let Some(Value::Object(p)) = message.remove("params") {
            request.params = p;
        }
        if let Some(Value::Object(h)) = message.remove("headers") {
            request.headers = h.into();
        }
        if let Some(p) = message.remove("payload") {
            request.payload = Payload::Json(p);
        }
        let message_id = request.headers.get("message-id").cloned();
        Ok((request, message_id))
    }

    #[test]
    fn decoding_agrees_with_parsing_the_whole_message_as_a_value() {
        let deep = |n: usize, open: &str, close: &str| {
            format!("{{\"x\":{}1{}}}", open.repeat(n), close.repeat(n))
        };
        let mut texts: Vec<String> = [
            r#"{"name":"a","method":"POST","params":{"id":1},"query":{"q":"x"},"headers":{"message-id":"m1","b":[1]},"payload":{"k":[null,true,1.5]}}"#,
            r#"{"name":"a","name":"b","headers":{"message-id":1},"headers":{"message-id":2}}"#,
            r#"{"headers":{"message-id":"x"},"headers":5}"#,
            r#"{"headers":{"a":1,"b":2,"a":3,"m\u0065ssage-id":"e","a-header-name-longer-than-24-bytes":{"x":[]}}}"#,
            r#"{"headers":[{"a":1}],"name":"\u00e9chØ-a-name-longer-than-twenty-four","method":"pOsT"}"#,
            r#"{"headers":{"a":"\ud800"}}"#,
            r#"{"headers":{"message-id":"a","message-id":"b","x":"a-string-over-twenty-four-bytes","y":"","message-id":"\u00e9\n"}}"#,
            r#"{"headers":{"message-id":"x","message-id":7}}"#,
            r#"{"headers":{"message-id":"a-message-id-longer-than-twenty-four-bytes"}}"#,
            r#"{"method":"POST","method":5,"name":1,"name":[]}"#,
            r#"{"method":5,"method":"PUT","payload":1,"payload":null}"#,
            r#"{"query":{"a":1},"query":[],"params":{"b":2},"params":{"c":3}}"#,
            r#"{"na\u006de":"escaped","\u0070ayload":null}"#,
            r#"{"name":12.5,"method":"G\u00c9T"}"#,
            r#"{"name":true,"method":"ÄÖ","payload":"text"}"#,
            r#"{"name":null,"method":7,"query":[1],"params":"p","headers":null}"#,
            r#"{"name":{"a":1},"other":{"deep":[1,2,{"x":null}]},"payload":[]}"#,
            r#"{"other":1e400}"#,
            r#"{"other":"\ud800"}"#,
            r#"{"payload":1e400}"#,
            r#"{"name":"a"} trailing"#,
            r#"{"name":"a"}   "#,
            r#"{"name":"a",}"#,
            r#"{"name""#,
            "{}",
            "[]",
            "[1,{\"a\":2},[3]]",
            "[1,2",
            "[1e400]",
            "42",
            "-1",
            "1.5",
            "1e400",
            "true",
            "null",
            "\"str\"",
            "\"\\ud800\"",
            "",
            "   ",
            "not json {",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        // Past the headers builder's scan limit, names repeated before and after it.
        let many: Vec<String> = (0..60)
            .map(|i| match i % 3 {
                0 => format!("\"h{}\":{i}", if i % 4 == 3 { i / 2 } else { i }),
                _ => format!("\"h{}\":\"v{i}\"", if i % 4 == 3 { i / 2 } else { i }),
            })
            .collect();
        texts.push(format!("{{\"headers\":{{{}}}}}", many.join(",")));
        for n in [100, 126, 127, 128, 129, 200] {
            texts.push(deep(n, "[", "]"));
            texts.push(deep(n, "{\"a\":", "}"));
            texts.push(format!("{}1{}", "[".repeat(n), "]".repeat(n)));
        }
        for text in &texts {
            let got = decode_message(true, text.as_bytes());
            match (got, decode_reference(text)) {
                (Ok((a, id_a)), Ok((b, id_b))) => {
                    assert_eq!(format!("{a:?}"), format!("{b:?}"), "{text}");
                    assert_eq!(id_a.map(MessageId::into_value), id_b, "{text}");
                }
                (Err(_), Err(())) => {}
                (got, want) => panic!(
                    "{text}: got {:?}, want {:?}",
                    got.map(|(r, _)| r),
                    want.map(|(r, _)| r)
                ),
            }
        }
    }

    /// #17 json-prep: a message's headers are read into the room of the ones the request
    /// held (a runner's recycled event): none of those is left, and the request is as a
    /// fresh one's.
    #[test]
    fn decoding_into_a_request_that_held_headers_leaves_none_of_them() {
        let texts = [
            r#"{"name":"a","headers":{"message-id":"m2","b":1}}"#,
            r#"{"headers":{"x":1},"headers":{"message-id":"m3"}}"#,
            r#"{"headers":{"b":2},"headers":null}"#,
        ];
        for text in texts {
            let mut request = Request::default();
            for i in 0..40 {
                request.headers.insert(format!("old-{i}").into(), i.into());
            }
            request.headers.insert("message-id".into(), "m1".into());
            let got = decode_into(Message::Text(text), &mut request).unwrap();
            let (fresh, want) = decode_message(true, text.as_bytes()).unwrap();
            assert_eq!(format!("{request:?}"), format!("{fresh:?}"), "{text}");
            assert_eq!(
                got.map(MessageId::into_value),
                want.map(MessageId::into_value),
                "{text}"
            );
        }
    }
}
