//! The JS handler host (issue 13 item 1, contract 9.1-9.3 and 9.6): the app's `handlers/*.js`
//! run unchanged in one supervised `node` child, called over a pipe.
//!
//! ```text
//!  handler calls ─> JsHost::call ─> node stdin (a non-blocking write from the caller;
//!                                  a writer thread drains what the pipe had no room for)
//!  callbacks <─ reader thread <─ node stdout (one JSON object per line)
//!  supervisor thread: call deadlines (504), restarts with backoff after a crash
//!  push thread: pushed JS streams (other pushes are handed over without a thread)
//! ```
//!
//! The protocol is newline-delimited JSON both ways (`JSON.stringify` never writes a
//! raw newline, and Node decodes lines as fast as length-prefixed frames:
//! benches/jshost_framing.js). Rust sends `call`, `cancel`, `credit`, `stop` and `pushed`; the bridge
//! (`bridge.js`, embedded) sends `ready`, `done`, `log`, `push`, `chunk` and `end`.
//! Many calls are in flight at once: Node runs them concurrently on its event loop.

mod adapter;
mod load;
mod pipe;

pub use adapter::JsHandler;
pub use load::{load_service, JsOptions};

use std::collections::{HashMap, VecDeque};
use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use configurapi::{Chunk, ChunkStream, HandlerError, PushError, PushSink, ReadyJob, ReadySignal};

/// The bridge script, written to a temp file while a host process starts.
const BRIDGE: &str = include_str!("bridge.js");

/// The variable that hands the bridge the CA file of https:// postbacks.
const POSTBACK_CA_ENV: &str = "CONFIGURAPI_BRIDGE_POSTBACK_CA";

/// The default `--handler-timeout`.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// Time the host gets to load the handlers and say `ready`.
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// Consecutive failed starts or quick crashes after which calls are refused with 503
/// at once instead of waiting for the next restart.
const FAILURES_BEFORE_REFUSING: u32 = 5;

/// Longest pause between restarts.
const MAX_BACKOFF: Duration = Duration::from_secs(10);

/// A host that lived this long before dying counts as healthy: the backoff starts over.
const HEALTHY_UPTIME: Duration = Duration::from_secs(10);

/// Chunks a JS stream may have in flight (sent by Node, not yet framed by the runner).
const STREAM_WINDOW: u32 = 8;

/// How to start the host.
#[derive(Debug, Clone)]
pub struct HostOptions {
    /// The `node` program (`--node`, else `node` on PATH).
    pub node: PathBuf,
    /// The app's folder: the host's working directory, so `require` finds its
    /// `node_modules`.
    pub app_dir: PathBuf,
    /// The folder of handler files (`handlers/` beside the config, 9.1).
    pub handlers_dir: PathBuf,
    /// A call's deadline (`--handler-timeout`).
    pub timeout: Duration,
    /// The management token, which `wsPostbackFunction` in the host sends.
    pub token: Option<String>,
    /// The CA file of https:// postbacks (`--management-tls`), passed in rather than
    /// read from `postback` so the host has no path back into the runner.
    pub postback_ca: Option<PathBuf>,
}

/// How a call ended.
#[derive(Debug)]
pub enum JsOutcome {
    /// The handler returned or settled: the bridge's `done` message.
    Done(Value),
    /// No answer from the handler: host died (500), past the deadline (504), host
    /// unavailable (503).
    Failed {
        /// The status of the ErrorResponse the call fails with.
        status: u16,
        /// Why.
        message: String,
    },
}

/// What the host reported when it started.
#[derive(Debug, Clone)]
pub struct HostInfo {
    /// Handler names the bridge registered (9.1).
    pub handlers: Vec<String>,
    /// Files that failed to load, one line each.
    pub errors: Vec<String>,
    /// `process.version`.
    pub node_version: String,
    /// Where the Configurapi classes come from: `app` or `built-in`.
    pub configurapi: String,
}

type Callback = Box<dyn FnOnce(JsOutcome) + Send>;

struct Pending {
    cb: Callback,
    name: String,
    /// The process generation it was sent to (0: not sent yet).
    generation: u64,
    push: Option<Arc<dyn PushSink>>,
}

/// One running node process.
struct Proc {
    generation: u64,
    tx: Arc<pipe::Pipe>,
    child: Arc<Mutex<Child>>,
    started: Instant,
}

impl Drop for Proc {
    fn drop(&mut self) {
        // Its writer thread ends once the queue is written; Node then sees EOF.
        self.tx.close();
    }
}

struct State {
    pending: HashMap<u64, Pending>,
    /// (deadline, id) in call order, which is deadline order (one timeout for every
    /// call, taken under this lock); entries of finished calls are skipped.
    deadlines: VecDeque<(Instant, u64)>,
    proc: Option<Proc>,
    generation: u64,
    /// Calls made while no process runs, sent when one is ready.
    backlog: Vec<(u64, Vec<u8>)>,
    failures: u32,
    restart_at: Option<Instant>,
    stopping: bool,
    streams: HashMap<(u64, u64), Arc<StreamSlot>>,
}

struct Shared {
    opts: HostOptions,
    next_id: AtomicU64,
    bridge_path: PathBuf,
    state: Mutex<State>,
    /// Wakes the supervisor: a new deadline, a restart to schedule, shutdown.
    wake: Condvar,
    /// Signalled when `pending` empties (shutdown waits for in-flight calls).
    idle: Condvar,
    push_tx: Mutex<Sender<PushJob>>,
}

struct PushJob {
    sink: Arc<dyn PushSink>,
    response: Value,
    id: u64,
    generation: u64,
}

/// A handle on the handler host; clones share it.
#[derive(Clone)]
pub struct JsHost {
    shared: Arc<Shared>,
}

fn lock(m: &Mutex<State>) -> MutexGuard<'_, State> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn line(v: &Value) -> Vec<u8> {
    let mut bytes = serde_json::to_vec(v).unwrap_or_default();
    bytes.push(b'\n');
    bytes
}

impl JsHost {
    /// Start `node` with the bridge and wait until it has loaded the handlers. The
    /// error is one line naming node and the reason.
    pub fn start(opts: HostOptions) -> Result<(JsHost, HostInfo), String> {
        let bridge_path = std::env::temp_dir().join(format!(
            "configurapi-runner-ws-bridge-{}-{}.js",
            std::process::id(),
            uuid::Uuid::new_v4().simple()
        ));
        let (push_tx, push_rx) = mpsc::channel();
        let shared = Arc::new(Shared {
            opts,
            bridge_path,
            next_id: AtomicU64::new(1),
            state: Mutex::new(State {
                pending: HashMap::new(),
                deadlines: VecDeque::new(),
                proc: None,
                generation: 0,
                backlog: Vec::new(),
                failures: 0,
                restart_at: None,
                stopping: false,
                streams: HashMap::new(),
            }),
            wake: Condvar::new(),
            idle: Condvar::new(),
            push_tx: Mutex::new(push_tx),
        });
        let info = spawn(&shared)?;
        let weak = Arc::downgrade(&shared);
        std::thread::Builder::new()
            .name("jshost-supervisor".into())
            .spawn(move || supervise(weak))
            .map_err(|e| format!("cannot start the JS host supervisor thread: {e}"))?;
        let weak = Arc::downgrade(&shared);
        std::thread::Builder::new()
            .name("jshost-push".into())
            .spawn(move || push_loop(weak, push_rx))
            .map_err(|e| format!("cannot start the JS host push thread: {e}"))?;
        Ok((JsHost { shared }, info))
    }

    /// Call the JS handler `name` with an event (`event`: the JSON text of the bridge's
    /// event object, see [`JsHandler`]) and the policy's parameters; `this.emit` lines
    /// show when `log_rank` (the policy's log level as ranked in 3.5.1) allows them.
    /// `callback` runs exactly once, on a host thread.
    pub fn call(
        &self,
        name: &str,
        event: &[u8],
        params: &[Value],
        log_rank: u8,
        push: Option<Arc<dyn PushSink>>,
        callback: Callback,
    ) {
        // The line is built before the lock is taken; the id is the only shared part.
        let id = self.shared.next_id.fetch_add(1, Ordering::Relaxed);
        let mut msg = Vec::with_capacity(event.len() + 96);
        msg.extend_from_slice(b"{\"t\":\"call\",\"id\":");
        msg.extend_from_slice(id.to_string().as_bytes());
        msg.extend_from_slice(b",\"name\":");
        let _ = serde_json::to_writer(&mut msg, name);
        msg.extend_from_slice(b",\"params\":");
        let _ = serde_json::to_writer(&mut msg, params);
        msg.extend_from_slice(b",\"logRank\":");
        msg.extend_from_slice(log_rank.to_string().as_bytes());
        msg.extend_from_slice(b",\"event\":");
        msg.extend_from_slice(event);
        msg.extend_from_slice(b"}\n");
        let mut st = lock(&self.shared.state);
        if st.stopping {
            drop(st);
            callback(JsOutcome::Failed {
                status: 503,
                message: "The JS handler host is stopping.".into(),
            });
            return;
        }
        if st.proc.is_none() && st.failures >= FAILURES_BEFORE_REFUSING {
            drop(st);
            callback(JsOutcome::Failed {
                status: 503,
                message: "The JS handler host is unavailable (it keeps failing; see the log)."
                    .into(),
            });
            return;
        }
        let deadline = Instant::now() + self.shared.opts.timeout;
        let generation = match &st.proc {
            Some(p) if p.tx.send(&msg) => p.generation,
            _ => {
                st.backlog.push((id, msg));
                0
            }
        };
        st.pending.insert(
            id,
            Pending {
                cb: callback,
                name: name.to_string(),
                generation,
                push,
            },
        );
        let first = st.deadlines.is_empty();
        st.deadlines.push_back((deadline, id));
        if first {
            self.shared.wake.notify_all();
        }
    }

    /// Wait (up to `grace`) for in-flight calls to finish, then stop the process: its
    /// stdin closes and the bridge exits; after two more seconds it is killed.
    pub fn shutdown(&self, grace: Duration) {
        let until = Instant::now() + grace;
        let mut st = lock(&self.shared.state);
        while !st.pending.is_empty() {
            let now = Instant::now();
            if now >= until {
                log::warn!(
                    "JS handler host: stopping with {} calls still running",
                    st.pending.len()
                );
                break;
            }
            st = self
                .shared
                .idle
                .wait_timeout(st, until - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        st.stopping = true;
        let proc = st.proc.take();
        self.shared.wake.notify_all();
        drop(st);
        if let Some(p) = proc {
            p.tx.close(); // the writer ends, stdin closes, the bridge exits
            let stop_by = Instant::now() + Duration::from_secs(2);
            loop {
                let mut child = p.child.lock().unwrap_or_else(|e| e.into_inner());
                match child.try_wait() {
                    Ok(Some(_)) | Err(_) => break,
                    Ok(None) if Instant::now() >= stop_by => {
                        let _ = child.kill();
                        let _ = child.wait();
                        break;
                    }
                    Ok(None) => {}
                }
                drop(child);
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }

    /// Send a line to the current process if it is still `generation`.
    fn send_to(&self, generation: u64, msg: &Value) {
        send_to(&self.shared, generation, msg);
    }
}

fn send_to(shared: &Shared, generation: u64, msg: &Value) {
    let st = lock(&shared.state);
    if let Some(p) = &st.proc {
        if p.generation == generation {
            let _ = p.tx.send(&line(msg));
        }
    }
}

/// Spawn a process, wait for `ready`, install it. Called with no lock held.
fn spawn(shared: &Arc<Shared>) -> Result<HostInfo, String> {
    // The script exists only while a process starts: Node has read it once it says
    // ready, so a runner that is killed leaves no file behind.
    std::fs::write(&shared.bridge_path, BRIDGE).map_err(|e| {
        format!(
            "cannot write the JS bridge to {}: {e}",
            shared.bridge_path.display()
        )
    })?;
    let started = spawn_with_bridge(shared);
    let _ = std::fs::remove_file(&shared.bridge_path);
    started
}

fn spawn_with_bridge(shared: &Arc<Shared>) -> Result<HostInfo, String> {
    let opts = &shared.opts;
    let node = opts.node.display().to_string();
    let mut cmd = Command::new(&opts.node);
    if let Some(t) = &opts.token {
        cmd.env(crate::TOKEN_ENV, t);
    }
    // wsPostbackFunction's https:// postback-urls (--management-tls) reach a listener
    // serving this certificate: the bridge trusts it beside Node's own roots.
    // (NODE_EXTRA_CA_CERTS would do, but it is often set already, to one file only.)
    if let Some(ca) = &opts.postback_ca {
        cmd.env(POSTBACK_CA_ENV, ca);
    }
    let mut child = cmd
        .arg(&shared.bridge_path)
        .arg(&opts.handlers_dir)
        .current_dir(&opts.app_dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start the JS handler host: node '{node}': {e}"))?;
    let stdin = child.stdin.take().expect("piped");
    let stdout = child.stdout.take().expect("piped");
    let stderr = child.stderr.take().expect("piped");
    let pid = child.id();
    let child = Arc::new(Mutex::new(child));
    let generation = {
        let mut st = lock(&shared.state);
        st.generation += 1;
        st.generation
    };
    std::thread::Builder::new()
        .name("jshost-stderr".into())
        .spawn(move || forward_stderr(stderr, pid))
        .map_err(|e| format!("cannot start the JS host threads: {e}"))?;
    let (ready_tx, ready_rx) = mpsc::channel();
    let weak = Arc::downgrade(shared);
    let reader_child = Arc::clone(&child);
    std::thread::Builder::new()
        .name("jshost-reader".into())
        .spawn(move || read_loop(weak, generation, stdout, reader_child, ready_tx))
        .map_err(|e| format!("cannot start the JS host threads: {e}"))?;
    let tx = pipe::Pipe::start(stdin)
        .map_err(|e| format!("cannot start the JS host's stdin writer: {e}"))?;
    let ready = match ready_rx.recv_timeout(START_TIMEOUT) {
        Ok(Ok(v)) => v,
        Ok(Err(why)) => {
            let _ = child.lock().map(|mut c| c.kill());
            return Err(format!(
                "the JS handler host (node '{node}') did not start: {why}"
            ));
        }
        Err(_) => {
            let _ = child.lock().map(|mut c| c.kill());
            return Err(format!(
                "the JS handler host (node '{node}') did not load the handlers within {}s",
                START_TIMEOUT.as_secs()
            ));
        }
    };
    let strings = |k: &str| -> Vec<String> {
        ready[k]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default()
    };
    let info = HostInfo {
        handlers: strings("handlers"),
        errors: strings("errors"),
        node_version: ready["node"].as_str().unwrap_or("?").to_string(),
        configurapi: ready["configurapi"].as_str().unwrap_or("?").to_string(),
    };
    let mut st = lock(&shared.state);
    if st.stopping {
        tx.close();
        return Ok(info);
    }
    for (id, msg) in std::mem::take(&mut st.backlog) {
        if let Some(p) = st.pending.get_mut(&id) {
            p.generation = generation;
            let _ = tx.send(&msg);
        }
    }
    st.proc = Some(Proc {
        generation,
        tx,
        child,
        started: Instant::now(),
    });
    st.restart_at = None;
    Ok(info)
}

/// Node's stderr (handlers' console output, crash traces) goes to the log.
fn forward_stderr(stderr: impl Read, pid: u32) {
    for l in BufReader::new(stderr).lines() {
        match l {
            Ok(l) if !l.is_empty() => log::warn!("node[{pid}]: {l}"),
            Ok(_) => {}
            Err(_) => break,
        }
    }
}

type ReadyTx = Sender<Result<Value, String>>;

fn read_loop(
    shared: Weak<Shared>,
    generation: u64,
    stdout: impl Read,
    child: Arc<Mutex<Child>>,
    ready_tx: ReadyTx,
) {
    let mut reader = BufReader::with_capacity(64 << 10, stdout);
    let mut buf = Vec::new();
    let mut ready_tx = Some(ready_tx);
    loop {
        buf.clear();
        match reader.read_until(b'\n', &mut buf) {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        let Ok(msg) = serde_json::from_slice::<Value>(&buf) else {
            log::warn!(
                "JS handler host: a line that is not JSON on its stdout: {}",
                String::from_utf8_lossy(&buf).trim_end()
            );
            continue;
        };
        if msg["t"] == "ready" {
            if let Some(tx) = ready_tx.take() {
                let _ = tx.send(Ok(msg));
            }
            continue;
        }
        let Some(shared) = shared.upgrade() else {
            return;
        };
        dispatch(&shared, generation, msg);
    }
    // The process ended (or closed its stdout): reap it and say why.
    let status = {
        let mut c = child.lock().unwrap_or_else(|e| e.into_inner());
        c.wait()
            .map(|s| s.to_string())
            .unwrap_or_else(|e| e.to_string())
    };
    if let Some(tx) = ready_tx.take() {
        let _ = tx.send(Err(format!("node exited before it was ready ({status})")));
        return;
    }
    if let Some(shared) = shared.upgrade() {
        host_died(&shared, generation, &status);
    }
}

fn dispatch(shared: &Arc<Shared>, generation: u64, msg: Value) {
    match msg["t"].as_str() {
        Some("done") => {
            let Some(id) = msg["id"].as_u64() else { return };
            let pending = {
                let mut st = lock(&shared.state);
                let p = st.pending.remove(&id);
                if st.pending.is_empty() {
                    shared.idle.notify_all();
                }
                p
            };
            if let Some(p) = pending {
                let mut msg = msg;
                // Streams in the reply are keyed by the process that sent it.
                msg["generation"] = Value::from(generation);
                (p.cb)(JsOutcome::Done(msg));
            }
        }
        Some("log") => {
            let text = msg["message"].as_str().unwrap_or("");
            let level = match msg["level"].as_str().unwrap_or("") {
                l if l.eq_ignore_ascii_case("error") => log::Level::Error,
                l if l.eq_ignore_ascii_case("debug") => log::Level::Debug,
                l if l.eq_ignore_ascii_case("trace") => log::Level::Trace,
                _ => log::Level::Info,
            };
            log::log!(target: "configurapi", level, "{text}");
        }
        Some("push") => {
            let (Some(id), Some(call)) = (msg["id"].as_u64(), msg["call"].as_u64()) else {
                return;
            };
            let sink = lock(&shared.state)
                .pending
                .get(&call)
                .and_then(|p| p.push.clone());
            let Some(sink) = sink else {
                let err = json!({"message": "this event has no push-function (its call has ended)", "statusCode": 410});
                send_to(
                    shared,
                    generation,
                    &json!({"t": "pushed", "id": id, "error": err}),
                );
                return;
            };
            let mut msg = msg;
            let response = msg["response"].take();
            if response.get("stream").is_some() {
                // A pushed stream is pumped where it is pushed, pulling chunks that this
                // reader thread delivers: it goes to the push thread.
                let job = PushJob {
                    sink,
                    response,
                    id,
                    generation,
                };
                let tx = shared.push_tx.lock().unwrap_or_else(|e| e.into_inner());
                let _ = tx.send(job);
                return;
            }
            // Any other push waits for the client's room without a thread (push_then),
            // so it is handed over right here.
            let host = JsHost {
                shared: Arc::clone(shared),
            };
            match adapter::response_from(&host, generation, response) {
                Ok(response) => sink.push_then(
                    response,
                    Box::new(move |result| host.send_to(generation, &pushed(id, result))),
                ),
                Err(e) => host.send_to(
                    generation,
                    &pushed(id, Err(PushError::Failed(e.to_string()))),
                ),
            }
        }
        Some("chunk") | Some("end") => {
            let Some(sid) = msg["stream"].as_u64() else {
                return;
            };
            let slot = lock(&shared.state).streams.get(&(generation, sid)).cloned();
            let Some(slot) = slot else { return };
            if msg["t"] == "end" {
                slot.deliver(
                    msg.get("error").map(|e| Err(adapter::handler_error(e))),
                    true,
                );
            } else {
                slot.deliver(Some(Ok(adapter::chunk_from(&msg))), false);
            }
        }
        _ => {}
    }
}

/// The process `generation` ended: fail its calls, end its streams, plan a restart.
fn host_died(shared: &Arc<Shared>, generation: u64, status: &str) {
    let mut st = lock(&shared.state);
    let Some(p) = st.proc.as_ref().filter(|p| p.generation == generation) else {
        return; // shut down on purpose, or already handled
    };
    let uptime = p.started.elapsed();
    st.proc = None;
    let ids: Vec<u64> = st
        .pending
        .iter()
        .filter(|(_, p)| p.generation == generation)
        .map(|(id, _)| *id)
        .collect();
    let failed: Vec<Pending> = ids.iter().filter_map(|id| st.pending.remove(id)).collect();
    if st.pending.is_empty() {
        shared.idle.notify_all();
    }
    let streams: Vec<Arc<StreamSlot>> = st
        .streams
        .iter()
        .filter(|((g, _), _)| *g == generation)
        .map(|(_, s)| Arc::clone(s))
        .collect();
    if uptime >= HEALTHY_UPTIME {
        st.failures = 0;
    }
    st.failures += 1;
    let backoff = backoff(st.failures);
    if !st.stopping {
        st.restart_at = Some(Instant::now() + backoff);
    }
    shared.wake.notify_all();
    drop(st);
    log::error!(
        "JS handler host exited ({status}) after {:.1}s; {} calls in flight answered 500; restarting in {} ms",
        uptime.as_secs_f64(),
        failed.len(),
        backoff.as_millis()
    );
    for slot in streams {
        slot.deliver(
            Some(Err(HandlerError::new(
                "The JS handler host exited during the stream.",
            ))),
            true,
        );
    }
    for p in failed {
        (p.cb)(JsOutcome::Failed {
            status: 500,
            message: format!(
                "The JS handler host exited ({status}) while '{}' ran.",
                p.name
            ),
        });
    }
}

fn backoff(failures: u32) -> Duration {
    let ms = 100u64.saturating_mul(1 << failures.saturating_sub(1).min(10));
    Duration::from_millis(ms).min(MAX_BACKOFF)
}

/// Deadlines and restarts.
fn supervise(weak: Weak<Shared>) {
    loop {
        let Some(shared) = weak.upgrade() else { return };
        let mut expired = Vec::new();
        let mut restart = false;
        {
            let mut st = lock(&shared.state);
            if st.stopping {
                let backlog = std::mem::take(&mut st.backlog);
                let failed: Vec<Pending> = backlog
                    .iter()
                    .filter_map(|(id, _)| st.pending.remove(id))
                    .collect();
                drop(st);
                for p in failed {
                    (p.cb)(JsOutcome::Failed {
                        status: 503,
                        message: "The JS handler host is stopping.".into(),
                    });
                }
                return;
            }
            let now = Instant::now();
            while let Some((deadline, id)) = st.deadlines.front().copied() {
                if !st.pending.contains_key(&id) {
                    st.deadlines.pop_front();
                    continue;
                }
                if deadline > now {
                    break;
                }
                st.deadlines.pop_front();
                if let Some(p) = st.pending.remove(&id) {
                    expired.push((id, p));
                }
            }
            if st.pending.is_empty() {
                shared.idle.notify_all();
            }
            if st.restart_at.is_some_and(|t| t <= now) && st.proc.is_none() {
                st.restart_at = None;
                restart = true;
            }
            let streams: Vec<Arc<StreamSlot>> = st.streams.values().cloned().collect();
            if !streams.is_empty() {
                drop(st);
                for slot in streams {
                    slot.expire(shared.opts.timeout, now);
                }
                st = lock(&shared.state);
            }
            if expired.is_empty() && !restart {
                let next = [st.deadlines.front().map(|d| d.0), st.restart_at]
                    .into_iter()
                    .flatten()
                    .min();
                let wait = next
                    .map(|t| t.saturating_duration_since(now))
                    .unwrap_or(Duration::from_secs(1))
                    .min(Duration::from_secs(1));
                drop(shared.wake.wait_timeout(st, wait));
                continue;
            }
        }
        for (id, p) in expired {
            if p.generation != 0 {
                send_to(&shared, p.generation, &json!({"t": "cancel", "id": id}));
            }
            let secs = shared.opts.timeout.as_secs_f64();
            log::error!(
                "JS handler '{}' did not settle within {secs}s (--handler-timeout): answered 504",
                p.name
            );
            (p.cb)(JsOutcome::Failed {
                status: 504,
                message: format!("Handler '{}' did not settle within {secs}s.", p.name),
            });
        }
        if restart {
            match spawn(&shared) {
                Ok(info) => log::info!(
                    "JS handler host restarted (node {}, {} handlers)",
                    info.node_version,
                    info.handlers.len()
                ),
                Err(e) => {
                    let mut st = lock(&shared.state);
                    st.failures += 1;
                    let b = backoff(st.failures);
                    st.restart_at = Some(Instant::now() + b);
                    let refuse = st.failures >= FAILURES_BEFORE_REFUSING;
                    let failed: Vec<Pending> = if refuse {
                        std::mem::take(&mut st.backlog)
                            .iter()
                            .filter_map(|(id, _)| st.pending.remove(id))
                            .collect()
                    } else {
                        Vec::new()
                    };
                    drop(st);
                    log::error!("{e}; next try in {} ms", b.as_millis());
                    for p in failed {
                        (p.cb)(JsOutcome::Failed {
                            status: 503,
                            message: "The JS handler host is unavailable (it keeps failing; see the log).".into(),
                        });
                    }
                }
            }
        }
    }
}

/// Pushed streams are pumped here, off the reader thread that feeds them their chunks.
fn push_loop(weak: Weak<Shared>, rx: Receiver<PushJob>) {
    while let Ok(job) = rx.recv() {
        let Some(shared) = weak.upgrade() else { return };
        let host = JsHost { shared };
        let result = adapter::response_from(&host, job.generation, job.response)
            .map_err(|e| PushError::Failed(e.to_string()))
            .and_then(|response| job.sink.push(response));
        host.send_to(job.generation, &pushed(job.id, result));
    }
}

/// The bridge's answer to a push: the push-function's promise resolves, or rejects with
/// the error and its status (410 when the client has gone, 6.4.1).
fn pushed(id: u64, result: Result<(), PushError>) -> Value {
    match result {
        Ok(()) => json!({"t": "pushed", "id": id}),
        Err(e) => {
            let status = HandlerError::from(e.clone())
                .to_error_response()
                .status_code;
            json!({"t": "pushed", "id": id, "error": {"message": e.to_string(), "statusCode": status}})
        }
    }
}

/// Chunks of one JS stream, filled by the reader thread.
struct StreamSlot {
    q: Mutex<StreamQueue>,
    cv: Condvar,
}

#[derive(Default)]
struct StreamQueue {
    items: VecDeque<Result<Chunk, HandlerError>>,
    ended: bool,
    /// The runner's pump, parked until a chunk arrives, and since when.
    parked: Option<(ReadyJob, Instant)>,
}

impl StreamSlot {
    fn queue(&self) -> MutexGuard<'_, StreamQueue> {
        self.q.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A chunk (or an error) arrives, and/or the stream ends; a parked pump runs on
    /// here (on the calling thread: it only frames and queues what is there).
    fn deliver(&self, item: Option<Result<Chunk, HandlerError>>, end: bool) {
        let mut q = self.queue();
        if let Some(item) = item {
            q.items.push_back(item);
        }
        q.ended |= end;
        self.cv.notify_all();
        let parked = q.parked.take();
        drop(q);
        if let Some((wake, _)) = parked {
            wake();
        }
    }

    /// A pump parked longer than `timeout`: the stream fails with 504 (as a pump
    /// waiting on a thread would).
    fn expire(&self, timeout: Duration, now: Instant) {
        let late = self
            .queue()
            .parked
            .as_ref()
            .is_some_and(|(_, since)| now.duration_since(*since) >= timeout);
        if late {
            self.deliver(
                Some(Err(HandlerError::new(format!(
                    "The JS stream sent nothing for {}s (--handler-timeout).",
                    timeout.as_secs_f64()
                ))
                .with_status(504))),
                true,
            );
        }
    }
}

impl ReadySignal for StreamSlot {
    fn is_ready(&self) -> bool {
        let q = self.queue();
        !q.items.is_empty() || q.ended
    }

    fn park(&self, wake: ReadyJob) -> Option<ReadyJob> {
        let mut q = self.queue();
        if !q.items.is_empty() || q.ended {
            return Some(wake);
        }
        q.parked = Some((wake, Instant::now()));
        None
    }
}

/// A JS stream body (a readable or async iterable) as a [`ChunkStream`]: Node sends a
/// chunk only against credit, and credit goes back as the runner's pump takes chunks,
/// which it does only while the client has room. At most [`STREAM_WINDOW`] chunks are
/// between Node and the client's queue.
pub(crate) struct JsStream {
    host: JsHost,
    generation: u64,
    id: u64,
    slot: Arc<StreamSlot>,
    taken: u32,
    finished: bool,
}

impl JsStream {
    pub(crate) fn new(host: &JsHost, generation: u64, id: u64) -> JsStream {
        let slot = Arc::new(StreamSlot {
            q: Mutex::new(StreamQueue::default()),
            cv: Condvar::new(),
        });
        lock(&host.shared.state)
            .streams
            .insert((generation, id), Arc::clone(&slot));
        let stream = JsStream {
            host: host.clone(),
            generation,
            id,
            slot,
            taken: 0,
            finished: false,
        };
        // Node may produce the first window at once: the pump takes it when it starts.
        stream.credit(STREAM_WINDOW);
        stream
    }

    fn credit(&self, n: u32) {
        self.host.send_to(
            self.generation,
            &json!({"t": "credit", "stream": self.id, "n": n}),
        );
    }
}

impl ChunkStream for JsStream {
    /// The runner's pump parks on the slot while Node has not sent the next chunk;
    /// [`JsStream::next_chunk`] below still waits on its thread for other callers.
    fn ready_signal(&self) -> Option<Arc<dyn ReadySignal>> {
        Some(Arc::clone(&self.slot) as Arc<dyn ReadySignal>)
    }

    fn next_chunk(&mut self) -> Option<Result<Chunk, HandlerError>> {
        if self.finished {
            return None;
        }
        let timeout = self.host.shared.opts.timeout;
        let until = Instant::now() + timeout;
        let mut q = self.slot.q.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if let Some(item) = q.items.pop_front() {
                drop(q);
                if item.is_err() {
                    self.finished = true;
                } else {
                    self.taken += 1;
                    if self.taken >= STREAM_WINDOW / 2 {
                        self.credit(self.taken);
                        self.taken = 0;
                    }
                }
                return Some(item);
            }
            if q.ended {
                self.finished = true;
                return None;
            }
            let now = Instant::now();
            if now >= until {
                self.finished = true;
                return Some(Err(HandlerError::new(format!(
                    "The JS stream sent nothing for {}s (--handler-timeout).",
                    timeout.as_secs_f64()
                ))
                .with_status(504)));
            }
            q = self
                .slot
                .cv
                .wait_timeout(q, until - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }
}

impl Drop for JsStream {
    fn drop(&mut self) {
        let ended = self.slot.q.lock().map(|q| q.ended).unwrap_or(true);
        lock(&self.host.shared.state)
            .streams
            .remove(&(self.generation, self.id));
        if !ended {
            // The client went (or the stream failed): the producer stops.
            self.host
                .send_to(self.generation, &json!({"t": "stop", "stream": self.id}));
        }
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        let st = self.state.get_mut().unwrap_or_else(|e| e.into_inner());
        if let Some(p) = st.proc.take() {
            let _ = p.child.lock().map(|mut c| c.kill());
        }
    }
}
