//! The seam between the reactor and an application (the Configurapi runner).
//!
//! The reactor reports what happened to a connection (upgraded with this request, a
//! message, a note from another thread, closed) and the application answers with
//! verdicts: jobs for the worker pool, an inline reply, a close. The reactor keeps one
//! opaque value per connection for the application ([`AppConn`]) and never looks
//! inside it. The reactor calls these on its own thread, so they must be quick: they
//! copy what they need and return jobs. Results come back through the connection's
//! [`Link`], from any thread.
//!
//! Plain types only: this module imports nothing of `conn/` or `reactor/`, so the
//! settings (`config.rs`) can name an [`App`] without a circle.

use std::sync::Arc;
use std::time::Instant;

use crate::configurapi::Schedule;
use crate::link::{ConnId, Link};
use crate::mgmt::MetricsSnapshot;
use crate::work::Job;
use crate::ws::{Message, UpgradeRequest};

/// How a message is handled.
pub enum Dispatch {
    /// Run this on the worker pool.
    Job(Job),
    /// Handled inline: send this text frame payload to the connection now.
    Reply(Vec<u8>),
    /// Nothing more for the reactor to do: the answer was written into the
    /// [`ReplyOut`] (handled inline), or comes later through the connection's [`Link`]
    /// (a suspended pipeline, or a message held until the connection is accepted).
    Later,
}

/// Where an inline answer goes: straight into the connection's outgoing bytes, as one
/// text frame written in place (#17: no buffer of its own, copied and freed).
pub trait ReplyOut {
    /// Queue one text frame whose payload `write` appends to the buffer it is given
    /// (called once, at once). `hint`: a guess of the payload's size.
    fn text_frame(&mut self, hint: usize, write: &mut dyn FnMut(&mut Vec<u8>));

    /// When the message was read: the reactor's clock of the wake that read its bytes
    /// (#17: an event answered inline reads the clock once, at its end, not twice).
    fn received(&self) -> Instant {
        Instant::now()
    }
}

/// What the reactor does after a note ([`AppConn::on_note`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoteVerdict {
    /// Nothing more.
    Nothing,
    /// Read the connection again: it may have stopped while
    /// [`AppConn::holds_reading`] said so, and edge-triggered polling raises no event
    /// for bytes already waiting.
    ResumeReading,
    /// Start the close handshake with this code and reason.
    Close(u16, &'static str),
}

/// What an application does with connections.
pub trait App: Send + Sync + 'static {
    /// A client finished the upgrade (the 101 is queued). Returns the application's
    /// value for the connection, which the reactor keeps until it closes, and jobs to
    /// run (for the runner: on_connect) into `jobs`.
    fn on_open(&self, link: Link, req: &UpgradeRequest, jobs: &mut Vec<Job>) -> Arc<dyn AppConn>;

    /// The connection the application knows by `key` (its own name for it, e.g. the
    /// runner's connection-id), for the management API.
    fn find(&self, key: &str) -> Option<ConnId> {
        let _ = key;
        None
    }

    /// The keys of the connections the management API may list and reach, sorted.
    fn keys(&self) -> Vec<String> {
        Vec::new()
    }

    /// Where pipelines that suspended resume: the worker pool's resumed queue (given
    /// once, when the pool starts).
    fn set_resume(&self, resume: Arc<dyn Schedule>) {
        let _ = resume;
    }

    /// The management listener is bound; `base` is its URL (e.g.
    /// `http://127.0.0.1:9100`), the default base of `postback-url` (8.6).
    fn set_management_url(&self, base: &str) {
        let _ = base;
    }

    /// Add the application's figures (handler latency, responses by status) to a
    /// `/metrics` snapshot.
    fn fill_metrics(&self, m: &mut MetricsSnapshot) {
        let _ = m;
    }
}

/// The application's value for one connection, kept by the reactor, called on the
/// reactor thread. Shared (`Arc`): the same allocation is the handle the application's
/// other threads hold (one heap block per connection, #17). The calls that may hand the
/// connection to a job take the reactor's `Arc` (a clone: a count, not a copy);
/// `on_message` takes the reactor's own and gives it back (#17: no count a message).
pub trait AppConn: Send + Sync {
    /// A complete message arrived. The application may answer inline (into `out`, or
    /// [`Dispatch::Reply`]: no I/O, never wait).
    /// The reactor's `Arc` is lent: the answer comes back with it.
    fn on_message(
        self: Arc<Self>,
        msg: Message<'_>,
        out: &mut dyn ReplyOut,
    ) -> (Dispatch, Arc<dyn AppConn>);

    /// Another thread sent `note` through [`Link::notify`]; jobs to run go into `jobs`.
    fn on_note(self: Arc<Self>, note: u32, jobs: &mut Vec<Job>) -> NoteVerdict;

    /// The connection ended (any cause), after its [`Link`] was marked closed. Called
    /// exactly once.
    fn on_close(self: Arc<Self>) -> Option<Job>;

    /// Stop reading the connection for now (e.g. enough messages wait for
    /// on_connect); the reactor resumes on [`NoteVerdict::ResumeReading`].
    fn holds_reading(&self) -> bool {
        false
    }

    /// The connection's link, which the application's value holds (so the two share
    /// one allocation); the reactor keeps its byte counts and closes it.
    fn link(&self) -> &Link;

    /// The name in log lines (the runner's connection-id), so a connection's open,
    /// access and close lines can be joined. Rendered when asked: the reactor keeps it
    /// only while its connection lines are logged.
    fn label(&self) -> Arc<str>;

    /// The subprotocol and the identity id, for the management API's connection info.
    fn describe(&self) -> (Option<String>, Option<String>) {
        (None, None)
    }
}
