//! JS handlers through the handler host (issue 13 item 1, contract 9.1-9.3), over real
//! sockets: the runner binary serves tests/fixtures/js-app. Every test skips with a
//! message on stderr when `node` is not on PATH (`.ci/run` installs it, so CI runs them).

mod support;

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::{free_port, recv_json, tungstenite_at, Bin, Scratch, BIN};
use tungstenite::{Message, WebSocket};

/// Every wait gives up after this long: a hang fails the test.
const DEADLINE: Duration = Duration::from_secs(20);

fn node_available() -> bool {
    Command::new("node")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

macro_rules! require_node {
    () => {
        if !node_available() {
            // CI installs Node (.ci/run): there a missing node is a failure, not a skip.
            assert!(
                std::env::var_os("CI").is_none(),
                "`node` is not on PATH under CI; .ci/run should have installed it"
            );
            eprintln!("SKIPPED: `node` is not on PATH; the JS handler tests need Node (>= 18)");
            return;
        }
    };
}

fn fixture(file: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/js-app")
        .join(file)
}

/// The runner binary serving a JS app, and its WebSocket address; its stderr is
/// collected by [`Bin`] (`wait_log`, `count_log`, `seen`).
struct Runner {
    bin: Bin,
    addr: SocketAddr,
}

impl std::ops::Deref for Runner {
    type Target = Bin;
    fn deref(&self) -> &Bin {
        &self.bin
    }
}

impl std::ops::DerefMut for Runner {
    fn deref_mut(&mut self) -> &mut Bin {
        &mut self.bin
    }
}

/// The binary serving `config` on free ports, with the JS tests' deadline.
fn spawn_runner(config: &Path, extra: &[&str]) -> Bin {
    // Two workers unless the test sets its own flags (the machine's core count must
    // not decide what a test sees).
    let workers: &[&str] = if extra.contains(&"--defaults") {
        &[]
    } else {
        &["--workers", "2"]
    };
    let extra: Vec<&str> = extra
        .iter()
        .copied()
        .filter(|a| *a != "--defaults")
        .collect();
    let mut bin = Bin::spawn(
        Command::new(BIN)
            .arg("--config")
            .arg(config)
            .args(["--host", "127.0.0.1", "--port", "0"])
            .args(workers)
            .args(["--management-port", &free_port()])
            .args(&extra),
    );
    bin.deadline = DEADLINE;
    bin
}

impl Runner {
    fn start(config: &Path, extra: &[&str]) -> Runner {
        let mut bin = spawn_runner(config, extra);
        let addr = bin.listening();
        Runner { bin, addr }
    }

    fn app(extra: &[&str]) -> Runner {
        Runner::start(&fixture("config.yaml"), extra)
    }

    fn connect(&self, query: &str) -> Client {
        client_at(self.addr, query)
    }

    fn host_pids(&self) -> Vec<String> {
        let me = self.child.id().to_string();
        let out = Command::new("pgrep").args(["-P", &me]).output();
        match out {
            Ok(o) => String::from_utf8_lossy(&o.stdout)
                .split_whitespace()
                .map(String::from)
                .collect(),
            Err(_) => Vec::new(),
        }
    }
}

struct Client {
    ws: WebSocket<TcpStream>,
}

impl Client {
    fn send(&mut self, msg: Value) {
        self.ws.send(Message::text(msg.to_string())).unwrap();
    }

    fn recv(&mut self) -> Value {
        recv_json(&mut self.ws)
    }

    /// Send `{name, params, payload?}` with message-id = name, read the next frame.
    fn ask(&mut self, name: &str, params: Value) -> Value {
        self.send(json!({"name": name, "params": params, "headers": {"message-id": name}}));
        self.recv()
    }
}

#[test]
fn sync_and_async_handlers_answer_with_what_they_set() {
    require_node!();
    let r = Runner::app(&[]);
    let mut c = r.connect("");
    let sync = c.ask("sync", json!({"who": "bob"}));
    assert_eq!(sync["statusCode"], 200);
    assert_eq!(sync["headers"]["x-kind"], "sync");
    assert_eq!(sync["headers"]["message-id"], "sync");
    assert_eq!(
        sync["body"],
        json!({"hello": "bob", "name": "sync", "method": "get", "params": {"who": "bob"}, "correlated": true})
    );
    c.send(json!({"name": "async", "payload": {"a": [1, 2]}, "headers": {"message-id": 7}}));
    let a = c.recv();
    assert_eq!(a["statusCode"], 201);
    assert_eq!(a["headers"]["message-id"], 7);
    assert_eq!(a["body"], json!({"waited": 20, "payload": {"a": [1, 2]}}));
}

#[test]
fn complete_skips_the_rest_and_a_handler_calling_neither_continues() {
    require_node!();
    let r = Runner::app(&[]);
    let mut c = r.connect("");
    let done = c.ask("complete", json!({}));
    assert_eq!(
        (done["statusCode"].clone(), done["body"].clone()),
        (json!(200), json!("completed"))
    );
    let neither = c.ask("neither", json!({}));
    assert_eq!(neither["headers"]["x-neither"], "ran");
    assert_eq!(
        neither["headers"]["x-js"], "yes",
        "the next policy ran: {neither}"
    );
}

#[test]
fn s9_3_thrown_errors_map_as_in_the_node_core() {
    require_node!();
    let r = Runner::app(&[]);
    let mut c = r.connect("");
    // (how, status, message); 3.4.1: an Error's statusCode, an ErrorResponse's status,
    // else 500. A SyntaxError inside a handler is an Error like any other (6.6.1: the
    // 400 is for errors that escape the pipeline, which handler errors never do).
    for (how, status, message) in [
        ("status", 418, "teapot"),
        ("response", 410, "gone away"),
        ("syntax", 500, ""),
        ("string", 500, "Internal Server Error"),
        ("catch", 500, "caught"),
        ("reject", 500, "rejected"),
        ("other", 500, "boom"),
    ] {
        let e = c.ask("fail", json!({"how": how}));
        assert_eq!(e["statusCode"], status, "{how}: {e}");
        assert_eq!(e["body"]["statusCode"], status, "{how}: {e}");
        assert_eq!(e["headers"]["message-id"], "fail", "{how}: {e}");
        assert_eq!(e["headers"]["Content-Type"], "application/json", "{how}");
        if !message.is_empty() {
            assert_eq!(e["body"]["message"], message, "{how}: {e}");
        }
        match how {
            "response" => assert_eq!(e["body"]["details"], "it left"),
            "string" => assert_eq!(e["body"]["details"], "a plain string"),
            "syntax" => assert!(e["body"]["message"].as_str().unwrap().contains("JSON")),
            _ => {}
        }
    }
}

#[test]
fn an_error_response_assigned_runs_the_route_on_then_the_error_path() {
    require_node!();
    let r = Runner::app(&[]);
    let mut c = r.connect("");
    let e = c.ask("error-response", json!({}));
    assert_eq!(e["statusCode"], 403);
    assert_eq!(
        e["body"],
        json!({"statusCode": 403, "message": "Forbidden", "details": "no entry"})
    );
    assert_eq!(e["headers"]["x-js"], "yes", "the route's next policy ran");
}

#[test]
fn identity_set_in_on_connect_reaches_later_events_and_a_rejection_closes_1008() {
    require_node!();
    let r = Runner::app(&[]);
    let mut c = r.connect("?user=ann");
    let me = c.ask("whoami", json!({}));
    assert_eq!(
        me["body"],
        json!({"id": "ann", "email": "ann@example.com", "reader": true, "connection": "string"})
    );
    let mut anon = r.connect("");
    assert_eq!(anon.ask("whoami", json!({}))["body"], json!({"id": null}));

    let mut bad = r.connect("?token=bad");
    match bad.ws.read() {
        Ok(Message::Close(Some(frame))) => assert_eq!(u16::from(frame.code), 1008),
        other => panic!("expected close 1008, got {other:?}"),
    }
}

#[test]
fn a_stream_response_is_sent_as_chunk_and_done_frames() {
    require_node!();
    let r = Runner::app(&[]);
    let mut c = r.connect("");
    c.send(json!({"name": "stream", "headers": {"message-id": "s1"}}));
    let mut ids = Vec::new();
    for i in 0..3 {
        let f = c.recv();
        assert_eq!(f["headers"]["x-stream"], "chunk", "{f}");
        assert_eq!(f["headers"]["x-kind"], "stream");
        assert_eq!(f["headers"]["message-id"], "s1");
        assert_eq!(f["body"], format!("chunk-{i}"));
        ids.push(f["headers"]["x-stream-id"].clone());
    }
    let done = c.recv();
    assert_eq!(done["headers"]["x-stream"], "done");
    assert_eq!(done["body"], "");
    ids.push(done["headers"]["x-stream-id"].clone());
    assert!(ids.windows(2).all(|w| w[0] == w[1]), "{ids:?}");

    // 6.4.4: a stream that fails partway ends with a 500 done frame.
    c.send(json!({"name": "stream-fail", "headers": {"message-id": "s2"}}));
    assert_eq!(c.recv()["body"], "chunk-0");
    assert_eq!(c.recv()["body"], "chunk-1");
    let failed = c.recv();
    assert_eq!(failed["headers"]["x-stream"], "done");
    assert_eq!(failed["statusCode"], 500);
    assert_eq!(failed["body"]["message"], "stream broke");
}

#[test]
fn a_js_stream_is_paced_by_its_client() {
    require_node!();
    let r = Runner::app(&["--high-water", "64KiB", "--low-water", "16KiB"]);
    let mut slow = r.connect("");
    // 2,000 chunks of 16 KiB (32 MiB): far more than the socket buffers hold.
    slow.send(json!({"name": "stream-big", "headers": {"message-id": "big"}}));
    let first = slow.recv();
    assert_eq!(first["headers"]["x-stream"], "chunk");
    let mut other = r.connect("");
    // While the client reads nothing, Node produces only what the credit window, the
    // runner's high-water mark and the kernel's buffers allow. This watches for a
    // second: an observation window, not a synchronisation.
    let until = Instant::now() + Duration::from_secs(1);
    let mut most = 0;
    while Instant::now() < until {
        most = most.max(
            other.ask("stream-stats", json!({}))["body"]["produced"]
                .as_u64()
                .unwrap(),
        );
    }
    eprintln!("paced: at most {most} of 2000 chunks produced with no reader");
    assert!(most < 1000, "{most} of 2000 chunks produced with no reader");
    // Reading on, every chunk arrives and then the done frame.
    let mut chunks = 1;
    loop {
        let f = slow.recv();
        if f["headers"]["x-stream"] == "done" {
            assert_eq!(f["statusCode"], 200);
            break;
        }
        chunks += 1;
    }
    assert_eq!(chunks, 2000);
}

#[test]
fn push_and_postback_from_a_handler_reach_the_client() {
    require_node!();
    let r = Runner::app(&[]);
    let mut c = r.connect("");
    c.send(json!({"name": "push", "headers": {"message-id": "p"}}));
    let pushed = c.recv();
    assert_eq!(pushed["headers"]["message-id"], "pushed-1");
    assert_eq!(pushed["body"], json!({"pushed": true}));
    let reply = c.recv();
    assert_eq!(reply["body"], "after push");

    // A pushed stream: the push-function's promise resolves once it is handed over.
    c.send(json!({"name": "push-stream", "headers": {"message-id": "ps"}}));
    let mut frames: Vec<Value> = (0..4).map(|_| c.recv()).collect();
    let reply_at = frames
        .iter()
        .position(|f| f["body"] == "after stream push")
        .expect("the handler's reply");
    let reply = frames.remove(reply_at);
    assert_eq!(reply["headers"]["message-id"], "ps");
    let kinds: Vec<(Value, Value)> = frames
        .iter()
        .map(|f| (f["headers"]["x-stream"].clone(), f["body"].clone()))
        .collect();
    assert_eq!(
        kinds,
        [
            (json!("chunk"), json!("a")),
            (json!("chunk"), json!("b")),
            (json!("done"), json!(""))
        ]
    );
    assert!(frames
        .iter()
        .all(|f| f["headers"].get("message-id").is_none()));

    c.send(json!({"name": "postback", "headers": {"message-id": "pb"}}));
    let posted = c.recv();
    assert_eq!(posted["headers"]["message-id"], "postback-1");
    assert_eq!(posted["body"], json!({"via": "postback"}));
    let reply = c.recv();
    assert_eq!(reply["statusCode"], 202);
    assert_eq!(reply["body"], "posted");
}

/// A CA and a leaf for localhost and 127.0.0.1 signed by it, the chain (leaf, CA) and
/// the key written in `dir`: what `--cert` and `--key` take.
fn tls_chain(dir: &Path) -> (PathBuf, PathBuf) {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    // Names of their own: rcgen's default one on both would make the leaf look
    // self-signed (issuer = subject).
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "postback test CA");
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(vec!["localhost".into(), "127.0.0.1".into()]).unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "localhost");
    let leaf = params.signed_by(&key, &issuer).unwrap();
    let (cert_path, key_path) = (dir.join("chain.pem"), dir.join("key.pem"));
    std::fs::write(&cert_path, leaf.pem() + &ca.pem()).unwrap();
    std::fs::write(&key_path, key.serialize_pem()).unwrap();
    (cert_path, key_path)
}

#[test]
fn a_js_postback_reaches_the_client_over_https_with_management_tls() {
    require_node!();
    let dir = std::env::temp_dir().join(format!(
        "js-https-postback-{}-{}",
        std::process::id(),
        uuid::Uuid::new_v4()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let (cert, key) = tls_chain(&dir);
    let r = Runner::app(&[
        "--management-tls",
        "--key",
        key.to_str().unwrap(),
        "--cert",
        cert.to_str().unwrap(),
        "--secure-port",
        "0",
    ]);
    let mut c = r.connect("");
    // The postback-url is https:// to the management listener; wsPostbackFunction
    // trusts the chain the runner serves (NODE_EXTRA_CA_CERTS from --cert).
    c.send(json!({"name": "postback", "headers": {"message-id": "pb"}}));
    let posted = c.recv();
    assert_eq!(posted["headers"]["message-id"], "postback-1", "{posted}");
    assert_eq!(posted["body"], json!({"via": "postback"}));
    let reply = c.recv();
    assert_eq!(reply["statusCode"], 202, "{reply}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn require_finds_the_apps_own_node_modules_and_emit_logs() {
    require_node!();
    let r = Runner::app(&[]);
    let mut c = r.connect("");
    c.send(json!({"name": "greet", "payload": {"name": "Zed"}}));
    assert_eq!(c.recv()["body"], "Hello, Zed!");
    // A policy at logLevel error drops an info line (1.1.7); the next one shows.
    assert_eq!(c.ask("emit-quiet", json!({}))["body"], "emitted");
    assert_eq!(c.ask("emit", json!({}))["body"], "emitted");
    let line = r.wait_log("hello from a JS handler");
    assert!(
        line.get(25..).is_some_and(|l| l.starts_with("INFO")),
        "{line}"
    );
    assert_eq!(r.count_log("hello from a JS handler"), 1);
}

#[test]
fn s9_3_js_and_rust_policies_hand_the_event_to_each_other() {
    require_node!();
    let r = Runner::start(&fixture("mixed.yaml"), &[]);
    let mut c = r.connect("");
    let a = c.ask("js-then-rust", json!({}));
    assert_eq!(
        (a["headers"]["x-js"].clone(), a["headers"]["x-rust"].clone()),
        (json!("yes"), json!("yes"))
    );
    assert_eq!(a["body"], "js");
    let b = c.ask("rust-then-js", json!({}));
    assert_eq!(b["statusCode"], 202);
    assert_eq!(b["body"], "from rust");
    assert_eq!(b["headers"]["x-js"], "yes");
    let d = c.ask("js-complete", json!({}));
    assert_eq!(
        (d["statusCode"].clone(), d["body"].clone()),
        (json!(200), json!("completed"))
    );
}

#[test]
fn s9_2_a_js_name_replaces_the_built_in_and_the_log_says_so_once() {
    require_node!();
    let r = Runner::start(&fixture("mixed.yaml"), &[]);
    r.wait_log("listening on");
    assert_eq!(
        r.count_log("JS handler 'echoHandler' replaces the built-in handler"),
        1
    );
    let mut c = r.connect("");
    c.send(json!({"name": "echo", "payload": {"x": 1}}));
    assert_eq!(c.recv()["body"], json!({"x": 1}));
}

#[test]
fn s9_6_a_host_crash_mid_call_answers_500_then_the_host_restarts() {
    require_node!();
    let r = Runner::app(&[]);
    let mut c = r.connect("");
    let before = r.host_pids();
    let threads_before = r.threads();
    let e = c.ask("exit", json!({}));
    assert_eq!(e["statusCode"], 500, "{e}");
    assert_eq!(e["headers"]["message-id"], "exit");
    assert!(
        e["body"]["message"].as_str().unwrap().contains("exited"),
        "{e}"
    );
    r.wait_log("JS handler host exited");
    r.wait_log("JS handler host restarted");
    // Serving again, from a new process.
    assert_eq!(c.ask("complete", json!({}))["body"], "completed");
    let after = r.host_pids();
    assert_eq!(after.len(), 1, "{after:?}");
    assert_ne!(before, after);
    // The dead host's reader, writer and stderr threads are gone, the new ones took
    // their place (they end as the old pipes close: wait for that, not for a time).
    let until = Instant::now() + DEADLINE;
    while r.threads() != threads_before {
        assert!(
            Instant::now() < until,
            "threads {threads_before} before the crash, {} after",
            r.threads()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn s9_6_a_call_that_never_settles_answers_504_at_its_deadline() {
    require_node!();
    let r = Runner::app(&["--handler-timeout", "1s"]);
    let mut c = r.connect("");
    let e = c.ask("hang", json!({}));
    assert_eq!(e["statusCode"], 504, "{e}");
    assert_eq!(e["headers"]["message-id"], "hang");
    let line = r.wait_log("did not settle within 1s");
    assert!(line.contains("hangHandler"), "{line}");
    // The host is fine: the next call answers.
    assert_eq!(c.ask("complete", json!({}))["body"], "completed");

    // A stream that stops sending ends at the same deadline, with 6.4.4's done frame.
    c.send(json!({"name": "stream-stall", "headers": {"message-id": "st"}}));
    assert_eq!(c.recv()["body"], "only");
    let done = c.recv();
    assert_eq!(done["headers"]["x-stream"], "done", "{done}");
    assert_eq!(done["statusCode"], 500);
    assert!(
        done["body"]["message"]
            .as_str()
            .unwrap()
            .contains("sent nothing for 1s"),
        "{done}"
    );
}

#[test]
fn node_that_cannot_start_is_a_one_line_start_up_error() {
    // No node needed: the point is its absence.
    let mut bin = spawn_runner(&fixture("config.yaml"), &["--node", "/nonexistent/node"]);
    let status = bin.child.wait().unwrap();
    assert_eq!(status.code(), Some(2));
    let lines = bin.all_lines();
    let errors: Vec<&String> = lines.iter().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(errors.len(), 1, "{lines:?}");
    let e = errors[0];
    assert!(e.contains("node '/nonexistent/node'"), "{e}");
    assert!(e.contains("config.yaml"), "{e}");
    assert!(e.contains("--node"), "{e}");
}

#[test]
fn s9_1_no_node_process_when_the_config_names_no_js_handler() {
    require_node!();
    let app = TempApp::new(
        "unused",
        "api:\n  events:\n    - name: echo\n      policies:\n        - echoHandler\n",
        &[(
            "unused.js",
            "module.exports = function unusedHandler() {};\n",
        )],
    );
    let r = Runner::start(&app.config(), &[]);
    r.wait_log("names none of them: no Node process");
    assert!(r.host_pids().is_empty(), "{:?}", r.host_pids());
    let mut c = r.connect("");
    c.send(json!({"name": "echo", "payload": "hi"}));
    assert_eq!(c.recv()["body"], "hi");
}

#[test]
fn s9_5_on_shutdown_an_in_flight_js_call_is_answered_then_1001_then_the_host_stops() {
    require_node!();
    let mut r = Runner::app(&[]);
    let mut c = r.connect("");
    c.send(json!({"name": "wait", "params": {"tell": "w1"}, "headers": {"message-id": "w"}}));
    r.wait_log("wait started: w1");
    let pid = r.child.id().to_string();
    let killed = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    assert!(killed.success());
    // The drain (9.5): the call runs to its end and its answer is delivered, then the
    // connection gets 1001, then the host is stopped.
    let answer = c.recv();
    assert_eq!(answer["body"], "waited", "{answer}");
    assert_eq!(answer["headers"]["message-id"], "w", "{answer}");
    match c.ws.read() {
        Ok(Message::Close(Some(frame))) => assert_eq!(u16::from(frame.code), 1001),
        other => panic!("expected close 1001, got {other:?}"),
    }
    let _ = c.ws.flush(); // the close reply
    let status = r.child.wait().unwrap();
    assert!(status.success(), "{status}");
    r.wait_log("stopped");
    let lines = r.seen();
    let finished = lines.iter().position(|l| l.contains("wait finished: w1"));
    let stopped = lines.iter().position(|l| l.ends_with(" stopped"));
    assert!(
        finished.is_some() && finished < stopped,
        "the call did not finish before the runner stopped:\n{}",
        lines.join("\n")
    );
    assert!(!lines.iter().any(|l| l.contains("calls still running")));
}

/// The Node Configurapi peer (configurapi version 1.9.0 and ws) serving the same app.
struct NodePeer {
    child: Child,
    addr: SocketAddr,
}

impl Drop for NodePeer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_node_peer() -> Option<NodePeer> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let peers = root.join("benches/peers");
    if !peers.join("node_modules/configurapi").exists() {
        assert!(
            std::env::var_os("CI").is_none(),
            "benches/peers/node_modules is missing under CI; .ci/run runs `npm ci` there"
        );
        eprintln!(
            "SKIPPED: benches/peers/node_modules is missing (run `npm ci` in benches/peers) ; \
             the comparison with the Node Configurapi runner needs it"
        );
        return None;
    }
    let port = free_port();
    let node_path = format!(
        "{}:{}",
        peers.join("node_modules").display(),
        root.join("tests/fixtures/peer-modules").display()
    );
    let mut child = Command::new("node")
        .arg(peers.join("node-configurapi-runner.js"))
        .arg(&port)
        .arg(fixture("config.yaml"))
        .current_dir(fixture(""))
        .env("NODE_PATH", node_path)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the Node peer");
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let ready = lines
        .by_ref()
        .any(|l| l.is_ok_and(|l| l.contains("listening on")));
    assert!(ready, "the Node peer did not start");
    std::thread::spawn(move || lines.for_each(drop));
    Some(NodePeer {
        child,
        addr: SocketAddr::from(([127, 0, 0, 1], port.parse().unwrap())),
    })
}

/// A client of `addr` with the JS tests' read deadline; `query` follows the `/`.
fn client_at(addr: SocketAddr, query: &str) -> Client {
    let ws = tungstenite_at(addr, &format!("/{query}"));
    ws.get_ref().set_read_timeout(Some(DEADLINE)).unwrap();
    Client { ws }
}

/// The frames one message gets (through its reply, or its stream's done frame), with
/// what legitimately differs taken out: the stream id's value (kept: that every frame
/// of a stream has the same one) and error details (stack traces, 3.4.3).
fn exchange(c: &mut Client, msg: &Value) -> Vec<Value> {
    c.send(msg.clone());
    let mid = msg["headers"]["message-id"].clone();
    let mut frames = Vec::new();
    let mut stream_id = None;
    loop {
        let mut f = c.recv();
        let headers = f["headers"].as_object_mut().unwrap();
        if let Some(id) = headers.remove("x-stream-id") {
            assert!(
                stream_id.get_or_insert(id.clone()) == &id,
                "one id per stream"
            );
            headers.insert("x-stream-id".into(), json!("<id>"));
        }
        if let Some(b) = f["body"].as_object_mut() {
            if b.contains_key("details") && b.contains_key("statusCode") {
                b.insert("details".into(), json!("<details>"));
            }
        }
        if f["headers"]["x-stream"] == "done" && f["statusCode"] == 500 {
            // A failed stream's done frame: the runner keeps the stream's headers, the
            // peer sends the ErrorResponse's. 6.4.4 fixes neither (a runner rule for
            // Rust and JS streams alike, not the JS host's), so only the stream keys and
            // the body are compared.
            let h = f["headers"].as_object_mut().unwrap();
            h.retain(|k, _| k.starts_with("x-stream") || k == "message-id");
        }
        let last = f["headers"]["message-id"] == mid && f["headers"]["x-stream"] != "chunk";
        frames.push(f);
        if last {
            return frames;
        }
    }
}

#[test]
fn the_app_answers_the_same_envelopes_as_under_the_node_configurapi_runner() {
    require_node!();
    let Some(peer) = start_node_peer() else {
        return;
    };
    let r = Runner::app(&[]);
    let mut ours = r.connect("");
    let mut theirs = client_at(peer.addr, "");
    let mut msgs = vec![
        json!({"name": "sync", "params": {"who": "bob"}, "query": {"q": "1"}}),
        json!({"name": "async", "payload": {"a": [1, 2.5, null]}}),
        json!({"name": "complete"}),
        json!({"name": "neither"}),
        json!({"name": "error-response"}),
        json!({"name": "stream"}),
        json!({"name": "stream-fail"}),
        json!({"name": "greet", "payload": {"name": "Zed"}}),
        json!({"name": "push"}),
        json!({"name": "push-stream"}),
        json!({"name": "echo", "payload": "plain text"}),
        json!({"name": "echo"}),
        json!({"name": "no-such-route"}),
    ];
    for how in [
        "status", "response", "syntax", "string", "catch", "reject", "other",
    ] {
        msgs.push(json!({"name": "fail", "params": {"how": how}}));
    }
    for (i, mut msg) in msgs.into_iter().enumerate() {
        msg["headers"] = json!({"message-id": format!("m{i}")});
        let want = exchange(&mut theirs, &msg);
        let got = exchange(&mut ours, &msg);
        assert_eq!(got, want, "{msg}");
    }
}

#[test]
fn a_thousand_concurrent_js_waits_answer_together_without_new_threads() {
    require_node!();
    // Default flags: the worker pool is the machine's core count.
    let r = Runner::app(&["--defaults"]);
    let mut warm = r.connect("");
    assert_eq!(warm.ask("wait", json!({}))["body"], "waited");
    let before = r.threads();
    const CONNS: usize = 50;
    const PER_CONN: usize = 20;
    let mut clients: Vec<Client> = (0..CONNS).map(|_| r.connect("")).collect();
    let started = Instant::now();
    for (n, c) in clients.iter_mut().enumerate() {
        for i in 0..PER_CONN {
            // `tell` makes the handler log when its wait starts and ends, so the log
            // shows how many waits were in progress at once.
            let msg = json!({
                "name": "wait",
                "params": {"tell": format!("c{n}m{i}")},
                "headers": {"message-id": i.to_string()}
            });
            c.ws.write(Message::text(msg.to_string())).unwrap();
        }
        c.ws.flush().unwrap();
    }
    for c in clients.iter_mut() {
        // Waits on one connection may end in any order: each is answered once.
        let mut ids: Vec<String> = (0..PER_CONN)
            .map(|_| {
                let f = c.recv();
                assert_eq!(f["body"], "waited", "{f}");
                f["headers"]["message-id"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string()
            })
            .collect();
        ids.sort_by_key(|id| id.parse::<usize>().unwrap_or(usize::MAX));
        let want: Vec<String> = (0..PER_CONN).map(|i| i.to_string()).collect();
        assert_eq!(ids, want);
    }
    let took = started.elapsed();
    let after = r.threads();
    // The handler logs "finished" right before it answers, and every answer is in.
    let finished = CONNS * PER_CONN;
    r.wait_log_count("wait finished: c", finished);
    // The most waits in progress at one moment, from the order of the log lines (one
    // Node process writes them, so their order is the order the waits started and
    // ended).
    let (mut now, mut most) = (0usize, 0usize);
    for line in r.seen().iter() {
        if line.contains("wait started: c") {
            now += 1;
            most = most.max(now);
        } else if line.contains("wait finished: c") {
            now = now.saturating_sub(1);
        }
    }
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    eprintln!(
        "1,000 JS waits of 200 ms: all answered after {} ms, at most {most} at once; \
         runner threads {before} -> {after}",
        took.as_millis()
    );
    // Issue 13's behaviour: a waiting JS handler holds no worker, so the waits overlap.
    // Held on the workers, at most one per core (the default pool) would be in progress;
    // the bar is far above that and far below the 1,000 sent, so load on the machine
    // cannot decide it. (Speed is measured by the benchmarks, not here.)
    assert!(
        most >= 100.max(4 * cores),
        "at most {most} waits were in progress at once ({cores} cores)"
    );
    assert!(after <= before, "threads grew from {before} to {after}");
}

/// A throwaway app folder: `config.yaml` and `handlers/` files; removed on drop.
struct TempApp(Scratch);

impl TempApp {
    fn new(tag: &str, config: &str, handlers: &[(&str, &str)]) -> TempApp {
        let dir = Scratch::new(&format!("js-{tag}"));
        std::fs::create_dir_all(dir.0.join("handlers")).unwrap();
        dir.write("config.yaml", config);
        for (name, text) in handlers {
            dir.write(&format!("handlers/{name}"), text);
        }
        TempApp(dir)
    }

    /// `rel` in the app folder.
    fn path(&self, rel: &str) -> PathBuf {
        self.0 .0.join(rel)
    }

    fn config(&self) -> PathBuf {
        self.path("config.yaml")
    }

    /// Write `handlers/<name>`.
    fn handler(&self, name: &str, text: &str) {
        self.0.write(&format!("handlers/{name}"), text);
    }
}

/// Start the runner expecting a start-up failure: exit 2 and one `error:` line.
fn start_up_error(config: &Path) -> String {
    let mut bin = spawn_runner(config, &[]);
    let status = bin.child.wait().unwrap();
    assert_eq!(status.code(), Some(2));
    let lines = bin.all_lines();
    let errors: Vec<&String> = lines.iter().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(errors.len(), 1, "{lines:?}");
    errors[0].clone()
}

const ONE_ROUTE: &str = "api:\n  events:\n    - name: ok\n      policies:\n        - okHandler\n";

#[test]
fn s9_1_a_handler_file_that_fails_to_load_is_a_start_up_error_naming_it() {
    require_node!();
    let app = TempApp::new(
        "broken",
        ONE_ROUTE,
        &[
            ("ok.js", "module.exports = function okHandler() {};\n"),
            ("broken.js", "require('no-such-package-anywhere');\n"),
        ],
    );
    let e = start_up_error(&app.config());
    assert!(e.contains("broken.js"), "{e}");
    assert!(e.contains("no-such-package-anywhere"), "{e}");
}

#[test]
fn a_ts_handler_this_node_cannot_load_is_a_start_up_error_naming_it() {
    require_node!();
    let strips = Command::new("node")
        .args(["-p", "Boolean(process.features.typescript)"])
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "true");
    if strips {
        eprintln!("SKIPPED: this Node strips TypeScript types itself; nothing to refuse");
        return;
    }
    let app = TempApp::new(
        "ts",
        ONE_ROUTE,
        &[("ok.ts", "export function okHandler(event: any): void {}\n")],
    );
    let e = start_up_error(&app.config());
    assert!(e.contains("ok.ts"), "{e}");
    assert!(e.contains("TypeScript"), "{e}");
    assert!(e.contains("tsx") && e.contains("ts-node"), "{e}");
}

#[test]
fn binary_payloads_reach_js_as_buffers_and_come_back_as_base64() {
    require_node!();
    let r = Runner::start(&fixture("mixed.yaml"), &[]);
    let mut c = r.connect("");
    // Not UTF-8: the bytes are the payload (6.2.7); the nameless message goes to the
    // catchall route, the JS echoHandler, which answers with the Buffer it was given.
    c.ws.send(Message::binary(vec![0xff, 0x00, 0x41])).unwrap();
    let f = c.recv();
    assert_eq!(f["statusCode"], 200, "{f}");
    assert_eq!(f["body"], "/wBB", "{f}");
    assert_eq!(f["isBase64Encoded"], true, "{f}");
}

#[test]
fn s9_6_a_host_that_keeps_failing_answers_503_then_serves_again_once_it_starts() {
    require_node!();
    let app = TempApp::new(
        "flaky",
        "api:\n  events:\n    - name: ok\n      policies:\n        - okHandler\n    - name: exit\n      policies:\n        - exitHandler\n",
        &[(
            "flaky.js",
            "const fs = require('fs');\n\
             const path = require('path');\n\
             // A marker file beside the app makes every start fail.\n\
             if (fs.existsSync(path.join(__dirname, '..', 'broken'))) process.exit(7);\n\
             module.exports = {\n\
               okHandler(event) { event.response.body = 'ok'; },\n\
               exitHandler() { process.exit(3); },\n\
             };\n",
        )],
    );
    let r = Runner::start(&app.config(), &["--handler-timeout", "2s"]);
    let mut c = r.connect("");
    assert_eq!(c.ask("ok", json!({}))["body"], "ok");
    std::fs::write(app.path("broken"), "").unwrap();
    assert_eq!(c.ask("exit", json!({}))["statusCode"], 500);
    // Restarts fail (100 ms doubling); after five in a row calls answer 503 at once.
    let until = Instant::now() + DEADLINE;
    loop {
        let f = c.ask("ok", json!({}));
        if f["statusCode"] == 503 {
            assert!(
                f["body"]["message"]
                    .as_str()
                    .unwrap()
                    .contains("unavailable"),
                "{f}"
            );
            break;
        }
        assert!(Instant::now() < until, "never 503: {f}");
        assert!(f["statusCode"] == 504 || f["statusCode"] == 503, "{f}");
    }
    let line = r.wait_log("node exited before it was ready");
    assert!(line.contains("exit status: 7"), "{line}");
    // Fixed: a later restart succeeds and the same connection is served again.
    std::fs::remove_file(app.path("broken")).unwrap();
    let until = Instant::now() + Duration::from_secs(30);
    loop {
        let f = c.ask("ok", json!({}));
        if f["body"] == "ok" {
            break;
        }
        assert!(Instant::now() < until, "never served again: {f}");
        // A poll interval while the backoff runs out, not a synchronisation.
        std::thread::sleep(Duration::from_millis(50));
    }
    r.wait_log("JS handler host restarted");
}

#[test]
fn a_js_stream_waiting_for_node_holds_no_worker() {
    require_node!();
    // One worker: if the slow stream's pump waited on it, the other connection's
    // answer (resumed on a worker) would come only after the stream's done frame.
    let r = Runner::app(&["--defaults", "--workers", "1"]);
    let mut slow = r.connect("");
    slow.send(json!({"name": "stream-slow", "headers": {"message-id": "s"}}));
    let first = slow.recv();
    assert_eq!(first["body"], "slow-0", "{first}");
    let mut other = r.connect("");
    assert_eq!(other.ask("async", json!({}))["statusCode"], 201);
    // Answered while the stream was still going (it makes 4 chunks, 300 ms apart).
    let made = other.ask("stream-stats", json!({}))["body"]["slow"].clone();
    assert!(
        made.as_u64().unwrap() < 4,
        "answered only after the stream: {made}"
    );
    let rest: Vec<Value> = (0..4).map(|_| slow.recv()).collect();
    assert_eq!(rest[2]["body"], "slow-3");
    assert_eq!(rest[3]["headers"]["x-stream"], "done");
}

#[test]
fn a_name_no_one_provides_is_reported_with_what_handlers_exports() {
    require_node!();
    let app = TempApp::new(
        "missing",
        "api:\n  events:\n    - name: ok\n      policies:\n        - okHandlr\n",
        &[(
            "ok.js",
            "module.exports = { okHandler() {}, otherHandler() {} };\n",
        )],
    );
    let e = start_up_error(&app.config());
    assert!(e.contains("'okHandlr'"), "{e}");
    assert!(e.contains("exports: okHandler, otherHandler"), "{e}");
}

#[test]
fn a_js_on_start_runs_before_serving_and_its_failure_stops_start_up() {
    require_node!();
    let config = "api:\n  events:\n    - name: on_start\n      policies:\n        - bootHandler\n    - name: ok\n      policies:\n        - bootHandler\n";
    let good = TempApp::new(
        "boot",
        config,
        &[(
            "boot.js",
            "module.exports = async function bootHandler(event) {\n\
               await new Promise((r) => setTimeout(r, 10));\n\
               this.emit('info', `booted ${event.name}`);\n\
             };\n",
        )],
    );
    let r = Runner::start(&good.config(), &[]);
    let booted = r.wait_log("booted on_start");
    let lines = r.seen();
    let at = |needle: &str| lines.iter().position(|l| l.contains(needle));
    assert!(at("booted on_start") < at("listening on"), "{booted}");
    drop(r);

    let bad = TempApp::new(
        "boot-fails",
        config,
        &[(
            "boot.js",
            "module.exports = async function bootHandler() { throw new Error('no database'); };\n",
        )],
    );
    let e = start_up_error(&bad.config());
    assert!(e.contains("on_start failed: no database"), "{e}");
}

#[test]
fn sighup_starts_a_new_js_host_and_stops_the_old_one_after_its_call_in_flight() {
    require_node!();
    let app = TempApp::new(
        "reload",
        "api:\n  events:\n    - name: greet\n      policies: [greetHandler]\n    - name: slow\n      policies:\n        - slowHandler: [1000]\n",
        &[],
    );
    let version = |v: &str| {
        let js = format!(
            "module.exports = {{\n\
             greetHandler: async function greetHandler(event) {{ event.response.body = '{v}'; }},\n\
             slowHandler: async function slowHandler(event, ms) {{\n\
               await new Promise((r) => setTimeout(r, Number(ms)));\n\
               event.response.body = 'slow {v}';\n\
             }},\n\
             }};\n"
        );
        app.handler("h.js", &js);
    };
    version("v1");
    let r = Runner::start(&app.config(), &[]);
    let mut c = r.connect("");
    assert_eq!(c.ask("greet", json!({}))["body"], "v1");
    let old = r.host_pids();
    assert_eq!(old.len(), 1, "{old:?}");
    // A call under way on the old host when the reload comes (the greet answered
    // after it shows the runner has read it).
    c.send(json!({"name": "slow", "headers": {"message-id": "slow"}}));
    assert_eq!(c.ask("greet", json!({}))["body"], "v1");

    version("v2");
    let hup = Command::new("kill")
        .args(["-HUP", &r.child.id().to_string()])
        .status()
        .unwrap();
    assert!(hup.success());
    r.wait_log("reloaded: config");
    // The new host answers the next message; the old call finishes on the old host
    // (in either order), then the old host goes.
    c.send(json!({"name": "greet", "headers": {"message-id": "greet"}}));
    let mut answers = [c.recv(), c.recv()];
    answers.sort_by_key(|a| a["headers"]["message-id"].to_string());
    assert_eq!(answers[0]["body"], "v2", "{}", answers[0]);
    assert_eq!(answers[1]["body"], "slow v1", "{}", answers[1]);
    let until = Instant::now() + DEADLINE;
    while r.host_pids().contains(&old[0]) {
        assert!(Instant::now() < until, "the old host never stopped");
        std::thread::yield_now();
    }
    assert_eq!(r.host_pids().len(), 1, "{:?}", r.host_pids());
    assert_eq!(c.ask("greet", json!({}))["body"], "v2");
}
