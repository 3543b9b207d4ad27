//! The runner binary as a child process: started with flags, its stderr lines on a
//! channel, signals sent with `kill`, its exit status and output waited for with a
//! deadline; and scratch folders for its files.

use std::io::{BufRead, Read};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::Receiver;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::wait::DEADLINE;

/// The runner binary's path.
pub const BIN: &str = env!("CARGO_BIN_EXE_configurapi-runner-ws");

/// The runner binary's stderr lines as read so far, `<eof>` last once it closed, and a
/// condition variable signalled at each line.
type Log = Arc<(Mutex<Vec<String>>, Condvar)>;

/// The line pushed after the child's last one, when its stderr closes.
const EOF: &str = "<eof>";

/// The runner binary; killed if a test fails before it exits. Its stderr is read on a
/// thread (so it never blocks on a full pipe) into a log that tests wait on.
pub struct Bin {
    pub child: Child,
    log: Log,
    /// Lines before this index have been looked at by `wait_line`.
    cursor: usize,
    /// How long a wait for a line may take.
    pub deadline: Duration,
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
        let mut cmd = Command::new(BIN);
        cmd.args(["--host", "127.0.0.1", "--port", "0"])
            .args(args)
            .envs(env.iter().copied());
        let mut bin = Bin::spawn(&mut cmd);
        let addr = bin.listening();
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

    /// Spawn `cmd` (the binary with whatever flags) with stderr collected; stdin and
    /// stdout are closed.
    pub fn spawn(cmd: &mut Command) -> Bin {
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start the runner binary");
        let stderr = child.stderr.take().unwrap();
        let log: Log = Arc::new((Mutex::new(Vec::new()), Condvar::new()));
        let sink = Arc::clone(&log);
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                sink.0.lock().unwrap().push(line);
                sink.1.notify_all();
            }
            sink.0.lock().unwrap().push(EOF.into());
            sink.1.notify_all();
        });
        Bin {
            child,
            log,
            cursor: 0,
            deadline: DEADLINE,
        }
    }

    /// The WebSocket listener's address, once the binary logged it.
    pub fn listening(&mut self) -> SocketAddr {
        let line = self.wait_line("listening on ws://");
        addr_after(&line, "ws://")
    }

    /// Wait (with the deadline) until the log holds a line for which `found` answers,
    /// and return the answer; fails naming `what` if the binary's stderr ends first.
    fn wait_log_for<T>(&self, what: &str, mut found: impl FnMut(&[String]) -> Option<T>) -> T {
        let (lines, cv) = &*self.log;
        let until = Instant::now() + self.deadline;
        let mut lines = lines.lock().unwrap();
        loop {
            if let Some(t) = found(&lines) {
                return t;
            }
            let now = Instant::now();
            assert!(
                now < until && lines.last().is_none_or(|l| l != EOF),
                "no log line with {what:?}; the log:\n{}",
                lines.join("\n")
            );
            lines = cv.wait_timeout(lines, until - now).unwrap().0;
        }
    }

    /// The next line (after those already matched) that contains `what`.
    pub fn wait_line(&mut self, what: &str) -> String {
        self.wait_line_where(what, |l| l.contains(what))
    }

    /// The next line (after those already matched) that `pred` accepts; `what` names
    /// it in the failure.
    pub fn wait_line_where(&mut self, what: &str, pred: impl Fn(&str) -> bool) -> String {
        let from = self.cursor;
        let (at, line) = self.wait_log_for(what, |lines| {
            lines[from.min(lines.len())..]
                .iter()
                .position(|l| l != EOF && pred(l))
                .map(|i| (from + i, lines[from + i].clone()))
        });
        self.cursor = at + 1;
        line
    }

    /// Wait for the binary to exit (with the deadline): its exit code and every stderr
    /// line.
    pub fn finish(&mut self) -> (Option<i32>, Vec<String>) {
        let lines = self.all_lines();
        (self.exit_code(), lines)
    }

    /// The first line of the whole log that contains `what`, waiting for it.
    pub fn wait_log(&self, what: &str) -> String {
        self.wait_log_for(what, |lines| {
            lines
                .iter()
                .find(|l| l.contains(what) && *l != EOF)
                .cloned()
        })
    }

    /// Wait until at least `n` lines contain `what`.
    pub fn wait_log_count(&self, what: &str, n: usize) {
        self.wait_log_for(&format!("{n} x {what}"), |lines| {
            (lines.iter().filter(|l| l.contains(what)).count() >= n).then_some(())
        })
    }

    /// How many lines so far contain `what`.
    pub fn count_log(&self, what: &str) -> usize {
        self.seen().iter().filter(|l| l.contains(what)).count()
    }

    /// Every stderr line read so far.
    pub fn seen(&self) -> Vec<String> {
        let lines = self.log.0.lock().unwrap();
        lines.iter().filter(|l| *l != EOF).cloned().collect()
    }

    /// Every stderr line, once stderr closed (the binary exited), waiting for that.
    pub fn all_lines(&self) -> Vec<String> {
        self.wait_log_for("the end of stderr", |lines| {
            (lines.last().is_some_and(|l| l == EOF)).then_some(())
        });
        self.seen()
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
        let deadline = Instant::now() + self.deadline;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code();
            }
            assert!(Instant::now() < deadline, "the binary did not exit");
            std::thread::yield_now();
        }
    }

    /// The binary's thread count (`Threads:` in /proc/PID/status).
    pub fn threads(&self) -> usize {
        threads_of(&format!("/proc/{}/status", self.child.id()))
    }
}

/// The `Threads:` figure of a /proc status file (`/proc/self/status` for this
/// process).
pub fn threads_of(path: &str) -> usize {
    let status = std::fs::read_to_string(path).expect("a /proc status file");
    status
        .lines()
        .find_map(|l| l.strip_prefix("Threads:"))
        .and_then(|n| n.trim().parse().ok())
        .expect("a Threads line")
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
