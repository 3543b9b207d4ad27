//! wsbench: a load generator for any WebSocket echo server or Configurapi runner.
//!
//! One non-blocking mio client thread drives every connection; frames are encoded into
//! per-connection buffers that are reused, so the generator does no allocation per
//! message. Server CPU time is read from /proc/PID/task/*/schedstat (nanoseconds, all
//! threads) when `--pid` is given: CPU per message is the figure that compares servers
//! fairly when the generator shares a small machine with them.
//!
//! Scenarios (each prints a table and one JSON line on stdout, progress on stderr):
//!   rr       closed loop, C connections, P messages in flight each (raw echo or JSON)
//!   churn    connect, handshake, one round trip, close, again: connections/s
//!   idle     open N connections, report the server's RSS per connection, prove it still serves
//!   stream   request the runner's stream route again and again: MB/s and frames/s;
//!            --slow-reader reads at a throttled rate while sampling the server's RSS
//!   probe    one Configurapi echo round trip: exit 0 when the reply is a 200 envelope
//!   startup  spawn a server command, time until its port accepts a connection
//!   soak     N connections of mixed, verified traffic for a long time while sampling the
//!            server's RSS and open file descriptors (benches/soak.sh)

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};

const USAGE: &str = "\
wsbench: WebSocket load generator

USAGE:
    wsbench rr      --addr HOST:PORT [-c 64] [-p 1] [--mode raw|json] [--payload hello]
                    [--duration 10] [--warmup 2] [--pid PID] [--label NAME]
    wsbench churn   --addr HOST:PORT [-c 16] [--mode raw|json] [--duration 10] [--warmup 2]
                    [--pid PID] [--label NAME]
    wsbench idle    --addr HOST:PORT [-n 10000] --pid PID [--label NAME]
    wsbench stream  --addr HOST:PORT [-c 1] [--route stream] [--slow-reader]
                    [--read-rate 1MiB] [--duration 10] [--warmup 2] [--pid PID] [--label NAME]
    wsbench probe   --addr HOST:PORT
    wsbench startup --addr HOST:PORT [--label NAME] -- COMMAND [ARGS...]
    wsbench soak    --addr HOST:PORT --mgmt HOST:PORT --pid PID [-c 1000] [--duration 600]
                    [--warmup 30] [--sample 10s] [--think 50ms] [--slow-readers 4]
                    [--read-rate 1MiB] [--reply-timeout 10s] [--max-growth 4MiB] [--label NAME]

rr prints msgs/s, latency percentiles (us), and with --pid the server's CPU time per
message. churn prints connections/s and handshake latency. idle prints the server's RSS
growth per open connection. stream sends {\"name\":ROUTE,\"headers\":{\"message-id\":..}}
and counts chunk frames until the x-stream: done frame, then asks again; with
--slow-reader it reads at most --read-rate bytes/s and reports the server's peak RSS.
probe exits 0 when a Configurapi echo message gets a 200 envelope with its message-id.
startup prints the time from spawning COMMAND until HOST:PORT accepts a connection.
soak needs the routes of benches/soak.yaml. Its -c connections are split into roles:
5% churn (connect, whoami, close, again), 10% push, 10% management posts (through --mgmt),
15% small streams, --slow-readers streams read at --read-rate (shared), the rest JSON echo;
each waits --think (jittered) between requests and every reply is checked. Every --sample
it prints the server's RSS, open fds and the traffic so far. It exits 1 on any error; when
the RSS at the end exceeds the RSS after the warm-up by more than --max-growth (a size, or a
percentage such as 10%; the default, 4MiB, is what the reactor's buffer pool may keep after
a burst: 256 buffers of 16 KiB); when the fds grow by more than twice the churn connections
(each may hold a closing socket and its new one at the moment of a reading) plus 16; or when
the fds do not return to their starting count once every connection is closed.
";

struct Args {
    scenario: String,
    addr: SocketAddr,
    conns: Option<usize>,
    pipeline: usize,
    json: bool,
    payload: String,
    duration: Duration,
    warmup: Duration,
    pid: Option<u32>,
    count: usize,
    label: String,
    route: String,
    slow_reader: bool,
    read_rate: u64,
    command: Vec<String>,
    /// soak: the management API, the sampling period, the pause between requests, the
    /// slow stream readers, how long a reply may take, the RSS growth allowed.
    mgmt: Option<SocketAddr>,
    sample: Duration,
    think: Duration,
    slow_readers: usize,
    reply_timeout: Duration,
    max_growth: Growth,
}

/// How much the server's RSS may grow from the end of the warm-up to the end of a soak.
#[derive(Clone, Copy)]
enum Growth {
    Percent(f64),
    Bytes(u64),
}

impl Growth {
    fn limit(self, start: u64) -> u64 {
        match self {
            Growth::Percent(p) => (start as f64 * p / 100.0) as u64,
            Growth::Bytes(b) => b,
        }
    }

    fn describe(self) -> String {
        match self {
            Growth::Percent(p) => format!("{p}%"),
            Growth::Bytes(b) => format!("{b} bytes"),
        }
    }
}

fn parse_args() -> Result<Args, String> {
    let mut it = std::env::args().skip(1);
    let scenario = it
        .next()
        .ok_or("missing scenario (rr, churn, idle, stream, probe, startup, soak); see --help")?;
    if scenario == "--help" || scenario == "-h" {
        print!("{USAGE}");
        std::process::exit(0);
    }
    let mut a = Args {
        scenario,
        addr: "127.0.0.1:8000".parse().unwrap(),
        conns: None,
        pipeline: 1,
        json: false,
        payload: "hello".into(),
        duration: Duration::from_secs(10),
        warmup: Duration::from_secs(2),
        pid: None,
        count: 10_000,
        label: String::new(),
        route: "stream".into(),
        slow_reader: false,
        read_rate: 1 << 20,
        command: Vec::new(),
        mgmt: None,
        sample: Duration::from_secs(10),
        think: Duration::from_millis(50),
        slow_readers: 4,
        reply_timeout: Duration::from_secs(10),
        max_growth: Growth::Bytes(4 << 20),
    };
    let (mut duration, mut warmup) = (None, None);
    while let Some(flag) = it.next() {
        if flag == "--" {
            a.command = it.by_ref().collect();
            break;
        }
        let mut val = || it.next().ok_or(format!("{flag} needs a value"));
        let bad = |f: &str, v: &str| format!("{f}: bad value '{v}'");
        match flag.as_str() {
            "--addr" => {
                let v = val()?;
                a.addr = v.parse().map_err(|_| bad("--addr", &v))?
            }
            "-c" | "--conns" => {
                let v = val()?;
                a.conns = Some(v.parse().map_err(|_| bad("-c", &v))?)
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
                duration = Some(units::duration(&v).ok_or_else(|| bad("--duration", &v))?)
            }
            "--warmup" => {
                let v = val()?;
                warmup = Some(units::duration(&v).ok_or_else(|| bad("--warmup", &v))?)
            }
            "--pid" => {
                let v = val()?;
                a.pid = Some(v.parse().map_err(|_| bad("--pid", &v))?)
            }
            "--label" => a.label = val()?,
            "--route" => a.route = val()?,
            "--slow-reader" => a.slow_reader = true,
            "--read-rate" => {
                let v = val()?;
                a.read_rate = units::size(&v)
                    .filter(|&r| r > 0)
                    .ok_or_else(|| bad("--read-rate", &v))?
            }
            "--mgmt" => {
                let v = val()?;
                a.mgmt = Some(v.parse().map_err(|_| bad("--mgmt", &v))?)
            }
            "--sample" => {
                let v = val()?;
                a.sample = units::duration(&v)
                    .filter(|d| !d.is_zero())
                    .ok_or_else(|| bad("--sample", &v))?
            }
            "--think" => {
                let v = val()?;
                a.think = units::duration(&v).ok_or_else(|| bad("--think", &v))?
            }
            "--slow-readers" => {
                let v = val()?;
                a.slow_readers = v.parse().map_err(|_| bad("--slow-readers", &v))?
            }
            "--reply-timeout" => {
                let v = val()?;
                a.reply_timeout = units::duration(&v)
                    .filter(|d| !d.is_zero())
                    .ok_or_else(|| bad("--reply-timeout", &v))?
            }
            "--max-growth" => {
                let v = val()?;
                a.max_growth = match v.strip_suffix('%') {
                    Some(p) => Growth::Percent(
                        p.trim()
                            .parse()
                            .ok()
                            .filter(|p: &f64| *p >= 0.0)
                            .ok_or_else(|| bad("--max-growth", &v))?,
                    ),
                    None => Growth::Bytes(units::size(&v).ok_or_else(|| bad("--max-growth", &v))?),
                }
            }
            other => return Err(format!("unknown option '{other}'")),
        }
    }
    // A soak is long by default, with a warm-up long enough for the allocator and the
    // kernel's buffers to settle.
    let soak = a.scenario == "soak";
    a.duration = duration.unwrap_or(Duration::from_secs(if soak { 600 } else { 10 }));
    a.warmup = warmup.unwrap_or(Duration::from_secs(if soak { 30 } else { 2 }));
    if a.conns == Some(0) || a.pipeline == 0 {
        return Err("-c and -p must be at least 1".into());
    }
    if a.payload.contains(['"', '\\']) || a.payload.chars().any(char::is_control) {
        return Err("--payload must need no JSON escaping".into());
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
    raise_nofile_limit();
    let result = match args.scenario.as_str() {
        "rr" => rr(&args),
        "churn" => churn(&args),
        "idle" => idle(&args),
        "stream" => stream(&args),
        "probe" => probe(&args),
        "startup" => startup(&args),
        "soak" => soak(&args),
        other => Err(io::Error::other(format!("unknown scenario '{other}'"))),
    };
    if let Err(e) = result {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

/// Raise the soft RLIMIT_NOFILE to the hard limit: idle opens 10,000 sockets.
fn raise_nofile_limit() {
    // SAFETY: getrlimit/setrlimit only read and write the struct passed to them.
    unsafe {
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
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

/// CPU time the whole machine spent busy (all CPUs, /proc/stat), in nanoseconds.
fn machine_busy_ns() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/stat").ok()?;
    let line = s.lines().next()?.strip_prefix("cpu ")?;
    let f: Vec<u64> = line
        .split_whitespace()
        .filter_map(|x| x.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal (guest time is inside user).
    let busy = f.first()? + f.get(1)? + f.get(2)? + f.get(5)? + f.get(6)? + f.get(7)?;
    // SAFETY: sysconf only reads a configuration value.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    Some(busy * (1_000_000_000 / hz))
}

/// Resident set size of `pid` in bytes.
fn server_rss(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = s.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

fn opt_json(v: Option<f64>, decimals: usize) -> String {
    v.map(|x| format!("{x:.decimals$}"))
        .unwrap_or_else(|| "null".into())
}

fn opt_text(v: Option<f64>, decimals: usize) -> String {
    v.map(|x| format!("{x:.decimals$}"))
        .unwrap_or_else(|| "-".into())
}

/// A JSON string literal for a label (quotes and backslashes escaped).
fn json_str(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for ch in s.chars() {
        match ch {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("histogram bounds")
}

/// Measurement window: warm-up, then `duration`; the server's CPU is read at its start.
struct Window {
    start: Instant,
    warm_end: Instant,
    end: Instant,
    measure_start: Instant,
    recording: bool,
    cpu_start: Option<u64>,
    /// Machine-wide busy time and wsbench's own CPU time at the start of recording.
    busy_start: Option<u64>,
    self_start: Option<u64>,
    pid: Option<u32>,
    last_progress: Instant,
}

impl Window {
    fn new(a: &Args) -> Window {
        let start = Instant::now();
        Window {
            start,
            warm_end: start + a.warmup,
            end: start + a.warmup + a.duration,
            measure_start: start,
            recording: false,
            cpu_start: None,
            busy_start: None,
            self_start: None,
            pid: a.pid,
            last_progress: start,
        }
    }

    /// Start recording once the warm-up is over; true while the run should go on.
    fn tick(&mut self, now: Instant) -> bool {
        if !self.recording && now >= self.warm_end {
            self.recording = true;
            self.measure_start = now;
            self.cpu_start = self.pid.and_then(server_cpu_ns);
            self.busy_start = machine_busy_ns();
            self.self_start = server_cpu_ns(std::process::id());
        }
        now < self.end
    }

    /// True about once a second: time for a progress line.
    fn progress_due(&mut self, now: Instant) -> bool {
        if now.duration_since(self.last_progress) >= Duration::from_secs(1) {
            self.last_progress = now;
            true
        } else {
            false
        }
    }

    fn phase(&self) -> &'static str {
        if self.recording {
            "measure"
        } else {
            "warm-up"
        }
    }

    fn elapsed(&self, now: Instant) -> f64 {
        if self.recording {
            now.duration_since(self.measure_start)
                .as_secs_f64()
                .max(1e-9)
        } else {
            now.duration_since(self.start).as_secs_f64().max(1e-9)
        }
    }

    /// Cores' worth of CPU that neither the server nor wsbench used while recording:
    /// other work on the machine, which disturbs the figures. Needs --pid.
    ///
    /// Not clamped at 0: /proc/stat counts in clock ticks and schedstat in nanoseconds,
    /// so on a quiet machine the difference can come out slightly negative. A clamp made
    /// every quiet round tie at 0, and a report choosing rounds by it then chose blindly.
    fn other_cores(&self, now: Instant) -> Option<f64> {
        let busy = machine_busy_ns()?.checked_sub(self.busy_start?)?;
        let own = server_cpu_ns(std::process::id())?.checked_sub(self.self_start?)?;
        let server = self.cpu_used_ns()?;
        let other = busy as f64 - (own + server) as f64;
        Some(
            other
                / 1e9
                / now
                    .duration_since(self.measure_start)
                    .as_secs_f64()
                    .max(1e-9),
        )
    }

    fn cpu_used_ns(&self) -> Option<u64> {
        match (self.cpu_start, self.pid.and_then(server_cpu_ns)) {
            (Some(s), Some(e)) => Some(e.saturating_sub(s)),
            _ => None,
        }
    }
}

#[derive(PartialEq, Clone, Copy)]
enum Phase {
    Connecting,
    Handshaking,
    Open,
    /// Churn: our close frame is sent; waiting for the server's close and its FIN.
    Closing,
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

/// A masked close frame with code 1000 (zero mask key).
const CLOSE_1000: [u8; 8] = [0x88, 0x82, 0, 0, 0, 0, 0x03, 0xE8];

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

    /// Replace the socket with a new connection, keeping the buffers.
    fn reconnect(&mut self, addr: SocketAddr) -> io::Result<()> {
        self.sock = TcpStream::connect(addr)?;
        self.phase = Phase::Connecting;
        self.inbuf.clear();
        self.out.clear();
        self.out_pos = 0;
        self.in_flight.clear();
        self.writable_registered = true;
        Ok(())
    }

    /// After a writable event while connecting: true once the connection is made.
    fn connected(&self) -> io::Result<bool> {
        if let Some(e) = self.sock.take_error()? {
            return Err(e);
        }
        match self.sock.peer_addr() {
            Ok(_) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotConnected => Ok(false),
            Err(e) => Err(e),
        }
    }

    fn queue_handshake(&mut self, addr: SocketAddr) {
        self.queue_handshake_to(addr, "/");
    }

    /// The upgrade request for `path` (which may carry a query).
    fn queue_handshake_to(&mut self, addr: SocketAddr, path: &str) {
        let _ = write!(
            self.out,
            "GET {path} HTTP/1.1\r\nHost: {addr}\r\n{HANDSHAKE}"
        );
    }

    /// Append one masked text frame (zero mask key: legal, and keeps the generator cheap)
    /// whose payload `body` writes; no allocation once `out` has grown.
    fn queue_frame(&mut self, body: impl FnOnce(&mut Vec<u8>)) {
        self.queue_frame_op(0x81, body);
    }

    /// As `queue_frame`, with the first header byte (FIN and opcode) given.
    fn queue_frame_op(&mut self, first: u8, body: impl FnOnce(&mut Vec<u8>)) {
        let start = self.out.len();
        self.out.extend_from_slice(&[0u8; 14]);
        let body_start = self.out.len();
        body(&mut self.out);
        let len = self.out.len() - body_start;
        // Rewrite the header for the real length; the header slot is 14 bytes, trim it.
        let mut hdr = [0u8; 14];
        hdr[0] = first;
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
    }

    /// Queue one echo message (raw payload or Configurapi envelope) and note its send time.
    fn queue_message(&mut self, id: usize, json: bool, payload: &str) {
        self.seq += 1;
        let seq = self.seq;
        self.queue_frame(|out| {
            if json {
                let _ = write!(
                    out,
                    "{{\"name\":\"echo\",\"payload\":\"{payload}\",\"headers\":{{\"message-id\":\"{id}-{seq}\"}}}}"
                );
            } else {
                out.extend_from_slice(payload.as_bytes());
            }
        });
        self.in_flight.push_back((seq, Instant::now()));
    }

    fn flush(&mut self) -> io::Result<bool> {
        while self.out_pos < self.out.len() {
            match self.sock.write(&self.out[self.out_pos..]) {
                Ok(n) => self.out_pos += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
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
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// Read at most `max` bytes into the input; (bytes read, EOF seen).
    fn read_some(&mut self, max: usize) -> io::Result<(usize, bool)> {
        let mut buf = [0u8; 65536];
        let want = max.min(buf.len());
        if want == 0 {
            return Ok((0, false));
        }
        loop {
            match self.sock.read(&mut buf[..want]) {
                Ok(0) => return Ok((0, true)),
                Ok(n) => {
                    self.inbuf.extend_from_slice(&buf[..n]);
                    return Ok((n, false));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok((0, false)),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// One complete server frame in the input from `from`: (opcode, payload range).
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

    /// Register WRITABLE interest only while output is pending.
    fn update_interest(&mut self, poll: &Poll, token: Token, flushed: bool) -> io::Result<()> {
        if flushed == self.writable_registered && self.phase != Phase::Connecting {
            let want = if flushed {
                Interest::READABLE
            } else {
                Interest::READABLE | Interest::WRITABLE
            };
            poll.registry().reregister(&mut self.sock, token, want)?;
            self.writable_registered = !flushed;
        }
        Ok(())
    }

    /// The 101 answer is complete: drop the head. Err when the server refused.
    fn finish_handshake(&mut self) -> io::Result<bool> {
        let Some(end) = find_head_end(&self.inbuf) else {
            return Ok(false);
        };
        if !self.inbuf.starts_with(b"HTTP/1.1 101") {
            let line = self.inbuf.split(|&b| b == b'\r').next().unwrap_or_default();
            return Err(io::Error::other(format!(
                "handshake refused: {}",
                String::from_utf8_lossy(line)
            )));
        }
        self.inbuf.drain(..end);
        self.phase = Phase::Open;
        Ok(true)
    }
}

fn find_head_end(b: &[u8]) -> Option<usize> {
    b.windows(4).position(|w| w == b"\r\n\r\n").map(|p| p + 4)
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// The sequence number of a `"message-id":"<conn>-<seq>"` in a reply.
fn find_message_seq(body: &[u8]) -> Option<u64> {
    let key = b"\"message-id\":\"";
    let at = find(body, key)? + key.len();
    let rest = &body[at..];
    let end = rest.iter().position(|&b| b == b'"')?;
    let id = std::str::from_utf8(&rest[..end]).ok()?;
    id.rsplit('-').next()?.parse().ok()
}

/// A Configurapi reply is a success: its envelope starts with status 200 (both the
/// Rust and the Node runner write statusCode first).
fn is_ok_envelope(body: &[u8]) -> bool {
    body.starts_with(b"{\"statusCode\":200")
}

fn rr(a: &Args) -> io::Result<()> {
    let conns = a.conns.unwrap_or(64);
    let mut poll = Poll::new()?;
    let mut events = Events::with_capacity(1024);
    let mut clients = Vec::with_capacity(conns);
    for i in 0..conns {
        let mut c = Client::connect(a.addr)?;
        poll.registry().register(
            &mut c.sock,
            Token(i),
            Interest::READABLE | Interest::WRITABLE,
        )?;
        clients.push(c);
    }
    let mut hist = new_histogram();
    let mut count = 0u64;
    let mut errors = 0u64;
    let mut win = Window::new(a);
    let mut open = 0;
    loop {
        poll.poll(&mut events, Some(Duration::from_millis(100)))?;
        let now = Instant::now();
        if !win.tick(now) {
            break;
        }
        if win.progress_due(now) {
            eprint!(
                "\r[{}] {open}/{conns} open, {count} msgs, {:.0} msgs/s   ",
                win.phase(),
                count as f64 / win.elapsed(now)
            );
        }
        for ev in events.iter() {
            let i = ev.token().0;
            let c = &mut clients[i];
            if c.phase == Phase::Connecting && ev.is_writable() {
                if !c.connected()? {
                    continue;
                }
                c.phase = Phase::Handshaking;
                c.queue_handshake(a.addr);
            }
            if ev.is_readable() && !c.fill()? {
                return Err(io::Error::other(format!(
                    "connection {i} closed by the server"
                )));
            }
            if c.phase == Phase::Handshaking && c.finish_handshake()? {
                open += 1;
                for _ in 0..a.pipeline {
                    c.queue_message(i, a.json, &a.payload);
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
                        let body = &c.inbuf[s..e];
                        if !is_ok_envelope(body) {
                            errors += 1;
                        }
                        let id = find_message_seq(body);
                        let idx = c.in_flight.iter().position(|(seq, _)| Some(*seq) == id);
                        idx.and_then(|k| c.in_flight.remove(k))
                    } else {
                        c.in_flight.pop_front()
                    };
                    if let Some((_, t)) = sent {
                        if win.recording {
                            let us = now.duration_since(t).as_micros() as u64;
                            hist.saturating_record(us.max(1));
                            count += 1;
                        }
                        c.queue_message(i, a.json, &a.payload);
                    }
                }
                c.inbuf.drain(..pos);
            }
            let flushed = c.flush()?;
            c.update_interest(&poll, Token(i), flushed)?;
        }
    }
    eprintln!();
    let elapsed = win.elapsed(Instant::now());
    let other = win.other_cores(Instant::now());
    if let Some(o) = other {
        eprintln!("other work on the machine while measuring: {o:.2} cores");
    }
    let rate = count as f64 / elapsed;
    let cpu_us = win
        .cpu_used_ns()
        .filter(|_| count > 0)
        .map(|ns| ns as f64 / 1000.0 / count as f64);
    let h = &hist;
    println!(
        "{:<24} {:>6} {:>3} {:>12} {:>8} {:>8} {:>8} {:>8} {:>8} {:>10} {:>7}",
        "label",
        "conns",
        "P",
        "msgs/s",
        "p50us",
        "p90us",
        "p99us",
        "p99.9us",
        "maxus",
        "cpu/msg us",
        "errors"
    );
    println!(
        "{:<24} {:>6} {:>3} {:>12.0} {:>8} {:>8} {:>8} {:>8} {:>8} {:>10} {:>7}",
        a.label,
        conns,
        a.pipeline,
        rate,
        h.value_at_quantile(0.5),
        h.value_at_quantile(0.9),
        h.value_at_quantile(0.99),
        h.value_at_quantile(0.999),
        h.max(),
        opt_text(cpu_us, 2),
        errors
    );
    println!(
        "{{\"scenario\":\"rr\",\"label\":{},\"mode\":\"{}\",\"conns\":{},\"pipeline\":{},\"msgs\":{},\"msgs_per_s\":{:.1},\"p50_us\":{},\"p90_us\":{},\"p99_us\":{},\"p999_us\":{},\"max_us\":{},\"server_cpu_us_per_msg\":{},\"errors\":{},\"other_cpu_cores\":{}}}",
        json_str(&a.label),
        if a.json { "json" } else { "raw" },
        conns,
        a.pipeline,
        count,
        rate,
        h.value_at_quantile(0.5),
        h.value_at_quantile(0.9),
        h.value_at_quantile(0.99),
        h.value_at_quantile(0.999),
        h.max(),
        opt_json(cpu_us, 3),
        errors,
        opt_json(other, 3)
    );
    Ok(())
}

/// Tokens carry a slot and a generation, so an event of a socket that a slot has since
/// replaced is recognised and ignored.
fn churn_token(slot: usize, gen: u32) -> Token {
    Token(slot | ((gen as usize) << 32))
}

struct ChurnSlot {
    c: Client,
    gen: u32,
    started: Instant,
    /// When the server's close frame arrived (waiting for its FIN).
    closing_since: Option<Instant>,
}

fn churn(a: &Args) -> io::Result<()> {
    let conns = a.conns.unwrap_or(16);
    let mut poll = Poll::new()?;
    let mut events = Events::with_capacity(1024);
    let mut slots = Vec::with_capacity(conns);
    for i in 0..conns {
        let mut c = Client::connect(a.addr)?;
        poll.registry().register(
            &mut c.sock,
            churn_token(i, 0),
            Interest::READABLE | Interest::WRITABLE,
        )?;
        slots.push(ChurnSlot {
            c,
            gen: 0,
            started: Instant::now(),
            closing_since: None,
        });
    }
    let mut hs_hist = new_histogram();
    let mut cycle_hist = new_histogram();
    let mut cycles = 0u64;
    let mut failures = 0u64;
    let mut unclean = 0u64;
    let mut win = Window::new(a);
    let mut last_sweep = Instant::now();
    // Start a new connection in `slot` (the old socket is dropped: closed).
    let restart = |slot: &mut ChurnSlot, i: usize, poll: &Poll| -> io::Result<()> {
        let _ = poll.registry().deregister(&mut slot.c.sock);
        slot.gen = slot.gen.wrapping_add(1);
        slot.c.reconnect(a.addr)?;
        slot.started = Instant::now();
        slot.closing_since = None;
        poll.registry().register(
            &mut slot.c.sock,
            churn_token(i, slot.gen),
            Interest::READABLE | Interest::WRITABLE,
        )
    };
    loop {
        poll.poll(&mut events, Some(Duration::from_millis(100)))?;
        let now = Instant::now();
        if !win.tick(now) {
            break;
        }
        if win.progress_due(now) {
            eprint!(
                "\r[{}] {cycles} connections, {:.0} conn/s, {failures} failed   ",
                win.phase(),
                cycles as f64 / win.elapsed(now)
            );
        }
        for ev in events.iter() {
            let i = ev.token().0 & 0xFFFF_FFFF;
            let gen = (ev.token().0 >> 32) as u32;
            let slot = &mut slots[i];
            if slot.gen != gen {
                continue;
            }
            let token = churn_token(i, gen);
            let step = (|| -> io::Result<bool> {
                let c = &mut slot.c;
                if c.phase == Phase::Connecting {
                    if !ev.is_writable() || !c.connected()? {
                        return Ok(false);
                    }
                    c.phase = Phase::Handshaking;
                    c.queue_handshake(a.addr);
                }
                let eof = ev.is_readable() && !c.fill()?;
                if c.phase == Phase::Handshaking && c.finish_handshake()? {
                    if win.recording {
                        let us = now.duration_since(slot.started).as_micros() as u64;
                        hs_hist.saturating_record(us.max(1));
                    }
                    c.queue_message(i, a.json, &a.payload);
                }
                if c.phase == Phase::Open {
                    if let Some((op, s, e)) = c.next_frame(0) {
                        if (op == 1 || op == 2) && (!a.json || is_ok_envelope(&c.inbuf[s..e])) {
                            c.inbuf.drain(..e);
                            c.out.extend_from_slice(&CLOSE_1000);
                            c.phase = Phase::Closing;
                        } else {
                            return Err(io::Error::other("unexpected reply"));
                        }
                    }
                }
                if c.phase == Phase::Closing && slot.closing_since.is_none() {
                    let mut pos = 0;
                    while let Some((op, _, e)) = c.next_frame(pos) {
                        pos = e;
                        if op == 8 {
                            slot.closing_since = Some(now);
                        }
                    }
                    c.inbuf.drain(..pos);
                }
                if eof {
                    if c.phase == Phase::Closing && slot.closing_since.is_some() {
                        return Ok(true);
                    }
                    return Err(io::Error::other("closed early"));
                }
                let flushed = c.flush()?;
                c.update_interest(&poll, token, flushed)?;
                Ok(false)
            })();
            match step {
                Ok(false) => {}
                Ok(true) => {
                    if win.recording {
                        cycles += 1;
                        let us = now.duration_since(slot.started).as_micros() as u64;
                        cycle_hist.saturating_record(us.max(1));
                    }
                    restart(slot, i, &poll)?;
                }
                Err(_) => {
                    if win.recording {
                        failures += 1;
                    }
                    restart(slot, i, &poll)?;
                }
            }
        }
        // A server that never sends its FIN, or a connection stuck for 5 s, is restarted.
        if now.duration_since(last_sweep) >= Duration::from_millis(100) {
            last_sweep = now;
            for (i, slot) in slots.iter_mut().enumerate() {
                let stuck_closing = slot
                    .closing_since
                    .is_some_and(|t| now.duration_since(t) > Duration::from_secs(1));
                if stuck_closing {
                    if win.recording {
                        cycles += 1;
                        unclean += 1;
                    }
                    restart(slot, i, &poll)?;
                } else if now.duration_since(slot.started) > Duration::from_secs(5) {
                    if win.recording {
                        failures += 1;
                    }
                    restart(slot, i, &poll)?;
                }
            }
        }
    }
    eprintln!();
    let elapsed = win.elapsed(Instant::now());
    let other = win.other_cores(Instant::now());
    if let Some(o) = other {
        eprintln!("other work on the machine while measuring: {o:.2} cores");
    }
    let rate = cycles as f64 / elapsed;
    let cpu_us = win
        .cpu_used_ns()
        .filter(|_| cycles > 0)
        .map(|ns| ns as f64 / 1000.0 / cycles as f64);
    println!(
        "{:<24} {:>6} {:>10} {:>9} {:>9} {:>9} {:>9} {:>11} {:>8} {:>8}",
        "label",
        "conns",
        "conn/s",
        "hs p50us",
        "hs p99us",
        "hs maxus",
        "cyc p50us",
        "cpu/conn us",
        "failed",
        "no FIN"
    );
    println!(
        "{:<24} {:>6} {:>10.0} {:>9} {:>9} {:>9} {:>9} {:>11} {:>8} {:>8}",
        a.label,
        conns,
        rate,
        hs_hist.value_at_quantile(0.5),
        hs_hist.value_at_quantile(0.99),
        hs_hist.max(),
        cycle_hist.value_at_quantile(0.5),
        opt_text(cpu_us, 1),
        failures,
        unclean
    );
    println!(
        "{{\"scenario\":\"churn\",\"label\":{},\"mode\":\"{}\",\"conns\":{},\"connections\":{},\"conns_per_s\":{:.1},\"handshake_p50_us\":{},\"handshake_p90_us\":{},\"handshake_p99_us\":{},\"handshake_max_us\":{},\"cycle_p50_us\":{},\"cycle_p99_us\":{},\"server_cpu_us_per_conn\":{},\"failures\":{},\"no_fin\":{},\"other_cpu_cores\":{}}}",
        json_str(&a.label),
        if a.json { "json" } else { "raw" },
        conns,
        cycles,
        rate,
        hs_hist.value_at_quantile(0.5),
        hs_hist.value_at_quantile(0.9),
        hs_hist.value_at_quantile(0.99),
        hs_hist.max(),
        cycle_hist.value_at_quantile(0.5),
        cycle_hist.value_at_quantile(0.99),
        opt_json(cpu_us, 2),
        failures,
        unclean,
        opt_json(other, 3)
    );
    Ok(())
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
                    if !c.connected()? {
                        continue;
                    }
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
                    if c.finish_handshake()? {
                        c.inbuf = Vec::new();
                        c.out = Vec::new();
                        c.in_flight = VecDeque::new();
                        open += 1;
                    }
                }
            }
        }
        eprint!("\r{open}/{} connections open   ", a.count);
    }
    eprintln!();
    // Let the server settle (allocator, kernel) before reading its RSS.
    std::thread::sleep(Duration::from_secs(1));
    let rss_after =
        server_rss(pid).ok_or_else(|| io::Error::other("cannot read the server's RSS"))?;
    let per_conn = (rss_after as f64 - rss_before as f64) / a.count as f64;
    // A new connection is still served: it completes the handshake.
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
        "{{\"scenario\":\"idle\",\"label\":{},\"conns\":{},\"rss_before\":{},\"rss_after\":{},\"bytes_per_conn\":{:.0},\"new_connection_served\":{},\"open_s\":{:.2}}}",
        json_str(&a.label),
        a.count,
        rss_before,
        rss_after,
        per_conn,
        served,
        started.elapsed().as_secs_f64()
    );
    drop(clients);
    Ok(())
}

/// Per-connection state of the stream scenario.
struct StreamConn {
    c: Client,
    /// When the current stream was requested.
    asked: Instant,
}

fn stream(a: &Args) -> io::Result<()> {
    let conns = a.conns.unwrap_or(1);
    let mut poll = Poll::new()?;
    let mut events = Events::with_capacity(1024);
    let mut sc = Vec::with_capacity(conns);
    for i in 0..conns {
        let mut c = Client::connect(a.addr)?;
        poll.registry().register(
            &mut c.sock,
            Token(i),
            Interest::READABLE | Interest::WRITABLE,
        )?;
        sc.push(StreamConn {
            c,
            asked: Instant::now(),
        });
    }
    let route = a.route.as_str();
    let ask = |s: &mut StreamConn, i: usize| {
        s.c.seq += 1;
        let seq = s.c.seq;
        s.c.queue_frame(|out| {
            let _ = write!(
                out,
                "{{\"name\":\"{route}\",\"headers\":{{\"message-id\":\"{i}-{seq}\"}}}}"
            );
        });
        s.asked = Instant::now();
    };
    let rss_start = a.pid.and_then(server_rss);
    let mut rss_peak = rss_start.unwrap_or(0);
    let mut last_rss = Instant::now();
    let mut stream_hist = new_histogram();
    let (mut frames, mut bytes, mut streams, mut errors) = (0u64, 0u64, 0u64, 0u64);
    let mut win = Window::new(a);
    let mut last_read = Instant::now();
    let mut open = 0;
    // Handle every whole frame in the input of connection `i`.
    let consume = |s: &mut StreamConn,
                   i: usize,
                   recording: bool,
                   frames: &mut u64,
                   bytes: &mut u64,
                   streams: &mut u64,
                   errors: &mut u64,
                   hist: &mut Histogram<u64>| {
        let mut pos = 0;
        let mut done = false;
        while let Some((op, st, e)) = s.c.next_frame(pos) {
            pos = e;
            if op != 1 && op != 2 {
                continue;
            }
            let body = &s.c.inbuf[st..e];
            // One scan that stops at the header (the envelope puts headers before the
            // body), then one byte tells chunk from done.
            const KEY: &[u8] = b"\"x-stream\":\"";
            let kind = find(body, KEY).and_then(|at| body.get(at + KEY.len()).copied());
            if kind == Some(b'd') {
                if !is_ok_envelope(body) {
                    *errors += 1;
                }
                done = true;
            } else if kind == Some(b'c') {
                if recording {
                    *frames += 1;
                    *bytes += (e - st) as u64;
                }
            } else {
                // Not a stream frame: the route is missing or failed.
                *errors += 1;
                done = true;
            }
            if done {
                if recording {
                    *streams += 1;
                    let us = s.asked.elapsed().as_micros() as u64;
                    hist.saturating_record(us.max(1));
                }
                break;
            }
        }
        s.c.inbuf.drain(..pos);
        if done {
            ask(s, i);
        }
    };
    loop {
        let timeout = if a.slow_reader { 10 } else { 100 };
        poll.poll(&mut events, Some(Duration::from_millis(timeout)))?;
        let now = Instant::now();
        if !win.tick(now) {
            break;
        }
        if let Some(pid) = a.pid {
            if now.duration_since(last_rss) >= Duration::from_millis(100) {
                last_rss = now;
                if let Some(r) = server_rss(pid) {
                    rss_peak = rss_peak.max(r);
                }
            }
        }
        if win.progress_due(now) {
            let el = win.elapsed(now);
            eprint!(
                "\r[{}] {open}/{conns} open, {streams} streams, {frames} frames, {:.0} frames/s, {:.1} MB/s, server RSS peak {:.1} MB   ",
                win.phase(),
                frames as f64 / el,
                bytes as f64 / el / 1e6,
                rss_peak as f64 / 1e6
            );
        }
        for ev in events.iter() {
            let i = ev.token().0;
            let s = &mut sc[i];
            if s.c.phase == Phase::Connecting && ev.is_writable() {
                if !s.c.connected()? {
                    continue;
                }
                s.c.phase = Phase::Handshaking;
                s.c.queue_handshake(a.addr);
            }
            if s.c.phase == Phase::Handshaking && ev.is_readable() {
                if !s.c.fill()? {
                    return Err(io::Error::other("closed during the handshake"));
                }
                if s.c.finish_handshake()? {
                    open += 1;
                    ask(s, i);
                }
            }
            if s.c.phase == Phase::Open && ev.is_readable() && !a.slow_reader {
                // Read and consume in steps so the input never holds more than ~64 KiB
                // beyond one frame.
                loop {
                    let (n, eof) = s.c.read_some(65536)?;
                    if eof {
                        return Err(io::Error::other(format!(
                            "connection {i} closed by the server"
                        )));
                    }
                    if n == 0 {
                        break;
                    }
                    consume(
                        s,
                        i,
                        win.recording,
                        &mut frames,
                        &mut bytes,
                        &mut streams,
                        &mut errors,
                        &mut stream_hist,
                    );
                }
            }
            let flushed = s.c.flush()?;
            s.c.update_interest(&poll, Token(i), flushed)?;
        }
        if a.slow_reader {
            // Reading is paced, not event driven: each tick reads the budget that has
            // accrued, spread over the connections.
            let dt = now.duration_since(last_read).as_secs_f64();
            last_read = now;
            let budget = ((a.read_rate as f64 * dt) as usize / conns).max(1);
            for (i, s) in sc.iter_mut().enumerate() {
                if s.c.phase != Phase::Open {
                    continue;
                }
                let mut left = budget;
                while left > 0 {
                    let (n, eof) = s.c.read_some(left)?;
                    if eof {
                        return Err(io::Error::other(format!(
                            "connection {i} closed by the server"
                        )));
                    }
                    if n == 0 {
                        break;
                    }
                    left -= n;
                    consume(
                        s,
                        i,
                        win.recording,
                        &mut frames,
                        &mut bytes,
                        &mut streams,
                        &mut errors,
                        &mut stream_hist,
                    );
                }
                let flushed = s.c.flush()?;
                s.c.update_interest(&poll, Token(i), flushed)?;
            }
        }
    }
    eprintln!();
    let elapsed = win.elapsed(Instant::now());
    let other = win.other_cores(Instant::now());
    if let Some(o) = other {
        eprintln!("other work on the machine while measuring: {o:.2} cores");
    }
    if frames == 0 {
        return Err(io::Error::other(format!(
            "no stream chunk frame arrived while measuring ({open}/{conns} connections open, \
             {errors} non-stream replies): does the server have a '{route}' route?"
        )));
    }
    let fps = frames as f64 / elapsed;
    let mbps = bytes as f64 / elapsed / 1e6;
    let cpu_ms_per_mb = win
        .cpu_used_ns()
        .filter(|_| bytes > 0)
        .map(|ns| ns as f64 / 1e6 / (bytes as f64 / 1e6));
    let growth = rss_start.map(|s| rss_peak.saturating_sub(s) as f64);
    println!(
        "{:<24} {:>5} {:>5} {:>10} {:>9} {:>8} {:>12} {:>14} {:>14} {:>7}",
        "label",
        "conns",
        "slow",
        "frames/s",
        "MB/s",
        "streams",
        "stream p50us",
        "cpu ms/MB",
        "RSS peak MB",
        "errors"
    );
    println!(
        "{:<24} {:>5} {:>5} {:>10.0} {:>9.2} {:>8} {:>12} {:>14} {:>14} {:>7}",
        a.label,
        conns,
        a.slow_reader,
        fps,
        mbps,
        streams,
        stream_hist.value_at_quantile(0.5),
        opt_text(cpu_ms_per_mb, 2),
        if a.pid.is_some() {
            format!("{:.1}", rss_peak as f64 / 1e6)
        } else {
            "-".into()
        },
        errors
    );
    println!(
        "{{\"scenario\":\"stream\",\"label\":{},\"route\":{},\"conns\":{},\"slow_reader\":{},\"read_rate\":{},\"frames\":{},\"frames_per_s\":{:.1},\"mb_per_s\":{:.3},\"streams\":{},\"stream_p50_us\":{},\"server_cpu_ms_per_mb\":{},\"rss_start\":{},\"rss_peak\":{},\"rss_growth\":{},\"errors\":{},\"other_cpu_cores\":{}}}",
        json_str(&a.label),
        json_str(route),
        conns,
        a.slow_reader,
        if a.slow_reader { a.read_rate.to_string() } else { "null".into() },
        frames,
        fps,
        mbps,
        streams,
        stream_hist.value_at_quantile(0.5),
        opt_json(cpu_ms_per_mb, 3),
        opt_json(rss_start.map(|r| r as f64), 0),
        if a.pid.is_some() { rss_peak.to_string() } else { "null".into() },
        opt_json(growth, 0),
        errors,
        opt_json(other, 3)
    );
    Ok(())
}

/// One Configurapi echo round trip over a blocking socket.
fn probe(a: &Args) -> io::Result<()> {
    let fail = |why: String| -> io::Result<()> {
        println!(
            "{{\"scenario\":\"probe\",\"ok\":false,\"reason\":{}}}",
            json_str(&why)
        );
        Err(io::Error::other(why))
    };
    let mut s = std::net::TcpStream::connect_timeout(&a.addr, Duration::from_secs(2))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    s.write_all(format!("GET / HTTP/1.1\r\nHost: {}\r\n{HANDSHAKE}", a.addr).as_bytes())?;
    let mut c = Client {
        sock: TcpStream::from_std(s.try_clone()?),
        phase: Phase::Handshaking,
        inbuf: Vec::new(),
        out: Vec::new(),
        out_pos: 0,
        in_flight: VecDeque::new(),
        seq: 0,
        writable_registered: false,
    };
    let mut buf = [0u8; 4096];
    let read_more = |s: &mut std::net::TcpStream, c: &mut Client, buf: &mut [u8]| {
        let n = s.read(buf)?;
        if n == 0 {
            return Err(io::Error::other("the server closed the connection"));
        }
        c.inbuf.extend_from_slice(&buf[..n]);
        Ok(())
    };
    while !c.finish_handshake()? {
        read_more(&mut s, &mut c, &mut buf)?;
    }
    c.queue_message(0, true, &a.payload);
    s.write_all(&c.out)?;
    let frame = loop {
        if let Some((op, st, e)) = c.next_frame(0) {
            break (op, c.inbuf[st..e].to_vec());
        }
        read_more(&mut s, &mut c, &mut buf)?;
    };
    let body = String::from_utf8_lossy(&frame.1).into_owned();
    let expect_body = format!("\"body\":\"{}\"", a.payload);
    if frame.0 != 1 {
        return fail(format!("reply opcode {} is not text", frame.0));
    }
    if !is_ok_envelope(&frame.1)
        || !body.contains("\"message-id\":\"0-1\"")
        || !body.contains(&expect_body)
    {
        return fail(format!("not a Configurapi echo envelope: {body}"));
    }
    println!("{{\"scenario\":\"probe\",\"ok\":true}}");
    Ok(())
}

/// Spawn a server and time how long until its port accepts a connection.
fn startup(a: &Args) -> io::Result<()> {
    let (prog, rest) = a
        .command
        .split_first()
        .ok_or_else(|| io::Error::other("startup needs -- COMMAND [ARGS...]"))?;
    if std::net::TcpStream::connect(a.addr).is_ok() {
        return Err(io::Error::other(format!("{} is already in use", a.addr)));
    }
    let t0 = Instant::now();
    let mut child = std::process::Command::new(prog)
        .args(rest)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()?;
    let result = loop {
        if std::net::TcpStream::connect(a.addr).is_ok() {
            break Ok(t0.elapsed());
        }
        if let Some(status) = child.try_wait()? {
            break Err(io::Error::other(format!("the server exited: {status}")));
        }
        if t0.elapsed() > Duration::from_secs(30) {
            break Err(io::Error::other("the server did not listen within 30 s"));
        }
        std::thread::sleep(Duration::from_micros(200));
    };
    let _ = child.kill();
    let _ = child.wait();
    let ms = result?.as_secs_f64() * 1e3;
    println!("{:<24} {:>14}", "label", "startup ms");
    println!("{:<24} {:>14.2}", a.label, ms);
    println!(
        "{{\"scenario\":\"startup\",\"label\":{},\"startup_ms\":{:.3}}}",
        json_str(&a.label),
        ms
    );
    Ok(())
}

/// The streams of benches/soak.yaml, which the soak checks: (chunks, bytes per chunk).
const SOAK_STREAM: (u64, usize) = (5, 32);
const SOAK_SLOW_STREAM: (u64, usize) = (64, 16384);
/// Connections connecting or handshaking at once, so the listen backlog never overflows.
const SOAK_OPENING: usize = 128;
/// Errors printed as they happen (all are counted).
const SOAK_ERRORS_SHOWN: u64 = 20;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Role {
    Echo,
    Stream,
    Slow,
    Churn,
    Push,
    Mgmt,
}

const ROLES: [Role; 6] = [
    Role::Echo,
    Role::Stream,
    Role::Slow,
    Role::Churn,
    Role::Push,
    Role::Mgmt,
];

impl Role {
    fn name(self) -> &'static str {
        match self {
            Role::Echo => "echo",
            Role::Stream => "stream",
            Role::Slow => "slow",
            Role::Churn => "churn",
            Role::Push => "push",
            Role::Mgmt => "mgmt",
        }
    }
}

/// What a soak connection is waiting for.
#[derive(Clone, Copy, PartialEq)]
enum Wait {
    /// Nothing in flight: the next request goes at `next_at`.
    Idle,
    /// One reply: echo, whoami (churn), inspect (management role).
    Reply,
    /// Stream chunks (so many so far), then the done frame.
    Chunks(u64),
    /// The pushed frame and the reply, in any order.
    Push { push: bool, reply: bool },
    /// The posted frame on the socket and the management API's 200, in any order.
    Post { frame: bool, http: bool },
    /// Churn: our close is sent; waiting for the server's close, then its FIN.
    Closing { close_seen: bool },
}

struct SoakConn {
    c: Client,
    role: Role,
    gen: u32,
    /// The socket is finished (a churn cycle is complete, or an error): a new connection
    /// starts at `next_at`.
    down: bool,
    /// Counted in `Soak::opening` (connecting or handshaking).
    opening: bool,
    wait: Wait,
    /// When the connection started, the request went out or the last frame of its answer
    /// came: an answer is missing once this is older than the reply timeout.
    since: Instant,
    next_at: Instant,
    /// The message id of the request in flight.
    msg_id: String,
    /// The management role's connection id, learned with `inspect`.
    conn_id: Option<String>,
}

#[derive(Default)]
struct SoakTotals {
    echo: u64,
    streams: u64,
    chunks: u64,
    slow_streams: u64,
    slow_bytes: u64,
    churn: u64,
    pushes: u64,
    posts: u64,
    inspects: u64,
    pongs: u64,
    errors: u64,
    errors_by_role: [u64; 6],
}

/// A server frame, taken out of the input buffer.
enum SoakFrame {
    Ping(Vec<u8>),
    Pong,
    Close,
    Data(Result<serde_json::Value, String>),
    Other(u8),
}

/// A post for the management thread: `msg_id` to connection `conn_id`.
struct MgmtJob {
    slot: usize,
    gen: u32,
    seq: u64,
    conn_id: String,
    msg_id: String,
}

struct MgmtDone {
    slot: usize,
    gen: u32,
    seq: u64,
    result: Result<(), String>,
}

/// The body of management post number `seq`, and what the client must receive.
fn mgmt_body(seq: u64) -> serde_json::Value {
    serde_json::json!({ "m": seq })
}

/// The management API client: blocking posts over a keep-alive connection, renewed
/// every 100 posts and after 5 s unused (the server closes idle ones after 10 s).
fn mgmt_worker(addr: SocketAddr, jobs: mpsc::Receiver<MgmtJob>, done: mpsc::Sender<MgmtDone>) {
    // The connection and the posts it has carried.
    let mut conn: Option<(std::net::TcpStream, u32)> = None;
    let mut last = Instant::now();
    for job in jobs {
        if conn.as_ref().is_some_and(|c| c.1 >= 100) || last.elapsed() > Duration::from_secs(5) {
            conn = None;
        }
        let result = (|| -> Result<(), String> {
            let (s, uses) = match &mut conn {
                Some((s, uses)) => (s, uses),
                None => {
                    let s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(5))
                        .map_err(|e| format!("management connect: {e}"))?;
                    s.set_read_timeout(Some(Duration::from_secs(5)))
                        .and_then(|_| s.set_nodelay(true))
                        .map_err(|e| e.to_string())?;
                    let (s, uses) = conn.insert((s, 0));
                    (s, uses)
                }
            };
            *uses += 1;
            let body = serde_json::json!({
                "statusCode": 200,
                "headers": { "message-id": job.msg_id },
                "body": mgmt_body(job.seq),
            })
            .to_string();
            let req = format!(
                "POST /@connections/{} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                job.conn_id,
                body.len()
            );
            s.write_all(req.as_bytes())
                .map_err(|e| format!("management write: {e}"))?;
            let (status, close) = read_http_response(s)?;
            if close {
                conn = None;
            }
            if status != 200 {
                return Err(format!("management POST answered {status}"));
            }
            Ok(())
        })();
        if result.is_err() {
            conn = None;
        }
        last = Instant::now();
        let reply = MgmtDone {
            slot: job.slot,
            gen: job.gen,
            seq: job.seq,
            result,
        };
        if done.send(reply).is_err() {
            break;
        }
    }
}

/// One HTTP/1.1 response with a Content-Length body: (status, connection closes).
fn read_http_response(s: &mut std::net::TcpStream) -> Result<(u16, bool), String> {
    let mut buf = Vec::with_capacity(512);
    let mut b = [0u8; 1024];
    let mut more = |buf: &mut Vec<u8>| -> Result<(), String> {
        match s.read(&mut b) {
            Ok(0) => Err("management API closed the connection".into()),
            Ok(n) => {
                buf.extend_from_slice(&b[..n]);
                Ok(())
            }
            Err(e) => Err(format!("management read: {e}")),
        }
    };
    let head_end = loop {
        if let Some(e) = find_head_end(&buf) {
            break e;
        }
        more(&mut buf)?;
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("bad management answer: {head:?}"))?;
    let (mut len, mut close) = (0usize, false);
    for line in head.lines().skip(1) {
        if let Some((k, v)) = line.split_once(':') {
            if k.eq_ignore_ascii_case("content-length") {
                len = v.trim().parse().map_err(|_| "bad Content-Length")?;
            } else if k.eq_ignore_ascii_case("connection") {
                close = v.trim().eq_ignore_ascii_case("close");
            }
        }
    }
    while buf.len() < head_end + len {
        more(&mut buf)?;
    }
    Ok((status, close))
}

/// Number of open file descriptors of `pid`.
fn server_fds(pid: u32) -> Option<u64> {
    Some(std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count() as u64)
}

/// A short form of a reply for error messages.
fn short(v: &serde_json::Value) -> String {
    let s = v.to_string();
    match s.char_indices().nth(160) {
        Some((i, _)) => format!("{}...", &s[..i]),
        None => s,
    }
}

struct Soak<'a> {
    a: &'a Args,
    poll: Poll,
    conns: Vec<SoakConn>,
    roles: Vec<Role>,
    t: SoakTotals,
    mgmt_tx: Option<mpsc::Sender<MgmtJob>>,
    opening: usize,
    draining: bool,
    started: Instant,
}

impl Soak<'_> {
    /// The pause before a connection's next request: --think, jittered by -50%..+50%
    /// (a fixed hash of slot and sequence, so runs repeat).
    fn think(&self, slot: usize, seq: u64) -> Duration {
        let h = (slot as u64)
            .wrapping_mul(0x9E37_79B9_7F4A_7C15)
            .wrapping_add(seq.wrapping_mul(0xBF58_476D_1CE4_E5B9));
        let f = 0.5 + ((h >> 11) % 1000) as f64 / 1000.0;
        self.a.think.mul_f64(f)
    }

    fn user(slot: usize, gen: u32) -> String {
        format!("soak-{slot}-{gen}")
    }

    fn start(&mut self, now: Instant) -> io::Result<()> {
        let slot = self.conns.len();
        let mut c = Client::connect(self.a.addr)?;
        self.poll.registry().register(
            &mut c.sock,
            churn_token(slot, 0),
            Interest::READABLE | Interest::WRITABLE,
        )?;
        self.conns.push(SoakConn {
            c,
            role: self.roles[slot],
            gen: 0,
            down: false,
            opening: true,
            wait: Wait::Idle,
            since: now,
            next_at: now,
            msg_id: String::new(),
            conn_id: None,
        });
        self.opening += 1;
        Ok(())
    }

    fn reconnect(&mut self, slot: usize, now: Instant) {
        let s = &mut self.conns[slot];
        let _ = self.poll.registry().deregister(&mut s.c.sock);
        s.gen = s.gen.wrapping_add(1);
        s.wait = Wait::Idle;
        s.conn_id = None;
        s.since = now;
        let r = s.c.reconnect(self.a.addr).and_then(|_| {
            self.poll.registry().register(
                &mut s.c.sock,
                churn_token(slot, s.gen),
                Interest::READABLE | Interest::WRITABLE,
            )
        });
        match r {
            Ok(()) => {
                s.down = false;
                s.opening = true;
                self.opening += 1;
            }
            Err(e) => self.fail(slot, now, format!("reconnect: {e}")),
        }
    }

    /// Count an error and drop the connection; a new one starts a second later.
    fn fail(&mut self, slot: usize, now: Instant, why: String) {
        let s = &mut self.conns[slot];
        self.t.errors += 1;
        self.t.errors_by_role[s.role as usize] += 1;
        if self.t.errors <= SOAK_ERRORS_SHOWN {
            eprintln!(
                "[{:7.1}s] error on {} connection {slot}: {why}",
                now.duration_since(self.started).as_secs_f64(),
                s.role.name()
            );
            if self.t.errors == SOAK_ERRORS_SHOWN {
                eprintln!("(further errors are counted, not shown)");
            }
        }
        self.close(slot);
        let s = &mut self.conns[slot];
        s.next_at = now + Duration::from_secs(1);
    }

    /// Finish a connection's socket (no error).
    fn close(&mut self, slot: usize) {
        let s = &mut self.conns[slot];
        let _ = s.c.sock.shutdown(std::net::Shutdown::Both);
        let _ = self.poll.registry().deregister(&mut s.c.sock);
        if s.opening {
            s.opening = false;
            self.opening -= 1;
        }
        s.down = true;
        s.wait = Wait::Idle;
    }

    fn flush(&mut self, slot: usize) -> Result<(), String> {
        let s = &mut self.conns[slot];
        let flushed = s.c.flush().map_err(|e| format!("write: {e}"))?;
        s.c.update_interest(&self.poll, churn_token(slot, s.gen), flushed)
            .map_err(|e| format!("reregister: {e}"))
    }

    /// Send the role's next request.
    fn request(&mut self, slot: usize, now: Instant) -> Result<(), String> {
        let s = &mut self.conns[slot];
        s.c.seq += 1;
        let seq = s.c.seq;
        let (kind, name) = match s.role {
            Role::Echo => ("e", "echo"),
            Role::Stream => ("s", "stream"),
            Role::Slow => ("l", "stream-slow"),
            Role::Churn => ("w", "whoami"),
            Role::Push => ("p", "push"),
            Role::Mgmt if s.conn_id.is_none() => ("i", "inspect"),
            Role::Mgmt => ("m", ""),
        };
        s.msg_id = format!("{kind}-{slot}-{seq}");
        s.since = now;
        let id = &s.msg_id;
        s.wait = match s.role {
            Role::Echo => {
                s.c.queue_frame(|out| {
                    let _ = write!(
                        out,
                        "{{\"name\":\"{name}\",\"payload\":{{\"n\":{seq},\"s\":\"{id}\"}},\"headers\":{{\"message-id\":\"{id}\"}}}}"
                    );
                });
                Wait::Reply
            }
            Role::Push => {
                s.c.queue_frame(|out| {
                    let _ = write!(
                        out,
                        "{{\"name\":\"{name}\",\"payload\":\"{id}\",\"headers\":{{\"message-id\":\"{id}\"}}}}"
                    );
                });
                Wait::Push {
                    push: false,
                    reply: false,
                }
            }
            Role::Mgmt if s.conn_id.is_some() => {
                let job = MgmtJob {
                    slot,
                    gen: s.gen,
                    seq,
                    conn_id: s.conn_id.clone().unwrap_or_default(),
                    msg_id: s.msg_id.clone(),
                };
                let tx = self.mgmt_tx.as_ref().ok_or("no management client")?;
                tx.send(job).map_err(|_| "the management client stopped")?;
                Wait::Post {
                    frame: false,
                    http: false,
                }
            }
            _ => {
                s.c.queue_frame(|out| {
                    let _ = write!(
                        out,
                        "{{\"name\":\"{name}\",\"headers\":{{\"message-id\":\"{id}\"}}}}"
                    );
                });
                if matches!(s.role, Role::Stream | Role::Slow) {
                    Wait::Chunks(0)
                } else {
                    Wait::Reply
                }
            }
        };
        self.flush(slot)
    }

    /// The request in flight is answered in full: the next one goes after a pause.
    fn finished(&mut self, slot: usize, now: Instant) {
        let seq = self.conns[slot].c.seq;
        let pause = self.think(slot, seq);
        let s = &mut self.conns[slot];
        s.wait = Wait::Idle;
        s.next_at = now + pause;
    }

    /// Check one frame against what the connection waits for.
    fn frame(&mut self, slot: usize, f: SoakFrame, now: Instant) -> Result<(), String> {
        let s = &mut self.conns[slot];
        let v = match f {
            SoakFrame::Ping(p) => {
                s.c.queue_frame_op(0x8A, |out| out.extend_from_slice(&p));
                self.t.pongs += 1;
                return Ok(());
            }
            SoakFrame::Pong => return Ok(()),
            SoakFrame::Close => {
                if let Wait::Closing { close_seen: false } = s.wait {
                    s.wait = Wait::Closing { close_seen: true };
                    return Ok(());
                }
                return Err("the server sent a close frame".into());
            }
            SoakFrame::Other(op) => return Err(format!("unexpected opcode {op}")),
            SoakFrame::Data(v) => v?,
        };
        let status = v["statusCode"].as_u64();
        let headers = &v["headers"];
        let mid = headers["message-id"].as_str();
        let body = &v["body"];
        let seq = s.c.seq;
        let want = |ok: bool, what: &str| -> Result<(), String> {
            if ok {
                Ok(())
            } else {
                Err(format!("{what}: {}", short(&v)))
            }
        };
        if !matches!(s.wait, Wait::Push { .. }) || headers.get("x-push").is_none() {
            want(
                mid == Some(s.msg_id.as_str()),
                &format!("expected message-id {}", s.msg_id),
            )?;
        }
        want(status == Some(200), "status is not 200")?;
        s.since = now;
        match (s.role, s.wait) {
            (Role::Echo, Wait::Reply) => {
                want(
                    body["n"].as_u64() == Some(seq) && body["s"].as_str() == Some(&s.msg_id),
                    "echo body differs",
                )?;
                self.t.echo += 1;
                self.finished(slot, now);
            }
            (Role::Churn, Wait::Reply) => {
                let user = Self::user(slot, s.gen);
                want(
                    body.as_str() == Some(&user),
                    &format!("whoami is not {user}"),
                )?;
                s.c.out.extend_from_slice(&CLOSE_1000);
                s.wait = Wait::Closing { close_seen: false };
            }
            (Role::Mgmt, Wait::Reply) => {
                let user = Self::user(slot, s.gen);
                want(
                    body["identity"]["id"].as_str() == Some(&user),
                    &format!("inspect: identity is not {user}"),
                )?;
                let id = body["headers"]["connection-id"].as_str();
                want(
                    id.is_some_and(|i| !i.is_empty()),
                    "inspect: no connection-id",
                )?;
                s.conn_id = id.map(str::to_string);
                self.t.inspects += 1;
                self.finished(slot, now);
            }
            (Role::Stream | Role::Slow, Wait::Chunks(n)) => {
                let (count, size) = if s.role == Role::Slow {
                    SOAK_SLOW_STREAM
                } else {
                    SOAK_STREAM
                };
                match headers["x-stream"].as_str() {
                    Some("chunk") => {
                        want(n < count, "more chunks than the route sends")?;
                        want(
                            body.as_str()
                                .is_some_and(|b| b.len() == size && b.bytes().all(|c| c == b'x')),
                            "chunk body differs",
                        )?;
                        s.wait = Wait::Chunks(n + 1);
                        if s.role == Role::Slow {
                            self.t.slow_bytes += size as u64;
                        } else {
                            self.t.chunks += 1;
                        }
                    }
                    Some("done") => {
                        want(n == count, &format!("done after {n} of {count} chunks"))?;
                        if s.role == Role::Slow {
                            self.t.slow_streams += 1;
                        } else {
                            self.t.streams += 1;
                        }
                        self.finished(slot, now);
                    }
                    _ => want(false, "not a stream frame")?,
                }
            }
            (Role::Push, Wait::Push { push, reply }) => {
                let (push, reply) = if headers.get("x-push").is_some() {
                    want(
                        !push && headers["x-push"] == "1" && mid.is_none(),
                        "unexpected push frame",
                    )?;
                    want(body.as_str() == Some(&s.msg_id), "push body differs")?;
                    (true, reply)
                } else {
                    want(!reply, "second reply")?;
                    want(body.as_str() == Some(&s.msg_id), "push reply body differs")?;
                    (push, true)
                };
                s.wait = Wait::Push { push, reply };
                if push && reply {
                    self.t.pushes += 1;
                    self.finished(slot, now);
                }
            }
            (Role::Mgmt, Wait::Post { frame, http }) => {
                want(!frame, "posted frame twice")?;
                want(*body == mgmt_body(seq), "posted body differs")?;
                s.wait = Wait::Post { frame: true, http };
                if http {
                    self.t.posts += 1;
                    self.finished(slot, now);
                }
            }
            _ => want(false, "unexpected frame")?,
        }
        Ok(())
    }

    /// The management thread's answer to a post.
    fn mgmt_done(&mut self, d: MgmtDone, now: Instant) {
        let s = &mut self.conns[d.slot];
        if s.gen != d.gen || s.down || s.c.seq != d.seq {
            return; // the connection failed meanwhile (already counted)
        }
        let Wait::Post { frame, http: false } = s.wait else {
            return;
        };
        match d.result {
            Err(e) => self.fail(d.slot, now, e),
            Ok(()) => {
                s.wait = Wait::Post { frame, http: true };
                s.since = now;
                if frame {
                    self.t.posts += 1;
                    self.finished(d.slot, now);
                }
            }
        }
    }

    /// Read (all there is, at most `budget` bytes, or nothing), then handle the
    /// handshake and every whole frame.
    fn pump(
        &mut self,
        slot: usize,
        writable: bool,
        read: Option<usize>,
        now: Instant,
    ) -> Result<(), String> {
        let addr = self.a.addr;
        let s = &mut self.conns[slot];
        if s.down {
            return Ok(());
        }
        if s.c.phase == Phase::Connecting {
            if !writable || !s.c.connected().map_err(|e| format!("connect: {e}"))? {
                return Ok(());
            }
            s.c.phase = Phase::Handshaking;
            let path = format!("/?user={}", Self::user(slot, s.gen));
            s.c.queue_handshake_to(addr, &path);
        }
        let eof = match read {
            None => false,
            Some(usize::MAX) => !s.c.fill().map_err(|e| format!("read: {e}"))?,
            Some(budget) => {
                let mut left = budget;
                let mut eof = false;
                while left > 0 && !eof {
                    let (n, e) = s.c.read_some(left).map_err(|e| format!("read: {e}"))?;
                    eof = e;
                    if n == 0 {
                        break;
                    }
                    left -= n;
                }
                eof
            }
        };
        if s.c.phase == Phase::Handshaking {
            if s.c.finish_handshake().map_err(|e| e.to_string())? {
                s.opening = false;
                self.opening -= 1;
            } else if eof {
                return Err("closed during the handshake".into());
            }
        }
        let s = &mut self.conns[slot];
        if s.c.phase == Phase::Open {
            let mut pos = 0;
            while let Some((op, st, e)) = self.conns[slot].c.next_frame(pos) {
                pos = e;
                let data = &self.conns[slot].c.inbuf[st..e];
                let f = match op {
                    1 | 2 => SoakFrame::Data(
                        serde_json::from_slice(data)
                            .map_err(|e| format!("reply is not JSON ({e})")),
                    ),
                    8 => SoakFrame::Close,
                    9 => SoakFrame::Ping(data.to_vec()),
                    10 => SoakFrame::Pong,
                    op => SoakFrame::Other(op),
                };
                self.frame(slot, f, now)?;
            }
            self.conns[slot].c.inbuf.drain(..pos);
        }
        if eof {
            let s = &self.conns[slot];
            if s.wait == (Wait::Closing { close_seen: true }) {
                // A churn cycle is complete.
                self.t.churn += 1;
                self.close(slot);
                let pause = self.think(slot, self.conns[slot].c.seq);
                self.conns[slot].next_at = now + pause;
                return Ok(());
            }
            return Err("closed by the server".into());
        }
        self.flush(slot)
    }

    /// Timeouts, new requests, new connections.
    fn sweep(&mut self, now: Instant) {
        for slot in 0..self.conns.len() {
            let s = &self.conns[slot];
            let late = now.duration_since(s.since) > self.a.reply_timeout;
            if s.down {
                if !self.draining && now >= s.next_at && self.opening < SOAK_OPENING {
                    self.reconnect(slot, now);
                }
            } else if s.c.phase != Phase::Open {
                if late {
                    self.fail(slot, now, "connect or handshake timed out".into());
                }
            } else if s.wait != Wait::Idle {
                if late {
                    let what = match s.wait {
                        Wait::Closing { .. } => "no close or FIN from the server".to_string(),
                        _ => format!("no answer to {}", s.msg_id),
                    };
                    self.fail(slot, now, what);
                }
            } else if !self.draining && now >= s.next_at {
                if let Err(e) = self.request(slot, now) {
                    self.fail(slot, now, e);
                }
            }
        }
        while !self.draining && self.conns.len() < self.roles.len() && self.opening < SOAK_OPENING {
            if let Err(e) = self.start(now) {
                eprintln!("error: cannot open a connection: {e}");
                break;
            }
        }
    }

    fn busy(&self) -> bool {
        self.conns
            .iter()
            .any(|s| !s.down && (s.c.phase != Phase::Open || s.wait != Wait::Idle))
    }

    fn open(&self) -> usize {
        self.conns
            .iter()
            .filter(|s| !s.down && s.c.phase == Phase::Open)
            .count()
    }
}

/// One reading of the server: seconds since the start, RSS, open fds.
#[derive(Clone, Copy)]
struct SoakSample {
    at: f64,
    rss: u64,
    fds: u64,
}

fn soak(a: &Args) -> io::Result<()> {
    let pid = a
        .pid
        .ok_or_else(|| io::Error::other("soak needs --pid of the server"))?;
    let n = a.conns.unwrap_or(1000);
    let slow = a.slow_readers.min(n);
    let share = |p: usize| (n * p / 100).max(1);
    let churn = share(5);
    let push = share(10);
    let mgmt = if a.mgmt.is_some() { share(10) } else { 0 };
    let streams = share(15);
    let fixed = churn + push + mgmt + streams + slow;
    if fixed >= n {
        return Err(io::Error::other(format!(
            "soak needs more than {fixed} connections for its roles (-c {n})"
        )));
    }
    let mut roles = Vec::with_capacity(n);
    for (role, k) in [
        (Role::Churn, churn),
        (Role::Push, push),
        (Role::Mgmt, mgmt),
        (Role::Stream, streams),
        (Role::Slow, slow),
        (Role::Echo, n - fixed),
    ] {
        roles.extend(std::iter::repeat_n(role, k));
    }
    let role_counts: Vec<(Role, usize)> = ROLES
        .iter()
        .map(|&r| (r, roles.iter().filter(|&&x| x == r).count()))
        .collect();
    eprintln!(
        "soak: {n} connections ({}), {} s warm-up, {} s measured, sample every {} s{}",
        role_counts
            .iter()
            .map(|(r, k)| format!("{k} {}", r.name()))
            .collect::<Vec<_>>()
            .join(", "),
        a.warmup.as_secs_f64(),
        a.duration.as_secs_f64(),
        a.sample.as_secs_f64(),
        if a.mgmt.is_none() {
            "; no --mgmt: no management posts"
        } else {
            ""
        }
    );
    let (mgmt_tx, done_rx, mgmt_thread) = match a.mgmt {
        Some(addr) => {
            let (tx, rx) = mpsc::channel();
            let (dtx, drx) = mpsc::channel();
            let h = std::thread::spawn(move || mgmt_worker(addr, rx, dtx));
            (Some(tx), Some(drx), Some(h))
        }
        None => (None, None, None),
    };
    let read = |what: &str| -> io::Result<SoakSample> {
        Ok(SoakSample {
            at: 0.0,
            rss: server_rss(pid).ok_or_else(|| {
                io::Error::other(format!("cannot read the server's RSS ({what})"))
            })?,
            fds: server_fds(pid).ok_or_else(|| {
                io::Error::other(format!("cannot read the server's fds ({what})"))
            })?,
        })
    };
    let before = read("before")?;
    let mut soak = Soak {
        a,
        poll: Poll::new()?,
        conns: Vec::with_capacity(n),
        roles,
        t: SoakTotals::default(),
        mgmt_tx,
        opening: 0,
        draining: false,
        started: Instant::now(),
    };
    let mut events = Events::with_capacity(1024);
    let mut win = Window::new(a);
    let mut samples: Vec<SoakSample> = Vec::new();
    let mut start: Option<SoakSample> = None;
    let mut next_sample = win.start + a.sample;
    let mut last_cpu = (win.start, server_cpu_ns(pid));
    let mut last_read = Instant::now();
    println!(
        "{:>8} {:<8} {:>9} {:>6} {:>5} {:>9} {:>8} {:>6} {:>7} {:>8} {:>8} {:>6} {:>6}",
        "time s",
        "phase",
        "RSS MiB",
        "fds",
        "open",
        "echo",
        "streams",
        "slow",
        "churn",
        "pushes",
        "posts",
        "errors",
        "cpu %"
    );
    let mut line = |soak: &Soak, phase: &str, now: Instant, s: SoakSample| {
        let cpu = server_cpu_ns(pid);
        let pct = match (last_cpu.1, cpu) {
            (Some(a), Some(b)) => format!(
                "{:.0}",
                b.saturating_sub(a) as f64
                    / 1e7
                    / now.duration_since(last_cpu.0).as_secs_f64().max(1e-9)
            ),
            _ => "-".into(),
        };
        last_cpu = (now, cpu);
        let t = &soak.t;
        println!(
            "{:>8.1} {:<8} {:>9.2} {:>6} {:>5} {:>9} {:>8} {:>6} {:>7} {:>8} {:>8} {:>6} {:>6}",
            s.at,
            phase,
            s.rss as f64 / 1048576.0,
            s.fds,
            soak.open(),
            t.echo,
            t.streams,
            t.slow_streams,
            t.churn,
            t.pushes,
            t.posts,
            t.errors,
            pct
        );
    };
    line(&soak, "before", win.start, before);
    loop {
        poll_retry(&mut soak.poll, &mut events, Duration::from_millis(10))?;
        let now = Instant::now();
        let running = win.tick(now);
        for ev in events.iter() {
            let slot = ev.token().0 & 0xFFFF_FFFF;
            let gen = (ev.token().0 >> 32) as u32;
            let Some(s) = soak.conns.get(slot) else {
                continue;
            };
            if s.gen != gen || s.down {
                continue;
            }
            let paced = s.role == Role::Slow && s.c.phase == Phase::Open;
            let read = (ev.is_readable() && !paced).then_some(usize::MAX);
            if let Err(e) = soak.pump(slot, ev.is_writable(), read, now) {
                soak.fail(slot, now, e);
            }
        }
        // Slow readers read on a timer: the --read-rate budget that has accrued, shared.
        let dt = now.duration_since(last_read).as_secs_f64();
        last_read = now;
        if let Some(share) = ((a.read_rate as f64 * dt) as usize).checked_div(slow) {
            let budget = share.max(1);
            for slot in 0..soak.conns.len() {
                let s = &soak.conns[slot];
                if s.role == Role::Slow && !s.down && s.c.phase == Phase::Open {
                    if let Err(e) = soak.pump(slot, false, Some(budget), now) {
                        soak.fail(slot, now, e);
                    }
                }
            }
        }
        if let Some(rx) = &done_rx {
            while let Ok(d) = rx.try_recv() {
                soak.mgmt_done(d, now);
            }
        }
        let sample = |now: Instant| -> io::Result<SoakSample> {
            let mut s = read("sample")?;
            s.at = now.duration_since(win.start).as_secs_f64();
            Ok(s)
        };
        if win.recording && start.is_none() {
            let s = sample(now)?;
            line(&soak, "start", now, s);
            start = Some(s);
            samples.push(s);
            next_sample = now + a.sample;
        } else if running && now >= next_sample {
            let s = sample(now)?;
            line(&soak, win.phase(), now, s);
            if win.recording {
                samples.push(s);
            }
            next_sample += a.sample;
        }
        if !running {
            let s = sample(now)?;
            line(&soak, "end", now, s);
            samples.push(s);
            break;
        }
        soak.sweep(now);
    }
    let end = *samples.last().expect("the end sample");
    let start = start.unwrap_or(end);
    let cpu_s = win.cpu_used_ns().map(|ns| ns as f64 / 1e9);
    let measured = end.at - start.at;
    // Let the answers in flight arrive (they are checked too), then close everything.
    soak.draining = true;
    let drain_until = Instant::now() + a.reply_timeout;
    while soak.busy() && Instant::now() < drain_until {
        poll_retry(&mut soak.poll, &mut events, Duration::from_millis(10))?;
        let now = Instant::now();
        for ev in events.iter() {
            let slot = ev.token().0 & 0xFFFF_FFFF;
            let gen = (ev.token().0 >> 32) as u32;
            if soak
                .conns
                .get(slot)
                .is_some_and(|s| s.gen == gen && !s.down)
            {
                if let Err(e) = soak.pump(slot, ev.is_writable(), Some(usize::MAX), now) {
                    soak.fail(slot, now, e);
                }
            }
        }
        // The slow readers now read at full speed; their sockets may have been readable
        // all along (edge-triggered: no new event), so they are read on every pass.
        for slot in 0..soak.conns.len() {
            let s = &soak.conns[slot];
            if s.role == Role::Slow && !s.down && s.c.phase == Phase::Open {
                if let Err(e) = soak.pump(slot, false, Some(usize::MAX), now) {
                    soak.fail(slot, now, e);
                }
            }
        }
        if let Some(rx) = &done_rx {
            while let Ok(d) = rx.try_recv() {
                soak.mgmt_done(d, now);
            }
        }
        soak.sweep(now);
    }
    let now = Instant::now();
    for slot in 0..soak.conns.len() {
        let s = &soak.conns[slot];
        if !s.down && s.c.phase == Phase::Open && s.wait != Wait::Idle {
            let why = format!("no answer to {} by the end", s.msg_id);
            soak.fail(slot, now, why);
        }
    }
    soak.mgmt_tx = None;
    if let Some(h) = mgmt_thread {
        let _ = h.join();
    }
    let t = std::mem::take(&mut soak.t);
    drop(soak);
    // Every connection is closed: the server's fds go back to where they started.
    let settle = Instant::now() + Duration::from_secs(10);
    let mut after = read("after close")?;
    while after.fds > before.fds && Instant::now() < settle {
        std::thread::sleep(Duration::from_millis(200));
        after = read("after close")?;
    }
    after.at = win.start.elapsed().as_secs_f64();
    // The first sample at the highest RSS.
    let peak = samples
        .iter()
        .copied()
        .min_by_key(|s| std::cmp::Reverse(s.rss))
        .unwrap_or(end);
    let (peak_rss, peak_fds) = (peak.rss, samples.iter().map(|s| s.fds).max().unwrap_or(0));
    let limit = a.max_growth.limit(start.rss);
    let growth = end.rss as i64 - start.rss as i64;
    // A reading is a moment: each churn slot may hold a socket the server is closing and
    // its new connection; the management client renews its connection now and then.
    let fd_slack = 2 * churn as u64 + 16;
    let mut failures = Vec::new();
    if t.errors > 0 {
        failures.push(format!("{} errors", t.errors));
    }
    if growth > limit as i64 {
        failures.push(format!(
            "RSS grew by {growth} bytes after the warm-up (limit {limit}, --max-growth {})",
            a.max_growth.describe()
        ));
    }
    if end.fds > start.fds + fd_slack {
        failures.push(format!(
            "fds grew from {} to {} (allowed: {fd_slack})",
            start.fds, end.fds
        ));
    }
    if after.fds > before.fds {
        failures.push(format!(
            "{} fds before connecting, {} after every connection closed",
            before.fds, after.fds
        ));
    }
    let mib = |b: u64| b as f64 / 1048576.0;
    println!();
    println!("{:<12} {:>8} {:>9} {:>6}", "", "time s", "RSS MiB", "fds");
    // The peak row: when the highest RSS was first sampled; its fds are the highest sampled.
    for (name, s) in [
        ("before", before),
        ("start", start),
        (
            "peak",
            SoakSample {
                fds: peak_fds,
                ..peak
            },
        ),
        ("end", end),
        ("after close", after),
    ] {
        println!("{name:<12} {:>8.1} {:>9.2} {:>6}", s.at, mib(s.rss), s.fds);
    }
    println!(
        "RSS after the warm-up: {:+.2} MiB from start to end (limit {:.2} MiB)",
        growth as f64 / 1048576.0,
        mib(limit)
    );
    println!(
        "totals: {} echo, {} streams ({} chunks), {} slow streams ({:.0} MiB), {} churn cycles, {} pushes, {} management posts ({} inspects), {} pongs; {} errors ({})",
        t.echo,
        t.streams,
        t.chunks,
        t.slow_streams,
        mib(t.slow_bytes),
        t.churn,
        t.pushes,
        t.posts,
        t.inspects,
        t.pongs,
        t.errors,
        ROLES
            .iter()
            .map(|r| format!("{} {}", r.name(), t.errors_by_role[*r as usize]))
            .collect::<Vec<_>>()
            .join(", ")
    );
    if let Some(c) = cpu_s {
        println!(
            "server CPU: {c:.1} s over {measured:.0} s measured ({:.0}% of one core)",
            c / measured.max(1e-9) * 100.0
        );
    }
    println!(
        "{}",
        if failures.is_empty() {
            "result: ok".to_string()
        } else {
            format!("result: FAILED: {}", failures.join("; "))
        }
    );
    let roles_json = role_counts
        .iter()
        .map(|(r, k)| format!("\"{}\":{k}", r.name()))
        .collect::<Vec<_>>()
        .join(",");
    let errors_json = ROLES
        .iter()
        .map(|r| format!("\"{}\":{}", r.name(), t.errors_by_role[*r as usize]))
        .collect::<Vec<_>>()
        .join(",");
    println!(
        "{{\"scenario\":\"soak\",\"label\":{},\"conns\":{n},\"warmup_s\":{:.1},\"measured_s\":{measured:.1},\"sample_s\":{:.1},\"think_ms\":{:.1},\"rss_before\":{},\"rss_start\":{},\"rss_peak\":{peak_rss},\"rss_end\":{},\"rss_after_close\":{},\"rss_growth\":{growth},\"rss_growth_limit\":{limit},\"fds_before\":{},\"fds_start\":{},\"fds_peak\":{peak_fds},\"fds_end\":{},\"fds_after_close\":{},\"echo\":{},\"streams\":{},\"chunks\":{},\"slow_streams\":{},\"slow_bytes\":{},\"churn\":{},\"pushes\":{},\"posts\":{},\"inspects\":{},\"pongs\":{},\"errors\":{},\"server_cpu_s\":{},\"ok\":{},\"roles\":{{{roles_json}}},\"errors_by_role\":{{{errors_json}}}}}",
        json_str(&a.label),
        a.warmup.as_secs_f64(),
        a.sample.as_secs_f64(),
        a.think.as_secs_f64() * 1e3,
        before.rss,
        start.rss,
        end.rss,
        after.rss,
        before.fds,
        start.fds,
        end.fds,
        after.fds,
        t.echo,
        t.streams,
        t.chunks,
        t.slow_streams,
        t.slow_bytes,
        t.churn,
        t.pushes,
        t.posts,
        t.inspects,
        t.pongs,
        t.errors,
        opt_json(cpu_s, 3),
        failures.is_empty()
    );
    if failures.is_empty() {
        Ok(())
    } else {
        Err(io::Error::other(failures.join("; ")))
    }
}

/// `poll` that retries when a signal interrupts it.
fn poll_retry(poll: &mut Poll, events: &mut Events, timeout: Duration) -> io::Result<()> {
    loop {
        match poll.poll(events, Some(timeout)) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            r => return r,
        }
    }
}
