//! The runner's side of a connection: what Configurapi knows about it (its
//! connection-id, the identity on_connect set, whether on_connect accepted it) and the
//! registry by connection-id that the management API and postbacks address. The
//! transport's side is the [`Link`] inside.
//!
//! One allocation per connection (#17): the [`Connection`] is the reactor's value for
//! it (an `Arc<dyn AppConn>`) and the handle workers hold, with the link inside; the
//! connection-id is kept as its 16 bytes and rendered when asked; what most connections
//! never have (a subprotocol, an identity, messages held for on_connect) is boxed aside.

use std::borrow::Borrow;
use std::collections::HashSet;
use std::hash::{Hash, Hasher};
use std::ops::Deref;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use uuid::Uuid;

use crate::app::{AppConn, Dispatch, NoteVerdict, ReplyOut};
use crate::configurapi::Identity;
use crate::link::{self, Busy, ConnId, HasLink, Link};
use crate::work::Job;
use crate::ws::Message;

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

// The connection's state byte (`Link::app_state`): the accept race's `AcceptState`
// (workers and the reactor) in the low bits, the reactor's stage above it. One byte
// in the link's padding instead of a field of the connection's own.
const ACCEPT_MASK: u8 = 0b0011;
const STAGE_MASK: u8 = 0b1100;
/// on_connect has not answered; messages that arrive meanwhile are held (6.5.4).
const STAGE_PENDING: u8 = 0;
/// Accepted (or there is no on_connect): in the registry.
const STAGE_ACCEPTED: u8 = 0b0100;
/// Closed; on_close has run.
const STAGE_CLOSED: u8 = 0b1000;

/// A Configurapi connection: the reactor's value for it and the handle handlers' jobs
/// hold, from any thread.
pub struct Connection {
    /// The transport's cross-thread half: sending, backpressure, drain accounting.
    /// Embedded: the reactor reaches it through [`AppConn::link`].
    pub link: Link,
    runner: super::Runner,
    /// The Configurapi `connection-id` (a UUID v4), rendered by [`Connection::connection_id`].
    id: Uuid,
    /// What few connections have, allocated when the first of it comes.
    aside: OnceLock<Box<Aside>>,
}

/// The rarely present parts of a [`Connection`].
#[derive(Default)]
struct Aside {
    /// The first subprotocol the client offered (echoed in the handshake).
    subprotocol: Option<String>,
    /// Identity set by `on_connect`, the starting identity of later events (8.3).
    identity: Mutex<Option<Identity>>,
    /// Messages that arrived before on_connect answered (6.5.4), reactor thread only.
    held: Mutex<Vec<Job>>,
}

/// A connection-id as text, rendered on the stack (no allocation).
pub struct IdText([u8; 36]);

impl IdText {
    fn new(id: &Uuid) -> IdText {
        let mut buf = [0u8; 36];
        id.hyphenated().encode_lower(&mut buf);
        IdText(buf)
    }
}

impl Deref for IdText {
    type Target = str;
    fn deref(&self) -> &str {
        // Hex digits and hyphens: always UTF-8.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}

impl AsRef<str> for IdText {
    fn as_ref(&self) -> &str {
        self
    }
}

impl std::fmt::Display for IdText {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self)
    }
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

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Connection {
    /// A new connection of `runner` with a fresh connection-id.
    pub(super) fn new(link: Link, runner: super::Runner, subprotocol: Option<String>) -> Self {
        let aside = OnceLock::new();
        if subprotocol.is_some() {
            let _ = aside.set(Box::new(Aside {
                subprotocol,
                ..Aside::default()
            }));
        }
        Connection {
            link,
            runner,
            id: Uuid::new_v4(),
            aside,
        }
    }

    /// The Configurapi `connection-id`, as text (logs, errors, the registry).
    pub fn connection_id(&self) -> IdText {
        IdText::new(&self.id)
    }

    /// Append the `connection-id` to `out`: the per-message path (each event's
    /// headers), encoded straight into the string.
    pub fn write_connection_id(&self, out: &mut String) {
        out.push_str(
            self.id
                .hyphenated()
                .encode_lower(&mut Uuid::encode_buffer()),
        );
    }

    /// The `connection-id` as its 16 bytes.
    pub fn uuid(&self) -> Uuid {
        self.id
    }

    /// The `connection-id` in a string of its own (one exact allocation).
    pub fn connection_id_string(&self) -> String {
        let mut s = String::with_capacity(uuid::fmt::Hyphenated::LENGTH);
        self.write_connection_id(&mut s);
        s
    }

    /// The first subprotocol the client offered.
    pub fn subprotocol(&self) -> Option<&str> {
        self.aside.get()?.subprotocol.as_deref()
    }

    /// The identity on_connect set (8.3), for an event of this connection.
    pub fn identity(&self) -> Option<Identity> {
        lock(&self.aside.get()?.identity).clone()
    }

    /// on_connect's identity, kept for the connection's later events (8.3).
    pub fn set_identity(&self, identity: Option<Identity>) {
        if identity.is_none() && self.aside.get().is_none() {
            return;
        }
        *lock(&self.aside().identity) = identity;
    }

    fn aside(&self) -> &Aside {
        self.aside.get_or_init(Box::default)
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
        self.link
            .app_state
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |s| {
                (s & ACCEPT_MASK == AcceptState::Pending as u8)
                    .then_some((s & !ACCEPT_MASK) | to as u8)
            })
            .is_ok()
    }

    /// Where the connection is on the reactor thread (a `STAGE_*`).
    fn stage(&self) -> u8 {
        self.link.app_state.load(Ordering::SeqCst) & STAGE_MASK
    }

    /// Move to `stage`; the stage it had.
    fn set_stage(&self, stage: u8) -> u8 {
        let swap = |s: u8| Some((s & !STAGE_MASK) | stage);
        let was = match self
            .link
            .app_state
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, swap)
        {
            Ok(s) | Err(s) => s,
        };
        was & STAGE_MASK
    }

    /// The messages held for on_connect, taken.
    fn take_held(&self) -> Vec<Job> {
        match self.aside.get() {
            Some(a) => std::mem::take(&mut *lock(&a.held)),
            None => Vec::new(),
        }
    }

    /// Accepted (by on_connect, or there is none): joins the registry (and the
    /// cluster's directory). The messages held meanwhile, to run now.
    pub(super) fn accept(self: &Arc<Self>) -> Vec<Job> {
        let registry = self.runner.registry();
        registry.insert(Arc::clone(self));
        // cluster: the directory learns of it (a queue push; Redis is the cluster
        // thread's business), with the identity on_connect left.
        if let Some(dir) = &registry.directory {
            let identity = self.describe().1;
            dir.register(
                &self.connection_id(),
                identity,
                std::time::SystemTime::now(),
            );
        }
        self.set_stage(STAGE_ACCEPTED);
        self.take_held()
    }
}

/// Accepted, open connections by connection-id (management, postback). Touched only
/// on the reactor thread; the lock is never contended.
/// With `--cluster`, the directory mirrors it across nodes, so both live here.
pub(super) struct Registry {
    /// A set of the connections themselves, found by their 16-byte id: 8 B a bucket
    /// (#17; a map from the id's text to the `ConnId` took 24).
    ids: Mutex<HashSet<Entry>>,
    pub(super) directory: Option<Arc<crate::cluster::ClusterLink>>,
}

/// A registry entry: the connection, hashed and compared by its id. A connection
/// leaves the registry in `on_close`, which breaks the cycle through its runner.
struct Entry(Arc<Connection>);

impl PartialEq for Entry {
    fn eq(&self, other: &Entry) -> bool {
        self.0.id == other.0.id
    }
}

impl Eq for Entry {}

impl Hash for Entry {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.0.id.hash(state);
    }
}

impl Borrow<Uuid> for Entry {
    fn borrow(&self) -> &Uuid {
        &self.0.id
    }
}

impl Registry {
    pub(super) fn new(directory: Option<Arc<crate::cluster::ClusterLink>>) -> Registry {
        Registry {
            ids: Mutex::default(),
            directory,
        }
    }

    fn insert(&self, conn: Arc<Connection>) {
        lock(&self.ids).insert(Entry(conn));
    }

    /// Takes the entry out; it is dropped after the lock.
    fn remove(&self, id: &Uuid) -> Option<Entry> {
        lock(&self.ids).take(id)
    }

    /// The connection with this connection-id (exactly as the runner writes it:
    /// lowercase, hyphenated).
    pub(super) fn find(&self, key: &str) -> Option<ConnId> {
        let id = Uuid::try_parse(key).ok()?;
        if *IdText::new(&id) != *key {
            return None;
        }
        lock(&self.ids).get(&id).map(|e| e.0.link.id)
    }

    /// The connection-ids, sorted.
    pub(super) fn keys(&self) -> Vec<String> {
        let mut ids: Vec<String> = lock(&self.ids)
            .iter()
            .map(|e| e.0.connection_id_string())
            .collect();
        // The strings, not the ids: the same sort as elsewhere, no new one in the binary.
        ids.sort_unstable();
        ids
    }

    /// Connections in the registry.
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        lock(&self.ids).len()
    }
}

impl AppConn for Connection {
    fn on_message(
        self: Arc<Self>,
        msg: Message<'_>,
        out: &mut dyn ReplyOut,
    ) -> (Dispatch, Arc<dyn AppConn>) {
        // Before acceptance the message must wait for on_connect, so it cannot be
        // answered inline.
        let accepted = self.stage() == STAGE_ACCEPTED;
        let dispatch = match self.runner.dispatch(&self, msg, accepted, out) {
            Dispatch::Job(job) if self.stage() == STAGE_PENDING => {
                lock(&self.aside().held).push(job);
                Dispatch::Later
            }
            other => other,
        };
        (dispatch, self)
    }

    fn on_note(self: Arc<Self>, note: u32, jobs: &mut Vec<Job>) -> NoteVerdict {
        match (note, self.stage()) {
            (NOTE_ACCEPT, STAGE_PENDING) => {
                jobs.append(&mut self.accept());
                NoteVerdict::ResumeReading
            }
            (NOTE_REJECT, STAGE_PENDING) => {
                drop(self.take_held());
                NoteVerdict::Close(crate::ws::close_code::POLICY_VIOLATION, "Policy Violation")
            }
            _ => NoteVerdict::Nothing,
        }
    }

    fn on_close(self: Arc<Self>) -> Option<Job> {
        // Leaves the registry first, then on_disconnect (6.5.6), once (8.11).
        let accepted = match self.set_stage(STAGE_CLOSED) {
            STAGE_ACCEPTED => {
                let entry = self.runner.registry().remove(&self.id);
                // cluster: and the directory forgets it
                if let Some(dir) = &self.runner.registry().directory {
                    dir.unregister(&self.connection_id());
                }
                drop(entry);
                true
            }
            // An accept note may still be on its way: on_connect's claim decides. The
            // held messages (which hold the connection) are dropped.
            STAGE_PENDING => {
                drop(self.take_held());
                self.accepted_before_close()
            }
            _ => return None,
        };
        if accepted {
            self.runner.on_close(&self)
        } else {
            None
        }
    }

    fn holds_reading(&self) -> bool {
        self.stage() == STAGE_PENDING
            && self
                .aside
                .get()
                .is_some_and(|a| lock(&a.held).len() >= MAX_WAITING_MESSAGES)
    }

    fn link(&self) -> &Link {
        &self.link
    }

    fn label(&self) -> Arc<str> {
        Arc::from(&*self.connection_id())
    }

    fn describe(&self) -> (Option<String>, Option<String>) {
        let identity = self
            .aside
            .get()
            .and_then(|a| lock(&a.identity).as_ref().map(|i| i.id.clone()));
        (self.subprotocol().map(str::to_owned), identity)
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
        assert_eq!(runner.registry().len(), 0);
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
        assert_eq!(runner.registry().find(&label), Some(c.link().id));
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
        assert_eq!(runner.registry().len(), 0);
        assert!(h.close(&mut c).is_none());
    }

    /// A runner whose one route answers `hello` with `body`, and an accepted connection.
    fn hello_runner(body: &str) -> (Harness, Runner, crate::harness::HarnessConn) {
        let yaml = format!(
            "import: [configurapi-handler-http]\napi:\n  events:\n    - name: hello\n      policies:\n        - setResponseBodyHandler: [{body}]\n"
        );
        let service = Service::from_str(&yaml, "test.yaml", registry()).unwrap();
        let runner = Runner::new(service, RunnerOptions::default());
        let h = Harness::new(Arc::new(runner.clone()));
        let (c, jobs) = h.open("/", &[]);
        assert!(jobs.is_empty(), "no on_connect: accepted at once");
        (h, runner, c)
    }

    #[test]
    fn each_message_runs_on_its_own_runners_service_as_it_is_after_the_last_reload() {
        // #17: the service is read from a per-thread copy; two runners take turns on this
        // thread and one reloads between messages.
        let (ha, runner_a, mut a) = hello_runner("a1");
        let (hb, _runner_b, mut b) = hello_runner("b1");
        let ask = |h: &Harness, c: &mut crate::harness::HarnessConn| {
            let Dispatch::Reply(frame) = h.message(c, true, br#"{"name":"hello"}"#) else {
                panic!("a non-blocking route runs inline");
            };
            body(&frame)
        };
        assert_eq!(ask(&ha, &mut a), "a1");
        assert_eq!(ask(&hb, &mut b), "b1");
        assert_eq!(ask(&ha, &mut a), "a1");
        let yaml = "import: [configurapi-handler-http]\napi:\n  events:\n    - name: hello\n      policies:\n        - setResponseBodyHandler: [a2]\n";
        runner_a.reload(Service::from_str(yaml, "test.yaml", registry()).unwrap());
        assert_eq!(
            ask(&ha, &mut a),
            "a2",
            "the message after a reload runs on the new service"
        );
        assert_eq!(ask(&hb, &mut b), "b1");
        assert_eq!(ask(&ha, &mut a), "a2");
        // And on another thread, whose copy is its own.
        let other = std::thread::spawn(move || {
            let Dispatch::Reply(frame) = ha.message(&mut a, true, br#"{"name":"hello"}"#) else {
                panic!("inline");
            };
            body(&frame)
        });
        assert_eq!(other.join().unwrap(), "a2");
    }

    #[test]
    fn the_registry_finds_a_connection_by_its_id_as_written_and_lists_them_sorted() {
        let (h, runner) = harness(200);
        let mut conns = Vec::new();
        for _ in 0..3 {
            let (mut c, jobs) = h.open("/", &[]);
            for job in jobs {
                job();
            }
            h.deliver_notes(&mut c, &mut Vec::new());
            conns.push(c);
        }
        let keys = crate::app::App::keys(&runner);
        assert_eq!(keys.len(), 3);
        assert!(keys.windows(2).all(|w| w[0] < w[1]), "sorted: {keys:?}");
        for c in &conns {
            let id = h.label(c);
            assert!(uuid::Uuid::parse_str(&id).is_ok_and(|u| u.get_version_num() == 4));
            assert!(keys.iter().any(|k| **k == *id));
            assert_eq!(runner.registry().find(&id), Some(c.link().id));
            // Only the form the runner writes names it.
            assert_eq!(runner.registry().find(&id.to_uppercase()), None);
            assert_eq!(runner.registry().find(&id.replace('-', "")), None);
        }
        assert_eq!(runner.registry().find("not-an-id"), None);
        for mut c in conns {
            assert!(h.close(&mut c).is_some(), "accepted: on_disconnect");
        }
        assert_eq!(runner.registry().len(), 0);
    }

    #[test]
    fn a_closed_connection_is_freed_whether_it_held_messages_or_was_in_the_registry() {
        // The held messages' jobs and the registry hold the connection: closing must
        // let go of both, or every connection would leak through its runner.
        let (h, runner) = harness(200);
        let (mut c, on_connect) = h.open("/", &[]);
        assert!(matches!(
            h.message(&mut c, true, br#"{"name":"hello"}"#),
            Dispatch::Later
        ));
        let held = c.downgrade();
        assert!(h.close(&mut c).is_none());
        drop((c, on_connect));
        assert!(held.upgrade().is_none(), "held messages kept it alive");

        let (mut c, on_connect) = h.open("/", &[]);
        on_connect.into_iter().for_each(|job| job());
        h.deliver_notes(&mut c, &mut Vec::new());
        assert_eq!(runner.registry().len(), 1);
        let accepted = c.downgrade();
        let on_disconnect = h.close(&mut c).expect("accepted: on_disconnect");
        on_disconnect();
        drop(c);
        assert!(accepted.upgrade().is_none(), "the registry kept it alive");
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
        assert_eq!(runner.registry().len(), 0);
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

    use super::{Aside, Connection};
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
            (
                "Connection (in Arc, Configurapi mode)",
                size_of::<Connection>(),
            ),
            ("Aside (boxed, when present)", size_of::<Aside>()),
            ("Link", size_of::<Link>()),
            ("registry entry", size_of::<super::Entry>()),
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

        // Configurapi mode (#17): one heap block per connection, `Arc` counts (16 B)
        // + `Connection`; 104 B is a 112 B block with glibc's 8 B header.
        assert!(size_of::<Link>() <= 48);
        assert!(size_of::<Connection>() <= 88);
        // The registry's bucket: one pointer (+ 1 control byte).
        assert!(size_of::<super::Entry>() <= 8);
    }
}
