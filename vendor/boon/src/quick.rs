// PATCHED (configurapi-runner-ws, vendor/boon/PATCHES.md): this file is not upstream.
//
// A schema is checked against its draft's metaschema before it is compiled. For 2020-12
// that meant compiling the metaschema set (the schema and seven vocabularies, 105
// subschemas, ~4.7 M instructions) in every process that compiles a schema; for
// draft-07 its one document (~2.5 M). Most
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

/// The same for draft-07 (the `properties` of its metaschema).
#[cfg(test)]
#[rustfmt::skip]
const CONSTRAINED_7: &[&str] = &[
    "$id", "$schema", "$ref", "$comment", "title", "description", "default", "readOnly",
    "writeOnly", "examples", "multipleOf", "maximum", "exclusiveMaximum", "minimum",
    "exclusiveMinimum", "maxLength", "minLength", "pattern", "additionalItems", "items",
    "maxItems", "minItems", "uniqueItems", "contains", "maxProperties", "minProperties",
    "required", "additionalProperties", "definitions", "properties", "patternProperties",
    "dependencies", "propertyNames", "const", "enum", "type", "format", "contentMediaType",
    "contentEncoding", "if", "then", "else", "allOf", "anyOf", "oneOf", "not",
];

const MAX_DEPTH: usize = 64;

#[derive(Clone, Copy)]
enum D {
    V7,
    V2020,
}

/// Whether `v` is certainly valid against the metaschema of draft `version` (see
/// above); always "not known" (false) for drafts other than 7 and 2020-12.
pub(crate) fn valid(version: usize, v: &Value) -> bool {
    match version {
        7 => schema(v, 0, D::V7),
        2020 => schema(v, 0, D::V2020),
        _ => false,
    }
}

fn schema(v: &Value, depth: usize, d: D) -> bool {
    match v {
        Value::Bool(_) => true,
        Value::Object(obj) => {
            depth < MAX_DEPTH
                && obj.iter().all(|(k, v)| match d {
                    D::V7 => keyword_7(k, v, depth + 1),
                    D::V2020 => keyword_2020(k, v, depth + 1),
                })
        }
        _ => false,
    }
}

/// A non-empty array of schemas (the metaschemas' `schemaArray`).
fn schema_array(v: &Value, depth: usize, d: D) -> bool {
    matches!(v, Value::Array(a) if !a.is_empty() && a.iter().all(|s| schema(s, depth, d)))
}

fn type_names(v: &Value) -> bool {
    match v {
        Value::String(t) => simple_type(t),
        Value::Array(a) => {
            !a.is_empty()
                && a.iter()
                    .all(|t| matches!(t, Value::String(t) if simple_type(t)))
                && unique_strings(a)
        }
        _ => false,
    }
}

fn keyword_7(k: &str, v: &Value, depth: usize) -> bool {
    let d = D::V7;
    match k {
        "$id" | "$ref" => format("uri-reference", v),
        "$schema" => format("uri", v),
        "$comment" | "title" | "description" | "format" | "contentMediaType"
        | "contentEncoding" => v.is_string(),
        "default" | "const" => true,
        "readOnly" | "writeOnly" | "uniqueItems" => v.is_boolean(),
        "examples" => v.is_array(),
        "multipleOf" => v.as_f64().is_some_and(|n| n > 0.0),
        "maximum" | "exclusiveMaximum" | "minimum" | "exclusiveMinimum" => v.is_number(),
        "maxLength" | "minLength" | "maxItems" | "minItems" | "maxProperties" | "minProperties" => {
            v.is_u64()
        }
        "pattern" => matches!(v, Value::String(p) if ecma::convert(p).is_ok()),
        "additionalItems"
        | "contains"
        | "additionalProperties"
        | "propertyNames"
        | "if"
        | "then"
        | "else"
        | "not" => schema(v, depth, d),
        "items" => schema(v, depth, d) || schema_array(v, depth, d),
        "allOf" | "anyOf" | "oneOf" => schema_array(v, depth, d),
        "required" => string_array(v),
        "definitions" | "properties" => schema_map(v, depth, d, |_| true),
        "patternProperties" => schema_map(v, depth, d, |k| ecma::convert(k).is_ok()),
        "dependencies" => {
            matches!(v, Value::Object(m) if m.values().all(|x| schema(x, depth, d) || string_array(x)))
        }
        // Non-empty and unique; values other than strings are left to the metaschema
        // (its equality of numbers and containers is boon's own).
        "enum" => {
            matches!(v, Value::Array(a) if !a.is_empty() && a.iter().all(Value::is_string) && unique_strings(a))
        }
        "type" => type_names(v),
        // Not a keyword of draft-07: unconstrained.
        _ => true,
    }
}

fn keyword_2020(k: &str, v: &Value, depth: usize) -> bool {
    let d = D::V2020;
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
            schema_map(v, depth, d, |_| true)
        }
        // applicator, unevaluated, content
        "prefixItems" | "allOf" | "anyOf" | "oneOf" => schema_array(v, depth, d),
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
        | "contentSchema" => schema(v, depth, d),
        "patternProperties" => schema_map(v, depth, d, |k| ecma::convert(k).is_ok()),
        // validation
        "type" => type_names(v),
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
fn schema_map(v: &Value, depth: usize, d: D, key: impl Fn(&str) -> bool) -> bool {
    matches!(v, Value::Object(m) if m.iter().all(|(k, s)| key(k) && schema(s, depth, d)))
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

    /// Every keyword the 2020-12 and draft-07 metaschemas constrain is one `keyword_*`
    /// knows (checks or leaves to the metaschema); a keyword added upstream fails here.
    #[test]
    fn keywords_are_those_the_metaschemas_constrain() {
        let drafts: [(&str, &[&str], &[&str]); 2] = [
            (
                "draft/2020-12/",
                CONSTRAINED_2020,
                &[
                    "$schema",
                    "$id",
                    "$vocabulary",
                    "$dynamicAnchor",
                    "title",
                    "$comment",
                    "type",
                    "properties",
                    "$defs",
                    "allOf",
                ],
            ),
            (
                "draft-07/",
                CONSTRAINED_7,
                &[
                    "$schema",
                    "$id",
                    "title",
                    "definitions",
                    "type",
                    "properties",
                    "default",
                ],
            ),
        ];
        for (prefix, constrained, top) in drafts {
            let mut found = Vec::new();
            for (path, text) in crate::loader::STD_METAFILES.iter() {
                if !path.starts_with(prefix) {
                    continue;
                }
                let doc: Value = serde_json::from_str(text).unwrap();
                // Nothing at a document's top level but `properties` constrains members
                // (`allOf` only refers to the vocabularies, `type` is `schema`'s check).
                for key in doc.as_object().unwrap().keys() {
                    assert!(
                        top.contains(&key.as_str()),
                        "{path} has {key}: does it constrain schemas?"
                    );
                }
                assert_eq!(doc["type"], json!(["object", "boolean"]), "{path}");
                if let Some(Value::Object(props)) = doc.get("properties") {
                    found.extend(props.keys().cloned());
                }
            }
            assert!(!found.is_empty(), "{prefix}");
            found.sort();
            found.dedup();
            let mut known: Vec<String> = constrained.iter().map(|s| s.to_string()).collect();
            known.sort();
            assert_eq!(found, known, "{prefix}");
        }
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
            // draft-07's own shapes
            json!({"items": [{"type": "string"}, true], "additionalItems": false}),
            json!({"items": []}),
            json!({"dependencies": {"a": ["b"], "c": {"required": ["d"]}}}),
            json!({"dependencies": {"a": ["b", "b"]}}),
            json!({"dependencies": {"a": 1}}),
            json!({"enum": ["a", "b"]}),
            json!({"enum": ["a", "a"]}),
            json!({"enum": []}),
            json!({"enum": [1, 1.0]}),
            json!({"definitions": {"a": {"$ref": "#/definitions/a"}}, "$ref": "#/definitions/a"}),
            json!({"definitions": {"a": 1}}),
            json!({"additionalItems": 5}),
        ];
        for (version, url, at_least) in [
            (2020, "https://json-schema.org/draft/2020-12/schema", 7),
            (7, "http://json-schema.org/draft-07/schema", 9),
        ] {
            let mut compiler = Compiler::new();
            compiler.enable_format_assertions();
            let mut schemas = Schemas::new();
            let meta = compiler.compile(url, &mut schemas).unwrap();
            let mut quick = 0;
            for v in &cases {
                let full = schemas.validate(v, meta).is_ok();
                if valid(version, v) {
                    quick += 1;
                    assert!(full, "{version}: passed what the metaschema rejects: {v}");
                }
            }
            assert!(
                quick >= at_least,
                "{version}: fast path for plain schemas: {quick}"
            );
            // deep nesting goes to the metaschema
            let mut deep = json!({});
            for _ in 0..100 {
                deep = json!({ "not": deep });
            }
            assert!(!valid(version, &deep));
        }
        assert!(!valid(2019, &json!({})) && !valid(4, &json!({})));
    }
}
