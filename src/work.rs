//! The worker pool that runs Configurapi handlers off the reactor thread.
//!
//! Jobs go in through a bounded queue. `try_submit` never blocks: when the queue is full
//! the reactor keeps the job and stops reading from sockets until a worker reports
//! capacity, so a flood of messages turns into TCP backpressure instead of memory.
//! A panicking job is caught; the worker lives on.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Instant;

/// A unit of work for a worker thread.
pub type Job = Box<dyn FnOnce() + Send + 'static>;

/// Called (on the worker thread) after a job finishes while the reactor waits for room.
pub type CapacityHook = Box<dyn Fn() + Send + Sync>;

struct PoolState {
    /// Jobs submitted and not finished.
    in_flight: AtomicUsize,
    /// The reactor holds jobs it could not submit and wants to hear about free room.
    want_capacity: AtomicBool,
    on_capacity: CapacityHook,
    /// Signalled when `in_flight` reaches zero (shutdown waits on it).
    drained: (Mutex<()>, Condvar),
}

/// A fixed set of threads fed by a bounded queue.
pub struct WorkerPool {
    tx: Option<SyncSender<Job>>,
    threads: Vec<JoinHandle<()>>,
    state: Arc<PoolState>,
}

impl WorkerPool {
    /// Start `workers` threads with a queue of `queue_len` jobs. `on_capacity` runs on a
    /// worker when a job finishes after `try_submit` found the queue full.
    pub fn new(
        workers: usize,
        queue_len: usize,
        on_capacity: CapacityHook,
    ) -> std::io::Result<WorkerPool> {
        let (tx, rx) = sync_channel::<Job>(queue_len.max(1));
        let rx = Arc::new(Mutex::new(rx));
        let state = Arc::new(PoolState {
            in_flight: AtomicUsize::new(0),
            want_capacity: AtomicBool::new(false),
            on_capacity,
            drained: (Mutex::new(()), Condvar::new()),
        });
        let mut threads = Vec::with_capacity(workers);
        for i in 0..workers.max(1) {
            let rx = Arc::clone(&rx);
            let state = Arc::clone(&state);
            threads.push(
                std::thread::Builder::new()
                    .name(format!("worker-{i}"))
                    .spawn(move || worker_loop(&rx, &state))?,
            );
        }
        Ok(WorkerPool {
            tx: Some(tx),
            threads,
            state,
        })
    }

    /// Queue a job, or give it back when the queue is full.
    pub fn try_submit(&self, job: Job) -> Result<(), Job> {
        let Some(tx) = &self.tx else { return Err(job) };
        self.state.in_flight.fetch_add(1, Ordering::SeqCst);
        match tx.try_send(job) {
            Ok(()) => Ok(()),
            Err(TrySendError::Disconnected(job)) => {
                self.state.in_flight.fetch_sub(1, Ordering::SeqCst);
                Err(job)
            }
            Err(TrySendError::Full(job)) => {
                // Ask to be told when a job finishes, then try once more: if the queue
                // emptied before the flag was up, nobody would tell us; if it is still
                // full now, a job finishing later sees the flag.
                self.state.want_capacity.store(true, Ordering::SeqCst);
                match tx.try_send(job) {
                    Ok(()) => Ok(()),
                    Err(TrySendError::Full(job)) | Err(TrySendError::Disconnected(job)) => {
                        self.state.in_flight.fetch_sub(1, Ordering::SeqCst);
                        Err(job)
                    }
                }
            }
        }
    }

    /// Jobs queued or running.
    pub fn in_flight(&self) -> usize {
        self.state.in_flight.load(Ordering::SeqCst)
    }

    /// Stop taking jobs, let queued and running ones finish until `deadline`, then return.
    /// Threads still busy at the deadline are left to finish on their own.
    pub fn shutdown(&mut self, deadline: Instant) {
        self.tx = None;
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

fn worker_loop(rx: &Mutex<Receiver<Job>>, state: &PoolState) {
    loop {
        let job = {
            let Ok(rx) = rx.lock() else { return };
            match rx.recv() {
                Ok(job) => job,
                Err(_) => return,
            }
        };
        // A handler panic is already turned into a 500 by the Service; this catches
        // panics in the runner's own glue so the worker survives them too.
        if catch_unwind(AssertUnwindSafe(job)).is_err() {
            log::error!("a worker job panicked; the worker goes on");
        }
        if state.in_flight.fetch_sub(1, Ordering::SeqCst) == 1 {
            // Under the lock, so a shutdown between its check and its wait is woken.
            let _guard = state.drained.0.lock().unwrap_or_else(|e| e.into_inner());
            state.drained.1.notify_all();
        }
        if state.want_capacity.swap(false, Ordering::SeqCst) {
            (state.on_capacity)();
        }
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
        let pool = WorkerPool::new(1, 4, Box::new(|| {})).unwrap();
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
