//! The management API from the outside: its test settings, a raw HTTP/1.1 client with
//! deadlines, and clients of the runner beside it.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use configurapi_runner_ws::configurapi::HandlerRegistry;
use configurapi_runner_ws::reactor::MgmtConfig;
use configurapi_runner_ws::ServerConfig;
use serde_json::{json, Value};

use super::client::{tcp, Ws};
use super::frames::{read_http_head, read_to_eof};
use super::runner::test_config;
use super::server::TestServer;

/// The management tests' name for the one server wrapper.
pub type MgmtServer = TestServer;

/// Management settings for tests: loopback, port 0, the given token, and an idle
/// timeout short enough to wait for.
pub fn mgmt_config(token: Option<&str>) -> MgmtConfig {
    MgmtConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        token: token.map(str::to_string),
        idle_timeout: Duration::from_millis(300),
        ..MgmtConfig::default()
    }
}

/// A runner for `yaml` (built-ins, ws pack, the test handlers and whatever `reg` adds)
/// with `mcfg` as its management API; `POST /@reload` builds the service from the same
/// YAML again.
pub fn mgmt_server(
    yaml: &str,
    reg: impl FnOnce(&mut HandlerRegistry),
    cfg: ServerConfig,
    mcfg: MgmtConfig,
) -> TestServer {
    TestServer::builder(cfg)
        .runner(yaml, reg)
        .management(mcfg)
        .start()
}

/// `yaml` with the test defaults and `mcfg`.
pub fn mgmt_simple(yaml: &str, mcfg: MgmtConfig) -> TestServer {
    mgmt_server(yaml, |_| {}, test_config(), mcfg)
}

impl TestServer {
    /// A raw TCP connection to the management listener, with deadlines.
    pub fn raw_mgmt(&self) -> TcpStream {
        tcp(self.mgmt())
    }

    /// A connected client and its connection-id, asked through the `connectionId`
    /// route (so the connection is accepted and listed once this returns).
    pub fn ws_with_id(&self) -> (Ws, String) {
        let mut ws = self.ws();
        let id = ws.request(&json!({"name": "connectionId"}))["body"]
            .as_str()
            .expect("connection-id is a string")
            .to_string();
        (ws, id)
    }

    /// One management request on a new connection (with `Host` and `Connection: close`
    /// added after `extra` header lines, each ending in CRLF).
    pub fn call(&self, method: &str, target: &str, extra: &str, body: &[u8]) -> HttpResponse {
        http_call(self.mgmt(), method, target, extra, body)
    }

    /// Management `GET target` on a new connection.
    pub fn get(&self, target: &str) -> HttpResponse {
        self.call("GET", target, "", b"")
    }
}

/// One HTTP request to `addr` on a new connection (with `Host` and `Connection: close`
/// added after `extra` header lines, each ending in CRLF), the answer read, and the
/// server's close awaited: a management listener in-process or in the binary.
pub fn http_call(
    addr: std::net::SocketAddr,
    method: &str,
    target: &str,
    extra: &str,
    body: &[u8],
) -> HttpResponse {
    let mut s = tcp(addr);
    let mut req =
        format!("{method} {target} HTTP/1.1\r\nHost: localhost\r\n{extra}Connection: close\r\n")
            .into_bytes();
    if !body.is_empty() || method == "POST" {
        req.extend_from_slice(format!("Content-Length: {}\r\n", body.len()).as_bytes());
    }
    req.extend_from_slice(b"\r\n");
    req.extend_from_slice(body);
    s.write_all(&req).unwrap();
    let r = read_response(&mut s, method == "HEAD");
    expect_eof(&mut s);
    r
}

/// An HTTP answer as read from the wire.
#[derive(Debug)]
pub struct HttpResponse {
    pub status: u16,
    /// The status line without CRLF.
    pub status_line: String,
    /// Header names lowercased; a repeated header keeps its last value.
    pub headers: BTreeMap<String, String>,
    pub body: Vec<u8>,
}

impl HttpResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(String::as_str)
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {:?}", self.text()))
    }

    /// The server closes after this answer.
    pub fn closes(&self) -> bool {
        self.header("connection")
            .is_some_and(|v| v.eq_ignore_ascii_case("close"))
    }
}

/// Read one answer (a `Content-Length` body unless `head_only`). Panics at the deadline
/// or on EOF before a complete answer.
pub fn read_response(s: &mut TcpStream, head_only: bool) -> HttpResponse {
    let head = read_http_head(s);
    assert!(
        head.ends_with("\r\n\r\n"),
        "the connection ended before a complete answer: {head:?}"
    );
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap().to_string();
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("bad status line {status_line:?}"));
    let headers: BTreeMap<String, String> = lines
        .filter(|l| !l.is_empty())
        .map(|l| {
            let (k, v) = l.split_once(':').expect("header line");
            (k.trim().to_ascii_lowercase(), v.trim().to_string())
        })
        .collect();
    let len: usize = headers
        .get("content-length")
        .map_or(0, |v| v.parse().expect("Content-Length"));
    let mut body = vec![0; if head_only { 0 } else { len }];
    s.read_exact(&mut body).expect("the answer's body");
    HttpResponse {
        status,
        status_line,
        headers,
        body,
    }
}

/// The server closes the connection (EOF or reset) before the deadline.
pub fn expect_eof(s: &mut TcpStream) {
    let rest = read_to_eof(s);
    assert!(
        rest.is_empty(),
        "unexpected bytes before EOF: {:?}",
        String::from_utf8_lossy(&rest)
    );
}

/// Send `req` on a new management connection and read the answer, which must close
/// the connection.
pub fn hostile(srv: &TestServer, req: &[u8]) -> HttpResponse {
    let mut s = srv.raw_mgmt();
    s.write_all(req).unwrap();
    let r = read_response(&mut s, false);
    assert!(
        r.closes(),
        "{} does not say Connection: close",
        r.status_line
    );
    expect_eof(&mut s);
    r
}

/// One echo round trip on `ws`: the conversation is still flowing.
pub fn echo_round(ws: &mut Ws, n: usize) {
    let reply = ws
        .request(&json!({"name": "echo", "payload": n, "headers": {"message-id": n.to_string()}}));
    assert_eq!(reply["statusCode"], 200, "{reply}");
    assert_eq!(reply["body"], json!(n), "{reply}");
    assert_eq!(
        reply["headers"]["message-id"],
        json!(n.to_string()),
        "{reply}"
    );
}
