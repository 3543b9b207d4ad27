//! The runner binary under test: started with flags, its stderr lines on a channel,
//! signals sent with `kill`, its exit status waited for with a deadline.
#![allow(dead_code)]

use std::io::BufRead;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{channel, Receiver};
use std::time::Instant;

use crate::util::DEADLINE;

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
        let mut child = Command::new(env!("CARGO_BIN_EXE_configurapi-runner-ws"))
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
