//! The management HTTP API on the reactor: its listener, its connections, and the
//! [`MgmtContext`] that lets the sans-IO routes in [`crate::mgmt`] see and reach the
//! WebSocket connections. No second thread: a management request is served between two
//! WebSocket events, and a slow or hostile management client costs the loop nothing
//! more than any other socket.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use mio::net::TcpListener;
use mio::{Interest, Token};
use slab::Slab;

use super::{Ext, Reactor, Shared, Stats, MGMT_BASE, MGMT_TIMER};
use crate::cluster::Parked;
use crate::config::{MgmtConfig, Mode, ServerConfig};
use crate::conn::transport::Transport;
use crate::conn::write_queue::{BufPool, WriteQueue};
use crate::conn::{tick, Conn, Phase};
use crate::mgmt::{ConnInfo, MetricsSnapshot, MgmtContext, MgmtResponse, Remote, Session};
use crate::ws::{close_code, Opcode};

/// One management connection.
pub(super) struct MgmtConn {
    sock: Transport,
    gen: u32,
    session: Session,
    wq: WriteQueue,
    registered: Option<Interest>,
    last_active: Instant,
    /// When the request now arriving started (slowloris bound).
    request_started: Option<Instant>,
    /// Answered with `Connection: close`: finish writing, then close.
    closing: bool,
    dead: bool,
    pub(super) timer_armed: Option<Instant>,
    /// cluster: the answer to the parked request, for the next event to write.
    answer: Option<MgmtResponse>,
}

impl MgmtConn {
    fn deadline(&self, idle: Duration) -> Instant {
        let idle_end = self.last_active + idle;
        match self.request_started {
            Some(t) => idle_end.min(t + idle),
            None => idle_end,
        }
    }
}

/// The routes' view of the reactor, for the length of one management event.
struct Ctx<'a> {
    conns: &'a mut Slab<Conn<Ext>>,
    cfg: &'a ServerConfig,
    pool: &'a mut BufPool,
    stats: &'a mut Stats,
    draining: &'a std::sync::atomic::AtomicBool,
    token: Option<&'a str>,
    /// Suspended pipelines now (for `/metrics`).
    waiting: u64,
    shutting_down: bool,
    /// The certificate a `POST /@reload` loaded, for the reactor to use after.
    reloaded_tls: Option<Arc<rustls::ServerConfig>>,
    now: Instant,
    /// WebSocket slots that got frames and need a flush and re-registration.
    touched: Vec<usize>,
    /// cluster: the management connection being served (where a parked answer goes).
    me: Parked,
}

impl Ctx<'_> {
    /// The open, accepted connection with this connection-id.
    fn find(&self, id: &str) -> Option<usize> {
        let Mode::App(app) = &self.cfg.mode else {
            return None;
        };
        let cid = &app.find(id)?;
        let conn = self.conns.get(cid.slot as usize)?;
        (conn.st.id == *cid && matches!(conn.st.phase, Phase::Open)).then_some(cid.slot as usize)
    }
}

fn system_time(now: Instant, then: Instant) -> SystemTime {
    SystemTime::now() - now.saturating_duration_since(then)
}

impl MgmtContext for Ctx<'_> {
    fn reload(&mut self) -> Result<String, String> {
        let r = super::run_reloader(self.cfg)?;
        self.reloaded_tls = r.tls;
        Ok(r.summary)
    }

    fn list(&self) -> Vec<String> {
        match &self.cfg.mode {
            Mode::App(app) => app.keys(),
            Mode::Echo => Vec::new(),
        }
    }

    fn info(&self, id: &str) -> Option<ConnInfo> {
        let conn = &self.conns[self.find(id)?];
        let (subprotocol, identity_id) = conn.ext.as_ref()?.describe();
        Some(ConnInfo {
            connected_at: system_time(self.now, conn.st.connected_at.instant(self.now)),
            last_active_at: system_time(self.now, conn.st.last_read.instant(self.now)),
            // Asked of the socket (connections do not keep it); a socket that no longer
            // knows its peer is a connection that has gone.
            source_ip: conn.st.sock.peer_addr().ok()?.ip(),
            subprotocol,
            identity_id,
        })
    }

    fn contains(&self, id: &str) -> bool {
        self.find(id).is_some()
    }

    fn post(&mut self, id: &str, envelope_json: Vec<u8>) -> bool {
        let Some(slot) = self.find(id) else {
            return false;
        };
        self.conns[slot]
            .st
            .send_frame_owned(self.pool, self.stats, Opcode::Text, envelope_json);
        self.touched.push(slot);
        true
    }

    fn close(&mut self, id: &str) -> bool {
        let Some(slot) = self.find(id) else {
            return false;
        };
        let mut sh = Shared {
            cfg: self.cfg,
            pool: self.pool,
            stats: self.stats,
            now: self.now,
            ms: tick::ms(self.now),
            draining: self.draining,
        };
        self.conns[slot]
            .st
            .start_close(close_code::NORMAL, "", &mut sh);
        self.touched.push(slot);
        true
    }

    fn shutting_down(&self) -> bool {
        self.shutting_down
    }

    fn metrics(&self) -> MetricsSnapshot {
        let mut m = MetricsSnapshot::from(&super::snapshot(self.stats, self.conns, self.waiting));
        if let Mode::App(app) = &self.cfg.mode {
            app.fill_metrics(&mut m);
        }
        // cluster: the health of the link, for alerting
        m.cluster_degraded = self.cfg.cluster.as_ref().map(|c| c.degraded().is_some());
        m
    }

    fn token(&self) -> Option<&str> {
        self.token
    }

    fn broadcast(&mut self, identity: Option<&str>, envelope_json: &[u8]) -> usize {
        let slots: Vec<usize> = self
            .list()
            .iter()
            .filter_map(|id| self.find(id))
            .filter(|&slot| {
                identity.is_none_or(|want| {
                    self.conns[slot]
                        .ext
                        .as_ref()
                        .is_some_and(|a| a.describe().1.as_deref() == Some(want))
                })
            })
            .collect();
        for &slot in &slots {
            // One encode for all: each connection gets a copy of the same bytes in
            // its own queue, with its own backpressure (after_event's cap).
            self.conns[slot].st.send_frame_owned(
                self.pool,
                self.stats,
                Opcode::Text,
                envelope_json.to_vec(),
            );
            self.touched.push(slot);
        }
        slots.len()
    }

    fn remote(&mut self, op: Remote) -> Option<Result<(), String>> {
        let link = self.cfg.cluster.as_ref()?;
        Some(link.remote(op, self.me))
    }

    fn degraded(&self) -> Option<String> {
        self.cfg.cluster.as_ref()?.degraded()
    }
}

impl Reactor {
    pub(super) fn mgmt_accept(&mut self, now: Instant) {
        loop {
            let Some(listener) = self.mgmt_listener.as_ref() else {
                return;
            };
            let (mut sock, _) = match listener.accept() {
                Ok(s) => s,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if super::is_fd_exhaustion(&e) => {
                    match super::shed_one(listener, &mut self.reserve_fd, &mut self.stats) {
                        Some(true) => continue,
                        Some(false) => return,
                        None => {
                            self.retry_accept_later(now, &e);
                            return;
                        }
                    }
                }
                Err(e) => {
                    log::warn!("management accept failed: {e}");
                    return;
                }
            };
            let _ = sock.set_nodelay(true);
            let Some(mcfg) = &self.cfg.management else {
                return;
            };
            if self.mgmt.len() >= self.cfg.max_management_connections {
                // Over the cap: a short answer and a close, costing the loop one write.
                use std::io::Write;
                let _ = sock.write(super::SHED_RESPONSE);
                self.stats.mgmt_refused += 1;
                continue;
            }
            let entry = self.mgmt.vacant_entry();
            let slot = entry.key();
            if self
                .poll
                .registry()
                .register(&mut sock, Token(MGMT_BASE + slot), Interest::READABLE)
                .is_err()
            {
                continue;
            }
            let sock = match &mcfg.tls {
                Some(tls) => match rustls::ServerConnection::new(tls.clone()) {
                    Ok(c) => Transport::tls(sock, c),
                    Err(e) => {
                        log::warn!("management TLS session setup failed: {e}");
                        let _ = self.poll.registry().deregister(&mut sock);
                        continue;
                    }
                },
                None => Transport::Plain(sock),
            };
            self.next_gen = self.next_gen.wrapping_add(1);
            entry.insert(MgmtConn {
                sock,
                gen: self.next_gen,
                session: Session::new(mcfg.limits),
                wq: WriteQueue::default(),
                registered: Some(Interest::READABLE),
                last_active: now,
                request_started: None,
                closing: false,
                dead: false,
                timer_armed: None,
                answer: None,
            });
            self.mgmt_arm(slot);
        }
    }

    pub(super) fn mgmt_event(&mut self, slot: usize, readable: bool, now: Instant) {
        let Some(mcfg) = &self.cfg.management else {
            return;
        };
        let Some(mc) = self.mgmt.get_mut(slot) else {
            return;
        };
        if mc.dead {
            return;
        }
        let mut ctx = Ctx {
            conns: &mut self.conns,
            cfg: &self.cfg,
            pool: &mut self.pool,
            stats: &mut self.stats,
            draining: &self.handle.draining,
            token: mcfg.token.as_deref(),
            waiting: self.work.waiting(),
            shutting_down: self.shutdown_at.is_some(),
            reloaded_tls: None,
            now,
            touched: Vec::new(),
            me: Parked { slot, gen: mc.gen },
        };
        let mut out = Vec::new();
        // cluster: the parked request's answer first, then what waited behind it.
        if let Some(r) = mc.answer.take() {
            mc.closing = mc.session.resume(r, &mut ctx, &mut out);
            mc.wq.push_raw(ctx.pool, &out);
            mc.last_active = now;
        }
        // A client that pipelines requests and never reads stops being read once a
        // megabyte of answers waits for it. A parked request stops reading too.
        while readable && !mc.closing && !mc.session.is_parked() && mc.wq.queued() < (1 << 20) {
            let n = match mc.sock.read(&mut self.rbuf) {
                Ok(0) => {
                    mc.closing = true;
                    break;
                }
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => {
                    mc.dead = true;
                    break;
                }
            };
            mc.last_active = now;
            out.clear();
            let answered = mc.session.answered();
            mc.closing = mc.session.on_bytes(&self.rbuf[..n], &mut ctx, &mut out);
            mc.wq.push_raw(ctx.pool, &out);
            // A request that began in the bytes that ended the previous one starts
            // its own clock: it must not inherit the previous request's start.
            let new_request = mc.session.answered() != answered;
            mc.request_started = match (mc.session.in_progress(), mc.request_started) {
                (true, Some(started)) if !new_request => Some(started),
                (true, _) => Some(now),
                (false, _) => None,
            };
        }
        let touched = std::mem::take(&mut ctx.touched);
        let reloaded_tls = ctx.reloaded_tls.take();
        let flushed = mc
            .wq
            .flush(&mut mc.sock, &mut self.pool)
            .and_then(|empty| Ok(mc.sock.flush_own()? && empty));
        match flushed {
            Ok(true) if mc.closing => {
                mc.sock.shutdown_write();
                mc.dead = true;
            }
            Ok(_) => {}
            Err(_) => mc.dead = true,
        }
        self.use_tls(reloaded_tls);
        self.flush_touched(touched, now);
        self.mgmt_after_event(slot);
    }

    fn mgmt_after_event(&mut self, slot: usize) {
        let Some(mc) = self.mgmt.get_mut(slot) else {
            return;
        };
        if mc.dead {
            if mc.registered.take().is_some() {
                let _ = self.poll.registry().deregister(mc.sock.socket());
            }
            self.mgmt.remove(slot);
            return;
        }
        let want = if mc.wq.is_empty() && !mc.sock.wants_write() {
            Interest::READABLE
        } else {
            Interest::READABLE | Interest::WRITABLE
        };
        if mc.registered != Some(want)
            && self
                .poll
                .registry()
                .reregister(mc.sock.socket(), Token(MGMT_BASE + slot), want)
                .is_ok()
        {
            mc.registered = Some(want);
        }
        self.mgmt_arm(slot);
    }

    pub(super) fn mgmt_arm(&mut self, slot: usize) {
        let Some(idle) = self.cfg.management.as_ref().map(|m| m.idle_timeout) else {
            return;
        };
        let Some(mc) = self.mgmt.get_mut(slot) else {
            return;
        };
        let deadline = mc.deadline(idle);
        if mc.timer_armed.is_none_or(|armed| deadline < armed) {
            mc.timer_armed = Some(deadline);
            self.timers.push(std::cmp::Reverse((
                tick::ms_ceil(deadline),
                slot as u32 | MGMT_TIMER,
                mc.gen,
            )));
        }
    }

    /// A management timer entry came due.
    pub(super) fn mgmt_timer(&mut self, slot: usize, gen: u32, when: u64, now: Instant) {
        let Some(idle) = self.cfg.management.as_ref().map(|m| m.idle_timeout) else {
            return;
        };
        let Some(mc) = self.mgmt.get_mut(slot) else {
            return;
        };
        if mc.gen != gen {
            return;
        }
        if mc.timer_armed.map(tick::ms_ceil) == Some(when) {
            mc.timer_armed = None;
        }
        // cluster: a parked request is bounded by the cluster's own deadline (504).
        if mc.deadline(idle) <= now && !mc.session.is_parked() {
            // Idle keep-alive or a request that stopped arriving: close without an answer.
            mc.dead = true;
        }
        self.mgmt_after_event(slot);
    }

    /// cluster: the answer to a parked request arrived; write it and go on reading.
    pub(super) fn mgmt_resume(&mut self, to: Parked, response: MgmtResponse, now: Instant) {
        match self.mgmt.get_mut(to.slot) {
            Some(mc) if mc.gen == to.gen && !mc.dead => mc.answer = Some(response),
            _ => return,
        }
        self.mgmt_event(to.slot, true, now);
    }

    /// cluster: run `f` on the management view of the connections (a peer's request),
    /// then flush the connections it queued frames for.
    pub(super) fn with_mgmt_ctx<R>(
        &mut self,
        now: Instant,
        f: impl FnOnce(&mut dyn MgmtContext) -> R,
    ) -> R {
        let mut ctx = Ctx {
            conns: &mut self.conns,
            cfg: &self.cfg,
            pool: &mut self.pool,
            stats: &mut self.stats,
            draining: &self.handle.draining,
            token: None,
            waiting: 0,
            shutting_down: self.shutdown_at.is_some(),
            reloaded_tls: None,
            now,
            touched: Vec::new(),
            me: Parked { slot: 0, gen: 0 },
        };
        let r = f(&mut ctx);
        let touched = std::mem::take(&mut ctx.touched);
        self.flush_touched(touched, now);
        r
    }

    /// Flush the WebSocket connections a management request queued frames for (or
    /// started closing), then settle each as after any event.
    fn flush_touched(&mut self, touched: Vec<usize>, now: Instant) {
        for ws_slot in touched {
            if let Some(conn) = self.conns.get_mut(ws_slot) {
                let mut sh = Shared {
                    cfg: &self.cfg,
                    pool: &mut self.pool,
                    stats: &mut self.stats,
                    now,
                    ms: tick::ms(now),
                    draining: &self.handle.draining,
                };
                conn.st.flush(&mut sh);
            }
            self.after_event(ws_slot);
        }
    }

    /// Bind the management listener.
    pub(super) fn mgmt_bind(
        registry: &mio::Registry,
        cfg: &MgmtConfig,
    ) -> io::Result<(TcpListener, SocketAddr)> {
        let mut listener = super::listen(cfg.listen)?;
        registry.register(&mut listener, super::MGMT_LISTENER, Interest::READABLE)?;
        let addr = listener.local_addr()?;
        Ok((listener, addr))
    }
}
