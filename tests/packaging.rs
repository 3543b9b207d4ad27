//! Packaging (issue #14 item 7): systemd's readiness protocol over a real Unix datagram
//! socket, and the `healthcheck` subcommand a container's HEALTHCHECK runs, against
//! the binary.
//!
//! Nothing sleeps to synchronise: datagrams and exits are waited for with a deadline.

mod support;

use std::os::unix::net::UnixDatagram;
use std::process::Command;

use support::{free_port, Bin, Scratch, DEADLINE};

/// The next datagram on `sock`, as text.
fn recv(sock: &UnixDatagram) -> String {
    let mut buf = [0u8; 4096];
    let n = sock
        .recv(&mut buf)
        .expect("no sd_notify datagram before the deadline");
    String::from_utf8(buf[..n].to_vec()).unwrap()
}

fn notify_socket(dir: &Scratch) -> (UnixDatagram, String) {
    let path = dir.0.join("notify.sock");
    let sock = UnixDatagram::bind(&path).unwrap();
    sock.set_read_timeout(Some(DEADLINE)).unwrap();
    (sock, path.to_str().unwrap().to_string())
}

#[test]
fn sd_notify_ready_once_listening_reloading_then_ready_on_hup_stopping_on_term() {
    let dir = Scratch::new("sdnotify");
    let (sock, path) = notify_socket(&dir);
    let mgmt = free_port();
    let (mut bin, addr) = Bin::start_with_env(
        &["--management-port", &mgmt],
        &[("NOTIFY_SOCKET", path.as_str())],
    );
    let ready = recv(&sock);
    assert!(ready.lines().any(|l| l == "READY=1"), "{ready:?}");
    // READY=1 means listening: the WebSocket port takes a connection now.
    std::net::TcpStream::connect(addr).expect("READY=1 came before the listener");

    bin.signal("HUP");
    let reloading = recv(&sock);
    let mut lines = reloading.lines();
    assert_eq!(lines.next(), Some("RELOADING=1"), "{reloading:?}");
    // systemd 253+ matches a reload by this CLOCK_MONOTONIC time (microseconds).
    let usec: u64 = lines
        .find_map(|l| l.strip_prefix("MONOTONIC_USEC="))
        .unwrap_or_else(|| panic!("no MONOTONIC_USEC in {reloading:?}"))
        .parse()
        .unwrap();
    assert!(usec > 0);
    let again = recv(&sock);
    assert!(again.lines().any(|l| l == "READY=1"), "{again:?}");

    bin.signal("TERM");
    let stopping = recv(&sock);
    assert!(stopping.lines().any(|l| l == "STOPPING=1"), "{stopping:?}");
    assert_eq!(bin.exit_code(), Some(0));
}

#[test]
fn sd_notify_reaches_an_abstract_socket() {
    let name = format!(
        "configurapi-test-{}-{}",
        std::process::id(),
        uuid::Uuid::new_v4()
    );
    let sock = {
        use std::os::linux::net::SocketAddrExt;
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        UnixDatagram::bind_addr(&addr).unwrap()
    };
    sock.set_read_timeout(Some(DEADLINE)).unwrap();
    let var = format!("@{name}");
    let (mut bin, _) = Bin::start_with_env(
        &["--management-port", "0"],
        &[("NOTIFY_SOCKET", var.as_str())],
    );
    assert!(recv(&sock).lines().any(|l| l == "READY=1"));
    bin.signal("TERM");
    assert!(recv(&sock).lines().any(|l| l == "STOPPING=1"));
    assert_eq!(bin.exit_code(), Some(0));
}

/// `healthcheck` with these arguments and variables: exit status and stderr.
fn healthcheck(args: &[&str], env: &[(&str, &str)]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_configurapi-runner-ws"))
        .arg("healthcheck")
        .args(args)
        .env_remove("CONFIGURAPI_MANAGEMENT_TOKEN")
        .envs(env.iter().copied())
        .output()
        .unwrap();
    (
        out.status.code().unwrap(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn healthcheck_exits_0_on_200_and_1_when_the_node_is_not_serving() {
    let mgmt = free_port();
    let (mut bin, _) = Bin::start(&["--management-port", &mgmt, "--management-token", "tk"]);
    // The port and token from the variables the server reads, as in the image.
    let env = [
        ("CONFIGURAPI_MANAGEMENT_PORT", mgmt.as_str()),
        ("CONFIGURAPI_MANAGEMENT_TOKEN", "tk"),
    ];
    assert_eq!(healthcheck(&[], &env), (0, String::new()));
    let url = format!("http://127.0.0.1:{mgmt}/healthz");
    assert_eq!(healthcheck(&["--url", &url, "--token", "tk"], &[]).0, 0);
    // Without the token: 401, unhealthy, one line naming the URL and the status.
    let (code, err) = healthcheck(&["--url", &url], &[]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.starts_with("error: healthcheck: ") && err.contains("401"),
        "{err}"
    );
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");

    bin.signal("TERM");
    assert_eq!(bin.exit_code(), Some(0));
    // Nothing listening: 1, with the connection error.
    let (code, err) = healthcheck(&[], &env);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains(&url), "{err}");
    // Usage errors: 2.
    assert_eq!(healthcheck(&["--timeout", "x"], &[]).0, 2);
    assert_eq!(healthcheck(&["--url", "ftp://h/"], &[]).0, 2);
    assert_eq!(
        healthcheck(&["--url", "https://127.0.0.1:1/healthz"], &[]).0,
        2
    );
}

#[test]
fn healthcheck_exits_1_with_the_503_while_the_node_drains() {
    use std::io::Write;
    let mgmt = free_port();
    // A client that never answers the server's close keeps the drain going until
    // --close-timeout, long enough to ask.
    let (mut bin, addr) = Bin::start(&[
        "--management-port",
        &mgmt,
        "--close-timeout",
        "60s",
        "--shutdown-timeout",
        "60s",
    ]);
    let mut client = std::net::TcpStream::connect(addr).unwrap();
    client.set_read_timeout(Some(DEADLINE)).unwrap();
    client
        .write_all(support::upgrade_request("/").as_bytes())
        .unwrap();
    let head = support::read_http_head(&mut client);
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    let env = [("CONFIGURAPI_MANAGEMENT_PORT", mgmt.as_str())];
    assert_eq!(healthcheck(&[], &env).0, 0);
    bin.signal("TERM");
    bin.wait_line("draining");
    let (code, err) = healthcheck(&[], &env);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("answered 503"), "{err}");
}
