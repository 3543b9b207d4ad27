//! `configurapi-handler-json`: `setJsonResponseHandler` and
//! `validateJsonRequestHandler` (section 5).

use serde_json::Value;
use std::path::PathBuf;

use crate::{js, Context, ErrorResponse, Event, HandlerError, HandlerPack, Payload};

/// The pack.
pub fn pack() -> HandlerPack {
    HandlerPack::new(super::JSON_PACK)
        .with_nonblocking("setJsonResponseHandler", set_json_response_handler)
        .with(
            "validateJsonRequestHandler",
            ValidateJsonRequest::new("schemas"),
        )
}

/// `setJsonResponseHandler [statusCode=200, body="", headers?]`: as
/// `setResponseHandler`, then `Content-Type: application/json` unless the
/// exact key `Content-Type` is already there.
pub fn set_json_response_handler(
    event: &mut Event,
    params: &[Value],
    ctx: &mut Context,
) -> Result<(), HandlerError> {
    super::http::set_response_handler(event, params, ctx)?;
    if !event.response.headers.contains_key("Content-Type") {
        event.response.headers.insert(
            "Content-Type".into(),
            Value::String("application/json".into()),
        );
    }
    Ok(())
}

/// `validateJsonRequestHandler [emptyPayload?]`: validates the event payload
/// against the JSON Schema `<dir>/<event name>.json` (`schemas/` under the
/// working directory for the built-in). With a JS-truthy parameter the
/// payload must be empty instead.
///
/// A failed validation sets `ErrorResponse(<first error>, 400, <all errors>)`
/// and completes; a missing or invalid schema file throws a 500. Compiled
/// schemas are cached for the life of the process.
pub struct ValidateJsonRequest {
    dir: PathBuf,
    #[cfg(feature = "json-schema")]
    cache:
        std::sync::Mutex<std::collections::HashMap<PathBuf, std::sync::Arc<jsonschema::Validator>>>,
}

impl ValidateJsonRequest {
    /// A validator reading schemas from `dir`.
    pub fn new(dir: impl Into<PathBuf>) -> ValidateJsonRequest {
        ValidateJsonRequest {
            dir: dir.into(),
            #[cfg(feature = "json-schema")]
            cache: Default::default(),
        }
    }

    #[cfg(feature = "json-schema")]
    fn validate(
        &self,
        schema_path: &std::path::Path,
        instance: &Value,
    ) -> Result<Result<(), (String, String)>, HandlerError> {
        let validator = {
            let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
            match cache.get(schema_path) {
                Some(v) => v.clone(),
                None => {
                    let text = std::fs::read_to_string(schema_path).map_err(|e| {
                        HandlerError::new(format!(
                            "Schema '{}' could not be loaded: {e}",
                            schema_path.display()
                        ))
                    })?;
                    let schema: Value = serde_json::from_str(&text).map_err(|e| {
                        HandlerError::new(format!(
                            "Schema '{}' is not valid JSON: {e}",
                            schema_path.display()
                        ))
                    })?;
                    let compiled = jsonschema::validator_for(&schema).map_err(|e| {
                        HandlerError::new(format!(
                            "Schema '{}' is not a valid JSON Schema: {e}",
                            schema_path.display()
                        ))
                    })?;
                    let compiled = std::sync::Arc::new(compiled);
                    cache.insert(schema_path.to_path_buf(), compiled.clone());
                    compiled
                }
            }
        };
        let messages: Vec<String> = validator
            .iter_errors(instance)
            .map(|e| {
                let path = e.instance_path.to_string();
                if path.is_empty() {
                    e.to_string()
                } else {
                    format!("{path}: {e}")
                }
            })
            .collect();
        match messages.first() {
            None => Ok(Ok(())),
            Some(first) => Ok(Err((first.clone(), messages.join("; ")))),
        }
    }

    #[cfg(not(feature = "json-schema"))]
    fn validate(
        &self,
        _schema_path: &std::path::Path,
        _instance: &Value,
    ) -> Result<Result<(), (String, String)>, HandlerError> {
        Err(HandlerError::new(
            "JSON Schema validation is not compiled in (cargo feature `json-schema`).",
        ))
    }
}

impl crate::Handler for ValidateJsonRequest {
    fn call(
        &self,
        event: &mut Event,
        params: &[Value],
        ctx: &mut Context,
    ) -> Result<(), HandlerError> {
        let empty_payload = params.first().is_some_and(js::is_truthy);
        if empty_payload {
            if event.payload.is_truthy() {
                event.response =
                    ErrorResponse::new("Request payload should be empty.", 400, "").into();
                ctx.complete();
            }
            return Ok(());
        }
        let instance = match &event.payload {
            Payload::Absent => Value::Null,
            Payload::Json(v) => v.clone(),
            // Text that is JSON (a `text/plain` body, say) is validated as
            // that JSON; other text is validated as a JSON string.
            Payload::Text(s) => {
                serde_json::from_str(s).unwrap_or_else(|_| Value::String(s.clone()))
            }
            Payload::Bytes(b) => match serde_json::from_slice(b) {
                Ok(v) => v,
                Err(_) => {
                    event.response =
                        ErrorResponse::new("Request payload is not JSON.", 400, "").into();
                    ctx.complete();
                    return Ok(());
                }
            },
        };
        let schema_path = self.dir.join(format!("{}.json", event.name));
        if let Err((message, details)) = self.validate(&schema_path, &instance)? {
            event.response = ErrorResponse::new(message, 400, details).into();
            ctx.complete();
        }
        Ok(())
    }
}
