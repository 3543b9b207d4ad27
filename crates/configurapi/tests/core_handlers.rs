//! Section 5 of the contract: the handler registry and the built-in handlers.

mod common;

use common::*;
use configurapi::handlers;
use configurapi::{
    Body, ConfigErrorKind, Context, Event, HandlerError, HandlerPack, HandlerRegistry, Payload,
    Request, Service,
};
use serde_json::{json, Map, Value};

fn headers(v: Value) -> Map<String, Value> {
    v.as_object().unwrap().clone()
}

fn http(yaml_routes: &str) -> Service {
    service(&format!(
        "import: [configurapi-handler-http, configurapi-handler-json]\napi:\n  events:\n{yaml_routes}"
    ))
}

fn with_request(s: &Service, name: &str, f: impl FnOnce(&mut Request)) -> Event {
    let mut r = Request::named(name);
    f(&mut r);
    let mut e = Event::new(r);
    s.process(&mut e).unwrap();
    e
}

#[test]
fn s5_0_registry_packs_imports_and_later_registrations_override() {
    // Without the import the pack's handlers are unknown (1.3.12).
    let err =
        config_error("api:\n  events:\n    - name: x\n      policies: [setResponseHandler]\n");
    assert_eq!(err.kind, ConfigErrorKind::UnknownHandler);
    assert_eq!(
        err.message,
        "Handler 'setResponseHandler' could not be found (route 'x', in configurapi-handler-http). Add to import: configurapi-handler-http."
    );

    // A user registration overrides the pack's handler of the same name,
    // and a later registration overrides an earlier one.
    let mut reg = HandlerRegistry::with_builtins();
    reg.register(
        "setResponseHandler",
        |e: &mut Event, _: &[Value], _: &mut Context| {
            e.response.body = Body::from("first override");
            Ok(())
        },
    );
    reg.register(
        "setResponseHandler",
        |e: &mut Event, _: &[Value], _: &mut Context| {
            e.response.body = Body::from("second override");
            Ok(())
        },
    );
    let s = Service::from_str(
        "import: [configurapi-handler-http]\napi:\n  events:\n    - name: x\n      policies: [setResponseHandler]\n",
        "c",
        reg,
    )
    .unwrap();
    assert_eq!(
        run_named(&s, "x").response.body,
        Body::from("second override")
    );

    // An always-on pack needs no import, and importing it changes nothing.
    fn extra_pack() -> HandlerPack {
        HandlerPack::new("configurapi-handler-test-extra").with(
            "extraHandler",
            |e: &mut Event, _: &[Value], _: &mut Context| -> Result<(), HandlerError> {
                e.response.status_code = 299;
                Ok(())
            },
        )
    }
    let mut reg = HandlerRegistry::with_builtins();
    reg.add_always_on_pack(extra_pack());
    assert!(reg
        .known_packs()
        .contains(&"configurapi-handler-test-extra".to_string()));
    for import in ["", "import: [configurapi-handler-test-extra]\n"] {
        let s = Service::from_str(
            &format!("{import}api:\n  events:\n    - name: x\n      policies: [extraHandler]\n"),
            "c",
            reg.clone(),
        )
        .unwrap();
        assert_eq!(run_named(&s, "x").response.status_code, 299);
    }
}

#[test]
fn s5_set_response_handler() {
    let s = http(
        r#"
    - name: defaults
      policies: [setResponseHandler]
    - name: full
      policies:
        - setResponseHeaderHandler: [X-Kept, yes]
        - setResponseHandler: [201, {user: $(user), n: 1}, {X-New: $(user)}]
"#,
    );
    let e = run_named(&s, "defaults");
    assert_eq!(
        (e.response.status_code, e.response.body.clone()),
        (200, Body::from(""))
    );
    let e = with_request(&s, "full", |_| {});
    assert_eq!(e.response.status_code, 201);
    assert_eq!(
        e.response.body,
        Body::Json(json!({"user": "$(user)", "n": 1}))
    );
    let mut ev = Event::new(Request::named("full"));
    ev.params.insert("user".into(), json!("ann"));
    s.process(&mut ev).unwrap();
    assert_eq!(ev.response.body, Body::Json(json!({"user": "ann", "n": 1})));
    assert_eq!(
        ev.response.headers,
        headers(json!({"X-Kept": "yes", "X-New": "$(user)"})),
        "headers merged into the existing ones, not resolved"
    );
}

#[test]
fn s5_set_response_body_handler() {
    let s = http("    - name: x\n      policies: [{setResponseBodyHandler: [\"id=$(id)\"]}]\n");
    let mut e = Event::new(Request::named("x"));
    e.params.insert("id".into(), json!(7));
    s.process(&mut e).unwrap();
    assert_eq!(e.response.body, Body::from("id=7"));
    assert_eq!(e.response.status_code, 200);
}

#[test]
fn s5_set_response_header_handler() {
    let s = http("    - name: x\n      policies: [{setResponseHeaderHandler: [X-Id, $(id)]}, {setResponseHeaderHandler: [X-Num, 5]}]\n");
    let mut e = Event::new(Request::named("x"));
    e.params.insert("id".into(), json!("1"));
    s.process(&mut e).unwrap();
    assert_eq!(
        e.response.headers,
        headers(json!({"X-Id": "$(id)", "X-Num": 5})),
        "not resolved"
    );
}

#[test]
fn s5_set_response_status_code_handler() {
    let s = http(
        "    - name: num\n      policies: [{setResponseStatusCodeHandler: [202]}]\n    - name: str\n      policies: [{setResponseStatusCodeHandler: [\"204\"]}]\n    - name: bad\n      policies: [{setResponseStatusCodeHandler: [teapot]}]\n",
    );
    assert_eq!(run_named(&s, "num").response.status_code, 202);
    assert_eq!(
        run_named(&s, "str").response.status_code,
        204,
        "numeric strings become numbers"
    );
    let e = run_named(&s, "bad");
    assert_eq!(e.response.status_code, 500);
    assert!(e.response.is_error_response());
}

#[test]
fn s5_validate_empty_request_payload_handler() {
    let s = http("    - name: x\n      policies: [validateEmptyRequestPayloadHandler, {setResponseBodyHandler: [ok]}]\n");
    let e = with_request(&s, "x", |r| r.payload = Payload::Json(json!({"a": 1})));
    assert_eq!(e.response.status_code, 400);
    assert_eq!(
        e.response.body,
        Body::Json(
            json!({"statusCode": 400, "message": "Request payload should be empty.", "details": ""})
        )
    );
    for empty in [
        Payload::Absent,
        Payload::Json(json!("")),
        Payload::Json(json!(0)),
        Payload::Text(String::new()),
    ] {
        let e = with_request(&s, "x", |r| r.payload = empty);
        assert_eq!(
            (e.response.status_code, e.response.body.clone()),
            (200, Body::from("ok"))
        );
    }
}

#[test]
fn s5_set_json_response_handler() {
    let s = http(
        "    - name: a\n      policies: [{setJsonResponseHandler: [200, {k: v}]}]\n    - name: b\n      policies: [{setJsonResponseHandler: [200, {k: v}, {Content-Type: text/x-json}]}]\n    - name: c\n      policies: [{setJsonResponseHandler: [200, {k: v}, {content-type: text/x-json}]}]\n",
    );
    assert_eq!(
        run_named(&s, "a").response.headers,
        headers(json!({"Content-Type": "application/json"}))
    );
    assert_eq!(
        run_named(&s, "b").response.headers,
        headers(json!({"Content-Type": "text/x-json"}))
    );
    assert_eq!(
        run_named(&s, "c").response.headers,
        headers(json!({"content-type": "text/x-json", "Content-Type": "application/json"})),
        "only the exact key counts"
    );
}

fn validating_service(yaml_routes: &str) -> Service {
    let mut reg = registry();
    reg.register(
        "validateJsonRequestHandler",
        handlers::json::ValidateJsonRequest::new("tests/fixtures/schemas"),
    );
    Service::from_str(
        &format!("import: [configurapi-handler-json]\napi:\n  events:\n{yaml_routes}"),
        "c",
        reg,
    )
    .unwrap()
}

#[cfg(feature = "json-schema")]
#[test]
fn s5_validate_json_request_handler() {
    let s = validating_service(
        "    - name: post_v1_datum\n      policies: [validateJsonRequestHandler, {traceHandler: [valid]}]\n    - name: catchall\n      policies: [validateJsonRequestHandler]\n    - name: empty_only\n      policies: [{validateJsonRequestHandler: [true]}, {traceHandler: [empty]}]\n",
    );
    let post = |name: &str, payload: Payload| {
        let mut e = Event::new(Request::named(name));
        e.set_payload(payload);
        s.process(&mut e).unwrap();
        e
    };
    let e = post(
        "post_v1_datum",
        Payload::Json(json!({"name": "n", "size": 1})),
    );
    assert_eq!(
        (e.response.status_code, trace_of(&e)),
        (200, "valid".to_string())
    );
    let e = post("post_v1_datum", Payload::Json(json!({"size": -1})));
    assert_eq!(e.response.status_code, 400);
    assert_eq!(trace_of(&e), "", "validation failure completes the route");
    // The first failure is the message, each as `<instance pointer>: <what failed>`
    // (the bare failure at the root), all of them in the details (docs/config.md).
    let error = e.response.error.unwrap();
    assert_eq!(
        (error.message.as_str(), error.details.as_str()),
        (
            "missing properties 'name'",
            "missing properties 'name'; /size: must be >=0, but got -1"
        )
    );
    // A route whose event names vary (catchall) loads schemas per event: a missing one
    // is a 500 that names the event and not the server's path. (A named route's
    // missing schema is a start-up error: tests/core_startup.rs.)
    let e = post("post_v1_nothing", Payload::Json(json!({})));
    assert_eq!(
        e.response.status_code, 500,
        "a missing schema file is a 500"
    );
    let error = e.response.error.unwrap();
    assert_eq!(
        error.message,
        "The JSON schema for 'post_v1_nothing' could not be loaded."
    );
    assert!(!error.details.contains("fixtures"), "{}", error.details);
    let e = post("empty_only", Payload::Json(json!({"a": 1})));
    assert_eq!(e.response.status_code, 400);
    assert_eq!(
        e.response.error.unwrap().message,
        "Request payload should be empty."
    );
    let e = post("empty_only", Payload::Absent);
    assert_eq!(trace_of(&e), "empty");
}

#[cfg(not(feature = "json-schema"))]
#[test]
fn s5_validate_json_request_handler_without_the_feature_is_a_500() {
    let s = validating_service(
        "    - name: post_v1_datum\n      policies: [validateJsonRequestHandler]\n",
    );
    let mut e = Event::new(Request::named("post_v1_datum"));
    e.set_payload(Payload::Json(json!({"name": "n"})));
    s.process(&mut e).unwrap();
    assert_eq!(e.response.status_code, 500);
}

fn cors(params: &str, request_headers: Value) -> Map<String, Value> {
    let s = http(&format!(
        "    - name: x\n      policies: [{{allowCrossOriginResourceSharingHandler: {params}}}]\n"
    ));
    let e = with_request(&s, "x", |r| {
        r.headers = request_headers.as_object().unwrap().clone().into()
    });
    e.response.headers
}

#[test]
fn s5_1_cors_headers_in_order_only_when_truthy() {
    // Everything given: set in the order of 5.1.
    let h = cors(
        r#"['localhost(:\d+)?', 'GET,POST', 'Content-Type', "true", 600, 'X-Total']"#,
        json!({"origin": "http://localhost:3000"}),
    );
    let keys: Vec<&str> = h.keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        [
            "Access-Control-Allow-Methods",
            "Access-Control-Allow-Headers",
            "Access-Control-Allow-Origin",
            "Access-Control-Allow-Credentials",
            "Access-Control-Max-Age",
            "Access-Control-Expose-Headers"
        ]
    );
    assert_eq!(
        h["Access-Control-Allow-Origin"],
        json!("http://localhost:3000")
    );
    assert_eq!(h["Access-Control-Allow-Credentials"], json!("true"));
    assert_eq!(h["Access-Control-Max-Age"], json!(600));

    // Methods and headers fall back to the preflight request headers.
    let h = cors(
        "[true]",
        json!({"origin": "https://a.example", "access-control-request-method": "PUT", "access-control-request-headers": "X-A"}),
    );
    assert_eq!(
        h,
        headers(
            json!({"Access-Control-Allow-Methods": "PUT", "Access-Control-Allow-Headers": "X-A", "Access-Control-Allow-Origin": "https://a.example"})
        )
    );

    // A sequence is joined; an unanchored regex that does not match sets nothing.
    let h = cors("[[https://a, https://b]]", json!({"origin": "https://x"}));
    assert_eq!(
        h,
        headers(json!({"Access-Control-Allow-Origin": "https://a,https://b"}))
    );
    let h = cors(
        r#"['localhost(:\d+)?']"#,
        json!({"origin": "https://example.com"}),
    );
    assert!(h.is_empty());
    let h = cors(
        r#"['example']"#,
        json!({"origin": "https://www.example.com:8443"}),
    );
    assert_eq!(
        h["Access-Control-Allow-Origin"],
        json!("https://www.example.com:8443"),
        "unanchored"
    );
    // Falsy values set nothing.
    let h = cors(r#"[false, "", "", false, 0, ""]"#, json!({}));
    assert!(h.is_empty());
}

#[test]
fn s5_2_logging_handlers_need_their_import_and_test_fixtures_are_not_shipped() {
    for (name, hint) in [
        (
            "logRequestHandler",
            ", in configurapi-handler-logging). Add to import: configurapi-handler-logging.",
        ),
        (
            "logResponseHandler",
            ", in configurapi-handler-logging). Add to import: configurapi-handler-logging.",
        ),
        ("stopHandler2", ")."),
        ("emittableHandler", ")."),
    ] {
        let err = config_error(&format!(
            "import: [configurapi-handler-http, configurapi-handler-json]\napi:\n  events:\n    - name: x\n      policies: [{name}]\n"
        ));
        assert_eq!(
            err.message,
            format!("Handler '{name}' could not be found (route 'x'{hint}")
        );
    }
}

#[test]
fn s5_3_common_routing_patterns_need_no_special_cases() {
    let s = service(
        r#"
import: [configurapi-handler-http]
api:
  events:
    - name: options
      policies: [{allowCrossOriginResourceSharingHandler: [true]}, {traceHandler: [preflight]}]
    - name: ""
      policies: [{setResponseBodyHandler: [root]}]
    - name: on_before_request
      policies: [{traceHandler: [log-in]}]
    - name: on_after_request
      policies: [{traceHandler: [log-out]}]
    - name: on_success
      policies: [{allowCrossOriginResourceSharingHandler: [true]}]
    - name: list_v1_event-details
      policies: [{setResponseBodyHandler: [details]}]
"#,
    );
    let run = |method: &str, path: &str| {
        let mut r = Request::new(method, path);
        r.headers.insert("origin".into(), json!("https://app"));
        let mut e = Event::new(r);
        s.process(&mut e).unwrap();
        e
    };
    let e = run("OPTIONS", "/v1/anything/at/all");
    assert_eq!(trace_of(&e), "log-in,preflight,log-out");
    let e = run("GET", "/");
    assert_eq!(e.response.body, Body::from("root"));
    assert_eq!(
        e.response.headers["Access-Control-Allow-Origin"],
        json!("https://app")
    );
    let e = run("GET", "/v1/event-details");
    assert_eq!(e.name, "list_v1_event-details");
    assert_eq!(e.response.body, Body::from("details"));
}
