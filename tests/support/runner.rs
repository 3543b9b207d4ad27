//! The runner's test settings and test handlers: gates a handler waits at, recorders
//! that report what a handler saw, and raw clients of a runner.

use std::net::TcpStream;
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::Mutex;

use configurapi_runner_ws::configurapi::{Context, Event, Handler, HandlerError};
use configurapi_runner_ws::ServerConfig;
use serde_json::{json, Value};

use super::client::{upgrade_on, Ws};
use super::server::TestServer;
use super::wait::DEADLINE;

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

/// Upgrade with `target` and extra header lines (each ending in `\r\n`); returns the
/// response head too.
pub fn connect_with(srv: &TestServer, target: &str, extra_headers: &str) -> (Ws, String) {
    let mut s = srv.raw();
    let head = upgrade_on(&mut s, target, extra_headers);
    (Ws { s }, head)
}

/// Upgrade on `/` (the runner tests' name for [`TestServer::ws`]).
pub fn connect(srv: &TestServer) -> Ws {
    srv.ws()
}

/// A runner for `yaml` with the test defaults and a `gateHandler` that waits at the
/// returned gate.
pub fn gated_runner(yaml: &str) -> (TestServer, Gate) {
    let (handler, gate) = gate();
    let srv = super::server::start_runner(
        yaml,
        |r| {
            r.register("gateHandler", handler);
        },
        test_config(),
        configurapi_runner_ws::runner::RunnerOptions::default(),
    );
    (srv, gate)
}
