//! The part of a connection that other threads may hold: its id, its liveness, and the
//! exact backpressure figures, plus parked stream producers waiting for room. Generic:
//! nothing here knows the application (the runner's connection-id, identity and
//! acceptance live in `runner/conn.rs`, in the same allocation as the `Link`).
//!
//! The reactor is the only writer of `queued` (bytes in the write queue); producers on
//! worker threads add to `in_transit` before they hand a frame to the reactor, and the
//! reactor moves those bytes from `in_transit` to `queued` when it queues the frame. So
//! `queued + in_transit` is exactly what the server holds for this peer, and a producer
//! that only sends while it is under the high-water mark keeps the peer's memory at
//! high-water + one chunk.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use crate::work::Job;
use crate::ws::frame::{encode_header, Opcode, MAX_HEADER};

/// A handle on a connection that can outlive it: the slab slot plus the generation the
/// slot had when the connection was accepted. The reactor resolves it in one place
/// (`Reactor::lookup`) and drops it when the generation no longer matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ConnId {
    /// Slab index, also the mio token.
    pub slot: u32,
    /// Unique per accepted connection.
    pub gen: u32,
}

/// How a [`Link`] reaches the reactor from another thread (the reactor's `Handle`
/// implements it). A trait, so this module sits below the reactor.
pub trait Courier: Send + Sync {
    /// Hand an encoded frame payload to the reactor for `to`; the caller has counted
    /// `transit` bytes as in transit on the link.
    fn deliver(
        &self,
        to: ConnId,
        opcode: Opcode,
        payload: Vec<u8>,
        transit: usize,
    ) -> Result<(), Gone>;
    /// Pass `note` to the application's value of connection `to` on the reactor thread
    /// ([`crate::app::AppConn::on_note`]).
    fn notify(&self, to: ConnId, note: u32) -> Result<(), Gone>;
}

/// The connection has closed; nothing more can be sent to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gone;

/// What every link of one reactor shares: the courier, the water marks, and the
/// producers parked for room. Out of each link so that an idle connection does not
/// carry them (#17): a producer parks only under backpressure, and then the lock
/// taken here is the same one a per-link lock would have been, shared.
pub struct LinkHome {
    /// The reactor, for deliveries.
    courier: Arc<dyn Courier>,
    high_water: usize,
    low_water: usize,
    /// Parked producers by connection (`park_with`); an entry only while one waits.
    parked: Mutex<HashMap<ConnId, Vec<Job>>>,
    /// Threads blocked in `wait_for_room` (pushes), woken together when a queue
    /// drains: each checks its own link again (few threads: the worker pool's).
    room: Condvar,
}

impl LinkHome {
    /// The home of one reactor's links; `high_water`/`low_water` bound what producers
    /// may have queued.
    pub fn new(courier: Arc<dyn Courier>, high_water: usize, low_water: usize) -> Arc<LinkHome> {
        Arc::new(LinkHome {
            courier,
            high_water,
            low_water,
            parked: Mutex::new(HashMap::new()),
            room: Condvar::new(),
        })
    }

    fn parked(&self) -> MutexGuard<'_, HashMap<ConnId, Vec<Job>>> {
        self.parked.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The cross-thread half of one WebSocket connection. Kept small (#17, 48 B): the
/// shared and the rarely used parts live in its [`LinkHome`].
pub struct Link {
    /// The reactor's id for the connection (slot + generation).
    pub id: ConnId,
    home: Arc<LinkHome>,
    queued: AtomicUsize,
    in_transit: AtomicUsize,
    /// Requests of this connection not yet answered to their end (a running or
    /// suspended pipeline, a stream or push still being sent): a drain closes the
    /// connection only when it is zero (9.5).
    busy: AtomicU32,
    /// Producers parked in the home's table for this link.
    parked_count: AtomicU32,
    /// Threads blocked in `wait_for_room` (pushes), woken with the home's `room`.
    room_waiters: AtomicU32,
    closed: AtomicBool,
    /// A byte of the application's own (the runner keeps its acceptance state here):
    /// it sits in what would be the link's padding, so it costs the connection nothing.
    pub app_state: AtomicU8,
}

/// What holds a [`Link`] inside it (the link itself, or the application's
/// connection that embeds it: one allocation per connection, not two).
pub trait HasLink: Send + Sync + 'static {
    /// The link.
    fn link(&self) -> &Link;
}

impl HasLink for Link {
    fn link(&self) -> &Link {
        self
    }
}

/// One unit of unfinished work on a connection (see [`begin`]); dropping it ends
/// the unit.
pub struct Busy(Arc<dyn HasLink>);

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.link().busy.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Work for the connection whose link `owner` holds starts: a drain waits for the
/// guard to drop before it closes the connection. Taken before any frame of the work
/// is sent, dropped after the last one was handed to the reactor, so the reactor
/// (which reads the count before it takes its commands) never closes ahead of an
/// answer on its way.
pub fn begin<T: HasLink>(owner: &Arc<T>) -> Busy {
    owner.link().busy.fetch_add(1, Ordering::SeqCst);
    let owner: Arc<dyn HasLink> = owner.clone();
    Busy(owner)
}

impl Link {
    /// A new link in `home` (its reactor's).
    pub fn new(id: ConnId, home: &Arc<LinkHome>) -> Link {
        Link {
            id,
            home: Arc::clone(home),
            queued: AtomicUsize::new(0),
            in_transit: AtomicUsize::new(0),
            busy: AtomicU32::new(0),
            parked_count: AtomicU32::new(0),
            room_waiters: AtomicU32::new(0),
            closed: AtomicBool::new(false),
            app_state: AtomicU8::new(0),
        }
    }

    /// Units of work under way (see [`begin`]).
    pub fn busy(&self) -> usize {
        self.busy.load(Ordering::SeqCst) as usize
    }

    /// Bytes the server holds for this peer: queued in the reactor plus on their way.
    pub fn pending_bytes(&self) -> usize {
        // In-transit first: the reactor adds a frame to `queued` before it takes it
        // off `in_transit`, so reading in this order never misses a frame.
        let in_transit = self.in_transit.load(Ordering::SeqCst);
        in_transit + self.queued.load(Ordering::SeqCst)
    }

    /// Bytes in the reactor's write queue.
    pub fn queued_bytes(&self) -> usize {
        self.queued.load(Ordering::SeqCst)
    }

    /// The connection has closed; pushes fail and producers stop.
    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }

    /// A producer may send another frame.
    pub fn has_room(&self) -> bool {
        self.pending_bytes() < self.home.high_water
    }

    /// Account bytes a worker is about to hand to the reactor.
    fn add_in_transit(&self, n: usize) {
        self.in_transit.fetch_add(n, Ordering::SeqCst);
    }

    /// Send one frame to this connection from any thread. Fails with [`Gone`] once the
    /// connection has closed; a frame sent just before the close is dropped by the
    /// reactor's generation check, never given to another client.
    pub fn send_frame(&self, opcode: Opcode, payload: Vec<u8>) -> Result<(), Gone> {
        if self.is_closed() {
            self.count_dropped();
            return Err(Gone);
        }
        let mut hdr = [0u8; MAX_HEADER];
        let n = encode_header(&mut hdr, opcode, payload.len()) + payload.len();
        self.add_in_transit(n);
        let home = &*self.home;
        if home.courier.deliver(self.id, opcode, payload, n).is_err() {
            self.transit_arrived(n);
            return Err(Gone);
        }
        Ok(())
    }

    /// A frame for this connection was dropped because it has closed (a late reply, a
    /// push): tell the reactor, which counts it in `Stats::stale_dropped` like any
    /// other delivery to a connection that has ended. The frame itself stays here.
    pub(crate) fn count_dropped(&self) {
        let home = &*self.home;
        let _ = home.courier.deliver(self.id, Opcode::Text, Vec::new(), 0);
    }

    /// Pass `note` to the application's value of this connection, on the reactor
    /// thread (e.g. the runner's on_connect verdict). Dropped if it has gone.
    pub fn notify(&self, note: u32) -> Result<(), Gone> {
        self.home.courier.notify(self.id, note)
    }

    /// Block until the connection holds no more than the low-water mark, or closes
    /// (then `false`). For pushes: they run inside a handler and cannot park. The
    /// reactor wakes the thread when the queue drains; nothing polls.
    pub fn wait_for_room(&self) -> bool {
        if self.has_room() || self.is_closed() {
            return !self.is_closed();
        }
        let room = &self.home.room;
        let mut guard = self.home.parked();
        // Same ordering argument as `park_with`: count first, then read the bytes.
        self.room_waiters.fetch_add(1, Ordering::SeqCst);
        while !self.is_closed() && self.pending_bytes() > self.home.low_water {
            guard = room.wait(guard).unwrap_or_else(|e| e.into_inner());
        }
        self.room_waiters.fetch_sub(1, Ordering::SeqCst);
        !self.is_closed()
    }

    /// Park a producer until the queue drains under the low-water mark. `make` builds
    /// the job that resumes it and is called only when the producer is parked; when it
    /// returns `false` (room already, or the connection closed) the caller goes on with
    /// its own state and checks `is_closed`.
    pub fn park_with(&self, make: impl FnOnce() -> Job) -> bool {
        let mut parked = self.home.parked();
        // The count goes up before the byte count is read, and the reactor stores the
        // byte count before it reads the count (all SeqCst): either the reactor sees
        // this producer and takes the lock to wake it, or this check sees the room the
        // reactor made. No wake-up is lost.
        self.parked_count.fetch_add(1, Ordering::SeqCst);
        if self.is_closed() || self.pending_bytes() <= self.home.low_water {
            self.parked_count.fetch_sub(1, Ordering::SeqCst);
            return false;
        }
        parked.entry(self.id).or_default().push(make());
        true
    }

    /// Producers waiting for room now: parked streams and pushes blocked in
    /// [`Link::wait_for_room`].
    pub fn waiting_producers(&self) -> usize {
        self.waiting() as usize
    }

    fn waiting(&self) -> u32 {
        self.parked_count.load(Ordering::SeqCst) + self.room_waiters.load(Ordering::SeqCst)
    }

    // ---- the courier's side (the reactor, or a test harness standing in for it) ----

    /// The reactor queued a frame of `n` bytes handed over by a worker.
    pub fn transit_arrived(&self, n: usize) {
        self.in_transit.fetch_sub(n, Ordering::SeqCst);
    }

    /// The reactor's write queue now holds `queued` bytes. Parked producers to resume
    /// when the total fell under the low-water mark are appended to `resumed`.
    // #17 hotsplit: inlined at the runner's opt-level "s" too (docs/size.md, fourth pass).
    #[inline]
    // #17 json-reply: appended to the caller's list (the reactor's jobs), so the usual
    // "none" makes and drops no `Vec` (~60 instructions an event in Configurapi mode).
    pub fn set_queued(&self, queued: usize, resumed: &mut Vec<Job>) {
        self.queued.store(queued, Ordering::SeqCst);
        if self.waiting() == 0 || self.pending_bytes() > self.home.low_water {
            return;
        }
        resumed.append(&mut self.take_parked());
    }

    /// The connection is gone: fail pushes, and return the parked producers, which the
    /// reactor drops (or runs, so they see the closed flag and end their streams).
    pub fn mark_closed(&self) -> Vec<Job> {
        self.closed.store(true, Ordering::SeqCst);
        // The shared lock only when someone waits: a producer counts itself before it
        // reads the flag (see `park_with`), so one not counted yet will see it closed.
        if self.waiting() == 0 {
            return Vec::new();
        }
        self.take_parked()
    }

    fn take_parked(&self) -> Vec<Job> {
        let mut parked = self.home.parked();
        self.parked_count.store(0, Ordering::SeqCst);
        if self.room_waiters.load(Ordering::SeqCst) > 0 {
            self.home.room.notify_all();
        }
        parked.remove(&self.id).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    //! Links of one reactor share a home (#17): the parked producers of one connection
    //! must stay its own.

    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use super::{ConnId, Courier, Gone, Link, LinkHome};
    use crate::work::Job;
    use crate::ws::frame::Opcode;

    struct Nowhere;

    impl Courier for Nowhere {
        fn deliver(&self, _: ConnId, _: Opcode, _: Vec<u8>, _: usize) -> Result<(), Gone> {
            Ok(())
        }
        fn notify(&self, _: ConnId, _: u32) -> Result<(), Gone> {
            Ok(())
        }
    }

    /// [`Link::set_queued`]'s resumed producers, as a list of their own.
    fn set_queued(link: &Link, queued: usize) -> Vec<Job> {
        let mut resumed = Vec::new();
        link.set_queued(queued, &mut resumed);
        resumed
    }

    /// A job that adds `n` to `ran` when run.
    fn job(ran: &Arc<AtomicUsize>, n: usize) -> Job {
        let ran = Arc::clone(ran);
        Box::new(move || {
            ran.fetch_add(n, Ordering::SeqCst);
        })
    }

    #[test]
    fn parked_producers_are_resumed_or_dropped_per_link_not_per_home() {
        let home = LinkHome::new(Arc::new(Nowhere), 100, 10);
        let a = Link::new(ConnId { slot: 1, gen: 1 }, &home);
        let b = Link::new(ConnId { slot: 2, gen: 1 }, &home);
        let ran = Arc::new(AtomicUsize::new(0));
        // Both over the high-water mark: producers park.
        assert!(set_queued(&a, 200).is_empty());
        assert!(set_queued(&b, 200).is_empty());
        assert!(!a.has_room() && !b.has_room());
        assert!(a.park_with(|| job(&ran, 1)));
        assert!(a.park_with(|| job(&ran, 1)));
        assert!(b.park_with(|| job(&ran, 100)));
        assert_eq!((a.waiting_producers(), b.waiting_producers()), (2, 1));
        // Between the marks: nobody is resumed.
        assert!(set_queued(&a, 50).is_empty());
        // `a` drains: its two producers come back, `b`'s stays parked.
        let resumed = set_queued(&a, 5);
        assert_eq!(resumed.len(), 2);
        resumed.into_iter().for_each(|j| j());
        assert_eq!(ran.load(Ordering::SeqCst), 2);
        assert_eq!((a.waiting_producers(), b.waiting_producers()), (0, 1));
        // `b` closes: its producer is handed back (to be dropped or run), once.
        let left = b.mark_closed();
        assert_eq!(left.len(), 1);
        left.into_iter().for_each(|j| j());
        assert_eq!(ran.load(Ordering::SeqCst), 102);
        assert!(b.mark_closed().is_empty());
        assert!(!b.park_with(|| job(&ran, 1)), "a closed link parks none");
        // `a` with room: parking is refused, the caller goes on.
        assert!(!a.park_with(|| job(&ran, 1000)));
        assert_eq!(ran.load(Ordering::SeqCst), 102);
    }

    #[test]
    fn a_blocked_push_wakes_when_its_own_link_drains_or_closes() {
        let home = LinkHome::new(Arc::new(Nowhere), 100, 10);
        let a = Arc::new(Link::new(ConnId { slot: 1, gen: 1 }, &home));
        set_queued(&a, 200);
        let waiter = {
            let a = Arc::clone(&a);
            std::thread::spawn(move || a.wait_for_room())
        };
        // Wait for the thread to block (an observable state, not a sleep).
        let deadline = Instant::now() + Duration::from_secs(10);
        while a.waiting_producers() == 0 {
            assert!(Instant::now() < deadline, "the push never waited");
            std::thread::yield_now();
        }
        set_queued(&a, 5);
        assert!(waiter.join().unwrap(), "room came: the push goes on");
        set_queued(&a, 200);
        let waiter = {
            let a = Arc::clone(&a);
            std::thread::spawn(move || a.wait_for_room())
        };
        while a.waiting_producers() == 0 {
            assert!(Instant::now() < deadline, "the push never waited");
            std::thread::yield_now();
        }
        drop(a.mark_closed());
        assert!(!waiter.join().unwrap(), "closed: the push fails");
    }
}
