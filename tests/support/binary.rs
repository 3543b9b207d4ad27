//! The runner binary as a child process: started with flags, its stderr lines on a
//! channel, signals sent with `kill`, its exit status and output waited for with a
//! deadline; and scratch folders for its files.

use std::io::{BufRead, Read};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{channel, Receiver};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::wait::DEADLINE;

/// The runner binary's path.
pub const BIN: &str = env!("CARGO_BIN_EXE_configurapi-runner-ws");

/// The runner binary; killed if a test fails before it exits.
pub struct Bin {
    pub child: Child,
    lines: Receiver<String>,
    /// Every stderr line read so far.
    pub seen: Vec<String>,
    /// Lines before this index have been looked at by `wait_line`.
    cursor: usize,
}

impl Drop for Bin {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Bin {
    /// Start with `--host 127.0.0.1 --port 0` and `args`; returns once it logged where
    /// the WebSocket listener is, with that address.
    pub fn start(args: &[&str]) -> (Bin, SocketAddr) {
        Bin::start_with_env(args, &[])
    }

    /// [`Bin::start`] with these environment variables set as well.
    pub fn start_with_env(args: &[&str], env: &[(&str, &str)]) -> (Bin, SocketAddr) {
        let mut child = Command::new(BIN)
            .args(["--host", "127.0.0.1", "--port", "0"])
            .args(args)
            .envs(env.iter().copied())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let (tx, lines) = channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stderr).lines() {
                if tx.send(line.unwrap_or_default()).is_err() {
                    return;
                }
            }
        });
        let mut bin = Bin {
            child,
            lines,
            seen: Vec::new(),
            cursor: 0,
        };
        let line = bin.wait_line("listening on ws://");
        let addr = addr_after(&line, "ws://");
        (bin, addr)
    }

    /// [`Bin::start`] with the management API on a free port as well; the WebSocket
    /// and management addresses.
    pub fn start_with_management(args: &[&str]) -> (Bin, SocketAddr, SocketAddr) {
        let port = free_port();
        let mut all = vec!["--management-port", &port];
        all.extend_from_slice(args);
        let (mut bin, addr) = Bin::start(&all);
        let mgmt = addr_after(&bin.wait_line("management API on http://"), "http://");
        (bin, addr, mgmt)
    }

    /// The next line (after those already matched) that contains `what`.
    pub fn wait_line(&mut self, what: &str) -> String {
        let deadline = Instant::now() + DEADLINE;
        loop {
            while self.cursor < self.seen.len() {
                self.cursor += 1;
                if self.seen[self.cursor - 1].contains(what) {
                    return self.seen[self.cursor - 1].clone();
                }
            }
            let left = deadline.saturating_duration_since(Instant::now());
            let line = self.lines.recv_timeout(left).unwrap_or_else(|_| {
                panic!(
                    "no log line with {what:?}; so far:\n{}",
                    self.seen.join("\n")
                )
            });
            self.seen.push(line);
        }
    }

    /// Send `sig` (a name such as `TERM` or `HUP`) with `kill`.
    pub fn signal(&self, sig: &str) {
        let status = Command::new("kill")
            .args([&format!("-{sig}"), &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// The exit status, waiting for it with a deadline.
    pub fn exit_code(&mut self) -> Option<i32> {
        let deadline = Instant::now() + DEADLINE;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code();
            }
            assert!(Instant::now() < deadline, "the binary did not exit");
            std::thread::yield_now();
        }
    }
}

/// The address after `scheme` in a log line (`... on ws://127.0.0.1:1234 (...)`).
pub fn addr_after(line: &str, scheme: &str) -> SocketAddr {
    line.split(scheme)
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no {scheme} address in {line:?}"))
        .parse()
        .unwrap()
}

/// A port that was free a moment ago (port 0 turns the management API off).
pub fn free_port() -> String {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
        .to_string()
}

/// A scratch directory, removed on drop.
pub struct Scratch(pub PathBuf);

impl Scratch {
    pub fn new(tag: &str) -> Scratch {
        let p = std::env::temp_dir().join(format!(
            "{tag}-{}-{}",
            std::process::id(),
            uuid::Uuid::new_v4()
        ));
        std::fs::create_dir_all(&p).unwrap();
        Scratch(p)
    }

    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.0.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `Command::output` with the test deadline: a child that has not exited by then is
/// killed and the test fails naming it, instead of hanging. Stdin is closed, as with
/// `output`.
pub trait OutputWithin {
    fn output_within_deadline(&mut self) -> std::io::Result<std::process::Output>;
}

impl OutputWithin for std::process::Command {
    fn output_within_deadline(&mut self) -> std::io::Result<std::process::Output> {
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
