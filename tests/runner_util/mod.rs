//! Helpers for the runner's integration tests: start a Configurapi runner on a free
//! port, talk JSON envelopes over raw sockets, and observe handlers through channels.
#![allow(dead_code)]

use std::io::Write;
use std::net::TcpStream;
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use configurapi_runner_ws::configurapi::{
    Context, Event, Handler, HandlerError, HandlerRegistry, Service,
};
use configurapi_runner_ws::runner::{self, Runner, RunnerOptions};
use configurapi_runner_ws::{Mode, ServerConfig};
use serde_json::{json, Value};

use crate::util::{client_frame, read_frame, read_http_head, read_to_eof, TestServer, DEADLINE};

/// The settings every runner test starts from: 4 workers (so concurrency does not
/// depend on the machine) and a close timeout longer than the tests' read deadline,
/// so a close handshake that only ends by timing out fails the test instead of
/// passing slowly.
pub fn test_config() -> ServerConfig {
    ServerConfig {
        workers: 4,
        close_timeout: DEADLINE * 2,
        ..Default::default()
    }
}

/// A runner for `yaml` with the built-ins, the ws pack and whatever `reg` adds.
pub fn start_runner(
    yaml: &str,
    reg: impl FnOnce(&mut HandlerRegistry),
    cfg: ServerConfig,
    opts: RunnerOptions,
) -> TestServer {
    let mut registry = runner::registry();
    registry.register("statusFromParamsHandler", status_from_params);
    registry.register("workerOnlyHandler", worker_only);
    reg(&mut registry);
    let service = Service::from_str(yaml, "test.yaml", registry).expect("test config loads");
    let runner = Runner::new(service, opts);
    TestServer::start(ServerConfig {
        mode: Mode::App(Arc::new(runner)),
        ..cfg
    })
}

/// `statusFromParamsHandler`: the response status is `params.status` (from the
/// message or the upgrade URL's query), 200 without one. Registered on every test
/// runner.
pub fn status_from_params(
    event: &mut Event,
    _: &[Value],
    _: &mut Context,
) -> Result<(), HandlerError> {
    event.response.status_code = match event.params.get("status") {
        Some(Value::String(s)) => s.parse().map_err(|_| HandlerError::new("bad status"))?,
        Some(Value::Number(n)) => n.as_u64().unwrap_or(500) as u16,
        _ => 200,
    };
    Ok(())
}

/// `workerOnlyHandler`: does nothing, and is not marked non-blocking, so a route that
/// uses it runs on a worker, never inline on the reactor. It checks that: on any
/// thread but a worker it fails the request (a 500 the test sees). Registered on every
/// test runner.
pub fn worker_only(_: &mut Event, _: &[Value], _: &mut Context) -> Result<(), HandlerError> {
    match std::thread::current().name() {
        Some(name) if name.starts_with("worker-") => Ok(()),
        other => Err(HandlerError::new(format!(
            "workerOnlyHandler ran on thread {other:?}, not a worker"
        ))),
    }
}

/// A runner for `yaml` with only the built-in handlers and the test defaults.
pub fn simple_runner(yaml: &str) -> TestServer {
    start_runner(yaml, |_| {}, test_config(), RunnerOptions::default())
}

/// A client connection over a raw socket (masked frames, exact reads).
pub struct Ws {
    pub s: TcpStream,
}

/// Upgrade with `target` and extra header lines (each ending in `\r\n`); returns the
/// response head too.
pub fn connect_with(srv: &TestServer, target: &str, extra_headers: &str) -> (Ws, String) {
    let mut s = srv.raw();
    let req = format!(
        "GET {target} HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{extra_headers}\r\n"
    );
    s.write_all(req.as_bytes()).unwrap();
    let head = read_http_head(&mut s);
    assert!(head.starts_with("HTTP/1.1 101 "), "{head}");
    (Ws { s }, head)
}

/// Upgrade on `/`.
pub fn connect(srv: &TestServer) -> Ws {
    connect_with(srv, "/", "").0
}

impl Ws {
    /// Send a text frame.
    pub fn send_text(&mut self, text: &str) {
        self.s
            .write_all(&client_frame(0x81, text.as_bytes()))
            .unwrap();
    }

    /// Send a binary frame.
    pub fn send_binary(&mut self, bytes: &[u8]) {
        self.s.write_all(&client_frame(0x82, bytes)).unwrap();
    }

    /// Send a JSON message as a text frame.
    pub fn send(&mut self, msg: &Value) {
        self.send_text(&msg.to_string());
    }

    /// The next frame, which must be a text frame holding JSON.
    pub fn recv(&mut self) -> Value {
        let (b0, payload) = read_frame(&mut self.s);
        assert_eq!(
            b0,
            0x81,
            "expected a text frame, got {b0:#x} {:?}",
            String::from_utf8_lossy(&payload)
        );
        serde_json::from_slice(&payload).unwrap_or_else(|e| {
            panic!(
                "frame is not JSON ({e}): {:?}",
                String::from_utf8_lossy(&payload)
            )
        })
    }

    /// Send `msg` and read the next frame.
    pub fn request(&mut self, msg: &Value) -> Value {
        self.send(msg);
        self.recv()
    }

    /// The next frame must be a close frame with `code` (and `reason` if given). The
    /// client answers it (RFC 6455 5.5.1), and then the server closes TCP.
    pub fn expect_close(&mut self, code: u16, reason: Option<&str>) {
        let (b0, payload) = read_frame(&mut self.s);
        assert_eq!(
            b0,
            0x88,
            "expected a close frame, got {b0:#x} {:?}",
            String::from_utf8_lossy(&payload)
        );
        assert!(payload.len() >= 2, "close frame without a code");
        assert_eq!(u16::from_be_bytes([payload[0], payload[1]]), code);
        if let Some(reason) = reason {
            assert_eq!(String::from_utf8_lossy(&payload[2..]), reason);
        }
        // A server that is already finishing may have closed: a failed write is fine.
        let _ = self.s.write_all(&client_frame(0x88, &payload[..2]));
        read_to_eof(&mut self.s);
        // The server reads until our FIN: send it, the connection is over.
        let _ = self.s.shutdown(std::net::Shutdown::Both);
    }

    /// Client-initiated close with 1000: the server answers with 1000 and closes TCP.
    pub fn close(mut self) {
        self.s
            .write_all(&client_frame(0x88, &1000u16.to_be_bytes()))
            .unwrap();
        let (b0, payload) = read_frame(&mut self.s);
        assert_eq!((b0, &payload[..]), (0x88, &1000u16.to_be_bytes()[..]));
        read_to_eof(&mut self.s);
    }

    /// Answer a server's close frame (already read) with 1000 and wait for EOF.
    pub fn answer_close(mut self) {
        // The server may already have closed its side; a failed write is fine.
        let _ = self
            .s
            .write_all(&client_frame(0x88, &1000u16.to_be_bytes()));
        read_to_eof(&mut self.s);
    }
}

/// A handler that reports what it saw on a channel: the `tag` parameter (resolved with
/// `$(...)`), the event
/// name, the connection-id, the identity id, the request headers, params and query.
pub fn recorder() -> (impl Handler + 'static, Receiver<Value>) {
    let (tx, rx) = channel();
    let handler = move |event: &mut Event, params: &[Value], _: &mut Context| {
        let _ = tx.send(json!({
            "tag": params.first().map(|t| event.resolve(t)).unwrap_or(Value::Null),
            "name": event.name,
            "connection-id": event.request.headers.get("connection-id").cloned(),
            "identity": event.identity.as_ref().map(|i| i.id.clone()),
            "headers": event.request.headers,
            "params": event.params,
            "query": event.request.query,
        }));
        Ok(())
    };
    (handler, rx)
}

/// A gate a handler waits at until the test opens it. `entered` reports each arrival.
pub struct Gate {
    pub entered: Receiver<()>,
    release: Sender<()>,
}

impl Gate {
    /// Let one waiting (or future) handler through.
    pub fn open(&self) {
        self.release.send(()).unwrap();
    }

    /// Wait until a handler reached the gate.
    pub fn wait_entered(&self) {
        self.entered
            .recv_timeout(DEADLINE)
            .expect("the handler reached the gate");
    }
}

/// A handler that waits at a gate (at most `DEADLINE`), then continues.
pub fn gate() -> (impl Handler + 'static, Gate) {
    gate_for(DEADLINE)
}

/// A gate that gives up after `limit` (the request then fails with a 500 "gate never
/// opened"): for tests that do more while a handler waits than `DEADLINE` allows on a
/// loaded machine.
pub fn gate_for(limit: std::time::Duration) -> (impl Handler + 'static, Gate) {
    let (entered_tx, entered) = channel();
    let (release, release_rx) = channel();
    let release_rx = Mutex::new(release_rx);
    let handler = move |_: &mut Event, _: &[Value], _: &mut Context| {
        let _ = entered_tx.send(());
        release_rx
            .lock()
            .unwrap()
            .recv_timeout(limit)
            .map_err(|_| HandlerError::new("gate never opened"))?;
        Ok(())
    };
    (handler, Gate { entered, release })
}

/// Wait (polling the reactor, with a deadline) until `cond` holds.
pub fn wait_until(srv: &TestServer, what: &str, cond: impl Fn(&TestServer) -> bool) {
    let deadline = Instant::now() + DEADLINE;
    while !cond(srv) {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::yield_now();
    }
}

/// Wait until the server has no connection left (open or closing).
pub fn wait_all_gone(srv: &TestServer) {
    wait_until(srv, "every connection is gone", |s| {
        s.handle.connections().unwrap().is_empty() && s.handle.stats().unwrap().open == 0
    });
}

/// Bytes one streamHandler chunk frame of `chunk` bytes takes on the wire for a
/// request with `message_id`: the envelope plus a 4-byte frame header.
pub fn stream_chunk_frame_len(chunk: usize, message_id: &str) -> usize {
    let envelope = format!(
        r#"{{"statusCode":200,"headers":{{"x-stream":"chunk","x-stream-id":"{}","message-id":"{message_id}"}},"body":"{}"}}"#,
        uuid::Uuid::new_v4(),
        "x".repeat(chunk)
    );
    envelope.len() + 4
}

/// True for a UUID v4 in its hyphenated lowercase form.
pub fn is_uuid_v4(s: &str) -> bool {
    s.len() == 36
        && uuid::Uuid::parse_str(s).is_ok_and(|u| u.get_version_num() == 4)
        && s == s.to_lowercase()
}

/// Everything a channel holds right now.
pub fn drain<T>(rx: &Receiver<T>) -> Vec<T> {
    rx.try_iter().collect()
}
