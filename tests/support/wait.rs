//! The test deadline and waits for an observable state (never a sleep as a
//! synchronisation).

use std::time::{Duration, Instant};

use configurapi_runner_ws::reactor::stats::Stats;
use configurapi_runner_ws::Handle;

use super::server::TestServer;

/// Every blocking read in the tests gives up after this long: a hang fails the test.
pub const DEADLINE: Duration = Duration::from_secs(10);

/// Wait (polling, with the deadline) until `cond` holds; `what` names it in the failure.
pub fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < DEADLINE, "timed out waiting until {what}");
        // The poll's pace, not a synchronisation: a spinning test would take a core
        // from the server it waits for.
        std::thread::sleep(Duration::from_millis(1));
    }
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
/// until the client reads (a flush after the park may take the queue below high water,
/// so ask for low water, not high). The recorded peak must stay within `bound` on the
/// way.
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

/// Wait (polling the reactor, with a deadline) until `cond` holds.
pub fn wait_until(srv: &TestServer, what: &str, cond: impl Fn(&TestServer) -> bool) {
    wait_for(what, || cond(srv));
}

/// Wait until the server has no connection left (open or closing).
pub fn wait_all_gone(srv: &TestServer) {
    wait_until(srv, "every connection is gone", |s| {
        s.handle.connections().unwrap().is_empty() && s.handle.stats().unwrap().open == 0
    });
}
