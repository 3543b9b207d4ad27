//! Reloading without dropping clients (issue #14 item 2): SIGHUP and `POST /@reload`
//! on the runner binary, with clients connected throughout. (The certificate case is
//! in tests/tls.rs, beside its certificate helpers.)

mod support;

use std::collections::BTreeMap;
use std::net::SocketAddr;

use serde_json::{json, Value};
use support::{http_call, ws_client, Bin, Scratch, Ws};

const V1: &str = r#"
api:
  events:
    - name: slow
      policies:
        - delayHandler: [1000]
        - echoHandler
    - name: a
      policies: [echoHandler]
"#;

const V2: &str = r#"
api:
  events:
    - name: b
      policies: [echoHandler]
"#;

/// Not a config: a policy names a handler nobody registered.
const BROKEN: &str = r#"
api:
  events:
    - name: c
      policies: [noSuchHandler]
"#;

/// The status `name` is answered with on this connection.
fn status_of(ws: &mut Ws, name: &str) -> Value {
    let r = ws.request(&json!({"name": name, "payload": name, "headers": {"message-id": name}}));
    assert_eq!(r["headers"]["message-id"], name, "{r}");
    r["statusCode"].clone()
}

/// The binary serving the config at `path`, management API on (with `token`).
fn start(path: &std::path::Path, token: Option<&str>) -> (Bin, SocketAddr, SocketAddr) {
    let mut args = vec!["--config", path.to_str().unwrap()];
    if let Some(t) = token {
        args.extend_from_slice(&["--management-token", t]);
    }
    Bin::start_with_management(&args)
}

#[test]
fn sighup_switches_to_a_changed_config_and_keeps_the_old_one_when_broken_without_dropping_clients()
{
    let dir = Scratch::new("reload");
    let path = dir.write("config.yaml", V1);
    let (mut bin, addr, _) = start(&path, None);
    let mut ws = ws_client(addr);
    assert_eq!(status_of(&mut ws, "a"), 200);
    assert_eq!(status_of(&mut ws, "b"), 501);
    // A request under way when the reload comes finishes on the config it started
    // with (its route is gone from the new one). The `a` answered after it shows the
    // runner has read it.
    ws.send(&json!({"name": "slow", "payload": 1, "headers": {"message-id": "slow"}}));
    assert_eq!(status_of(&mut ws, "a"), 200);

    dir.write("config.yaml", V2);
    bin.signal("HUP");
    let line = bin.wait_line("reloaded: ");
    assert!(line.contains(path.to_str().unwrap()), "{line}");
    // The slow answer may come before or after these two.
    for name in ["b", "a"] {
        ws.send(&json!({"name": name, "payload": name, "headers": {"message-id": name}}));
    }
    let mut answers = BTreeMap::new();
    for _ in 0..3 {
        let r = ws.recv();
        answers.insert(
            r["headers"]["message-id"].to_string(),
            r["statusCode"].clone(),
        );
    }
    assert_eq!(answers[r#""b""#], 200, "{answers:?}");
    assert_eq!(answers[r#""a""#], 501, "{answers:?}");
    assert_eq!(answers[r#""slow""#], 200, "{answers:?}");
    // A client that connects now gets the new config too.
    let mut late = ws_client(addr);
    assert_eq!(status_of(&mut late, "b"), 200);

    dir.write("config.yaml", BROKEN);
    bin.signal("HUP");
    let line = bin.wait_line("reload failed");
    assert!(line.contains("noSuchHandler"), "{line}");
    // A server-side fault the operator must see: logged at error (#14 item 3).
    assert!(line.contains(" ERROR "), "{line}");
    assert_eq!(status_of(&mut ws, "b"), 200);
    assert_eq!(status_of(&mut late, "c"), 501);
    assert!(bin.child.try_wait().unwrap().is_none(), "the runner exited");
}

/// `method target` with `Connection: close` and an optional bearer token.
fn call(mgmt: SocketAddr, method: &str, target: &str, token: Option<&str>) -> (u16, Value) {
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    let r = http_call(mgmt, method, target, &auth, b"");
    let body = serde_json::from_slice(&r.body).unwrap_or(Value::Null);
    (r.status, body)
}

#[test]
fn post_reload_is_token_guarded_and_answers_what_was_reloaded_or_why_not() {
    let dir = Scratch::new("reload-post");
    let path = dir.write("config.yaml", V1);
    let (mut bin, addr, mgmt) = start(&path, Some("s3cret"));
    let mut ws = ws_client(addr);
    assert_eq!(status_of(&mut ws, "a"), 200);

    dir.write("config.yaml", V2);
    assert_eq!(call(mgmt, "POST", "/@reload", None).0, 401);
    assert_eq!(call(mgmt, "POST", "/@reload", Some("wrong")).0, 401);
    assert_eq!(
        status_of(&mut ws, "a"),
        200,
        "an unauthorised call reloaded"
    );

    let (status, body) = call(mgmt, "POST", "/@reload", Some("s3cret"));
    assert_eq!(status, 200, "{body}");
    assert!(
        body["reloaded"]
            .as_str()
            .is_some_and(|s| s.contains(path.to_str().unwrap())),
        "{body}"
    );
    assert_eq!(status_of(&mut ws, "b"), 200);

    dir.write("config.yaml", BROKEN);
    let (status, body) = call(mgmt, "POST", "/@reload", Some("s3cret"));
    assert_eq!(status, 500, "{body}");
    assert_eq!(body["message"], "Reload failed.", "{body}");
    assert!(
        body["details"]
            .as_str()
            .is_some_and(|d| d.contains("noSuchHandler")),
        "{body}"
    );
    bin.wait_line("reload failed");
    assert_eq!(status_of(&mut ws, "b"), 200);
    // GET is not a reload.
    assert_eq!(call(mgmt, "GET", "/@reload", Some("s3cret")).0, 501);
}
