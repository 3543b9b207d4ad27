//! Drive an [`App`] the way the reactor does, with no sockets: open a connection with
//! an upgrade request, hand it messages and notes, close it, and collect what its
//! [`Link`] sent. For unit tests and benchmarks of the runner (`benches/pipeline.rs`,
//! `tools/devtools`'s `inline_profile`); the reactor itself is not involved.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use crate::app::{App, AppConn, Dispatch, NoteVerdict, ReplyOut};
use crate::link::{ConnId, Courier, Gone, Link, LinkHome};
use crate::work::Job;
use crate::ws::{Message, Opcode, UpgradeRequest};

/// What a connection's [`Link`] handed to the "reactor".
#[derive(Debug, Default)]
struct Outbox {
    frames: Vec<(ConnId, Opcode, Vec<u8>)>,
    notes: Vec<(ConnId, u32)>,
}

/// A courier that keeps deliveries instead of sending them.
#[derive(Default)]
struct Collect(Mutex<Outbox>);

impl Courier for Collect {
    fn deliver(&self, to: ConnId, opcode: Opcode, payload: Vec<u8>, _: usize) -> Result<(), Gone> {
        let mut out = self.0.lock().unwrap_or_else(|e| e.into_inner());
        out.frames.push((to, opcode, payload));
        Ok(())
    }

    fn notify(&self, to: ConnId, note: u32) -> Result<(), Gone> {
        let mut out = self.0.lock().unwrap_or_else(|e| e.into_inner());
        out.notes.push((to, note));
        Ok(())
    }
}

/// An inline answer, kept (the reactor would queue it).
struct InlineOut(Option<Vec<u8>>);

impl ReplyOut for InlineOut {
    fn text_frame(&mut self, hint: usize, write: &mut dyn FnMut(&mut Vec<u8>)) {
        let mut frame = Vec::with_capacity(hint);
        write(&mut frame);
        // One answer per message.
        assert!(
            self.0.replace(frame).is_none(),
            "two inline answers to one message"
        );
    }
}

/// An application under test, with the reactor's side played here.
pub struct Harness {
    app: Arc<dyn App>,
    courier: Arc<Collect>,
    links: Arc<LinkHome>,
    next: AtomicU32,
}

/// One connection opened through a [`Harness`].
pub struct HarnessConn {
    conn: Arc<dyn AppConn>,
    closed: bool,
}

impl HarnessConn {
    /// The generic half, as workers see it.
    pub fn link(&self) -> &Link {
        self.conn.link()
    }

    /// A weak handle on the application's value: whether anything still holds the
    /// connection once it is closed and dropped.
    pub fn downgrade(&self) -> std::sync::Weak<dyn AppConn> {
        Arc::downgrade(&self.conn)
    }
}

/// A text frame's payload handed back by [`Harness::message`] or a worker.
pub type Frame = (Opcode, Vec<u8>);

impl Harness {
    /// A harness around `app`.
    pub fn new(app: Arc<dyn App>) -> Harness {
        let courier: Arc<Collect> = Arc::default();
        Harness {
            app,
            links: LinkHome::new(courier.clone(), 1 << 20, 256 << 10),
            courier,
            next: AtomicU32::new(0),
        }
    }

    /// A client upgraded with `target` (e.g. `/?token=abc`) and these headers; the
    /// jobs it started (on_connect) come back for the caller to run.
    pub fn open(&self, target: &str, headers: &[(&str, &str)]) -> (HarnessConn, Vec<Job>) {
        let req = UpgradeRequest {
            target: target.to_string(),
            headers: headers
                .iter()
                .map(|(n, v)| (n.to_ascii_lowercase(), v.to_string()))
                .collect(),
            key: "dGhlIHNhbXBsZSBub25jZQ==".into(),
            subprotocol: None,
        };
        let slot = self.next.fetch_add(1, Ordering::Relaxed);
        let link = Link::new(ConnId { slot, gen: 1 }, &self.links);
        let mut jobs = Vec::new();
        let conn = self.app.on_open(link, &req, &mut jobs);
        let c = HarnessConn {
            conn,
            closed: false,
        };
        (c, jobs)
    }

    /// A message arrived on `c`: what the reactor would do with it. An answer written
    /// inline comes back as [`Dispatch::Reply`]. Text must be UTF-8 (the codec would
    /// have closed the connection with 1007).
    pub fn message(&self, c: &mut HarnessConn, text: bool, payload: &[u8]) -> Dispatch {
        let msg = match text {
            true => Message::Text(std::str::from_utf8(payload).expect("text is UTF-8")),
            false => Message::Binary(payload),
        };
        let mut out = InlineOut(None);
        let (dispatch, conn) = Arc::clone(&c.conn).on_message(msg, &mut out);
        assert!(Arc::ptr_eq(&conn, &c.conn), "the connection comes back");
        match dispatch {
            Dispatch::Later => match out.0 {
                Some(frame) => Dispatch::Reply(frame),
                None => Dispatch::Later,
            },
            other => other,
        }
    }

    /// Pass the notes workers sent for `c` (e.g. on_connect's verdict) to it, as the
    /// reactor does; jobs they release go into `jobs`. The verdicts, in order.
    pub fn deliver_notes(&self, c: &mut HarnessConn, jobs: &mut Vec<Job>) -> Vec<NoteVerdict> {
        let notes: Vec<u32> = {
            let mut out = self.courier.0.lock().unwrap_or_else(|e| e.into_inner());
            let id = c.link().id;
            let (mine, rest) = out.notes.drain(..).partition(|(to, _)| *to == id);
            out.notes = rest;
            mine.into_iter().map(|(_, n)| n).collect()
        };
        // As the reactor: a note for a connection that has closed does nothing.
        notes
            .into_iter()
            .map(|n| match c.closed {
                true => NoteVerdict::Nothing,
                false => Arc::clone(&c.conn).on_note(n, jobs),
            })
            .collect()
    }

    /// The frames workers sent to `c` so far (taken: the next call returns newer
    /// ones). Their bytes leave the link's in-transit count, as if written at once.
    pub fn frames(&self, c: &HarnessConn) -> Vec<Frame> {
        let mut out = self.courier.0.lock().unwrap_or_else(|e| e.into_inner());
        let id = c.link().id;
        let (mine, rest) = out.frames.drain(..).partition(|(to, _, _)| *to == id);
        out.frames = rest;
        let mine: Vec<Frame> = mine.into_iter().map(|(_, o, p)| (o, p)).collect();
        let mut hdr = [0u8; crate::ws::frame::MAX_HEADER];
        for (o, p) in &mine {
            let n = crate::ws::frame::encode_header(&mut hdr, *o, p.len()) + p.len();
            c.link().transit_arrived(n);
        }
        mine
    }

    /// The connection ended: its link is marked closed and the application told,
    /// once. Jobs (on_disconnect) come back for the caller to run.
    pub fn close(&self, c: &mut HarnessConn) -> Option<Job> {
        if std::mem::replace(&mut c.closed, true) {
            return None;
        }
        drop(c.link().mark_closed());
        Arc::clone(&c.conn).on_close()
    }

    /// The application holds the connection's reading (e.g. messages wait for
    /// on_connect).
    pub fn holds_reading(&self, c: &HarnessConn) -> bool {
        c.conn.holds_reading()
    }

    /// The application's name for the connection (the runner's connection-id).
    pub fn label(&self, c: &HarnessConn) -> Arc<str> {
        c.conn.label()
    }
}
