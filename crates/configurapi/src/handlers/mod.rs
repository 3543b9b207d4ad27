//! Built-in handler packs, named after the Node packages they stand in for
//! (5.0): `configurapi-handler-http` ([`http`]), `configurapi-handler-json`
//! ([`json`]) and `configurapi-handler-logging` ([`logging`]). A config makes
//! them available with `import:`. A runner adds its own always-on packs (8.7)
//! to the registry it builds, with [`crate::HandlerRegistry::add_always_on_pack`].

use crate::HandlerPack;

pub mod http;
pub mod json;
pub mod logging;

/// Name of the HTTP pack.
pub const HTTP_PACK: &str = "configurapi-handler-http";
/// Name of the JSON pack.
pub const JSON_PACK: &str = "configurapi-handler-json";
/// Name of the logging pack.
pub const LOGGING_PACK: &str = "configurapi-handler-logging";

/// The importable built-in packs.
pub fn builtin_packs() -> Vec<HandlerPack> {
    vec![http::pack(), json::pack(), logging::pack()]
}

/// Shared parameter helpers for the packs.
pub(crate) mod params {
    use serde_json::Value;

    use crate::HandlerError;

    /// A status code parameter: a number, or a numeric string (5: "the
    /// port SHOULD turn numeric strings into numbers"). Anything else is an
    /// error, because a response cannot carry a non-numeric status.
    pub fn status(value: Option<&Value>, default: Option<u16>) -> Result<u16, HandlerError> {
        let parsed = match value {
            None | Some(Value::Null) => default,
            Some(Value::Number(n)) => n.as_u64().and_then(|n| u16::try_from(n).ok()),
            Some(Value::String(s)) => s.trim().parse::<u16>().ok(),
            Some(_) => None,
        };
        parsed.ok_or_else(|| {
            let shown = value.map_or("undefined".to_string(), |v| v.to_string());
            HandlerError::new(format!("Invalid status code {shown}."))
        })
    }
}
