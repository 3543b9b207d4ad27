//! The runner's own `/metrics` series: handler latency by route and responses by status
//! (docs/management.md), counted with atomics so recording a message takes no lock.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::configurapi::service::NameMap;
use crate::configurapi::{RouteId, Service};
use crate::mgmt::{Histogram, MetricsSnapshot, LATENCY_BUCKETS};

/// Handler latency by route and responses by status, for `/metrics`. Counted with
/// atomics: recording a message takes no lock (the label set is fixed at start).
pub(super) struct RunnerMetrics {
    /// Index into `latency` of each route name.
    labels: NameMap<usize>,
    /// Index into `latency` of [`UNMATCHED`].
    unmatched: usize,
    /// Index into `latency` of each route, by [`RouteId::index`] (#17: the route the
    /// pipeline ran is known, so recording a message needs no look-up by name).
    by_route: Vec<usize>,
    /// Shared with the metrics of the configs before and after a reload, so a route
    /// that stays keeps its series.
    latency: Vec<(String, Arc<AtomicHistogram>)>,
    /// Responses by status, for statuses under [`STATUS_SLOTS`].
    responses: Arc<Lanes>,
    /// Responses with any other status (a handler may set any `u16`).
    responses_other: Arc<Mutex<BTreeMap<u16, u64>>>,
}

/// Statuses counted without a lock: every status a handler sensibly sets.
const STATUS_SLOTS: usize = 1000;

impl RunnerMetrics {
    pub(super) fn new(service: &Service) -> RunnerMetrics {
        RunnerMetrics::carried(
            service,
            None,
            Arc::new(Lanes::new(STATUS_SLOTS)),
            Arc::default(),
        )
    }

    /// The metrics of a reloaded config: the counters go on, the series of routes
    /// that stay go on, a new route starts its own.
    pub(super) fn reloaded(&self, service: &Service) -> RunnerMetrics {
        RunnerMetrics::carried(
            service,
            Some(self),
            Arc::clone(&self.responses),
            Arc::clone(&self.responses_other),
        )
    }

    fn carried(
        service: &Service,
        old: Option<&RunnerMetrics>,
        responses: Arc<Lanes>,
        responses_other: Arc<Mutex<BTreeMap<u16, u64>>>,
    ) -> RunnerMetrics {
        let mut labels = NameMap::default();
        let mut latency = Vec::new();
        // A route named like UNMATCHED shares its series, as it did when labels were
        // map keys.
        for name in service.route_names().into_iter().chain([UNMATCHED]) {
            if !labels.contains_key(name) {
                let series = old
                    .and_then(|o| o.labels.get(name).map(|&i| Arc::clone(&o.latency[i].1)))
                    .unwrap_or_default();
                labels.insert(name.to_string(), latency.len());
                latency.push((name.to_string(), series));
            }
        }
        let unmatched = labels[UNMATCHED];
        let mut by_route = vec![unmatched; service.route_count()];
        for (name, &i) in &labels {
            if let Some(r) = service.route_named(name) {
                by_route[r.index()] = i;
            }
        }
        RunnerMetrics {
            unmatched,
            by_route,
            labels,
            latency,
            responses,
            responses_other,
        }
    }

    /// Latency of an event answered with `status`, labelled with the route that handled
    /// it ([`Service::route_name`]), [`UNMATCHED`] when none did.
    pub(super) fn record(&self, route: Option<&str>, took: Duration, status: u16) {
        let i = route
            .and_then(|r| self.labels.get(r))
            .copied()
            .unwrap_or(self.unmatched);
        self.latency[i].1.observe(took);
        self.record_status(status);
    }

    /// [`RunnerMetrics::record`] for an event whose route is known (the one its
    /// pipeline ran, [`Service::start_routed`]): the same series, without a look-up.
    pub(super) fn record_route(&self, route: RouteId, took: Duration, status: u16) {
        let i = self.by_route.get(route.index()).copied();
        self.latency[i.unwrap_or(self.unmatched)].1.observe(took);
        self.record_status(status);
    }

    /// An answer that ran no route (a message that could not be decoded): counted by
    /// status only, so `responses_total` adds up to the frames sent.
    pub(super) fn record_status(&self, status: u16) {
        match usize::from(status) {
            i if i < STATUS_SLOTS => self.responses.add(i, 1),
            _ => {
                let mut other = self
                    .responses_other
                    .lock()
                    .unwrap_or_else(|e| e.into_inner());
                *other.entry(status).or_default() += 1;
            }
        }
    }

    /// The series observed so far, as `/metrics` shows them.
    pub(super) fn fill(&self, m: &mut MetricsSnapshot) {
        m.handler_latency = self
            .latency
            .iter()
            .filter_map(|(label, h)| {
                let h = h.snapshot();
                (h.count > 0).then(|| (label.clone(), h))
            })
            .collect();
        let mut responses = self
            .responses_other
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        for status in 0..STATUS_SLOTS {
            let n = self.responses.get(status);
            if n > 0 {
                responses.insert(status as u16, n);
            }
        }
        m.responses_by_status = responses;
    }
}

/// A [`Histogram`] updated with atomics.
// #17 json-reply: two atomic additions an observation (its bucket, the sum): the count is
// the buckets' total (one more bucket holds what is above the last bound), the sum is
// whole nanoseconds (an addition, not a compare-and-swap loop over `f64` bits).
struct AtomicHistogram {
    /// [`LATENCY_BUCKETS`]'s, then one for the observations above the last bound, then
    /// the sum in nanoseconds (584 years of latency before it wraps).
    lanes: Lanes,
}

/// Where the sum is in [`AtomicHistogram::lanes`].
const SUM: usize = LATENCY_BUCKETS.len() + 1;

impl Default for AtomicHistogram {
    fn default() -> Self {
        AtomicHistogram {
            lanes: Lanes::new(SUM + 1),
        }
    }
}

/// Counters that one thread adds to without a locked instruction and the others with
/// one (#17: a message's three additions were three atomic read-modify-writes, ~8 ns
/// each here). The first thread that adds claims the solo lane (for the runner: the
/// reactor, which answers the messages that run inline) and is the only one to write
/// it, so a load and a store count exactly; readers add the two lanes. (When a worker
/// records first, e.g. messages held for on_connect, it keeps the lane: the counts stay
/// exact, the reactor then adds with atomics.)
struct Lanes {
    /// The solo lane's thread ([`thread_token`]), 0 before one claims it.
    owner: AtomicU64,
    solo: Box<[AtomicU64]>,
    shared: Box<[AtomicU64]>,
}

impl Lanes {
    fn new(n: usize) -> Lanes {
        let zeros = || (0..n).map(|_| AtomicU64::new(0)).collect();
        Lanes {
            owner: AtomicU64::new(0),
            solo: zeros(),
            shared: zeros(),
        }
    }

    #[inline]
    fn add(&self, i: usize, n: u64) {
        let me = thread_token();
        let mut owner = self.owner.load(Ordering::Relaxed);
        if owner == 0 && me != 0 {
            // Claimed once: whoever wins keeps it for good.
            owner = match self
                .owner
                .compare_exchange(0, me, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => me,
                Err(other) => other,
            };
        }
        if owner == me && me != 0 {
            // Only this thread writes the solo lane: no read-modify-write needed.
            let c = &self.solo[i];
            c.store(c.load(Ordering::Relaxed).wrapping_add(n), Ordering::Relaxed);
        } else {
            self.shared[i].fetch_add(n, Ordering::Relaxed);
        }
    }

    fn get(&self, i: usize) -> u64 {
        self.solo[i]
            .load(Ordering::Relaxed)
            .wrapping_add(self.shared[i].load(Ordering::Relaxed))
    }
}

/// A number for this thread, never 0 but while its locals are torn down (then it claims
/// no solo lane).
#[inline]
fn thread_token() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    thread_local!(static TOKEN: u64 = NEXT.fetch_add(1, Ordering::Relaxed));
    TOKEN.try_with(|t| *t).unwrap_or(0)
}

/// [`LATENCY_BUCKETS`] in nanoseconds: each bound is a whole number of them, so
/// `nanos <= bound` picks the bucket `secs <= bound` does.
const BOUNDS_NANOS: [u64; LATENCY_BUCKETS.len()] = {
    let mut out = [0u64; LATENCY_BUCKETS.len()];
    let mut i = 0;
    while i < out.len() {
        out[i] = (LATENCY_BUCKETS[i] * 1e9 + 0.5) as u64;
        i += 1;
    }
    out
};

impl AtomicHistogram {
    fn observe(&self, d: Duration) {
        let nanos = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        let i = BOUNDS_NANOS
            .iter()
            .position(|&b| nanos <= b)
            .unwrap_or(LATENCY_BUCKETS.len());
        self.lanes.add(i, 1);
        self.lanes.add(SUM, nanos);
    }

    fn snapshot(&self) -> Histogram {
        let all: [u64; LATENCY_BUCKETS.len() + 1] = std::array::from_fn(|i| self.lanes.get(i));
        Histogram {
            buckets: std::array::from_fn(|i| all[i]),
            count: all.iter().sum(),
            sum_seconds: self.lanes.get(SUM) as f64 / 1e9,
        }
    }
}

/// Latency of events whose name is no route is recorded under this label, so a client
/// cannot grow the metrics with made-up names.
const UNMATCHED: &str = "(unmatched)";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runner::{registry, DEFAULT_CONFIG};

    #[test]
    fn counts_from_several_threads_at_once_add_up_exactly() {
        // One thread claims the solo lane, the others add with atomics: none is lost.
        let service = Service::from_str(DEFAULT_CONFIG, "default", registry()).unwrap();
        let metrics = RunnerMetrics::new(&service);
        let per_thread = 20_000u64;
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    for _ in 0..per_thread {
                        metrics.record(
                            service.route_name("echo", "get"),
                            Duration::from_nanos(3),
                            200,
                        );
                    }
                });
            }
        });
        metrics.record_status(404);
        let mut m = MetricsSnapshot::default();
        metrics.fill(&mut m);
        assert_eq!(m.responses_by_status.get(&200), Some(&(4 * per_thread)));
        assert_eq!(m.responses_by_status.get(&404), Some(&1));
        let h = &m
            .handler_latency
            .iter()
            .find(|(l, _)| l.as_str() == "echo")
            .unwrap()
            .1;
        assert_eq!(h.count, 4 * per_thread);
        assert_eq!(h.buckets[0], 4 * per_thread);
        assert!((h.sum_seconds - (4 * per_thread * 3) as f64 / 1e9).abs() < 1e-12);
        assert!(
            metrics.responses.owner.load(Ordering::Relaxed) != 0,
            "a thread claimed it"
        );
    }

    #[test]
    fn metrics_count_routes_unmatched_names_and_every_status() {
        let service = Service::from_str(DEFAULT_CONFIG, "default", registry()).unwrap();
        let metrics = RunnerMetrics::new(&service);
        let took = [
            Duration::from_micros(300),
            Duration::from_millis(3),
            Duration::from_secs(20),
        ];
        for d in took {
            metrics.record(service.route_name("echo", "get"), d, 200);
        }
        metrics.record(service.route_name("made-up", "get"), took[1], 501);
        metrics.record(service.route_name(UNMATCHED, "get"), took[0], 4000);
        metrics.record_status(400);
        let mut m = MetricsSnapshot::default();
        metrics.fill(&mut m);

        let mut echo = Histogram::default();
        took.iter().for_each(|d| echo.observe(*d));
        let mut unmatched = Histogram::default();
        unmatched.observe(took[1]);
        unmatched.observe(took[0]);
        let want: BTreeMap<String, Histogram> = [
            ("echo".to_string(), echo),
            (UNMATCHED.to_string(), unmatched),
        ]
        .into();
        assert_eq!(
            m.handler_latency.keys().collect::<Vec<_>>(),
            want.keys().collect::<Vec<_>>()
        );
        for (label, h) in &want {
            assert_same(&m.handler_latency[label], h);
        }
        let want: BTreeMap<u16, u64> = [(200, 3), (400, 1), (501, 1), (4000, 1)].into();
        assert_eq!(m.responses_by_status, want);
    }

    /// The same counts; the sum to the nanosecond (it is kept in whole ones, #17).
    fn assert_same(got: &Histogram, want: &Histogram) {
        assert_eq!(got.buckets, want.buckets);
        assert_eq!(got.count, want.count);
        let tolerance = 1e-9 * (1.0 + want.sum_seconds);
        assert!(
            (got.sum_seconds - want.sum_seconds).abs() <= tolerance,
            "{} vs {}",
            got.sum_seconds,
            want.sum_seconds
        );
    }

    #[test]
    fn each_latency_lands_in_the_bucket_its_seconds_do_at_every_bound() {
        // #17 json-reply: buckets are picked in nanoseconds; they must be the ones
        // `Histogram::observe` picks in seconds, on both sides of every bound and past
        // the last one.
        let mut durations = vec![Duration::ZERO, Duration::from_secs(3600), Duration::MAX];
        for bound in LATENCY_BUCKETS {
            let at = Duration::from_nanos((bound * 1e9).round() as u64);
            durations.extend([
                at - Duration::from_nanos(1),
                at,
                at + Duration::from_nanos(1),
            ]);
        }
        for d in durations {
            let atomic = AtomicHistogram::default();
            atomic.observe(d);
            let mut want = Histogram::default();
            want.observe(d);
            let got = atomic.snapshot();
            assert_eq!(
                (got.buckets, got.count),
                (want.buckets, want.count),
                "{d:?}"
            );
        }
    }

    #[test]
    fn latency_is_labelled_with_the_route_that_handled_the_event() {
        let config = "api:\n  events:\n    - name: echo\n      policies: [echoHandler]\n    - name: post\n      policies: [echoHandler]\n    - name: catchall\n      policies: [echoHandler]\n";
        let service = Service::from_str(config, "test", registry()).unwrap();
        let metrics = RunnerMetrics::new(&service);
        let d = Duration::from_millis(1);
        metrics.record(service.route_name("echo", "post"), d, 200);
        // No route by name: by method, else catchall (3.3.1 step 2).
        metrics.record(service.route_name("made-up", "post"), d, 200);
        metrics.record(service.route_name("made-up", "get"), d, 200);
        metrics.record(service.route_name("other", "get"), d, 200);
        let mut m = MetricsSnapshot::default();
        metrics.fill(&mut m);
        let counts: BTreeMap<&str, u64> = m
            .handler_latency
            .iter()
            .map(|(k, h)| (k.as_str(), h.count))
            .collect();
        assert_eq!(counts, [("catchall", 2), ("echo", 1), ("post", 1)].into());
    }

    #[test]
    fn a_route_found_once_is_recorded_in_the_series_its_name_is() {
        let config = "api:\n  events:\n    - name: echo\n      policies: [echoHandler]\n    - name: post\n      policies: [echoHandler]\n    - name: catchall\n      policies: [echoHandler]\n";
        let service = Service::from_str(config, "test", registry()).unwrap();
        let (by_name, by_route) = (RunnerMetrics::new(&service), RunnerMetrics::new(&service));
        let d = Duration::from_millis(1);
        for (name, method) in [("echo", "get"), ("made-up", "post"), ("x", "get")] {
            by_name.record(service.route_name(name, method), d, 200);
            let route = service.route(name, method).unwrap();
            by_route.record_route(route, d, 200);
        }
        let (mut a, mut b) = (MetricsSnapshot::default(), MetricsSnapshot::default());
        by_name.fill(&mut a);
        by_route.fill(&mut b);
        assert_eq!(a.handler_latency.len(), 3);
        assert_eq!(a.handler_latency, b.handler_latency);
        assert_eq!(a.responses_by_status, b.responses_by_status);
    }
}
