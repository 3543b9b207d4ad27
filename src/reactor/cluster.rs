//! cluster: the reactor's side of `--cluster` (docs/cluster.md): answers to parked
//! management requests, and requests from other nodes run on this node's connections.
//! Everything here is quick and local; Redis is the cluster thread's business.

use std::time::Instant;

use super::Reactor;
use crate::cluster::{LocalOp, OpResult, ToReactor};

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
