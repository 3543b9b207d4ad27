//! The drain on shutdown (contract 9.5, issue #14 item 1) over real sockets: in
//! process through the server's shutdown handle, and the binary through real signals.
//!
//! Nothing sleeps to synchronise: reads have deadlines, and states are waited for
//! (healthz says 503, the process has exited) with a generous deadline.

mod support;

use std::io::Write;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::channel;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use configurapi_runner_ws::configurapi::{Context, Event, Handler, HandlerError};
use configurapi_runner_ws::runner::RunnerOptions;
use configurapi_runner_ws::ServerConfig;
use serde_json::{json, Value};
use support::{
    gate, http_call, mgmt_config, mgmt_server, read_frame, read_http_head, start_runner,
    test_config, upgrade_request, wait_held, ws_client, Bin, MgmtServer, Scratch, Ws, DEADLINE,
};

const APP: &str = r#"
api:
  events:
    - name: on_disconnect
      policies: [byeHandler]
    - name: slow
      policies: [slowHandler]
    - name: echo
      policies: [echoHandler]
"#;

/// Wait (with a deadline) until `/healthz` answers 503, and return its body.
fn wait_healthz_503(srv: &MgmtServer) -> String {
    let deadline = Instant::now() + DEADLINE;
    loop {
        let r = srv.get("/healthz");
        if r.status == 503 {
            return r.text();
        }
        assert_eq!(r.status, 200, "healthz answered {}", r.status);
        assert!(Instant::now() < deadline, "healthz never said 503");
        std::thread::yield_now();
    }
}

#[test]
fn s9_5_a_request_running_at_shutdown_is_answered_then_1001_then_on_disconnect() {
    let (gate_handler, gate) = gate();
    // Set when the slow handler has finished; on_disconnect reports what it saw.
    let finished = Arc::new(AtomicBool::new(false));
    let (bye_tx, bye) = channel();
    let bye_tx = Mutex::new(bye_tx);
    let f = Arc::clone(&finished);
    let srv = mgmt_server(
        APP,
        move |r| {
            r.register(
                "slowHandler",
                move |e: &mut Event, p: &[Value], c: &mut Context| -> Result<(), HandlerError> {
                    Handler::call(&gate_handler, e, p, c)?;
                    e.response.body = json!("slow done").into();
                    f.store(true, Ordering::SeqCst);
                    Ok(())
                },
            );
            r.register(
                "byeHandler",
                move |_: &mut Event, _: &[Value], _: &mut Context| -> Result<(), HandlerError> {
                    let seen = finished.load(Ordering::SeqCst);
                    bye_tx.lock().unwrap().send(seen).unwrap();
                    Ok(())
                },
            );
        },
        test_config(),
        mgmt_config(None),
    );
    assert_eq!(srv.get("/healthz").status, 200);
    let mut ws = srv.ws();
    ws.send(&json!({"name": "slow", "headers": {"message-id": "s1"}}));
    gate.wait_entered();
    srv.handle.shutdown().unwrap();

    // The load balancer is told at once, and the management API keeps answering.
    assert_eq!(wait_healthz_503(&srv), "shutting down\n");
    assert_eq!(srv.get("/metrics").status, 200);
    // New upgrades: 503 with Retry-After while the listener stays up.
    let mut late = srv.raw();
    late.write_all(upgrade_request("/").as_bytes()).unwrap();
    let head = read_http_head(&mut late);
    assert!(head.starts_with("HTTP/1.1 503 "), "{head}");
    assert!(
        head.to_ascii_lowercase().contains("retry-after: "),
        "{head}"
    );

    // The running request gets its answer, then the 1001.
    gate.open();
    let answer = ws.recv();
    assert_eq!(answer["statusCode"], 200, "{answer}");
    assert_eq!(answer["body"], "slow done", "{answer}");
    assert_eq!(answer["headers"]["message-id"], "s1", "{answer}");
    let (b0, payload) = read_frame(&mut ws.s);
    assert_eq!(b0, 0x88);
    assert_eq!(u16::from_be_bytes([payload[0], payload[1]]), 1001);
    assert_eq!(&payload[2..], b"server shutdown");
    // Still draining (the close is not answered yet): healthz still answers, 503.
    assert_eq!(srv.get("/healthz").status, 503);
    ws.answer_close();
    // on_disconnect ran once, after the handler had finished.
    assert_eq!(bye.recv_timeout(DEADLINE), Ok(true));
    drop(srv); // joins the reactor: the drain is over
    assert!(bye.try_recv().is_err(), "on_disconnect ran twice");
}

#[test]
fn s9_5_a_stream_running_at_shutdown_completes_before_the_1001() {
    const COUNT: usize = 2000;
    const CHUNK: usize = 4096;
    let yaml = format!(
        "api:\n  events:\n    - name: big\n      policies:\n        - streamHandler: [{COUNT}, {CHUNK}]\n"
    );
    let cfg = ServerConfig {
        high_water: 64 << 10,
        low_water: 16 << 10,
        ..test_config()
    };
    let srv = start_runner(&yaml, |_| {}, cfg, RunnerOptions::default());
    let mut s = srv.raw();
    s.write_all(upgrade_request("/").as_bytes()).unwrap();
    assert!(read_http_head(&mut s).starts_with("HTTP/1.1 101 "));
    let mut ws = Ws { s };
    ws.send(&json!({"name": "big", "headers": {"message-id": "b"}}));
    // The client reads nothing until the stream is parked on its full queue: it is
    // running when the shutdown comes.
    wait_held(&srv.handle, u64::MAX, 1);
    srv.handle.shutdown().unwrap();
    let mut chunks = 0;
    loop {
        let frame = ws.recv();
        match frame["headers"]["x-stream"].as_str() {
            Some("chunk") => chunks += 1,
            Some("done") => break,
            _ => panic!("not a stream frame: {frame}"),
        }
    }
    assert_eq!(chunks, COUNT);
    ws.expect_close(1001, Some("server shutdown"));
}

/// The binary serving `config`, with the management API on; the WebSocket and
/// management addresses.
fn start_bin(config: &str, extra: &[&str]) -> (Bin, SocketAddr, SocketAddr) {
    let dir = Scratch::new("drain");
    let path = dir.write("config.yaml", config);
    let mut args = vec!["--config", path.to_str().unwrap()];
    args.extend_from_slice(extra);
    Bin::start_with_management(&args)
}

fn healthz(mgmt: SocketAddr) -> u16 {
    http_call(mgmt, "GET", "/healthz", "", b"").status
}

const SLOW_BIN: &str = r#"
api:
  events:
    - name: slow
      policies:
        - delayHandler: [30000]
    - name: echo
      policies: [echoHandler]
"#;

/// Send `slow`, then `echo`: the echo's answer shows the runner has read the slow
/// request (it reads a connection's messages in order).
fn start_slow_request(addr: SocketAddr) -> Ws {
    let mut ws = ws_client(addr);
    ws.send(&json!({"name": "slow", "headers": {"message-id": "slow"}}));
    let echo = ws.request(&json!({"name": "echo", "payload": 1, "headers": {"message-id": "e"}}));
    assert_eq!(echo["headers"]["message-id"], "e", "{echo}");
    ws
}

#[test]
fn s9_5_sigterm_with_a_handler_longer_than_the_timeout_exits_0_on_time_and_says_what_ran() {
    let (mut bin, addr, mgmt) = start_bin(SLOW_BIN, &["--shutdown-timeout", "1s"]);
    let mut ws = start_slow_request(addr);
    bin.signal("TERM");
    // healthz says 503 while the handler runs (the drain waits for it).
    let deadline = Instant::now() + DEADLINE;
    while healthz(mgmt) != 503 {
        assert!(Instant::now() < deadline, "healthz never said 503");
        std::thread::yield_now();
    }
    assert_eq!(bin.exit_code(), Some(0));
    let line = bin.wait_line("shutdown timeout");
    assert!(line.contains("1 requests still running"), "{line}");
    // The connection was told on the way out, best effort: a 1001 or a dropped TCP.
    let mut rest = Vec::new();
    let _ = std::io::Read::read_to_end(&mut ws.s, &mut rest);
    if rest.len() >= 4 {
        assert_eq!(&rest[..4], &[0x88, 17, 0x03, 0xE9], "{rest:?}");
    }
}

#[test]
fn s9_5_a_second_signal_ends_the_drain_at_once() {
    let (mut bin, addr, _) = start_bin(SLOW_BIN, &["--shutdown-timeout", "60s"]);
    let _ws = start_slow_request(addr);
    bin.signal("TERM");
    bin.wait_line("draining");
    bin.signal("TERM");
    // 128 + SIGTERM, long before the 60 s timeout or the 30 s handler.
    assert_eq!(bin.exit_code(), Some(143));
    bin.wait_line("exiting now");
}

#[test]
fn s9_5_sigterm_answers_the_running_request_then_closes_and_exits_0() {
    let yaml = "api:\n  events:\n    - name: slow\n      policies:\n        - delayHandler: [1500]\n    - name: echo\n      policies: [echoHandler]\n";
    let (mut bin, addr, _) = start_bin(yaml, &["--shutdown-timeout", "30s"]);
    let mut ws = start_slow_request(addr);
    bin.signal("TERM");
    bin.wait_line("draining");
    let answer = ws.recv();
    assert_eq!(answer["headers"]["message-id"], "slow", "{answer}");
    assert_eq!(answer["statusCode"], 200, "{answer}");
    ws.expect_close(1001, Some("server shutdown"));
    assert_eq!(bin.exit_code(), Some(0));
    bin.wait_line("stopped");
    assert!(
        !bin.seen().iter().any(|l| l.contains("shutdown timeout")),
        "{:?}",
        bin.seen()
    );
}

#[test]
fn s9_5_requests_suspended_on_a_timer_at_shutdown_are_all_answered_before_their_1001() {
    let yaml = "api:\n  events:\n    - name: wait\n      policies:\n        - delayHandler: [300]\n        - echoHandler\n";
    let srv = start_runner(yaml, |_| {}, test_config(), RunnerOptions::default());
    let mut conns: Vec<Ws> = (0..5).map(|_| support::connect(&srv)).collect();
    for (i, ws) in conns.iter_mut().enumerate() {
        for j in 0..3 {
            ws.send(&json!({"name": "wait", "payload": j, "headers": {"message-id": format!("{i}-{j}")}}));
        }
    }
    support::wait_until(&srv, "all 15 requests are suspended", |s| {
        s.handle.stats().unwrap().waiting == 15
    });
    srv.handle.shutdown().unwrap();
    for (i, mut ws) in conns.into_iter().enumerate() {
        let mut ids: Vec<String> = (0..3)
            .map(|_| {
                ws.recv()["headers"]["message-id"]
                    .as_str()
                    .unwrap()
                    .to_string()
            })
            .collect();
        ids.sort();
        assert_eq!(ids, (0..3).map(|j| format!("{i}-{j}")).collect::<Vec<_>>());
        ws.expect_close(1001, Some("server shutdown"));
    }
}
