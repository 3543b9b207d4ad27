use std::net::TcpListener;
use std::thread::{self, JoinHandle};

use serde_json::json;

use super::*;

/// What the test server received.
#[derive(Debug)]
struct Captured {
    request_line: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Captured {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// A one-connection HTTP server: reads one request (head and Content-Length body), sends
/// `answer` as is, closes, and hands back what it read.
fn serve_once(answer: &'static [u8]) -> (u16, JoinHandle<Captured>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let h = thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut buf = Vec::new();
        let mut chunk = [0u8; 1024];
        loop {
            let mut hs = [httparse::EMPTY_HEADER; 32];
            let mut req = httparse::Request::new(&mut hs);
            if let httparse::Status::Complete(n) = req.parse(&buf).unwrap() {
                let headers: Vec<(String, String)> = req
                    .headers
                    .iter()
                    .map(|h| {
                        (
                            h.name.to_string(),
                            String::from_utf8_lossy(h.value).into_owned(),
                        )
                    })
                    .collect();
                let request_line = format!(
                    "{} {} HTTP/1.{}",
                    req.method.unwrap(),
                    req.path.unwrap(),
                    req.version.unwrap()
                );
                let len: usize = headers
                    .iter()
                    .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
                    .map(|(_, v)| v.parse().unwrap())
                    .unwrap_or(0);
                while buf.len() < n + len {
                    let r = s.read(&mut chunk).unwrap();
                    assert!(r > 0, "client closed mid-body");
                    buf.extend_from_slice(&chunk[..r]);
                }
                s.write_all(answer).unwrap();
                return Captured {
                    request_line,
                    headers,
                    body: buf[n..n + len].to_vec(),
                };
            }
            let r = s.read(&mut chunk).unwrap();
            assert!(r > 0, "client closed mid-head");
            buf.extend_from_slice(&chunk[..r]);
        }
    });
    (port, h)
}

fn message() -> PostbackMessage {
    let mut headers = Map::new();
    headers.insert("message-id".into(), json!("m-1"));
    PostbackMessage::new(201, headers, json!({"message": "Hello"}))
}

#[test]
fn posts_the_envelope_as_json_and_accepts_2xx() {
    let (port, server) = serve_once(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
    let url = format!("http://127.0.0.1:{port}/@connections/abc?x=1#frag");
    postback(&url, &message()).unwrap();
    let got = server.join().unwrap();
    assert_eq!(got.request_line, "POST /@connections/abc?x=1 HTTP/1.1");
    assert_eq!(got.header("content-type"), Some("application/json"));
    assert_eq!(
        got.header("host"),
        Some(format!("127.0.0.1:{port}").as_str())
    );
    assert_eq!(got.header("connection"), Some("close"));
    assert_eq!(
        String::from_utf8(got.body).unwrap(),
        r#"{"statusCode":201,"headers":{"message-id":"m-1"},"body":{"message":"Hello"}}"#
    );
}

#[test]
fn any_2xx_is_success_and_interim_answers_are_skipped() {
    let (port, server) =
        serve_once(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n");
    postback(&format!("http://127.0.0.1:{port}/x"), &message()).unwrap();
    server.join().unwrap();
}

#[test]
fn gone_is_its_own_error() {
    let (port, server) = serve_once(
        b"HTTP/1.1 410 Gone\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}",
    );
    let e = postback(
        &format!("http://127.0.0.1:{port}/@connections/zz"),
        &message(),
    )
    .unwrap_err();
    assert!(matches!(e, PostbackError::Gone), "{e:?}");
    assert_eq!(e.status(), Some(410));
    server.join().unwrap();
}

#[test]
fn other_answers_carry_status_and_body() {
    let (port, server) =
        serve_once(b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 4\r\n\r\nboomEXTRA");
    let e = postback(&format!("http://127.0.0.1:{port}/"), &message()).unwrap_err();
    match e {
        PostbackError::Status(500, body) => assert_eq!(body, "boom"),
        e => panic!("{e:?}"),
    }
    server.join().unwrap();

    let (port, server) = serve_once(
        b"HTTP/1.1 400 Bad Request\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nbad\r\n2\r\n!!\r\n0\r\n\r\n",
    );
    let e = postback(&format!("http://127.0.0.1:{port}/"), &message()).unwrap_err();
    assert_eq!(e.to_string(), "the server answered 400: bad!!");
    server.join().unwrap();

    let (port, server) = serve_once(b"HTTP/1.1 503 Service Unavailable\r\n\r\nuntil eof");
    let e = postback(&format!("http://127.0.0.1:{port}/"), &message()).unwrap_err();
    assert!(
        matches!(e, PostbackError::Status(503, ref b) if b == "until eof"),
        "{e:?}"
    );
    server.join().unwrap();
}

#[test]
fn broken_answers_are_bad_response() {
    for answer in [&b"garbage\r\n\r\n"[..], b"HTTP/1.1 200", b""] {
        let answer: &'static [u8] = answer;
        let (port, server) = serve_once(answer);
        let e = postback(&format!("http://127.0.0.1:{port}/"), &message()).unwrap_err();
        assert!(matches!(e, PostbackError::BadResponse(_)), "{e:?}");
        server.join().unwrap();
    }
}

#[test]
fn a_silent_server_times_out() {
    // The server accepts and says nothing until the client has given up, so the only
    // way the postback can end is its own I/O timeout: a timed-out read, not an EOF
    // (an EOF would be a BadResponse). No clock is read.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (done, client_done) = std::sync::mpsc::channel::<()>();
    let server = thread::spawn(move || {
        let (s, _) = listener.accept().unwrap();
        // A generous bound, so a broken timeout fails the test instead of hanging it.
        let _ = client_done.recv_timeout(Duration::from_secs(30));
        drop(s);
    });
    let opts = PostbackOptions {
        io_timeout: Duration::from_millis(150),
        ..PostbackOptions::default()
    };
    let e = postback_with(&format!("http://127.0.0.1:{port}/"), &message(), &opts).unwrap_err();
    done.send(()).unwrap();
    match &e {
        PostbackError::Io(io) => assert!(
            matches!(
                io.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ),
            "{e:?}"
        ),
        other => panic!("expected a timeout, got {other:?}"),
    }
    server.join().unwrap();
}

#[test]
fn refused_connection_is_io() {
    let port = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let e = postback(&format!("http://127.0.0.1:{port}/"), &message()).unwrap_err();
    assert!(matches!(e, PostbackError::Io(_)), "{e:?}");
}

#[test]
fn urls() {
    let u = HttpUrl::parse("http://127.0.0.1:9100/@connections/a?b=c").unwrap();
    assert_eq!(
        (u.host.as_str(), u.port, u.target.as_str()),
        ("127.0.0.1", 9100, "/@connections/a?b=c")
    );
    assert_eq!(u.host_header(), "127.0.0.1:9100");
    let u = HttpUrl::parse("HTTP://Example.com").unwrap();
    assert_eq!(
        (u.port, u.target.as_str(), u.host_header()),
        (80, "/", "Example.com".to_string())
    );
    let u = HttpUrl::parse("http://[::1]:9100?id=x").unwrap();
    assert_eq!(
        (u.host.as_str(), u.port, u.target.as_str()),
        ("[::1]", 9100, "/?id=x")
    );
    let u = HttpUrl::parse("http://[::1]/p").unwrap();
    assert_eq!((u.host.as_str(), u.port), ("[::1]", 80));
    for bad in [
        "127.0.0.1:9100/x",
        "http://",
        "http:///x",
        "http://h:/x",
        "http://h:0/",
        "http://h:70000/",
        "http://h:x/",
        "http://u:p@h/",
        "http://[::1/",
        "http://[::1]x/",
        "http://h/a b",
        "http://h/a\r\nX: y",
    ] {
        assert!(
            matches!(HttpUrl::parse(bad), Err(PostbackError::InvalidUrl(_))),
            "{bad}"
        );
    }
    let u = HttpUrl::parse("https://h/p").unwrap();
    assert_eq!((u.host.as_str(), u.port, u.tls), ("h", 443, true));
    assert!(!HttpUrl::parse("http://h/p").unwrap().tls);
    for s in ["wss://h/", "ws://h/", "ftp://h/"] {
        assert!(
            matches!(HttpUrl::parse(s), Err(PostbackError::UnsupportedScheme(_))),
            "{s}"
        );
    }
}

fn args(v: &[&str]) -> Vec<OsString> {
    v.iter().map(OsString::from).collect()
}

#[test]
fn post_command_arguments() {
    let a = parse_post_args(args(&[
        "http://h:1/@connections/x",
        "--status",
        "404",
        "--header",
        "message-id: m-1",
        "--header",
        "X-Url:http://a:b",
        "--timeout",
        "0.5",
        "{\"a\":1}",
    ]))
    .unwrap()
    .unwrap();
    assert_eq!(a.url, "http://h:1/@connections/x");
    assert_eq!(a.status, 404);
    assert_eq!(a.headers.get("message-id"), Some(&json!("m-1")));
    assert_eq!(a.headers.get("X-Url"), Some(&json!("http://a:b")));
    assert_eq!(a.options.io_timeout, Duration::from_millis(500));
    assert_eq!(a.body, "{\"a\":1}");
    assert_eq!(parse_post_args(args(&["--help"])).unwrap(), None);
    for bad in [
        &["http://h/"][..],
        &["http://h/", "a", "b"],
        &["--status", "99", "http://h/", "b"],
        &["--status", "x", "http://h/", "b"],
        &["--header", "nocolon", "http://h/", "b"],
        &["--header", ":v", "http://h/", "b"],
        &["--timeout", "0", "http://h/", "b"],
        &["--bogus", "http://h/", "b"],
        &["http://h/", "b", "--status"],
    ] {
        let e = parse_post_args(args(bad)).unwrap_err();
        assert_eq!(e.exit_code, 2, "{bad:?}: {e}");
    }
}

#[test]
fn post_command_body_is_json_or_a_string() {
    assert_eq!(body_value("{\"a\":[1,2]}"), json!({"a": [1, 2]}));
    assert_eq!(body_value("42"), json!(42));
    assert_eq!(body_value("\"quoted\""), json!("quoted"));
    assert_eq!(body_value("hello world"), json!("hello world"));
    assert_eq!(body_value(""), json!(""));
}

#[test]
fn post_command_exit_codes() {
    let (port, server) = serve_once(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
    run_post_command(args(&[
        &format!("http://127.0.0.1:{port}/@connections/a"),
        "--header",
        "message-id:m",
        "hi",
    ]))
    .unwrap();
    let got = server.join().unwrap();
    assert_eq!(
        String::from_utf8(got.body).unwrap(),
        r#"{"statusCode":200,"headers":{"message-id":"m"},"body":"hi"}"#
    );

    let (port, server) = serve_once(b"HTTP/1.1 410 Gone\r\nContent-Length: 0\r\n\r\n");
    let e = run_post_command(args(&[&format!("http://127.0.0.1:{port}/"), "{}"])).unwrap_err();
    assert_eq!(e.exit_code, 1);
    assert!(e.message.contains("410"), "{e}");
    server.join().unwrap();

    let e = run_post_command(args(&["https://h/", "{}"])).unwrap_err();
    assert_eq!(e.exit_code, 2);
    assert!(e.message.contains("--cacert"), "{e}");
    let e =
        run_post_command(args(&["--cacert", "/no/such/ca.pem", "https://h/", "{}"])).unwrap_err();
    assert_eq!(e.exit_code, 2);
    assert!(e.message.contains("/no/such/ca.pem"), "{e}");
    let e = run_post_command(args(&["not a url", "{}"])).unwrap_err();
    assert_eq!(e.exit_code, 2);
}

/// A management "server" without the reactor: std sockets driving `mgmt::Session` over a
/// table with one connection, `live`. Hands back what was posted to it.
/// `(connection id, envelope)` pairs the fake table was asked to send.
type Posted = Vec<(String, Vec<u8>)>;

fn serve_mgmt(connections: usize) -> (u16, JoinHandle<Posted>) {
    use crate::mgmt::{ConnInfo, MetricsSnapshot, MgmtContext, Session};

    #[derive(Default)]
    struct Table(Posted);
    impl MgmtContext for Table {
        fn list(&self) -> Vec<String> {
            vec!["live".into()]
        }
        fn info(&self, id: &str) -> Option<ConnInfo> {
            (id == "live").then(|| ConnInfo {
                connected_at: std::time::UNIX_EPOCH,
                last_active_at: std::time::UNIX_EPOCH,
                source_ip: "127.0.0.1".parse().unwrap(),
                subprotocol: None,
                identity_id: None,
            })
        }
        fn post(&mut self, id: &str, envelope_json: Vec<u8>) -> bool {
            self.0.push((id.to_string(), envelope_json));
            true
        }
        fn close(&mut self, _: &str) -> bool {
            false
        }
        fn shutting_down(&self) -> bool {
            false
        }
        fn metrics(&self) -> MetricsSnapshot {
            MetricsSnapshot::default()
        }
        fn token(&self) -> Option<&str> {
            None
        }
    }

    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let h = thread::spawn(move || {
        let mut table = Table::default();
        for _ in 0..connections {
            let (mut s, _) = listener.accept().unwrap();
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let mut session = Session::new(crate::http::Limits::default());
            let mut buf = [0u8; 512];
            loop {
                let n = s.read(&mut buf).unwrap();
                let mut out = Vec::new();
                let close = session.on_bytes(&buf[..n], &mut table, &mut out);
                s.write_all(&out).unwrap();
                if close || n == 0 {
                    break;
                }
            }
        }
        table.0
    });
    (port, h)
}

#[test]
fn client_and_server_agree_end_to_end() {
    let (port, server) = serve_mgmt(3);
    let base = format!("http://127.0.0.1:{port}");
    postback(&format!("{base}/@connections/live"), &message()).unwrap();
    let e = postback(&format!("{base}/@connections/gone"), &message()).unwrap_err();
    assert!(matches!(e, PostbackError::Gone), "{e:?}");
    let e = postback(&format!("{base}/nothing/here"), &message()).unwrap_err();
    match e {
        PostbackError::Status(501, body) => {
            assert!(body.contains("Route for 'post_nothing' event"), "{body}")
        }
        e => panic!("{e:?}"),
    }
    let posted = server.join().unwrap();
    assert_eq!(posted.len(), 1);
    assert_eq!(posted[0].0, "live");
    assert_eq!(
        String::from_utf8(posted[0].1.clone()).unwrap(),
        r#"{"statusCode":201,"headers":{"message-id":"m-1"},"body":{"message":"Hello"}}"#
    );
}
