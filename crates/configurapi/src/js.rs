//! JavaScript value semantics the contract refers to: truthiness and `String(x)`.
//!
//! Configurapi is a Node framework, and several rules of the spec are phrased in
//! terms of JS conversions. They live here once so that every module agrees.

use serde_json::Value;

/// JS truthiness of a JSON value: not `null`, `false`, `0`, `""` or `NaN`.
///
/// Mappings and sequences are objects in JS, so they are truthy even when empty.
pub fn is_truthy(value: &Value) -> bool {
    match value {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0 && !f.is_nan()),
        Value::String(s) => !s.is_empty(),
        Value::Array(_) | Value::Object(_) => true,
    }
}

/// Text of a value as the port writes it (2.3.5): strings as is, numbers in
/// decimal, `null` as `null`, sequences as their items joined by `,`, and
/// mappings as JSON text (the port's fix for JS's `[object Object]`).
pub fn to_text(value: &Value) -> String {
    match value {
        Value::Null => "null".to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => number_text(n),
        Value::String(s) => s.clone(),
        Value::Array(items) => items
            .iter()
            .map(|item| match item {
                // Array.prototype.join writes null and undefined items as "".
                Value::Null => String::new(),
                other => to_text(other),
            })
            .collect::<Vec<_>>()
            .join(","),
        Value::Object(_) => value.to_string(),
    }
}

/// `String(x)` for scalars used as keys (route names, handler names, imports).
///
/// Unlike [`to_text`] a mapping becomes `[object Object]`, because that is the
/// key Node would use; such keys only arise from odd configs.
pub fn key_text(value: &Value) -> String {
    match value {
        Value::Object(_) => "[object Object]".to_string(),
        other => to_text(other),
    }
}

/// Decimal text of a number; integral floats lose their `.0` as in JS.
fn number_text(n: &serde_json::Number) -> String {
    if n.is_i64() || n.is_u64() {
        return n.to_string();
    }
    match n.as_f64() {
        Some(f) if f.fract() == 0.0 && f.abs() < 1e21 => format!("{f:.0}"),
        Some(f) => f.to_string(),
        None => n.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn truthiness_follows_js() {
        for v in [json!(null), json!(false), json!(0), json!(0.0), json!("")] {
            assert!(!is_truthy(&v), "{v} should be falsy");
        }
        for v in [json!(1), json!("0"), json!([]), json!({}), json!(true)] {
            assert!(is_truthy(&v), "{v} should be truthy");
        }
    }

    #[test]
    fn text_follows_js_with_json_objects() {
        assert_eq!(to_text(&json!(1.0)), "1");
        assert_eq!(to_text(&json!(1.5)), "1.5");
        assert_eq!(to_text(&json!([1, "a", null, [2, 3]])), "1,a,,2,3");
        assert_eq!(to_text(&json!({"a": 1})), r#"{"a":1}"#);
        assert_eq!(key_text(&json!({"a": 1})), "[object Object]");
    }
}
