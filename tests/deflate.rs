//! permessage-deflate (RFC 7692, issue #15) over real sockets: negotiation in the 101,
//! compressed echo both ways, the 1 KiB threshold, RSV1 rules, and a deflate bomb that
//! must end in 1009 with memory bounded by the message limit.
//!
//! The client side is hand-written frames; its compression uses the crate's own
//! `ws::deflate` contexts (tungstenite has no permessage-deflate). Interoperability
//! with independent implementations is what Autobahn 12.*/13.* (Python zlib, in
//! .ci/run) and the headless Chromium test check.
//!
//! Tests run one at a time (a file-wide lock) so the resident-set measurement sees only
//! its own allocations.

mod support;

use std::io::Write;
use std::net::TcpStream;
use std::sync::{Mutex, MutexGuard};

use configurapi_runner_ws::runner::RunnerOptions;
use configurapi_runner_ws::ws::deflate::{DeflateConfig, Deflater, Inflater};
use configurapi_runner_ws::ws::extension::DeflateMode;
use configurapi_runner_ws::ws::Limits;
use configurapi_runner_ws::ServerConfig;
use serde_json::{json, Value};
use support::*;

static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

fn server(mode: DeflateMode, max_message: usize) -> TestServer {
    TestServer::start(ServerConfig {
        deflate: DeflateConfig {
            mode,
            threshold: 1024,
        },
        limits: Limits {
            max_frame: max_message as u64,
            max_message,
        },
        ..Default::default()
    })
}

/// Upgrade offering `offer` (if any); the 101 head.
fn upgrade(srv: &TestServer, offer: Option<&str>) -> (TcpStream, String) {
    let mut s = srv.raw();
    let mut req = upgrade_request("/");
    if let Some(o) = offer {
        req = req.replace(
            "\r\n\r\n",
            &format!("\r\nSec-WebSocket-Extensions: {o}\r\n\r\n"),
        );
    }
    s.write_all(req.as_bytes()).unwrap();
    let head = read_http_head(&mut s);
    assert!(head.starts_with("HTTP/1.1 101 "), "{head}");
    (s, head)
}

fn extensions_answer(head: &str) -> Option<String> {
    head.lines()
        .find_map(|l| l.strip_prefix("Sec-WebSocket-Extensions: "))
        .map(str::to_string)
}

fn json(n: usize) -> Vec<u8> {
    let mut s = String::from("[");
    let mut i = 0;
    while s.len() < n {
        s.push_str(&format!(
            "{{\"id\":{i},\"name\":\"item-{i}\",\"price\":{}.5,\"tags\":[\"x\",\"y\"]}},",
            i * 7
        ));
        i += 1;
    }
    s.push_str("{}]");
    s.into_bytes()
}

#[test]
fn shared_mode_answers_no_context_takeover_and_echoes_compressed_whole_and_fragmented() {
    let _serial = serial();
    let srv = server(DeflateMode::Shared, 16 << 20);
    let (mut s, head) = upgrade(&srv, Some("permessage-deflate; client_max_window_bits"));
    assert_eq!(
        extensions_answer(&head).as_deref(),
        Some("permessage-deflate; server_no_context_takeover; client_no_context_takeover")
    );
    let mut client = Deflater::new(15);
    let mut inf = Inflater::new();
    for n in [2000, 8192, 100_000] {
        let msg = json(n);
        let mut z = Vec::new();
        client.deflate(&msg, &mut z, true);
        // Whole, then in three fragments with RSV1 on the first only.
        s.write_all(&client_frame(0xC1, &z)).unwrap();
        let third = z.len() / 3;
        let mut frag = client_frame(0x41, &z[..third]);
        frag.extend(client_frame(0x00, &z[third..2 * third]));
        frag.extend(client_frame(0x80, &z[2 * third..]));
        s.write_all(&frag).unwrap();
        for _ in 0..2 {
            let (b0, payload) = read_frame(&mut s);
            assert_eq!(b0, 0xC1, "compressed text frame back");
            assert!(payload.len() * 3 < msg.len(), "{} of {}", payload.len(), n);
            let mut back = Vec::new();
            inf.inflate(&payload, &mut back, 1 << 20, true).unwrap();
            assert_eq!(back, msg);
        }
    }
    // Under the 1 KiB threshold the answer goes uncompressed, whatever the client did.
    let mut z = Vec::new();
    client.deflate(b"small", &mut z, true);
    s.write_all(&client_frame(0xC1, &z)).unwrap();
    s.write_all(&client_frame(0x82, &[1, 2, 3])).unwrap();
    assert_eq!(read_frame(&mut s), (0x81, b"small".to_vec()));
    assert_eq!(read_frame(&mut s), (0x82, vec![1, 2, 3]));
    // Control frames stay uncompressed.
    s.write_all(&client_frame(0x89, b"ping")).unwrap();
    assert_eq!(read_frame(&mut s), (0x8A, b"ping".to_vec()));
}

#[test]
fn takeover_mode_keeps_context_across_messages() {
    let _serial = serial();
    let srv = server(DeflateMode::Takeover, 16 << 20);
    let (mut s, head) = upgrade(&srv, Some("permessage-deflate"));
    assert_eq!(
        extensions_answer(&head).as_deref(),
        Some("permessage-deflate")
    );
    let mut client = Deflater::new(15);
    let mut inf = Inflater::new();
    let msg = json(4096);
    let mut sizes = Vec::new();
    for _ in 0..3 {
        let mut z = Vec::new();
        client.deflate(&msg, &mut z, false);
        s.write_all(&client_frame(0xC1, &z)).unwrap();
        let (b0, payload) = read_frame(&mut s);
        assert_eq!(b0, 0xC1);
        let mut back = Vec::new();
        inf.inflate(&payload, &mut back, 1 << 20, false).unwrap();
        assert_eq!(back, msg);
        sizes.push(payload.len());
    }
    // The repeat refers back to the previous message: far smaller than the first.
    assert!(sizes[1] * 2 < sizes[0], "{sizes:?}");
}

#[test]
fn declined_or_off_means_no_extension_and_rsv1_is_1002() {
    let _serial = serial();
    let off = server(DeflateMode::Off, 16 << 20);
    let on = server(DeflateMode::Shared, 16 << 20);
    for (srv, offer) in [
        (&off, Some("permessage-deflate")),
        (&on, None),
        (&on, Some("permessage-deflate; server_max_window_bits=16")),
        (&on, Some("permessage-deflate; mystery")),
    ] {
        let (mut s, head) = upgrade(srv, offer);
        assert_eq!(extensions_answer(&head), None, "{offer:?}");
        s.write_all(&client_frame(0xC1, &[0xf2, 0x48, 0x05, 0x00]))
            .unwrap();
        expect_close(&mut s, 1002);
    }
    // With deflate on, RSV1 on a continuation or a control frame is 1002 too.
    for bad in [
        [client_frame(0x01, b"a"), client_frame(0xC0, b"b")].concat(),
        client_frame(0xC9, b""),
    ] {
        let (mut s, _) = upgrade(&on, Some("permessage-deflate"));
        s.write_all(&bad).unwrap();
        expect_close(&mut s, 1002);
    }
    // Garbage that does not inflate: 1007; compressed text that is not UTF-8: 1007.
    let (mut s, _) = upgrade(&on, Some("permessage-deflate"));
    s.write_all(&client_frame(0xC1, &[0xff, 0xff, 0xff]))
        .unwrap();
    expect_close(&mut s, 1007);
    let (mut s, _) = upgrade(&on, Some("permessage-deflate"));
    let mut z = Vec::new();
    Deflater::new(15).deflate(&[0xff, 0xfe, 0xfd], &mut z, true);
    s.write_all(&client_frame(0xC1, &z)).unwrap();
    expect_close(&mut s, 1007);
}

/// A deflate stream of `chunks` MiB of zeros: one 1 MiB block sequence (about 1 KiB:
/// runs of 258 at distance 1) repeated, each copy ended by an empty stored block so the
/// copies join into one stream.
fn bomb(chunks: usize) -> Vec<u8> {
    let mut one = Vec::new();
    // Window 8: the runs-only compressor, which gets close to deflate's 1032:1 bound.
    Deflater::new(8).deflate(&vec![0u8; 1 << 20], &mut one, true);
    one.extend_from_slice(&[0x00, 0x00, 0xff, 0xff]);
    one.repeat(chunks)
}

#[test]
fn deflate_bomb_closes_1009_with_resident_growth_under_twice_the_limit() {
    let _serial = serial();
    let max = 8 << 20;
    let srv = server(DeflateMode::Shared, max);
    // 1 GiB of zeros, sent as 1 KiB-ish frames each inflating to 1 MiB.
    let z = bomb(1024);
    assert!(z.len() < 2 << 20, "bomb is {} bytes", z.len());
    let frame_len = z.len() / 1024;
    let mut frames = Vec::with_capacity(z.len() + 16 * 1024);
    for (i, piece) in z.chunks(frame_len).enumerate() {
        let last = (i + 1) * frame_len >= z.len();
        let b0 = match (i == 0, last) {
            (true, true) => 0xC2,
            (true, false) => 0x42,
            (false, true) => 0x80,
            (false, false) => 0x00,
        };
        frames.extend(client_frame(b0, piece));
    }
    let (mut s, _) = upgrade(&srv, Some("permessage-deflate"));
    let rss = RssPeak::start();
    s.write_all(&frames).unwrap();
    expect_close(&mut s, 1009);
    let grew = rss.growth(&format!(
        "deflate bomb: {} KiB compressed toward 1 GiB (limit {} KiB)",
        z.len() >> 10,
        max >> 10
    ));
    assert!(grew < 2 * max as u64, "grew by {grew} bytes");
    assert_eq!(
        srv.handle.stats().unwrap().close_codes_sent.get(&1009),
        Some(&1)
    );
    // Still serving deflate afterwards.
    let (mut s, _) = upgrade(&srv, Some("permessage-deflate"));
    let msg = json(3000);
    let mut z = Vec::new();
    Deflater::new(15).deflate(&msg, &mut z, true);
    s.write_all(&client_frame(0xC1, &z)).unwrap();
    let (b0, payload) = read_frame(&mut s);
    assert_eq!(b0, 0xC1);
    let mut back = Vec::new();
    Inflater::new()
        .inflate(&payload, &mut back, 1 << 20, true)
        .unwrap();
    assert_eq!(back, msg);
}

/// Takeover mode's cost per connection, measured: connections that each sent and got
/// one compressed message hold their own compressor and decompressor. Printed for
/// docs/limits.md and bounded so a regression (say a context per message) shows.
#[test]
fn takeover_contexts_per_connection_are_measured_and_bounded() {
    let _serial = serial();
    let srv = server(DeflateMode::Takeover, 16 << 20);
    let msg = json(2048);
    let mut z = Vec::new();
    Deflater::new(15).deflate(&msg, &mut z, true);
    let frame = client_frame(0xC1, &z);
    let n = 40;
    let mut conns = Vec::new();
    // Warm the server's buffers first, so the growth below is the connections'.
    let (mut w, _) = upgrade(&srv, Some("permessage-deflate"));
    w.write_all(&frame).unwrap();
    read_frame(&mut w);
    let base = rss_bytes();
    for _ in 0..n {
        let (mut s, _) = upgrade(&srv, Some("permessage-deflate"));
        s.write_all(&frame).unwrap();
        let (b0, _) = read_frame(&mut s);
        assert_eq!(b0, 0xC1);
        conns.push(s);
    }
    let per = (rss_bytes().saturating_sub(base)) / n;
    eprintln!("takeover: {} KiB resident per connection", per >> 10);
    assert!(per < 600 << 10, "{per} bytes per connection");
    drop(conns);
}

/// Configurapi mode: a compressed request is inflated and handled, and the answer goes
/// back compressed, whether the route runs inline on the reactor or on a worker (whose
/// frame reaches the reactor uncompressed and is compressed there).
#[test]
fn runner_mode_inflates_requests_and_compresses_answers_inline_and_from_workers() {
    let _serial = serial();
    let yaml = r#"
import: [configurapi-handler-http]
api:
  events:
    - name: echo
      policies: [echoHandler]
"#;
    for inline in [true, false] {
        let srv = start_runner(
            yaml,
            |_| {},
            test_config(),
            RunnerOptions {
                inline,
                ..Default::default()
            },
        );
        let (mut s, head) = upgrade(&srv, Some("permessage-deflate"));
        assert!(extensions_answer(&head).is_some(), "{head}");
        let payload = String::from_utf8(json(6000)).unwrap();
        let req = json!({"name": "echo", "payload": payload, "headers": {"message-id": "m1"}});
        let mut z = Vec::new();
        Deflater::new(15).deflate(req.to_string().as_bytes(), &mut z, true);
        s.write_all(&client_frame(0xC1, &z)).unwrap();
        let (b0, wire) = read_frame(&mut s);
        assert_eq!(b0, 0xC1, "inline {inline}: a compressed text answer");
        let mut back = Vec::new();
        Inflater::new()
            .inflate(&wire, &mut back, 1 << 20, true)
            .unwrap();
        let answer: Value = serde_json::from_slice(&back).unwrap();
        assert_eq!(answer["statusCode"], 200, "{answer}");
        assert_eq!(answer["body"], Value::String(payload.clone()));
        assert_eq!(answer["headers"]["message-id"], "m1");
        assert!(
            wire.len() * 3 < back.len(),
            "{} of {}",
            wire.len(),
            back.len()
        );
    }
}
