//! Counters owned by the reactor thread (no atomics on the hot path); copies are
//! handed out through a command. Plain data below `conn/` and `reactor/`: both count
//! into it, neither is imported.

use std::collections::BTreeMap;

use crate::ws::HandshakeError;

/// Reactor counters. Plain integers: only the reactor thread writes them.
#[derive(Debug, Clone, Default)]
pub struct Stats {
    /// Connections accepted since start.
    pub accepted: u64,
    /// Connections open now.
    pub open: u64,
    /// Upgrades answered with 101.
    pub handshakes_ok: u64,
    /// Upgrades refused, by HTTP status.
    pub handshakes_rejected: BTreeMap<u16, u64>,
    /// Upgrades refused, by reason (`HandshakeError::reason`, or "timeout").
    pub handshakes_rejected_by_reason: BTreeMap<&'static str, u64>,
    /// Handshakes that did not finish in time.
    pub handshake_timeouts: u64,
    /// Connections closed for being idle.
    pub idle_timeouts: u64,
    /// Connections failed for a protocol error.
    pub protocol_errors: u64,
    /// Close frames sent, by code.
    pub close_codes_sent: BTreeMap<u16, u64>,
    /// Data messages received.
    pub messages_in: u64,
    /// Data messages sent.
    pub messages_out: u64,
    /// Bytes read from sockets.
    pub bytes_in: u64,
    /// Bytes written to sockets.
    pub bytes_out: u64,
    /// Deliveries (commands, completions, pushes) addressed to a connection that no
    /// longer exists (dropped by the generation check) or that has already closed.
    pub stale_dropped: u64,
    /// Connections closed with 1008 for staying over the queued-bytes cap.
    pub backpressure_closes: u64,
    /// Pings whose pong was replaced by a later one's while the peer was not reading.
    pub pongs_coalesced: u64,
    /// Connections shed at accept because the process was out of file descriptors.
    pub fd_shed: u64,
    /// Management connections refused with 503 because too many were open.
    pub mgmt_refused: u64,
    /// Times a connection stopped being read because its write queue passed the
    /// high-water mark (backpressure on a peer that does not read its answers).
    pub read_pauses: u64,
    /// Readiness events left unread because jobs waited in the reactor's backlog (the
    /// worker pool and its queue were full): the bytes stay in the kernel.
    pub backlog_stalls: u64,
    /// The most jobs the backlog has held at once since start.
    pub backlog_peak: u64,
    /// Timer entries that found their connection gone.
    pub stale_timers: u64,
    /// Bytes queued for writing, summed over connections (filled in on request).
    pub queued_bytes_sum: u64,
    /// Largest write queue now (filled in on request): a sample of this moment.
    pub queued_bytes_max: u64,
    /// Largest read-side buffer now, by capacity: an upgrade head being read or a
    /// message being reassembled (filled in on request).
    pub read_buffered_max: u64,
    /// Pipelines suspended now: handlers waiting on a timer, a reply or room, holding
    /// no thread (filled in on request).
    pub waiting: u64,
    /// Stream producers and pushes waiting for room in a write queue now (filled in on
    /// request): a producer held at the high-water mark.
    pub producers_waiting: u64,
    /// The most bytes any one connection has had queued for writing at any moment
    /// since start (write queue plus TLS records not yet taken by the socket). A
    /// recorded high-water mark: connections note it at every push and flush, and
    /// their peaks are folded in here when they close (live ones on request).
    pub queued_bytes_peak: u64,
    /// The largest upgrade head buffer any one connection has held since start,
    /// recorded the same way.
    pub head_buffered_peak: u64,
    /// The largest reassembly buffer (a message in progress) any one connection has
    /// held since start, recorded the same way.
    pub message_buffered_peak: u64,
}

impl Stats {
    pub(crate) fn record_rejected(&mut self, e: &HandshakeError) {
        *self.handshakes_rejected.entry(e.status()).or_default() += 1;
        *self
            .handshakes_rejected_by_reason
            .entry(e.reason())
            .or_default() += 1;
    }

    pub(crate) fn record_close_sent(&mut self, code: u16) {
        *self.close_codes_sent.entry(code).or_default() += 1;
    }
}
