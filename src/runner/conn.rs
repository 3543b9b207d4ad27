//! The runner's side of a connection: what Configurapi knows about it (its
//! connection-id, the identity on_connect set, whether on_connect accepted it) and the
//! registry by connection-id that the management API and postbacks address. The
//! transport's side is the [`Link`] inside.

use std::collections::HashMap;
use std::ops::Deref;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};

use crate::app::{AppConn, Dispatch, NoteVerdict};
use crate::configurapi::Identity;
use crate::link::{self, Busy, ConnId, HasLink, Link};
use crate::work::Job;

/// Messages that may wait for on_connect (6.5.4) before the connection stops being
/// read: a client cannot grow the server's memory while its on_connect is slow.
pub const MAX_WAITING_MESSAGES: usize = 64;

/// [`Link::notify`] note: on_connect accepted the connection.
pub(super) const NOTE_ACCEPT: u32 = 1;
/// [`Link::notify`] note: on_connect rejected the connection.
pub(super) const NOTE_REJECT: u32 = 2;

/// Who won the race between on_connect accepting and the connection closing, so
/// that on_disconnect runs exactly once for an accepted connection (8.11).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum AcceptState {
    /// on_connect has not decided yet and the connection is open.
    Pending = 0,
    /// on_connect accepted the connection.
    Accepted = 1,
    /// The connection closed before on_connect accepted it.
    ClosedFirst = 2,
}

/// A Configurapi connection as handlers' jobs see it, from any thread.
pub struct Connection {
    /// The transport's cross-thread half: sending, backpressure, drain accounting.
    /// Embedded: the reactor reaches it through [`AppConn::link`].
    pub link: Link,
    /// The Configurapi `connection-id` (a UUID v4).
    pub connection_id: Arc<str>,
    /// The first subprotocol the client offered (echoed in the handshake).
    pub subprotocol: Option<String>,
    /// Identity set by `on_connect`, the starting identity of later events (8.3).
    /// Boxed: most connections have none, and idle connections should stay small.
    pub identity: Mutex<Option<Box<Identity>>>,
    accept: AtomicU8,
}

impl Deref for Connection {
    type Target = Link;
    fn deref(&self) -> &Link {
        &self.link
    }
}

impl HasLink for Connection {
    fn link(&self) -> &Link {
        &self.link
    }
}

impl Connection {
    /// A new connection with a fresh connection-id.
    pub fn new(link: Link, subprotocol: Option<String>) -> Connection {
        Connection {
            link,
            // Encoded on the stack, then one allocation for the `Arc<str>`.
            connection_id: Arc::from(
                &*uuid::Uuid::new_v4()
                    .hyphenated()
                    .encode_lower(&mut uuid::Uuid::encode_buffer()),
            ),
            subprotocol,
            identity: Mutex::new(None),
            accept: AtomicU8::new(AcceptState::Pending as u8),
        }
    }

    /// Work for this connection starts (see [`link::begin`]).
    pub fn begin(self: &Arc<Self>) -> Busy {
        link::begin(self)
    }

    /// on_connect accepted the connection (8.4). `true`: the reactor will dispatch
    /// on_disconnect when it closes (send it the accept note now). `false`: it had
    /// closed already and on_disconnect was skipped, so the caller, which accepted it,
    /// must run on_disconnect itself (8.11).
    pub fn claim_accepted(&self) -> bool {
        self.swap_pending(AcceptState::Accepted)
    }

    /// A connection that was not accepted yet closed. `true` when on_connect had
    /// claimed it already (the accept note is still on its way), so on_disconnect is
    /// dispatched now; `false` when it had not (it never will now, or it runs
    /// on_disconnect itself).
    fn accepted_before_close(&self) -> bool {
        !self.swap_pending(AcceptState::ClosedFirst)
    }

    fn swap_pending(&self, to: AcceptState) -> bool {
        self.accept
            .compare_exchange(
                AcceptState::Pending as u8,
                to as u8,
                Ordering::SeqCst,
                Ordering::SeqCst,
            )
            .is_ok()
    }
}

/// Accepted, open connections by connection-id (management, postback). Touched only
/// on the reactor thread; the lock is never contended.
/// With `--cluster`, the directory mirrors it across nodes, so both live here.
#[derive(Default)]
pub(super) struct Registry {
    pub(super) ids: Mutex<HashMap<Arc<str>, ConnId>>,
    pub(super) directory: Option<Arc<crate::cluster::ClusterLink>>,
}

/// Where a connection is on the reactor thread.
enum Stage {
    /// on_connect has not answered; the messages that arrived meanwhile (6.5.4).
    Pending(Vec<Job>),
    /// Accepted (or there is no on_connect): in the registry.
    Accepted,
    /// Closed; on_close has run.
    Closed,
}

/// The runner's value for one connection, kept by the reactor.
pub(super) struct RunnerConn {
    pub(super) conn: Arc<Connection>,
    pub(super) runner: super::Runner,
    stage: Stage,
}

impl RunnerConn {
    /// `accepted`: there is no on_connect to wait for.
    pub(super) fn new(conn: Arc<Connection>, runner: super::Runner, accepted: bool) -> Self {
        let mut c = RunnerConn {
            conn,
            runner,
            stage: Stage::Pending(Vec::new()),
        };
        if accepted {
            c.accept();
        }
        c
    }

    fn accept(&mut self) -> Vec<Job> {
        self.runner
            .registry()
            .insert(Arc::clone(&self.conn.connection_id), self.conn.link.id);
        // cluster: the directory learns of it (a queue push; Redis is the cluster
        // thread's business), with the identity on_connect left.
        if let Some(dir) = &self.runner.registry.directory {
            let identity = self.describe().1;
            dir.register(
                &self.conn.connection_id,
                identity,
                std::time::SystemTime::now(),
            );
        }
        match std::mem::replace(&mut self.stage, Stage::Accepted) {
            Stage::Pending(waiting) => waiting,
            _ => Vec::new(),
        }
    }
}

impl AppConn for RunnerConn {
    fn on_message(&mut self, text: bool, payload: &[u8]) -> Dispatch {
        // Before acceptance the message must wait for on_connect, so it cannot be
        // answered inline.
        let accepted = matches!(self.stage, Stage::Accepted);
        match self.runner.dispatch(&self.conn, text, payload, accepted) {
            Dispatch::Job(job) => match &mut self.stage {
                Stage::Pending(waiting) => {
                    waiting.push(job);
                    Dispatch::Later
                }
                _ => Dispatch::Job(job),
            },
            other => other,
        }
    }

    fn on_note(&mut self, note: u32, jobs: &mut Vec<Job>) -> NoteVerdict {
        match (note, &mut self.stage) {
            (NOTE_ACCEPT, Stage::Pending(_)) => {
                jobs.append(&mut self.accept());
                NoteVerdict::ResumeReading
            }
            (NOTE_REJECT, Stage::Pending(waiting)) => {
                waiting.clear();
                NoteVerdict::Close(crate::ws::close_code::POLICY_VIOLATION, "Policy Violation")
            }
            _ => NoteVerdict::Nothing,
        }
    }

    fn on_close(&mut self) -> Option<Job> {
        // Leaves the registry first, then on_disconnect (6.5.6), once (8.11).
        let accepted = match std::mem::replace(&mut self.stage, Stage::Closed) {
            Stage::Accepted => {
                self.runner.registry().remove(&self.conn.connection_id);
                // cluster: and the directory forgets it
                if let Some(dir) = &self.runner.registry.directory {
                    dir.unregister(&self.conn.connection_id);
                }
                true
            }
            // An accept note may still be on its way: on_connect's claim decides.
            Stage::Pending(_) => self.conn.accepted_before_close(),
            Stage::Closed => return None,
        };
        if accepted {
            self.runner.on_close(&self.conn)
        } else {
            None
        }
    }

    fn holds_reading(&self) -> bool {
        matches!(&self.stage, Stage::Pending(w) if w.len() >= MAX_WAITING_MESSAGES)
    }

    fn link(&self) -> &Link {
        &self.conn.link
    }

    fn label(&self) -> Arc<str> {
        Arc::clone(&self.conn.connection_id)
    }

    fn describe(&self) -> (Option<String>, Option<String>) {
        let identity = self
            .conn
            .identity
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .map(|i| i.id.clone());
        (self.conn.subprotocol.clone(), identity)
    }
}

#[cfg(test)]
mod tests {
    //! The runner's connection life driven through the harness: no server, no socket.

    use std::sync::Arc;

    use serde_json::Value;

    use crate::app::{Dispatch, NoteVerdict};
    use crate::configurapi::Service;
    use crate::harness::Harness;
    use crate::runner::{registry, Runner, RunnerOptions};
    use crate::ws::close_code;

    fn harness(on_connect_status: u16) -> (Harness, Runner) {
        let yaml = format!(
            r#"
import: [configurapi-handler-http]
api:
  events:
    - name: on_connect
      policies:
        - setResponseStatusCodeHandler: [{on_connect_status}]
    - name: on_disconnect
      policies:
        - setResponseBodyHandler: [bye]
    - name: hello
      policies:
        - setResponseBodyHandler: [hi]
"#
        );
        let service = Service::from_str(&yaml, "test.yaml", registry()).unwrap();
        let runner = Runner::new(service, RunnerOptions::default());
        (Harness::new(Arc::new(runner.clone())), runner)
    }

    fn body(frame: &[u8]) -> Value {
        let v: Value = serde_json::from_slice(frame).unwrap();
        v["body"].clone()
    }

    #[test]
    fn messages_wait_for_on_connect_then_run_and_the_connection_joins_the_registry() {
        let (h, runner) = harness(200);
        let (mut c, jobs) = h.open("/?a=1", &[("Origin", "x")]);
        assert_eq!(jobs.len(), 1, "on_connect runs as a job");
        // Before on_connect answers, a message is held, not answered inline.
        assert!(matches!(
            h.message(&mut c, true, br#"{"name":"hello"}"#),
            Dispatch::Later
        ));
        assert!(!h.holds_reading(&c));
        assert!(runner.registry().is_empty());
        for job in jobs {
            job();
        }
        let mut released = Vec::new();
        assert_eq!(
            h.deliver_notes(&mut c, &mut released),
            vec![NoteVerdict::ResumeReading]
        );
        assert_eq!(released.len(), 1, "the held message is released");
        let label = h.label(&c);
        assert_eq!(runner.registry().get(&label).copied(), Some(c.link().id));
        for job in released {
            job();
        }
        let frames = h.frames(&c);
        assert_eq!(frames.len(), 1);
        assert_eq!(body(&frames[0].1), "hi");
        // Accepted now: answered inline.
        let Dispatch::Reply(frame) = h.message(&mut c, true, br#"{"name":"hello"}"#) else {
            panic!("an accepted connection's non-blocking route runs inline");
        };
        assert_eq!(body(&frame), "hi");
        // Closing leaves the registry and runs on_disconnect, once.
        assert!(h.close(&mut c).is_some());
        assert!(runner.registry().is_empty());
        assert!(h.close(&mut c).is_none());
    }

    #[test]
    fn a_rejected_connection_is_closed_with_1008_and_gets_no_on_disconnect() {
        let (h, runner) = harness(403);
        let (mut c, jobs) = h.open("/", &[]);
        for _ in 0..super::MAX_WAITING_MESSAGES {
            let _ = h.message(&mut c, true, br#"{"name":"hello"}"#);
        }
        assert!(h.holds_reading(&c), "enough messages wait: reading stops");
        for job in jobs {
            job();
        }
        let mut released = Vec::new();
        assert_eq!(
            h.deliver_notes(&mut c, &mut released),
            vec![NoteVerdict::Close(
                close_code::POLICY_VIOLATION,
                "Policy Violation"
            )]
        );
        assert!(released.is_empty(), "the held messages are dropped");
        assert!(!h.holds_reading(&c));
        assert!(runner.registry().is_empty());
        assert!(
            h.close(&mut c).is_none(),
            "never accepted: no on_disconnect"
        );
    }

    #[test]
    fn a_client_that_leaves_while_on_connect_runs_gets_on_disconnect_from_on_connect() {
        let (h, _runner) = harness(200);
        let (mut c, jobs) = h.open("/", &[]);
        // Closed first: the reactor's side does not run on_disconnect...
        assert!(h.close(&mut c).is_none());
        // ...and on_connect, which accepts after, loses the claim: it sends no accept
        // note (it runs on_disconnect itself, 8.11) and nothing reaches the client.
        for job in jobs {
            job();
        }
        let mut released = Vec::new();
        assert!(h.deliver_notes(&mut c, &mut released).is_empty());
        assert!(h.frames(&c).is_empty());
    }
}

#[cfg(test)]
mod layout {
    //! Where an idle connection's bytes go (docs/limits.md, "Per-connection layout").
    //! Ceilings, not exact figures: a field that grows a struct fails here first.

    use std::mem::size_of;

    use super::{Connection, RunnerConn};
    use crate::conn::transport::Transport;
    use crate::conn::write_queue::WriteQueue;
    use crate::conn::{Conn, ConnState};
    use crate::link::Link;
    use crate::reactor::Ext;
    use crate::ws::deflate::ConnDeflate;
    use crate::ws::frame::Decoder;
    use crate::ws::session::Session;

    #[test]
    fn idle_connection_sizes() {
        let sizes = [
            ("Conn<Ext> (slab entry payload)", size_of::<Conn<Ext>>()),
            ("ConnState", size_of::<ConnState>()),
            ("Decoder", size_of::<Decoder>()),
            ("Session", size_of::<Session>()),
            ("WriteQueue", size_of::<WriteQueue>()),
            ("Transport", size_of::<Transport>()),
            (
                "Option<Box<ConnDeflate>> (field)",
                size_of::<Option<Box<ConnDeflate>>>(),
            ),
            ("ConnDeflate", size_of::<ConnDeflate>()),
            ("RunnerConn (boxed)", size_of::<RunnerConn>()),
            ("Connection (in Arc)", size_of::<Connection>()),
            ("Link", size_of::<Link>()),
            (
                "Option<Conn<Ext>> (~ slab entry)",
                size_of::<Option<Conn<Ext>>>(),
            ),
        ];
        for (name, n) in sizes {
            println!("{name}: {n}");
        }
        assert!(size_of::<Session>() <= 16); // #17 idle-echo: was 24
        assert!(size_of::<Option<Box<ConnDeflate>>>() <= 8);
        assert!(size_of::<Conn<Ext>>() <= 208); // #17 idle-echo: was 536
        assert!(size_of::<ConnState>() <= 144); // #17 idle-echo: new
        assert!(size_of::<Decoder>() <= 48); // #17 idle-echo: new
    }
}
