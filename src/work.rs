//! The worker pool that runs Configurapi handlers off the reactor thread.
//!
//! New jobs go in through a bounded queue. `try_submit` never blocks: when the queue is
//! full the reactor keeps the job and stops reading from sockets until a worker reports
//! capacity, so a flood of messages turns into TCP backpressure instead of memory.
//! A panicking job is caught; the worker lives on.
//!
//! Suspended pipelines (a handler deferred, see `configurapi::Completion`) hold no
//! worker. They count as work in flight (shutdown waits for them), and when one is
//! resolved its rest comes back through [`WorkerPool::resumer`] into a second queue that
//! workers take first and that is never refused: the work was admitted already, and
//! finishing it comes before admitting more. Their number is capped: at the cap,
//! [`WorkerPool::waiting_full`] tells the reactor to stop reading, as a full queue does.

use std::collections::VecDeque;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Instant;

use crate::configurapi::Schedule;

/// A unit of work for a worker thread.
pub type Job = Box<dyn FnOnce() + Send + 'static>;

/// Called (on the worker thread) after a job finishes while the reactor waits for room.
pub type CapacityHook = Box<dyn Fn() + Send + Sync>;

#[derive(Default)]
struct Queues {
    /// New work, at most `queue_len`.
    fresh: VecDeque<Job>,
    /// Resumed pipelines, taken first.
    resumed: VecDeque<Job>,
    /// Shut down: no new work; workers leave once nothing is in flight.
    closed: bool,
    /// Workers waiting for a job (so a submit wakes one only when one sleeps).
    idle: usize,
}

struct PoolState {
    queues: Mutex<Queues>,
    work: Condvar,
    queue_len: usize,
    /// Jobs submitted and not finished, plus suspended pipelines.
    in_flight: AtomicUsize,
    /// Suspended pipelines (neither queued nor running).
    waiting: AtomicUsize,
    max_waiting: usize,
    /// The reactor holds jobs it could not submit (or stopped reading at the waiting
    /// cap) and wants to hear about free room.
    want_capacity: AtomicBool,
    on_capacity: CapacityHook,
    /// Signalled when `in_flight` reaches zero (shutdown waits on it).
    drained: (Mutex<()>, Condvar),
}

impl PoolState {
    fn push(&self, job: Job, resumed: bool) {
        let mut q = self.queues.lock().unwrap_or_else(|e| e.into_inner());
        if resumed {
            q.resumed.push_back(job);
        } else {
            q.fresh.push_back(job);
        }
        if q.idle > 0 {
            self.work.notify_one();
        }
    }

    /// A job or a suspended pipeline is over.
    fn finished(&self) {
        if self.in_flight.fetch_sub(1, Ordering::SeqCst) == 1 {
            // Under the lock, so a shutdown between its check and its wait is woken.
            let _guard = self.drained.0.lock().unwrap_or_else(|e| e.into_inner());
            self.drained.1.notify_all();
            drop(_guard);
            // Idle workers of a closed pool leave now.
            let _q = self.queues.lock().unwrap_or_else(|e| e.into_inner());
            self.work.notify_all();
        }
    }

    fn report_capacity(&self) {
        if self.want_capacity.swap(false, Ordering::SeqCst) {
            (self.on_capacity)();
        }
    }
}

/// A fixed set of threads fed by a bounded queue.
pub struct WorkerPool {
    threads: Vec<JoinHandle<()>>,
    state: Arc<PoolState>,
}

impl WorkerPool {
    /// Start `workers` threads with a queue of `queue_len` jobs and room for
    /// `max_waiting` suspended pipelines. `on_capacity` runs on a worker when a job
    /// finishes after `try_submit` found the queue full (or on the resolving thread when
    /// a pipeline resumes after `waiting_full` said yes).
    pub fn new(
        workers: usize,
        queue_len: usize,
        max_waiting: usize,
        on_capacity: CapacityHook,
    ) -> std::io::Result<WorkerPool> {
        let state = Arc::new(PoolState {
            queues: Mutex::new(Queues::default()),
            work: Condvar::new(),
            queue_len: queue_len.max(1),
            in_flight: AtomicUsize::new(0),
            waiting: AtomicUsize::new(0),
            max_waiting: max_waiting.max(1),
            want_capacity: AtomicBool::new(false),
            on_capacity,
            drained: (Mutex::new(()), Condvar::new()),
        });
        let mut threads = Vec::with_capacity(workers);
        for i in 0..workers.max(1) {
            let state = Arc::clone(&state);
            threads.push(
                std::thread::Builder::new()
                    .name(format!("worker-{i}"))
                    .spawn(move || worker_loop(&state))?,
            );
        }
        Ok(WorkerPool { threads, state })
    }

    /// Queue a job, or give it back when the queue is full.
    pub fn try_submit(&self, job: Job) -> Result<(), Job> {
        let st = &self.state;
        let mut q = st.queues.lock().unwrap_or_else(|e| e.into_inner());
        if q.closed {
            return Err(job);
        }
        if q.fresh.len() >= st.queue_len {
            // Under the queue lock: a worker takes its next job under it too and
            // reports after that job, so the flag cannot be missed.
            st.want_capacity.store(true, Ordering::SeqCst);
            return Err(job);
        }
        st.in_flight.fetch_add(1, Ordering::SeqCst);
        q.fresh.push_back(job);
        if q.idle > 0 {
            st.work.notify_one();
        }
        Ok(())
    }

    /// The cap on suspended pipelines is reached: the reactor should read no more
    /// messages until [`CapacityHook`] is called. Asks for that call when it says yes.
    pub fn waiting_full(&self) -> bool {
        let st = &self.state;
        if st.waiting.load(Ordering::SeqCst) < st.max_waiting {
            return false;
        }
        // Flag first, then look again: a pipeline that resumed in between either sees
        // the flag or is seen here.
        st.want_capacity.store(true, Ordering::SeqCst);
        st.waiting.load(Ordering::SeqCst) >= st.max_waiting
    }

    /// Where suspended pipelines resume: this pool's resumed queue.
    pub fn resumer(&self) -> Arc<dyn Schedule> {
        Arc::new(Resumer(Arc::clone(&self.state)))
    }

    /// Jobs queued or running, and suspended pipelines.
    pub fn in_flight(&self) -> usize {
        self.state.in_flight.load(Ordering::SeqCst)
    }

    /// Suspended pipelines.
    pub fn waiting(&self) -> usize {
        self.state.waiting.load(Ordering::SeqCst)
    }

    /// Stop taking jobs, let queued, running and suspended ones finish until `deadline`,
    /// then return. Threads still busy at the deadline are left to finish on their own.
    pub fn shutdown(&mut self, deadline: Instant) {
        {
            let mut q = self.state.queues.lock().unwrap_or_else(|e| e.into_inner());
            q.closed = true;
            self.state.work.notify_all();
        }
        let (lock, cv) = &self.state.drained;
        let mut guard = lock.lock().unwrap_or_else(|e| e.into_inner());
        while self.in_flight() > 0 {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            guard = cv
                .wait_timeout(guard, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        drop(guard);
        if self.in_flight() == 0 {
            for t in self.threads.drain(..) {
                let _ = t.join();
            }
        }
    }
}

/// The pool as a [`Schedule`]: a suspended pipeline counts as in flight until it has
/// run to its end, and resumes in the resumed queue.
struct Resumer(Arc<PoolState>);

impl Schedule for Resumer {
    fn suspended(&self) {
        self.0.in_flight.fetch_add(1, Ordering::SeqCst);
        self.0.waiting.fetch_add(1, Ordering::SeqCst);
    }

    fn schedule(&self, job: Job) {
        // Still in flight (counted by `suspended`), no longer waiting.
        self.0.waiting.fetch_sub(1, Ordering::SeqCst);
        self.0.push(job, true);
        self.0.report_capacity();
    }
}

fn worker_loop(state: &PoolState) {
    loop {
        let job = {
            let mut q = state.queues.lock().unwrap_or_else(|e| e.into_inner());
            loop {
                if let Some(job) = q.resumed.pop_front().or_else(|| q.fresh.pop_front()) {
                    break job;
                }
                if q.closed && state.in_flight.load(Ordering::SeqCst) == 0 {
                    return;
                }
                q.idle += 1;
                q = state.work.wait(q).unwrap_or_else(|e| e.into_inner());
                q.idle -= 1;
            }
        };
        // A handler panic is already turned into a 500 by the Service; this catches
        // panics in the runner's own glue so the worker survives them too.
        if catch_unwind(AssertUnwindSafe(job)).is_err() {
            log::error!("a worker job panicked; the worker goes on");
        }
        state.finished();
        state.report_capacity();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc::channel;
    use std::time::Duration;

    #[test]
    fn full_queue_gives_the_job_back_and_reports_capacity_later() {
        let (cap_tx, cap_rx) = channel();
        let cap_tx = Mutex::new(cap_tx);
        let pool = WorkerPool::new(
            1,
            1,
            16,
            Box::new(move || cap_tx.lock().unwrap().send(()).unwrap()),
        )
        .unwrap();
        let (gate_tx, gate_rx) = channel::<()>();
        let gate_rx = Mutex::new(gate_rx);
        let (started_tx, started_rx) = channel();
        // Job 1 blocks the only worker; job 2 fills the queue; job 3 comes back.
        pool.try_submit(Box::new(move || {
            started_tx.send(()).unwrap();
            gate_rx.lock().unwrap().recv().unwrap();
        }))
        .map_err(|_| ())
        .unwrap();
        started_rx.recv_timeout(Duration::from_secs(10)).unwrap();
        pool.try_submit(Box::new(|| {})).map_err(|_| ()).unwrap();
        assert!(pool.try_submit(Box::new(|| {})).is_err());
        gate_tx.send(()).unwrap();
        cap_rx
            .recv_timeout(Duration::from_secs(10))
            .expect("capacity reported");
    }

    #[test]
    fn a_panicking_job_does_not_kill_the_worker() {
        let pool = WorkerPool::new(1, 4, 16, Box::new(|| {})).unwrap();
        pool.try_submit(Box::new(|| panic!("boom")))
            .map_err(|_| ())
            .unwrap();
        let (tx, rx) = channel();
        pool.try_submit(Box::new(move || tx.send(42).unwrap()))
            .map_err(|_| ())
            .unwrap();
        assert_eq!(rx.recv_timeout(Duration::from_secs(10)).unwrap(), 42);
    }
}
