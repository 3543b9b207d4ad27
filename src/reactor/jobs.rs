//! The reactor's side of the worker pool: the jobs the current event produced, the
//! backlog a full pool did not take, and the connections left unread meanwhile. While
//! the backlog holds anything, no socket is read (a flood of messages becomes TCP
//! backpressure, not memory).

use std::collections::VecDeque;
use std::time::Instant;

use crate::link::ConnId;
use crate::stats::Stats;
use crate::work::{Job, WorkerPool};

/// Jobs on their way to the worker pool.
pub(super) struct Jobs {
    /// The pool; `None` in echo mode, where jobs are dropped.
    pool: Option<WorkerPool>,
    /// Jobs produced by the current event, submitted after it.
    pub(super) pending: Vec<Job>,
    /// Jobs the full worker queue did not take.
    backlog: VecDeque<Job>,
    /// Connections whose readiness was skipped while the backlog was non-empty.
    stalled: Vec<ConnId>,
}

impl Jobs {
    pub(super) fn new(pool: Option<WorkerPool>) -> Jobs {
        Jobs {
            pool,
            pending: Vec::new(),
            backlog: VecDeque::new(),
            stalled: Vec::new(),
        }
    }

    /// The workers are saturated, or too many pipelines wait: sockets are not read.
    pub(super) fn saturated(&self) -> bool {
        !self.backlog.is_empty() || self.pool.as_ref().is_some_and(WorkerPool::waiting_full)
    }

    /// A connection's readiness was left unread; it is read again when room is made.
    pub(super) fn stall(&mut self, id: ConnId) {
        self.stalled.push(id);
    }

    /// Hand the pending jobs to the pool, keeping in the backlog what it refuses (and
    /// everything after it, so jobs keep their order).
    pub(super) fn submit(&mut self, stats: &mut Stats) {
        // #17 json-reply: most events make no job (an inline answer, an echo): no `Drain`.
        if self.pending.is_empty() {
            return;
        }
        let Some(pool) = &self.pool else {
            self.pending.clear();
            return;
        };
        for job in self.pending.drain(..) {
            if !self.backlog.is_empty() {
                self.backlog.push_back(job);
                continue;
            }
            if let Err(job) = pool.try_submit(job) {
                self.backlog.push_back(job);
            }
        }
        stats.backlog_peak = stats.backlog_peak.max(self.backlog.len() as u64);
    }

    /// A worker has room: move held jobs to the pool, and once none wait, put the
    /// connections that were skipped meanwhile on `revisit`.
    pub(super) fn drain_backlog(&mut self, revisit: &mut Vec<ConnId>) {
        let Some(pool) = &self.pool else {
            return;
        };
        while let Some(job) = self.backlog.pop_front() {
            if let Err(job) = pool.try_submit(job) {
                self.backlog.push_front(job);
                return;
            }
        }
        if !pool.waiting_full() {
            revisit.append(&mut self.stalled);
        }
    }

    /// Suspended pipelines now.
    pub(super) fn waiting(&self) -> u64 {
        self.pool.as_ref().map_or(0, |w| w.waiting() as u64)
    }

    /// Jobs not finished: running or queued in the pool, or in the backlog.
    pub(super) fn in_flight(&self) -> usize {
        self.pool.as_ref().map_or(0, WorkerPool::in_flight) + self.backlog.len()
    }

    /// Stop the pool (the drain is over, or its deadline passed: the backlog is
    /// dropped).
    pub(super) fn shutdown(&mut self, now: Instant) {
        if let Some(pool) = &mut self.pool {
            self.backlog.clear();
            pool.shutdown(now);
        }
    }
}
