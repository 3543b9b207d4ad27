use std::collections::BTreeMap;
use std::time::{Duration, UNIX_EPOCH};

use super::*;
use crate::http::{HttpParser, Limits, Parsed};

/// A connection table in a map, recording what the handler asked for.
#[derive(Default)]
struct Fake {
    conns: BTreeMap<String, ConnInfo>,
    posted: Vec<(String, String)>,
    closed: Vec<String>,
    shutting_down: bool,
    token: Option<String>,
    /// Make `post` fail as if the connection closed between the check and the send.
    post_races: bool,
    /// Under a cluster: the operations handed to it.
    remote: Option<Vec<Remote>>,
    /// Under a cluster that cannot be reached: why.
    degraded: Option<String>,
}

impl Fake {
    fn with(ids: &[&str]) -> Fake {
        let mut f = Fake::default();
        for id in ids {
            f.conns.insert(id.to_string(), info());
        }
        f
    }
}

fn info() -> ConnInfo {
    ConnInfo {
        connected_at: UNIX_EPOCH + Duration::from_secs(1_700_000_000),
        last_active_at: UNIX_EPOCH + Duration::from_millis(1_700_000_001_500),
        source_ip: "127.0.0.1".parse().unwrap(),
        subprotocol: None,
        identity_id: Some("alice".into()),
    }
}

impl MgmtContext for Fake {
    fn list(&self) -> Vec<String> {
        self.conns.keys().cloned().collect()
    }
    fn info(&self, id: &str) -> Option<ConnInfo> {
        self.conns.get(id).cloned()
    }
    fn post(&mut self, id: &str, envelope_json: Vec<u8>) -> bool {
        if self.post_races || !self.conns.contains_key(id) {
            return false;
        }
        self.posted
            .push((id.to_string(), String::from_utf8(envelope_json).unwrap()));
        true
    }
    fn close(&mut self, id: &str) -> bool {
        let known = self.conns.remove(id).is_some();
        if known {
            self.closed.push(id.to_string());
        }
        known
    }
    fn shutting_down(&self) -> bool {
        self.shutting_down
    }
    fn metrics(&self) -> MetricsSnapshot {
        MetricsSnapshot {
            connections_open: self.conns.len() as u64,
            ..MetricsSnapshot::default()
        }
    }
    fn token(&self) -> Option<&str> {
        self.token.as_deref()
    }
    fn reload(&mut self) -> Result<String, String> {
        Ok("config /srv/app/config.yaml".to_string())
    }
    fn remote(&mut self, op: Remote) -> Option<Result<(), String>> {
        let ops = self.remote.as_mut()?;
        if let Some(why) = &self.degraded {
            return Some(Err(why.clone()));
        }
        ops.push(op);
        Some(Ok(()))
    }
    fn degraded(&self) -> Option<String> {
        self.degraded.clone()
    }
}

/// Parse one request from raw bytes.
fn req(raw: &str) -> HttpRequest {
    match HttpParser::new(Limits::default()).feed(raw.as_bytes()) {
        Ok(Parsed::Request { request, .. }) => request,
        other => panic!("not a complete request: {other:?}"),
    }
}

fn get(path: &str) -> HttpRequest {
    req(&format!("GET {path} HTTP/1.1\r\nHost: h\r\n\r\n"))
}

fn with_body(method: &str, path: &str, body: &str) -> HttpRequest {
    req(&format!(
        "{method} {path} HTTP/1.1\r\nHost: h\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    ))
}

fn body_json(r: &MgmtResponse) -> serde_json::Value {
    serde_json::from_slice(&r.body).unwrap()
}

fn wire(r: &MgmtResponse) -> String {
    let mut out = Vec::new();
    r.write(&mut out);
    String::from_utf8(out).unwrap()
}

#[test]
fn routes() {
    let cases: &[(&str, &str, Route)] = &[
        ("GET", "/@connections", Route::List),
        ("HEAD", "/@connections", Route::List),
        ("GET", "//@connections/", Route::List),
        ("GET", "/list_@connections", Route::List),
        (
            "POST",
            "/@connections/abc",
            Route::Post {
                id: Some("abc".into()),
            },
        ),
        (
            "POST",
            "/%40connections/a%20b",
            Route::Post {
                id: Some("a b".into()),
            },
        ),
        (
            "POST",
            "/post_@connection?id=abc",
            Route::Post {
                id: Some("abc".into()),
            },
        ),
        (
            "POST",
            "/@connections?id=abc",
            Route::Post {
                id: Some("abc".into()),
            },
        ),
        ("POST", "/post_@connection", Route::Post { id: None }),
        ("POST", "/post_@connection?id=", Route::Post { id: None }),
        ("POST", "/@connections", Route::Post { id: None }),
        ("GET", "/@connections/abc", Route::Get { id: "abc".into() }),
        (
            "DELETE",
            "/@connections/abc",
            Route::Delete { id: "abc".into() },
        ),
        ("GET", "/healthz", Route::Health),
        ("HEAD", "/healthz", Route::Health),
        ("GET", "/metrics", Route::Metrics),
    ];
    for (m, p, want) in cases {
        assert_eq!(&route(&with_body(m, p, "")), want, "{m} {p}");
    }
    let ni = |m: &str, p: &str| match route(&with_body(m, p, "")) {
        Route::NotImplemented { event } => event,
        r => panic!("{m} {p} routed to {r:?}"),
    };
    assert_eq!(ni("PUT", "/@connections/x"), "put_@connection");
    assert_eq!(ni("DELETE", "/@connections"), "delete_@connection");
    assert_eq!(ni("GET", "/list_@connections/x"), "get_list_@connection");
    assert_eq!(ni("GET", "/post_@connection"), "list_post_@connection");
    assert_eq!(ni("POST", "/healthz"), "post_healthz");
    assert_eq!(ni("get", "/metrics"), "list_metrics");
    assert_eq!(ni("GET", "/@connections/a/b"), "list_@connection_b");
    assert_eq!(ni("GET", "/"), "");
}

/// The 501's event name is the core's `map_path` over the decoded segments (2.2.6 table,
/// plus the management paths and an escaped segment).
#[test]
fn event_names_follow_the_core_path_rules() {
    let name = |m: &str, p: &str| {
        let segs: Vec<String> = p.split('/').map(|s| percent_decode(s, false)).collect();
        let segs: Vec<&str> = segs.iter().map(String::as_str).collect();
        event_name(m, &segs)
    };
    let cases = [
        ("GET", "/users", "list_users"),
        ("GET", "/users/someone/phones/123", "get_user_phone"),
        ("GET", "/v1/users/someone/phones", "list_v1_user_phones"),
        ("POST", "/v1/users/", "post_v1_user"),
        ("DELETE", "/people/1", "delete_person"),
        ("GET", "/data", "list_data"),
        ("OPTIONS", "/v1/data", "options_v1_datum"),
        ("GET", "/news", "list_news"),
        ("GET", "/v1.2/statuses", "list_v1.2_statuses"),
        ("GET", "/v1", "get_v1"),
        ("GET", "/@connections", "list_@connections"),
        ("POST", "/@connections/abc", "post_@connection"),
        ("GET", "/list_@connections", "list_list_@connections"),
        ("POST", "/post_@connection", "post_post_@connection"),
        ("GET", "/", ""),
        ("GET", "//", ""),
        ("PUT", "/%40connections/x", "put_@connection"),
        // A decoded `/` stays inside its segment.
        ("PUT", "/a%2Fbs/x", "put_a/b"),
    ];
    for (m, p, want) in cases {
        assert_eq!(name(m, p), want, "{m} {p}");
    }
}

#[test]
fn list_answers_a_json_array() {
    let mut ctx = Fake::default();
    let r = handle(&get("/@connections"), &mut ctx);
    assert_eq!((r.status, r.content_type), (200, Some("application/json")));
    assert_eq!(r.body, b"[]");
    let mut ctx = Fake::with(&["a", "b"]);
    let r = handle(&get("/list_@connections"), &mut ctx);
    assert_eq!(body_json(&r), serde_json::json!(["a", "b"]));
    assert!(!r.close);
}

#[test]
fn post_sends_the_envelope_and_answers_200_empty() {
    let mut ctx = Fake::with(&["a"]);
    let r = handle(
        &with_body(
            "POST",
            "/@connections/a",
            r#"{"headers":{"message-id":"m1"},"body":{"x":1}}"#,
        ),
        &mut ctx,
    );
    assert_eq!((r.status, r.body.len(), r.content_type), (200, 0, None));
    assert_eq!(
        ctx.posted,
        vec![(
            "a".to_string(),
            r#"{"statusCode":200,"headers":{"message-id":"m1"},"body":{"x":1}}"#.to_string()
        )]
    );
    let r = handle(&with_body("POST", "/post_@connection?id=a", "{}"), &mut ctx);
    assert_eq!(r.status, 200);
    assert_eq!(
        ctx.posted[1].1,
        r#"{"statusCode":200,"headers":{},"body":""}"#
    );
}

#[test]
fn post_answers_410_before_looking_at_the_body() {
    let mut ctx = Fake::with(&["a"]);
    for body in ["{}", "not json", "42", ""] {
        let r = handle(&with_body("POST", "/@connections/gone", body), &mut ctx);
        assert_eq!(r.status, 410, "{body}");
        assert_eq!(
            body_json(&r),
            serde_json::json!({"statusCode": 410, "message": "Gone.", "details": "Connection 'gone' is not connected."})
        );
    }
    // (An empty body is not here: it means every default, like `{}`.)
    for body in ["not json", "42", "[1]", r#"{"statusCode":"x"}"#] {
        let r = handle(&with_body("POST", "/@connections/a", body), &mut ctx);
        assert_eq!(r.status, 400, "{body}");
        assert_eq!(body_json(&r)["statusCode"], 400);
    }
    assert!(ctx.posted.is_empty());
    // Gone between the check and the send.
    ctx.post_races = true;
    let r = handle(&with_body("POST", "/@connections/a", "{}"), &mut ctx);
    assert_eq!(r.status, 410);
}

#[test]
fn post_without_an_id_is_400() {
    let mut ctx = Fake::with(&["a"]);
    for path in [
        "/post_@connection",
        "/@connections",
        "/post_@connection?id=",
    ] {
        let r = handle(&with_body("POST", path, "{}"), &mut ctx);
        assert_eq!(r.status, 400, "{path}");
    }
}

#[test]
fn get_one_connection() {
    let mut ctx = Fake::with(&["a"]);
    let r = handle(&get("/@connections/a"), &mut ctx);
    assert_eq!(r.status, 200);
    assert_eq!(
        body_json(&r),
        serde_json::json!({
            "connectionId": "a",
            "connectedAt": "2023-11-14T22:13:20.000Z",
            "lastActiveAt": "2023-11-14T22:13:21.500Z",
            "sourceIp": "127.0.0.1",
            "subprotocol": null,
            "identityId": "alice"
        })
    );
    assert_eq!(handle(&get("/@connections/zz"), &mut ctx).status, 410);
}

#[test]
fn delete_closes_with_204() {
    let mut ctx = Fake::with(&["a"]);
    let r = handle(&with_body("DELETE", "/@connections/a", ""), &mut ctx);
    assert_eq!(r.status, 204);
    assert_eq!(ctx.closed, vec!["a"]);
    assert_eq!(wire(&r), "HTTP/1.1 204 No Content\r\n\r\n");
    let r = handle(&with_body("DELETE", "/@connections/a", ""), &mut ctx);
    assert_eq!(r.status, 410);
}

#[test]
fn healthz_is_503_while_shutting_down_and_then_closes() {
    let mut ctx = Fake::default();
    let r = handle(&get("/healthz"), &mut ctx);
    assert_eq!(
        (r.status, r.body.as_slice(), r.close),
        (200, &b"ok\n"[..], false)
    );
    ctx.shutting_down = true;
    let r = handle(&get("/healthz"), &mut ctx);
    assert_eq!((r.status, r.close), (503, true));
    assert!(wire(&r).contains("\r\nConnection: close\r\n"));
}

#[test]
fn metrics_are_prometheus_text() {
    let mut ctx = Fake::with(&["a", "b"]);
    let r = handle(&get("/metrics"), &mut ctx);
    assert_eq!(r.status, 200);
    assert_eq!(r.content_type, Some(METRICS_CONTENT_TYPE));
    let text = String::from_utf8(r.body).unwrap();
    assert!(text.contains("\nconfigurapi_ws_connections_open 2\n"));
}

#[test]
fn anything_else_is_the_cores_501() {
    let mut ctx = Fake::default();
    let r = handle(&get("/users"), &mut ctx);
    assert_eq!(r.status, 501);
    assert_eq!(
        String::from_utf8(r.body).unwrap(),
        r#"{"statusCode":501,"message":"Not Implemented.","details":"Route for 'list_users' event could not be found.'"}"#
    );
    let r = handle(&with_body("PATCH", "/@connections/a", "{}"), &mut ctx);
    assert_eq!(r.status, 501);
}

#[test]
fn token_is_required_when_set_and_checked_first() {
    let mut ctx = Fake::with(&["a"]);
    ctx.token = Some("s3cret".into());
    let auth = |value: &str| {
        req(&format!(
            "GET /@connections HTTP/1.1\r\nHost: h\r\nAuthorization: {value}\r\n\r\n"
        ))
    };
    let r = handle(&get("/@connections"), &mut ctx);
    assert_eq!(r.status, 401);
    assert!(wire(&r).contains("\r\nWWW-Authenticate: Bearer\r\n"));
    for bad in [
        "Bearer s3cre",
        "Bearer s3cret2",
        "Bearer S3CRET",
        "Basic s3cret",
        "s3cret",
        "Bearer",
        "Bearers3cret",
    ] {
        assert_eq!(handle(&auth(bad), &mut ctx).status, 401, "{bad}");
    }
    for good in ["Bearer s3cret", "bearer s3cret", "BEARER   s3cret "] {
        assert_eq!(handle(&auth(good), &mut ctx).status, 200, "{good}");
    }
    // 401 comes before 410, 400 and 501, and before anything is sent or closed.
    assert_eq!(
        handle(&with_body("POST", "/@connections/zz", "x"), &mut ctx).status,
        401
    );
    assert_eq!(
        handle(&with_body("DELETE", "/@connections/a", ""), &mut ctx).status,
        401
    );
    assert_eq!(handle(&get("/nope"), &mut ctx).status, 401);
    assert_eq!(handle(&get("/healthz"), &mut ctx).status, 401);
    assert!(ctx.closed.is_empty());
}

#[test]
fn constant_time_compare() {
    assert!(constant_time_eq(b"abc", b"abc"));
    assert!(!constant_time_eq(b"abd", b"abc"));
    assert!(!constant_time_eq(b"ab", b"abc"));
    assert!(!constant_time_eq(b"abcd", b"abc"));
    assert!(!constant_time_eq(b"", b"abc"));
    assert!(constant_time_eq(b"", b""));
    // A shorter guess that equals the token's complement byte-wise still fails.
    assert!(!constant_time_eq(&[!b'a'], b"a\0"));
}

#[test]
fn parser_errors_become_closing_error_responses() {
    let mut p = HttpParser::new(Limits::default());
    let e = p
        .feed(b"POST /@connections/a HTTP/1.1\r\nHost: h\r\nContent-Length: 1048577\r\n\r\n")
        .unwrap_err();
    let r = MgmtResponse::from_http_error(&e);
    assert_eq!((r.status, r.close), (413, true));
    assert_eq!(body_json(&r)["message"], "Content Too Large.");
    let text = wire(&r);
    assert!(text.starts_with("HTTP/1.1 413 Content Too Large\r\n"));
    assert!(text.contains("\r\nConnection: close\r\n"));
}

#[test]
fn head_and_connection_close() {
    let mut ctx = Fake::default();
    let r = handle(&req("HEAD /healthz HTTP/1.1\r\nHost: h\r\n\r\n"), &mut ctx);
    assert_eq!(
        wire(&r),
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 3\r\n\r\n"
    );
    let r = handle(
        &req("GET /healthz HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n"),
        &mut ctx,
    );
    assert!(r.close);
    assert!(wire(&r).ends_with("Connection: close\r\n\r\nok\n"));
}

#[test]
fn urls() {
    assert_eq!(
        base_url("127.0.0.1:9100".parse().unwrap()),
        "http://127.0.0.1:9100"
    );
    assert_eq!(
        base_url("0.0.0.0:9100".parse().unwrap()),
        "http://127.0.0.1:9100"
    );
    assert_eq!(base_url("[::]:9100".parse().unwrap()), "http://[::1]:9100");
    assert_eq!(
        base_url("[fe80::1]:80".parse().unwrap()),
        "http://[fe80::1]:80"
    );
}

/// One documented example: a curl command and the status line it should print.
struct Example {
    section: String,
    curl: String,
    status_line: String,
}

/// Examples in docs/management.md: a ```sh block holding one `curl` line, followed by a
/// ```text block whose first line is the expected status line.
fn doc_examples(doc: &str) -> Vec<Example> {
    let mut out = Vec::new();
    let lines: Vec<&str> = doc.lines().collect();
    let mut section = String::new();
    let mut i = 0;
    while i < lines.len() {
        if let Some(h) = lines[i].strip_prefix("## ") {
            section = h.to_string();
        }
        if lines[i] == "```sh" && lines.get(i + 2) == Some(&"```") {
            let curl = lines[i + 1];
            assert!(
                curl.starts_with("curl "),
                "sh blocks hold one curl command: {curl}"
            );
            let mut j = i + 3;
            while lines.get(j) == Some(&"") {
                j += 1;
            }
            assert_eq!(
                lines.get(j),
                Some(&"```text"),
                "no status block after {curl}"
            );
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

/// Split a command line the way a shell would for the forms the docs use: whitespace
/// separates words, single quotes are literal, double quotes keep spaces.
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
    if in_word {
        words.push(cur);
    }
    words
}

/// The raw HTTP request curl sends for the documented flags.
fn curl_request(cmd: &str) -> Vec<u8> {
    let words = shell_words(cmd);
    let mut method = None;
    let mut headers = Vec::new();
    let mut data = None;
    let mut url = None;
    let mut head = false;
    let mut it = words.iter().skip(1);
    while let Some(w) = it.next() {
        match w.as_str() {
            "-s" | "-i" | "-si" => {}
            "-sI" | "-I" => head = true,
            "-X" => method = it.next().cloned(),
            "-H" => headers.push(it.next().unwrap().clone()),
            "-d" | "--data" | "--data-binary" => data = it.next().cloned(),
            w if w.starts_with("http://") => url = Some(w.to_string()),
            other => panic!("flag {other} not understood by the doc test"),
        }
    }
    let url = url.expect("a URL");
    let rest = url.strip_prefix("http://").unwrap();
    let (host, target) = rest.split_at(rest.find('/').unwrap());
    let method = method.unwrap_or_else(|| {
        if head {
            "HEAD".into()
        } else if data.is_some() {
            "POST".into()
        } else {
            "GET".into()
        }
    });
    let mut raw = format!(
        "{method} {target} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: curl/8\r\nAccept: */*\r\n"
    );
    for h in &headers {
        raw.push_str(h);
        raw.push_str("\r\n");
    }
    if let Some(d) = &data {
        if !headers
            .iter()
            .any(|h| h.to_ascii_lowercase().starts_with("content-type:"))
        {
            raw.push_str("Content-Type: application/x-www-form-urlencoded\r\n");
        }
        raw.push_str(&format!("Content-Length: {}\r\n", d.len()));
    }
    raw.push_str("\r\n");
    raw.push_str(data.as_deref().unwrap_or(""));
    raw.into_bytes()
}

/// Every curl example in docs/management.md answers the documented status, run in order
/// against one fake connection table (as the live test will run them against a server),
/// and every route appears in at least one example.
#[test]
fn docs_examples_answer_as_documented() {
    let doc = include_str!("../../docs/management.md");
    let examples = doc_examples(doc);
    assert!(
        examples.len() >= 15,
        "found only {} examples",
        examples.len()
    );
    let id = "0b5f3a3e-8c1e-4d43-9d0e-6b1c0b8a2f11";
    let mut ctx = Fake::with(&[id]);
    let mut seen = Vec::new();
    for ex in &examples {
        ctx.token = (ex.section == "Access control").then(|| "s3cret".to_string());
        let cmd = ex.curl.replace("$ID", id);
        let raw = curl_request(&cmd);
        let mut p = HttpParser::new(Limits::default());
        let request = match p.feed(&raw) {
            Ok(Parsed::Request { request, consumed }) => {
                assert_eq!(consumed, raw.len());
                request
            }
            other => panic!("{cmd}: {other:?}"),
        };
        seen.push(std::mem::discriminant(&route(&request)));
        let r = handle(&request, &mut ctx);
        let text = wire(&r);
        assert_eq!(text.lines().next(), Some(ex.status_line.as_str()), "{cmd}");
    }
    for r in [
        Route::List,
        Route::Post { id: None },
        Route::Get { id: String::new() },
        Route::Delete { id: String::new() },
        Route::Health,
        Route::Broadcast { identity: None },
        Route::Reload,
        Route::Metrics,
        Route::NotImplemented {
            event: String::new(),
        },
    ] {
        assert!(
            seen.contains(&std::mem::discriminant(&r)),
            "no example for {r:?}"
        );
    }
    // Both seed aliases and every status the API answers are shown.
    for needle in ["/list_@connections", "/post_@connection?id="] {
        assert!(examples.iter().any(|e| e.curl.contains(needle)), "{needle}");
    }
    for status in [
        "200 OK",
        "204 No Content",
        "400 Bad Request",
        "401 Unauthorized",
        "410 Gone",
        "501 Not Implemented",
    ] {
        assert!(
            examples.iter().any(|e| e.status_line.ends_with(status)),
            "{status}"
        );
    }
    // The metric names in the doc's table are the ones rendered.
    let rendered = render_metrics(&MetricsSnapshot::default());
    for l in rendered.lines().filter_map(|l| l.strip_prefix("# TYPE ")) {
        let name = l.split(' ').next().unwrap();
        assert!(
            doc.contains(&format!("`{name}`")),
            "metric {name} not documented"
        );
    }
}

/// Status lines in `out`, in order (bodies here never start with "HTTP/1.1 ").
fn status_lines(out: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(out)
        .split("\r\n")
        .flat_map(|l| l.split("\n"))
        .filter(|l| l.starts_with("HTTP/1.1 "))
        .map(str::to_string)
        .collect()
}

#[test]
fn session_answers_pipelined_requests_in_order() {
    let mut ctx = Fake::with(&["a"]);
    let mut s = Session::new(Limits::default());
    let mut out = Vec::new();
    let input = b"GET /healthz HTTP/1.1\r\nHost: h\r\n\r\nPOST /@connections/a HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\n\r\n{}GET /nope HTTP/1.1\r\nHost: h\r\n\r\nGET /metr";
    assert!(!s.on_bytes(input, &mut ctx, &mut out));
    assert_eq!(
        status_lines(&out),
        [
            "HTTP/1.1 200 OK",
            "HTTP/1.1 200 OK",
            "HTTP/1.1 501 Not Implemented"
        ]
    );
    assert_eq!(ctx.posted.len(), 1);
    assert!(s.in_progress());
    out.clear();
    assert!(!s.on_bytes(b"ics HTTP/1.1\r\nHost: h\r\n\r\n", &mut ctx, &mut out));
    assert_eq!(status_lines(&out), ["HTTP/1.1 200 OK"]);
    assert!(!s.in_progress());
}

#[test]
fn session_closes_after_an_error_and_ignores_the_rest() {
    let mut ctx = Fake::with(&["a"]);
    let mut s = Session::new(Limits::default());
    let mut out = Vec::new();
    let input = b"POST /@connections/a HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nPOST /@connections/a HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\n\r\n{}";
    assert!(s.on_bytes(input, &mut ctx, &mut out));
    let text = String::from_utf8(out.clone()).unwrap();
    assert!(text.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{text}");
    assert!(text.contains("\r\nConnection: close\r\n"));
    assert_eq!(status_lines(&out).len(), 1);
    assert!(ctx.posted.is_empty(), "the smuggled request must not run");
    out.clear();
    assert!(s.on_bytes(
        b"GET /healthz HTTP/1.1\r\nHost: h\r\n\r\n",
        &mut ctx,
        &mut out
    ));
    assert!(out.is_empty());
    assert!(s.is_closing());
}

#[test]
fn session_closes_on_request_and_while_shutting_down() {
    let mut ctx = Fake::default();
    let mut s = Session::new(Limits::default());
    let mut out = Vec::new();
    let input = b"GET /healthz HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\nGET /healthz HTTP/1.1\r\nHost: h\r\n\r\n";
    assert!(s.on_bytes(input, &mut ctx, &mut out));
    assert_eq!(status_lines(&out), ["HTTP/1.1 200 OK"]);

    ctx.shutting_down = true;
    let mut s = Session::new(Limits::default());
    let mut out = Vec::new();
    let input = b"GET /healthz HTTP/1.1\r\nHost: h\r\n\r\nGET /healthz HTTP/1.1\r\nHost: h\r\n\r\n";
    assert!(s.on_bytes(input, &mut ctx, &mut out));
    assert_eq!(status_lines(&out), ["HTTP/1.1 503 Service Unavailable"]);
}

#[test]
fn session_sends_100_continue_when_the_client_waits() {
    let mut ctx = Fake::with(&["a"]);
    let mut s = Session::new(Limits::default());
    let mut out = Vec::new();
    let head = b"POST /@connections/a HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n";
    assert!(!s.on_bytes(head, &mut ctx, &mut out));
    assert_eq!(out, b"HTTP/1.1 100 Continue\r\n\r\n");
    out.clear();
    assert!(!s.on_bytes(b"{}", &mut ctx, &mut out));
    assert_eq!(status_lines(&out), ["HTTP/1.1 200 OK"]);
}

#[test]
fn session_answers_413_for_a_body_over_the_limit() {
    let mut ctx = Fake::with(&["a"]);
    let mut s = Session::new(Limits {
        max_body: 8,
        ..Limits::default()
    });
    let mut out = Vec::new();
    let input =
        b"POST /@connections/a HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n9\r\n";
    assert!(s.on_bytes(input, &mut ctx, &mut out));
    assert_eq!(status_lines(&out), ["HTTP/1.1 413 Content Too Large"]);
}

/// Random bytes, fed in random pieces to a session over a live table: every answer is a
/// well-formed status line, nothing panics, and a closed session stays silent.
#[test]
fn session_never_panics_on_random_input() {
    let mut rng = crate::http::test_rng::Rng(0x2545_F491_4F6C_DD1D);
    let words: &[&[u8]] = &[
        b"GET ",
        b"POST ",
        b"DELETE ",
        b"HEAD ",
        b"/@connections",
        b"/a",
        b"/list_@connections",
        b"/post_@connection?id=a",
        b"/healthz",
        b"/metrics",
        b" HTTP/1.1\r\n",
        b"Host: h\r\n",
        b"Content-Length: 2\r\n",
        b"Transfer-Encoding: chunked\r\n",
        b"Connection: close\r\n",
        b"Expect: 100-continue\r\n",
        b"Authorization: Bearer t\r\n",
        b"\r\n",
        b"{}",
        b"2\r\n{}\r\n0\r\n\r\n",
        b"\n",
        b":",
        b"\x00",
        b"%",
    ];
    for round in 0..5_000 {
        let mut ctx = Fake::with(&["a", "b"]);
        ctx.token = (round % 3 == 0).then(|| "t".to_string());
        ctx.shutting_down = round % 11 == 0;
        let mut input = Vec::new();
        for _ in 0..rng.below(40) {
            input.extend_from_slice(words[rng.below(words.len())]);
        }
        let mut s = Session::new(Limits {
            max_head_bytes: 256,
            max_headers: 6,
            max_body: 16,
        });
        let mut pos = 0;
        let mut closed = false;
        while pos < input.len() {
            let end = (pos + 1 + rng.below(64)).min(input.len());
            let mut out = Vec::new();
            let close = s.on_bytes(&input[pos..end], &mut ctx, &mut out);
            if closed {
                assert!(out.is_empty());
            }
            if !out.is_empty() {
                assert!(
                    out.starts_with(b"HTTP/1.1 "),
                    "{:?}",
                    String::from_utf8_lossy(&out)
                );
            }
            closed |= close;
            pos = end;
        }
    }
}

fn clustered(ids: &[&str]) -> Fake {
    let mut f = Fake::with(ids);
    f.remote = Some(Vec::new());
    f
}

#[test]
fn under_a_cluster_what_is_not_here_is_handed_over_and_what_is_stays_local() {
    let mut ctx = clustered(&["here"]);
    // Held here: answered at once, as without a cluster.
    assert_eq!(
        handle(&with_body("POST", "/@connections/here", "{}"), &mut ctx).status,
        200
    );
    assert_eq!(
        handle(&get("/@connections?scope=local"), &mut ctx).body,
        br#"["here"]"#
    );
    // Not here: parked, the operation handed over (the body's fault travels with it:
    // only the owner's answer can say 410 first).
    for r in [
        handle(&get("/@connections"), &mut ctx),
        handle(&get("/@connections/there"), &mut ctx),
        handle(&with_body("POST", "/@connections/there", "[1]"), &mut ctx),
        handle(
            &req("DELETE /@connections/there HTTP/1.1\r\nHost: h\r\n\r\n"),
            &mut ctx,
        ),
        handle(
            &with_body("POST", "/@broadcast?identity=al", r#"{"body":1}"#),
            &mut ctx,
        ),
    ] {
        assert!(r.parked, "{r:?}");
    }
    let there = || "there".to_string();
    assert_eq!(
        ctx.remote.unwrap(),
        [
            Remote::List,
            Remote::Get { id: there() },
            Remote::Post {
                id: there(),
                body: Err("the body is not a JSON object".into())
            },
            Remote::Delete { id: there() },
            Remote::Broadcast {
                identity: Some("al".into()),
                envelope: br#"{"statusCode":200,"headers":{},"body":1}"#.to_vec()
            },
        ]
    );
}

#[test]
fn an_unreachable_cluster_answers_503_with_the_reason_and_healthz_says_degraded() {
    let mut ctx = clustered(&["here"]);
    ctx.degraded = Some("Redis unreachable: connection refused".into());
    let r = handle(&get("/@connections/there"), &mut ctx);
    assert_eq!(r.status, 503);
    assert!(wire(&r).contains("Retry-After: 1"));
    assert_eq!(
        body_json(&r)["details"],
        "Redis unreachable: connection refused"
    );
    // The node's own connections are still served.
    assert_eq!(handle(&get("/@connections/here"), &mut ctx).status, 200);
    let r = handle(&get("/healthz"), &mut ctx);
    assert_eq!(r.status, 200);
    assert_eq!(r.body, b"degraded: Redis unreachable: connection refused\n");
}

#[test]
fn broadcast_without_a_cluster_answers_the_local_count_and_refuses_a_bad_body() {
    let mut ctx = Fake::with(&["a"]);
    let r = handle(
        &with_body("POST", "/@broadcast", r#"{"body":"x"}"#),
        &mut ctx,
    );
    assert_eq!(r.status, 200);
    assert_eq!(
        body_json(&r),
        serde_json::json!({"delivered": 0, "nodes": {"local": 0}, "silent": []})
    );
    assert_eq!(
        handle(&with_body("POST", "/@broadcast", "x"), &mut ctx).status,
        400
    );
    // GET is not a broadcast.
    assert_eq!(handle(&get("/@broadcast"), &mut ctx).status, 501);
}

#[test]
fn a_parked_request_holds_the_requests_behind_it_until_its_answer() {
    let mut ctx = clustered(&[]);
    let mut s = Session::new(Limits::default());
    let mut out = Vec::new();
    let input = b"HEAD /@connections/x HTTP/1.1\r\nHost: h\r\n\r\nGET /healthz HTTP/1.1\r\nHost: h\r\n\r\nGET /hea";
    assert!(!s.on_bytes(input, &mut ctx, &mut out));
    assert!(out.is_empty(), "{:?}", String::from_utf8_lossy(&out));
    assert!(s.is_parked());
    assert!(!s.on_bytes(
        b"lthz HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
        &mut ctx,
        &mut out
    ));
    assert!(out.is_empty());
    // The answer comes: written first (as HEAD: no body), then the two that waited.
    let closing = s.resume(
        MgmtResponse::json(b"{\"a\":1}".to_vec()),
        &mut ctx,
        &mut out,
    );
    assert!(closing);
    assert!(!s.is_parked());
    let text = String::from_utf8(out).unwrap();
    assert_eq!(
        status_lines(text.as_bytes()),
        ["HTTP/1.1 200 OK", "HTTP/1.1 200 OK", "HTTP/1.1 200 OK"]
    );
    assert!(!text.contains("{\"a\":1}"), "HEAD got a body: {text}");
    assert_eq!(s.answered(), 3);
}
