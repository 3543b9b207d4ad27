//! Section 4 of the contract: Response, ErrorResponse, body serialisation,
//! and the runner-self request rules the core offers to HTTP front ends.

mod common;

use common::*;
use configurapi::{
    config::DEFAULT_CONFIG_PATH, Body, Chunk, ErrorResponse, HandlerError, Payload, Request,
    Response,
};
use serde_json::json;

#[test]
fn s4_1_response_defaults_and_fields() {
    let r = Response::default();
    assert_eq!(r.status_code, 200);
    assert_eq!(r.body, Body::Text(String::new()));
    assert!(r.headers.is_empty());
    assert!(!r.is_error_response());
    let mut r = Response::new(json!({"a": 1}), 201);
    r.headers.insert("X".into(), json!("y"));
    r.status_code = 202;
    assert_eq!(r.body, Body::Json(json!({"a": 1})));
}

#[test]
fn s4_2_error_response_body_headers_and_copy_rules() {
    let r: Response = ErrorResponse::new("boom", 404, "d").into();
    assert_eq!(r.status_code, 404);
    assert_eq!(
        String::from_utf8(r.body.to_http_bytes().unwrap()).unwrap(),
        r#"{"statusCode":404,"message":"boom","details":"d"}"#
    );
    assert_eq!(
        r.headers,
        json!({"Content-Type": "application/json"})
            .as_object()
            .unwrap()
            .clone()
    );
    assert!(r.is_error_response());
    // From an Error: its message, its display text as details.
    let e = ErrorResponse::from_error(&HandlerError::new("oops").with_details("trace"), 500);
    assert_eq!(e, ErrorResponse::new("oops", 500, "trace"));
    // From an ErrorResponse: copied, the status argument ignored.
    let inner = HandlerError::Response(ErrorResponse::new("inner", 409, "x"));
    assert_eq!(
        ErrorResponse::from_error(&inner, 500),
        ErrorResponse::new("inner", 409, "x")
    );
}

#[test]
fn s4_3_json_response_sets_content_type_and_no_list_response_is_invented() {
    let r = Response::json(json!([1, 2]), 201);
    assert_eq!(r.status_code, 201);
    assert_eq!(
        r.headers.get("Content-Type"),
        Some(&json!("application/json"))
    );
    assert_eq!(r.body, Body::Json(json!([1, 2])));
    // ListResponse's body shape is open item O1: the core offers no ListResponse.
}

#[test]
fn s4_4_body_serialisation_rules() {
    let http = |b: Body| String::from_utf8(b.to_http_bytes().unwrap()).unwrap();
    assert_eq!(
        Body::Bytes(vec![0xff, 0]).to_http_bytes().unwrap(),
        vec![0xff, 0]
    );
    assert_eq!(http(Body::Text("as is".into())), "as is");
    assert_eq!(http(Body::Json(json!({"a": [1]}))), r#"{"a":[1]}"#);
    assert_eq!(http(Body::Json(json!([1, "x"]))), r#"[1,"x"]"#);
    assert_eq!(http(Body::Json(json!(42))), "42");
    assert_eq!(http(Body::Json(json!(false))), "false");
    assert_eq!(http(Body::Json(json!("s"))), "s");
    assert_eq!(http(Body::Null), "");
    assert_eq!(http(Body::Absent), "");
    // 8.1 envelope values: absent is "", null is null, bytes are base64.
    assert_eq!(Body::Absent.to_envelope_value(), Some((json!(""), false)));
    assert_eq!(Body::Null.to_envelope_value(), Some((json!(null), false)));
    assert_eq!(
        Body::Json(json!({"k": 1})).to_envelope_value(),
        Some((json!({"k": 1}), false))
    );
    assert_eq!(
        Body::Text("t".into()).to_envelope_value(),
        Some((json!("t"), false))
    );
    assert_eq!(
        Body::Bytes(b"hi".to_vec()).to_envelope_value(),
        Some((json!("aGk="), true))
    );
    // A stream is pulled by the runner, never serialised whole or cloned.
    let mut r = Response::stream(vec![Ok(Chunk::Text("a".into()))].into_iter(), 200);
    assert!(r.body.is_stream());
    assert_eq!(r.body.to_http_bytes(), None);
    assert_eq!(r.clone().body, Body::Absent);
    let mut stream = r.take_stream().unwrap();
    assert_eq!(stream.next_chunk(), Some(Ok(Chunk::Text("a".into()))));
    assert_eq!(stream.next_chunk(), None);
    assert_eq!(r.body, Body::Absent);
}

#[test]
fn s4_5_headers_are_kept_verbatim_and_no_content_type_is_added() {
    let s = service(
        "import: [configurapi-handler-http]\napi:\n  events:\n    - name: x\n      policies:\n        - setResponseHandler: [200, {a: 1}, {X-Mixed-Case: v}]\n",
    );
    let e = run_named(&s, "x");
    assert_eq!(
        e.response.headers,
        json!({"X-Mixed-Case": "v"}).as_object().unwrap().clone()
    );
}

#[test]
fn s4_6_request_building_from_http() {
    let r = Request::from_http(
        "GET",
        "/v1/users?a=1&a=2&b=x+y%21&c",
        &[
            ("X-Thing", "1"),
            ("x-thing", "2"),
            ("Content-Type", "text/plain"),
        ],
        b"",
    )
    .unwrap();
    assert_eq!(r.method, "get");
    assert_eq!(r.path, "/v1/users");
    assert_eq!(r.headers.get("x-thing"), Some(&json!("1, 2")));
    assert_eq!(
        r.query,
        json!({"a": ["1", "2"], "b": "x y!", "c": ""})
            .as_object()
            .unwrap()
            .clone()
    );
    assert_eq!(r.payload, Payload::Absent, "an empty body is no payload");
    let text = Request::from_http("POST", "/", &[("content-type", "text/csv")], b"a,b").unwrap();
    assert_eq!(text.payload, Payload::Text("a,b".into()));
    let json = Request::from_http(
        "POST",
        "/",
        &[("content-type", "application/json; charset=utf-8")],
        br#"{"a":1}"#,
    )
    .unwrap();
    assert_eq!(json.payload, Payload::Json(json!({"a": 1})));
    let bad = Request::from_http(
        "POST",
        "/",
        &[("content-type", "application/json")],
        b"{nope",
    );
    assert!(bad.is_err(), "a SyntaxError, answered with 400");
    let raw = Request::from_http("POST", "/", &[("content-type", "image/png")], &[1, 2]).unwrap();
    assert_eq!(raw.payload, Payload::Bytes(vec![1, 2]));
}

#[test]
fn s4_7_top_level_failures_map_to_400_or_500_ignoring_status_code() {
    let err = HandlerError::new("broken").with_status(418);
    assert_eq!(ErrorResponse::from_error(&err, 500).status_code, 500);
    assert_eq!(ErrorResponse::from_error(&err, 400).status_code, 400);
    assert_eq!(ErrorResponse::from_error(&err, 500).message, "broken");
}

#[test]
fn s4_8_default_config_path() {
    // Ports, TLS and keep-alive are runner options (the runner issue); the
    // core's share of 4.8 is the default config path.
    assert_eq!(DEFAULT_CONFIG_PATH, "config.yaml");
}
