//! Several runners as one (issue #16, docs/cluster.md): real `redis-server`, real
//! `haproxy` (docs/haproxy.cfg), runner binaries as child processes on loopback.
//!
//! Without redis-server or haproxy on PATH these tests print why and pass, outside CI
//! only; with `CI` set they fail (.ci/run installs both).

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::{free_port, Bin, Scratch, DEADLINE};

const APP: &str = r#"
api:
  events:
    - name: on_connect
      policies:
        - identityHandler: ["$(user)"]
    - name: connectionId
      policies:
        - headerHandler: [connection-id]
    - name: echo
      policies: [echoHandler]
"#;

/// Whether `program` runs; when it does not, fail under CI, else say so and skip.
fn have(programs: &[&str]) -> bool {
    for p in programs {
        let found = Command::new(p)
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok();
        if !found {
            assert!(
                std::env::var_os("CI").is_none(),
                "{p} is not installed; CI must install it (.ci/run)"
            );
            eprintln!("SKIPPED: {p} is not installed (apt-get install redis-server haproxy)");
            return false;
        }
    }
    true
}

/// Wait for `cond` with the tests' deadline; `what` names it in the failure.
fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + DEADLINE * 2;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A `redis-server` of our own on a free loopback port, with no persistence.
struct Redis {
    port: String,
    child: Option<Child>,
}

impl Redis {
    fn start() -> Redis {
        let mut r = Redis {
            port: free_port(),
            child: None,
        };
        r.restart();
        r
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// Start it (again, on the same port, empty).
    fn restart(&mut self) {
        let child = Command::new("redis-server")
            .args(["--port", &self.port, "--bind", "127.0.0.1", "--save", ""])
            .args(["--appendonly", "no", "--protected-mode", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server");
        self.child = Some(child);
        let port = self.port.clone();
        wait_for("redis-server to answer PING", || {
            let Ok(mut s) = TcpStream::connect(format!("127.0.0.1:{port}")) else {
                return false;
            };
            s.set_read_timeout(Some(DEADLINE)).unwrap();
            let mut buf = [0u8; 7];
            s.write_all(b"PING\r\n").is_ok()
                && s.read_exact(&mut buf).is_ok()
                && &buf == b"+PONG\r\n"
        });
    }

    /// Kill it with -9.
    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.stop();
    }
}

/// One runner with the management API on its own port.
struct Node {
    bin: Bin,
    ws: SocketAddr,
    mgmt: String,
    name: String,
}

impl Node {
    fn start(dir: &Scratch, name: &str, redis: Option<&Redis>, extra: &[&str]) -> Node {
        let config = dir.write("config.yaml", APP);
        let mgmt = free_port();
        let url = redis.map(Redis::url);
        let mut args: Vec<&str> = vec![
            "--config",
            config.to_str().unwrap(),
            "--management-port",
            &mgmt,
            "--workers",
            "2",
        ];
        if let Some(url) = &url {
            args.extend([
                "--cluster",
                url,
                "--node-id",
                name,
                "--cluster-ttl",
                "1s",
                "--cluster-timeout",
                "2s",
            ]);
        }
        args.extend(extra);
        let (bin, ws) = Bin::start(&args);
        let node = Node {
            bin,
            ws,
            mgmt,
            name: name.to_string(),
        };
        // Joined: Redis reached and the inbox subscribed (until then: "degraded").
        wait_for(&format!("{name} to be healthy"), || {
            node.http("GET", "/healthz", "") == (200, "ok\n".to_string())
        });
        node
    }

    fn http(&self, method: &str, target: &str, body: &str) -> (u16, String) {
        http(&self.mgmt, method, target, body)
    }

    /// The ids this node holds.
    fn local(&self) -> BTreeSet<String> {
        let (status, body) = self.http("GET", "/@connections?scope=local", "");
        assert_eq!(status, 200, "{body}");
        serde_json::from_str(&body).unwrap()
    }

    /// The cluster-wide listing as this node gives it.
    fn listing(&self) -> (u16, String) {
        self.http("GET", "/@connections", "")
    }
}

/// One request on a new connection to a management port: status and body.
fn http(port: &str, method: &str, target: &str, body: &str) -> (u16, String) {
    let mut s = TcpStream::connect(format!("127.0.0.1:{port}")).unwrap();
    s.set_read_timeout(Some(DEADLINE)).unwrap();
    write!(
        s,
        "{method} {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let status = text
        .get(9..12)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP answer: {text:?}"));
    let body = text
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_string();
    (status, body)
}

type Ws = tungstenite::WebSocket<TcpStream>;

/// A client as `user`, and its connection id.
fn client(addr: SocketAddr, user: &str) -> (Ws, String) {
    let s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(DEADLINE)).unwrap();
    let (mut ws, _) = tungstenite::client(format!("ws://{addr}/?user={user}"), s).unwrap();
    let id = ask(&mut ws, &json!({"name": "connectionId"}))["body"]
        .as_str()
        .unwrap()
        .to_string();
    (ws, id)
}

/// The next text message as JSON.
fn recv(ws: &mut Ws) -> Value {
    loop {
        match ws.read().unwrap() {
            tungstenite::Message::Text(t) => return serde_json::from_str(t.as_str()).unwrap(),
            tungstenite::Message::Ping(_) | tungstenite::Message::Pong(_) => {}
            other => panic!("unexpected {other:?}"),
        }
    }
}

fn ask(ws: &mut Ws, msg: &Value) -> Value {
    ws.send(tungstenite::Message::text(msg.to_string()))
        .unwrap();
    recv(ws)
}

/// The next message is the answer to an echo sent now: nothing else was queued ahead.
fn nothing_pending(ws: &mut Ws) {
    let got = ask(ws, &json!({"name": "echo", "payload": "marker"}));
    assert_eq!(
        got["body"], "marker",
        "a frame arrived that was not meant for it"
    );
}

fn ids_of(body: &str) -> BTreeSet<String> {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"))
}

struct Haproxy {
    child: Child,
    port: String,
    stats: std::path::PathBuf,
}

impl Haproxy {
    /// Each runner's status in the rotation (`show stat` on the stats socket).
    fn status(&self) -> BTreeMap<String, String> {
        let mut s = std::os::unix::net::UnixStream::connect(&self.stats).unwrap();
        s.set_read_timeout(Some(DEADLINE)).unwrap();
        s.write_all(b"show stat\n").unwrap();
        let mut csv = String::new();
        s.read_to_string(&mut csv).unwrap();
        csv.lines()
            .filter(|l| l.starts_with("runners,node"))
            .map(|l| {
                let f: Vec<&str> = l.split(',').collect();
                (f[1].to_string(), f[17].to_string())
            })
            .collect()
    }
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// HAProxy with docs/haproxy.cfg in front of three nodes.
fn haproxy(dir: &Scratch, nodes: &[Node]) -> Haproxy {
    let port = free_port();
    let stats = dir.0.join("haproxy.sock");
    let mut cfg = include_str!("../docs/haproxy.cfg")
        .replace("{{FRONTEND_PORT}}", &port)
        .replace("{{STATS_SOCKET}}", stats.to_str().unwrap());
    for (i, n) in nodes.iter().enumerate() {
        cfg = cfg
            .replace(
                &format!("{{{{NODE{}_WS}}}}", i + 1),
                &n.ws.port().to_string(),
            )
            .replace(&format!("{{{{NODE{}_MGMT}}}}", i + 1), &n.mgmt);
    }
    assert!(!cfg.contains("{{"), "unfilled template: {cfg}");
    let file = dir.write("haproxy.cfg", &cfg);
    let check = Command::new("haproxy")
        .args(["-c", "-f", file.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "docs/haproxy.cfg does not check: {}",
        String::from_utf8_lossy(&check.stderr)
    );
    let child = Command::new("haproxy")
        .args(["-db", "-f", file.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let h = Haproxy { child, port, stats };
    let addr = format!("127.0.0.1:{}", h.port);
    wait_for("haproxy to listen", || TcpStream::connect(&addr).is_ok());
    h
}

fn three_nodes(dir: &Scratch, redis: &Redis) -> Vec<Node> {
    ["node-a", "node-b", "node-c"]
        .iter()
        .map(|n| Node::start(dir, n, Some(redis), &[]))
        .collect()
}

#[test]
fn through_haproxy_clients_spread_and_any_node_reaches_every_connection() {
    if !have(&["redis-server", "haproxy"]) {
        return;
    }
    let dir = Scratch::new("cluster-lb");
    let redis = Redis::start();
    let nodes = three_nodes(&dir, &redis);
    let lb = haproxy(&dir, &nodes);
    let lb_addr: SocketAddr = format!("127.0.0.1:{}", lb.port).parse().unwrap();

    // Clients through the load balancer until they sit on more than one node (round
    // robin: the first few do, once the health checks have seen the nodes up).
    let mut clients: BTreeMap<String, Ws> = BTreeMap::new();
    let mut holders: BTreeMap<String, String> = BTreeMap::new();
    for i in 0..30 {
        let (ws, id) = client(lb_addr, &format!("u{i}"));
        clients.insert(id, ws);
        holders.clear();
        for n in &nodes {
            for id in n.local() {
                holders.insert(id, n.name.clone());
            }
        }
        let used: BTreeSet<&String> = holders.values().collect();
        if clients.len() >= 6 && used.len() > 1 {
            break;
        }
    }
    let used: BTreeSet<&String> = holders.values().collect();
    assert!(
        used.len() > 1,
        "every client landed on one node: {holders:?}"
    );
    let all: BTreeSet<String> = clients.keys().cloned().collect();
    assert_eq!(holders.keys().cloned().collect::<BTreeSet<_>>(), all);

    // Every node lists every connection (once the owners' directory writes are out:
    // they wait a moment to share a pipeline).
    for n in &nodes {
        wait_for(&format!("node {} to list every connection", n.name), || {
            let (status, body) = n.listing();
            assert_eq!(status, 200, "{body}");
            ids_of(&body) == all
        });
    }

    // A backend posts through one node to a connection another node holds.
    let (id, owner) = holders
        .iter()
        .find(|(_, o)| **o != "node-a")
        .map(|(i, o)| (i.clone(), o.clone()))
        .expect("a connection off node-a");
    let a = &nodes[0];
    let (status, body) = a.http(
        "POST",
        &format!("/@connections/{id}"),
        r#"{"body":{"hello":"from node-a"}}"#,
    );
    assert_eq!(status, 200, "{body}");
    let got = recv(clients.get_mut(&id).unwrap());
    assert_eq!(got["body"], json!({"hello": "from node-a"}));

    // The facts of a remote connection, and a bad body once it is known to exist.
    let (status, body) = a.http("GET", &format!("/@connections/{id}"), "");
    assert_eq!(status, 200, "{body}");
    let info: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(info["connectionId"], json!(id));
    assert_eq!(a.http("POST", &format!("/@connections/{id}"), "[1]").0, 400);
    // An unknown id is gone wherever it is asked.
    let (status, _) = a.http("POST", "/@connections/no-such-id", "{}");
    assert_eq!(status, 410);
    assert_eq!(a.http("GET", "/@connections/no-such-id", "").0, 410);

    // DELETE through node-a closes it on its owner with 1000.
    let (status, body) = a.http("DELETE", &format!("/@connections/{id}"), "");
    assert_eq!(status, 204, "{body}");
    let ws = clients.get_mut(&id).unwrap();
    loop {
        match ws.read() {
            Ok(tungstenite::Message::Close(Some(f))) => {
                assert_eq!(u16::from(f.code), 1000);
                break;
            }
            Ok(tungstenite::Message::Close(None)) => panic!("close without a code"),
            Ok(_) => continue,
            Err(e) => panic!("no close frame: {e}"),
        }
    }
    let owner_node = nodes.iter().find(|n| n.name == owner).unwrap();
    wait_for("the closed connection to leave the listings", || {
        !ids_of(&a.listing().1).contains(&id) && !owner_node.local().contains(&id)
    });

    // A draining runner (SIGTERM: /healthz 503) leaves the rotation; new clients land
    // on the others.
    wait_for("haproxy to see every runner up", || {
        lb.status().values().all(|s| s == "UP")
    });
    nodes[2].bin.signal("TERM");
    wait_for("haproxy to take node-c out", || {
        lb.status()
            .get("node3")
            .is_some_and(|s| s.starts_with("DOWN"))
    });
    let mut late = Vec::new();
    for i in 0..4 {
        let (ws, id) = client(lb_addr, &format!("late{i}"));
        late.push(ws);
        assert!(
            nodes[..2].iter().any(|n| n.local().contains(&id)),
            "a client landed on the draining runner"
        );
    }
}

#[test]
fn fan_out_reaches_every_client_once_and_one_identity_only_its_own() {
    if !have(&["redis-server"]) {
        return;
    }
    let dir = Scratch::new("cluster-fanout");
    let redis = Redis::start();
    let nodes = three_nodes(&dir, &redis);
    let mut alice0 = client(nodes[0].ws, "alice").0;
    let mut bob1 = client(nodes[1].ws, "bob").0;
    let mut alice2 = client(nodes[2].ws, "alice").0;
    let mut carol2 = client(nodes[2].ws, "carol").0;
    wait_for("four connections in the directory", || {
        ids_of(&nodes[1].listing().1).len() == 4
    });

    let (status, body) = nodes[1].http("POST", "/@broadcast", r#"{"body":"to all"}"#);
    assert_eq!(status, 200, "{body}");
    let answer: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(answer["delivered"], 4, "{answer}");
    assert_eq!(
        answer["nodes"],
        json!({"node-a": 1, "node-b": 1, "node-c": 2}),
        "{answer}"
    );
    assert_eq!(answer["silent"], json!([]));
    for ws in [&mut alice0, &mut bob1, &mut alice2, &mut carol2] {
        assert_eq!(recv(ws)["body"], "to all");
        // Once: nothing else is queued behind it.
        nothing_pending(ws);
    }

    let (status, body) = nodes[0].http(
        "POST",
        "/@broadcast?identity=alice",
        r#"{"body":"alice only"}"#,
    );
    assert_eq!(status, 200, "{body}");
    let answer: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(answer["delivered"], 2, "{answer}");
    assert_eq!(
        answer["nodes"],
        json!({"node-a": 1, "node-b": 0, "node-c": 1})
    );
    for ws in [&mut alice0, &mut alice2] {
        assert_eq!(recv(ws)["body"], "alice only");
        nothing_pending(ws);
    }
    for ws in [&mut bob1, &mut carol2] {
        nothing_pending(ws);
    }

    // A bad body is refused before anything is sent.
    assert_eq!(nodes[2].http("POST", "/@broadcast", "nope").0, 400);
}

#[test]
fn a_node_killed_with_kill_9_leaves_the_listings_and_its_connections_are_gone() {
    if !have(&["redis-server"]) {
        return;
    }
    let dir = Scratch::new("cluster-kill");
    let redis = Redis::start();
    let mut nodes = three_nodes(&dir, &redis);
    let (_on_a, id_a) = client(nodes[0].ws, "a");
    let (_on_c, id_c) = client(nodes[2].ws, "c");
    wait_for("both connections listed", || {
        ids_of(&nodes[1].listing().1) == BTreeSet::from([id_a.clone(), id_c.clone()])
    });

    // SIGKILL: no goodbye, no directory cleanup; only the heartbeat stops (TTL 1 s).
    nodes[2].bin.child.kill().unwrap();
    nodes[2].bin.child.wait().unwrap();
    wait_for("the killed node's connection to leave the listings", || {
        ids_of(&nodes[0].listing().1) == BTreeSet::from([id_a.clone()])
    });
    assert_eq!(
        ids_of(&nodes[1].listing().1),
        BTreeSet::from([id_a.clone()])
    );
    let (status, body) = nodes[0].http("POST", &format!("/@connections/{id_c}"), "{}");
    assert_eq!(status, 410, "{body}");
    // The fan-out counts only the nodes alive.
    let (status, body) = nodes[1].http("POST", "/@broadcast", "{}");
    assert_eq!(status, 200, "{body}");
    let answer: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        answer["nodes"],
        json!({"node-a": 1, "node-b": 0}),
        "{answer}"
    );
    nodes.truncate(2);
}

#[test]
fn redis_stopped_and_restarted_local_traffic_goes_on_and_the_cluster_recovers() {
    if !have(&["redis-server"]) {
        return;
    }
    let dir = Scratch::new("cluster-redis");
    let mut redis = Redis::start();
    let a = Node::start(&dir, "node-a", Some(&redis), &[]);
    let b = Node::start(&dir, "node-b", Some(&redis), &[]);
    let (mut ws_b, id_b) = client(b.ws, "b");
    wait_for("the connection listed on node-a", || {
        ids_of(&a.listing().1).contains(&id_b)
    });

    redis.stop();
    wait_for("node-a to report degraded", || {
        let (status, body) = a.http("GET", "/healthz", "");
        status == 200 && body.starts_with("degraded: ")
    });
    assert!(a
        .http("GET", "/metrics", "")
        .1
        .contains("\nconfigurapi_ws_cluster_degraded 1\n"));
    // Cluster operations answer 503 with the reason.
    let (status, body) = a.listing();
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("Redis"), "{body}");
    assert_eq!(
        a.http("POST", &format!("/@connections/{id_b}"), "{}").0,
        503
    );
    // Local traffic never stops: messages, a local post, a new connection, a listing
    // of this node alone.
    assert_eq!(
        ask(&mut ws_b, &json!({"name": "echo", "payload": 1}))["body"],
        1
    );
    let (status, _) = b.http(
        "POST",
        &format!("/@connections/{id_b}"),
        r#"{"body":"local"}"#,
    );
    assert_eq!(status, 200);
    assert_eq!(recv(&mut ws_b)["body"], "local");
    let (mut ws_b2, id_b2) = client(b.ws, "b2");
    assert_eq!(b.local(), BTreeSet::from([id_b.clone(), id_b2.clone()]));

    // Redis comes back empty: the nodes reconnect by themselves and register again
    // what they hold, including what connected meanwhile.
    redis.restart();
    wait_for("node-a to list node-b's connections again", || {
        let (status, body) = a.listing();
        status == 200 && ids_of(&body) == BTreeSet::from([id_b.clone(), id_b2.clone()])
    });
    wait_for("node-a healthy again", || {
        a.http("GET", "/healthz", "") == (200, "ok\n".to_string())
    });
    assert!(a
        .http("GET", "/metrics", "")
        .1
        .contains("\nconfigurapi_ws_cluster_degraded 0\n"));
    // The subscription is back too: a forwarded post is delivered.
    wait_for("a cross-node post to go through", || {
        a.http(
            "POST",
            &format!("/@connections/{id_b2}"),
            r#"{"body":"back"}"#,
        )
        .0 == 200
    });
    assert_eq!(recv(&mut ws_b2)["body"], "back");
}

#[test]
fn two_runners_with_reuse_port_share_one_port_and_both_take_connections() {
    let dir = Scratch::new("cluster-reuse");
    let port = free_port();
    let extra = ["--reuse-port", "--port", port.as_str()];
    let one = Node::start(&dir, "one", None, &extra);
    let two = Node::start(&dir, "two", None, &extra);
    assert_eq!(one.ws, two.ws);
    // The kernel spreads connections by their addresses: enough of them reach both.
    let mut held = Vec::new();
    for i in 0..64 {
        held.push(client(one.ws, &format!("u{i}")));
        if i >= 3 && !one.local().is_empty() && !two.local().is_empty() {
            break;
        }
    }
    assert!(
        !one.local().is_empty(),
        "the first runner took no connection"
    );
    assert!(
        !two.local().is_empty(),
        "the second runner took no connection"
    );
    assert_eq!(one.local().len() + two.local().len(), held.len());
}

#[test]
fn without_cluster_broadcast_reaches_the_local_connections() {
    let dir = Scratch::new("cluster-none");
    let node = Node::start(&dir, "solo", None, &[]);
    let mut x = client(node.ws, "x").0;
    let mut y = client(node.ws, "y").0;
    let (status, body) = node.http("POST", "/@broadcast?identity=y", r#"{"body":"y"}"#);
    assert_eq!(status, 200, "{body}");
    let answer: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(answer["delivered"], 1, "{answer}");
    assert_eq!(recv(&mut y)["body"], "y");
    nothing_pending(&mut x);
    let (status, body) = node.http("POST", "/@broadcast", r#"{"body":"all"}"#);
    assert_eq!(status, 200, "{body}");
    assert_eq!(recv(&mut x)["body"], "all");
    assert_eq!(recv(&mut y)["body"], "all");
    // The healthz of a node without a cluster is plain, and its metrics say nothing of one.
    assert_eq!(node.http("GET", "/healthz", ""), (200, "ok\n".to_string()));
    assert!(!node.http("GET", "/metrics", "").1.contains("cluster"));
    // And an unknown id is simply gone.
    assert_eq!(node.http("GET", "/@connections/nope", "").0, 410);
}

#[test]
fn a_bad_cluster_url_is_a_one_line_start_up_error() {
    let out = Command::new(env!("CARGO_BIN_EXE_configurapi-runner-ws"))
        .args([
            "--cluster",
            "http://x",
            "--port",
            "0",
            "--management-port",
            "0",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--cluster") && err.contains("redis://"),
        "{err}"
    );
}
