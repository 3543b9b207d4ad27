//! WSS over the secure listener: a test CA and server certificates made with rcgen, a
//! rustls client over std sockets, tungstenite or raw frames on top. Covers the key
//! types and formats, on_connect rejection, non-TLS bytes, a stalled handshake, the
//! start-up errors for bad certificate files, and certificate reloads. The codec and
//! backpressure tests run over both transports from one body each (tests/transport.rs,
//! tests/runner.rs).

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

use configurapi_runner_ws::reactor::MgmtConfig;
use configurapi_runner_ws::ServerConfig;
use rcgen::KeyPair;
use support::{
    client_frame, fixture, read_frame, read_http_head, read_to_eof, tls_connect, upgrade_request,
    OutputWithin, Pki, Stream, TestServer, Tls, Transport, BIN, DEADLINE,
};
use tungstenite::Message;

/// One echo round trip with tungstenite.
fn echo_round(ws: &mut tungstenite::WebSocket<Stream>, tag: &str) {
    ws.send(Message::text(tag.to_string())).unwrap();
    assert_eq!(ws.read().unwrap(), Message::text(tag.to_string()));
}

/// An echo server (`cfg`) with a TLS listener and a fresh test certificate.
fn wss(cfg: ServerConfig) -> TestServer {
    TestServer::builder(cfg).transport(Transport::Tls).start()
}

#[test]
fn every_key_type_and_format_serves_wss() {
    let ed = KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
    let ed_pem = ed.serialize_pem();
    let cases: Vec<(&str, KeyPair, String)> = vec![
        (
            "RSA PKCS#8",
            KeyPair::from_pem(&fixture("rsa2048.pkcs8.pem")).unwrap(),
            fixture("rsa2048.pkcs8.pem"),
        ),
        (
            "RSA PKCS#1",
            KeyPair::from_pem(&fixture("rsa2048.pkcs8.pem")).unwrap(),
            fixture("rsa2048.pkcs1.pem"),
        ),
        (
            "ECDSA PKCS#8",
            KeyPair::from_pem(&fixture("p256.pkcs8.pem")).unwrap(),
            fixture("p256.pkcs8.pem"),
        ),
        (
            "ECDSA SEC1",
            KeyPair::from_pem(&fixture("p256.pkcs8.pem")).unwrap(),
            fixture("p256.sec1.pem"),
        ),
        ("Ed25519 PKCS#8", ed, ed_pem),
    ];
    for (what, key, key_file) in cases {
        let srv = TestServer::builder(ServerConfig::default())
            .pki(Pki::new(key, &key_file, false))
            .start();
        let mut ws = srv.client();
        echo_round(&mut ws, what);
    }
}

#[test]
fn plain_port_keeps_serving_beside_the_secure_one() {
    let srv = wss(ServerConfig::default());
    let (mut plain, _) = tungstenite::client(
        format!("ws://{}/", srv.addr),
        TcpStream::connect(srv.addr).unwrap(),
    )
    .unwrap();
    let mut secure = srv.client();
    plain.send(Message::text("plain")).unwrap();
    echo_round(&mut secure, "secure");
    assert_eq!(plain.read().unwrap(), Message::text("plain"));
}

#[test]
fn on_connect_rejection_closes_with_1008_over_tls() {
    let yaml = r#"
import: [configurapi-handler-http]
api:
  events:
    - name: on_connect
      policies:
        - setResponseHandler: [403, denied]
"#;
    let cfg = ServerConfig {
        workers: 2,
        ..Default::default()
    };
    let srv = TestServer::builder(cfg)
        .runner(yaml, |_| {})
        .transport(Transport::Tls)
        .start();
    let mut s = srv.upgraded_with("").0;
    let (b0, payload) = read_frame(&mut s);
    assert_eq!(b0, 0x88);
    assert_eq!(u16::from_be_bytes([payload[0], payload[1]]), 1008);
    assert_eq!(&payload[2..], b"Policy Violation");
}

#[test]
fn plain_http_and_garbage_on_the_tls_port_end_without_a_hang() {
    let srv = wss(ServerConfig::default());
    for (bytes, alert) in [
        // Not a TLS record: a decode_error alert, then the close.
        (upgrade_request("/").into_bytes(), true),
        (b"\x00\x01\x02garbage\r\n\r\n".to_vec(), true),
        // A handshake record claiming a huge message: rustls fails it without an
        // alert; the connection is closed.
        (
            vec![0x16, 0x03, 0x01, 0x00, 0x05, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF],
            false,
        ),
    ] {
        let mut s = srv.raw_secure();
        s.write_all(&bytes).unwrap();
        let start = Instant::now();
        let answer = read_to_eof(&mut s);
        assert!(start.elapsed() < Duration::from_secs(5));
        if alert {
            // A TLS alert record (content type 21, fatal, decode_error), then the close.
            assert_eq!(answer, [0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x32]);
        } else {
            assert!(answer.is_empty() || answer[0] == 0x15, "{answer:?}");
        }
    }
    // The server still serves after that.
    echo_round(&mut srv.client(), "still here");
}

#[test]
fn client_that_stalls_mid_handshake_is_dropped_by_the_timeout() {
    let cfg = ServerConfig {
        handshake_timeout: Duration::from_millis(300),
        ..Default::default()
    };
    let srv = wss(cfg);
    let mut s = srv.raw_secure();
    // The start of a ClientHello record, then nothing.
    s.write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01]).unwrap();
    let start = Instant::now();
    read_to_eof(&mut s);
    assert!(start.elapsed() < Duration::from_secs(5));
    let stats = srv.handle.stats().unwrap();
    assert_eq!(stats.handshake_timeouts, 1);
}

/// Run the binary with TLS flags; the result and stderr.
fn run_bin(args: &[&str]) -> (Option<i32>, String) {
    let out = Command::new(BIN)
        .args([
            "--echo",
            "--port",
            "0",
            "--secure-port",
            "0",
            "--host",
            "127.0.0.1",
        ])
        .args(args)
        .output_within_deadline()
        .unwrap();
    (out.status.code(), String::from_utf8(out.stderr).unwrap())
}

fn assert_one_line_error(args: &[&str], names: &str, what: &str) {
    let (code, err) = run_bin(args);
    assert_eq!(code, Some(2), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.starts_with("error: "), "{err}");
    assert!(err.contains(names), "{err}");
    assert!(err.contains(what), "{err}");
}

#[test]
fn certificate_errors_are_one_line_naming_the_file_and_exit_2() {
    let pki = Pki::ecdsa();
    let cert = pki.cert.to_str().unwrap();
    let key = pki.key.to_str().unwrap();
    let missing = pki.dir.0.join("missing.pem");
    let missing = missing.to_str().unwrap();
    // A missing file.
    assert_one_line_error(&["--key", key, "--cert", missing], missing, "cannot read");
    assert_one_line_error(&["--key", missing, "--cert", cert], missing, "cannot read");
    // A file with no certificate (the key file given as the certificate).
    assert_one_line_error(&["--key", key, "--cert", key], key, "no certificate");
    // A file with no key.
    assert_one_line_error(&["--key", cert, "--cert", cert], cert, "no private key");
    // A key that does not match the certificate.
    let other = pki.dir.write(
        "other.pem",
        &KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
            .unwrap()
            .serialize_pem(),
    );
    let other = other.to_str().unwrap();
    assert_one_line_error(&["--key", other, "--cert", cert], other, "does not match");
    // One of the two flags without the other.
    assert_one_line_error(&["--key", key], "--cert", "needs");
    assert_one_line_error(&["--cert", cert], "--key", "needs");
}

#[test]
fn expired_certificate_is_a_warning_naming_the_file() {
    let k = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let pem = k.serialize_pem();
    let pki = Pki::new(k, &pem, true);
    let warning = configurapi_runner_ws::tls::load(&pki.cert, &pki.key)
        .unwrap()
        .expired_warning
        .expect("an expired certificate is noticed");
    assert!(!warning.contains('\n'));
    assert!(warning.contains(pki.cert.to_str().unwrap()), "{warning}");
    assert!(warning.contains("expired"), "{warning}");
    assert!(warning.contains("2002-01-01"), "{warning}");
    // A valid one is not.
    let pki = Pki::ecdsa();
    assert!(configurapi_runner_ws::tls::load(&pki.cert, &pki.key)
        .unwrap()
        .expired_warning
        .is_none());
}

#[test]
fn the_post_subcommand_speaks_https_to_a_management_tls_listener() {
    let pki = Pki::ecdsa();
    let ca = pki.ca_pem.clone();
    let other_ca = Pki::ecdsa();
    let yaml = r#"
api:
  events:
    - name: connectionId
      policies:
        - headerHandler: [connection-id]
"#;
    let cfg = ServerConfig {
        workers: 2,
        management: Some(MgmtConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            tls: Some(pki.server_config()),
            ..MgmtConfig::default()
        }),
        ..Default::default()
    };
    let srv = TestServer::builder(cfg)
        .runner(yaml, |_| {})
        .pki(pki)
        .start();
    let mut ws = srv.client();
    ws.send(Message::text(r#"{"name":"connectionId"}"#))
        .unwrap();
    let id = match ws.read().unwrap() {
        Message::Text(t) => {
            let v: serde_json::Value = serde_json::from_str(t.as_str()).unwrap();
            v["body"].as_str().expect("the connection id").to_string()
        }
        other => panic!("unexpected {other:?}"),
    };
    // The certificate names localhost, so the URL does too.
    let url = |id: &str| format!("https://localhost:{}/@connections/{id}", srv.mgmt().port());
    let post = |extra: &[&str], id: &str| {
        let out = Command::new(BIN)
            .arg("post")
            .args(extra)
            .args([url(id).as_str(), r#"{"pushed":true}"#])
            .output_within_deadline()
            .unwrap();
        (out.status.code(), String::from_utf8(out.stderr).unwrap())
    };
    let trusted = ["--cacert", ca.to_str().unwrap()];
    let (code, err) = post(&trusted, &id);
    assert_eq!(code, Some(0), "{err}");
    match ws.read().unwrap() {
        Message::Text(t) => {
            let v: serde_json::Value = serde_json::from_str(t.as_str()).unwrap();
            assert_eq!(v["body"], serde_json::json!({"pushed": true}), "{t}");
        }
        other => panic!("unexpected {other:?}"),
    }
    // A gone id: the 410 comes back through TLS as exit 1.
    let (code, err) = post(&trusted, "no-such-connection");
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("410 Gone"), "{err}");
    // Without a CA to trust, https is a usage error naming the flag.
    let (code, err) = post(&[], &id);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("--cacert"), "{err}");
    // A CA that did not sign the server's certificate: not delivered, said as TLS.
    let (code, err) = post(&["--cacert", other_ca.ca_pem.to_str().unwrap()], &id);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("TLS"), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
}

#[test]
fn a_handlers_postback_to_an_https_postback_url_trusts_the_set_cacert_chain() {
    use configurapi_runner_ws::configurapi::{Context, Event, HandlerError};
    use configurapi_runner_ws::postback::{self, PostbackError, PostbackMessage};
    let pki = Pki::ecdsa();
    let (tx, urls) = std::sync::mpsc::channel();
    let tx = std::sync::Mutex::new(tx);
    let yaml = "api:\n  events:\n    - name: url\n      policies: [urlHandler]\n";
    let chain = pki.cert.clone();
    let srv = TestServer::builder(ServerConfig {
        workers: 2,
        ..Default::default()
    })
    .runner(yaml, move |registry| {
        registry.register(
            "urlHandler",
            move |e: &mut Event,
                  _: &[serde_json::Value],
                  _: &mut Context|
                  -> Result<(), HandlerError> {
                let url = e.request.headers["postback-url"]
                    .as_str()
                    .unwrap_or("")
                    .to_string();
                tx.lock().unwrap().send(url).unwrap();
                Ok(())
            },
        );
    })
    .management(MgmtConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        tls: Some(pki.server_config()),
        ..MgmtConfig::default()
    })
    .pki(pki)
    .start();
    let mut ws = srv.client();
    ws.send(Message::text(r#"{"name":"url"}"#)).unwrap();
    let url = urls.recv_timeout(DEADLINE).expect("the handler ran");
    assert!(url.starts_with("https://127.0.0.1:"), "{url}");
    // The certificate names localhost.
    let url = url.replace("https://127.0.0.1:", "https://localhost:");
    let message =
        PostbackMessage::new(200, Default::default(), serde_json::json!({"via": "https"}));
    // Nothing to trust yet: refused before connecting.
    assert!(matches!(
        postback::postback(&url, &message),
        Err(PostbackError::Tls(_))
    ));
    // What the CLI does with --management-tls: trust the served chain (--cert).
    postback::set_cacert(chain);
    postback::postback(&url, &message).expect("delivered over https");
    let mut bodies = Vec::new();
    while bodies.len() < 2 {
        if let Message::Text(t) = ws.read().unwrap() {
            let v: serde_json::Value = serde_json::from_str(t.as_str()).unwrap();
            bodies.push(v["body"].clone());
        }
    }
    assert!(
        bodies.contains(&serde_json::json!({"via": "https"})),
        "{bodies:?}"
    );
}

#[test]
fn management_api_over_https_when_enabled() {
    let pki = Pki::ecdsa();
    let cfg = ServerConfig {
        management: Some(MgmtConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            tls: Some(pki.server_config()),
            ..MgmtConfig::default()
        }),
        ..Default::default()
    };
    let srv = TestServer::builder(cfg).pki(pki).start();
    let mut ws = srv.client();
    echo_round(&mut ws, "open");
    let mut s = tls_connect(srv.mgmt(), srv.tls_client_config()).unwrap();
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .unwrap();
    let answer = String::from_utf8(read_to_eof(&mut s)).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200 "), "{answer}");
    assert!(answer.trim_end().ends_with("ok"), "{answer}");
    // Keep-alive: two requests on one TLS connection.
    let mut s = tls_connect(srv.mgmt(), srv.tls_client_config()).unwrap();
    for _ in 0..2 {
        s.write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n")
            .unwrap();
        let head = read_http_head(&mut s);
        assert!(head.starts_with("HTTP/1.1 200 "), "{head}");
        let len: usize = head
            .lines()
            .find_map(|l| {
                l.to_ascii_lowercase()
                    .strip_prefix("content-length: ")
                    .map(|v| v.trim().parse().unwrap())
            })
            .expect("content-length");
        let mut body = vec![0u8; len];
        s.read_exact(&mut body).unwrap();
    }
    // Plain HTTP on the HTTPS port gets no HTTP answer.
    let mut tcp = TcpStream::connect(srv.mgmt()).unwrap();
    tcp.set_read_timeout(Some(DEADLINE)).unwrap();
    tcp.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .unwrap();
    let answer = read_to_eof(&mut tcp);
    assert!(answer.is_empty() || answer[0] == 0x15, "{answer:?}");
}

#[test]
fn binary_with_an_expired_certificate_warns_naming_the_file_and_serves() {
    let k = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let pem = k.serialize_pem();
    let pki = Pki::new(k, &pem, true);
    let cert = pki.cert.to_str().unwrap();
    let mut child = Command::new(BIN)
        .args([
            "--echo",
            "--port",
            "0",
            "--secure-port",
            "0",
            "--host",
            "127.0.0.1",
        ])
        .args(["--key", pki.key.to_str().unwrap(), "--cert", cert])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let lines = support::lines_of(child.stderr.take().unwrap());
    let mut warned = false;
    let mut serving = false;
    while let Ok(line) = lines.recv_timeout(DEADLINE) {
        if line.get(25..).is_some_and(|l| l.starts_with("WARN"))
            && line.contains(cert)
            && line.contains("expired")
        {
            warned = true;
        }
        if line.contains("secure listener on wss://127.0.0.1:") {
            serving = true;
            break;
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(warned, "no warning naming {cert}");
    assert!(serving, "the server did not start");
}

/// One echo round trip on an upgraded stream.
fn echoes(s: &mut Tls, text: &str) {
    s.write_all(&client_frame(0x81, text.as_bytes())).unwrap();
    let (b0, payload) = read_frame(s);
    assert_eq!((b0, &payload[..]), (0x81, text.as_bytes()));
}

#[test]
fn sighup_serves_a_renewed_certificate_to_the_next_client_and_keeps_the_connected_ones() {
    let old = Pki::ecdsa();
    let (cert, key) = (old.cert.clone(), old.key.clone());
    let (mut bin, _) = support::Bin::start(&[
        "--echo",
        "--secure-port",
        "0",
        "--key",
        key.to_str().unwrap(),
        "--cert",
        cert.to_str().unwrap(),
    ]);
    let line = bin.wait_line("secure listener on wss://");
    let secure = support::addr_after(&line, "wss://");
    let upgrade = |mut s: Tls| {
        s.write_all(upgrade_request("/").as_bytes()).unwrap();
        assert!(read_http_head(&mut s).starts_with("HTTP/1.1 101 "));
        s
    };
    let mut before = upgrade(tls_connect(secure, old.client_config()).unwrap());
    echoes(&mut before, "before");

    // Renew: a new key and certificate (from a new CA) over the same files.
    let renewed = Pki::ecdsa();
    std::fs::copy(&renewed.cert, &cert).unwrap();
    std::fs::copy(&renewed.key, &key).unwrap();
    bin.signal("HUP");
    let line = bin.wait_line("reloaded: ");
    assert!(line.contains(cert.to_str().unwrap()), "{line}");
    // The next client is served the renewed certificate (it trusts only the new CA)...
    let mut after = upgrade(tls_connect(secure, renewed.client_config()).expect("renewed"));
    echoes(&mut after, "after");
    // ... and one that trusts only the old CA is refused.
    assert!(tls_connect(secure, old.client_config()).is_err());
    // The client connected before is still served.
    echoes(&mut before, "still here");

    // A broken key file: the renewed certificate stays in use.
    std::fs::write(&key, "not a key").unwrap();
    bin.signal("HUP");
    let line = bin.wait_line("reload failed");
    assert!(line.contains(key.to_str().unwrap()), "{line}");
    let mut third = upgrade(tls_connect(secure, renewed.client_config()).expect("kept"));
    echoes(&mut third, "third");
    echoes(&mut before, "before, still");
    echoes(&mut after, "after, still");
}
