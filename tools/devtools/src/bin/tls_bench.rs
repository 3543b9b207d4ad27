//! WSS against WS on the same in-process echo server: handshake rate and echo
//! throughput as a ratio of plain. The figures in docs/architecture.md ("TLS") come from
//! `cargo run --release -p devtools --bin tls_bench`.
//!
//! Clients are blocking threads on the same machine, so the absolute numbers include
//! the client's cost; the ratio is what this measures. A test CA and an ECDSA P-256
//! server certificate are made with rcgen.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use configurapi_runner_ws::{Server, ServerConfig, TlsSettings};
use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};

const UPGRADE: &str = "GET / HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";

fn frame(payload: &[u8]) -> Vec<u8> {
    let mut out = vec![0x82];
    let len = payload.len();
    if len < 126 {
        out.push(0x80 | len as u8);
    } else if len <= 0xFFFF {
        out.push(0x80 | 126);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.push(0x80 | 127);
        out.extend_from_slice(&(len as u64).to_be_bytes());
    }
    out.extend_from_slice(&[0, 0, 0, 0]); // zero mask key: payload unchanged
    out.extend_from_slice(payload);
    out
}

fn read_head(s: &mut impl Read) {
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        s.read_exact(&mut b).unwrap();
        head.push(b[0]);
    }
    assert!(head.starts_with(b"HTTP/1.1 101"));
}

fn read_echo(s: &mut impl Read, payload_len: usize) {
    let hdr = match payload_len {
        0..=125 => 2,
        126..=0xFFFF => 4,
        _ => 10,
    };
    let mut buf = vec![0u8; hdr + payload_len];
    s.read_exact(&mut buf).unwrap();
}

struct Setup {
    plain: SocketAddr,
    secure: SocketAddr,
    client: Arc<rustls::ClientConfig>,
}

fn setup() -> (Setup, configurapi_runner_ws::Handle) {
    let ca_key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let leaf = CertificateParams::new(vec!["localhost".to_string()])
        .unwrap()
        .signed_by(&key, &issuer)
        .unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut server_cfg = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![leaf.der().clone()],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        )
        .unwrap();
    server_cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    let mut roots = rustls::RootCertStore::empty();
    roots.add(CertificateDer::from(ca.der().to_vec())).unwrap();
    let client = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let cfg = ServerConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        tls: Some(TlsSettings {
            listen: "127.0.0.1:0".parse().unwrap(),
            server_config: Arc::new(server_cfg),
        }),
        ..Default::default()
    };
    let server = Server::bind(cfg).unwrap();
    let plain = server.local_addr();
    let secure = server.secure_addr().unwrap();
    let (handle, _join) = server.spawn();
    (
        Setup {
            plain,
            secure,
            client: Arc::new(client),
        },
        handle,
    )
}

trait Stream: Read + Write {}
impl<T: Read + Write> Stream for T {}

fn connect(s: &Setup, tls: bool) -> Box<dyn Stream> {
    let addr = if tls { s.secure } else { s.plain };
    let tcp = TcpStream::connect(addr).unwrap();
    tcp.set_nodelay(true).unwrap();
    let mut stream: Box<dyn Stream> = if tls {
        let conn = rustls::ClientConnection::new(
            s.client.clone(),
            ServerName::try_from("localhost").unwrap(),
        )
        .unwrap();
        Box::new(rustls::StreamOwned::new(conn, tcp))
    } else {
        Box::new(tcp)
    };
    stream.write_all(UPGRADE.as_bytes()).unwrap();
    stream.flush().unwrap();
    read_head(&mut stream);
    stream
}

/// Connections per second: TCP (+ TLS) handshake, upgrade, one echo, drop.
fn handshakes(s: &Setup, tls: bool, dur: Duration) -> f64 {
    let start = Instant::now();
    let mut n = 0u64;
    let f = frame(b"x");
    while start.elapsed() < dur {
        let mut c = connect(s, tls);
        c.write_all(&f).unwrap();
        c.flush().unwrap();
        read_echo(&mut c, 1);
        n += 1;
    }
    n as f64 / start.elapsed().as_secs_f64()
}

/// Messages per second over `conns` threads, one message in flight each.
fn echo(s: &Arc<Setup>, tls: bool, conns: usize, payload: usize, dur: Duration) -> f64 {
    let threads: Vec<_> = (0..conns)
        .map(|_| {
            let s = s.clone();
            std::thread::spawn(move || {
                let mut c = connect(&s, tls);
                let f = frame(&vec![b'a'; payload]);
                let start = Instant::now();
                let mut n = 0u64;
                while start.elapsed() < dur {
                    c.write_all(&f).unwrap();
                    c.flush().unwrap();
                    read_echo(&mut c, payload);
                    n += 1;
                }
                n as f64 / start.elapsed().as_secs_f64()
            })
        })
        .collect();
    threads.into_iter().map(|t| t.join().unwrap()).sum()
}

fn main() {
    let secs: u64 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(3);
    let dur = Duration::from_secs(secs);
    let (s, handle) = setup();
    let s = Arc::new(s);
    let hp = handshakes(&s, false, dur);
    let ht = handshakes(&s, true, dur);
    println!(
        "handshakes/s   plain {hp:>10.0}   tls {ht:>10.0}   ratio {:.3}",
        ht / hp
    );
    for (conns, payload) in [(4, 64), (4, 16 << 10), (1, 1 << 20)] {
        let p = echo(&s, false, conns, payload, dur);
        let t = echo(&s, true, conns, payload, dur);
        println!(
            "echo {conns} conns x {payload:>7} B   plain {p:>10.0} msg/s   tls {t:>10.0} msg/s   ratio {:.3}",
            t / p
        );
    }
    let _ = handle.shutdown();
}
