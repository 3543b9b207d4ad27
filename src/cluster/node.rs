//! The cluster thread: the directory in Redis, the heartbeat, and requests between
//! nodes over pub/sub (docs/cluster.md has the keys and the messages).
//!
//! One thread owns the command connection: it batches directory writes into one
//! pipeline per wake-up, renews the heartbeat, answers parked management requests and
//! times them out. A second thread holds the subscription to this node's inbox and
//! passes every message to the first. Neither ever runs on the reactor thread.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use redis::{Commands, Connection, RedisResult};
use serde_json::{json, Value};

use super::{ClusterLink, Event, LocalOp, OpResult, Parked, Queue, ToReactor};
use crate::mgmt::{broadcast_body, gone, MgmtResponse, Remote};
use crate::reactor::Handle;

/// Key and channel prefix.
const PREFIX: &str = "configurapi";
/// Longest wait between reconnection attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(2);
/// Socket timeouts on Redis: a hung Redis is a Redis that is down.
const IO_TIMEOUT: Duration = Duration::from_secs(1);
/// How long a directory write may wait for others to share its pipeline: under a burst
/// of upgrades one round trip carries hundreds of them instead of a few.
const COALESCE: Duration = Duration::from_millis(2);

/// The cluster thread's settings.
#[derive(Debug, Clone)]
pub struct Options {
    /// `redis://host:port[/db]`.
    pub url: String,
    /// This node's id (`--node-id`).
    pub node_id: String,
    /// What the heartbeat advertises (the management base URL).
    pub advertise: String,
    /// The heartbeat's time to live: a node silent this long drops out of listings.
    pub ttl: Duration,
    /// How long a forwarded request waits for the owning node (then 504).
    pub timeout: Duration,
}

/// Check the URL at start-up: the one-line error names the flag.
pub fn check_url(url: &str) -> Result<(), String> {
    redis::Client::open(url)
        .map(|_| ())
        .map_err(|e| format!("--cluster: '{url}' is not a Redis URL ({e})"))
}

/// Start the cluster and subscriber threads.
pub(crate) fn start(
    opts: Options,
    link: Arc<ClusterLink>,
    rx: Arc<Queue>,
    reactor: Handle,
) -> Result<(), String> {
    let client = redis::Client::open(opts.url.as_str())
        .map_err(|e| format!("--cluster: '{}' is not a Redis URL ({e})", opts.url))?;
    let sub_client = client.clone();
    let inbox = inbox(&opts.node_id);
    let sub_tx = link.sender();
    std::thread::Builder::new()
        .name("cluster-sub".into())
        .spawn(move || subscriber(sub_client, inbox, sub_tx))
        .map_err(|e| format!("cannot start the cluster thread: {e}"))?;
    let mut node = Node {
        tx: link.sender(),
        link,
        client,
        con: None,
        sub_down: Some("subscribing".to_string()),
        redis_down: Some("connecting".to_string()),
        local: HashMap::new(),
        writes: Vec::new(),
        flush_at: None,
        pending: HashMap::new(),
        next_req: std::process::id() as u64 * 1_000_000,
        next_heartbeat: Instant::now(),
        retry_at: Instant::now(),
        backoff: Duration::from_millis(100),
        reactor,
        opts,
    };
    std::thread::Builder::new()
        .name("cluster".into())
        .spawn(move || node.run(rx))
        .map_err(|e| format!("cannot start the cluster thread: {e}"))?;
    Ok(())
}

fn nodes_key() -> String {
    format!("{PREFIX}:nodes")
}
fn alive_key(node: &str) -> String {
    format!("{PREFIX}:alive:{node}")
}
fn conns_key(node: &str) -> String {
    format!("{PREFIX}:conns:{node}")
}
fn owner_key() -> String {
    format!("{PREFIX}:owner")
}
fn inbox(node: &str) -> String {
    format!("{PREFIX}:inbox:{node}")
}

/// Hold the subscription to this node's inbox; every message goes to the cluster
/// thread. Reconnects with backoff, for the life of the process.
fn subscriber(client: redis::Client, channel: String, tx: Arc<Queue>) {
    let mut backoff = Duration::from_millis(100);
    loop {
        let Err(e) = subscribe_once(&client, &channel, &tx, &mut backoff);
        tx.send(Event::Subscriber(Some(format!("Redis subscription: {e}"))));
        std::thread::sleep(backoff);
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// Returns only with the error that ended the subscription.
fn subscribe_once(
    client: &redis::Client,
    channel: &str,
    tx: &Queue,
    backoff: &mut Duration,
) -> RedisResult<std::convert::Infallible> {
    let mut con = client.get_connection_with_timeout(IO_TIMEOUT)?;
    con.set_write_timeout(Some(IO_TIMEOUT))?;
    let mut ps = con.as_pubsub();
    ps.subscribe(channel)?;
    *backoff = Duration::from_millis(100);
    tx.send(Event::Subscriber(None));
    loop {
        let msg = ps.get_message()?;
        tx.send(Event::Inbox(msg.get_payload_bytes().to_vec()));
    }
}

/// A request waiting for other nodes.
struct Pending {
    to: Parked,
    deadline: Instant,
    what: Waiting,
}

enum Waiting {
    /// One owner; `delete` tells 204 from 200.
    Single {
        id: String,
        node: String,
        op: &'static str,
    },
    /// A fan-out: the nodes yet to answer, the counts so far, and the live nodes
    /// nobody listens for (their subscription is down).
    Fanout {
        waiting: BTreeSet<String>,
        counts: BTreeMap<String, usize>,
        deaf: Vec<String>,
    },
}

/// A directory write waiting for the next pipeline.
enum Write {
    Add(String),
    Del(String),
}

struct Node {
    opts: Options,
    link: Arc<ClusterLink>,
    tx: Arc<Queue>,
    reactor: Handle,
    client: redis::Client,
    con: Option<Connection>,
    /// Why the command connection is down, when it is.
    redis_down: Option<String>,
    /// Why the subscription is down, when it is.
    sub_down: Option<String>,
    /// This node's registered connections (identity, created ms): written again
    /// whenever Redis comes back or lost them.
    local: HashMap<String, (Option<String>, u64)>,
    writes: Vec<Write>,
    /// When the waiting writes go out (set by the first of them).
    flush_at: Option<Instant>,
    pending: HashMap<u64, Pending>,
    next_req: u64,
    next_heartbeat: Instant,
    retry_at: Instant,
    backoff: Duration,
}

impl Node {
    fn run(&mut self, rx: Arc<Queue>) {
        loop {
            let mut wake = self.next_heartbeat;
            if self.con.is_none() {
                wake = wake.min(self.retry_at);
            }
            if let Some(d) = self.pending.values().map(|p| p.deadline).min() {
                wake = wake.min(d);
            }
            if let Some(t) = self.flush_at {
                wake = wake.min(t);
            }
            for ev in rx.wait(wake) {
                self.event(ev);
            }
            let now = Instant::now();
            if self.flush_at.is_some_and(|t| now >= t) {
                // Whatever came meanwhile rides on the same pipeline.
                self.flush_at = None;
                for ev in rx.disarm() {
                    self.event(ev);
                }
                self.flush_writes();
            }
            if self.con.is_none() && now >= self.retry_at {
                self.connect();
            }
            if now >= self.next_heartbeat {
                self.next_heartbeat = now + (self.opts.ttl / 5).max(Duration::from_millis(50));
                self.heartbeat();
            }
            self.expire(now);
            self.publish_status();
        }
    }

    fn publish_status(&self) {
        let why = match (&self.redis_down, &self.sub_down) {
            (Some(w), _) | (None, Some(w)) => Some(w.clone()),
            (None, None) => None,
        };
        self.link.set_degraded(why);
    }

    /// A Redis call failed: drop the connection and retry later.
    fn lost(&mut self, e: &redis::RedisError) {
        if self.redis_down.is_none() {
            log::warn!("cluster: Redis unreachable ({e}); serving local connections only");
        }
        self.redis_down = Some(format!("Redis unreachable: {e}"));
        self.con = None;
        self.retry_at = Instant::now() + self.backoff;
        self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
        self.publish_status();
    }

    fn connect(&mut self) {
        let r = self
            .client
            .get_connection_with_timeout(IO_TIMEOUT)
            .and_then(|c| {
                c.set_read_timeout(Some(IO_TIMEOUT))?;
                c.set_write_timeout(Some(IO_TIMEOUT))?;
                Ok(c)
            });
        match r {
            Ok(c) => {
                self.con = Some(c);
                self.writes.clear();
                match self.register_all() {
                    Ok(()) => {
                        if self.redis_down.take().is_some() {
                            log::info!(
                                "cluster: connected to Redis as node '{}' ({} connections registered)",
                                self.opts.node_id,
                                self.local.len()
                            );
                        }
                        self.backoff = Duration::from_millis(100);
                    }
                    Err(e) => self.lost(&e),
                }
            }
            Err(e) => self.lost(&e),
        }
    }

    /// This node's entries, written afresh: what a previous run with the same id
    /// left is removed, and every live connection is added.
    fn register_all(&mut self) -> RedisResult<()> {
        let me = self.opts.node_id.clone();
        let Some(con) = self.con.as_mut() else {
            return Ok(());
        };
        // Two runners with one id would overwrite each other's entries: say so.
        let other: Option<String> = con.get(alive_key(&me))?;
        if let Some(other) = other.filter(|o| *o != self.opts.advertise) {
            log::warn!(
                "cluster: the heartbeat of node id '{me}' was held by {other} (another \
                 runner with the same id, or an earlier run of this one): give each runner \
                 its own --node-id"
            );
        }
        let old: Vec<String> = con.hkeys(conns_key(&me))?;
        let mut p = redis::pipe();
        if !old.is_empty() {
            p.hdel(owner_key(), &old).ignore();
        }
        p.del(conns_key(&me)).ignore();
        for (id, (identity, created)) in &self.local {
            p.hset(conns_key(&me), id, entry_json(identity, *created))
                .ignore();
            p.hset(owner_key(), id, &me).ignore();
        }
        p.sadd(nodes_key(), &me).ignore();
        p.set_options(
            alive_key(&me),
            &self.opts.advertise,
            redis::SetOptions::default()
                .with_expiration(redis::SetExpiry::PX(self.opts.ttl.as_millis() as u64)),
        )
        .ignore();
        p.query::<()>(con)
    }

    fn heartbeat(&mut self) {
        let me = self.opts.node_id.clone();
        let ttl = self.opts.ttl.as_millis() as u64;
        let Some(con) = self.con.as_mut() else {
            return;
        };
        let r: RedisResult<(i64, ())> = redis::pipe()
            .sadd(nodes_key(), &me)
            .set_options(
                alive_key(&me),
                &self.opts.advertise,
                redis::SetOptions::default().with_expiration(redis::SetExpiry::PX(ttl)),
            )
            .query(con);
        match r {
            // Our node entry was gone: another node took us for dead (a pause longer
            // than the TTL) and removed our entries, or Redis lost its data.
            Ok((1, _)) => {
                if let Err(e) = self.register_all() {
                    self.lost(&e);
                    return;
                }
            }
            Ok(_) => {}
            Err(e) => {
                self.lost(&e);
                return;
            }
        }
        if let Err(e) = self.collect_dead() {
            self.lost(&e);
        }
    }

    /// Remove the entries of nodes whose heartbeat has lapsed (listings already skip
    /// them; this keeps Redis from growing with every crash).
    fn collect_dead(&mut self) -> RedisResult<()> {
        let me = self.opts.node_id.clone();
        let (nodes, live) = self.live_nodes()?;
        let Some(con) = self.con.as_mut() else {
            return Ok(());
        };
        for dead in nodes.iter().filter(|n| !live.contains(*n) && **n != me) {
            let ids: Vec<String> = con.hkeys(conns_key(dead))?;
            let mut p = redis::pipe();
            if !ids.is_empty() {
                p.hdel(owner_key(), &ids).ignore();
            }
            p.del(conns_key(dead)).ignore();
            p.srem(nodes_key(), dead).ignore();
            p.query::<()>(con)?;
            log::info!(
                "cluster: node '{dead}' stopped renewing its heartbeat; removed its {} connections",
                ids.len()
            );
        }
        Ok(())
    }

    /// All known nodes, and those whose heartbeat is current (this node always).
    fn live_nodes(&mut self) -> RedisResult<(Vec<String>, BTreeSet<String>)> {
        let Some(con) = self.con.as_mut() else {
            return Ok((Vec::new(), BTreeSet::new()));
        };
        let nodes: Vec<String> = con.smembers(nodes_key())?;
        let mut live = BTreeSet::new();
        live.insert(self.opts.node_id.clone());
        if !nodes.is_empty() {
            let keys: Vec<String> = nodes.iter().map(|n| alive_key(n)).collect();
            let alive: Vec<Option<String>> = redis::cmd("MGET").arg(&keys).query(con)?;
            for (n, a) in nodes.iter().zip(alive) {
                if a.is_some() {
                    live.insert(n.clone());
                }
            }
        }
        Ok((nodes, live))
    }

    /// A directory write waits for [`COALESCE`] at most. (The flush is scheduled also
    /// without a connection: the loop's flush is what re-arms the queue.)
    fn queue_write(&mut self, w: Write) {
        if self.con.is_some() {
            self.writes.push(w);
        }
        self.flush_at
            .get_or_insert_with(|| Instant::now() + COALESCE);
    }

    /// Write what waits. `flush_at` stays: only the loop clears it, together with the
    /// queue's arming, so a change after this one still gets its flush.
    fn flush_writes(&mut self) {
        if self.writes.is_empty() {
            return;
        }
        let writes = std::mem::take(&mut self.writes);
        let me = self.opts.node_id.clone();
        let Some(con) = self.con.as_mut() else {
            return;
        };
        let mut p = redis::pipe();
        for w in &writes {
            match w {
                Write::Add(id) => {
                    let Some((identity, created)) = self.local.get(id) else {
                        continue;
                    };
                    p.hset(conns_key(&me), id, entry_json(identity, *created))
                        .ignore();
                    p.hset(owner_key(), id, &me).ignore();
                }
                Write::Del(id) => {
                    p.hdel(conns_key(&me), id).ignore();
                    p.hdel(owner_key(), id).ignore();
                }
            }
        }
        if let Err(e) = p.query::<()>(con) {
            // Everything is written again from `local` on reconnection.
            self.lost(&e);
        }
    }

    fn event(&mut self, ev: Event) {
        match ev {
            Event::Register {
                id,
                identity,
                created_ms,
            } => {
                self.local.insert(id.clone(), (identity, created_ms));
                self.queue_write(Write::Add(id));
            }
            Event::Unregister { id } => {
                self.local.remove(&id);
                self.queue_write(Write::Del(id));
            }
            Event::Mgmt { op, to } => {
                // Reads see every write made before them.
                self.flush_writes();
                if let Err(e) = self.mgmt(op, to) {
                    self.lost(&e);
                    self.answer(
                        to,
                        MgmtResponse::cluster_unavailable(&format!(
                            "cluster unavailable: Redis unreachable: {e}"
                        )),
                    );
                }
            }
            Event::Inbox(bytes) => self.inbox(&bytes),
            Event::Executed { node, req, result } => {
                let mut msg = json!({"t": "rep", "req": req, "node": self.opts.node_id});
                match result {
                    OpResult::Gone => msg["r"] = "gone".into(),
                    OpResult::Done => msg["r"] = "done".into(),
                    OpResult::Count(n) => {
                        msg["r"] = "count".into();
                        msg["count"] = n.into();
                    }
                    OpResult::Info(j) => {
                        msg["r"] = "info".into();
                        msg["info"] = String::from_utf8_lossy(&j).into_owned().into();
                    }
                }
                self.publish(&node, &msg);
            }
            Event::Subscriber(why) => {
                if why.is_some() && self.sub_down.is_none() {
                    log::warn!("cluster: {}", why.as_deref().unwrap_or_default());
                }
                self.sub_down = why;
            }
        }
    }

    /// Publish to a node's inbox; how many subscribers took it (0: nobody listens).
    fn publish(&mut self, node: &str, msg: &Value) -> usize {
        let Some(con) = self.con.as_mut() else {
            return 0;
        };
        let body = serde_json::to_vec(msg).unwrap_or_default();
        match con.publish::<_, _, usize>(inbox(node), body) {
            Ok(n) => n,
            Err(e) => {
                self.lost(&e);
                0
            }
        }
    }

    fn answer(&self, to: Parked, response: MgmtResponse) {
        let _ = self.reactor.cluster(ToReactor::Answer { to, response });
    }

    fn mgmt(&mut self, op: Remote, to: Parked) -> RedisResult<()> {
        if self.con.is_none() {
            let why = self.redis_down.clone().unwrap_or_default();
            self.answer(
                to,
                MgmtResponse::cluster_unavailable(&format!("cluster unavailable: {why}")),
            );
            return Ok(());
        }
        let req = self.next_req;
        self.next_req += 1;
        let deadline = Instant::now() + self.opts.timeout;
        match op {
            Remote::List => {
                let (_, live) = self.live_nodes()?;
                let Some(con) = self.con.as_mut() else {
                    return Ok(());
                };
                let mut p = redis::pipe();
                for n in &live {
                    p.hkeys(conns_key(n));
                }
                let lists: Vec<Vec<String>> = p.query(con)?;
                let mut ids: Vec<String> = lists.into_iter().flatten().collect();
                ids.sort_unstable();
                self.answer(
                    to,
                    MgmtResponse::json(serde_json::to_vec(&ids).unwrap_or_default()),
                );
            }
            Remote::Get { ref id } | Remote::Delete { ref id } | Remote::Post { ref id, .. } => {
                let id = id.clone();
                let Some(node) = self.owner(&id)? else {
                    self.answer(to, gone(&id));
                    return Ok(());
                };
                let (name, msg) = match op {
                    Remote::Get { .. } => ("get", json!({"op": "get"})),
                    Remote::Delete { .. } => ("delete", json!({"op": "delete"})),
                    Remote::Post { body: Err(why), .. } => {
                        // The connection exists: now the body's fault is the answer.
                        self.answer(to, MgmtResponse::error(400, "Bad Request.", &why));
                        return Ok(());
                    }
                    Remote::Post { body: Ok(b), .. } => (
                        "post",
                        json!({"op": "post", "body": String::from_utf8_lossy(&b)}),
                    ),
                    _ => unreachable!("matched above"),
                };
                let mut msg = msg;
                msg["t"] = "req".into();
                msg["req"] = req.into();
                msg["from"] = self.opts.node_id.clone().into();
                msg["conn"] = id.clone().into();
                if self.publish(&node, &msg) == 0 {
                    self.answer(to, silent(&node, &id));
                    return Ok(());
                }
                self.pending.insert(
                    req,
                    Pending {
                        to,
                        deadline,
                        what: Waiting::Single { id, node, op: name },
                    },
                );
            }
            Remote::Broadcast { identity, envelope } => {
                let (_, live) = self.live_nodes()?;
                let msg = json!({
                    "t": "req", "req": req, "from": self.opts.node_id, "op": "broadcast",
                    "identity": identity, "body": String::from_utf8_lossy(&envelope),
                });
                let mut waiting = BTreeSet::new();
                let mut deaf = Vec::new();
                for n in live {
                    if self.publish(&n, &msg) > 0 {
                        waiting.insert(n);
                    } else {
                        deaf.push(n);
                    }
                }
                self.pending.insert(
                    req,
                    Pending {
                        to,
                        deadline,
                        what: Waiting::Fanout {
                            waiting,
                            counts: BTreeMap::new(),
                            deaf,
                        },
                    },
                );
                self.settle(req);
            }
        }
        Ok(())
    }

    /// The live node that holds `id`, other than this one (this node's reactor has
    /// already looked: here it is gone).
    fn owner(&mut self, id: &str) -> RedisResult<Option<String>> {
        let Some(con) = self.con.as_mut() else {
            return Ok(None);
        };
        let node: Option<String> = con.hget(owner_key(), id)?;
        let Some(node) = node.filter(|n| *n != self.opts.node_id) else {
            return Ok(None);
        };
        let alive: bool = con.exists(alive_key(&node))?;
        Ok(alive.then_some(node))
    }

    /// A message on this node's inbox: a peer's request, or a reply to ours.
    fn inbox(&mut self, bytes: &[u8]) {
        let Ok(msg) = serde_json::from_slice::<Value>(bytes) else {
            log::debug!("cluster: an inbox message that is not JSON was ignored");
            return;
        };
        let req = msg["req"].as_u64().unwrap_or(0);
        let text = |k: &str| msg[k].as_str().unwrap_or_default().to_string();
        match msg["t"].as_str() {
            Some("req") => {
                let conn = text("conn");
                let op = match msg["op"].as_str() {
                    Some("get") => LocalOp::Get(conn),
                    Some("post") => LocalOp::Post(conn, text("body").into_bytes()),
                    Some("delete") => LocalOp::Delete(conn),
                    Some("broadcast") => LocalOp::Broadcast {
                        identity: msg["identity"].as_str().map(str::to_string),
                        envelope: text("body").into_bytes(),
                    },
                    _ => return,
                };
                let tx = self.tx.clone();
                let node = text("from");
                let done = Box::new(move |result| {
                    tx.send(Event::Executed { node, req, result });
                });
                let _ = self.reactor.cluster(ToReactor::Exec { op, done });
            }
            Some("rep") => {
                let node = text("node");
                let result = match msg["r"].as_str() {
                    Some("gone") => OpResult::Gone,
                    Some("done") => OpResult::Done,
                    Some("count") => OpResult::Count(msg["count"].as_u64().unwrap_or(0) as usize),
                    Some("info") => OpResult::Info(text("info").into_bytes()),
                    _ => return,
                };
                self.reply(req, node, result);
            }
            _ => {}
        }
    }

    fn reply(&mut self, req: u64, node: String, result: OpResult) {
        let Some(p) = self.pending.get_mut(&req) else {
            return; // late: already answered 504
        };
        match &mut p.what {
            Waiting::Single { id, op, .. } => {
                let response = match (result, *op) {
                    (OpResult::Gone, _) => gone(id),
                    (OpResult::Info(j), _) => MgmtResponse::json(j),
                    (_, "delete") => MgmtResponse::empty(204),
                    _ => MgmtResponse::empty(200),
                };
                let to = p.to;
                self.pending.remove(&req);
                self.answer(to, response);
            }
            Waiting::Fanout {
                waiting, counts, ..
            } => {
                if waiting.remove(&node) {
                    let n = match result {
                        OpResult::Count(n) => n,
                        _ => 0,
                    };
                    counts.insert(node, n);
                }
                self.settle(req);
            }
        }
    }

    /// Answer a fan-out once every node has.
    fn settle(&mut self, req: u64) {
        let done = matches!(
            self.pending.get(&req),
            Some(Pending { what: Waiting::Fanout { waiting, .. }, .. }) if waiting.is_empty()
        );
        if done {
            if let Some(p) = self.pending.remove(&req) {
                self.finish(p);
            }
        }
    }

    fn finish(&self, p: Pending) {
        let response = match p.what {
            Waiting::Single { id, node, .. } => silent(&node, &id),
            Waiting::Fanout {
                waiting,
                counts,
                deaf,
            } => {
                let counts: Vec<(String, usize)> = counts.into_iter().collect();
                let mut silent: Vec<String> = waiting.into_iter().chain(deaf).collect();
                silent.sort_unstable();
                MgmtResponse::json(broadcast_body(&counts, &silent))
            }
        };
        self.answer(p.to, response);
    }

    fn expire(&mut self, now: Instant) {
        let due: Vec<u64> = self
            .pending
            .iter()
            .filter(|(_, p)| p.deadline <= now)
            .map(|(k, _)| *k)
            .collect();
        for req in due {
            if let Some(p) = self.pending.remove(&req) {
                self.finish(p);
            }
        }
    }
}

/// 504: the owner did not answer in time (or nobody listens on its inbox). Nothing was
/// reported delivered; the frame may or may not have been queued (at most once).
fn silent(node: &str, id: &str) -> MgmtResponse {
    MgmtResponse::error(
        504,
        "Gateway Timeout.",
        &format!("Node '{node}', which holds connection '{id}', did not answer in time."),
    )
}

fn entry_json(identity: &Option<String>, created_ms: u64) -> String {
    json!({"identity": identity, "created": created_ms}).to_string()
}
