//! Several runners as one through Redis (`--cluster`, docs/cluster.md).
//!
//! The reactor never talks to Redis. It holds a [`ClusterLink`]: a channel to the
//! cluster thread ([`node`], the only code that uses the Redis client) and the node's
//! health. The runner calls the link on a connection's accept and close (directory
//! writes) and the reactor hands it the management requests it cannot answer alone (a connection
//! another node holds, a cluster-wide list, a fan-out); each such request is parked on
//! its management connection and answered when the cluster thread sends
//! [`ToReactor::Answer`] through the reactor's command channel. Requests from other
//! nodes come in the same way as [`ToReactor::Exec`].
//!
//! ```text
//!  reactor ──Event──► cluster thread ──pipelined──► Redis (directory, heartbeat)
//!     ▲                 │   ▲                        │ pub/sub: node inboxes
//!     └──ToReactor──────┘   └──── subscriber thread ◄┘
//! ```

// Without the feature the link stays (the reactor's hooks compile the same) but
// nothing ever reads its channel: `--cluster` is refused at start-up.
#![cfg_attr(not(feature = "cluster"), allow(dead_code, unused_variables))]

#[cfg(feature = "cluster")]
pub mod node;

use std::sync::{Arc, Condvar, Mutex};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use crate::mgmt::{MgmtResponse, Remote};

/// The management connection a parked request came from (slot and generation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Parked {
    /// The management connection's slot.
    pub slot: usize,
    /// Its generation: an answer to a connection that has gone is dropped.
    pub gen: u32,
}

/// An operation on this node's own connections, asked by another node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LocalOp {
    /// One connection's facts.
    Get(String),
    /// Queue this envelope JSON as one text frame.
    Post(String, Vec<u8>),
    /// Close with 1000.
    Delete(String),
    /// The envelope to every connection (of one identity).
    Broadcast {
        /// Only connections with this identity id.
        identity: Option<String>,
        /// The envelope JSON, encoded once by the node that took the request.
        envelope: Vec<u8>,
    },
}

/// What a [`LocalOp`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OpResult {
    /// The connection is not here (any more).
    Gone,
    /// Queued (a post) or closing (a delete).
    Done,
    /// `GET /@connections/{id}`'s JSON.
    Info(Vec<u8>),
    /// How many connections took a fan-out.
    Count(usize),
}

/// Work the cluster thread hands the reactor (through its command channel).
pub enum ToReactor {
    /// The answer to a parked management request.
    Answer {
        /// Where the request came from.
        to: Parked,
        /// The answer.
        response: MgmtResponse,
    },
    /// Run an operation on local connections and report what it did.
    Exec {
        /// The operation.
        op: LocalOp,
        /// Called on the reactor thread with the outcome (it only sends on a channel).
        done: Box<dyn FnOnce(OpResult) + Send>,
    },
}

/// What the cluster thread receives.
pub(crate) enum Event {
    /// A connection joined the registry (accepted by on_connect).
    Register {
        id: String,
        identity: Option<String>,
        created_ms: u64,
    },
    /// A connection left the registry.
    Unregister { id: String },
    /// A management request the cluster answers.
    Mgmt { op: Remote, to: Parked },
    /// A message on this node's inbox channel.
    Inbox(Vec<u8>),
    /// A peer's request ran here: reply to `node`.
    Executed {
        node: String,
        req: u64,
        result: OpResult,
    },
    /// The subscriber connection is up (`None`) or down (why).
    Subscriber(Option<String>),
}

/// The cluster thread's inbox. Directory changes do not wake the thread each: the
/// first one after a flush does, and the thread then takes the rest when their
/// pipeline is due (a burst of upgrades costs one wake-up, not one each). Everything
/// else wakes it at once.
pub(crate) struct Queue {
    state: Mutex<QueueState>,
    cv: Condvar,
}

#[derive(Default)]
struct QueueState {
    events: Vec<Event>,
    /// The thread is to look now.
    kick: bool,
    /// The thread has a flush scheduled: directory changes need not wake it.
    armed: bool,
}

impl Queue {
    fn lock(&self) -> std::sync::MutexGuard<'_, QueueState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Add an event; wakes the cluster thread unless it will look by itself soon.
    pub(crate) fn send(&self, ev: Event) {
        let lazy = matches!(ev, Event::Register { .. } | Event::Unregister { .. });
        let mut st = self.lock();
        st.events.push(ev);
        if !lazy || !st.armed {
            st.armed |= lazy;
            st.kick = true;
            drop(st);
            self.cv.notify_one();
        }
    }

    /// Wait until kicked or `until`, then take what is waiting.
    pub(crate) fn wait(&self, until: Instant) -> Vec<Event> {
        let mut st = self.lock();
        while !st.kick {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            st = self
                .cv
                .wait_timeout(st, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        st.kick = false;
        std::mem::take(&mut st.events)
    }

    /// The flush is due: take what is waiting, and let the next directory change wake
    /// the thread again.
    pub(crate) fn disarm(&self) -> Vec<Event> {
        let mut st = self.lock();
        st.armed = false;
        std::mem::take(&mut st.events)
    }
}

/// The reactor's end of the cluster: cheap calls that never block on Redis.
pub struct ClusterLink {
    tx: Arc<Queue>,
    /// Why cluster operations cannot be served now; `None` when Redis is reachable.
    degraded: Mutex<Option<String>>,
}

impl ClusterLink {
    /// A link and the receiving end for [`node::start`]. Degraded until the cluster
    /// thread has reached Redis.
    pub(crate) fn new() -> (Arc<ClusterLink>, Arc<Queue>) {
        let tx = Arc::new(Queue {
            state: Mutex::default(),
            cv: Condvar::new(),
        });
        let rx = Arc::clone(&tx);
        let link = ClusterLink {
            tx,
            degraded: Mutex::new(Some("not connected to Redis yet".to_string())),
        };
        (Arc::new(link), rx)
    }

    /// Record an accepted connection in the directory.
    pub fn register(&self, id: &str, identity: Option<String>, created: SystemTime) {
        let created_ms = created
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        self.tx.send(Event::Register {
            id: id.to_string(),
            identity,
            created_ms,
        });
    }

    /// Remove a connection that ended from the directory.
    pub fn unregister(&self, id: &str) {
        self.tx.send(Event::Unregister { id: id.to_string() });
    }

    /// Hand a management request to the cluster; `Err(why)` while Redis is unreachable
    /// (the caller answers 503).
    pub fn remote(&self, op: Remote, to: Parked) -> Result<(), String> {
        if let Some(why) = self.degraded() {
            return Err(format!("cluster unavailable: {why}"));
        }
        self.tx.send(Event::Mgmt { op, to });
        Ok(())
    }

    /// Why the node is degraded, when it is.
    pub fn degraded(&self) -> Option<String> {
        self.degraded
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub(crate) fn set_degraded(&self, why: Option<String>) {
        *self.degraded.lock().unwrap_or_else(|e| e.into_inner()) = why;
    }

    pub(crate) fn sender(&self) -> Arc<Queue> {
        Arc::clone(&self.tx)
    }
}

/// `--cluster URL`: a link for the reactor's config, checked before anything binds.
pub(crate) fn link(url: &str) -> Result<(Arc<ClusterLink>, Arc<Queue>), String> {
    #[cfg(feature = "cluster")]
    {
        node::check_url(url)?;
        Ok(ClusterLink::new())
    }
    #[cfg(not(feature = "cluster"))]
    {
        Err(format!(
            "--cluster {url}: this build has no cluster support (cargo feature 'cluster')"
        ))
    }
}

/// The URL without its password, for the log.
fn redacted(url: &str) -> String {
    match (url.split_once("://"), url.rfind('@')) {
        (Some((scheme, _)), Some(at)) => format!("{scheme}://***{}", &url[at..]),
        _ => url.to_string(),
    }
}

/// Start the cluster threads for a bound server. The node id defaults to the
/// host:port of `--postback-base`, else of the management API, else of the WebSocket
/// listener: what other nodes and operators can tell apart.
pub(crate) fn join(
    args: &crate::cli::ClusterArgs,
    postback_base: Option<&str>,
    server: &crate::Server,
    scheme: &str,
    link: Arc<ClusterLink>,
    rx: Arc<Queue>,
) -> Result<(), String> {
    #[cfg(feature = "cluster")]
    {
        let advertise = match (postback_base, server.management_addr()) {
            (Some(base), _) => base.to_string(),
            (None, Some(addr)) => crate::mgmt::base_url_with_scheme(scheme, addr),
            (None, None) => format!("ws://{}", server.local_addr()),
        };
        let node_id = args.node_id.clone().unwrap_or_else(|| {
            let rest = advertise.split("://").nth(1).unwrap_or(&advertise);
            rest.split('/').next().unwrap_or(rest).to_string()
        });
        log::info!("cluster: node '{node_id}' joining {}", redacted(&args.url));
        let opts = node::Options {
            url: args.url.clone(),
            node_id,
            advertise,
            ttl: args.ttl,
            timeout: args.timeout,
        };
        node::start(opts, link, rx, server.handle())
    }
    #[cfg(not(feature = "cluster"))]
    {
        Err("this build has no cluster support".to_string())
    }
}

impl std::fmt::Debug for ClusterLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterLink")
            .field("degraded", &self.degraded())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn kicked(q: &Queue) -> bool {
        q.lock().kick
    }

    fn reg(id: &str) -> Event {
        Event::Register {
            id: id.into(),
            identity: None,
            created_ms: 0,
        }
    }

    #[test]
    fn directory_changes_wake_the_thread_once_per_flush_and_the_rest_at_once() {
        let (link, q) = ClusterLink::new();
        q.send(reg("a"));
        assert!(
            kicked(&q),
            "the first change after a flush wakes the thread"
        );
        assert_eq!(q.wait(Instant::now()).len(), 1);
        // The thread has a flush scheduled: more changes wait for it, unannounced.
        q.send(reg("b"));
        link.unregister("a");
        assert!(!kicked(&q));
        // Anything else wakes it at once, and takes the changes before it along.
        q.send(Event::Subscriber(None));
        assert!(kicked(&q));
        assert_eq!(q.wait(Instant::now() + Duration::from_secs(5)).len(), 3);
        // At the flush the queue is disarmed: the next change wakes the thread again.
        q.send(reg("c"));
        assert!(!kicked(&q));
        assert_eq!(q.disarm().len(), 1);
        q.send(reg("d"));
        assert!(kicked(&q));
    }

    #[test]
    fn the_log_never_shows_the_redis_password() {
        assert_eq!(
            redacted("redis://:s3cret@db:6379/0"),
            "redis://***@db:6379/0"
        );
        assert_eq!(redacted("redis://db:6379"), "redis://db:6379");
    }

    #[test]
    fn a_link_is_degraded_until_the_cluster_thread_says_otherwise() {
        let (link, _q) = ClusterLink::new();
        let to = Parked { slot: 0, gen: 0 };
        let err = link.remote(Remote::List, to).unwrap_err();
        assert!(err.contains("not connected to Redis yet"), "{err}");
        link.set_degraded(None);
        assert_eq!(link.remote(Remote::List, to), Ok(()));
        assert_eq!(link.degraded(), None);
    }
}
