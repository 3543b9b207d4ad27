//! wsbench: a load generator for any WebSocket echo server or Configurapi runner.
//!
//! One non-blocking mio client thread drives every connection; frames are encoded into
//! per-connection buffers that are reused, so the generator does no allocation per
//! message. Server CPU time is read from /proc/PID/task/*/schedstat (nanoseconds, all
//! threads) when `--pid` is given: CPU per message is the figure that compares servers
//! fairly when the generator shares a small machine with them.
//!
//! Scenarios:
//!   rr    closed loop, C connections, P messages in flight each (raw echo or JSON)
//!   idle  open N connections, report the server's RSS per connection, prove it still serves

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};

const USAGE: &str = "\
wsbench: WebSocket load generator

USAGE:
    wsbench rr   --addr HOST:PORT [-c 64] [-p 1] [--mode raw|json] [--payload hello]
                 [--duration 10] [--warmup 2] [--pid PID] [--label NAME]
    wsbench idle --addr HOST:PORT [-n 10000] --pid PID [--label NAME]

rr prints a table and one JSON line: msgs/s, latency percentiles (us), and with --pid the
server's CPU time per message. idle prints the server's RSS growth per open connection.
";

struct Args {
    scenario: String,
    addr: SocketAddr,
    conns: usize,
    pipeline: usize,
    json: bool,
    payload: String,
    duration: Duration,
    warmup: Duration,
    pid: Option<u32>,
    count: usize,
    label: String,
}

fn parse_args() -> Result<Args, String> {
    let mut it = std::env::args().skip(1);
    let scenario = it
        .next()
        .ok_or("missing scenario (rr or idle); see --help")?;
    if scenario == "--help" || scenario == "-h" {
        print!("{USAGE}");
        std::process::exit(0);
    }
    let mut a = Args {
        scenario,
        addr: "127.0.0.1:8000".parse().unwrap(),
        conns: 64,
        pipeline: 1,
        json: false,
        payload: "hello".into(),
        duration: Duration::from_secs(10),
        warmup: Duration::from_secs(2),
        pid: None,
        count: 10_000,
        label: String::new(),
    };
    while let Some(flag) = it.next() {
        let mut val = || it.next().ok_or(format!("{flag} needs a value"));
        let bad = |f: &str, v: &str| format!("{f}: bad value '{v}'");
        match flag.as_str() {
            "--addr" => {
                let v = val()?;
                a.addr = v.parse().map_err(|_| bad("--addr", &v))?
            }
            "-c" | "--conns" => {
                let v = val()?;
                a.conns = v.parse().map_err(|_| bad("-c", &v))?
            }
            "-p" | "--pipeline" => {
                let v = val()?;
                a.pipeline = v.parse().map_err(|_| bad("-p", &v))?
            }
            "-n" | "--count" => {
                let v = val()?;
                a.count = v.parse().map_err(|_| bad("-n", &v))?
            }
            "--mode" => match val()?.as_str() {
                "raw" => a.json = false,
                "json" => a.json = true,
                v => return Err(bad("--mode", v)),
            },
            "--payload" => a.payload = val()?,
            "--duration" => {
                let v = val()?;
                a.duration = Duration::from_secs_f64(v.parse().map_err(|_| bad("--duration", &v))?)
            }
            "--warmup" => {
                let v = val()?;
                a.warmup = Duration::from_secs_f64(v.parse().map_err(|_| bad("--warmup", &v))?)
            }
            "--pid" => {
                let v = val()?;
                a.pid = Some(v.parse().map_err(|_| bad("--pid", &v))?)
            }
            "--label" => a.label = val()?,
            other => return Err(format!("unknown option '{other}'")),
        }
    }
    if a.conns == 0 || a.pipeline == 0 {
        return Err("-c and -p must be at least 1".into());
    }
    Ok(a)
}

fn main() {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(2);
        }
    };
    let result = match args.scenario.as_str() {
        "rr" => rr(&args),
        "idle" => idle(&args),
        other => Err(io::Error::other(format!("unknown scenario '{other}'"))),
    };
    if let Err(e) = result {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

/// Total CPU time of every thread of `pid`, in nanoseconds.
fn server_cpu_ns(pid: u32) -> Option<u64> {
    let mut total = 0;
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).ok()? {
        let path = task.ok()?.path().join("schedstat");
        let s = std::fs::read_to_string(path).ok()?;
        total += s.split_whitespace().next()?.parse::<u64>().ok()?;
    }
    Some(total)
}

/// Resident set size of `pid` in bytes.
fn server_rss(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = s.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

#[derive(PartialEq)]
enum Phase {
    Connecting,
    Handshaking,
    Open,
}

struct Client {
    sock: TcpStream,
    phase: Phase,
    inbuf: Vec<u8>,
    out: Vec<u8>,
    out_pos: usize,
    /// Send times of the messages in flight, oldest first (raw echo answers in order).
    in_flight: VecDeque<(u64, Instant)>,
    seq: u64,
    writable_registered: bool,
}

const HANDSHAKE: &str = "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";

impl Client {
    fn connect(addr: SocketAddr) -> io::Result<Client> {
        let sock = TcpStream::connect(addr)?;
        Ok(Client {
            sock,
            phase: Phase::Connecting,
            inbuf: Vec::with_capacity(4096),
            out: Vec::with_capacity(4096),
            out_pos: 0,
            in_flight: VecDeque::with_capacity(64),
            seq: 0,
            writable_registered: true,
        })
    }

    fn queue_handshake(&mut self, addr: SocketAddr) {
        self.out
            .extend_from_slice(format!("GET / HTTP/1.1\r\nHost: {addr}\r\n{HANDSHAKE}").as_bytes());
    }

    /// Append one masked text frame (zero mask key: legal, and keeps the generator cheap).
    fn queue_message(&mut self, id: usize, json: bool, payload: &str) {
        self.seq += 1;
        let start = self.out.len();
        self.out
            .extend_from_slice(&[0x81, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        let body_start = self.out.len();
        if json {
            let _ = write!(
                self.out,
                "{{\"name\":\"echo\",\"payload\":\"{payload}\",\"headers\":{{\"message-id\":\"{id}-{}\"}}}}",
                self.seq
            );
        } else {
            self.out.extend_from_slice(payload.as_bytes());
        }
        let len = self.out.len() - body_start;
        // Rewrite the header for the real length; the header slot is 14 bytes, trim it.
        let mut hdr = [0u8; 14];
        hdr[0] = 0x81;
        let n = if len < 126 {
            hdr[1] = 0x80 | len as u8;
            2
        } else if len <= 0xFFFF {
            hdr[1] = 0x80 | 126;
            hdr[2..4].copy_from_slice(&(len as u16).to_be_bytes());
            4
        } else {
            hdr[1] = 0x80 | 127;
            hdr[2..10].copy_from_slice(&(len as u64).to_be_bytes());
            10
        } + 4;
        self.out.drain(start + n..body_start);
        self.out[start..start + n].copy_from_slice(&hdr[..n]);
        self.in_flight.push_back((self.seq, Instant::now()));
    }

    fn flush(&mut self) -> io::Result<bool> {
        while self.out_pos < self.out.len() {
            match self.sock.write(&self.out[self.out_pos..]) {
                Ok(n) => self.out_pos += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) => return Err(e),
            }
        }
        self.out.clear();
        self.out_pos = 0;
        Ok(true)
    }

    /// Read what is there; returns false on EOF.
    fn fill(&mut self) -> io::Result<bool> {
        let mut buf = [0u8; 16384];
        loop {
            match self.sock.read(&mut buf) {
                Ok(0) => return Ok(false),
                Ok(n) => self.inbuf.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(true),
                Err(e) => return Err(e),
            }
        }
    }

    /// Take one complete server frame off the input: (opcode, payload range).
    fn next_frame(&self, from: usize) -> Option<(u8, usize, usize)> {
        let b = &self.inbuf[from..];
        if b.len() < 2 {
            return None;
        }
        let (len, hl) = match b[1] & 0x7F {
            126 if b.len() >= 4 => (u16::from_be_bytes([b[2], b[3]]) as usize, 4),
            127 if b.len() >= 10 => (u64::from_be_bytes(b[2..10].try_into().ok()?) as usize, 10),
            126 | 127 => return None,
            n => (n as usize, 2),
        };
        if b.len() < hl + len {
            return None;
        }
        Some((b[0] & 0x0F, from + hl, from + hl + len))
    }
}

struct Recorder {
    hist: Histogram<u64>,
    count: u64,
    recording: bool,
}

fn rr(a: &Args) -> io::Result<()> {
    let mut poll = Poll::new()?;
    let mut events = Events::with_capacity(1024);
    let mut clients = Vec::with_capacity(a.conns);
    for i in 0..a.conns {
        let mut c = Client::connect(a.addr)?;
        poll.registry().register(
            &mut c.sock,
            Token(i),
            Interest::READABLE | Interest::WRITABLE,
        )?;
        clients.push(c);
    }
    let mut rec = Recorder {
        hist: Histogram::new_with_bounds(1, 60_000_000, 3).expect("histogram bounds"),
        count: 0,
        recording: false,
    };
    let start = Instant::now();
    let warm_end = start + a.warmup;
    let end = warm_end + a.duration;
    let mut cpu_start = None;
    let mut measure_start = start;
    let mut last_progress = start;
    let mut open = 0;
    while Instant::now() < end {
        poll.poll(&mut events, Some(Duration::from_millis(100)))?;
        let now = Instant::now();
        if !rec.recording && now >= warm_end {
            rec.recording = true;
            measure_start = now;
            cpu_start = a.pid.and_then(server_cpu_ns);
        }
        if now.duration_since(last_progress) >= Duration::from_secs(1) {
            last_progress = now;
            let el = now.duration_since(measure_start).as_secs_f64().max(1e-9);
            eprint!(
                "\r{} open, {} msgs, {:.0} msgs/s   ",
                open,
                rec.count,
                rec.count as f64 / el
            );
        }
        for ev in events.iter() {
            let i = ev.token().0;
            let c = &mut clients[i];
            if c.phase == Phase::Connecting && ev.is_writable() {
                c.phase = Phase::Handshaking;
                c.queue_handshake(a.addr);
            }
            if ev.is_readable() && !c.fill()? {
                return Err(io::Error::other(format!(
                    "connection {i} closed by the server"
                )));
            }
            if c.phase == Phase::Handshaking {
                if let Some(end) = find_head_end(&c.inbuf) {
                    if !c.inbuf.starts_with(b"HTTP/1.1 101") {
                        return Err(io::Error::other("handshake refused"));
                    }
                    c.inbuf.drain(..end);
                    c.phase = Phase::Open;
                    open += 1;
                    for _ in 0..a.pipeline {
                        c.queue_message(i, a.json, &a.payload);
                    }
                }
            }
            if c.phase == Phase::Open {
                let mut pos = 0;
                while let Some((op, s, e)) = c.next_frame(pos) {
                    pos = e;
                    if op != 1 && op != 2 {
                        continue;
                    }
                    let sent = if a.json {
                        let id = find_message_seq(&c.inbuf[s..e]);
                        let idx = c.in_flight.iter().position(|(seq, _)| Some(*seq) == id);
                        idx.and_then(|k| c.in_flight.remove(k))
                    } else {
                        c.in_flight.pop_front()
                    };
                    if let Some((_, t)) = sent {
                        if rec.recording {
                            let us = now.duration_since(t).as_micros() as u64;
                            rec.hist.saturating_record(us.max(1));
                            rec.count += 1;
                        }
                        c.queue_message(i, a.json, &a.payload);
                    }
                }
                c.inbuf.drain(..pos);
            }
            let done = c.flush()?;
            if done == c.writable_registered && c.phase != Phase::Connecting {
                let want = if done {
                    Interest::READABLE
                } else {
                    Interest::READABLE | Interest::WRITABLE
                };
                poll.registry().reregister(&mut c.sock, Token(i), want)?;
                c.writable_registered = !done;
            }
        }
    }
    eprintln!();
    let elapsed = Instant::now().duration_since(measure_start).as_secs_f64();
    let rate = rec.count as f64 / elapsed;
    let cpu_us = match (cpu_start, a.pid.and_then(server_cpu_ns)) {
        (Some(s), Some(e)) if rec.count > 0 => Some((e - s) as f64 / 1000.0 / rec.count as f64),
        _ => None,
    };
    let h = &rec.hist;
    println!(
        "{:<24} {:>6} {:>3} {:>12} {:>8} {:>8} {:>8} {:>8} {:>8} {:>10}",
        "label",
        "conns",
        "P",
        "msgs/s",
        "p50us",
        "p90us",
        "p99us",
        "p99.9us",
        "maxus",
        "cpu/msg us"
    );
    println!(
        "{:<24} {:>6} {:>3} {:>12.0} {:>8} {:>8} {:>8} {:>8} {:>8} {:>10}",
        a.label,
        a.conns,
        a.pipeline,
        rate,
        h.value_at_quantile(0.5),
        h.value_at_quantile(0.9),
        h.value_at_quantile(0.99),
        h.value_at_quantile(0.999),
        h.max(),
        cpu_us
            .map(|c| format!("{c:.2}"))
            .unwrap_or_else(|| "-".into())
    );
    println!(
        "{{\"scenario\":\"rr\",\"label\":\"{}\",\"mode\":\"{}\",\"conns\":{},\"pipeline\":{},\"msgs\":{},\"msgs_per_s\":{:.1},\"p50_us\":{},\"p90_us\":{},\"p99_us\":{},\"p999_us\":{},\"max_us\":{},\"server_cpu_us_per_msg\":{}}}",
        a.label,
        if a.json { "json" } else { "raw" },
        a.conns,
        a.pipeline,
        rec.count,
        rate,
        h.value_at_quantile(0.5),
        h.value_at_quantile(0.9),
        h.value_at_quantile(0.99),
        h.value_at_quantile(0.999),
        h.max(),
        cpu_us.map(|c| format!("{c:.3}")).unwrap_or_else(|| "null".into())
    );
    Ok(())
}

fn find_head_end(b: &[u8]) -> Option<usize> {
    b.windows(4).position(|w| w == b"\r\n\r\n").map(|p| p + 4)
}

/// The sequence number of a `"message-id":"<conn>-<seq>"` in a reply.
fn find_message_seq(body: &[u8]) -> Option<u64> {
    let key = b"\"message-id\":\"";
    let at = body.windows(key.len()).position(|w| w == key)? + key.len();
    let rest = &body[at..];
    let end = rest.iter().position(|&b| b == b'"')?;
    let id = std::str::from_utf8(&rest[..end]).ok()?;
    id.rsplit('-').next()?.parse().ok()
}

fn idle(a: &Args) -> io::Result<()> {
    let pid = a
        .pid
        .ok_or_else(|| io::Error::other("idle needs --pid of the server"))?;
    let rss_before =
        server_rss(pid).ok_or_else(|| io::Error::other("cannot read the server's RSS"))?;
    let mut poll = Poll::new()?;
    let mut events = Events::with_capacity(1024);
    let mut clients: Vec<Client> = Vec::with_capacity(a.count);
    let mut open = 0usize;
    let started = Instant::now();
    // Connect in waves so the listen backlog never overflows.
    let wave = 256;
    while open < a.count {
        let first = clients.len();
        let upto = (first + wave).min(a.count);
        for i in first..upto {
            let mut c = Client::connect(a.addr)?;
            poll.registry().register(
                &mut c.sock,
                Token(i),
                Interest::READABLE | Interest::WRITABLE,
            )?;
            clients.push(c);
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        while open < upto {
            if Instant::now() > deadline {
                return Err(io::Error::other(format!(
                    "only {open} of {upto} connections opened"
                )));
            }
            poll.poll(&mut events, Some(Duration::from_millis(100)))?;
            for ev in events.iter() {
                let i = ev.token().0;
                let c = &mut clients[i];
                if c.phase == Phase::Connecting && ev.is_writable() {
                    c.phase = Phase::Handshaking;
                    c.queue_handshake(a.addr);
                    c.flush()?;
                    poll.registry()
                        .reregister(&mut c.sock, Token(i), Interest::READABLE)?;
                }
                if ev.is_readable() && c.phase == Phase::Handshaking {
                    if !c.fill()? {
                        return Err(io::Error::other("server closed an idle connection"));
                    }
                    if let Some(end) = find_head_end(&c.inbuf) {
                        if !c.inbuf.starts_with(b"HTTP/1.1 101") {
                            return Err(io::Error::other("handshake refused"));
                        }
                        c.inbuf = Vec::new();
                        c.out = Vec::new();
                        c.phase = Phase::Open;
                        open += 1;
                        let _ = end;
                    }
                }
            }
        }
        eprint!("\r{open} connections open   ");
    }
    eprintln!();
    // Let the server settle (allocator, kernel) before reading its RSS.
    std::thread::sleep(Duration::from_secs(1));
    let rss_after =
        server_rss(pid).ok_or_else(|| io::Error::other("cannot read the server's RSS"))?;
    let per_conn = (rss_after as f64 - rss_before as f64) / a.count as f64;
    // A new connection is still served.
    let served = {
        let mut s = std::net::TcpStream::connect(a.addr)?;
        s.set_read_timeout(Some(Duration::from_secs(5)))?;
        s.write_all(format!("GET / HTTP/1.1\r\nHost: {}\r\n{HANDSHAKE}", a.addr).as_bytes())?;
        let mut head = Vec::new();
        let mut b = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") && s.read(&mut b)? == 1 {
            head.push(b[0]);
        }
        head.starts_with(b"HTTP/1.1 101")
    };
    println!(
        "{:<24} {:>8} {:>12} {:>12} {:>14} {:>8} {:>8}",
        "label", "conns", "rss before", "rss after", "bytes/conn", "served", "open s"
    );
    println!(
        "{:<24} {:>8} {:>12} {:>12} {:>14.0} {:>8} {:>8.1}",
        a.label,
        a.count,
        rss_before,
        rss_after,
        per_conn,
        served,
        started.elapsed().as_secs_f64()
    );
    println!(
        "{{\"scenario\":\"idle\",\"label\":\"{}\",\"conns\":{},\"rss_before\":{},\"rss_after\":{},\"bytes_per_conn\":{:.0},\"new_connection_served\":{}}}",
        a.label, a.count, rss_before, rss_after, per_conn, served
    );
    drop(clients);
    Ok(())
}
