//! The host's stdin, written without blocking the caller: a call is written straight to
//! the non-blocking pipe from the thread that makes it (usually the reactor) when
//! nothing is queued; what does not fit waits in a buffer that a writer thread drains
//! as Node reads. Writing directly saves a thread wake-up per call (measured in
//! docs/benchmarks.md, "JS handlers"); the writer thread only works when Node is behind.

use std::io::{ErrorKind, Write};
use std::process::ChildStdin;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

use mio::unix::pipe::Sender;
use mio::{Events, Interest, Poll, Token};

#[derive(Default)]
struct State {
    /// Bytes waiting for room in the pipe, in order.
    pending: Vec<u8>,
    /// The writer thread is writing bytes it took from `pending`.
    busy: bool,
    closed: bool,
}

/// The writing end of the host's stdin.
pub(super) struct Pipe {
    tx: Arc<Sender>,
    state: Mutex<State>,
    more: Condvar,
}

impl Pipe {
    /// Takes over `stdin` (set non-blocking) and starts its writer thread.
    pub(super) fn start(stdin: ChildStdin) -> std::io::Result<Arc<Pipe>> {
        let mut tx = Sender::from(stdin);
        tx.set_nonblocking(true)?;
        let poll = Poll::new()?;
        poll.registry()
            .register(&mut tx, Token(0), Interest::WRITABLE)?;
        let pipe = Arc::new(Pipe {
            tx: Arc::new(tx),
            state: Mutex::new(State::default()),
            more: Condvar::new(),
        });
        let me = Arc::clone(&pipe);
        std::thread::Builder::new()
            .name("jshost-writer".into())
            .spawn(move || me.drain(poll))?;
        Ok(pipe)
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queue `bytes` after everything sent before. False once the pipe is closed or
    /// broken (the host is gone; the reader thread handles that).
    pub(super) fn send(&self, bytes: &[u8]) -> bool {
        let mut st = self.lock();
        if st.closed {
            return false;
        }
        if st.pending.is_empty() && !st.busy {
            let mut off = 0;
            while off < bytes.len() {
                match (&*self.tx).write(&bytes[off..]) {
                    Ok(n) => off += n,
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == ErrorKind::Interrupted => {}
                    Err(_) => {
                        st.closed = true;
                        self.more.notify_all();
                        return false;
                    }
                }
            }
            if off == bytes.len() {
                return true;
            }
            st.pending.extend_from_slice(&bytes[off..]);
            self.more.notify_all();
            return true;
        }
        st.pending.extend_from_slice(bytes);
        if !st.busy {
            self.more.notify_all();
        }
        true
    }

    /// Stop: what is queued is still written, then the pipe closes (Node sees EOF).
    pub(super) fn close(&self) {
        self.lock().closed = true;
        self.more.notify_all();
    }

    /// The writer thread: waits for queued bytes, writes them as the pipe has room.
    fn drain(self: Arc<Self>, mut poll: Poll) {
        let mut events = Events::with_capacity(4);
        let mut chunk = Vec::new();
        loop {
            {
                let mut st = self.lock();
                st.busy = false;
                while st.pending.is_empty() && !st.closed {
                    st = self.more.wait(st).unwrap_or_else(|e| e.into_inner());
                }
                if st.pending.is_empty() {
                    return; // closed, everything written: dropping `tx` closes the pipe
                }
                std::mem::swap(&mut chunk, &mut st.pending);
                st.busy = true;
            }
            let mut off = 0;
            while off < chunk.len() {
                match (&*self.tx).write(&chunk[off..]) {
                    Ok(n) => off += n,
                    Err(e) if e.kind() == ErrorKind::WouldBlock => {
                        // Edge-triggered: wait for room, with a timeout in case an edge
                        // came before the registration saw it.
                        let _ = poll.poll(&mut events, Some(Duration::from_millis(50)));
                    }
                    Err(e) if e.kind() == ErrorKind::Interrupted => {}
                    Err(_) => {
                        let mut st = self.lock();
                        st.closed = true;
                        st.pending.clear();
                        st.busy = false;
                        return;
                    }
                }
            }
            chunk.clear();
        }
    }
}
