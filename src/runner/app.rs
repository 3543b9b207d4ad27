//! The runner as the reactor's [`App`]: what each connection event becomes (a job, an
//! inline reply, nothing), decided on the reactor thread from copies of what it needs.

use std::sync::Arc;

use super::conn::Connection;
use super::{Inner, Reply, Runner};
use crate::app::{App, AppConn, Dispatch, ReplyOut};
use crate::configurapi::Event;
use crate::configurapi::Schedule;
use crate::link::{ConnId, Link};
use crate::mgmt::MetricsSnapshot;
use crate::work::Job;
use crate::ws::{Message, UpgradeRequest};
use runner_json::message::decode_into;

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
        msg: Message<'_>,
        inline_ok: bool,
        out: &mut dyn ReplyOut,
    ) -> Dispatch {
        self.with_current(|inner| self.dispatch_with(inner, conn, msg, inline_ok, out))
    }

    #[inline]
    fn dispatch_with(
        &self,
        inner: &Arc<Inner>,
        conn: &Arc<Connection>,
        msg: Message<'_>,
        inline_ok: bool,
        out: &mut dyn ReplyOut,
    ) -> Dispatch {
        // Received: a drain answers it before the connection's 1001 (9.5). A job holds
        // the guard to its end; a suspended pipeline's Answer takes its own. An answer
        // made here is queued before the reactor looks at anything else, so it needs
        // none (#17: two reference counts less per message).
        if !(inline_ok && inner.opts.inline) {
            let busy = conn.begin();
            let (inner, conn) = (Arc::clone(inner), Arc::clone(conn));
            let owned = Owned::from(msg);
            return Dispatch::Job(Box::new(move || {
                // #17 json-event: this thread's kept event, emptied and kept again after.
                let mut event = Event::spare();
                let decoded = decode_into(owned.message(), &mut event.request);
                Inner::handle(&inner, conn, &mut event, decoded);
                Event::recycle(event);
                drop(busy);
            }));
        }
        // Decode here to learn the route; run it here when every handler it can reach
        // is non-blocking (measured in docs/benchmarks.md: it saves two thread hand-offs
        // per message), else on a worker. A handler that defers is non-blocking: the
        // pipeline suspends and the answer goes out later from a worker.
        // Decoded into the event where it lies (no Request and Event moved around).
        // #17 json-event: this thread's kept event (boxed: a job takes the box, no copy).
        // Received when the reactor read it: latency counts from the wake that read the
        // message (docs/management.md), and costs one clock read, at the answer.
        let mut event = Event::spare_at(out.received());
        let decoded = decode_into(msg, &mut event.request);
        let (route, nonblocking) = match &decoded {
            Ok(_) => {
                let service = &inner.service;
                let request = &event.request;
                let route = service.route(&request.name, &request.method);
                (Some(route), service.route_is_nonblocking(route))
            }
            Err(_) => (None, true),
        };
        if !nonblocking {
            let busy = conn.begin();
            let (inner, conn) = (Arc::clone(inner), Arc::clone(conn));
            return Dispatch::Job(Box::new(move || {
                // Latency counts from here, as for any job, not from the wait in the
                // queue.
                event.received = std::time::Instant::now();
                Inner::handle(&inner, conn, &mut event, decoded);
                Event::recycle(event); // #17 json-event: kept by the worker's thread
                drop(busy);
            }));
        }
        let reply = Inner::answer_here(inner, conn, &mut event, decoded, route, Some(out));
        Event::recycle(event); // #17 json-event: emptied now, kept for the next message
        match reply {
            None | Some(Reply::Sent) => Dispatch::Later,
            Some(Reply::Frame(frame)) => Dispatch::Reply(frame),
            Some(stream) => {
                let busy = conn.begin();
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

/// A message copied for a job (text stays text: checked once, by the codec).
enum Owned {
    Text(String),
    Binary(Vec<u8>),
}

impl From<Message<'_>> for Owned {
    fn from(msg: Message<'_>) -> Owned {
        match msg {
            Message::Text(s) => Owned::Text(s.to_owned()),
            Message::Binary(b) => Owned::Binary(b.to_vec()),
        }
    }
}

impl Owned {
    fn message(&self) -> Message<'_> {
        match self {
            Owned::Text(s) => Message::Text(s),
            Owned::Binary(b) => Message::Binary(b),
        }
    }
}
