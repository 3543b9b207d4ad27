//! The management API (docs/management.md, semantics 6.7, 6.8, 8.4-8.6, 8.14) over real
//! sockets, on the same runner that serves the WebSockets: one test per route and per
//! status, postbacks from a handler and from the `post` subcommand, hostile requests
//! while an echo conversation keeps flowing, `/metrics` through a Prometheus parser,
//! and the doc's curl examples run with the real `curl`.
//!
//! Nothing sleeps to synchronise: reads have deadlines, and waiting for a timeout to
//! fire is a blocking read that must end in EOF before its deadline.

mod support;

use std::io::{ErrorKind, Read, Write};
use std::process::Command;
use std::sync::mpsc::channel;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use configurapi_runner_ws::configurapi::{Context, Event, HandlerError, Identity};
use configurapi_runner_ws::postback::{postback, PostbackError, PostbackMessage};
use serde_json::{json, Map, Value};
use support::*;

const APP: &str = r#"
import:
  - configurapi-handler-http
  - configurapi-handler-json
api:
  events:
    - name: echo
      policies:
        - echoHandler
    - name: connectionId
      policies:
        - headerHandler: [connection-id]
"#;

fn app() -> MgmtServer {
    mgmt_simple(APP, mgmt_config(None))
}

/// The idle timeout `mgmt_config` sets.
const IDLE: Duration = Duration::from_millis(300);

// ------------------------------------------------------------------ GET /@connections

#[test]
fn list_connections_answers_200_with_the_connected_ids() {
    let srv = app();
    let empty = srv.get("/@connections");
    assert_eq!(empty.status, 200);
    assert_eq!(empty.header("content-type"), Some("application/json"));
    assert_eq!(empty.json(), json!([]));
    let (_a, id_a) = srv.ws_with_id();
    let (_b, id_b) = srv.ws_with_id();
    let mut want = vec![id_a, id_b];
    want.sort();
    let r = srv.get("/@connections");
    assert_eq!(r.status, 200);
    let mut got: Vec<String> = serde_json::from_value(r.json()).unwrap();
    got.sort();
    assert_eq!(got, want);
}

#[test]
fn list_alias_list_at_connections_answers_the_same() {
    let srv = app();
    let (_ws, id) = srv.ws_with_id();
    let r = srv.get("/list_@connections");
    assert_eq!(r.status, 200);
    assert_eq!(r.json(), json!([id]));
    // Empty segments are ignored, as the core does.
    assert_eq!(srv.get("//@connections/").json(), json!([id]));
}

#[test]
fn a_closed_connection_is_no_longer_listed() {
    let srv = app();
    let (ws, _) = srv.ws_with_id();
    let (_other, other) = srv.ws_with_id();
    ws.close();
    assert_eq!(srv.get("/@connections").json(), json!([other]));
}

// ------------------------------------------------------------ POST /@connections/{id}

#[test]
fn post_to_a_connection_answers_200_and_the_client_gets_one_envelope_frame() {
    let srv = app();
    let (mut ws, id) = srv.ws_with_id();
    let r = srv.call(
        "POST",
        &format!("/@connections/{id}"),
        "Content-Type: application/json\r\n",
        br#"{"statusCode":202,"headers":{"message-id":"m-1"},"body":{"message":"Hello"}}"#,
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.body.is_empty());
    assert_eq!(
        ws.recv(),
        json!({"statusCode": 202, "headers": {"message-id": "m-1"}, "body": {"message": "Hello"}})
    );
    // The conversation goes on after the pushed frame.
    echo_round(&mut ws, 1);
}

#[test]
fn post_defaults_are_200_empty_headers_and_empty_body() {
    let srv = app();
    let (mut ws, id) = srv.ws_with_id();
    let r = srv.call("POST", &format!("/@connections/{id}"), "", b"{}");
    assert_eq!(r.status, 200);
    assert_eq!(
        ws.recv(),
        json!({"statusCode": 200, "headers": {}, "body": ""})
    );
}

#[test]
fn the_seed_readmes_bare_curl_post_sends_the_default_envelope() {
    let srv = app();
    let (mut ws, id) = srv.ws_with_id();
    // What `curl -X POST http://localhost:9100/post_@connection?id=<id>` writes: no
    // body, no Content-Length, keep-alive.
    let mut s = srv.raw_mgmt();
    let req = format!(
        "POST /post_@connection?id={id} HTTP/1.1\r\nHost: localhost:9100\r\n\
         User-Agent: curl/8.5.0\r\nAccept: */*\r\n\r\n"
    );
    s.write_all(req.as_bytes()).unwrap();
    let r = read_response(&mut s, false);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        ws.recv(),
        json!({"statusCode": 200, "headers": {}, "body": ""})
    );
    // An explicit empty body is the same.
    let r = srv.call("POST", &format!("/@connections/{id}"), "", b"");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        ws.recv(),
        json!({"statusCode": 200, "headers": {}, "body": ""})
    );
}

#[test]
fn post_alias_takes_the_id_from_the_query() {
    let srv = app();
    let (mut ws, id) = srv.ws_with_id();
    let r = srv.call(
        "POST",
        &format!("/post_@connection?id={id}"),
        "",
        br#"{"body":"hi"}"#,
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(ws.recv()["body"], "hi");
}

#[test]
fn post_to_an_unknown_id_is_410_even_with_a_bad_body() {
    let srv = app();
    let r = srv.call("POST", "/@connections/no-such-connection", "", b"not json");
    assert_eq!(r.status, 410);
    assert_eq!(
        r.json(),
        json!({"statusCode": 410, "message": "Gone.", "details": "Connection 'no-such-connection' is not connected."})
    );
}

#[test]
fn post_to_a_closed_connection_is_410() {
    let srv = app();
    let (ws, id) = srv.ws_with_id();
    ws.close();
    let r = srv.call("POST", &format!("/@connections/{id}"), "", b"not json");
    assert_eq!(r.status, 410);
}

#[test]
fn post_with_a_body_that_is_not_json_is_400() {
    let srv = app();
    let (mut ws, id) = srv.ws_with_id();
    let r = srv.call("POST", &format!("/@connections/{id}"), "", b"not json");
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["statusCode"], 400);
    // Nothing was sent: the next frame is the echo's.
    echo_round(&mut ws, 7);
}

#[test]
fn post_with_a_body_that_is_not_an_object_is_400() {
    let srv = app();
    let (mut ws, id) = srv.ws_with_id();
    for body in [
        &b"[1,2]"[..],
        b"\"text\"",
        b"42",
        br#"{"statusCode":"x"}"#,
        br#"{"headers":[]}"#,
    ] {
        let r = srv.call("POST", &format!("/@connections/{id}"), "", body);
        assert_eq!(r.status, 400, "{}", String::from_utf8_lossy(body));
    }
    echo_round(&mut ws, 8);
}

#[test]
fn post_without_an_id_is_400() {
    let srv = app();
    let (mut ws, _) = srv.ws_with_id();
    for target in [
        "/post_@connection",
        "/post_@connection?id=",
        "/@connections",
    ] {
        let r = srv.call("POST", target, "", br#"{"body":"hi"}"#);
        assert_eq!(r.status, 400, "{target}");
        assert_eq!(r.json()["statusCode"], 400);
    }
    echo_round(&mut ws, 9);
}

#[test]
fn post_with_a_chunked_body_is_decoded() {
    let srv = app();
    let (mut ws, id) = srv.ws_with_id();
    let mut s = srv.raw_mgmt();
    let body = br#"{"body":"chunked"}"#;
    let (a, b) = body.split_at(7);
    let req = format!(
        "POST /@connections/{id} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n\
         {:x};ext=1\r\n{}\r\n{:x}\r\n{}\r\n0\r\nX-Trailer: t\r\n\r\n",
        a.len(),
        std::str::from_utf8(a).unwrap(),
        b.len(),
        std::str::from_utf8(b).unwrap()
    );
    s.write_all(req.as_bytes()).unwrap();
    let r = read_response(&mut s, false);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(ws.recv()["body"], "chunked");
}

// ------------------------------------------------------------- GET /@connections/{id}

#[test]
fn get_a_connection_answers_200_with_its_facts() {
    const YAML: &str = r#"
api:
  events:
    - name: on_connect
      policies:
        - setIdentity
    - name: connectionId
      policies:
        - headerHandler: [connection-id]
"#;
    let srv = mgmt_server(
        YAML,
        |r| {
            r.register(
                "setIdentity",
                |event: &mut Event, _: &[Value], _: &mut Context| {
                    event.identity = Some(Identity::new("alice", Vec::new()));
                    Ok::<(), HandlerError>(())
                },
            );
        },
        test_config(),
        mgmt_config(None),
    );
    let (_ws, id) = srv.ws_with_id();
    let r = srv.get(&format!("/@connections/{id}"));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("content-type"), Some("application/json"));
    let v = r.json();
    assert_eq!(v["connectionId"], json!(id));
    assert_eq!(v["sourceIp"], "127.0.0.1");
    assert_eq!(v["subprotocol"], Value::Null);
    assert_eq!(v["identityId"], "alice");
    for key in ["connectedAt", "lastActiveAt"] {
        let t = v[key].as_str().unwrap_or_else(|| panic!("{key}: {v}"));
        // 2026-11-27T19:28:30.123Z
        assert_eq!(t.len(), 24, "{key}: {t}");
        assert!(
            t.ends_with('Z') && t.as_bytes()[10] == b'T' && t.as_bytes()[19] == b'.',
            "{t}"
        );
    }
    assert!(
        v["connectedAt"].as_str() <= v["lastActiveAt"].as_str(),
        "{v}"
    );
    let keys: Vec<&String> = v.as_object().unwrap().keys().collect();
    assert_eq!(
        keys,
        [
            "connectionId",
            "connectedAt",
            "lastActiveAt",
            "sourceIp",
            "subprotocol",
            "identityId"
        ]
    );
}

#[test]
fn get_an_unknown_connection_is_410() {
    let srv = app();
    let r = srv.get("/@connections/no-such-connection");
    assert_eq!(r.status, 410);
    assert_eq!(r.json()["message"], "Gone.");
}

#[test]
fn head_answers_the_get_head_without_a_body() {
    let srv = app();
    let (_ws, id) = srv.ws_with_id();
    let get = srv.get(&format!("/@connections/{id}"));
    let head = srv.call("HEAD", &format!("/@connections/{id}"), "", b"");
    assert_eq!(head.status, 200);
    assert_eq!(head.header("content-length"), get.header("content-length"));
    assert!(head.body.is_empty());
}

// ---------------------------------------------------------- DELETE /@connections/{id}

#[test]
fn delete_a_connection_answers_204_and_the_client_gets_close_1000() {
    let srv = app();
    let (mut ws, id) = srv.ws_with_id();
    let r = srv.call("DELETE", &format!("/@connections/{id}"), "", b"");
    assert_eq!(r.status, 204);
    assert!(r.body.is_empty());
    ws.expect_close(1000, None);
    // It is gone for every route now.
    assert_eq!(srv.get("/@connections").json(), json!([]));
    assert_eq!(srv.get(&format!("/@connections/{id}")).status, 410);
    assert_eq!(
        srv.call("DELETE", &format!("/@connections/{id}"), "", b"")
            .status,
        410
    );
}

#[test]
fn delete_an_unknown_connection_is_410() {
    let srv = app();
    let r = srv.call("DELETE", "/@connections/no-such-connection", "", b"");
    assert_eq!(r.status, 410);
    assert_eq!(r.json()["statusCode"], 410);
}

// ----------------------------------------------------------------------- GET /healthz

#[test]
fn healthz_answers_200_ok() {
    let srv = app();
    let r = srv.get("/healthz");
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), "ok\n");
}

#[test]
fn healthz_answers_503_while_shutting_down() {
    // A close timeout far beyond the test, so the server stays in its shutdown until
    // the client answers the close.
    let srv = mgmt_server(
        APP,
        |_| {},
        runner_config_with_close_timeout(DEADLINE * 3),
        mgmt_config(None),
    );
    let (mut ws, _) = srv.ws_with_id();
    // A keep-alive management connection opened before the shutdown.
    let mut before = srv.raw_mgmt();
    before
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    assert_eq!(read_response(&mut before, false).status, 200);
    srv.handle.shutdown().unwrap();
    // The client sees the shutdown's close (so the reactor is in it) and does not answer.
    let (b0, payload) = read_frame(&mut ws.s);
    assert_eq!(b0, 0x88);
    assert_eq!(&payload[..2], &1001u16.to_be_bytes());
    let r = srv.get("/healthz");
    assert_eq!(r.status, 503);
    assert_eq!(r.text(), "shutting down\n");
    before
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let r = read_response(&mut before, false);
    assert_eq!(r.status, 503);
    assert!(r.closes());
    expect_eof(&mut before);
    ws.answer_close();
}

fn runner_config_with_close_timeout(t: Duration) -> configurapi_runner_ws::ServerConfig {
    configurapi_runner_ws::ServerConfig {
        close_timeout: t,
        ..test_config()
    }
}

// ----------------------------------------------------------------------- GET /metrics

fn scrape(text: &str) -> prometheus_parse::Scrape {
    prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string())))
        .expect("the metrics parse as Prometheus text")
}

fn sample<'a>(
    s: &'a prometheus_parse::Scrape,
    metric: &str,
    labels: &[(&str, &str)],
) -> &'a prometheus_parse::Sample {
    s.samples
        .iter()
        .find(|x| x.metric == metric && labels.iter().all(|(k, v)| x.labels.get(k) == Some(v)))
        .unwrap_or_else(|| panic!("no sample {metric} {labels:?}"))
}

fn scalar(s: &prometheus_parse::Scrape, metric: &str, labels: &[(&str, &str)]) -> f64 {
    match sample(s, metric, labels).value {
        prometheus_parse::Value::Counter(v)
        | prometheus_parse::Value::Gauge(v)
        | prometheus_parse::Value::Untyped(v) => v,
        ref other => panic!("{metric} is {other:?}"),
    }
}

#[test]
fn metrics_from_curl_parse_as_prometheus_text_after_traffic() {
    let srv = app();
    let (mut ws, _) = srv.ws_with_id();
    for n in 0..3 {
        echo_round(&mut ws, n);
    }
    let unknown = ws.request(&json!({"name": "nope"}));
    assert_eq!(unknown["statusCode"], 501, "{unknown}");
    // A refused upgrade: no Upgrade header.
    let mut bad = srv.raw();
    bad.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let head = read_http_head(&mut bad);
    assert!(head.starts_with("HTTP/1.1 426 "), "{head}");
    support::read_to_eof(&mut bad);
    drop(bad);
    // The refused socket is freed once the server reads our FIN.
    let deadline = Instant::now() + DEADLINE;
    while srv.handle.stats().unwrap().open != 1 {
        assert!(
            Instant::now() < deadline,
            "the refused socket was never freed"
        );
        std::thread::yield_now();
    }

    let out = curl()
        .args(["-s", &format!("http://{}/metrics", srv.mgmt())])
        .output_within_deadline()
        .unwrap();
    assert!(out.status.success(), "curl failed: {out:?}");
    let text = String::from_utf8(out.stdout).unwrap();
    let s = scrape(&text);
    let p = "configurapi_ws_";
    for family in [
        "connections_open",
        "connections_total",
        "messages_received_total",
        "messages_sent_total",
        "responses_total",
        "handshakes_rejected_total",
        "handler_duration_seconds",
    ] {
        assert!(
            s.docs.contains_key(&format!("{p}{family}")),
            "no HELP for {family}"
        );
    }
    assert_eq!(scalar(&s, "configurapi_ws_connections_open", &[]), 1.0);
    // Every TCP connection accepted on the WebSocket port counts, the refused
    // upgrade included (its refusal is in handshakes_rejected_total).
    assert_eq!(scalar(&s, "configurapi_ws_connections_total", &[]), 2.0);
    // connectionId, three echoes, nope.
    assert_eq!(
        scalar(&s, "configurapi_ws_messages_received_total", &[]),
        5.0
    );
    assert_eq!(scalar(&s, "configurapi_ws_messages_sent_total", &[]), 5.0);
    assert_eq!(
        scalar(
            &s,
            "configurapi_ws_responses_total",
            &[("status_code", "200")]
        ),
        4.0
    );
    assert_eq!(
        scalar(
            &s,
            "configurapi_ws_responses_total",
            &[("status_code", "501")]
        ),
        1.0
    );
    assert_eq!(
        scalar(
            &s,
            "configurapi_ws_handshakes_rejected_total",
            &[("reason", "upgrade required")]
        ),
        1.0
    );
    match &sample(
        &s,
        "configurapi_ws_handler_duration_seconds",
        &[("event", "echo")],
    )
    .value
    {
        prometheus_parse::Value::Histogram(buckets) => {
            let inf = buckets
                .iter()
                .find(|b| b.less_than == f64::INFINITY)
                .expect("a +Inf bucket");
            assert_eq!(inf.count, 3.0);
            assert!(buckets.windows(2).all(|w| w[0].count <= w[1].count));
        }
        other => panic!("handler_duration_seconds is {other:?}"),
    }
    assert_eq!(
        scalar(
            &s,
            "configurapi_ws_handler_duration_seconds_count",
            &[("event", "echo")]
        ),
        3.0
    );
}

#[test]
fn metrics_content_type_is_prometheus_text_0_0_4() {
    let srv = app();
    let r = srv.get("/metrics");
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    scrape(&r.text());
}

// --------------------------------------------------------------------------- 501, 401

#[test]
fn any_other_route_is_501_with_the_cores_error_response() {
    let srv = app();
    let r = srv.get("/users");
    assert_eq!(r.status, 501);
    assert_eq!(
        r.json(),
        json!({"statusCode": 501, "message": "Not Implemented.", "details": "Route for 'list_users' event could not be found.'"})
    );
    let r = srv.call("PUT", "/@connections/x", "", b"{}");
    assert_eq!(r.status, 501);
    assert_eq!(
        r.json()["details"],
        "Route for 'put_@connection' event could not be found.'"
    );
    assert_eq!(srv.call("POST", "/healthz", "", b"").status, 501);
}

#[test]
fn with_a_token_a_request_without_authorization_is_401() {
    let srv = mgmt_simple(APP, mgmt_config(Some("s3cret")));
    for target in ["/@connections", "/healthz", "/metrics", "/nothing"] {
        let r = srv.get(target);
        assert_eq!(r.status, 401, "{target}");
        assert_eq!(r.header("www-authenticate"), Some("Bearer"));
        assert_eq!(r.json()["statusCode"], 401);
    }
}

#[test]
fn with_a_token_a_wrong_token_is_401_and_the_right_one_passes() {
    let srv = mgmt_simple(APP, mgmt_config(Some("s3cret")));
    for auth in [
        "Bearer s3cre",
        "Bearer s3cret2",
        "Basic s3cret",
        "s3cret",
        "Bearer ",
    ] {
        let r = srv.call(
            "GET",
            "/@connections",
            &format!("Authorization: {auth}\r\n"),
            b"",
        );
        assert_eq!(r.status, 401, "{auth}");
    }
    let r = srv.call(
        "GET",
        "/@connections",
        "Authorization: Bearer s3cret\r\n",
        b"",
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.json(), json!([]));
    // The token guards the posts too, before the 410.
    let r = srv.call("POST", "/@connections/x", "", b"{}");
    assert_eq!(r.status, 401);
}

// ---------------------------------------------------------------------- HTTP handling

fn small_body_server() -> MgmtServer {
    let mut m = mgmt_config(None);
    m.limits.max_body = 64;
    mgmt_simple(APP, m)
}

#[test]
fn a_body_over_the_limit_is_413() {
    let srv = small_body_server();
    let (mut ws, id) = srv.ws_with_id();
    let r = hostile(
        &srv,
        format!("POST /@connections/{id} HTTP/1.1\r\nHost: x\r\nContent-Length: 65\r\n\r\n")
            .as_bytes(),
    );
    assert_eq!(r.status, 413);
    // A chunked body is limited after decoding.
    let chunk = "a".repeat(40);
    let r = hostile(
        &srv,
        format!(
            "POST /@connections/{id} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n\
             28\r\n{chunk}\r\n28\r\n{chunk}\r\n0\r\n\r\n"
        )
        .as_bytes(),
    );
    assert_eq!(r.status, 413);
    // At the limit it passes.
    let body = format!(r#"{{"body":"{}"}}"#, "b".repeat(64 - 11));
    assert_eq!(body.len(), 64);
    let r = srv.call("POST", &format!("/@connections/{id}"), "", body.as_bytes());
    assert_eq!(r.status, 200);
    assert_eq!(ws.recv()["body"], "b".repeat(53));
}

#[test]
fn a_huge_head_is_431() {
    let srv = app();
    let big = "a".repeat(17 * 1024);
    let r = hostile(
        &srv,
        format!("GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: {big}\r\n\r\n").as_bytes(),
    );
    assert_eq!(r.status, 431);
    let many: String = (0..101).map(|i| format!("X-{i}: v\r\n")).collect();
    let r = hostile(
        &srv,
        format!("GET /healthz HTTP/1.1\r\nHost: x\r\n{many}\r\n").as_bytes(),
    );
    assert_eq!(r.status, 431);
}

#[test]
fn content_length_with_transfer_encoding_is_400_and_closes() {
    let srv = app();
    let r = hostile(
        &srv,
        b"POST /@connections/x HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /healthz HTTP/1.1\r\nHost: x\r\n\r\n",
    );
    assert_eq!(r.status, 400);
}

#[test]
fn two_different_content_lengths_are_400_and_close() {
    let srv = app();
    let r = hostile(
        &srv,
        b"POST /@connections/x HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n{}}",
    );
    assert_eq!(r.status, 400);
}

#[test]
fn a_malformed_request_is_400_and_closes() {
    let srv = app();
    assert_eq!(hostile(&srv, b"GARBAGE\r\n\r\n").status, 400);
    assert_eq!(
        hostile(&srv, b"GET /healthz HTTP/1.1\r\nHost : x\r\n\r\n").status,
        400
    );
    assert_eq!(hostile(&srv, b"GET /healthz HTTP/1.1\r\n\r\n").status, 400);
}

#[test]
fn keep_alive_serves_two_requests_on_one_socket_and_pipelined_ones_in_order() {
    let srv = app();
    let mut s = srv.raw_mgmt();
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let first = read_response(&mut s, false);
    assert_eq!((first.status, first.closes()), (200, false));
    s.write_all(b"GET /@connections HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let second = read_response(&mut s, false);
    assert_eq!(second.status, 200);
    assert_eq!(second.json(), json!([]));
    s.write_all(
        b"GET /nothing HTTP/1.1\r\nHost: x\r\n\r\nGET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .unwrap();
    assert_eq!(read_response(&mut s, false).status, 501);
    let last = read_response(&mut s, false);
    assert_eq!((last.status, last.closes()), (200, true));
    expect_eof(&mut s);
}

/// Read on `s` until EOF, which must come after at least `min` and well before the
/// deadline; returns when it came, measured from `since`.
fn wait_for_timeout_close(s: &mut std::net::TcpStream, since: Instant, min: Duration) -> Duration {
    expect_eof(s);
    let took = since.elapsed();
    // A timeout cannot fire early; a loaded machine only makes it late, which the read
    // deadline (DEADLINE) bounds.
    assert!(took >= min, "closed after {took:?}, before {min:?}");
    took
}

#[test]
fn an_idle_keep_alive_connection_is_closed_after_the_idle_timeout() {
    let srv = app();
    let mut s = srv.raw_mgmt();
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    assert_eq!(read_response(&mut s, false).status, 200);
    let answered = Instant::now();
    wait_for_timeout_close(&mut s, answered, IDLE - Duration::from_millis(50));
    // A connection that never sends a byte is closed the same way.
    let mut silent = srv.raw_mgmt();
    let opened = Instant::now();
    wait_for_timeout_close(&mut silent, opened, IDLE - Duration::from_millis(50));
}

/// Send a request head a byte at a time, one byte per WebSocket echo round trip and
/// short read deadline, so bytes keep arriving well within the idle timeout; the
/// server must close once the request has taken longer than the timeout, without an
/// answer, while the echo conversation keeps answering.
///
/// A trial proves the request timeout only if no gap between bytes reached the idle
/// timeout (else the idle rule may have closed it). A loaded machine can stall the
/// client that long; such a trial is inconclusive and is run again, up to 5 times.
fn slowloris(srv: &MgmtServer, ws: &mut Ws, round: &mut usize) {
    for _ in 0..5 {
        let max_gap = slowloris_trial(srv, ws, round);
        if max_gap < IDLE {
            return;
        }
        eprintln!("slowloris trial inconclusive: the client paused {max_gap:?}; again");
    }
    panic!("every slowloris trial paused for the whole idle timeout: the machine is too loaded");
}

/// One slowloris; returns the longest gap between two of its bytes.
fn slowloris_trial(srv: &MgmtServer, ws: &mut Ws, round: &mut usize) -> Duration {
    let mut s = srv.raw_mgmt();
    s.set_read_timeout(Some(Duration::from_millis(20))).unwrap();
    let head = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ";
    let started = Instant::now();
    let mut last_byte = started;
    let mut sent = 0usize;
    let mut max_gap = Duration::ZERO;
    let mut buf = [0u8; 256];
    loop {
        let byte = head.get(sent).copied().unwrap_or(b'z');
        if s.write_all(&[byte]).is_err() {
            break; // closed under us
        }
        if sent > 0 {
            max_gap = max_gap.max(last_byte.elapsed());
        }
        last_byte = Instant::now();
        sent += 1;
        echo_round(ws, *round);
        *round += 1;
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => panic!(
                "a slowloris got an answer: {:?}",
                String::from_utf8_lossy(&buf[..n])
            ),
            Err(e)
                if matches!(
                    e.kind(),
                    ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted
                ) => {}
            Err(e) if e.kind() == ErrorKind::ConnectionReset => break,
            Err(e) => panic!("{e}"),
        }
        assert!(
            started.elapsed() < DEADLINE,
            "the slowloris was not closed ({sent} bytes in {:?})",
            started.elapsed()
        );
    }
    let took = started.elapsed();
    assert!(
        took >= IDLE - Duration::from_millis(50),
        "closed after {took:?}, before the timeout"
    );
    max_gap
}

#[test]
fn a_slowloris_request_is_closed_by_the_idle_timeout_while_websockets_flow() {
    let srv = app();
    let (mut ws, _) = srv.ws_with_id();
    let mut round = 0;
    slowloris(&srv, &mut ws, &mut round);
    assert!(
        round >= 3,
        "only {round} echo rounds ran during the slowloris"
    );
    echo_round(&mut ws, round);
}

#[test]
fn hostile_management_requests_do_not_stall_websocket_traffic_on_the_same_loop() {
    let srv = small_body_server();
    let (mut ws, id) = srv.ws_with_id();
    let mut round = 0;
    let mut step = |ws: &mut Ws, req: &[u8], status: u16| {
        echo_round(ws, round);
        round += 1;
        assert_eq!(
            hostile(&srv, req).status,
            status,
            "{}",
            String::from_utf8_lossy(&req[..req.len().min(60)])
        );
        echo_round(ws, round);
        round += 1;
    };
    // Malformed.
    step(&mut ws, b"\x00\x01\x02 nonsense\r\n\r\n", 400);
    // Oversized body and head.
    step(
        &mut ws,
        format!("POST /@connections/{id} HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n")
            .as_bytes(),
        413,
    );
    step(
        &mut ws,
        format!(
            "GET / HTTP/1.1\r\nHost: x\r\nX: {}\r\n\r\n",
            "a".repeat(20_000)
        )
        .as_bytes(),
        431,
    );
    // Smuggling-shaped.
    step(
        &mut ws,
        b"POST /@connections/x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n0\r\n\r\n",
        400,
    );
    step(
        &mut ws,
        b"POST /@connections/x HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n{}}}",
        400,
    );
    step(
        &mut ws,
        b"POST /@connections/x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked, identity\r\n\r\n",
        400,
    );
    // Slowloris, interleaved byte by byte with the echo.
    let mut round = 1000;
    slowloris(&srv, &mut ws, &mut round);
    echo_round(&mut ws, round);
}

// ------------------------------------------------------------------------- postbacks

#[test]
fn a_handler_posts_back_through_postback_url_with_the_message_id() {
    const YAML: &str = r#"
api:
  events:
    - name: later
      policies:
        - postLater
"#;
    let (tx, rx) = channel();
    let tx = Mutex::new(tx);
    let srv = mgmt_server(
        YAML,
        move |r| {
            r.register(
                "postLater",
                move |event: &mut Event, _: &[Value], _: &mut Context| {
                    let url = event.request.headers["postback-url"]
                        .as_str()
                        .ok_or_else(|| HandlerError::new("no postback-url"))?
                        .to_string();
                    let message_id = event.request.headers["message-id"].clone();
                    let tx = tx.lock().unwrap().clone();
                    std::thread::spawn(move || {
                        let mut headers = Map::new();
                        headers.insert("message-id".into(), message_id);
                        let r = postback(
                            &url,
                            &PostbackMessage {
                                status_code: 202,
                                headers,
                                body: json!({"late": true}),
                                extra: Map::new(),
                            },
                        );
                        let _ = tx.send((url, r.map_err(|e| e.to_string())));
                    });
                    Ok(())
                },
            );
        },
        test_config(),
        mgmt_config(None),
    );
    let mut ws = srv.ws();
    ws.send(&json!({"name": "later", "headers": {"message-id": "m-42"}}));
    // The handler's own answer and the postback, in either order.
    let frames = [ws.recv(), ws.recv()];
    let (url, result) = rx.recv_timeout(DEADLINE).expect("the postback ran");
    assert_eq!(result, Ok(()));
    let ids: Vec<String> = serde_json::from_value(srv.get("/@connections").json()).unwrap();
    assert_eq!(
        url,
        format!("http://{}/@connections/{}", srv.mgmt(), ids[0])
    );
    let late = frames
        .iter()
        .find(|f| f["statusCode"] == 202)
        .unwrap_or_else(|| panic!("no postback frame in {frames:?}"));
    assert_eq!(
        *late,
        json!({"statusCode": 202, "headers": {"message-id": "m-42"}, "body": {"late": true}})
    );
    let own = frames.iter().find(|f| f["statusCode"] == 200).unwrap();
    assert_eq!(own["headers"]["message-id"], "m-42");
}

/// A server whose every event reports its headers (postback-url included).
fn recording_server() -> (MgmtServer, std::sync::mpsc::Receiver<Value>) {
    const YAML: &str = r#"
api:
  events:
    - name: record
      policies:
        - record
"#;
    let (h, rx) = recorder();
    let srv = mgmt_server(
        YAML,
        |r| {
            r.register("record", h);
        },
        test_config(),
        mgmt_config(None),
    );
    (srv, rx)
}

fn postback_url(ws: &mut Ws, rx: &std::sync::mpsc::Receiver<Value>) -> String {
    assert_eq!(ws.request(&json!({"name": "record"}))["statusCode"], 200);
    let seen = rx.recv_timeout(DEADLINE).unwrap();
    seen["headers"]["postback-url"]
        .as_str()
        .expect("postback-url")
        .to_string()
}

#[test]
fn a_postback_to_a_closed_connection_is_gone() {
    let (srv, rx) = recording_server();
    let mut ws = srv.ws();
    let url = postback_url(&mut ws, &rx);
    ws.close();
    let r = postback(
        &url,
        &PostbackMessage {
            status_code: 200,
            headers: Map::new(),
            body: json!("too late"),
            extra: Map::new(),
        },
    );
    assert!(matches!(r, Err(PostbackError::Gone)), "{r:?}");
}

fn post_cmd() -> Command {
    Command::new(BIN)
}

#[test]
fn the_post_subcommand_delivers_and_exits_0() {
    let (srv, rx) = recording_server();
    let mut ws = srv.ws();
    let url = postback_url(&mut ws, &rx);
    let out = post_cmd()
        .args([
            "post",
            &url,
            "--status",
            "201",
            "--header",
            "x:y",
            r#"{"a":1}"#,
        ])
        .output_within_deadline()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert_eq!(
        ws.recv(),
        json!({"statusCode": 201, "headers": {"x": "y"}, "body": {"a": 1}})
    );
}

#[test]
fn the_post_subcommand_exits_1_for_a_gone_connection() {
    let (srv, rx) = recording_server();
    let mut ws = srv.ws();
    let url = postback_url(&mut ws, &rx);
    ws.close();
    let out = post_cmd()
        .args(["post", &url, "hi"])
        .output_within_deadline()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("410"),
        "{out:?}"
    );
}

#[test]
fn the_post_subcommand_exits_2_for_a_usage_error() {
    let srv = app();
    let url = format!("http://{}/@connections/x", srv.mgmt());
    for args in [
        vec!["post"],
        vec!["post", &url],
        vec!["post", &url, "--status", "99", "{}"],
        vec!["post", &url, "--header", "novalue", "{}"],
        vec!["post", "ftp://127.0.0.1/x", "{}"],
        vec!["post", "--bogus", &url, "{}"],
    ] {
        let out = post_cmd().args(&args).output_within_deadline().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}: {out:?}");
    }
    // Nothing reached the server: no connection was posted to, so the metrics show
    // no message sent.
    let s = scrape(&srv.get("/metrics").text());
    assert_eq!(scalar(&s, "configurapi_ws_messages_sent_total", &[]), 0.0);
}

// ----------------------------------------------------------------- the doc's examples

fn curl() -> Command {
    let probe = Command::new("curl")
        .arg("--version")
        .output_within_deadline();
    assert!(
        probe.is_ok_and(|o| o.status.success()),
        "the `curl` binary is needed to run docs/management.md's examples (install curl)"
    );
    Command::new("curl")
}

struct Example {
    section: String,
    curl: String,
    status_line: String,
}

/// The doc's examples: a ```sh block holding one curl command, then a ```text block
/// whose first line is the status line it prints.
fn doc_examples(doc: &str) -> Vec<Example> {
    let lines: Vec<&str> = doc.lines().collect();
    let mut out = Vec::new();
    let mut section = String::new();
    let mut i = 0;
    while i < lines.len() {
        if let Some(h) = lines[i].strip_prefix("## ") {
            section = h.to_string();
        }
        if lines[i] == "```sh" {
            assert_eq!(lines.get(i + 2), Some(&"```"), "a sh block holds one line");
            let curl = lines[i + 1];
            assert!(curl.starts_with("curl "), "{curl}");
            let mut j = i + 3;
            while lines.get(j) == Some(&"") {
                j += 1;
            }
            assert_eq!(lines.get(j), Some(&"```text"), "no status after {curl}");
            out.push(Example {
                section: section.clone(),
                curl: curl.to_string(),
                status_line: lines[j + 1].to_string(),
            });
            i = j;
        }
        i += 1;
    }
    out
}

/// Split a command line as a shell would for the forms the doc uses: whitespace
/// separates words, quotes group, and nothing inside quotes is special.
fn shell_words(line: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut quote = None;
    let mut in_word = false;
    for c in line.chars() {
        match (quote, c) {
            (None, '\'' | '"') => {
                quote = Some(c);
                in_word = true;
            }
            (Some(q), c) if c == q => quote = None,
            (None, c) if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            (_, c) => {
                cur.push(c);
                in_word = true;
            }
        }
    }
    assert!(quote.is_none(), "unbalanced quotes in {line}");
    if in_word {
        words.push(cur);
    }
    words
}

#[test]
fn docs_curl_examples_print_their_status_lines() {
    let doc = include_str!("../docs/management.md");
    let examples = doc_examples(doc);
    assert!(examples.len() >= 15, "found {} examples", examples.len());
    let open = app();
    let guarded = mgmt_simple(APP, mgmt_config(Some("s3cret")));
    let mut clients = Vec::new();
    for ex in &examples {
        let srv = if ex.section == "Access control" {
            &guarded
        } else {
            &open
        };
        let mut cmd = ex.curl.clone();
        if cmd.contains("$ID") {
            // A fresh client each time: an earlier example may have closed the last.
            let (ws, id) = srv.ws_with_id();
            clients.push(ws);
            cmd = cmd.replace("$ID", &id);
        }
        let addr = srv.mgmt().to_string();
        let cmd = cmd
            .replace("127.0.0.1:9100", &addr)
            .replace("localhost:9100", &addr);
        assert!(!cmd.contains('$'), "unsubstituted variable in {cmd}");
        let words = shell_words(&cmd);
        assert_eq!(words[0], "curl");
        let out = curl()
            .args(&words[1..])
            .args(["--max-time", "10"])
            .output_within_deadline()
            .unwrap();
        assert!(out.status.success(), "{cmd}: {out:?}");
        let stdout = String::from_utf8_lossy(&out.stdout);
        let first = stdout.lines().next().unwrap_or("").trim_end();
        assert_eq!(first, ex.status_line, "{}\n{stdout}", ex.curl);
    }
}

// ------------------------------------------------------------------- edge-case probes

#[test]
fn a_large_body_over_the_limit_sent_in_one_go_still_gets_its_413() {
    let srv = small_body_server();
    let mut s = srv.raw_mgmt();
    let body = vec![b'x'; 300 * 1024];
    let mut req = format!(
        "POST /@connections/x HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    req.extend_from_slice(&body);
    s.write_all(&req).unwrap();
    let r = read_response(&mut s, false);
    assert_eq!(r.status, 413);
}

#[test]
fn a_huge_head_sent_in_one_go_still_gets_its_431() {
    let srv = app();
    let mut s = srv.raw_mgmt();
    let big = "a".repeat(300 * 1024);
    s.write_all(format!("GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: {big}\r\n\r\n").as_bytes())
        .unwrap();
    let r = read_response(&mut s, false);
    assert_eq!(r.status, 431);
}

#[test]
fn curl_with_expect_100_continue_posts_a_large_body() {
    let srv = app();
    let (mut ws, id) = srv.ws_with_id();
    let text = "y".repeat(4000);
    let body = json!({"body": text}).to_string();
    let out = curl()
        .args([
            "-si",
            "-H",
            "Expect: 100-continue",
            "-X",
            "POST",
            "--data-binary",
            &body,
            &format!("http://{}/@connections/{id}", srv.mgmt()),
            "--max-time",
            "10",
        ])
        .output_within_deadline()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.starts_with("HTTP/1.1 100 Continue\r\n"), "{stdout}");
    assert!(stdout.contains("HTTP/1.1 200 OK\r\n"), "{stdout}");
    assert_eq!(ws.recv()["body"], json!(text));
}

#[test]
fn a_request_body_split_across_writes_is_assembled() {
    let srv = app();
    let (mut ws, id) = srv.ws_with_id();
    let mut s = srv.raw_mgmt();
    let body = br#"{"body":"split"}"#;
    s.write_all(
        format!(
            "POST /@connections/{id} HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .as_bytes(),
    )
    .unwrap();
    echo_round(&mut ws, 1);
    s.write_all(&body[..5]).unwrap();
    echo_round(&mut ws, 2);
    s.write_all(&body[5..]).unwrap();
    assert_eq!(read_response(&mut s, false).status, 200);
    assert_eq!(ws.recv()["body"], "split");
}

#[test]
fn a_body_that_trickles_in_is_closed_by_the_timeout() {
    let srv = app();
    let (mut ws, _) = srv.ws_with_id();
    let mut s = srv.raw_mgmt();
    s.set_read_timeout(Some(Duration::from_millis(20))).unwrap();
    s.write_all(b"POST /@connections/x HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n")
        .unwrap();
    let started = Instant::now();
    let mut buf = [0u8; 256];
    let mut round = 0;
    loop {
        if s.write_all(b"a").is_err() {
            break;
        }
        echo_round(&mut ws, round);
        round += 1;
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => panic!("answered: {:?}", String::from_utf8_lossy(&buf[..n])),
            Err(e)
                if matches!(
                    e.kind(),
                    ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted
                ) => {}
            Err(e) if e.kind() == ErrorKind::ConnectionReset => break,
            Err(e) => panic!("{e}"),
        }
        assert!(started.elapsed() < DEADLINE, "never closed");
    }
    assert!(started.elapsed() >= IDLE - Duration::from_millis(50));
}

#[test]
fn a_postback_to_a_token_guarded_server_carries_the_token() {
    let (h, rx) = recorder();
    let srv = mgmt_server(
        "api:\n  events:\n    - name: record\n      policies:\n        - record\n",
        |r| {
            r.register("record", h);
        },
        test_config(),
        mgmt_config(Some("s3cret")),
    );
    let mut ws = srv.ws();
    let url = postback_url(&mut ws, &rx);
    let msg = PostbackMessage {
        status_code: 200,
        headers: Map::new(),
        body: json!("with token"),
        extra: Map::new(),
    };
    let without = configurapi_runner_ws::postback::postback_with(
        &url,
        &msg,
        &configurapi_runner_ws::postback::PostbackOptions::default(),
    );
    assert!(
        matches!(without, Err(PostbackError::Status(401, _))),
        "{without:?}"
    );
    let with = configurapi_runner_ws::postback::postback_with(
        &url,
        &msg,
        &configurapi_runner_ws::postback::PostbackOptions {
            token: Some("s3cret".into()),
            ..Default::default()
        },
    );
    assert!(with.is_ok(), "{with:?}");
    assert_eq!(ws.recv()["body"], "with token");
    // The post subcommand takes it from --token or from the server's variable.
    let out = post_cmd()
        .args(["post", &url, "--token", "s3cret", "flag"])
        .env_remove("CONFIGURAPI_MANAGEMENT_TOKEN")
        .output_within_deadline()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert_eq!(ws.recv()["body"], "flag");
    let out = post_cmd()
        .args(["post", &url, "env"])
        .env("CONFIGURAPI_MANAGEMENT_TOKEN", "s3cret")
        .output_within_deadline()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert_eq!(ws.recv()["body"], "env");
    let out = post_cmd()
        .args(["post", &url, "none"])
        .env_remove("CONFIGURAPI_MANAGEMENT_TOKEN")
        .output_within_deadline()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("401"),
        "{out:?}"
    );
    ws.close();
}

#[test]
fn a_pipelined_request_gets_its_own_time_to_arrive() {
    // Request A trickles in over 1.8 s, B starts in the packet that ends A and takes
    // 1.8 s more: each is within the 3 s timeout (1.2 s to spare on a loaded machine),
    // so both are answered, while together they pass it: B must not inherit A's start.
    let mut m = mgmt_config(None);
    m.idle_timeout = Duration::from_secs(3);
    let srv = mgmt_simple(APP, m);
    let mut s = srv.raw_mgmt();
    s.write_all(b"GET /healthz HTTP/1.1\r\n").unwrap();
    pause_reading(&mut s, Duration::from_millis(1800));
    s.write_all(b"Host: x\r\n\r\nGET /@connections HTTP/1.1\r\n")
        .unwrap();
    assert_eq!(read_response(&mut s, false).status, 200);
    pause_reading(&mut s, Duration::from_millis(1800));
    s.write_all(b"Host: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let b = read_response(&mut s, false);
    assert_eq!((b.status, b.json()), (200, json!([])));
    expect_eof(&mut s);
}

/// Wait `d` for bytes that must not come (a blocking read with that deadline).
fn pause_reading(s: &mut std::net::TcpStream, d: Duration) {
    s.set_read_timeout(Some(d)).unwrap();
    let mut b = [0u8; 64];
    let start = Instant::now();
    loop {
        match s.read(&mut b) {
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => break,
            // A signal cut the wait short: wait out the rest.
            Err(e) if e.kind() == ErrorKind::Interrupted && start.elapsed() < d => {
                s.set_read_timeout(Some(d - start.elapsed())).unwrap();
            }
            other => panic!("expected silence, got {other:?}"),
        }
    }
    s.set_read_timeout(Some(DEADLINE)).unwrap();
}

#[test]
fn a_connection_still_in_on_connect_is_not_listed_and_posts_to_it_are_410() {
    const YAML: &str = r#"
api:
  events:
    - name: on_connect
      policies:
        - record
        - gate
    - name: connectionId
      policies:
        - headerHandler: [connection-id]
"#;
    let (rec, rx) = recorder();
    let (gate, g) = support::gate();
    let srv = mgmt_server(
        YAML,
        |r| {
            r.register("record", rec);
            r.register("gate", gate);
        },
        test_config(),
        mgmt_config(None),
    );
    let mut ws = srv.ws();
    let id = rx.recv_timeout(DEADLINE).unwrap()["connection-id"]
        .as_str()
        .unwrap()
        .to_string();
    g.wait_entered();
    assert_eq!(srv.get("/@connections").json(), json!([]));
    assert_eq!(srv.get(&format!("/@connections/{id}")).status, 410);
    assert_eq!(
        srv.call("POST", &format!("/@connections/{id}"), "", b"{}")
            .status,
        410
    );
    g.open();
    assert_eq!(
        ws.request(&json!({"name": "connectionId"}))["body"],
        json!(id)
    );
    assert_eq!(srv.get("/@connections").json(), json!([id]));
}

#[test]
fn delete_unlists_at_once_and_on_disconnect_runs() {
    const YAML: &str = r#"
api:
  events:
    - name: on_disconnect
      policies:
        - record
    - name: connectionId
      policies:
        - headerHandler: [connection-id]
"#;
    let (rec, rx) = recorder();
    let srv = mgmt_server(
        YAML,
        |r| {
            r.register("record", rec);
        },
        test_config(),
        mgmt_config(None),
    );
    let (mut ws, id) = srv.ws_with_id();
    assert_eq!(
        srv.call("DELETE", &format!("/@connections/{id}"), "", b"")
            .status,
        204
    );
    // Before the client answers the close: already gone from the list.
    assert_eq!(srv.get("/@connections").json(), json!([]));
    assert_eq!(
        srv.call("POST", &format!("/@connections/{id}"), "", b"{}")
            .status,
        410
    );
    ws.expect_close(1000, None);
    let seen = rx.recv_timeout(DEADLINE).expect("on_disconnect ran");
    assert_eq!(seen["name"], "on_disconnect");
    assert_eq!(seen["connection-id"], json!(id));
}

#[test]
fn other_refused_requests_get_417_505_and_501_and_close() {
    let srv = app();
    let r = hostile(
        &srv,
        b"POST /@connections/x HTTP/1.1\r\nHost: x\r\nExpect: teapot\r\nContent-Length: 2\r\n\r\n{}",
    );
    assert_eq!(r.status, 417);
    assert_eq!(
        hostile(&srv, b"GET /healthz HTTP/2.0\r\nHost: x\r\n\r\n").status,
        505
    );
    // A coding the server does not implement, framed by chunked: 501. Without chunked
    // last the body's end is unknown: 400.
    let r = hostile(
        &srv,
        b"POST /@connections/x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
    );
    assert_eq!(r.status, 501);
    let r = hostile(
        &srv,
        b"POST /@connections/x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n",
    );
    assert_eq!(r.status, 400);
    // A missing Host and a repeated one.
    assert_eq!(hostile(&srv, b"GET /healthz HTTP/1.1\r\n\r\n").status, 400);
    assert_eq!(
        hostile(&srv, b"GET /healthz HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n").status,
        400
    );
}

#[test]
fn http_1_0_closes_unless_it_asks_for_keep_alive() {
    let srv = app();
    let mut s = srv.raw_mgmt();
    s.write_all(b"GET /healthz HTTP/1.0\r\nHost: x\r\n\r\n")
        .unwrap();
    let r = read_response(&mut s, false);
    assert_eq!(r.status, 200);
    expect_eof(&mut s);
    let mut s = srv.raw_mgmt();
    s.write_all(b"GET /healthz HTTP/1.0\r\nHost: x\r\nConnection: keep-alive\r\n\r\nGET /healthz HTTP/1.0\r\nHost: x\r\n\r\n")
        .unwrap();
    assert_eq!(read_response(&mut s, false).status, 200);
    assert_eq!(read_response(&mut s, false).status, 200);
    expect_eof(&mut s);
}

#[test]
fn postback_url_and_postbacks_work_on_an_ipv6_management_listener() {
    let (h, rx) = recorder();
    let mut m = mgmt_config(None);
    m.listen = "[::1]:0".parse().unwrap();
    let srv = mgmt_server(
        "api:\n  events:\n    - name: record\n      policies:\n        - record\n",
        |r| {
            r.register("record", h);
        },
        test_config(),
        m,
    );
    let mut ws = srv.ws();
    let url = postback_url(&mut ws, &rx);
    assert!(
        url.starts_with(&format!("http://[::1]:{}/@connections/", srv.mgmt().port())),
        "{url}"
    );
    let out = post_cmd()
        .args(["post", &url, "-"])
        .env_remove("CONFIGURAPI_MANAGEMENT_TOKEN")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            // Dropped after the write: the child sees the end of its input.
            child
                .stdin
                .take()
                .unwrap()
                .write_all(br#"{"from":"stdin"}"#)?;
            wait_output_within(child, "post -")
        })
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert_eq!(ws.recv()["body"], json!({"from": "stdin"}));
}

#[test]
fn a_client_that_half_closes_after_its_request_gets_the_answer() {
    let srv = app();
    let mut s = srv.raw_mgmt();
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    s.shutdown(std::net::Shutdown::Write).unwrap();
    let r = read_response(&mut s, false);
    assert_eq!((r.status, r.text().as_str()), (200, "ok\n"));
    expect_eof(&mut s);
}

#[test]
fn the_postback_client_and_post_subcommand_reach_the_query_alias() {
    let srv = app();
    let (mut ws, id) = srv.ws_with_id();
    let url = format!("http://{}/post_@connection?id={id}", srv.mgmt());
    let r = postback(
        &url,
        &PostbackMessage {
            status_code: 200,
            headers: Map::new(),
            body: json!("via alias"),
            extra: Map::new(),
        },
    );
    assert!(r.is_ok(), "{r:?}");
    assert_eq!(ws.recv()["body"], "via alias");
    let out = post_cmd()
        .args(["post", &url, "plain text"])
        .env_remove("CONFIGURAPI_MANAGEMENT_TOKEN")
        .output_within_deadline()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert_eq!(ws.recv()["body"], "plain text");
    // A post without an id is a 400, reported as a status error (exit 1).
    let url = format!("http://{}/post_@connection", srv.mgmt());
    let r = postback(
        &url,
        &PostbackMessage {
            status_code: 200,
            headers: Map::new(),
            body: json!(""),
            extra: Map::new(),
        },
    );
    assert!(
        matches!(r, Err(PostbackError::Status(400, ref b)) if b.contains("No connection id")),
        "{r:?}"
    );
    let out = post_cmd()
        .args(["post", &url, "x"])
        .output_within_deadline()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
}
