//! docs/config.md is tested: its YAML blocks load (or fail as they say), the
//! fixtures of Configurapi's own documentation are quoted in it verbatim,
//! and those fixtures behave as documented.

mod common;

use common::*;
use configurapi::{Body, Event, HandlerRegistry, Request, Service};
use serde_json::json;

const DOC: &str = include_str!("../../../docs/config.md");

/// The fenced blocks of the doc whose info string starts with `yaml`.
fn yaml_blocks() -> Vec<(String, String)> {
    let mut blocks = Vec::new();
    let mut lines = DOC.lines();
    while let Some(line) = lines.next() {
        if let Some(info) = line.strip_prefix("```yaml") {
            let body: Vec<&str> = lines.by_ref().take_while(|l| *l != "```").collect();
            blocks.push((info.trim().to_string(), body.join("\n") + "\n"));
        }
    }
    blocks
}

/// Loads a doc block as if it were `tests/fixtures/config.yaml`, so the schemas its
/// examples name resolve against that folder (`tests/fixtures/schemas`).
fn load(yaml: &str) -> Result<Service, configurapi::ConfigError> {
    let config = configurapi::Config::parse(yaml, "config.yaml", Some("test"))?;
    Service::from_config_in(
        config,
        &HandlerRegistry::with_builtins(),
        "config.yaml",
        std::path::Path::new("tests/fixtures"),
    )
}

#[test]
fn every_yaml_block_of_the_config_reference_loads_or_fails_as_stated() {
    let blocks = yaml_blocks();
    assert!(blocks.len() >= 10, "found {} blocks", blocks.len());
    for (info, body) in blocks {
        match info.as_str() {
            "" => match body
                .lines()
                .next()
                .and_then(|l| l.strip_prefix("# error: "))
            {
                Some(expected) => {
                    let err = load(&body).expect_err(&body);
                    assert_eq!(err.message, expected);
                }
                None => {
                    if let Err(e) = load(&body) {
                        panic!("doc block failed: {e}\n{body}");
                    }
                }
            },
            "policies" => {
                let indented: String = body.lines().map(|l| format!("        {l}\n")).collect();
                let yaml = format!(
                    "import: [configurapi-handler-http, configurapi-handler-json]\napi:\n  events:\n    - name: x\n      policies:\n{indented}"
                );
                if let Err(e) = load(&yaml) {
                    panic!("doc policies failed: {e}\n{yaml}");
                }
            }
            other => panic!("unknown yaml block kind {other:?}"),
        }
    }
}

#[test]
fn the_documentation_fixtures_are_quoted_verbatim() {
    for name in ["hello.yaml", "ping.yaml", "cors.yaml"] {
        let text = std::fs::read_to_string(format!("tests/fixtures/{name}")).unwrap();
        assert!(
            DOC.contains(&text),
            "docs/config.md must quote tests/fixtures/{name}"
        );
    }
}

#[test]
fn fixture_hello_get_v1_hello_answers_hi_world() {
    let s = Service::load("tests/fixtures/hello.yaml").unwrap();
    let mut e = http_event("GET", "/v1/hello/world", &[]);
    s.process(&mut e).unwrap();
    assert_eq!(e.name, "get_v1_hello");
    assert_eq!(e.response.status_code, 200);
    assert_eq!(e.response.body, Body::from("Hi world!"));
}

#[test]
fn fixture_ping_post_v1_ping_greets_the_sender_every_time() {
    let s = Service::load("tests/fixtures/ping.yaml").unwrap();
    for who in ["alice", "bob"] {
        let request = Request::from_http(
            "POST",
            "/v1/ping",
            &[("Content-Type", "application/json")],
            format!(r#"{{"from":"{who}"}}"#).as_bytes(),
        )
        .unwrap();
        let mut e = Event::new(request);
        s.process(&mut e).unwrap();
        assert_eq!(e.name, "post_v1_ping");
        assert_eq!(
            e.response.headers.get("Content-Type"),
            Some(&json!("application/json"))
        );
        assert_eq!(
            String::from_utf8(e.response.body.to_http_bytes().unwrap()).unwrap(),
            format!(r#"{{"message":"Hi {who}"}}"#)
        );
    }
}

#[test]
fn fixture_cors_answers_preflights_and_decorates_successes() {
    let s = Service::load("tests/fixtures/cors.yaml").unwrap();
    let run = |method: &str, path: &str, origin: &str| {
        let r = Request::from_http(method, path, &[("Origin", origin)], b"").unwrap();
        let mut e = Event::new(r);
        s.process(&mut e).unwrap();
        e
    };
    let e = run("OPTIONS", "/v1/anything/1", "http://localhost:3000");
    assert_eq!(e.response.status_code, 204);
    let h = &e.response.headers;
    assert_eq!(
        h["Access-Control-Allow-Origin"],
        json!("http://localhost:3000")
    );
    assert_eq!(
        h["Access-Control-Allow-Methods"],
        json!("GET,POST,PUT,DELETE,OPTIONS")
    );
    assert_eq!(
        h["Access-Control-Allow-Headers"],
        json!("Content-Type,Authorization")
    );
    assert_eq!(h["Access-Control-Allow-Credentials"], json!("true"));
    assert_eq!(h["Access-Control-Max-Age"], json!(600));

    let e = run("GET", "/v1/event-details", "http://localhost");
    assert_eq!(e.name, "list_v1_event-details");
    assert_eq!(e.response.body, Body::Json(json!([])));
    assert_eq!(
        e.response.headers["Access-Control-Allow-Origin"],
        json!("http://localhost")
    );

    let e = run("OPTIONS", "/v1/x", "https://evil.example");
    assert!(!e
        .response
        .headers
        .contains_key("Access-Control-Allow-Origin"));
}

#[cfg(feature = "json-schema")]
#[test]
fn fixture_validate_checks_payloads_against_the_schema() {
    use configurapi::Payload;

    // schemas/ resolves against the config file's folder: tests/fixtures/schemas.
    let s = Service::load("tests/fixtures/validate.yaml").unwrap();
    let post = |payload: serde_json::Value| {
        let mut r = Request::new("POST", "/v1/data");
        r.payload = Payload::Json(payload);
        let mut e = Event::new(r);
        s.process(&mut e).unwrap();
        e
    };
    let e = post(json!({"name": "n1"}));
    assert_eq!(e.response.status_code, 201);
    assert_eq!(e.response.body, Body::Json(json!({"created": "n1"})));
    let e = post(json!({"name": ""}));
    assert_eq!(e.response.status_code, 400);
    let e = post(json!({"name": "x", "extra": 1}));
    assert_eq!(e.response.status_code, 400);
}
