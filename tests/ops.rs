//! Logs and metrics as an operator reads them (issue #14 items 3 and 4), from the
//! binary over real sockets: the JSON log lines and their fields, the filters, and the
//! `/metrics` response counters adding up to the answers a client received.
//!
//! Nothing sleeps: stderr lines and socket reads are waited for with a deadline.

mod support;

use std::collections::BTreeMap;
use std::net::{SocketAddr, TcpStream};

use serde_json::{json, Value};
use support::{ask_text, free_port, http_call, tungstenite_at, Bin, Scratch};

const APP: &str = r#"
api:
  events:
    - name: echo
      policies: [echoHandler]
    - name: boom
      policies: [throwHandler]
    - name: bad
      policies:
        - throwHandler: ["bad input", 422]
"#;

fn client(addr: SocketAddr) -> tungstenite::WebSocket<TcpStream> {
    tungstenite_at(addr, "/")
}

/// `GET /metrics` on the management port: the samples, `name{labels}` to value.
fn metrics(port: &str) -> BTreeMap<String, f64> {
    let addr = format!("127.0.0.1:{port}").parse().unwrap();
    let r = http_call(addr, "GET", "/metrics", "", b"");
    assert_eq!(r.status, 200, "{}", r.text());
    let body = r.text();
    body.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let (k, v) = l.rsplit_once(' ').unwrap();
            (k.to_string(), v.parse().unwrap())
        })
        .collect()
}

/// The messages of the test, each a kind of answer: a success, a message that cannot
/// be decoded (JSON that is not an object), text that is not JSON (an event with no
/// name: no route, 501), an unknown event (501), a handler error and a handler's 4xx.
const MESSAGES: [&str; 6] = [
    r#"{"name":"echo","payload":1}"#,
    "[1, 2]",
    "not json",
    r#"{"name":"nope"}"#,
    r#"{"name":"boom"}"#,
    r#"{"name":"bad"}"#,
];

/// True when `ts` is RFC 3339 in UTC with milliseconds (`2026-12-05T01:30:20.123Z`).
fn is_rfc3339_utc(ts: &str) -> bool {
    let b = ts.as_bytes();
    b.len() == 24
        && b.iter().enumerate().all(|(i, &c)| match i {
            4 | 7 => c == b'-',
            10 => c == b'T',
            13 | 16 => c == b':',
            19 => c == b'.',
            23 => c == b'Z',
            _ => c.is_ascii_digit(),
        })
}

#[test]
fn json_logs_have_timestamps_access_lines_and_client_mistakes_below_error() {
    let dir = Scratch::new("ops-json");
    let config = dir.write("config.yaml", APP);
    let port = free_port();
    let (mut bin, addr) = Bin::start(&[
        "--config",
        config.to_str().unwrap(),
        "--management-port",
        &port,
        "--log-format",
        "json",
    ]);
    let mut ws = client(addr);
    let statuses: Vec<u64> = MESSAGES
        .iter()
        .map(|m| ask_text(&mut ws, m)["statusCode"].as_u64().unwrap())
        .collect();
    assert_eq!(statuses, [200, 400, 501, 501, 500, 422]);

    // One access line per answer, in order, with its fields.
    let mut conn = None;
    for (status, event) in statuses.iter().zip(["echo", "", "", "nope", "boom", "bad"]) {
        let line = bin.wait_line("configurapi_runner_ws::access");
        let v: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["level"], "INFO", "{line}");
        assert_eq!(v["msg"], "handled", "{line}");
        assert_eq!(v["event"], event, "{line}");
        assert_eq!(v["status"], *status, "{line}");
        assert!(v["latency_ms"].as_f64().unwrap() >= 0.0, "{line}");
        // The Configurapi connection-id, the same on every line of this client.
        let id = v["conn"].as_str().unwrap().to_string();
        assert_eq!(id.len(), 36, "{line}");
        assert_eq!(conn.get_or_insert(id.clone()), &id);
    }
    // Every line so far is one JSON object with the four keys and a UTC timestamp;
    // only the server's fault (the 500) is an error.
    let mut failures = BTreeMap::new();
    for line in &bin.seen() {
        let v: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        let ts = v["ts"].as_str().unwrap();
        assert!(is_rfc3339_utc(ts), "{line}");
        assert!(v["target"].is_string() && v["msg"].is_string(), "{line}");
        let level = v["level"].as_str().unwrap();
        assert!(
            ["ERROR", "WARN", "INFO", "DEBUG", "TRACE"].contains(&level),
            "{line}"
        );
        let msg = v["msg"].as_str().unwrap();
        if let Some((_, event)) = msg.split_once("Failed to handle ") {
            let event = event.split(':').next().unwrap().to_string();
            failures.insert(event, level.to_string());
        }
    }
    let want: BTreeMap<String, String> = [
        ("".to_string(), "WARN".to_string()),
        ("nope".to_string(), "WARN".to_string()),
        ("boom".to_string(), "ERROR".to_string()),
        ("bad".to_string(), "WARN".to_string()),
    ]
    .into();
    assert_eq!(failures, want, "{:#?}", bin.seen());
}

#[test]
fn response_counters_add_up_to_the_answers_the_client_received() {
    let dir = Scratch::new("ops-metrics");
    let config = dir.write("config.yaml", APP);
    let port = free_port();
    let (_bin, addr) = Bin::start(&[
        "--config",
        config.to_str().unwrap(),
        "--management-port",
        &port,
        "--access-log",
        "off",
    ]);
    let mut ws = client(addr);
    let mut received: BTreeMap<u64, u64> = BTreeMap::new();
    // Twice over, so that a count of one cannot pass by luck.
    for m in MESSAGES.iter().chain(MESSAGES.iter()) {
        let status = ask_text(&mut ws, m)["statusCode"].as_u64().unwrap();
        *received.entry(status).or_default() += 1;
    }
    assert_eq!(received.values().sum::<u64>(), 12);

    // The answers are counted before they are sent, so they are all in by now.
    let m = metrics(&port);
    let counted: BTreeMap<u64, u64> = m
        .iter()
        .filter_map(|(k, v)| {
            let s = k.strip_prefix("configurapi_ws_responses_total{status_code=\"")?;
            Some((s.trim_end_matches("\"}").parse().unwrap(), *v as u64))
        })
        .collect();
    assert_eq!(counted, received, "{m:#?}");

    // Latency by the route that handled it; the undecodable message ran none.
    let count = |label: &str| {
        m.get(&format!(
            "configurapi_ws_handler_duration_seconds_count{{event=\"{label}\"}}"
        ))
        .copied()
        .unwrap_or(0.0)
    };
    assert_eq!(
        [
            count("echo"),
            count("boom"),
            count("bad"),
            count("(unmatched)")
        ],
        [2.0, 2.0, 2.0, 4.0],
        "{m:#?}"
    );
    let version = format!(
        "configurapi_ws_build_info{{version=\"{}\"}}",
        env!("CARGO_PKG_VERSION")
    );
    assert_eq!(m.get(&version), Some(&1.0), "{m:#?}");
    if cfg!(target_os = "linux") {
        assert!(m["process_resident_memory_bytes"] > 0.0);
        // The listeners, the poller and this client's connection at least.
        assert!(m["process_open_fds"] >= 4.0);
        assert!(m["process_start_time_seconds"] > 1_577_836_800.0);
        assert!(m.contains_key("process_cpu_seconds_total"));
    }
    drop(ws);
}

#[test]
fn text_logs_follow_rust_log_and_access_log_off() {
    let dir = Scratch::new("ops-text");
    let config = dir.write("config.yaml", APP);
    let (mut bin, addr) = Bin::start_with_env(
        &[
            "--config",
            config.to_str().unwrap(),
            "--access-log",
            "off",
            "--management-port",
            "0",
        ],
        // The core's logs at error only: its warning for the unknown event is not shown.
        // The connection lines at debug, for this module only.
        &[(
            "RUST_LOG",
            "configurapi=error,configurapi_runner_ws::conn=debug",
        )],
    );
    let mut ws = client(addr);
    assert_eq!(
        ask_text(&mut ws, r#"{"name":"nope"}"#)["statusCode"],
        json!(501)
    );
    assert_eq!(
        ask_text(&mut ws, r#"{"name":"boom"}"#)["statusCode"],
        json!(500)
    );
    // The connection's open and close lines carry its id and the close code.
    let open = bin.wait_line("connection open");
    assert!(
        open.contains(" DEBUG configurapi_runner_ws::conn: "),
        "{open}"
    );
    let line = bin.wait_line("Failed to handle boom");
    assert!(line.contains(" ERROR configurapi: "), "{line}");
    ws.close(Some(tungstenite::protocol::CloseFrame {
        code: tungstenite::protocol::frame::coding::CloseCode::Away,
        reason: "".into(),
    }))
    .unwrap();
    while ws.read().is_ok() {}
    let closed = bin.wait_line("closed by the peer, code 1001");
    let id = open.split_whitespace().nth(3).unwrap();
    // The connection-id (rendered for these lines only when they are logged), not "-".
    let hex = id.chars().filter(|c| c.is_ascii_hexdigit()).count();
    assert!(id.len() == 36 && hex == 32, "{open}");
    assert!(closed.contains(id), "{open}\n{closed}");
    // Then a line of the runner's own that comes after everything above.
    drop(ws);
    bin.signal("TERM");
    bin.wait_line("stopped");
    assert_eq!(bin.exit_code(), Some(0));
    for line in &bin.seen() {
        assert!(is_rfc3339_utc(&line[..24]), "{line}");
        assert!(!line.contains("Failed to handle nope"), "{line}");
        assert!(!line.contains("handled"), "{line}");
    }
    assert!(bin
        .seen()
        .iter()
        .any(|l| l.contains(" INFO  configurapi_runner_ws")));
}
