//! Resource limits over real sockets: the per-connection cap on queued bytes, pong
//! coalescing under a ping flood, the management connection cap, and shedding when
//! the process runs out of file descriptors (docs/limits.md).

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

use configurapi_runner_ws::reactor::MgmtConfig;
use configurapi_runner_ws::{Outgoing, ServerConfig};
use support::{
    client_frame, echo_round_trip, expect_close, read_frame, read_http_head, tcp, wait_stats, Bin,
    TestServer, BIN, DEADLINE,
};

fn capped(max_queued: usize, grace: Duration) -> ServerConfig {
    ServerConfig {
        high_water: 64 << 10,
        low_water: 16 << 10,
        max_queued,
        queued_grace: grace,
        ..ServerConfig::default()
    }
}

/// Frames the application sends faster than the peer reads (no pacing on this path):
/// past the cap for the grace period, the connection gets 1008 right after the frame
/// it is in the middle of, and the queue is freed.
#[test]
fn over_queued_cap_past_grace_closes_with_1008_and_frees_the_queue() {
    let cap = 256 << 10;
    let srv = TestServer::start(capped(cap, Duration::from_millis(200)));
    let mut s = srv.upgraded();
    let id = srv.handle.connections().unwrap()[0];
    let frame = 100 << 10;
    let mut sent = 0;
    // Fill the kernel's buffers, then go over the cap but stay under twice it.
    loop {
        let st = srv.handle.stats().unwrap();
        if st.queued_bytes_max as usize > cap {
            break;
        }
        assert_eq!(
            st.backpressure_closes, 0,
            "closed before going over: {st:?}"
        );
        assert!(sent < 2000, "the queue never grew: {st:?}");
        srv.handle
            .send(id, Outgoing::Binary(vec![sent as u8; frame]))
            .unwrap();
        sent += 1;
        wait_stats(&srv, "the send", |st| st.messages_out >= sent as u64);
    }
    // Frames went in one at a time and stopped once over the cap: at no moment did the
    // queue reach twice the cap (which would have closed it at once).
    let st = srv.handle.stats().unwrap();
    assert!(
        (st.queued_bytes_peak as usize) <= cap + frame + 64,
        "{st:?}"
    );
    // Only the grace period can close it now.
    let st = wait_stats(&srv, "the 1008 close", |st| st.backpressure_closes == 1);
    assert!(
        st.queued_bytes_max as usize <= frame + 64,
        "queue dropped: {st:?}"
    );
    assert_eq!(st.close_codes_sent.get(&1008), Some(&1));
    // The client reads whole frames, in order, then the close frame.
    let mut got = 0;
    loop {
        let (b0, payload) = read_frame(&mut s);
        if b0 == 0x88 {
            assert_eq!(u16::from_be_bytes([payload[0], payload[1]]), 1008);
            assert_eq!(&payload[2..], b"backpressure limit");
            break;
        }
        assert_eq!(b0, 0x82);
        assert_eq!(payload, vec![got as u8; frame], "frame {got} intact");
        got += 1;
    }
    assert!(
        got < sent,
        "some frames were dropped ({got} of {sent} arrived)"
    );
    support::read_to_eof(&mut s);
    drop(s);
    wait_stats(&srv, "the slot to be freed", |st| st.open == 0);
    echo_round_trip(&srv);
}

/// Twice the cap closes at once, without waiting for the grace period.
#[test]
fn twice_the_queued_cap_closes_without_grace() {
    let cap = 256 << 10;
    let srv = TestServer::start(capped(cap, Duration::from_secs(3600)));
    let mut s = srv.upgraded();
    let id = srv.handle.connections().unwrap()[0];
    let mut sent = 0u64;
    while srv.handle.stats().unwrap().backpressure_closes == 0 {
        assert!(sent < 2000, "never closed");
        srv.handle
            .send(id, Outgoing::Binary(vec![7; 100 << 10]))
            .unwrap();
        sent += 1;
        wait_stats(&srv, "the send", |st| {
            st.messages_out >= sent || st.backpressure_closes > 0
        });
    }
    loop {
        let (b0, payload) = read_frame(&mut s);
        if b0 == 0x88 {
            assert_eq!(u16::from_be_bytes([payload[0], payload[1]]), 1008);
            break;
        }
    }
    echo_round_trip(&srv);
}

/// A flood of pings that is never read: the pongs the peer does not take are coalesced
/// into one answering the latest ping, so the queue stays small however many pings
/// come. Once the client reads, the pongs come in order and the last one answers the
/// last ping (RFC 6455 5.5.3).
#[test]
fn unread_ping_flood_is_answered_by_coalesced_pongs() {
    let srv = TestServer::echo();
    let mut s = srv.upgraded();
    let pings = 50_000u32;
    let mut bytes = Vec::new();
    for i in 0..pings {
        let mut payload = [b'.'; 125];
        payload[..4].copy_from_slice(&i.to_be_bytes());
        bytes.extend_from_slice(&client_frame(0x89, &payload));
    }
    let handshake_bytes = support::upgrade_request("/").len() as u64;
    let total = handshake_bytes + bytes.len() as u64;
    // The server reads everything: its queue never reaches the high-water mark.
    s.write_all(&bytes).unwrap();
    let st = wait_stats(&srv, "every ping read", |st| st.bytes_in >= total);
    assert!(st.pongs_coalesced > 0, "nothing coalesced: {st:?}");
    // At no moment (the recorded peak) more than the burst of 16 pongs of 127 bytes and
    // the one deferred pong.
    assert!(
        st.queued_bytes_peak <= 17 * 127,
        "pongs piled up in the queue: {st:?}"
    );
    let mut last = None;
    let mut received = 0u32;
    while last != Some(pings - 1) {
        let (b0, payload) = read_frame(&mut s);
        assert_eq!(b0, 0x8A, "only pongs");
        let i = u32::from_be_bytes(payload[..4].try_into().unwrap());
        assert!(last.is_none_or(|l| i > l), "pong {i} after {last:?}");
        last = Some(i);
        received += 1;
    }
    assert!(received < pings, "{received} pongs for {pings} pings");
    echo_round_trip(&srv);
}

/// Past `max_management_connections`, a management connection gets 503 and is closed;
/// when one leaves, a new one is served.
#[test]
fn management_connections_are_capped() {
    let srv = TestServer::start(ServerConfig {
        max_management_connections: 4,
        management: Some(MgmtConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            ..MgmtConfig::default()
        }),
        ..ServerConfig::default()
    });
    let mgmt = srv.mgmt();
    let connect = || tcp(mgmt);
    let mut held: Vec<TcpStream> = (0..4).map(|_| connect()).collect();
    let mut over = connect();
    let mut answer = String::new();
    over.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 503 "), "{answer}");
    assert!(answer.contains("Retry-After: 1\r\n"), "{answer}");
    assert_eq!(srv.handle.stats().unwrap().mgmt_refused, 1);
    // /metrics counts it.
    let metrics = {
        let mut s = held.pop().unwrap();
        s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .unwrap();
        let mut body = String::new();
        s.read_to_string(&mut body).unwrap();
        body
    };
    assert!(
        metrics.contains("\nconfigurapi_ws_connections_shed_total 1\n"),
        "{metrics}"
    );
    // The held ones are served.
    let get = |s: &mut TcpStream| {
        s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        read_http_head(s)
    };
    assert!(get(&mut held[0]).starts_with("HTTP/1.1 200 "));
    drop(held.pop());
    let start = Instant::now();
    loop {
        let mut s = connect();
        let head = get(&mut s);
        if head.starts_with("HTTP/1.1 200 ") {
            break;
        }
        // The reactor may not have seen the dropped connection's FIN yet.
        assert!(head.starts_with("HTTP/1.1 503 "), "{head}");
        assert!(start.elapsed() < DEADLINE, "a freed place was never reused");
    }
}

/// The server binary with a small descriptor limit: a shell sets it and execs.
struct LimitedServer {
    bin: Bin,
    addr: String,
}

impl LimitedServer {
    fn start(nofile: u32) -> LimitedServer {
        let mut bin = Bin::spawn(
            Command::new("sh")
                .arg("-c")
                .arg(format!(
                    "ulimit -n {nofile} && exec \"$0\" --echo --host 127.0.0.1 --port 0 --log-level info"
                ))
                .arg(BIN),
        );
        let addr = bin.listening().to_string();
        LimitedServer { bin, addr }
    }

    fn cpu_ticks(&self) -> u64 {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.bin.child.id())).unwrap();
        let after = &stat[stat.rfind(')').unwrap() + 2..];
        let f: Vec<&str> = after.split_whitespace().collect();
        f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
    }
}

/// Try the upgrade on a new connection: true when served (101), false when shed (it
/// must be a 503). A hang fails the test.
fn try_upgrade(addr: &str) -> (TcpStream, bool) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(DEADLINE)).unwrap();
    // A shed connection is answered and closed at accept, before its request is read:
    // the write may meet the reset that the close of an unread socket sends. The 503
    // was on its way first and is read below all the same.
    let _ = s.write_all(support::upgrade_request("/").as_bytes());
    // A reset after the answer ends the head (read_http_head stops there).
    let head = read_http_head(&mut s);
    if head.starts_with("HTTP/1.1 101 ") {
        return (s, true);
    }
    // docs/limits.md promises a 503 to a shed connection, not a bare close.
    assert!(
        head.starts_with("HTTP/1.1 503 ") && head.contains("Retry-After: 1\r\n"),
        "a connection past the descriptor limit got {head:?}, not a 503"
    );
    (s, false)
}

/// Out of file descriptors, the reactor sheds each pending connection at once (no
/// hang, no spin), stays up, and serves again as soon as descriptors are free.
#[test]
fn out_of_file_descriptors_sheds_then_recovers() {
    let srv = LimitedServer::start(32);
    let ticks_before = srv.cpu_ticks();
    let started = Instant::now();
    let mut held = Vec::new();
    let mut shed = 0;
    for _ in 0..64 {
        let (s, served) = try_upgrade(&srv.addr);
        if served {
            assert_eq!(shed, 0, "served after being out of descriptors");
            held.push(s);
        } else {
            shed += 1;
        }
    }
    assert!(shed > 0, "never ran out of descriptors at 32");
    assert!(held.len() >= 8, "only {} served", held.len());
    // Freed descriptors are used again.
    held.clear();
    let start = Instant::now();
    let mut s = loop {
        let (s, served) = try_upgrade(&srv.addr);
        if served {
            break s;
        }
        assert!(start.elapsed() < DEADLINE, "never served again");
    };
    s.write_all(&client_frame(0x81, b"back")).unwrap();
    assert_eq!(read_frame(&mut s), (0x81, b"back".to_vec()));
    // Shedding did not spin: the server used a fraction of the wall time.
    let hz = 100.0; // USER_HZ on Linux
    let cpu = (srv.cpu_ticks() - ticks_before) as f64 / hz;
    let wall = started.elapsed().as_secs_f64();
    assert!(
        cpu < 0.5 * wall + 0.05,
        "server CPU {cpu:.2}s in {wall:.2}s of wall time"
    );
    s.write_all(&client_frame(0x88, &1000u16.to_be_bytes()))
        .unwrap();
    expect_close(&mut s, 1000);
}
