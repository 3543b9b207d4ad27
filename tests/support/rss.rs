//! This process's resident set (the in-process server's memory), read from /proc.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// VmRSS of this process, in bytes.
pub fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/self/status");
    kib * 1024
}

/// Samples the process's resident set while an attack runs and reports the peak
/// growth over the level at the start.
pub struct RssPeak {
    base: u64,
    peak: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    sampler: Option<JoinHandle<()>>,
}

impl RssPeak {
    pub fn start() -> RssPeak {
        let base = rss_bytes();
        let peak = Arc::new(AtomicU64::new(base));
        let stop = Arc::new(AtomicBool::new(false));
        let sampler = {
            let (peak, stop) = (peak.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    peak.fetch_max(rss_bytes(), Ordering::Relaxed);
                    // The sampling period, not a synchronisation.
                    std::thread::sleep(Duration::from_millis(1));
                }
            })
        };
        RssPeak {
            base,
            peak,
            stop,
            sampler: Some(sampler),
        }
    }

    /// Stop sampling; the peak growth in bytes.
    pub fn growth(mut self, what: &str) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(j) = self.sampler.take() {
            j.join().unwrap();
        }
        let peak = self.peak.load(Ordering::Relaxed).max(rss_bytes());
        let grew = peak.saturating_sub(self.base);
        eprintln!("{what}: resident set grew by {} KiB at most", grew >> 10);
        grew
    }
}
