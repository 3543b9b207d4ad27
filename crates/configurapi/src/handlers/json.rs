//! `configurapi-handler-json`: `setJsonResponseHandler` and
//! `validateJsonRequestHandler` (section 5).

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::{
    js, Binding, Context, ErrorResponse, Event, Handler, HandlerError, HandlerPack, Payload,
};

/// Route names whose events carry other names (3.3: a method route, `catchall`, the
/// lifecycle routes), so no single schema file belongs to them at start-up.
const NAMES_VARY: &[&str] = &[
    "catchall",
    "on_start",
    "on_first_request",
    "on_before_request",
    "on_success",
    "on_error",
    "on_after_request",
    "on_connect",
    "on_disconnect",
    "get",
    "post",
    "put",
    "patch",
    "delete",
    "list",
    "head",
    "options",
];

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
/// against the JSON Schema `<dir>/<event name>.json` (`schemas/` beside the
/// config file for the built-in: a relative `dir` resolves against the config's
/// folder when the service is built). With a JS-truthy parameter the payload must
/// be empty instead.
///
/// At start-up ([`Handler::bind`]) the schema of each route that validates is read
/// and compiled, so a missing or invalid file is a start-up error naming the file and
/// the route. Routes whose event name is only known per request (`catchall`, a
/// method such as `post`, the lifecycle routes) load schemas on first use; a missing
/// one there throws a 500 that names the event, not the server's path (the path is
/// logged). A failed validation sets `ErrorResponse(<first error>, 400, <all
/// errors>)` and completes. Compiled schemas are cached for the life of the process.
pub struct ValidateJsonRequest {
    dir: PathBuf,
    #[cfg(feature = "json-schema")]
    cache: std::sync::Mutex<std::collections::HashMap<PathBuf, Arc<Compiled>>>,
}

/// One compiled schema file: boon keeps a schema and what it references in one
/// `Schemas` set, addressed by index.
#[cfg(feature = "json-schema")]
struct Compiled {
    schemas: boon::Schemas,
    index: boon::SchemaIndex,
}

/// The failures a validation error tree stands for: its leaves, in order, each as
/// `<instance pointer>: <what failed>` (the bare message at the payload's root).
/// boon nests errors under the keyword that combined them (`allOf`, `$ref`, ...);
/// the leaves are the ones a client can act on.
#[cfg(feature = "json-schema")]
fn leaf_messages(error: &boon::ValidationError<'_, '_>, out: &mut Vec<String>) {
    if error.causes.is_empty() {
        let path = error.instance_location.to_string();
        out.push(if path.is_empty() {
            error.kind.to_string()
        } else {
            format!("{path}: {}", error.kind)
        });
    }
    for cause in &error.causes {
        leaf_messages(cause, out);
    }
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

    /// Reads and compiles a schema file; the error names the file.
    #[cfg(feature = "json-schema")]
    fn compile(schema_path: &Path) -> Result<Arc<Compiled>, String> {
        let shown = schema_path.display();
        let text = std::fs::read_to_string(schema_path)
            .map_err(|e| format!("schema file '{shown}' could not be read: {e}"))?;
        let schema: Value = serde_json::from_str(&text)
            .map_err(|e| format!("schema file '{shown}' is not valid JSON: {e}"))?;
        let invalid = |e: boon::CompileError| {
            format!("schema file '{shown}' is not a valid JSON Schema: {e:#}")
        };
        // The document is handed over already parsed, under the file's own location,
        // so a relative `$ref` resolves beside it. An absolute location: boon's
        // locations are URLs, and a relative path would be taken against the
        // working directory.
        let absolute = std::path::absolute(schema_path)
            .map_err(|e| format!("schema file '{shown}' could not be read: {e}"))?;
        let location = absolute
            .to_str()
            .ok_or_else(|| format!("schema file '{shown}' could not be read: path is not UTF-8"))?;
        let mut compiler = boon::Compiler::new();
        compiler.add_resource(location, schema).map_err(invalid)?;
        let mut schemas = boon::Schemas::new();
        let index = compiler.compile(location, &mut schemas).map_err(invalid)?;
        Ok(Arc::new(Compiled { schemas, index }))
    }

    #[cfg(feature = "json-schema")]
    fn validate(
        &self,
        event_name: &str,
        schema_path: &Path,
        instance: &Value,
    ) -> Result<Result<(), (String, String)>, HandlerError> {
        let validator = {
            let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
            match cache.get(schema_path) {
                Some(v) => v.clone(),
                None => {
                    let compiled = Self::compile(schema_path).map_err(|why| {
                        // The client learns which event lacks a schema; the server's
                        // path goes to the log only.
                        log::error!(target: "configurapi", "validateJsonRequestHandler: {why}");
                        HandlerError::new(format!(
                            "The JSON schema for '{event_name}' could not be loaded."
                        ))
                    })?;
                    cache.insert(schema_path.to_path_buf(), compiled.clone());
                    compiled
                }
            }
        };
        let mut messages = Vec::new();
        if let Err(e) = validator.schemas.validate(instance, validator.index) {
            leaf_messages(&e, &mut messages);
        }
        match messages.first() {
            None => Ok(Ok(())),
            Some(first) => Ok(Err((first.clone(), messages.join("; ")))),
        }
    }

    #[cfg(not(feature = "json-schema"))]
    fn validate(
        &self,
        _event_name: &str,
        _schema_path: &Path,
        _instance: &Value,
    ) -> Result<Result<(), (String, String)>, HandlerError> {
        Err(HandlerError::new(
            "JSON Schema validation is not compiled in (cargo feature `json-schema`).",
        ))
    }
}

impl Handler for ValidateJsonRequest {
    fn bind(&self, at: &Binding<'_>) -> Result<Option<Arc<dyn Handler>>, String> {
        // A relative folder is relative to the config file (an absolute one stays).
        let bound = ValidateJsonRequest::new(at.base_dir.join(&self.dir));
        let empty_payload = at.params.first().is_some_and(js::is_truthy);
        if empty_payload || at.route.is_empty() || NAMES_VARY.contains(&at.route) {
            return Ok(Some(Arc::new(bound)));
        }
        let schema_path = bound.dir.join(format!("{}.json", at.route));
        #[cfg(feature = "json-schema")]
        {
            let compiled = Self::compile(&schema_path)?;
            bound
                .cache
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(schema_path, compiled);
        }
        #[cfg(not(feature = "json-schema"))]
        if !schema_path.is_file() {
            return Err(format!(
                "schema file '{}' could not be read: not a file",
                schema_path.display()
            ));
        }
        Ok(Some(Arc::new(bound)))
    }

    fn call(
        &self,
        event: &mut Event,
        params: &[Value],
        ctx: &mut Context,
    ) -> Result<(), HandlerError> {
        let empty_payload = params.first().is_some_and(js::is_truthy);
        if empty_payload {
            if event.payload().is_truthy() {
                event.response =
                    ErrorResponse::new("Request payload should be empty.", 400, "").into();
                ctx.complete();
            }
            return Ok(());
        }
        let instance = match event.payload() {
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
        if let Err((message, details)) = self.validate(&event.name, &schema_path, &instance)? {
            event.response = ErrorResponse::new(message, 400, details).into();
            ctx.complete();
        }
        Ok(())
    }
}
