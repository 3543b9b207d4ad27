//! The transport over real loopback sockets: upgrade, echo, handshake errors, close
//! handshake, protocol errors, timeouts and the generation check on connection ids.
//! The tests of what a client sees on the wire run over plain TCP and over TLS (the
//! `wss_`/`_over_tls` twins), one body each.

mod support;

use std::io::Write;
use std::process::Command;
use std::time::Duration;

use configurapi_runner_ws::{Outgoing, ServerConfig};
use support::over_both;
use support::*;
use tungstenite::Message;

/// An echo server (`cfg`) serving `t`: the TLS one has a fresh test certificate.
fn server(t: Transport, cfg: ServerConfig) -> TestServer {
    TestServer::builder(cfg).transport(t).start()
}

// Each body below runs over plain TCP and over TLS: two tests, one body (`over_both!`,
// or for the codec paths one TLS test calling the plain tests' bodies).

fn echoes_from_empty_to_sixteen_mib(t: Transport) {
    let srv = server(t, ServerConfig::default());
    let mut ws = srv.client();
    for len in [
        0usize,
        1,
        125,
        126,
        16383,
        16384,
        16385,
        65535,
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

over_both!(echoes_from_empty_to_sixteen_mib: echoes_text_and_binary_from_empty_to_sixteen_mib, wss_echoes_text_and_binary_from_empty_to_sixteen_mib);

fn fragments_with_a_ping_between_and_many_frames_in_one_write(t: Transport) {
    let srv = server(t, ServerConfig::default());
    let (mut s, _) = srv.upgraded_with("");
    // Fragments with a ping in between, each in its own write (over TLS, its own
    // record).
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
    // Many frames in one write (one TLS record).
    let mut batch = Vec::new();
    for i in 0..100u8 {
        batch.extend(client_frame(0x82, &[i; 3]));
    }
    s.write_all(&batch).unwrap();
    s.flush().unwrap();
    for i in 0..100u8 {
        assert_eq!(read_frame(&mut s), (0x82, vec![i; 3]));
    }
}

#[test]
fn fragmented_message_is_reassembled_and_echoed_whole() {
    fragments_with_a_ping_between_and_many_frames_in_one_write(Transport::Plain);
}

#[test]
fn handshake_split_byte_by_byte_completes() {
    let srv = TestServer::echo();
    let mut s = srv.raw();
    for b in upgrade_request("/split?x=1").as_bytes() {
        s.write_all(&[*b]).unwrap();
    }
    let head = read_http_head(&mut s);
    assert!(
        head.starts_with("HTTP/1.1 101 Switching Protocols\r\n"),
        "{head}"
    );
    assert!(head.contains("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"));
    s.write_all(&client_frame(0x81, b"after split")).unwrap();
    assert_eq!(read_frame(&mut s), (0x81, b"after split".to_vec()));
}

#[test]
fn frames_pipelined_with_the_handshake_are_kept() {
    let srv = TestServer::echo();
    let mut s = srv.raw();
    let mut bytes = upgrade_request("/").into_bytes();
    bytes.extend(client_frame(0x81, b"one"));
    bytes.extend(client_frame(0x82, b"two"));
    s.write_all(&bytes).unwrap();
    assert!(read_http_head(&mut s).starts_with("HTTP/1.1 101 "));
    assert_eq!(read_frame(&mut s), (0x81, b"one".to_vec()));
    assert_eq!(read_frame(&mut s), (0x82, b"two".to_vec()));
}

fn first_offered_subprotocol_is_echoed(t: Transport) {
    let srv = server(t, ServerConfig::default());
    let (_, head) = srv.upgraded_with("Sec-WebSocket-Protocol: graphql-ws, chat\r\n");
    assert!(
        head.contains("Sec-WebSocket-Protocol: graphql-ws\r\n"),
        "{head}"
    );
}

over_both!(first_offered_subprotocol_is_echoed: first_offered_subprotocol_is_echoed_in_the_handshake, first_offered_subprotocol_is_echoed_over_tls);

/// The refused upgrades: a name, the request, the status and a header the answer must
/// hold.
fn rejections() -> Vec<(&'static str, Vec<u8>, u16, Option<&'static str>)> {
    let upgrade = upgrade_request("/");
    let many: String = (0..101).map(|i| format!("X-H{i}: v\r\n")).collect();
    vec![
        (
            "without key",
            upgrade
                .replace("Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n", "")
                .into_bytes(),
            400,
            None,
        ),
        (
            "malformed key",
            upgrade
                .replace("dGhlIHNhbXBsZSBub25jZQ==", "not-base64-16-bytes")
                .into_bytes(),
            400,
            None,
        ),
        (
            "version 8",
            upgrade.replace("Version: 13", "Version: 8").into_bytes(),
            426,
            Some("Sec-WebSocket-Version: 13\r\n"),
        ),
        (
            "POST",
            upgrade.replace("GET", "POST").into_bytes(),
            405,
            None,
        ),
        (
            "no upgrade",
            b"GET /index.html HTTP/1.1\r\nHost: localhost\r\n\r\n".to_vec(),
            426,
            None,
        ),
        (
            "over 16 KiB",
            format!("GET / HTTP/1.1\r\nX-Big: {}\r\n", "a".repeat(17 * 1024)).into_bytes(),
            431,
            None,
        ),
        (
            "over 100 lines",
            upgrade
                .replace("\r\n\r\n", &format!("\r\n{many}\r\n"))
                .into_bytes(),
            431,
            None,
        ),
        (
            "garbage",
            b"\x16\x03\x01\x02\x00garbage\r\n\r\n".to_vec(),
            400,
            None,
        ),
    ]
}

/// Over `t`, send the request of the rejection `name`; expect its status line, its
/// header if any, and a close by the server.
fn expect_rejection(t: Transport, name: &str) {
    let (_, req, status, header) = rejections()
        .into_iter()
        .find(|r| r.0 == name)
        .expect("a rejection case");
    let srv = server(t, ServerConfig::default());
    let mut s = srv.connect();
    // The server may answer before it has read everything; a failed write is fine.
    let _ = s.write_all(&req).and_then(|()| s.flush());
    let head = read_http_head(&mut s);
    assert!(
        head.starts_with(&format!("HTTP/1.1 {status} ")),
        "{name}: wanted {status}, got {head:?}"
    );
    assert!(head.contains("Connection: close\r\n"), "{name}: {head}");
    if let Some(h) = header {
        assert!(head.contains(h), "{name}: {head}");
    }
    read_to_eof(&mut s);
    let stats = srv.handle.stats().unwrap();
    assert_eq!(stats.handshakes_rejected.get(&status), Some(&1), "{name}");
}

#[test]
fn handshake_without_key_is_400() {
    expect_rejection(Transport::Plain, "without key");
}

#[test]
fn handshake_with_malformed_key_is_400() {
    expect_rejection(Transport::Plain, "malformed key");
}

#[test]
fn handshake_with_version_other_than_13_is_426_naming_13() {
    expect_rejection(Transport::Plain, "version 8");
}

#[test]
fn handshake_with_post_is_405() {
    expect_rejection(Transport::Plain, "POST");
}

#[test]
fn plain_http_request_without_upgrade_is_426() {
    expect_rejection(Transport::Plain, "no upgrade");
}

#[test]
fn handshake_headers_over_16_kib_are_431() {
    expect_rejection(Transport::Plain, "over 16 KiB");
}

#[test]
fn handshake_with_over_100_header_lines_is_431() {
    expect_rejection(Transport::Plain, "over 100 lines");
}

#[test]
fn garbage_request_is_400() {
    expect_rejection(Transport::Plain, "garbage");
}

#[test]
fn handshake_rejections_are_answered_over_tls() {
    for (name, ..) in rejections() {
        expect_rejection(Transport::Tls, name);
    }
}

/// Over `t`, the server's close frame (with `code`) after `bytes`, then the end of the
/// connection.
fn closes_after(t: Transport, bytes: &[u8], code: u16) {
    let srv = server(t, ServerConfig::default());
    let (mut s, _) = srv.upgraded_with("");
    s.write_all(bytes).unwrap();
    s.flush().unwrap();
    expect_close(&mut s, code);
}

fn client_close_is_answered_with_its_code(t: Transport) {
    let mut payload = 4000u16.to_be_bytes().to_vec();
    payload.extend_from_slice(b"bye");
    closes_after(t, &client_frame(0x88, &payload), 4000);
}

#[test]
fn client_close_is_answered_with_the_same_code_then_tcp_closes() {
    client_close_is_answered_with_its_code(Transport::Plain);
}

fn unmasked_client_frame_closes_1002(t: Transport) {
    closes_after(t, &[0x81, 0x02, b'h', b'i'], 1002);
}

#[test]
fn unmasked_client_frame_is_closed_with_1002() {
    unmasked_client_frame_closes_1002(Transport::Plain);
}

fn invalid_utf8_closes_1007(t: Transport) {
    // In a first fragment, and in a whole message.
    closes_after(t, &client_frame(0x01, b"ok\xC0\xAF"), 1007);
    let bad = [0xCE, 0xBA, 0xE1, 0xBD, 0xB9, 0xCF, 0x83, 0xFF];
    closes_after(t, &client_frame(0x81, &bad), 1007);
}

#[test]
fn invalid_utf8_text_is_closed_with_1007() {
    invalid_utf8_closes_1007(Transport::Plain);
}

#[test]
fn codec_paths_over_tls_fragments_pings_close_codes_and_bad_utf8() {
    fragments_with_a_ping_between_and_many_frames_in_one_write(Transport::Tls);
    client_close_is_answered_with_its_code(Transport::Tls);
    invalid_utf8_closes_1007(Transport::Tls);
    unmasked_client_frame_closes_1002(Transport::Tls);
}

#[test]
fn message_over_the_limit_is_closed_with_1009_from_the_header_alone() {
    let mut cfg = ServerConfig::default();
    cfg.limits.max_message = 1024;
    cfg.limits.max_frame = 1024;
    let srv = TestServer::start(cfg);
    let mut s = srv.upgraded();
    // Declare a 2^40-byte frame and send none of it.
    let mut hdr = vec![0x82, 0x80 | 127];
    hdr.extend_from_slice(&(1u64 << 40).to_be_bytes());
    hdr.extend_from_slice(&[1, 2, 3, 4]);
    s.write_all(&hdr).unwrap();
    expect_close(&mut s, 1009);
}

#[test]
fn silent_client_is_dropped_by_the_handshake_timeout() {
    let cfg = ServerConfig {
        handshake_timeout: Duration::from_millis(200),
        ..Default::default()
    };
    let srv = TestServer::start(cfg);
    let mut s = srv.raw();
    s.write_all(b"GET / HTTP/1.1\r\n").unwrap();
    assert!(read_to_eof(&mut s).is_empty());
    assert_eq!(srv.handle.stats().unwrap().handshake_timeouts, 1);
}

/// Handshake deadlines are kept in accept order (#17): connections that upgraded or left
/// ahead of a silent one must not hide its deadline, and upgraded ones get none.
#[test]
fn a_silent_client_behind_upgraded_and_closed_ones_is_still_dropped_by_the_handshake_timeout() {
    let cfg = ServerConfig {
        handshake_timeout: Duration::from_millis(300),
        ..Default::default()
    };
    let srv = TestServer::start(cfg);
    let mut upgraded: Vec<_> = (0..3).map(|_| srv.upgraded()).collect();
    drop(srv.raw());
    let mut silent = srv.raw();
    silent.write_all(b"GET / HTTP/1.1\r\n").unwrap();
    let mut late = srv.upgraded();
    assert!(read_to_eof(&mut silent).is_empty());
    let stats = srv.handle.stats().unwrap();
    assert_eq!(stats.handshake_timeouts, 1);
    // The upgraded connections, before and after it, are untouched.
    for s in upgraded.iter_mut().chain([&mut late]) {
        s.write_all(&client_frame(0x81, b"still here")).unwrap();
        assert_eq!(read_frame(s), (0x81, b"still here".to_vec()));
    }
}

fn idle_peer_is_pinged_then_closed(t: Transport) {
    let cfg = ServerConfig {
        idle_timeout: Duration::from_millis(300),
        ..Default::default()
    };
    let srv = server(t, cfg);
    let (mut s, _) = srv.upgraded_with("");
    assert_eq!(read_frame(&mut s), (0x89, vec![]));
    expect_close(&mut s, 1001);
}

over_both!(idle_peer_is_pinged_then_closed: idle_peer_is_pinged_then_closed_with_1001, idle_peer_is_pinged_then_closed_with_1001_over_tls);

#[test]
fn answering_pings_keeps_an_idle_connection_open() {
    // The server pings after half the idle timeout and closes after all of it: the
    // client has the other half (1.5 s, a generous deadline on a loaded machine) to
    // answer each ping.
    let cfg = ServerConfig {
        idle_timeout: Duration::from_secs(3),
        ..Default::default()
    };
    let srv = TestServer::start(cfg);
    let mut s = srv.upgraded();
    for _ in 0..2 {
        assert_eq!(read_frame(&mut s), (0x89, vec![]));
        s.write_all(&client_frame(0x8A, b"")).unwrap();
    }
    s.write_all(&client_frame(0x81, b"still here")).unwrap();
    // The next frame may be another keep-alive ping; skip those.
    loop {
        let f = read_frame(&mut s);
        if f.0 != 0x89 {
            assert_eq!(f, (0x81, b"still here".to_vec()));
            break;
        }
    }
}

#[test]
fn stale_conn_id_is_never_delivered_to_the_client_in_the_reused_slot() {
    let srv = TestServer::echo();
    let mut a = srv.upgraded();
    let ids = srv.handle.connections().unwrap();
    assert_eq!(ids.len(), 1);
    let old = ids[0];
    // Close A completely: close handshake, then EOF from the server.
    let mut payload = 1000u16.to_be_bytes().to_vec();
    payload.extend_from_slice(b"");
    a.write_all(&client_frame(0x88, &payload)).unwrap();
    expect_close(&mut a, 1000);
    drop(a);
    // Wait (with a deadline) until the reactor has freed A's slot.
    wait_all_gone(&srv);
    let mut b = srv.upgraded();
    let ids = srv.handle.connections().unwrap();
    assert_eq!(ids.len(), 1);
    let new = ids[0];
    assert_eq!(new.slot, old.slot, "the slab reuses the freed slot");
    assert_ne!(new.gen, old.gen);
    srv.handle
        .send(old, Outgoing::Text("for A".into()))
        .unwrap();
    srv.handle
        .send(new, Outgoing::Text("for B".into()))
        .unwrap();
    // Commands are handled in order: had A's message been delivered, it would come first.
    assert_eq!(read_frame(&mut b), (0x81, b"for B".to_vec()));
    assert_eq!(srv.handle.stats().unwrap().stale_dropped, 1);
}

fn shutdown_closes_with_1001(t: Transport) {
    let srv = server(t, ServerConfig::default());
    let (mut s, _) = srv.upgraded_with("");
    srv.handle.shutdown().unwrap();
    let (b0, payload) = read_frame(&mut s);
    assert_eq!(b0, 0x88);
    assert_eq!(u16::from_be_bytes([payload[0], payload[1]]), 1001);
}

over_both!(shutdown_closes_with_1001: shutdown_closes_open_connections_with_1001, shutdown_closes_open_connections_with_1001_over_tls);

fn peer_that_never_reads_is_paused_at_high_water(t: Transport) {
    const HIGH: usize = 256 << 10;
    let cfg = ServerConfig {
        high_water: HIGH,
        low_water: 64 << 10,
        ..Default::default()
    };
    let srv = server(t, cfg);
    let (s, _) = srv.upgraded_with("");
    let raw = s.sock().try_clone().unwrap();
    // The writer owns the stream and writes until the socket fails: once the server
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
    wait_stats(&srv, "a read pause", |st| st.read_pauses > 0);
    raw.shutdown(std::net::Shutdown::Both).unwrap();
    let sent = writer.join().unwrap();
    assert!(
        sent < 512 << 20,
        "the server kept reading a peer that never reads ({sent} bytes)"
    );
    // Over the whole run: paused at high water; one read batch (at most 8 x 64 KiB
    // reads) may overshoot it, and over TLS rustls holds at most one buffer of records
    // (64 KiB plus record overhead).
    let slack = match t {
        Transport::Plain => 1024,
        Transport::Tls => 80 << 10,
    };
    let peak =
        assert_peak_within(&srv.handle, (HIGH + 8 * (64 << 10) + slack) as u64).queued_bytes_peak;
    assert!(
        peak > HIGH as u64,
        "the queue never passed high water ({peak})"
    );
}

over_both!(peer_that_never_reads_is_paused_at_high_water: peer_that_never_reads_stops_being_read_at_the_high_water_mark, reader_that_never_reads_is_bounded_over_tls);

#[test]
fn busy_port_is_a_one_line_error_naming_the_port() {
    let taken = std::net::TcpListener::bind("0.0.0.0:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let out = Command::new(BIN)
        .args(["--echo", "--port", &port])
        .output_within_deadline()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8(out.stderr).unwrap();
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains(&port), "{err}");
}

#[test]
fn bad_flag_is_a_one_line_error_with_exit_code_2() {
    for args in [
        &["--bogus"][..],
        &["--port", "nope"],
        &["--max-message-size", "-1"],
    ] {
        let out = Command::new(BIN)
            .args(args)
            .output_within_deadline()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8(out.stderr).unwrap();
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.starts_with("error: "), "{err}");
    }
}

#[test]
fn help_lists_the_options() {
    let out = Command::new(BIN)
        .arg("--help")
        .output_within_deadline()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    for flag in [
        "--port",
        "--config",
        "--echo",
        "--max-message-size",
        "--idle-timeout",
    ] {
        assert!(text.contains(flag), "{flag}");
    }
}

#[test]
fn server_survives_a_peer_that_vanishes_mid_frame_and_serves_the_next_client() {
    let srv = TestServer::echo();
    {
        let mut s = srv.upgraded();
        let frame = client_frame(0x82, &[1u8; 1000]);
        s.write_all(&frame[..500]).unwrap();
    }
    let mut ws = srv.client();
    ws.send(Message::text("alive")).unwrap();
    assert_eq!(ws.read().unwrap(), Message::text("alive"));
}

fn many_small_writes_of_a_large_message_are_echoed(t: Transport) {
    let srv = server(t, ServerConfig::default());
    let (mut s, _) = srv.upgraded_with("");
    let payload: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    let frame = client_frame(0x82, &payload);
    // Each piece its own write (over TLS, its own record): the server reads the message
    // in many small reads.
    for piece in frame.chunks(1000) {
        s.write_all(piece).unwrap();
        s.flush().unwrap();
    }
    let (b0, got) = read_frame(&mut s);
    assert_eq!(b0, 0x82);
    assert_eq!(got, payload);
    // Nothing more was sent: the next frame is the answer to a ping sent now.
    s.write_all(&client_frame(0x89, b"after")).unwrap();
    s.flush().unwrap();
    assert_eq!(read_frame(&mut s), (0x8A, b"after".to_vec()));
}

over_both!(many_small_writes_of_a_large_message_are_echoed: many_small_reads_of_a_large_message_are_echoed, many_small_reads_of_a_large_message_are_echoed_over_tls);

#[test]
fn past_max_connections_the_upgrade_is_503_with_retry_after_and_room_comes_back() {
    let cfg = ServerConfig {
        max_connections: 1,
        ..Default::default()
    };
    let srv = TestServer::start(cfg);
    let mut a = srv.upgraded();
    let mut b = srv.raw();
    b.write_all(upgrade_request("/").as_bytes()).unwrap();
    let head = read_http_head(&mut b);
    assert!(head.starts_with("HTTP/1.1 503 "), "{head}");
    assert!(head.contains("Retry-After: 1\r\n"), "{head}");
    read_to_eof(&mut b);
    drop(b);
    // A is still served, and once it leaves a new client gets in.
    a.write_all(&client_frame(0x81, b"still a")).unwrap();
    assert_eq!(read_frame(&mut a), (0x81, b"still a".to_vec()));
    a.write_all(&client_frame(0x88, &1000u16.to_be_bytes()))
        .unwrap();
    expect_close(&mut a, 1000);
    drop(a);
    wait_stats(&srv, "A gone", |st| st.open == 0);
    let mut c = srv.upgraded();
    c.write_all(&client_frame(0x81, b"c")).unwrap();
    assert_eq!(read_frame(&mut c), (0x81, b"c".to_vec()));
    let stats = srv.handle.stats().unwrap();
    assert_eq!(stats.handshakes_rejected.get(&503), Some(&1));
}
