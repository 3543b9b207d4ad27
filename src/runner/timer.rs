//! One shared timer for handlers that wait (`delayHandler`): a single thread with a
//! heap of deadlines, started on first use. A waiting handler holds a [`Completion`]
//! in the heap, not a thread, so a thousand waits cost a thousand heap entries.
//!
//! A thread of its own rather than the reactor's timer heap: handlers do not see the
//! reactor, and resolving a completion schedules the rest of the pipeline on the worker
//! pool, so the reactor would only be a relay.

use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;
use std::sync::{Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};

use crate::configurapi::Completion;

struct Entry {
    at: Instant,
    /// Ties broken by arrival, so equal deadlines fire in order.
    seq: u64,
    completion: Completion,
}

impl PartialEq for Entry {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}

impl Eq for Entry {}

impl PartialOrd for Entry {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Entry {
    fn cmp(&self, other: &Self) -> Ordering {
        (self.at, self.seq).cmp(&(other.at, other.seq))
    }
}

#[derive(Default)]
struct Heap {
    entries: BinaryHeap<Reverse<Entry>>,
    seq: u64,
}

struct Timer {
    heap: Mutex<Heap>,
    /// Signalled when an entry earlier than all others arrives.
    changed: Condvar,
}

/// The timer, started on first use; `None` when its thread could not start.
fn timer() -> Option<&'static Timer> {
    static TIMER: OnceLock<Option<&'static Timer>> = OnceLock::new();
    *TIMER.get_or_init(|| {
        let timer: &'static Timer = Box::leak(Box::new(Timer {
            heap: Mutex::new(Heap::default()),
            changed: Condvar::new(),
        }));
        match std::thread::Builder::new()
            .name("timer".into())
            .spawn(move || run(timer))
        {
            Ok(_) => Some(timer),
            Err(e) => {
                log::error!("cannot start the timer thread ({e}): delays end at once");
                None
            }
        }
    })
}

/// The longest wait: far beyond any sensible delay, and within what `Instant` can add.
const MAX_DELAY: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// Resolves `completion` (with `Ok`: the handler continues) after `delay`.
pub(crate) fn after(delay: Duration, completion: Completion) {
    let Some(t) = timer() else {
        completion.finish(Ok(()));
        return;
    };
    let at = Instant::now() + delay.min(MAX_DELAY);
    let mut heap = t.heap.lock().unwrap_or_else(|e| e.into_inner());
    let earliest = heap.entries.peek().is_none_or(|Reverse(e)| at < e.at);
    heap.seq += 1;
    let seq = heap.seq;
    heap.entries.push(Reverse(Entry {
        at,
        seq,
        completion,
    }));
    drop(heap);
    if earliest {
        t.changed.notify_one();
    }
}

fn run(t: &Timer) {
    let mut due = Vec::new();
    let mut heap = t.heap.lock().unwrap_or_else(|e| e.into_inner());
    loop {
        let now = Instant::now();
        while heap.entries.peek().is_some_and(|Reverse(e)| e.at <= now) {
            if let Some(Reverse(e)) = heap.entries.pop() {
                due.push(e.completion);
            }
        }
        if !due.is_empty() {
            // Resolved outside the lock: resolving schedules the pipeline's rest.
            drop(heap);
            for c in due.drain(..) {
                c.finish(Ok(()));
            }
            heap = t.heap.lock().unwrap_or_else(|e| e.into_inner());
            continue;
        }
        heap = match heap.entries.peek().map(|Reverse(e)| e.at) {
            Some(at) => {
                t.changed
                    .wait_timeout(heap, at.saturating_duration_since(now))
                    .unwrap_or_else(|e| e.into_inner())
                    .0
            }
            None => t.changed.wait(heap).unwrap_or_else(|e| e.into_inner()),
        };
    }
}
