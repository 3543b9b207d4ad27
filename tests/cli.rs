//! The runner binary as a user runs it: start-up errors on stderr with exit status 2,
//! schema files beside the config file wherever the runner starts, the logging pack's
//! lines on stderr, and the `post` subcommand's usage errors. Output is read through
//! a channel with a deadline, so a hung binary fails the test instead of hanging it.

mod support;

use std::net::TcpStream;
use std::path::Path;
use std::process::Command;

use serde_json::{json, Value};
use support::{ask_text, tungstenite_at, Bin, Scratch, BIN, DEADLINE};

/// A folder of its own with `app/schemas/` in it, removed when dropped.
fn scratch(name: &str) -> Scratch {
    let dir = Scratch::new(&format!("cli-tests-{name}"));
    std::fs::create_dir_all(dir.0.join("app/schemas")).unwrap();
    dir
}

/// The binary with `args`, in `cwd`; killed when dropped (a test that fails leaves
/// nothing behind).
fn spawn(args: &[&str], cwd: &Path) -> Bin {
    spawn_env(args, &[], cwd)
}

/// [`spawn`] with these environment variables set as well.
fn spawn_env(args: &[&str], vars: &[(&str, &str)], cwd: &Path) -> Bin {
    Bin::spawn(
        Command::new(BIN)
            .args(args)
            .envs(vars.iter().copied())
            .current_dir(cwd),
    )
}

/// The flags every run here uses: a free port on loopback, no management listener.
const QUIET: [&str; 6] = [
    "--port",
    "0",
    "--host",
    "127.0.0.1",
    "--management-port",
    "0",
];

fn run_with_config(dir: &Path, config: &str) -> Bin {
    let mut args = QUIET.to_vec();
    args.extend(["--config", config]);
    spawn(&args, dir)
}

fn client(addr: &str) -> tungstenite::WebSocket<TcpStream> {
    tungstenite_at(addr.parse().expect("a socket address"), "/")
}

fn request(ws: &mut tungstenite::WebSocket<TcpStream>, msg: Value) -> Value {
    ask_text(ws, &msg.to_string())
}

#[test]
fn every_missing_handler_is_one_error_line_with_routes_and_imports_and_exit_2() {
    let dir = scratch("missing");
    dir.write(
        "app/config.yaml",
        r#"
import: [configurapi-handler-http]
api:
  events:
    - name: on_before_request
      policies: [logRequestHandler]
    - name: on_after_request
      policies: [logResponseHandler]
    - name: get_v1_hello
      policies: [helloWorldHandler]
"#,
    );
    let (code, lines) = run_with_config(&dir.0, "app/config.yaml").finish();
    assert_eq!(code, Some(2), "{lines:?}");
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert_eq!(
        lines[0],
        "error: app/config.yaml: 3 handlers could not be found: \
         'logRequestHandler' (route 'on_before_request', in configurapi-handler-logging), \
         'logResponseHandler' (route 'on_after_request', in configurapi-handler-logging), \
         'helloWorldHandler' (route 'get_v1_hello'). \
         Add to import: configurapi-handler-logging."
    );
}

#[test]
fn a_missing_schema_file_stops_startup_naming_the_file_and_route() {
    let dir = scratch("no-schema");
    dir.write(
        "app/config.yaml",
        "import: [configurapi-handler-json]\napi:\n  events:\n    - name: post_v1_datum\n      policies: [validateJsonRequestHandler]\n",
    );
    let (code, lines) = run_with_config(&dir.0, "app/config.yaml").finish();
    assert_eq!(code, Some(2), "{lines:?}");
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(
        lines[0].starts_with(
            "error: app/config.yaml: validateJsonRequestHandler in route 'post_v1_datum': \
             schema file 'app/schemas/post_v1_datum.json' could not be read: "
        ),
        "{lines:?}"
    );
}

#[test]
fn schemas_are_read_beside_the_config_whatever_the_working_directory() {
    let dir = scratch("schema");
    dir.write(
        "app/schemas/post_v1_datum.json",
        r#"{"type": "object", "required": ["name"]}"#,
    );
    dir.write(
        "app/config.yaml",
        "import: [configurapi-handler-json]\napi:\n  events:\n    - name: post_v1_datum\n      policies:\n        - validateJsonRequestHandler\n        - setJsonResponseHandler: [201]\n",
    );
    // Started from the folder above the app, and by absolute path from elsewhere.
    let absolute = dir.0.join("app/config.yaml");
    for (cwd, config) in [
        (dir.0.clone(), "app/config.yaml".to_string()),
        (std::env::temp_dir(), absolute.display().to_string()),
    ] {
        let mut runner = run_with_config(&cwd, &config);
        let mut ws = client(&runner.listening().to_string());
        let ok = request(
            &mut ws,
            json!({"name": "post_v1_datum", "payload": {"name": "n"}, "headers": {"message-id": "1"}}),
        );
        assert_eq!(ok["statusCode"], 201, "{ok}");
        let bad = request(
            &mut ws,
            json!({"name": "post_v1_datum", "payload": {"size": 1}, "headers": {"message-id": "2"}}),
        );
        assert_eq!(bad["statusCode"], 400, "{bad}");
    }
}

#[test]
fn the_logging_pack_writes_a_request_and_a_response_line_per_message() {
    let dir = scratch("logging");
    dir.write(
        "app/config.yaml",
        r#"
import: [configurapi-handler-http, configurapi-handler-logging]
api:
  events:
    - name: on_before_request
      policies: [logRequestHandler]
    - name: on_after_request
      policies: [logResponseHandler]
    - name: teapot
      policies:
        - setResponseHandler: [418, short and stout]
"#,
    );
    let mut runner = run_with_config(&dir.0, "app/config.yaml");
    let mut ws = client(&runner.listening().to_string());
    let answer = request(
        &mut ws,
        json!({"name": "teapot", "method": "post", "headers": {"message-id": "m-1", "correlation-id": "corr-7"}}),
    );
    assert_eq!(answer["statusCode"], 418, "{answer}");
    let req = runner.wait_line_where("from logRequestHandler", |l| {
        l.contains(" - corr-7 - Request ")
    });
    assert!(
        req.get(25..).is_some_and(|l| l.starts_with("INFO ")),
        "{req}"
    );
    assert!(req.ends_with(" - corr-7 - Request teapot post"), "{req}");
    let resp = runner.wait_line_where("from logResponseHandler", |l| {
        l.contains(" - corr-7 - Response ")
    });
    assert!(
        resp.get(25..).is_some_and(|l| l.starts_with("INFO ")),
        "{resp}"
    );
    assert!(
        resp.contains(" - corr-7 - Response teapot post 418 ["),
        "{resp}"
    );
    assert!(resp.ends_with("ms]"), "{resp}");
    // Both lines carry the same event id.
    let id_of = |l: &str| l.split_whitespace().nth(1).unwrap().to_string();
    assert_eq!(id_of(&req), id_of(&resp));
}

#[test]
fn post_usage_errors_are_one_line_with_exit_2_and_post_help_succeeds() {
    let here = std::env::temp_dir();
    for args in [
        &["post"][..],
        &["post", "http://h/"],
        &["post", "--bogus", "a", "b"],
    ] {
        let (code, lines) = spawn(args, &here).finish();
        assert_eq!(code, Some(2), "{args:?}: {lines:?}");
        assert_eq!(lines.len(), 1, "{lines:?}");
        assert!(lines[0].starts_with("error: post: "), "{lines:?}");
    }
    let out = Command::new(BIN).args(["post", "--help"]).output().unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8(out.stdout)
        .unwrap()
        .contains("configurapi-runner-ws post URL"));
}

#[test]
fn handler_postbacks_send_the_token_set_by_the_cli_without_touching_the_environment() {
    use configurapi_runner_ws::postback::{self, PostbackMessage};
    use std::io::{Read, Write};

    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        s.set_read_timeout(Some(DEADLINE)).unwrap();
        let mut head = Vec::new();
        let mut b = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            assert_eq!(s.read(&mut b).unwrap(), 1, "client closed mid-head");
            head.push(b[0]);
        }
        let head = String::from_utf8(head).unwrap();
        let len: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("Content-Length: "))
            .unwrap()
            .parse()
            .unwrap();
        let mut body = vec![0u8; len];
        s.read_exact(&mut body).unwrap();
        s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
            .unwrap();
        head
    });
    // What `--management-token` does in cli::main_with (this test binary is its own
    // process, so the token set here reaches no other test).
    let env_before = std::env::var_os(configurapi_runner_ws::mgmt::TOKEN_ENV);
    postback::set_token("s3cret".into());
    assert_eq!(postback::token().as_deref(), Some("s3cret"));
    assert_eq!(
        std::env::var_os(configurapi_runner_ws::mgmt::TOKEN_ENV),
        env_before
    );
    postback::postback(
        &format!("http://127.0.0.1:{port}/@connections/x"),
        &PostbackMessage {
            status_code: 200,
            headers: serde_json::Map::new(),
            body: json!("hi"),
            extra: serde_json::Map::new(),
        },
    )
    .unwrap();
    let head = server.join().unwrap();
    assert!(
        head.lines().any(|l| l == "Authorization: Bearer s3cret"),
        "{head}"
    );
}

/// An echo round trip over a fresh connection to `addr`.
fn echo_once(addr: &str) {
    let mut ws = client(addr);
    ws.send(tungstenite::Message::text("hi")).unwrap();
    match ws.read().unwrap() {
        tungstenite::Message::Text(t) => assert_eq!(t.as_str(), "hi"),
        other => panic!("unexpected {other:?}"),
    }
}

/// The port of a `host:port` or `[v6]:port` address.
fn port_of(addr: &str) -> u16 {
    addr.rsplit(':').next().unwrap().parse().unwrap()
}

#[test]
fn every_flag_can_come_from_the_environment_and_flags_win() {
    let dir = scratch("env");
    // The variables pick the port, host and echo mode; --host on the command line
    // wins over CONFIGURAPI_HOST (a name that could not be listened on).
    let mut runner = spawn_env(
        &["--host", "127.0.0.1"],
        &[
            ("PORT", "0"),
            ("CONFIGURAPI_HOST", "192.0.2.1"),
            ("CONFIGURAPI_ECHO", "true"),
            ("CONFIGURAPI_MANAGEMENT_PORT", "0"),
        ],
        &dir.0,
    );
    let addr = runner.listening().to_string();
    assert!(addr.starts_with("127.0.0.1:"), "{addr}");
    echo_once(&addr);
}

#[test]
fn a_bad_environment_variable_is_one_line_naming_it_with_exit_2() {
    let dir = scratch("env-bad");
    for (var, value) in [
        ("CONFIGURAPI_MAX_MESSAGE_SIZE", "lots"),
        ("PORT", "eighty"),
        ("CONFIGURAPI_ECHO", "maybe"),
    ] {
        let (code, lines) = spawn_env(&[], &[(var, value)], &dir.0).finish();
        assert_eq!(code, Some(2), "{var}: {lines:?}");
        assert_eq!(lines.len(), 1, "{lines:?}");
        assert!(
            lines[0].contains(var) && lines[0].contains(value),
            "{lines:?}"
        );
    }
}

#[test]
fn help_names_the_environment_variables() {
    let out = Command::new(BIN).arg("--help").output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("CONFIGURAPI_<OPTION>"), "{text}");
    assert!(text.contains("PORT sets --port"), "{text}");
}

#[test]
fn host_localhost_is_resolved_and_listened_on() {
    let dir = scratch("localhost");
    let mut runner = spawn(
        &[
            "--echo",
            "--port",
            "0",
            "--host",
            "localhost",
            "--management-port",
            "0",
        ],
        &dir.0,
    );
    let addr = runner.listening().to_string();
    echo_once(&addr);
}

#[test]
fn the_ipv6_wildcard_listens_dual_stack() {
    let dir = scratch("dual-stack");
    // Without IPv6 on the machine `::` cannot be bound at all: say so and skip.
    if std::net::TcpListener::bind("[::]:0").is_err() {
        eprintln!("SKIPPED the_ipv6_wildcard_listens_dual_stack: no IPv6 on this machine");
        return;
    }
    let mut runner = spawn(
        &[
            "--echo",
            "--port",
            "0",
            "--host",
            "::",
            "--management-port",
            "0",
        ],
        &dir.0,
    );
    let addr = runner.listening().to_string();
    assert!(addr.starts_with("[::]:"), "{addr}");
    let port = port_of(&addr);
    echo_once(&format!("127.0.0.1:{port}"));
    if std::net::TcpListener::bind("[::1]:0").is_ok() {
        echo_once(&format!("[::1]:{port}"));
    } else {
        eprintln!("SKIPPED the ::1 half: no IPv6 loopback on this machine");
    }
}
