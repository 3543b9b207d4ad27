//! The runner as the reactor's [`App`]: what each connection event becomes (a job, an
//! inline reply, nothing), decided on the reactor thread from copies of what it needs.

use std::sync::Arc;

use super::conn::Connection;
use super::message::decode_into;
use super::{Inner, Reply, Runner};
use crate::app::{App, AppConn, Dispatch};
use crate::configurapi::Event;
use crate::configurapi::Schedule;
use crate::link::{ConnId, Link};
use crate::mgmt::MetricsSnapshot;
use crate::work::Job;
use crate::ws::UpgradeRequest;

impl App for Runner {
    fn on_open(&self, link: Link, req: &UpgradeRequest, jobs: &mut Vec<Job>) -> Arc<dyn AppConn> {
        let conn = Arc::new(Connection::new(link, self.clone(), req.subprotocol.clone()));
        let inner = self.current();
        if !inner.has_on_connect {
            // 6.5.3: accepted without dispatch (nothing is held yet)
            let _ = conn.accept();
            return conn;
        }
        let headers: Vec<(String, String)> = req.headers.clone();
        let query = req.query().to_string();
        // A drain waits for on_connect and the messages it lets through (9.5).
        let busy = conn.begin();
        let job_conn = Arc::clone(&conn);
        jobs.push(Box::new(move || {
            Inner::on_connect(inner, job_conn, &headers, &query);
            drop(busy);
        }));
        conn
    }

    fn find(&self, key: &str) -> Option<ConnId> {
        self.registry().find(key)
    }

    fn keys(&self) -> Vec<String> {
        self.registry().keys()
    }

    fn set_resume(&self, resume: Arc<dyn Schedule>) {
        let _ = self.current().resume.set(resume);
    }

    fn set_management_url(&self, base: &str) {
        let _ = self.current().management_url.set(base.to_string());
    }

    fn fill_metrics(&self, m: &mut MetricsSnapshot) {
        self.current().metrics.fill(m);
    }
}

impl Runner {
    /// What a message becomes. With `inline_ok` (the connection is accepted) it may
    /// run right here on the reactor thread when every handler its route can reach is
    /// non-blocking.
    pub(super) fn dispatch(
        &self,
        conn: &Arc<Connection>,
        text: bool,
        payload: &[u8],
        inline_ok: bool,
    ) -> Dispatch {
        let inner = &self.current();
        // Received: a drain answers it before the connection's 1001 (9.5). A job holds
        // the guard to its end; a suspended pipeline's Answer takes its own.
        let busy = conn.begin();
        if !(inline_ok && inner.opts.inline) {
            let (inner, conn) = (Arc::clone(inner), Arc::clone(conn));
            let payload = payload.to_vec();
            return Dispatch::Job(Box::new(move || {
                let mut event = Event::blank();
                let decoded = decode_into(text, &payload, &mut event.request);
                Inner::handle(&inner, conn, &mut event, decoded);
                drop(busy);
            }));
        }
        // Decode here to learn the route; run it here when every handler it can reach
        // is non-blocking (measured in docs/benchmarks.md: it saves two thread hand-offs
        // per message), else on a worker. A handler that defers is non-blocking: the
        // pipeline suspends and the answer goes out later from a worker.
        // Decoded into the event where it lies (no Request and Event moved around).
        let mut event = Event::blank();
        let decoded = decode_into(text, payload, &mut event.request);
        let nonblocking = match &decoded {
            Ok(_) => inner
                .service
                .is_nonblocking(&event.request.name, &event.request.method),
            Err(_) => true,
        };
        if !nonblocking {
            let (inner, conn) = (Arc::clone(inner), Arc::clone(conn));
            return Dispatch::Job(Box::new(move || {
                // Latency counts from here, as for any job, not from the wait in the
                // queue.
                event.received = std::time::Instant::now();
                Inner::handle(&inner, conn, &mut event, decoded);
                drop(busy);
            }));
        }
        match Inner::answer_here(inner, conn, &mut event, decoded) {
            None => Dispatch::Later,
            Some(Reply::Frame(frame)) => Dispatch::Reply(frame),
            Some(stream) => {
                let conn = Arc::clone(conn);
                Dispatch::Job(Box::new(move || {
                    stream.send(conn);
                    drop(busy);
                }))
            }
        }
    }

    /// on_disconnect's job, for a connection that was accepted (6.5.6).
    pub(super) fn on_close(&self, conn: &Arc<Connection>) -> Option<Job> {
        let inner = self.current();
        if !inner.has_on_disconnect {
            return None; // 6.5.6: skipped without a route
        }
        let conn = Arc::clone(conn);
        Some(Box::new(move || Inner::on_disconnect(inner, conn)))
    }
}
