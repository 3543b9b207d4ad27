//! Helpers shared by the core test files.
#![allow(dead_code)]

use configurapi::{
    Body, ConfigError, Context, Event, HandlerError, HandlerRegistry, Request, Service,
    ServiceOptions,
};
use serde_json::{Map, Value};
use std::sync::{Mutex, OnceLock};

/// Appends `label` to the `x-trace` response header, to see what ran in which order.
pub fn trace_handler(
    event: &mut Event,
    params: &[Value],
    _: &mut Context,
) -> Result<(), HandlerError> {
    let label = params
        .first()
        .and_then(Value::as_str)
        .unwrap_or("?")
        .to_string();
    let headers = &mut event.response.headers;
    let trace = match headers.get("x-trace").and_then(Value::as_str) {
        Some(prev) => format!("{prev},{label}"),
        None => label,
    };
    headers.insert("x-trace".into(), Value::String(trace));
    Ok(())
}

/// The registry every test uses: the built-ins plus small test handlers.
pub fn registry() -> HandlerRegistry {
    let mut reg = HandlerRegistry::with_builtins();
    reg.register("traceHandler", trace_handler);
    reg.register(
        "stopHandler",
        |_: &mut Event, _: &[Value], ctx: &mut Context| {
            ctx.complete();
            Ok(())
        },
    );
    reg.register(
        "continueHandler",
        |_: &mut Event, _: &[Value], ctx: &mut Context| {
            ctx.continue_();
            Ok(())
        },
    );
    reg.register(
        "throwErrorHandler",
        |_: &mut Event, params: &[Value], _: &mut Context| {
            let message = params.first().and_then(Value::as_str).unwrap_or("boom");
            let mut err = HandlerError::new(message);
            if let Some(code) = params.get(1).and_then(Value::as_u64) {
                err = err.with_status(code as u16);
            }
            Err(err)
        },
    );
    reg.register(
        "throwStringHandler",
        |_: &mut Event, _: &[Value], _: &mut Context| Err(HandlerError::thrown("a string")),
    );
    reg.register(
        "catchHandler",
        |_: &mut Event, _: &[Value], ctx: &mut Context| {
            ctx.catch(HandlerError::new("caught"));
            Ok(())
        },
    );
    reg.register(
        "panicHandler",
        |_: &mut Event, _: &[Value], _: &mut Context| -> Result<(), HandlerError> {
            panic!("handler exploded")
        },
    );
    reg.register(
        "paramsHandler",
        |event: &mut Event, params: &[Value], _: &mut Context| {
            event.response.body = Body::Json(Value::Array(params.to_vec()));
            Ok(())
        },
    );
    reg.register(
        "errorResponseHandler",
        |event: &mut Event, params: &[Value], _: &mut Context| {
            let code = params.first().and_then(Value::as_u64).unwrap_or(400) as u16;
            event.response = configurapi::ErrorResponse::new("bad", code, "d").into();
            Ok(())
        },
    );
    reg
}

/// Options with `NODE_ENV` pinned, so tests never read the real environment.
pub fn options(node_env: &str) -> ServiceOptions {
    ServiceOptions {
        node_env: Some(node_env.to_string()),
    }
}

/// Builds a service from YAML with the test registry and `NODE_ENV=test`.
pub fn try_service(yaml: &str) -> Result<Service, ConfigError> {
    Service::from_str_with_options(yaml, "config.yaml", registry(), &options("test"))
}

/// As [`try_service`], panicking on error (tests only).
pub fn service(yaml: &str) -> Service {
    match try_service(yaml) {
        Ok(s) => s,
        Err(e) => panic!("config should load: {e}"),
    }
}

/// The spec message of a config that must fail.
pub fn config_error(yaml: &str) -> ConfigError {
    match try_service(yaml) {
        Ok(_) => panic!("config should fail"),
        Err(e) => e,
    }
}

/// An event for `METHOD path?query`.
pub fn http_event(method: &str, path: &str, query: &[(&str, &str)]) -> Event {
    let mut request = Request::new(method, path);
    request.query = query_map(query);
    Event::new(request)
}

/// A query map from pairs.
pub fn query_map(query: &[(&str, &str)]) -> Map<String, Value> {
    query
        .iter()
        .map(|(k, v)| (k.to_string(), Value::String(v.to_string())))
        .collect()
}

/// Processes an event named `name` (the WS runner's form) and returns it.
pub fn run_named(service: &Service, name: &str) -> Event {
    let mut event = Event::new(Request::named(name));
    service.process(&mut event).expect("process");
    event
}

/// The `x-trace` header of a response, or "".
pub fn trace_of(event: &Event) -> String {
    event
        .response
        .headers
        .get("x-trace")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string()
}

/// Log lines captured through the `log` facade.
pub fn logs() -> &'static Mutex<Vec<(log::Level, String)>> {
    static LOGS: OnceLock<Mutex<Vec<(log::Level, String)>>> = OnceLock::new();
    LOGS.get_or_init(|| Mutex::new(Vec::new()))
}

struct Capture;

impl log::Log for Capture {
    fn enabled(&self, _: &log::Metadata) -> bool {
        true
    }
    fn log(&self, record: &log::Record) {
        logs()
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((record.level(), record.args().to_string()));
    }
    fn flush(&self) {}
}

/// Installs the capturing logger (once per test binary).
pub fn capture_logs() {
    static INIT: OnceLock<()> = OnceLock::new();
    INIT.get_or_init(|| {
        static CAPTURE: Capture = Capture;
        let _ = log::set_logger(&CAPTURE);
        log::set_max_level(log::LevelFilter::Trace);
    });
}

/// Captured lines that mention `needle` (an event id keeps tests apart).
pub fn log_lines(needle: &str) -> Vec<(log::Level, String)> {
    logs()
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .iter()
        .filter(|(_, line)| line.contains(needle))
        .cloned()
        .collect()
}
