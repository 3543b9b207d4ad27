//! Helpers for loopback integration tests: an in-process server on a free port, raw
//! sockets with deadlines, and a tiny masked-frame writer.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use configurapi_runner_ws::reactor::stats::Stats;
use configurapi_runner_ws::{Handle, Server, ServerConfig};

/// Every blocking read in the tests gives up after this long: a hang fails the test.
pub const DEADLINE: Duration = Duration::from_secs(10);

pub struct TestServer {
    pub handle: Handle,
    pub addr: SocketAddr,
    mgmt: Option<SocketAddr>,
    join: Option<JoinHandle<std::io::Result<()>>>,
}

impl TestServer {
    pub fn start(mut cfg: ServerConfig) -> TestServer {
        cfg.listen = "127.0.0.1:0".parse().unwrap();
        let server = Server::bind(cfg).expect("bind");
        let addr = server.local_addr();
        let mgmt = server.management_addr();
        let (handle, join) = server.spawn();
        TestServer {
            handle,
            addr,
            mgmt,
            join: Some(join),
        }
    }

    pub fn echo() -> TestServer {
        TestServer::start(ServerConfig::default())
    }

    /// The management listener's address (the config must turn it on).
    pub fn management_addr(&self) -> SocketAddr {
        self.mgmt.expect("management API configured")
    }

    pub fn url(&self) -> String {
        format!("ws://{}/", self.addr)
    }

    /// A raw TCP connection with read/write deadlines.
    pub fn raw(&self) -> TcpStream {
        let s = TcpStream::connect(self.addr).expect("connect");
        s.set_read_timeout(Some(DEADLINE)).unwrap();
        s.set_write_timeout(Some(DEADLINE)).unwrap();
        s.set_nodelay(true).unwrap();
        s
    }

    /// A tungstenite client that finished the handshake.
    pub fn client(&self) -> tungstenite::WebSocket<TcpStream> {
        let (ws, resp) = tungstenite::client(self.url(), self.raw()).expect("ws handshake");
        assert_eq!(resp.status().as_u16(), 101);
        ws
    }

    /// A raw socket that completed the upgrade.
    pub fn upgraded(&self) -> TcpStream {
        let mut s = self.raw();
        s.write_all(upgrade_request("/").as_bytes()).unwrap();
        let head = read_http_head(&mut s);
        assert!(head.starts_with("HTTP/1.1 101 "), "{head}");
        s
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        let _ = self.handle.shutdown();
        if let Some(j) = self.join.take() {
            let _ = j.join();
        }
    }
}

pub fn upgrade_request(target: &str) -> String {
    format!(
        "GET {target} HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
}

/// Read an HTTP response head (up to the blank line), byte by byte so no frame bytes
/// after it are taken.
pub fn read_http_head(s: &mut impl Read) -> String {
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match s.read(&mut b) {
            Ok(0) => break,
            Ok(_) => head.push(b[0]),
            // A signal during a read with a timeout is EINTR even with SA_RESTART.
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => panic!("reading the response head: {e}"),
        }
    }
    String::from_utf8_lossy(&head).into_owned()
}

/// Read until EOF (the server closed). Fails the test if the deadline passes first.
pub fn read_to_eof(s: &mut TcpStream) -> Vec<u8> {
    let start = Instant::now();
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return out,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return out,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => panic!("no EOF within {:?}: {e}", start.elapsed()),
        }
    }
}

/// A masked client frame.
pub fn client_frame(b0: u8, payload: &[u8]) -> Vec<u8> {
    let key = [0xA1, 0xB2, 0xC3, 0xD4];
    let mut out = vec![b0];
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
    out.extend_from_slice(&key);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
    out
}

/// A server frame as read from the wire: (first byte, payload).
pub fn read_frame(s: &mut impl Read) -> (u8, Vec<u8>) {
    let mut h = [0u8; 2];
    s.read_exact(&mut h).expect("frame header");
    assert_eq!(h[1] & 0x80, 0, "server frames are not masked");
    let len = match h[1] & 0x7F {
        126 => {
            let mut b = [0u8; 2];
            s.read_exact(&mut b).unwrap();
            u16::from_be_bytes(b) as usize
        }
        127 => {
            let mut b = [0u8; 8];
            s.read_exact(&mut b).unwrap();
            u64::from_be_bytes(b) as usize
        }
        n => n as usize,
    };
    let mut payload = vec![0u8; len];
    s.read_exact(&mut payload).unwrap();
    (h[0], payload)
}

/// Expect a close frame with `code` next, then EOF.
pub fn expect_close(s: &mut TcpStream, code: u16) {
    let (b0, payload) = read_frame(s);
    assert_eq!(
        b0, 0x88,
        "expected a close frame, got opcode byte {b0:#x} {payload:?}"
    );
    assert!(payload.len() >= 2, "close frame without a code");
    assert_eq!(
        u16::from_be_bytes([payload[0], payload[1]]),
        code,
        "close reason {:?}",
        String::from_utf8_lossy(&payload[2..])
    );
    read_to_eof(s);
}

/// Poll the server's counters until `done` holds, failing after the deadline.
pub fn wait_stats(srv: &TestServer, what: &str, done: impl Fn(&Stats) -> bool) -> Stats {
    wait_handle_stats(&srv.handle, what, done)
}

/// [`wait_stats`] for any server handle.
pub fn wait_handle_stats(handle: &Handle, what: &str, done: impl Fn(&Stats) -> bool) -> Stats {
    let start = Instant::now();
    loop {
        let s = handle.stats().expect("server running");
        if done(&s) {
            return s;
        }
        assert!(
            start.elapsed() < DEADLINE,
            "timed out waiting for {what}: {s:?}"
        );
        std::thread::yield_now();
    }
}

/// A fresh client gets its text echoed, then closes cleanly: the server still serves
/// The recorded peak of the write queues so far (`Stats::queued_bytes_peak`: noted by
/// the server at every push and flush, so it covers every moment of the run, not the
/// moments a test happens to sample). Fails when it is over `bound`.
pub fn assert_peak_within(handle: &Handle, bound: u64) -> Stats {
    let s = handle.stats().expect("server running");
    assert!(
        s.queued_bytes_peak <= bound,
        "a write queue held {} bytes at some moment > high water + one frame ({bound})",
        s.queued_bytes_peak
    );
    s
}

/// Wait (with the test deadline) until a producer (stream or push) waits for room and
/// one connection holds at least `min_queued` bytes: the state of a producer held by a
/// client that does not read, once the kernel's buffers are full. A producer parks only
/// with the queue over the low-water mark and is woken below it, so the state lasts
/// until the client reads. The recorded peak must stay within `bound` on the way.
pub fn wait_held(handle: &Handle, bound: u64, min_queued: u64) -> Stats {
    let start = Instant::now();
    loop {
        let s = assert_peak_within(handle, bound);
        if s.producers_waiting > 0 && s.queued_bytes_max >= min_queued {
            return s;
        }
        assert!(
            start.elapsed() < DEADLINE,
            "timed out waiting for a producer held with {min_queued} bytes queued: {s:?}"
        );
        std::thread::yield_now();
    }
}
/// well-behaved clients.
pub fn echo_round_trip(srv: &TestServer) {
    let mut s = srv.upgraded();
    s.write_all(&client_frame(0x81, b"still here")).unwrap();
    assert_eq!(read_frame(&mut s), (0x81, b"still here".to_vec()));
    s.write_all(&client_frame(0x88, &1000u16.to_be_bytes()))
        .unwrap();
    expect_close(&mut s, 1000);
}

/// `Command::output` with the test deadline: a child that has not exited by then is
/// killed and the test fails naming it, instead of hanging. Stdin is closed, as with
/// `output`.
pub trait OutputWithin {
    fn output_within_deadline(&mut self) -> std::io::Result<std::process::Output>;
}

impl OutputWithin for std::process::Command {
    fn output_within_deadline(&mut self) -> std::io::Result<std::process::Output> {
        use std::process::Stdio;
        let what = format!("{self:?}");
        let child = self
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()?;
        wait_output_within(child, &what)
    }
}

/// `Child::wait_with_output` with the test deadline (see [`OutputWithin`]).
pub fn wait_output_within(
    mut child: std::process::Child,
    what: &str,
) -> std::io::Result<std::process::Output> {
    fn drain(r: Option<impl Read + Send + 'static>) -> JoinHandle<Vec<u8>> {
        std::thread::spawn(move || {
            let mut v = Vec::new();
            if let Some(mut r) = r {
                let _ = r.read_to_end(&mut v);
            }
            v
        })
    }
    let out = drain(child.stdout.take());
    let err = drain(child.stderr.take());
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if start.elapsed() > DEADLINE {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what} did not exit within {DEADLINE:?}");
        }
        // Polling the child's exit (std has no wait with a timeout).
        std::thread::sleep(Duration::from_millis(10));
    };
    Ok(std::process::Output {
        status,
        stdout: out.join().expect("stdout reader"),
        stderr: err.join().expect("stderr reader"),
    })
}

/// Lines of a child's output, read on a thread, so each can be awaited with a
/// deadline: `lines.recv_timeout(DEADLINE)`.
pub fn lines_of(r: impl Read + Send + 'static) -> std::sync::mpsc::Receiver<String> {
    use std::io::BufRead;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(r).lines() {
            let Ok(line) = line else { return };
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    rx
}
