//! The pool that runs [`Blocking`](crate::Blocking) handlers: threads started on demand
//! up to a bound, so a handler that must block on I/O waits there and not on a worker
//! that should be running CPU work. Idle threads leave after a minute.

use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

type Job = Box<dyn FnOnce() + Send + 'static>;

/// How long an idle thread stays.
const IDLE: Duration = Duration::from_secs(60);

#[derive(Default)]
struct State {
    jobs: VecDeque<Job>,
    threads: usize,
    idle: usize,
}

struct Shared {
    state: Mutex<State>,
    work: Condvar,
    max: usize,
}

/// Threads for blocking handlers, at most `max`; jobs past that queue (without bound:
/// each belongs to a request that was admitted already).
pub(crate) struct BlockingPool(Arc<Shared>);

impl BlockingPool {
    pub(crate) fn new(max: usize) -> BlockingPool {
        BlockingPool(Arc::new(Shared {
            state: Mutex::new(State::default()),
            work: Condvar::new(),
            max: max.max(1),
        }))
    }

    /// Runs `job` on a pool thread.
    pub(crate) fn execute(&self, job: Job) {
        let mut st = self.0.state.lock().unwrap_or_else(|e| e.into_inner());
        st.jobs.push_back(job);
        if st.idle > 0 {
            self.0.work.notify_one();
            return;
        }
        if st.threads < self.0.max {
            let shared = Arc::clone(&self.0);
            let n = st.threads;
            let spawned = std::thread::Builder::new()
                .name(format!("blocking-{n}"))
                .spawn(move || run(&shared));
            match spawned {
                Ok(_) => st.threads += 1,
                Err(e) => {
                    // The job waits for a thread that exists; with none, it runs here.
                    log::error!("cannot start a blocking-handler thread: {e}");
                    if st.threads == 0 {
                        let job = st.jobs.pop_back();
                        drop(st);
                        if let Some(job) = job {
                            job();
                        }
                    }
                }
            }
        }
    }
}

fn run(shared: &Shared) {
    let mut st = shared.state.lock().unwrap_or_else(|e| e.into_inner());
    loop {
        if let Some(job) = st.jobs.pop_front() {
            drop(st);
            // Handler panics are caught by the pipeline; this keeps the thread for
            // anything else.
            let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job));
            st = shared.state.lock().unwrap_or_else(|e| e.into_inner());
            continue;
        }
        st.idle += 1;
        let (next, timeout) = shared
            .work
            .wait_timeout(st, IDLE)
            .unwrap_or_else(|e| e.into_inner());
        st = next;
        st.idle -= 1;
        if timeout.timed_out() && st.jobs.is_empty() {
            st.threads -= 1;
            return;
        }
    }
}
