//! `GET /metrics`: a snapshot of the runner's figures rendered in the Prometheus text
//! exposition format (version 0.0.4).

use std::collections::BTreeMap;
use std::fmt::Write;
use std::time::Duration;

use crate::stats::Stats;

/// Upper bounds, in seconds, of the handler latency histogram buckets (`+Inf` is implied).
pub const LATENCY_BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// The `Content-Type` of [`render_metrics`]'s output.
pub const METRICS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// A latency histogram with the fixed [`LATENCY_BUCKETS`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Histogram {
    /// Observations per bucket, not cumulative: `buckets[i]` counts values above
    /// `LATENCY_BUCKETS[i - 1]` and at most `LATENCY_BUCKETS[i]`.
    pub buckets: [u64; LATENCY_BUCKETS.len()],
    /// Every observation, those above the last bucket included.
    pub count: u64,
    /// Sum of the observations, in seconds.
    pub sum_seconds: f64,
}

impl Histogram {
    /// Record one observation.
    pub fn observe(&mut self, d: Duration) {
        let s = d.as_secs_f64();
        if let Some(i) = LATENCY_BUCKETS.iter().position(|&b| s <= b) {
            self.buckets[i] += 1;
        }
        self.count += 1;
        self.sum_seconds += s;
    }
}

/// The figures `GET /metrics` shows, copied out of the reactor's counters.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MetricsSnapshot {
    /// WebSocket connections open now.
    pub connections_open: u64,
    /// WebSocket connections accepted since start.
    pub connections_total: u64,
    /// Data messages received from clients.
    pub messages_in: u64,
    /// Data messages sent to clients.
    pub messages_out: u64,
    /// Bytes read from WebSocket sockets.
    pub bytes_in: u64,
    /// Bytes written to WebSocket sockets.
    pub bytes_out: u64,
    /// Bytes queued for writing, summed over connections.
    pub queued_bytes_sum: u64,
    /// The largest single write queue.
    pub queued_bytes_max: u64,
    /// Pipelines suspended now (handlers waiting without a thread).
    pub handlers_waiting: u64,
    /// Under `--cluster`: whether Redis is out of reach now (`None` without a cluster).
    pub cluster_degraded: Option<bool>,
    /// The most bytes any one connection has had queued at once since start.
    pub queued_bytes_peak: u64,
    /// The largest read-side buffer any one connection has held since start.
    pub read_buffered_peak: u64,
    /// Handler latency by event name.
    pub handler_latency: BTreeMap<String, Histogram>,
    /// Response frames sent, by the envelope's `statusCode`.
    pub responses_by_status: BTreeMap<u16, u64>,
    /// Close frames sent, by close code.
    pub close_codes_sent: BTreeMap<u16, u64>,
    /// Deliveries dropped because their connection was gone (generation check).
    pub stale_dropped: u64,
    /// Connections closed with 1008 for staying over the queued-bytes cap.
    pub backpressure_closes: u64,
    /// Pongs replaced by a later ping's while the peer was not reading.
    pub pongs_coalesced: u64,
    /// Connections shed at accept (out of file descriptors) or refused by the
    /// management connection cap.
    pub connections_shed: u64,
    /// Refused upgrade handshakes, by reason label (e.g. `HandshakeError::reason`).
    pub handshakes_rejected: BTreeMap<String, u64>,
}

impl From<&Stats> for MetricsSnapshot {
    /// The reactor's figures (a [`Stats`] snapshot with the live figures filled in);
    /// the application adds its own (`App::fill_metrics`).
    fn from(s: &Stats) -> MetricsSnapshot {
        MetricsSnapshot {
            connections_open: s.open,
            connections_total: s.accepted,
            messages_in: s.messages_in,
            messages_out: s.messages_out,
            bytes_in: s.bytes_in,
            bytes_out: s.bytes_out,
            queued_bytes_sum: s.queued_bytes_sum,
            queued_bytes_max: s.queued_bytes_max,
            close_codes_sent: s.close_codes_sent.clone(),
            stale_dropped: s.stale_dropped,
            backpressure_closes: s.backpressure_closes,
            pongs_coalesced: s.pongs_coalesced,
            connections_shed: s.fd_shed + s.mgmt_refused,
            handlers_waiting: s.waiting,
            queued_bytes_peak: s.queued_bytes_peak,
            read_buffered_peak: s.head_buffered_peak.max(s.message_buffered_peak),
            handshakes_rejected: s
                .handshakes_rejected_by_reason
                .iter()
                .map(|(k, v)| ((*k).to_string(), *v))
                .collect(),
            ..MetricsSnapshot::default()
        }
    }
}

/// Render a snapshot in the Prometheus text format: one `# HELP` and `# TYPE` line per
/// family, label values escaped, histograms as cumulative `_bucket{le=...}` series plus
/// `_sum` and `_count`.
pub fn render_metrics(m: &MetricsSnapshot) -> String {
    let mut out = String::with_capacity(4096);
    let p = "configurapi_ws_";
    let scalars = [
        (
            "connections_open",
            "gauge",
            "WebSocket connections open now.",
            m.connections_open,
        ),
        (
            "connections_total",
            "counter",
            "WebSocket connections accepted since start.",
            m.connections_total,
        ),
        (
            "messages_received_total",
            "counter",
            "Data messages received from clients.",
            m.messages_in,
        ),
        (
            "messages_sent_total",
            "counter",
            "Data messages sent to clients.",
            m.messages_out,
        ),
        (
            "bytes_received_total",
            "counter",
            "Bytes read from WebSocket connections.",
            m.bytes_in,
        ),
        (
            "bytes_sent_total",
            "counter",
            "Bytes written to WebSocket connections.",
            m.bytes_out,
        ),
        (
            "queued_bytes",
            "gauge",
            "Bytes queued for writing, summed over connections.",
            m.queued_bytes_sum,
        ),
        (
            "queued_bytes_max",
            "gauge",
            "Bytes queued for writing on the most backed-up connection.",
            m.queued_bytes_max,
        ),
        (
            "handlers_waiting",
            "gauge",
            "Requests whose handler waits (a timer, a reply, room) holding no thread.",
            m.handlers_waiting,
        ),
        (
            "queued_bytes_peak",
            "gauge",
            "The most bytes any one connection has had queued for writing at once since start.",
            m.queued_bytes_peak,
        ),
        (
            "read_buffered_peak",
            "gauge",
            "The largest read-side buffer (upgrade head or message being reassembled) any one connection has held since start.",
            m.read_buffered_peak,
        ),
        (
            "stale_deliveries_dropped_total",
            "counter",
            "Deliveries dropped because their connection was gone.",
            m.stale_dropped,
        ),
        (
            "backpressure_closes_total",
            "counter",
            "Connections closed with 1008 for staying over the queued-bytes cap.",
            m.backpressure_closes,
        ),
        (
            "pongs_coalesced_total",
            "counter",
            "Pongs replaced by a later ping's while the peer was not reading.",
            m.pongs_coalesced,
        ),
        (
            "connections_shed_total",
            "counter",
            "Connections answered 503 and closed at accept: out of file descriptors, or over the management connection cap.",
            m.connections_shed,
        ),
        (
            "log_lines_dropped_total",
            "counter",
            "Log lines dropped because stderr did not keep up (docs/operations.md#logs).",
            crate::logging::dropped_lines(),
        ),
    ];
    for (name, kind, help, value) in scalars {
        let _ = writeln!(out, "# HELP {p}{name} {help}");
        let _ = writeln!(out, "# TYPE {p}{name} {kind}");
        let _ = writeln!(out, "{p}{name} {value}");
    }
    if let Some(d) = m.cluster_degraded {
        let _ = writeln!(
            out,
            "# HELP {p}cluster_degraded 1 while --cluster cannot reach Redis (local connections are still served)."
        );
        let _ = writeln!(out, "# TYPE {p}cluster_degraded gauge");
        let _ = writeln!(out, "{p}cluster_degraded {}", u8::from(d));
    }
    let _ = writeln!(
        out,
        "# HELP {p}build_info The runner's version, as a label; always 1."
    );
    let _ = writeln!(out, "# TYPE {p}build_info gauge");
    let _ = writeln!(
        out,
        "{p}build_info{{version=\"{}\"}} 1",
        escape_label(env!("CARGO_PKG_VERSION"))
    );
    render_process(&mut out, &ProcessStats::read());
    labelled(
        &mut out,
        p,
        "responses_total",
        "Response frames sent, by status code.",
        "status_code",
        m.responses_by_status
            .iter()
            .map(|(k, v)| (k.to_string(), *v)),
    );
    labelled(
        &mut out,
        p,
        "close_codes_sent_total",
        "Close frames sent, by close code.",
        "code",
        m.close_codes_sent.iter().map(|(k, v)| (k.to_string(), *v)),
    );
    labelled(
        &mut out,
        p,
        "handshakes_rejected_total",
        "Upgrade handshakes refused, by reason.",
        "reason",
        m.handshakes_rejected.iter().map(|(k, v)| (k.clone(), *v)),
    );

    let name = format!("{p}handler_duration_seconds");
    let _ = writeln!(
        out,
        "# HELP {name} Handler latency by event name, in seconds."
    );
    let _ = writeln!(out, "# TYPE {name} histogram");
    for (event, h) in &m.handler_latency {
        let event = escape_label(event);
        let mut cumulative = 0;
        for (le, n) in LATENCY_BUCKETS.iter().zip(h.buckets.iter()) {
            cumulative += n;
            let _ = writeln!(
                out,
                "{name}_bucket{{event=\"{event}\",le=\"{}\"}} {cumulative}",
                float(*le)
            );
        }
        let _ = writeln!(
            out,
            "{name}_bucket{{event=\"{event}\",le=\"+Inf\"}} {}",
            h.count
        );
        let _ = writeln!(
            out,
            "{name}_sum{{event=\"{event}\"}} {}",
            float(h.sum_seconds)
        );
        let _ = writeln!(out, "{name}_count{{event=\"{event}\"}} {}", h.count);
    }
    out
}

/// The standard `process_*` figures, read from `/proc/self` when the metrics are asked
/// for. A figure that cannot be read (another system) is left out, not shown as 0.
#[derive(Debug, Default, PartialEq)]
struct ProcessStats {
    resident_bytes: Option<u64>,
    open_fds: Option<u64>,
    cpu_seconds: Option<f64>,
    start_time_seconds: Option<f64>,
}

/// Clock ticks a second in `/proc/<pid>/stat` (`USER_HZ`): 100 on every Linux
/// architecture that matters here; asking `sysconf` would take `unsafe`.
const USER_HZ: f64 = 100.0;

impl ProcessStats {
    fn read() -> ProcessStats {
        let stat = std::fs::read_to_string("/proc/self/stat").ok();
        // Fields after the command name, which is in parentheses and may hold spaces:
        // [0] is field 3 (state), so utime (14) is [11], stime [12], starttime (22) [19].
        let fields: Vec<&str> = stat
            .as_deref()
            .and_then(|s| s.rsplit_once(')'))
            .map(|(_, rest)| rest.split_whitespace().collect())
            .unwrap_or_default();
        let field = |i: usize| fields.get(i).and_then(|v| v.parse::<u64>().ok());
        let boot_time = std::fs::read_to_string("/proc/stat").ok().and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("btime "))
                .and_then(|v| v.trim().parse::<u64>().ok())
        });
        ProcessStats {
            resident_bytes: std::fs::read_to_string("/proc/self/status")
                .ok()
                .and_then(|s| {
                    s.lines()
                        .find_map(|l| l.strip_prefix("VmRSS:"))
                        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
                })
                .map(|kib| kib * 1024),
            open_fds: std::fs::read_dir("/proc/self/fd")
                .ok()
                // Less the descriptor read_dir itself holds open.
                .map(|d| d.count().saturating_sub(1) as u64),
            cpu_seconds: field(11)
                .zip(field(12))
                .map(|(u, s)| (u + s) as f64 / USER_HZ),
            start_time_seconds: field(19)
                .zip(boot_time)
                .map(|(ticks, boot)| boot as f64 + ticks as f64 / USER_HZ),
        }
    }
}

fn render_process(out: &mut String, s: &ProcessStats) {
    let families = [
        (
            "process_resident_memory_bytes",
            "gauge",
            "Resident memory size in bytes.",
            s.resident_bytes.map(|v| v.to_string()),
        ),
        (
            "process_open_fds",
            "gauge",
            "Open file descriptors.",
            s.open_fds.map(|v| v.to_string()),
        ),
        (
            "process_cpu_seconds_total",
            "counter",
            "User and system CPU time spent, in seconds.",
            s.cpu_seconds.map(float),
        ),
        (
            "process_start_time_seconds",
            "gauge",
            "Start time of the process since the Unix epoch, in seconds.",
            s.start_time_seconds.map(float),
        ),
    ];
    for (name, kind, help, value) in families {
        if let Some(v) = value {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} {kind}");
            let _ = writeln!(out, "{name} {v}");
        }
    }
}

fn labelled(
    out: &mut String,
    prefix: &str,
    name: &str,
    help: &str,
    label: &str,
    series: impl Iterator<Item = (String, u64)>,
) {
    let _ = writeln!(out, "# HELP {prefix}{name} {help}");
    let _ = writeln!(out, "# TYPE {prefix}{name} counter");
    for (k, v) in series {
        let _ = writeln!(
            out,
            "{prefix}{name}{{{label}=\"{}\"}} {v}",
            escape_label(&k)
        );
    }
}

/// Label values escape backslash, double quote and line feed.
fn escape_label(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\\' => o.push_str("\\\\"),
            '"' => o.push_str("\\\""),
            '\n' => o.push_str("\\n"),
            c => o.push(c),
        }
    }
    o
}

/// Go-style float text: `+Inf`, `-Inf`, `NaN`, else Rust's shortest decimal (which never
/// uses an exponent).
fn float(v: f64) -> String {
    if v.is_nan() {
        "NaN".to_string()
    } else if v.is_infinite() {
        if v > 0.0 { "+Inf" } else { "-Inf" }.to_string()
    } else {
        v.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> MetricsSnapshot {
        let mut m = MetricsSnapshot {
            connections_open: 2,
            connections_total: 7,
            messages_in: 10,
            messages_out: 11,
            bytes_in: 1000,
            bytes_out: 2000,
            queued_bytes_sum: 300,
            queued_bytes_max: 200,
            handlers_waiting: 5,
            queued_bytes_peak: 250,
            read_buffered_peak: 4096,
            stale_dropped: 1,
            ..MetricsSnapshot::default()
        };
        let mut h = Histogram::default();
        h.observe(Duration::from_micros(300));
        h.observe(Duration::from_millis(3));
        h.observe(Duration::from_secs(20));
        m.handler_latency.insert("get\"x\\\n".to_string(), h);
        m.responses_by_status.insert(200, 9);
        m.responses_by_status.insert(501, 2);
        m.close_codes_sent.insert(1000, 3);
        m.handshakes_rejected
            .insert("upgrade required".to_string(), 4);
        m
    }

    #[test]
    fn renders_every_family_with_help_and_type() {
        let text = render_metrics(&sample());
        for line in [
            "# TYPE configurapi_ws_connections_open gauge",
            "configurapi_ws_connections_open 2",
            "# TYPE configurapi_ws_connections_total counter",
            "configurapi_ws_connections_total 7",
            "configurapi_ws_messages_received_total 10",
            "configurapi_ws_messages_sent_total 11",
            "configurapi_ws_bytes_received_total 1000",
            "configurapi_ws_bytes_sent_total 2000",
            "configurapi_ws_queued_bytes 300",
            "configurapi_ws_queued_bytes_max 200",
            "# TYPE configurapi_ws_handlers_waiting gauge",
            "configurapi_ws_handlers_waiting 5",
            "configurapi_ws_queued_bytes_peak 250",
            "configurapi_ws_read_buffered_peak 4096",
            "configurapi_ws_stale_deliveries_dropped_total 1",
            "configurapi_ws_responses_total{status_code=\"200\"} 9",
            "configurapi_ws_responses_total{status_code=\"501\"} 2",
            "configurapi_ws_close_codes_sent_total{code=\"1000\"} 3",
            "configurapi_ws_handshakes_rejected_total{reason=\"upgrade required\"} 4",
            "# TYPE configurapi_ws_handler_duration_seconds histogram",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing {line:?} in\n{text}"
            );
        }
        // Every family has HELP then TYPE, and every sample line belongs to a TYPEd family.
        let mut typed = Vec::new();
        let mut last_help = None;
        for l in text.lines() {
            if let Some(rest) = l.strip_prefix("# HELP ") {
                last_help = rest.split(' ').next().map(str::to_string);
            } else if let Some(rest) = l.strip_prefix("# TYPE ") {
                let name = rest.split(' ').next().unwrap().to_string();
                assert_eq!(last_help.as_deref(), Some(name.as_str()));
                typed.push(name);
            } else {
                let metric = l.split(['{', ' ']).next().unwrap();
                assert!(
                    typed.iter().any(|t| metric == t
                        || metric
                            .strip_prefix(t.as_str())
                            .is_some_and(|s| { ["_bucket", "_sum", "_count"].contains(&s) })),
                    "{l}"
                );
            }
        }
        // 20 runner families, build_info and the four process families (on Linux).
        let process = usize::from(cfg!(target_os = "linux")) * 4;
        assert_eq!(typed.len(), 21 + process, "{typed:?}");
    }

    #[test]
    fn process_figures_and_build_info() {
        let text = render_metrics(&MetricsSnapshot::default());
        let line = format!(
            "configurapi_ws_build_info{{version=\"{}\"}} 1",
            env!("CARGO_PKG_VERSION")
        );
        assert!(text.lines().any(|l| l == line), "{text}");
        if !cfg!(target_os = "linux") {
            return;
        }
        let value = |name: &str| -> f64 {
            let l = text
                .lines()
                .find(|l| l.starts_with(&format!("{name} ")))
                .unwrap_or_else(|| panic!("no {name} in\n{text}"));
            l.rsplit(' ').next().unwrap().parse().unwrap()
        };
        assert!(value("process_resident_memory_bytes") > 1024.0 * 1024.0);
        // stdin, stdout, stderr at least.
        assert!(value("process_open_fds") >= 3.0);
        assert!(value("process_cpu_seconds_total") >= 0.0);
        // Started in the past, and after 2020.
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        let started = value("process_start_time_seconds");
        assert!(
            started > 1_577_836_800.0 && started <= now + 1.0,
            "{started}"
        );
    }

    #[test]
    fn histogram_is_cumulative_with_escaped_labels() {
        let text = render_metrics(&sample());
        let e = "event=\"get\\\"x\\\\\\n\"";
        let name = "configurapi_ws_handler_duration_seconds";
        for line in [
            format!("{name}_bucket{{{e},le=\"0.0005\"}} 1"),
            format!("{name}_bucket{{{e},le=\"0.0025\"}} 1"),
            format!("{name}_bucket{{{e},le=\"0.005\"}} 2"),
            format!("{name}_bucket{{{e},le=\"10\"}} 2"),
            format!("{name}_bucket{{{e},le=\"+Inf\"}} 3"),
            format!("{name}_count{{{e}}} 3"),
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing {line:?} in\n{text}"
            );
        }
        let sum = text
            .lines()
            .find(|l| l.starts_with(&format!("{name}_sum")))
            .unwrap();
        let v: f64 = sum.rsplit(' ').next().unwrap().parse().unwrap();
        assert!((v - 20.0033).abs() < 1e-9, "{sum}");
        assert_eq!(
            text.lines()
                .filter(|l| l.starts_with(&format!("{name}_bucket")))
                .count(),
            LATENCY_BUCKETS.len() + 1
        );
    }

    #[test]
    fn empty_snapshot_renders_zeroes() {
        let text = render_metrics(&MetricsSnapshot::default());
        assert!(text.contains("configurapi_ws_connections_open 0\n"));
        assert!(text.ends_with("# TYPE configurapi_ws_handler_duration_seconds histogram\n"));
        assert_eq!(float(f64::INFINITY), "+Inf");
        assert_eq!(float(f64::NAN), "NaN");
        assert_eq!(float(0.1), "0.1");
    }
}
