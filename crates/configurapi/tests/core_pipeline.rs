//! Section 3 of the contract: handlers and policies, lifecycle, the
//! per-request order, error handling and logging.

mod common;

use common::*;
use configurapi::{
    Body, Claim, ConfigErrorKind, Context, ErrorResponse, Event, HandlerError, Identity, Request,
    Scope, Service,
};
use serde_json::{json, Value};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

const LIFECYCLE: &str = r#"
api:
  events:
    - name: on_before_request
      policies: [{traceHandler: [before]}]
    - name: on_success
      policies: [{traceHandler: [success]}]
    - name: on_error
      policies: [{traceHandler: [error]}]
    - name: on_after_request
      policies: [{traceHandler: [after]}]
"#;

fn with_lifecycle(routes: &str) -> Service {
    service(&format!("{LIFECYCLE}{routes}"))
}

fn message_of(event: &Event) -> String {
    event
        .response
        .error
        .as_ref()
        .map(|e| e.message.clone())
        .unwrap_or_default()
}

#[test]
fn s3_1_1_handlers_get_event_parameters_and_a_context_with_four_operations() {
    capture_logs();
    let mut reg = registry();
    reg.register(
        "fourOps",
        |event: &mut Event, params: &[Value], ctx: &mut Context| {
            assert_eq!(params, &[json!("p1"), json!(2)]);
            ctx.emit(
                log::Level::Trace,
                format!("{} emitted from {}", event.id, ctx.policy()),
            );
            ctx.continue_();
            ctx.complete();
            ctx.catch(HandlerError::new("caught it"));
            Ok(())
        },
    );
    let s = Service::from_str(
        "api:\n  events:\n    - name: x\n      policies: [{fourOps: [p1, 2]}, {traceHandler: [never]}]\n",
        "c",
        reg,
    )
    .unwrap();
    let e = run_named(&s, "x");
    assert_eq!(e.response.status_code, 500);
    assert_eq!(message_of(&e), "caught it");
    assert!(log_lines(&format!("{} emitted from fourOps", e.id)).len() == 1);
}

#[test]
fn s3_1_2_neither_continue_nor_complete_means_continue() {
    let s = service(
        "api:\n  events:\n    - name: x\n      policies: [{traceHandler: [a]}, {traceHandler: [b]}]\n",
    );
    assert_eq!(trace_of(&run_named(&s, "x")), "a,b");
}

#[test]
fn s3_1_3_complete_skips_the_rest_of_the_route_only_and_the_last_call_wins() {
    let s = with_lifecycle(
        r#"
    - name: x
      policies: [{traceHandler: [a]}, stopHandler, {traceHandler: [skipped]}]
    - name: y
      policies: [{traceHandler: [a]}, continueHandler, {traceHandler: [b]}]
"#,
    );
    assert_eq!(trace_of(&run_named(&s, "x")), "before,a,success,after");
    assert_eq!(trace_of(&run_named(&s, "y")), "before,a,b,success,after");

    let mut reg = registry();
    reg.register(
        "continueThenComplete",
        |_: &mut Event, _: &[Value], ctx: &mut Context| {
            ctx.continue_();
            ctx.complete();
            Ok(())
        },
    );
    reg.register(
        "completeThenContinue",
        |_: &mut Event, _: &[Value], ctx: &mut Context| {
            ctx.complete();
            ctx.continue_();
            Ok(())
        },
    );
    let s = Service::from_str(
        "api:\n  events:\n    - name: a\n      policies: [continueThenComplete, {traceHandler: [no]}]\n    - name: b\n      policies: [completeThenContinue, {traceHandler: [yes]}]\n",
        "c",
        reg,
    )
    .unwrap();
    assert_eq!(trace_of(&run_named(&s, "a")), "");
    assert_eq!(trace_of(&run_named(&s, "b")), "yes");
}

#[test]
fn s3_1_4_throw_or_catch_makes_the_route_throw_and_skips_the_rest() {
    let s = with_lifecycle(
        r#"
    - name: thrown
      policies: [{throwErrorHandler: [bad thing]}, {traceHandler: [skipped]}]
    - name: caught
      policies: [catchHandler, {traceHandler: [skipped]}]
"#,
    );
    let e = run_named(&s, "thrown");
    assert_eq!(e.response.status_code, 500);
    assert_eq!(message_of(&e), "bad thing");
    assert_eq!(trace_of(&e), "error,after");
    let e = run_named(&s, "caught");
    assert_eq!(message_of(&e), "caught");
}

#[test]
fn s3_1_5_the_response_is_what_the_handler_leaves() {
    let mut reg = registry();
    reg.register(
        "replace",
        |event: &mut Event, _: &[Value], _: &mut Context| {
            event.response = configurapi::Response::new("replaced", 202);
            Ok(())
        },
    );
    reg.register(
        "mutate",
        |event: &mut Event, _: &[Value], _: &mut Context| {
            event.response.status_code = 203;
            Ok(())
        },
    );
    let s = Service::from_str(
        "api:\n  events:\n    - name: a\n      policies: [replace]\n    - name: b\n      policies: [mutate]\n",
        "c",
        reg,
    )
    .unwrap();
    let a = run_named(&s, "a");
    assert_eq!(
        (a.response.status_code, a.response.body.clone()),
        (202, Body::from("replaced"))
    );
    assert_eq!(run_named(&s, "b").response.status_code, 203);
}

#[test]
fn s3_1_6_identity_is_set_by_handlers_and_claims_match_exactly() {
    let mut reg = registry();
    reg.register("auth", |event: &mut Event, _: &[Value], _: &mut Context| {
        event.identity = Some(Identity::new(
            "user-1",
            vec![
                Claim::new("role", "admin", Scope::None),
                Claim::new("role", "reader", Scope::One("docs".into())),
                Claim::new("role", "writer", Scope::Many(vec!["a".into(), "b".into()])),
            ],
        ));
        Ok(())
    });
    let s = Service::from_str(
        "api:\n  events:\n    - name: on_before_request\n      policies: [auth]\n    - name: x\n      policies: []\n",
        "c",
        reg,
    )
    .unwrap();
    assert!(
        Event::new(Request::named("x")).identity.is_none(),
        "the core never sets one"
    );
    let e = run_named(&s, "x");
    let id = e
        .identity
        .expect("set by the handler, readable after process");
    assert_eq!(id.id, "user-1");
    assert!(id.has_claim("role", &["admin"], &[None]));
    assert!(!id.has_claim("role", &["admin"], &[Some("docs")]));
    assert!(id.has_claim("role", &["nobody", "reader"], &[Some("x"), Some("docs")]));
    assert!(
        !id.has_claim("role", &["reader"], &[None]),
        "undefined scope matches only empty scopes"
    );
    assert!(id.get_claim("role", "reader", Some("docs")).is_some());
    assert!(
        id.get_claim("role", "writer", Some("a")).is_none(),
        "exact match only"
    );
    assert_eq!(
        id.get_claims("role", "writer", Some("a")).len(),
        1,
        "contained scope"
    );
    assert_eq!(id.get_claims("role", "reader", Some("docs")).len(), 1);
    assert_eq!(
        id.to_json()["claims"][0],
        json!({"type": "role", "value": "admin", "scope": null})
    );
}

fn counting_registry(counter: Arc<AtomicUsize>, fail: bool) -> configurapi::HandlerRegistry {
    let mut reg = registry();
    reg.register(
        "count",
        move |event: &mut Event, _: &[Value], _: &mut Context| {
            counter.fetch_add(1, Ordering::SeqCst);
            assert_eq!(event.name, "on_start", "a synthetic event named on_start");
            if fail {
                return Err(HandlerError::new("cannot start"));
            }
            Ok(())
        },
    );
    reg
}

#[test]
fn s3_2_1_on_start_runs_once_at_startup() {
    let counter = Arc::new(AtomicUsize::new(0));
    let yaml = "api:\n  events:\n    - name: on_start\n      policies: [count]\n    - name: x\n      policies: []\n";
    let s = Service::from_str(yaml, "c", counting_registry(counter.clone(), false)).unwrap();
    assert_eq!(counter.load(Ordering::SeqCst), 1);
    run_named(&s, "x");
    run_named(&s, "x");
    assert_eq!(counter.load(Ordering::SeqCst), 1);
}

#[test]
fn s3_2_2_on_start_gets_a_synthetic_event_and_a_failure_is_a_startup_error() {
    let counter = Arc::new(AtomicUsize::new(0));
    let yaml = "api:\n  events:\n    - name: on_start\n      policies: [count]\n";
    let err = Service::from_str(yaml, "config.yaml", counting_registry(counter, true)).unwrap_err();
    assert_eq!(err.kind, ConfigErrorKind::OnStart);
    assert_eq!(
        err.to_string(),
        "config.yaml: on_start failed: cannot start"
    );
}

#[test]
fn s3_2_3_on_first_request_failure_rethrows_and_is_retried() {
    let calls = Arc::new(AtomicUsize::new(0));
    let c = calls.clone();
    let mut reg = registry();
    reg.register(
        "flaky",
        move |_: &mut Event, _: &[Value], _: &mut Context| {
            if c.fetch_add(1, Ordering::SeqCst) == 0 {
                Err(HandlerError::new("not ready").with_status(418))
            } else {
                Ok(())
            }
        },
    );
    let yaml = format!(
        "{LIFECYCLE}    - name: on_first_request\n      policies: [flaky]\n    - name: x\n      policies: [{{traceHandler: [route]}}]\n"
    );
    let s = Service::from_str_with_options(&yaml, "c", reg, &options("test")).unwrap();

    let mut e = Event::new(Request::named("x"));
    let err = s.process(&mut e).unwrap_err();
    assert_eq!(err.message(), "not ready");
    assert_eq!(e.response.status_code, 418, "the response is set as in 3.4");
    assert_eq!(
        trace_of(&e),
        "error",
        "on_error ran; before, route and after did not"
    );

    let e = run_named(&s, "x");
    assert_eq!(trace_of(&e), "before,route,success,after");
    run_named(&s, "x");
    assert_eq!(
        calls.load(Ordering::SeqCst),
        2,
        "not run again once it succeeded"
    );
}

#[test]
fn s3_3_1_order_and_name_then_method_then_catchall_then_501() {
    let s = with_lifecycle(
        r#"
    - name: get_v1_thing
      policies: [{traceHandler: [named]}]
    - name: post
      policies: [{traceHandler: [method]}]
    - name: empty
      policies: []
"#,
    );
    let mut e = http_event("GET", "/v1/thing/1", &[]);
    s.process(&mut e).unwrap();
    assert_eq!(trace_of(&e), "before,named,success,after");
    let mut e = http_event("POST", "/v1/other", &[]);
    s.process(&mut e).unwrap();
    assert_eq!(trace_of(&e), "before,method,success,after");
    let e = run_named(&s, "empty");
    assert_eq!(
        trace_of(&e),
        "before,success,after",
        "a route with no policies counts as handled"
    );

    let e = run_named(&s, "nothing_here");
    assert_eq!(e.response.status_code, 501);
    assert_eq!(
        e.response.error,
        Some(ErrorResponse::new(
            "Not Implemented.",
            501,
            "Route for 'nothing_here' event could not be found.'"
        ))
    );
    assert_eq!(
        e.response.body,
        Body::Json(
            json!({"statusCode": 501, "message": "Not Implemented.", "details": "Route for 'nothing_here' event could not be found.'"})
        )
    );
    assert_eq!(
        trace_of(&e),
        "error,after",
        "the 501 replaced the traced response"
    );

    let s = with_lifecycle("    - name: catchall\n      policies: [{traceHandler: [catchall]}]\n");
    assert_eq!(
        trace_of(&run_named(&s, "nothing_here")),
        "before,catchall,success,after"
    );
    // Missing special routes are skipped silently.
    let s = service("api:\n  events:\n    - name: x\n      policies: [{traceHandler: [only]}]\n");
    assert_eq!(trace_of(&run_named(&s, "x")), "only");
}

#[test]
fn s3_3_2_an_exception_skips_to_error_handling_and_after_still_runs() {
    let s = service(
        r#"
api:
  events:
    - name: on_before_request
      policies: [{traceHandler: [before]}, throwErrorHandler]
    - name: on_success
      policies: [{traceHandler: [success]}]
    - name: on_error
      policies: [{traceHandler: [error]}]
    - name: on_after_request
      policies: [{traceHandler: [after]}]
    - name: x
      policies: [{traceHandler: [route]}]
"#,
    );
    let e = run_named(&s, "x");
    assert_eq!(e.response.status_code, 500);
    assert_eq!(
        trace_of(&e),
        "error,after",
        "the error response replaced the traced one"
    );
}

#[test]
fn s3_3_3_assigning_an_error_response_does_not_stop_the_route() {
    let s = with_lifecycle(
        "    - name: x\n      policies: [{traceHandler: [a]}, {errorResponseHandler: [409]}, {traceHandler: [b]}]\n",
    );
    let e = run_named(&s, "x");
    assert_eq!(e.response.status_code, 409);
    assert_eq!(
        trace_of(&e),
        "b,error,after",
        "later policies ran; on_error instead of on_success"
    );
    assert_eq!(message_of(&e), "bad");
}

#[test]
fn s3_3_4_an_error_in_on_after_request_is_handled_and_not_rethrown() {
    let s = service(
        r#"
api:
  events:
    - name: on_error
      policies: [{traceHandler: [error]}]
    - name: on_after_request
      policies: [{throwErrorHandler: [late]}]
    - name: x
      policies: [{traceHandler: [route]}]
"#,
    );
    let mut e = Event::new(Request::named("x"));
    assert!(s.process(&mut e).is_ok());
    assert_eq!(e.response.status_code, 500);
    assert_eq!(message_of(&e), "late");
    assert_eq!(trace_of(&e), "error");
}

#[test]
fn s3_3_5_process_succeeds_in_every_other_case() {
    let s = with_lifecycle(
        "    - name: a\n      policies: [throwErrorHandler]\n    - name: b\n      policies: [panicHandler]\n    - name: c\n      policies: [{errorResponseHandler: [400]}]\n",
    );
    for name in ["a", "b", "c", "missing"] {
        let mut e = Event::new(Request::named(name));
        assert!(s.process(&mut e).is_ok(), "{name}");
        assert!(e.response.is_error_response(), "{name}");
    }
}

#[test]
fn s3_4_1_thrown_values_set_the_response() {
    let mut reg = registry();
    reg.register(
        "throwResponse",
        |_: &mut Event, _: &[Value], _: &mut Context| {
            Err(ErrorResponse::new("as is", 422, "dd").into())
        },
    );
    let s = Service::from_str(
        "api:\n  events:\n    - name: e418\n      policies: [{throwErrorHandler: [teapot, 418]}]\n    - name: resp\n      policies: [throwResponse]\n    - name: str\n      policies: [throwStringHandler]\n",
        "c",
        reg,
    )
    .unwrap();
    let e = run_named(&s, "e418");
    assert_eq!(
        (e.response.status_code, message_of(&e)),
        (418, "teapot".to_string())
    );
    assert_eq!(
        e.response.headers.get("Content-Type"),
        Some(&json!("application/json"))
    );
    let e = run_named(&s, "resp");
    assert_eq!(
        e.response.error,
        Some(ErrorResponse::new("as is", 422, "dd"))
    );
    let e = run_named(&s, "str");
    assert_eq!(
        e.response.error,
        Some(ErrorResponse::new("Internal Server Error", 500, "a string"))
    );
}

#[test]
fn s3_4_2_on_error_runs_may_replace_and_its_own_failure_is_swallowed() {
    let s = service(
        r#"
import: [configurapi-handler-http]
api:
  events:
    - name: on_error
      policies:
        - setResponseHandler: [503, "sorry"]
        - throwErrorHandler: [on_error broke]
        - setResponseHandler: [504, "never"]
    - name: x
      policies: [throwErrorHandler]
"#,
    );
    let mut e = Event::new(Request::named("x"));
    assert!(s.process(&mut e).is_ok());
    assert_eq!(e.response.status_code, 503);
    assert_eq!(e.response.body, Body::from("sorry"));
}

#[test]
fn s3_4_3_generated_errors_carry_display_text_in_details() {
    let s = service("api:\n  events:\n    - name: x\n      policies: [panicHandler]\n");
    let e = run_named(&s, "x");
    let details = e.response.error.unwrap().details;
    assert!(!details.is_empty());
}

#[test]
fn s3_5_1_log_messages_and_levels() {
    capture_logs();
    let s = service(
        r#"
api:
  events:
    - name: x
      policies: [{traceHandler: [a]}, {traceHandler: [b], logLevel: error}]
    - name: quiet
      logLevel: none
      policies: [throwErrorHandler]
    - name: loud
      policies: [{throwErrorHandler: [kaput], logLevel: none}]
"#,
    );
    let e = run_named(&s, "x");
    let lines = log_lines(&e.id.to_string());
    let prefix = format!("{} - {} - ", e.id, e.correlation_id);
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert_eq!(lines[0].0, log::Level::Trace);
    assert!(
        lines[0]
            .1
            .starts_with(&format!("{prefix}Executed traceHandler policy [")),
        "{lines:?}"
    );
    assert!(lines[0].1.ends_with("ms]"));
    assert!(
        lines[1].1.starts_with(&format!("{prefix}Handled x [")),
        "{lines:?}"
    );

    let e = run_named(&s, "quiet");
    assert!(
        log_lines(&e.id.to_string())
            .iter()
            .all(|(_, l)| l.contains("Executed")),
        "route logs silenced"
    );

    let e = run_named(&s, "loud");
    let lines = log_lines(&e.id.to_string());
    assert!(
        lines.contains(&(
            log::Level::Error,
            format!(
                "{} - {} - Failed to handle loud: kaput",
                e.id, e.correlation_id
            )
        )),
        "{lines:?}"
    );
    assert!(
        !lines.iter().any(|(_, l)| l.contains("Executed")),
        "policy log silenced"
    );
}

#[test]
fn a_panicking_handler_yields_500_and_the_next_event_is_served() {
    let s = service(
        "api:\n  events:\n    - name: boom\n      policies: [panicHandler]\n    - name: ok\n      policies: [{traceHandler: [fine]}]\n",
    );
    let e = run_named(&s, "boom");
    assert_eq!(e.response.status_code, 500);
    assert!(e.response.is_error_response());
    assert!(
        message_of(&e).contains("handler exploded"),
        "{}",
        message_of(&e)
    );
    let e = run_named(&s, "ok");
    assert_eq!(
        (e.response.status_code, trace_of(&e)),
        (200, "fine".to_string())
    );
}

#[test]
fn service_is_send_sync_and_serves_threads_concurrently() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Service>();
    let calls = Arc::new(AtomicUsize::new(0));
    let c = calls.clone();
    let mut reg = registry();
    reg.register(
        "first",
        move |_: &mut Event, _: &[Value], _: &mut Context| {
            c.fetch_add(1, Ordering::SeqCst);
            std::thread::sleep(std::time::Duration::from_millis(20));
            Ok(())
        },
    );
    let s = Arc::new(
        Service::from_str(
            "api:\n  events:\n    - name: on_first_request\n      policies: [first]\n    - name: x\n      policies: [{traceHandler: [t]}]\n",
            "c",
            reg,
        )
        .unwrap(),
    );
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let s = s.clone();
            std::thread::spawn(move || (0..50).all(|_| trace_of(&run_named(&s, "x")) == "t"))
        })
        .collect();
    for t in threads {
        assert!(t.join().unwrap());
    }
    assert_eq!(calls.load(Ordering::SeqCst), 1, "on_first_request ran once");
}
