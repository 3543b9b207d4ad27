//! WSS over the secure listener: a test CA and server certificates made with rcgen, a
//! rustls client over std sockets, tungstenite or raw frames on top. Covers the key
//! types and formats, echo from 0 bytes to 16 MiB, the codec paths Autobahn would
//! exercise (fragments, ping/pong, close codes, invalid UTF-8), backpressure with a
//! reader that never reads, on_connect rejection, non-TLS bytes, a stalled handshake,
//! and the start-up errors for bad certificate files.

mod bin_util;
mod util;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use configurapi_runner_ws::configurapi::Service;
use configurapi_runner_ws::reactor::MgmtConfig;
use configurapi_runner_ws::runner::{self, Runner, RunnerOptions};
use configurapi_runner_ws::{Handle, Mode, Server, ServerConfig, TlsSettings};
use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
use rustls::pki_types::{CertificateDer, ServerName};
use tungstenite::Message;
use util::{
    assert_peak_within, client_frame, read_frame, read_http_head, upgrade_request,
    wait_handle_stats, wait_held, OutputWithin, DEADLINE,
};

const BIN: &str = env!("CARGO_BIN_EXE_configurapi-runner-ws");

fn fixture(name: &str) -> String {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name);
    std::fs::read_to_string(p).unwrap()
}

/// A fresh temporary directory, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> TempDir {
        static N: AtomicUsize = AtomicUsize::new(0);
        let p = std::env::temp_dir().join(format!(
            "wss-test-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
    fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.0.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A test CA and a server certificate for `localhost` signed by it.
struct Pki {
    dir: TempDir,
    ca_der: CertificateDer<'static>,
    /// The CA alone, PEM: what `post --cacert` trusts.
    ca_pem: PathBuf,
    cert: PathBuf,
    key: PathBuf,
}

impl Pki {
    /// `leaf_key_pkcs8`: the server key rcgen signs with; `key_file`: what goes in the
    /// key file (the same key, possibly in another format).
    fn new(leaf_key: KeyPair, key_file: &str, expired: bool) -> Pki {
        let ca_key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "wss test CA");
        let ca_cert = ca_params.self_signed(&ca_key).unwrap();
        let issuer = Issuer::new(ca_params, ca_key);
        let mut params = CertificateParams::new(vec!["localhost".to_string()]).unwrap();
        if expired {
            params.not_before = rcgen::date_time_ymd(2001, 1, 1);
            params.not_after = rcgen::date_time_ymd(2002, 1, 1);
        }
        let leaf = params.signed_by(&leaf_key, &issuer).unwrap();
        let dir = TempDir::new();
        let cert = dir.write("chain.pem", &(leaf.pem() + &ca_cert.pem()));
        let key = dir.write("key.pem", key_file);
        let ca_pem = dir.write("ca.pem", &ca_cert.pem());
        Pki {
            dir,
            ca_der: ca_cert.der().clone(),
            ca_pem,
            cert,
            key,
        }
    }

    fn ecdsa() -> Pki {
        let k = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let pem = k.serialize_pem();
        Pki::new(k, &pem, false)
    }

    fn server_config(&self) -> Arc<rustls::ServerConfig> {
        configurapi_runner_ws::tls::load(&self.cert, &self.key)
            .unwrap()
            .server_config
    }

    fn client_config(&self) -> Arc<rustls::ClientConfig> {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.ca_der.clone()).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut cfg = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
        Arc::new(cfg)
    }
}

type Tls = rustls::StreamOwned<rustls::ClientConnection, TcpStream>;

struct WssServer {
    handle: Handle,
    plain: SocketAddr,
    secure: SocketAddr,
    mgmt: Option<SocketAddr>,
    client_cfg: Arc<rustls::ClientConfig>,
    join: Option<JoinHandle<std::io::Result<()>>>,
    _pki: Pki,
}

impl WssServer {
    fn start(pki: Pki, mut cfg: ServerConfig) -> WssServer {
        cfg.listen = "127.0.0.1:0".parse().unwrap();
        cfg.tls = Some(TlsSettings {
            listen: "127.0.0.1:0".parse().unwrap(),
            server_config: pki.server_config(),
        });
        let server = Server::bind(cfg).expect("bind");
        let plain = server.local_addr();
        let secure = server.secure_addr().expect("secure listener");
        let mgmt = server.management_addr();
        let (handle, join) = server.spawn();
        WssServer {
            handle,
            plain,
            secure,
            mgmt,
            client_cfg: pki.client_config(),
            join: Some(join),
            _pki: pki,
        }
    }

    fn echo(cfg: ServerConfig) -> WssServer {
        WssServer::start(Pki::ecdsa(), cfg)
    }

    fn tcp(&self) -> TcpStream {
        let s = TcpStream::connect(self.secure).unwrap();
        s.set_read_timeout(Some(DEADLINE)).unwrap();
        s.set_write_timeout(Some(DEADLINE)).unwrap();
        s.set_nodelay(true).unwrap();
        s
    }

    /// A TLS stream to `addr` that finished the TLS handshake.
    fn tls_to(&self, addr: SocketAddr) -> Tls {
        let tcp = TcpStream::connect(addr).unwrap();
        tcp.set_read_timeout(Some(DEADLINE)).unwrap();
        let conn = rustls::ClientConnection::new(
            self.client_cfg.clone(),
            ServerName::try_from("localhost").unwrap(),
        )
        .unwrap();
        let mut s = rustls::StreamOwned::new(conn, tcp);
        while s.conn.is_handshaking() {
            s.conn.complete_io(&mut s.sock).expect("TLS handshake");
        }
        s
    }

    /// A TLS stream that finished the TLS handshake.
    fn tls(&self) -> Tls {
        let conn = rustls::ClientConnection::new(
            self.client_cfg.clone(),
            ServerName::try_from("localhost").unwrap(),
        )
        .unwrap();
        let mut s = rustls::StreamOwned::new(conn, self.tcp());
        while s.conn.is_handshaking() {
            s.conn.complete_io(&mut s.sock).expect("TLS handshake");
        }
        assert_eq!(s.conn.alpn_protocol(), Some(&b"http/1.1"[..]));
        s
    }

    fn client(&self) -> tungstenite::WebSocket<Tls> {
        let url = format!("wss://localhost:{}/", self.secure.port());
        let (ws, resp) = tungstenite::client(url, self.tls()).expect("wss handshake");
        assert_eq!(resp.status().as_u16(), 101);
        ws
    }

    /// A TLS stream that completed the upgrade.
    fn upgraded(&self, extra: &str) -> Tls {
        let mut s = self.tls();
        let req = upgrade_request("/").replace("\r\n\r\n", &format!("\r\n{extra}\r\n"));
        s.write_all(req.as_bytes()).unwrap();
        let head = read_http_head(&mut s);
        assert!(head.starts_with("HTTP/1.1 101 "), "{head}");
        s
    }
}

impl Drop for WssServer {
    fn drop(&mut self) {
        let _ = self.handle.shutdown();
        if let Some(j) = self.join.take() {
            let _ = j.join();
        }
    }
}

/// Read until the stream ends (close_notify, EOF or a reset); panics at the deadline.
fn read_to_end(s: &mut impl Read) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return out,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::ConnectionReset
                        | std::io::ErrorKind::UnexpectedEof
                        | std::io::ErrorKind::InvalidData
                ) =>
            {
                return out
            }
            Err(e) => panic!("the server did not end the connection: {e}"),
        }
    }
}

fn expect_close(s: &mut Tls, code: u16) {
    let (b0, payload) = read_frame(s);
    assert_eq!(b0, 0x88, "expected a close frame, got {b0:#x} {payload:?}");
    assert_eq!(u16::from_be_bytes([payload[0], payload[1]]), code);
    read_to_end(s);
}

fn echo_round(ws: &mut tungstenite::WebSocket<Tls>, tag: &str) {
    ws.send(Message::text(tag.to_string())).unwrap();
    assert_eq!(ws.read().unwrap(), Message::text(tag.to_string()));
}

#[test]
fn wss_echoes_text_and_binary_from_empty_to_sixteen_mib() {
    let srv = WssServer::echo(ServerConfig::default());
    let mut ws = srv.client();
    for len in [
        0usize,
        1,
        125,
        126,
        16383,
        16384,
        16385,
        65536,
        1 << 20,
        16 << 20,
    ] {
        let text = "x".repeat(len);
        ws.send(Message::text(text.clone())).unwrap();
        assert_eq!(ws.read().unwrap(), Message::text(text));
        let bin: Vec<u8> = (0..len).map(|i| (i * 7) as u8).collect();
        ws.send(Message::binary(bin.clone())).unwrap();
        assert_eq!(ws.read().unwrap(), Message::binary(bin));
    }
    ws.close(None).unwrap();
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
        let srv = WssServer::start(Pki::new(key, &key_file, false), ServerConfig::default());
        let mut ws = srv.client();
        echo_round(&mut ws, what);
    }
}

#[test]
fn plain_port_keeps_serving_beside_the_secure_one() {
    let srv = WssServer::echo(ServerConfig::default());
    let (mut plain, _) = tungstenite::client(
        format!("ws://{}/", srv.plain),
        TcpStream::connect(srv.plain).unwrap(),
    )
    .unwrap();
    let mut secure = srv.client();
    plain.send(Message::text("plain")).unwrap();
    echo_round(&mut secure, "secure");
    assert_eq!(plain.read().unwrap(), Message::text("plain"));
}

#[test]
fn codec_paths_over_tls_fragments_pings_close_codes_and_bad_utf8() {
    let srv = WssServer::echo(ServerConfig::default());
    // Fragments with a ping in between, each in its own TLS record.
    let mut s = srv.upgraded("");
    for f in [
        client_frame(0x01, b"Hel"),
        client_frame(0x89, b"ping!"),
        client_frame(0x80, "lo €".as_bytes()),
    ] {
        s.write_all(&f).unwrap();
        s.flush().unwrap();
    }
    assert_eq!(read_frame(&mut s), (0x8A, b"ping!".to_vec()));
    assert_eq!(read_frame(&mut s), (0x81, "Hello €".as_bytes().to_vec()));
    // Many frames in one TLS record.
    let mut batch = Vec::new();
    for i in 0..100u8 {
        batch.extend(client_frame(0x82, &[i; 3]));
    }
    s.write_all(&batch).unwrap();
    for i in 0..100u8 {
        assert_eq!(read_frame(&mut s), (0x82, vec![i; 3]));
    }
    // The peer's close code is answered.
    s.write_all(&client_frame(0x88, &[0x0F, 0xA0, b'b', b'y', b'e']))
        .unwrap();
    expect_close(&mut s, 4000);

    // Invalid UTF-8 fails the connection with 1007.
    let mut s = srv.upgraded("");
    s.write_all(&client_frame(
        0x81,
        &[0xCE, 0xBA, 0xE1, 0xBD, 0xB9, 0xCF, 0x83, 0xFF],
    ))
    .unwrap();
    expect_close(&mut s, 1007);

    // A protocol error (unmasked frame) fails it with 1002.
    let mut s = srv.upgraded("");
    s.write_all(&[0x81, 0x02, b'h', b'i']).unwrap();
    expect_close(&mut s, 1002);
}

#[test]
fn first_offered_subprotocol_is_echoed_over_tls() {
    let srv = WssServer::echo(ServerConfig::default());
    let mut s = srv.tls();
    let req = upgrade_request("/").replace(
        "\r\n\r\n",
        "\r\nSec-WebSocket-Protocol: graphql-ws, chat\r\n\r\n",
    );
    s.write_all(req.as_bytes()).unwrap();
    let head = read_http_head(&mut s);
    assert!(head.starts_with("HTTP/1.1 101 "), "{head}");
    assert!(
        head.contains("Sec-WebSocket-Protocol: graphql-ws\r\n"),
        "{head}"
    );
}

#[test]
fn reader_that_never_reads_is_bounded_over_tls() {
    const HIGH: usize = 256 << 10;
    let cfg = ServerConfig {
        high_water: HIGH,
        low_water: 64 << 10,
        ..Default::default()
    };
    let srv = WssServer::echo(cfg);
    let s = srv.upgraded("");
    let raw = s.sock.try_clone().unwrap();
    // The writer owns the TLS stream and writes until the socket fails: once the server
    // stops reading, its write blocks until the socket is shut down below.
    let writer = std::thread::spawn(move || {
        let mut s = s;
        let frame = client_frame(0x82, &vec![7u8; 64 << 10]);
        let mut sent = 0usize;
        while s.write_all(&frame).is_ok() {
            sent += frame.len();
            if sent >= 512 << 20 {
                break;
            }
        }
        sent
    });
    // The echoes fill the kernel's buffers, then the queue passes high water and the
    // server stops reading this peer: a read pause, counted.
    wait_handle_stats(&srv.handle, "a read pause", |st| st.read_pauses > 0);
    raw.shutdown(std::net::Shutdown::Both).unwrap();
    let sent = writer.join().unwrap();
    assert!(
        sent < 512 << 20,
        "the server kept reading a peer that never reads ({sent} bytes)"
    );
    // Over the whole run: paused at high water; one read batch (8 x 64 KiB) may
    // overshoot it, and rustls holds at most one buffer of records (64 KiB plus record
    // overhead).
    let peak = assert_peak_within(&srv.handle, (HIGH + 8 * (64 << 10) + (80 << 10)) as u64)
        .queued_bytes_peak;
    assert!(
        peak > HIGH as u64,
        "the queue never passed high water ({peak})"
    );
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
    let service = Service::from_str(yaml, "test.yaml", runner::registry()).unwrap();
    let runner = Runner::new(service, RunnerOptions::default());
    let cfg = ServerConfig {
        mode: Mode::App(Arc::new(runner)),
        workers: 2,
        ..Default::default()
    };
    let srv = WssServer::start(Pki::ecdsa(), cfg);
    let mut s = srv.upgraded("");
    let (b0, payload) = read_frame(&mut s);
    assert_eq!(b0, 0x88);
    assert_eq!(u16::from_be_bytes([payload[0], payload[1]]), 1008);
    assert_eq!(&payload[2..], b"Policy Violation");
}

#[test]
fn plain_http_and_garbage_on_the_tls_port_end_without_a_hang() {
    let srv = WssServer::echo(ServerConfig::default());
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
        let mut s = srv.tcp();
        s.write_all(&bytes).unwrap();
        let start = Instant::now();
        let answer = read_to_end(&mut s);
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
    let srv = WssServer::echo(cfg);
    let mut s = srv.tcp();
    // The start of a ClientHello record, then nothing.
    s.write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01]).unwrap();
    let start = Instant::now();
    read_to_end(&mut s);
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
    let service = Service::from_str(yaml, "test.yaml", runner::registry()).unwrap();
    let cfg = ServerConfig {
        mode: Mode::App(Arc::new(Runner::new(service, RunnerOptions::default()))),
        workers: 2,
        management: Some(MgmtConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            tls: Some(pki.server_config()),
            ..MgmtConfig::default()
        }),
        ..Default::default()
    };
    let srv = WssServer::start(pki, cfg);
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
    let url = |id: &str| {
        format!(
            "https://localhost:{}/@connections/{id}",
            srv.mgmt.unwrap().port()
        )
    };
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
    let mut registry = runner::registry();
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
    let yaml = "api:\n  events:\n    - name: url\n      policies: [urlHandler]\n";
    let service = Service::from_str(yaml, "test.yaml", registry).unwrap();
    let cfg = ServerConfig {
        mode: Mode::App(Arc::new(Runner::new(service, RunnerOptions::default()))),
        workers: 2,
        management: Some(MgmtConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            tls: Some(pki.server_config()),
            ..MgmtConfig::default()
        }),
        ..Default::default()
    };
    let chain = pki.cert.clone();
    let srv = WssServer::start(pki, cfg);
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
    let srv = WssServer::start(pki, cfg);
    let mut ws = srv.client();
    echo_round(&mut ws, "open");
    let mut s = srv.tls_to(srv.mgmt.unwrap());
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .unwrap();
    let answer = String::from_utf8(read_to_end(&mut s)).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200 "), "{answer}");
    assert!(answer.trim_end().ends_with("ok"), "{answer}");
    // Keep-alive: two requests on one TLS connection.
    let mut s = srv.tls_to(srv.mgmt.unwrap());
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
    let mut tcp = TcpStream::connect(srv.mgmt.unwrap()).unwrap();
    tcp.set_read_timeout(Some(DEADLINE)).unwrap();
    tcp.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .unwrap();
    let answer = read_to_end(&mut tcp);
    assert!(answer.is_empty() || answer[0] == 0x15, "{answer:?}");
}

#[test]
fn stream_to_a_slow_reader_stays_within_the_memory_bound_over_tls() {
    // 1600 chunks of 16 KiB (25 MiB) to a reader that reads nothing at first, then a
    // little at a time.
    const COUNT: usize = 1600;
    const CHUNK: usize = 16384;
    const HIGH: usize = 256 << 10;
    let yaml = format!(
        "api:\n  events:\n    - name: big\n      policies:\n        - streamHandler: [{COUNT}, {CHUNK}]\n"
    );
    let service = Service::from_str(&yaml, "test.yaml", runner::registry()).unwrap();
    let runner = Runner::new(service, RunnerOptions::default());
    let cfg = ServerConfig {
        mode: Mode::App(Arc::new(runner)),
        workers: 2,
        high_water: HIGH,
        low_water: 64 << 10,
        ..Default::default()
    };
    let srv = WssServer::start(Pki::ecdsa(), cfg);
    let mut s = srv.upgraded("");
    s.write_all(&client_frame(
        0x81,
        br#"{"name":"big","headers":{"message-id":"big"}}"#,
    ))
    .unwrap();
    s.flush().unwrap();
    // High water + one chunk frame (CHUNK + 512 covers its envelope and header) + the
    // TLS record overhead of one flush (22 bytes per record of at most 16 KiB): the
    // queue's count includes the records rustls holds, and a flush moves bytes from the
    // queue into records, so only the overhead adds to it.
    let bound = (HIGH + CHUNK + 512 + 2048) as u64;
    // Held means a producer waits and the queue is over the low-water mark (below it the
    // producer is woken): a flush after the producer parked may move the queue under
    // high water into the kernel and records, so high water itself is not the condition.
    let held = wait_held(&srv.handle, bound, 64 << 10);
    assert!(
        held.bytes_out < (COUNT * CHUNK) as u64 / 4,
        "most of the stream waits for the reader"
    );
    let mut chunks = 0;
    let mut read_one = |s: &mut Tls| -> bool {
        let (b0, payload) = read_frame(s);
        assert_eq!(b0, 0x81);
        let v: serde_json::Value = serde_json::from_slice(&payload).unwrap();
        if v["headers"]["x-stream"] == "chunk" {
            assert_eq!(v["body"].as_str().unwrap().len(), CHUNK);
            chunks += 1;
            true
        } else {
            assert_eq!(v["headers"]["x-stream"], "done", "{v}");
            false
        }
    };
    // Read a little at a time, each time until the producer is held again.
    for cycle in 0..6 {
        for _ in 0..(cycle + 1) * 30 {
            assert!(read_one(&mut s), "the stream ended early");
        }
        wait_held(&srv.handle, bound, 0);
    }
    while read_one(&mut s) {}
    assert_eq!(chunks, COUNT);
    // Over the whole run, not only at the holds.
    let peak = assert_peak_within(&srv.handle, bound).queued_bytes_peak;
    assert!(
        peak >= HIGH as u64,
        "the queue never reached high water ({peak})"
    );
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
    let lines = util::lines_of(child.stderr.take().unwrap());
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

/// A TLS stream to `addr` trusting what `cfg` trusts, after the TLS handshake.
fn tls_client(addr: SocketAddr, cfg: Arc<rustls::ClientConfig>) -> Result<Tls, std::io::Error> {
    let tcp = TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(DEADLINE)).unwrap();
    let conn =
        rustls::ClientConnection::new(cfg, ServerName::try_from("localhost").unwrap()).unwrap();
    let mut s = rustls::StreamOwned::new(conn, tcp);
    while s.conn.is_handshaking() {
        s.conn.complete_io(&mut s.sock)?;
    }
    Ok(s)
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
    let (mut bin, _) = bin_util::Bin::start(&[
        "--echo",
        "--secure-port",
        "0",
        "--key",
        key.to_str().unwrap(),
        "--cert",
        cert.to_str().unwrap(),
    ]);
    let line = bin.wait_line("secure listener on wss://");
    let secure = bin_util::addr_after(&line, "wss://");
    let upgrade = |mut s: Tls| {
        s.write_all(upgrade_request("/").as_bytes()).unwrap();
        assert!(read_http_head(&mut s).starts_with("HTTP/1.1 101 "));
        s
    };
    let mut before = upgrade(tls_client(secure, old.client_config()).unwrap());
    echoes(&mut before, "before");

    // Renew: a new key and certificate (from a new CA) over the same files.
    let renewed = Pki::ecdsa();
    std::fs::copy(&renewed.cert, &cert).unwrap();
    std::fs::copy(&renewed.key, &key).unwrap();
    bin.signal("HUP");
    let line = bin.wait_line("reloaded: ");
    assert!(line.contains(cert.to_str().unwrap()), "{line}");
    // The next client is served the renewed certificate (it trusts only the new CA)...
    let mut after = upgrade(tls_client(secure, renewed.client_config()).expect("renewed"));
    echoes(&mut after, "after");
    // ... and one that trusts only the old CA is refused.
    assert!(tls_client(secure, old.client_config()).is_err());
    // The client connected before is still served.
    echoes(&mut before, "still here");

    // A broken key file: the renewed certificate stays in use.
    std::fs::write(&key, "not a key").unwrap();
    bin.signal("HUP");
    let line = bin.wait_line("reload failed");
    assert!(line.contains(key.to_str().unwrap()), "{line}");
    let mut third = upgrade(tls_client(secure, renewed.client_config()).expect("kept"));
    echoes(&mut third, "third");
    echoes(&mut before, "before, still");
    echoes(&mut after, "after, still");
}
