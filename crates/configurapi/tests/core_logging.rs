//! `configurapi-handler-logging`: one line per request and per response, through the
//! `log` facade with the pack's target.

use std::sync::{Mutex, OnceLock};

use configurapi::handlers::logging::TARGET;
use configurapi::{ConfigErrorKind, Event, HandlerRegistry, Request, Service};

/// (target, level, line) of every record.
type Lines = Mutex<Vec<(String, log::Level, String)>>;

fn lines() -> &'static Lines {
    static LINES: OnceLock<Lines> = OnceLock::new();
    LINES.get_or_init(|| Mutex::new(Vec::new()))
}

struct Capture;

impl log::Log for Capture {
    fn enabled(&self, _: &log::Metadata) -> bool {
        true
    }
    fn log(&self, record: &log::Record) {
        lines().lock().unwrap_or_else(|p| p.into_inner()).push((
            record.target().to_string(),
            record.level(),
            record.args().to_string(),
        ));
    }
    fn flush(&self) {}
}

fn capture() {
    static INIT: OnceLock<()> = OnceLock::new();
    INIT.get_or_init(|| {
        static CAPTURE: Capture = Capture;
        let _ = log::set_logger(&CAPTURE);
        log::set_max_level(log::LevelFilter::Trace);
    });
}

/// The pack's lines that mention `id` (tests in this binary run in parallel).
fn pack_lines(id: &str) -> Vec<(log::Level, String)> {
    lines()
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .iter()
        .filter(|(target, _, line)| target == TARGET && line.contains(id))
        .map(|(_, level, line)| (*level, line.clone()))
        .collect()
}

const APP: &str = r#"
import:
  - configurapi-handler-http
  - configurapi-handler-logging
api:
  events:
    - name: on_before_request
      policies:
        - logRequestHandler
    - name: on_after_request
      policies:
        # Parameters are ignored, so configs written for the npm package load as they are.
        - logResponseHandler: [verbose, {format: json}]
    - name: teapot
      policies:
        - setResponseHandler: [418, short and stout]
"#;

#[test]
fn request_and_response_lines_carry_id_name_method_status_and_latency() {
    capture();
    let service = Service::from_str(APP, "config.yaml", HandlerRegistry::with_builtins()).unwrap();
    let mut request = Request::named("teapot");
    request.method = "post".into();
    let mut event = Event::new(request);
    service.process(&mut event).unwrap();
    assert_eq!(event.response.status_code, 418);

    let got = pack_lines(&event.id.to_string());
    assert_eq!(got.len(), 2, "{got:?}");
    let (level, line) = &got[0];
    assert_eq!(*level, log::Level::Info);
    assert_eq!(
        line,
        &format!(
            "{} - {} - Request teapot post",
            event.id, event.correlation_id
        )
    );
    let (level, line) = &got[1];
    assert_eq!(*level, log::Level::Info);
    let prefix = format!(
        "{} - {} - Response teapot post 418 [",
        event.id, event.correlation_id
    );
    assert!(line.starts_with(&prefix), "{line}");
    // The latency is milliseconds with three decimals: `[0.042ms]`.
    let latency = line[prefix.len()..].strip_suffix("ms]").unwrap();
    let (whole, frac) = latency.split_once('.').unwrap();
    assert!(whole.parse::<u64>().is_ok(), "{line}");
    assert_eq!(frac.len(), 3, "{line}");
    assert!(frac.parse::<u32>().is_ok(), "{line}");
}

#[test]
fn the_response_line_shows_the_final_status_of_a_failed_event() {
    capture();
    let service = Service::from_str(APP, "config.yaml", HandlerRegistry::with_builtins()).unwrap();
    let mut event = Event::new(Request::named("no_such_route"));
    service.process(&mut event).unwrap();
    assert_eq!(event.response.status_code, 501);
    let got = pack_lines(&event.id.to_string());
    assert_eq!(got.len(), 2, "{got:?}");
    assert!(
        got[1].1.contains(" - Response no_such_route get 501 ["),
        "{got:?}"
    );
}

#[test]
fn a_policy_log_level_of_none_silences_the_line() {
    capture();
    let yaml = "import: [configurapi-handler-logging]\napi:\n  events:\n    - name: quiet\n      policies:\n        - logRequestHandler:\n          logLevel: none\n        - logResponseHandler\n";
    let service = Service::from_str(yaml, "config.yaml", HandlerRegistry::with_builtins()).unwrap();
    let mut event = Event::new(Request::named("quiet"));
    service.process(&mut event).unwrap();
    let got = pack_lines(&event.id.to_string());
    assert_eq!(got.len(), 1, "{got:?}");
    assert!(got[0].1.contains(" - Response quiet get 200 ["), "{got:?}");
}

#[test]
fn the_pack_is_imported_by_its_npm_name_and_runs_inline() {
    let yaml = "import: [configurapi-handler-logging]\napi:\n  events:\n    - name: x\n      policies: [logRequestHandler, logResponseHandler]\n";
    let service = Service::from_str(yaml, "config.yaml", HandlerRegistry::with_builtins()).unwrap();
    assert!(service.is_nonblocking("x", "get"));
    // Without the import the handlers are not there.
    let err = Service::from_str(
        "api:\n  events:\n    - name: x\n      policies: [logRequestHandler]\n",
        "config.yaml",
        HandlerRegistry::with_builtins(),
    )
    .unwrap_err();
    assert_eq!(err.kind, ConfigErrorKind::UnknownHandler);
}
