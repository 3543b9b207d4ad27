// PATCHED (configurapi-runner-ws, vendor/boon/PATCHES.md): this file is not upstream.
//
// A schema is checked against its draft's metaschema before it is compiled. For 2020-12
// that meant compiling the metaschema set (the schema and seven vocabularies, 105
// subschemas, ~4.7 M instructions) in every process that compiles a schema. Most
// schemas use a handful of keywords whose metaschema constraints are simple (a type, a
// non-negative integer, a regex, a URI reference, subschemas), so they are checked here
// directly. The answer is only ever "certainly valid" or "not known": anything this
// does not know exactly (a keyword it leaves to the metaschema, a value that fails,
// a number that is not a plain non-negative integer, nesting past 64 levels) gives
// "not known", and the caller validates against the compiled metaschema as before, which
// gives the same errors as ever. So a schema's answer never changes, only how soon a
// valid one gets it.

use serde_json::Value;

use crate::{ecma, formats::FORMATS};

/// Every keyword the 2020-12 metaschema set constrains (the `properties` of the schema
/// and its vocabularies); any other member of a schema object is unconstrained there.
/// Pinned by `tests::keywords_are_those_the_metaschemas_constrain`.
#[cfg(test)]
#[rustfmt::skip]
const CONSTRAINED_2020: &[&str] = &[
    "$id", "$schema", "$ref", "$anchor", "$dynamicRef", "$dynamicAnchor", "$vocabulary",
    "$comment", "$defs", "prefixItems", "items", "contains", "additionalProperties",
    "properties", "patternProperties", "dependentSchemas", "propertyNames", "if", "then",
    "else", "allOf", "anyOf", "oneOf", "not", "unevaluatedItems", "unevaluatedProperties",
    "type", "const", "enum", "multipleOf", "maximum", "exclusiveMaximum", "minimum",
    "exclusiveMinimum", "maxLength", "minLength", "pattern", "maxItems", "minItems",
    "uniqueItems", "maxContains", "minContains", "maxProperties", "minProperties",
    "required", "dependentRequired", "title", "description", "default", "deprecated",
    "readOnly", "writeOnly", "examples", "format", "contentEncoding", "contentMediaType",
    "contentSchema", "definitions", "dependencies", "$recursiveAnchor", "$recursiveRef",
];

const MAX_DEPTH: usize = 64;

/// Whether `v` is certainly valid against the 2020-12 metaschema (see above).
pub(crate) fn valid_2020(v: &Value) -> bool {
    schema(v, 0)
}

fn schema(v: &Value, depth: usize) -> bool {
    match v {
        Value::Bool(_) => true,
        Value::Object(obj) => {
            depth < MAX_DEPTH && obj.iter().all(|(k, v)| keyword(k, v, depth + 1))
        }
        _ => false,
    }
}

fn keyword(k: &str, v: &Value, depth: usize) -> bool {
    match k {
        // core
        "$id" => {
            format("uri-reference", v)
                && matches!(v, Value::String(s) if s.find('#').is_none_or(|i| i == s.len() - 1))
        }
        "$schema" => format("uri", v),
        "$ref" => format("uri-reference", v),
        "$anchor" => matches!(v, Value::String(s) if anchor(s)),
        "$comment" => v.is_string(),
        "$defs" | "definitions" | "properties" | "dependentSchemas" => {
            schema_map(v, depth, |_| true)
        }
        // applicator, unevaluated, content
        "prefixItems" | "allOf" | "anyOf" | "oneOf" => {
            matches!(v, Value::Array(a) if !a.is_empty() && a.iter().all(|s| schema(s, depth)))
        }
        "items"
        | "contains"
        | "additionalProperties"
        | "propertyNames"
        | "if"
        | "then"
        | "else"
        | "not"
        | "unevaluatedItems"
        | "unevaluatedProperties"
        | "contentSchema" => schema(v, depth),
        "patternProperties" => schema_map(v, depth, |k| ecma::convert(k).is_ok()),
        // validation
        "type" => match v {
            Value::String(t) => simple_type(t),
            Value::Array(a) => {
                !a.is_empty()
                    && a.iter()
                        .all(|t| matches!(t, Value::String(t) if simple_type(t)))
                    && unique_strings(a)
            }
            _ => false,
        },
        "const" | "default" => true,
        "enum" | "examples" => v.is_array(),
        "multipleOf" => v.as_f64().is_some_and(|n| n > 0.0),
        "maximum" | "exclusiveMaximum" | "minimum" | "exclusiveMinimum" => v.is_number(),
        // A non-negative integer; 1.0 and the like are left to the metaschema.
        "maxLength" | "minLength" | "maxItems" | "minItems" | "maxContains" | "minContains"
        | "maxProperties" | "minProperties" => v.is_u64(),
        "pattern" => matches!(v, Value::String(p) if ecma::convert(p).is_ok()),
        "uniqueItems" | "deprecated" | "readOnly" | "writeOnly" => v.is_boolean(),
        "required" => string_array(v),
        "dependentRequired" => matches!(v, Value::Object(m) if m.values().all(string_array)),
        // meta-data, format-annotation, content
        "title" | "description" | "format" | "contentEncoding" | "contentMediaType" => {
            v.is_string()
        }
        // Constrained, but rare: left to the metaschema.
        "$dynamicRef" | "$dynamicAnchor" | "$vocabulary" | "dependencies" | "$recursiveAnchor"
        | "$recursiveRef" => false,
        // Not a keyword of 2020-12: unconstrained.
        _ => true,
    }
}

/// An object whose keys pass `key` and whose values are schemas.
fn schema_map(v: &Value, depth: usize, key: impl Fn(&str) -> bool) -> bool {
    matches!(v, Value::Object(m) if m.iter().all(|(k, s)| key(k) && schema(s, depth)))
}

/// The same check as the metaschema's `format` (asserted for metaschemas).
fn format(name: &str, v: &Value) -> bool {
    v.is_string() && FORMATS.get(name).is_some_and(|f| (f.func)(v).is_ok())
}

/// `^[A-Za-z_][-A-Za-z0-9._]*$`
fn anchor(s: &str) -> bool {
    let mut b = s.bytes();
    b.next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == b'_')
        && b.all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_'))
}

fn simple_type(t: &str) -> bool {
    matches!(
        t,
        "array" | "boolean" | "integer" | "null" | "number" | "object" | "string"
    )
}

/// The validation vocabulary's `stringArray`: strings, each once.
fn string_array(v: &Value) -> bool {
    matches!(v, Value::Array(a) if a.iter().all(Value::is_string) && unique_strings(a))
}

fn unique_strings(a: &[Value]) -> bool {
    a.iter()
        .enumerate()
        .all(|(i, x)| a[..i].iter().all(|y| x != y))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::{Compiler, Schemas};

    /// Every keyword some 2020-12 metaschema constrains is one `keyword` knows (checks
    /// or leaves to the metaschema); a keyword added upstream fails here.
    #[test]
    fn keywords_are_those_the_metaschemas_constrain() {
        let mut found = Vec::new();
        for (path, text) in crate::loader::STD_METAFILES.iter() {
            if !path.starts_with("draft/2020-12/") {
                continue;
            }
            let doc: Value = serde_json::from_str(text).unwrap();
            // Nothing at a document's top level but `properties` constrains members
            // (`allOf` only refers to the vocabularies, `type` is checked by `schema`).
            for key in doc.as_object().unwrap().keys() {
                assert!(
                    [
                        "$schema",
                        "$id",
                        "$vocabulary",
                        "$dynamicAnchor",
                        "title",
                        "$comment",
                        "type",
                        "properties",
                        "$defs",
                        "allOf"
                    ]
                    .contains(&key.as_str()),
                    "{path} has {key}: does it constrain schemas?"
                );
            }
            assert_eq!(doc["type"], json!(["object", "boolean"]), "{path}");
            if let Some(Value::Object(props)) = doc.get("properties") {
                found.extend(props.keys().cloned());
            }
        }
        found.sort();
        found.dedup();
        let mut known: Vec<String> = CONSTRAINED_2020.iter().map(|s| s.to_string()).collect();
        known.sort();
        assert_eq!(found, known);
    }

    /// Whatever this says is valid, the compiled metaschema says is valid.
    #[test]
    fn certainly_valid_only_when_the_metaschema_agrees() {
        let cases = [
            json!({"type": "object", "required": ["a", "b"], "properties": {"a": {"type": "string", "pattern": "^x+$", "minLength": 1}, "b": {"type": ["integer", "null"], "minimum": 0, "multipleOf": 2}}, "additionalProperties": false}),
            json!({"$id": "http://e.com/s.json#", "$anchor": "_a.b-c", "$defs": {"x": {"$ref": "#/$defs/y"}, "y": true}}),
            json!({"items": {"enum": [1, "a"]}, "prefixItems": [false], "contains": {"const": 1}, "minContains": 0}),
            json!({"patternProperties": {"^x-\\d+$": {}}, "propertyNames": {"maxLength": 3}}),
            json!({"title": "t", "description": "d", "examples": [], "default": 1, "deprecated": true, "format": "email", "x-unknown": {"type": 12}}),
            json!({"dependentRequired": {"a": ["b"]}, "dependentSchemas": {"a": {"required": []}}}),
            json!({"$id": "a#b"}),
            json!({"$id": 1}),
            json!({"$ref": "http://[::1"}),
            json!({"$schema": "not a uri"}),
            json!({"$anchor": "1a"}),
            json!({"type": 12}),
            json!({"type": ["string", "string"]}),
            json!({"type": []}),
            json!({"type": "strin"}),
            json!({"required": ["a", "a"]}),
            json!({"required": [1]}),
            json!({"minLength": -1}),
            json!({"minLength": 1.5}),
            json!({"minLength": 1.0}),
            json!({"multipleOf": 0}),
            json!({"multipleOf": -0.0}),
            json!({"pattern": "("}),
            json!({"pattern": 1}),
            json!({"patternProperties": {"(": {}}}),
            json!({"allOf": []}),
            json!({"allOf": [1]}),
            json!({"properties": {"a": 1}}),
            json!({"enum": {}}),
            json!({"not": {"not": {"not": {"minItems": "1"}}}}),
            json!({"$dynamicAnchor": "meta"}),
            json!({"dependencies": {"a": ["b"]}}),
            json!(1),
            json!(null),
            json!(true),
        ];
        let mut compiler = Compiler::new();
        compiler.enable_format_assertions();
        let mut schemas = Schemas::new();
        let meta = compiler
            .compile("https://json-schema.org/draft/2020-12/schema", &mut schemas)
            .unwrap();
        let mut quick = 0;
        for v in &cases {
            let full = schemas.validate(v, meta).is_ok();
            if valid_2020(v) {
                quick += 1;
                assert!(full, "quick check passed what the metaschema rejects: {v}");
            }
        }
        assert!(
            quick >= 7,
            "the fast path is taken for the plain schemas: {quick}"
        );
        // deep nesting goes to the metaschema
        let mut deep = json!({});
        for _ in 0..100 {
            deep = json!({ "not": deep });
        }
        assert!(!valid_2020(&deep));
    }
}
