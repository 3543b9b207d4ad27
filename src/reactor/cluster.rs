//! cluster: the reactor's side of `--cluster` (docs/cluster.md): answers to parked
//! management requests, and requests from other nodes run on this node's connections.
//! Everything here is quick and local; Redis is the cluster thread's business.

use std::time::{Instant, SystemTime};

use super::Reactor;
use crate::cluster::{ClusterLink, LocalOp, OpResult, ToReactor};
use crate::conn::shared::ConnShared;

/// Record an accepted connection (its identity as on_connect left it).
pub(super) fn register(link: &ClusterLink, shared: &ConnShared, connected_at: Instant) {
    let identity = shared
        .identity
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .as_ref()
        .map(|i| i.id.clone());
    let created = SystemTime::now() - connected_at.elapsed();
    link.register(&shared.connection_id, identity, created);
}

impl Reactor {
    pub(super) fn cluster_work(&mut self, work: ToReactor, now: Instant) {
        match work {
            ToReactor::Answer { to, response } => self.mgmt_resume(to, response, now),
            ToReactor::Exec { op, done } => {
                let result = self.with_mgmt_ctx(now, |ctx| match op {
                    LocalOp::Get(id) => match ctx.info(&id) {
                        Some(info) => OpResult::Info(info.to_json(&id)),
                        None => OpResult::Gone,
                    },
                    LocalOp::Post(id, envelope) => match ctx.post(&id, envelope) {
                        true => OpResult::Done,
                        false => OpResult::Gone,
                    },
                    LocalOp::Delete(id) => match ctx.close(&id) {
                        true => OpResult::Done,
                        false => OpResult::Gone,
                    },
                    LocalOp::Broadcast { identity, envelope } => {
                        OpResult::Count(ctx.broadcast(identity.as_deref(), &envelope))
                    }
                });
                // The frame is in the connection's queue now: the reply may say so.
                done(result);
            }
        }
    }
}
