//! Built-in handler packs, named after the Node packages they stand in for
//! (5.0): `configurapi-handler-http` ([`http`]), `configurapi-handler-json`
//! ([`json`]) and `configurapi-handler-logging` ([`logging`]). A config makes
//! them available with `import:`. Other modules of the crate (the runner's own
//! pack) register always-on packs with [`register_always_on_pack`].

use std::sync::Mutex;

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

static ALWAYS_ON: Mutex<Vec<fn() -> HandlerPack>> = Mutex::new(Vec::new());

/// Registers a pack that every [`crate::HandlerRegistry::with_builtins`]
/// includes with no `import:` needed (8.7). A pack with the name of an
/// earlier one replaces it. Call it before building services.
pub fn register_always_on_pack(factory: fn() -> HandlerPack) {
    let name = factory().name().to_string();
    let mut list = ALWAYS_ON.lock().unwrap_or_else(|p| p.into_inner());
    list.retain(|f| f().name() != name);
    list.push(factory);
}

/// The always-on packs registered so far.
pub fn always_on_packs() -> Vec<HandlerPack> {
    let list = ALWAYS_ON.lock().unwrap_or_else(|p| p.into_inner());
    list.iter().map(|f| f()).collect()
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
