//! The runner's logger (docs/operations.md#logs): one line per record on stderr, as
//! text or as a JSON object, with an RFC 3339 UTC timestamp, filtered per target the
//! way `RUST_LOG` filters (`configurapi_runner_ws=debug,mio=warn`). The access line
//! (one per handled message) has a switch of its own, `--access-log`.
//!
//! Lines are formatted on the thread that logs and written in batches by a thread of
//! their own ([`Writer`]): a `write(2)` per line on the reactor thread cost about 30%
//! of the messages per second with the access line on. The queue is bounded; when
//! stderr does not keep up, lines are dropped and counted rather than stalling the
//! reactor (docs/operations.md#logs).

use std::fmt::Write as _;
use std::io::Write as _;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime};

use log::{Level, LevelFilter, Log, Metadata, Record};

/// The target of the access lines, so a filter can name them too.
pub const ACCESS_TARGET: &str = "configurapi_runner_ws::access";

/// `--access-log`: on unless turned off (checked before the line is built).
static ACCESS: AtomicBool = AtomicBool::new(true);

/// True when an access line would be written.
#[inline]
pub fn access_enabled() -> bool {
    ACCESS.load(Ordering::Relaxed) && log::log_enabled!(target: ACCESS_TARGET, Level::Info)
}

/// `--log-format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// `2026-12-05T01:30:20.123Z INFO  target: message key=value`.
    Text,
    /// One JSON object a line: `ts`, `level`, `target`, `msg` and the record's fields.
    Json,
}

impl std::str::FromStr for LogFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<LogFormat, String> {
        match s {
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            _ => Err(format!("--log-format: '{s}' is not one of text, json")),
        }
    }
}

/// A level filter per target prefix, the longest prefix winning (the `RUST_LOG`
/// convention, without regular expressions).
#[derive(Debug, Clone, PartialEq)]
pub struct Filter {
    default: LevelFilter,
    /// (target prefix, level), longest prefix first.
    targets: Vec<(String, LevelFilter)>,
}

impl Filter {
    /// `--log-level` with `RUST_LOG`-style directives over it: `level`, `target=level`
    /// or `target` (all levels), comma-separated. A directive that does not parse is
    /// an error naming it, so a typo is not silently ignored.
    pub fn new(default: LevelFilter, directives: Option<&str>) -> Result<Filter, String> {
        let mut f = Filter {
            default,
            targets: Vec::new(),
        };
        for d in directives.unwrap_or("").split(',').map(str::trim) {
            if d.is_empty() {
                continue;
            }
            let level = |v: &str| {
                v.parse::<LevelFilter>()
                    .map_err(|_| format!("RUST_LOG: '{d}': '{v}' is not a log level"))
            };
            match d.split_once('=') {
                Some((target, v)) => f.targets.push((target.to_string(), level(v)?)),
                None => match d.parse::<LevelFilter>() {
                    Ok(l) => f.default = l,
                    Err(_) => f.targets.push((d.to_string(), LevelFilter::Trace)),
                },
            }
        }
        f.targets.sort_by_key(|(t, _)| std::cmp::Reverse(t.len()));
        Ok(f)
    }

    fn level_for(&self, target: &str) -> LevelFilter {
        self.targets
            .iter()
            .find(|(t, _)| {
                target.starts_with(t.as_str())
                    && (target.len() == t.len() || target[t.len()..].starts_with("::"))
            })
            .map_or(self.default, |&(_, l)| l)
    }

    /// The most verbose level any target gets (for `log::set_max_level`).
    fn max(&self) -> LevelFilter {
        self.targets
            .iter()
            .map(|&(_, l)| l)
            .fold(self.default, Ord::max)
    }
}

struct StderrLogger {
    filter: Filter,
    format: LogFormat,
    /// The writer thread's queue; `None` when the thread could not start (lines are
    /// then written where they are logged).
    writer: Option<Writer>,
}

static LOGGER: OnceLock<StderrLogger> = OnceLock::new();

/// Bytes of lines queued for the writer thread at most (some 20,000 access lines).
pub const QUEUE_BYTES: usize = 4 << 20;

/// Queued bytes past which the writer is woken before its linger is over.
const WAKE_BYTES: usize = 64 << 10;

/// After writing, the writer waits this long for more lines before it sleeps, and
/// nothing wakes it meanwhile: on a busy node one wake and one `write` per interval,
/// instead of a wake (and, on a shared core, a switch) per line.
const LINGER: Duration = Duration::from_millis(5);

/// How long a flush (at exit) waits for queued lines to reach stderr.
const FLUSH_WAIT: Duration = Duration::from_secs(5);

/// Lines dropped because the queue was full, not yet reported.
static DROPPED: AtomicU64 = AtomicU64::new(0);
/// Lines dropped since start (reported or not).
static DROPPED_TOTAL: AtomicU64 = AtomicU64::new(0);

/// Log lines dropped since start because stderr did not keep up with them.
pub fn dropped_lines() -> u64 {
    DROPPED_TOTAL.load(Ordering::Relaxed)
}

/// What the loggers and the writer thread share.
#[derive(Default)]
struct Queue {
    lines: Vec<String>,
    bytes: usize,
    /// Lines queued since start, and of those, written (and flushed) so far.
    pushed: u64,
    written: u64,
    /// The writer sleeps until woken (nothing queued when it last looked).
    idle: bool,
    /// A flush waits: write now, linger or not.
    flush_wanted: bool,
}

/// The queue to the writer thread, which writes batches of lines through a buffer
/// and flushes after each: a burst becomes a few large writes, a quiet server still
/// shows each line at once.
struct Writer {
    state: Arc<(Mutex<Queue>, Condvar, Condvar)>,
    max_bytes: usize,
}

fn lock_queue(m: &Mutex<Queue>) -> std::sync::MutexGuard<'_, Queue> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Writer {
    fn start(format: LogFormat) -> Option<Writer> {
        Writer::spawn(format, std::io::stderr(), QUEUE_BYTES)
    }

    fn spawn(
        format: LogFormat,
        out: impl std::io::Write + Send + 'static,
        max_bytes: usize,
    ) -> Option<Writer> {
        let state = Arc::new((Mutex::new(Queue::default()), Condvar::new(), Condvar::new()));
        let shared = Arc::clone(&state);
        std::thread::Builder::new()
            .name("log-writer".into())
            .spawn(move || write_lines(&shared, format, out))
            .ok()?;
        Some(Writer { state, max_bytes })
    }

    /// Queues a line; a full queue drops it (counted) instead of waiting: a stalled
    /// stderr (a pipe nobody reads) must not stall the reactor, which logs.
    fn send(&self, line: String) {
        let (queue, work, _) = &*self.state;
        let mut q = lock_queue(queue);
        if q.bytes + line.len() > self.max_bytes {
            drop(q);
            DROPPED.fetch_add(1, Ordering::Relaxed);
            DROPPED_TOTAL.fetch_add(1, Ordering::Relaxed);
            return;
        }
        q.bytes += line.len();
        q.lines.push(line);
        q.pushed += 1;
        if q.idle || q.bytes >= WAKE_BYTES {
            q.idle = false;
            work.notify_one();
        }
    }

    /// Waits (up to [`FLUSH_WAIT`]) until every line queued so far is on stderr.
    fn flush(&self) {
        let (queue, work, done) = &*self.state;
        let deadline = Instant::now() + FLUSH_WAIT;
        let mut q = lock_queue(queue);
        let target = q.pushed;
        q.flush_wanted = true;
        q.idle = false;
        work.notify_one();
        while q.written < target {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return;
            }
            q = done
                .wait_timeout(q, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }
}

/// The writer thread: takes every queued line at once, writes them and flushes, then
/// lingers; dropped lines are reported in a line of their own with the next batch.
fn write_lines(
    state: &(Mutex<Queue>, Condvar, Condvar),
    format: LogFormat,
    out: impl std::io::Write,
) {
    let (queue, work, done) = state;
    let mut out = std::io::BufWriter::with_capacity(64 * 1024, out);
    let mut batch = Vec::new();
    let mut q = lock_queue(queue);
    loop {
        if q.lines.is_empty() && !q.flush_wanted && DROPPED.load(Ordering::Relaxed) == 0 {
            q.idle = true;
            q = work.wait(q).unwrap_or_else(|e| e.into_inner());
            continue;
        }
        std::mem::swap(&mut q.lines, &mut batch);
        q.bytes = 0;
        q.flush_wanted = false;
        let upto = q.pushed;
        drop(q);
        for line in batch.drain(..) {
            let _ = out.write_all(line.as_bytes());
        }
        report_dropped(&mut out, format);
        let _ = out.flush();
        q = lock_queue(queue);
        q.written = upto;
        done.notify_all();
        if q.lines.is_empty() && !q.flush_wanted {
            q = work
                .wait_timeout(q, LINGER)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }
}

fn report_dropped(out: &mut impl std::io::Write, format: LogFormat) {
    let n = DROPPED.swap(0, Ordering::Relaxed);
    if n == 0 {
        return;
    }
    let line = format_line(
        format,
        SystemTime::now(),
        &Record::builder()
            .level(Level::Warn)
            .target("configurapi_runner_ws::logging")
            .args(format_args!(
                "{n} log lines dropped: stderr did not keep up (the queue was full)"
            ))
            .build(),
    );
    let _ = out.write_all(line.as_bytes());
}

/// Installs the logger unless the program has one already (a program embedding the
/// runner may bring its own); the level and access switch apply either way.
pub fn install(filter: Filter, format: LogFormat, access: bool) {
    ACCESS.store(access, Ordering::Relaxed);
    log::set_max_level(filter.max());
    let logger = LOGGER.get_or_init(|| StderrLogger {
        filter,
        format,
        writer: Writer::start(format),
    });
    let _ = log::set_logger(logger);
}

/// Writes out every line logged so far (waiting a few seconds at most, should stderr
/// be stalled): before the process exits, and before a line printed straight to
/// stderr, so it comes after them.
pub fn flush() {
    log::logger().flush();
}

impl Log for StderrLogger {
    fn enabled(&self, meta: &Metadata<'_>) -> bool {
        meta.level() <= self.filter.level_for(meta.target())
    }

    fn log(&self, record: &Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let line = format_line(self.format, SystemTime::now(), record);
        match &self.writer {
            Some(w) => w.send(line),
            // One write per line, so lines from threads do not interleave.
            None => {
                let _ = std::io::stderr().lock().write_all(line.as_bytes());
            }
        }
    }

    fn flush(&self) {
        if let Some(w) = &self.writer {
            w.flush();
        }
    }
}

/// One log line, with its newline.
fn format_line(format: LogFormat, now: SystemTime, record: &Record<'_>) -> String {
    let ts = rfc3339(now);
    match format {
        LogFormat::Text => {
            // Straight into the line: no JSON values in between (this runs for every
            // access line, on the thread that answered).
            let mut s = String::with_capacity(128);
            let _ = write!(
                s,
                "{ts} {:<5} {}: {}",
                record.level(),
                record.target(),
                record.args()
            );
            let _ = record.key_values().visit(&mut TextFields(&mut s));
            s.push('\n');
            s
        }
        LogFormat::Json => {
            let mut o = serde_json::Map::new();
            o.insert("ts".into(), ts.into());
            o.insert("level".into(), record.level().as_str().into());
            o.insert("target".into(), record.target().into());
            o.insert("msg".into(), record.args().to_string().into());
            let mut fields = Fields(Vec::new());
            let _ = record.key_values().visit(&mut fields);
            for (k, v) in fields.0 {
                // The four keys above are the line's own; a field cannot replace them.
                o.entry(k).or_insert(v);
            }
            let mut s = serde_json::Value::Object(o).to_string();
            s.push('\n');
            s
        }
    }
}

/// A record's key-values appended as ` key=value` (strings quoted and escaped, numbers
/// and booleans as they are, as in JSON).
struct TextFields<'a>(&'a mut String);

impl<'kvs> log::kv::VisitSource<'kvs> for TextFields<'_> {
    fn visit_pair(
        &mut self,
        key: log::kv::Key<'kvs>,
        value: log::kv::Value<'kvs>,
    ) -> Result<(), log::kv::Error> {
        let s = &mut *self.0;
        let _ = if let Some(n) = value.to_u64() {
            write!(s, " {key}={n}")
        } else if let Some(n) = value.to_i64() {
            write!(s, " {key}={n}")
        } else if let Some(b) = value.to_bool() {
            write!(s, " {key}={b}")
        } else if let Some(n) = value.to_f64().and_then(serde_json::Number::from_f64) {
            write!(s, " {key}={n}")
        } else if let Some(v) = value.to_borrowed_str() {
            write!(s, " {key}={v:?}")
        } else {
            write!(s, " {key}={:?}", value.to_string())
        };
        Ok(())
    }
}

/// A record's key-values as JSON values (numbers and booleans kept as such).
struct Fields(Vec<(String, serde_json::Value)>);

impl<'kvs> log::kv::VisitSource<'kvs> for Fields {
    fn visit_pair(
        &mut self,
        key: log::kv::Key<'kvs>,
        value: log::kv::Value<'kvs>,
    ) -> Result<(), log::kv::Error> {
        let v = if let Some(n) = value.to_u64() {
            n.into()
        } else if let Some(n) = value.to_i64() {
            n.into()
        } else if let Some(b) = value.to_bool() {
            b.into()
        } else if let Some(x) = value.to_f64() {
            serde_json::Number::from_f64(x).map_or_else(|| value.to_string().into(), Into::into)
        } else {
            value.to_string().into()
        };
        self.0.push((key.as_str().to_string(), v));
        Ok(())
    }
}

/// `t` as RFC 3339 in UTC with milliseconds: `2026-12-05T01:30:20.123Z`, the same
/// form the management API writes (`toISOString`'s), so one function writes both.
pub use crate::mgmt::iso8601 as rfc3339;

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;
    use std::time::UNIX_EPOCH;

    #[test]
    fn timestamps_are_rfc3339_utc() {
        let at = |s: u64, ms: u64| {
            rfc3339(UNIX_EPOCH + Duration::from_secs(s) + Duration::from_millis(ms))
        };
        assert_eq!(at(0, 0), "1970-01-01T00:00:00.000Z");
        // 2000-02-29 (a leap day of a century leap year) 12:34:56.789.
        assert_eq!(at(951_827_696, 789), "2000-02-29T12:34:56.789Z");
        // 2026-12-05T01:30:20Z, and the last second of a year.
        assert_eq!(at(1_796_434_220, 5), "2026-12-05T01:30:20.005Z");
        assert_eq!(at(1_767_225_599, 999), "2025-12-31T23:59:59.999Z");
    }

    #[test]
    fn filters_take_the_longest_matching_target() {
        let f = Filter::new(
            LevelFilter::Info,
            Some("mio=warn, configurapi_runner_ws=debug,configurapi_runner_ws::access=off"),
        )
        .unwrap();
        assert_eq!(f.level_for("mio::poll"), LevelFilter::Warn);
        assert_eq!(
            f.level_for("configurapi_runner_ws::reactor"),
            LevelFilter::Debug
        );
        assert_eq!(f.level_for(ACCESS_TARGET), LevelFilter::Off);
        // A prefix matches whole path segments only.
        assert_eq!(f.level_for("mioxyz"), LevelFilter::Info);
        assert_eq!(f.level_for("rustls"), LevelFilter::Info);
        assert_eq!(f.max(), LevelFilter::Debug);
        let f = Filter::new(LevelFilter::Info, Some("error,rustls")).unwrap();
        assert_eq!(f.level_for("configurapi"), LevelFilter::Error);
        assert_eq!(f.level_for("rustls::conn"), LevelFilter::Trace);
        assert!(Filter::new(LevelFilter::Info, Some("mio=loud"))
            .unwrap_err()
            .contains("mio=loud"));
    }

    /// A stderr that blocks until `open` is sent, and says when a write first waits.
    struct Gated {
        out: std::sync::Arc<std::sync::Mutex<Vec<u8>>>,
        entered: Option<mpsc::Sender<()>>,
        open: mpsc::Receiver<()>,
    }

    impl std::io::Write for Gated {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            if let Some(e) = self.entered.take() {
                let _ = e.send(());
                let _ = self.open.recv();
            }
            self.out.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_stalled_stderr_drops_and_counts_lines_and_a_flush_writes_the_rest() {
        let out = std::sync::Arc::default();
        let (entered_tx, entered) = mpsc::channel();
        let (open_tx, open) = mpsc::channel();
        let gated = Gated {
            out: std::sync::Arc::clone(&out),
            entered: Some(entered_tx),
            open,
        };
        // Room for four 9-byte lines.
        let w = Writer::spawn(LogFormat::Text, gated, 40).unwrap();
        let before = dropped_lines();
        w.send("first\n".into());
        // The writer thread now waits inside its write: the queue fills, then drops.
        entered.recv_timeout(Duration::from_secs(60)).unwrap();
        for i in 0..4 {
            w.send(format!("queued {i}\n"));
        }
        for _ in 0..3 {
            w.send("dropped\n".into());
        }
        assert_eq!(dropped_lines() - before, 3);
        open_tx.send(()).unwrap();
        w.flush();
        let text = String::from_utf8(out.lock().unwrap().clone()).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            &lines[..5],
            ["first", "queued 0", "queued 1", "queued 2", "queued 3"],
            "{text}"
        );
        assert_eq!(lines.len(), 6, "{text}");
        assert!(
            lines[5].contains(" WARN  configurapi_runner_ws::logging: 3 log lines dropped"),
            "{text}"
        );
        assert!(!text.contains("dropped\n"), "{text}");
    }

    #[test]
    fn json_lines_carry_the_record_and_its_fields() {
        let record = Record::builder()
            .level(Level::Warn)
            .target("t")
            .args(format_args!("hello \"x\""))
            .key_values(&[("status", 404u64)])
            .build();
        let kvs: [(&str, log::kv::Value<'_>); 3] = [
            ("conn", "a \"b\"".into()),
            ("latency_ms", 0.082f64.into()),
            ("ok", true.into()),
        ];
        let rich = Record::builder()
            .level(Level::Info)
            .target("t")
            .args(format_args!("handled"))
            .key_values(&kvs)
            .build();
        assert_eq!(
            format_line(LogFormat::Text, UNIX_EPOCH, &rich),
            "1970-01-01T00:00:00.000Z INFO  t: handled conn=\"a \\\"b\\\"\" latency_ms=0.082 ok=true\n"
        );
        let v: serde_json::Value =
            serde_json::from_str(&format_line(LogFormat::Json, UNIX_EPOCH, &rich)).unwrap();
        assert_eq!(v["conn"], "a \"b\"");
        assert_eq!(v["latency_ms"], 0.082);
        assert_eq!(v["ok"], true);
        let line = format_line(LogFormat::Json, UNIX_EPOCH, &record);
        assert!(line.ends_with('\n'));
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["ts"], "1970-01-01T00:00:00.000Z");
        assert_eq!(v["level"], "WARN");
        assert_eq!(v["target"], "t");
        assert_eq!(v["msg"], "hello \"x\"");
        assert_eq!(v["status"], 404);
        let text = format_line(LogFormat::Text, UNIX_EPOCH, &record);
        assert_eq!(
            text,
            "1970-01-01T00:00:00.000Z WARN  t: hello \"x\" status=404\n"
        );
    }
}
