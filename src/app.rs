//! The seam between the reactor and an application (the Configurapi runner).
//!
//! The reactor calls these on its own thread, so they must be quick: they copy what
//! they need and return jobs, which the reactor hands to the worker pool. Results come
//! back through the connection's [`Handle`](crate::reactor::Handle) (deliver, accept, reject).

use std::sync::Arc;

use crate::configurapi::Schedule;
use crate::conn::shared::ConnShared;
use crate::mgmt::MetricsSnapshot;
use crate::work::Job;
use crate::ws::UpgradeRequest;

/// How a message is handled.
pub enum Dispatch {
    /// Run this on the worker pool.
    Job(Job),
    /// Handled inline: send this text frame payload to the connection now.
    Reply(Vec<u8>),
    /// Started inline and suspended (a handler waits): the answer comes later through
    /// the connection's [`ConnShared`], from whichever thread finishes it.
    Later,
}

/// What an application does with connections and messages.
pub trait App: Send + Sync + 'static {
    /// A client finished the upgrade. `None` accepts it at once; `Some(job)` runs first
    /// (on_connect), and the job must end with [`Handle::accept`](crate::reactor::Handle::accept)
    /// or [`Handle::reject`](crate::reactor::Handle::reject). Messages that arrive meanwhile wait.
    /// Before accepting, the job calls [`ConnShared::claim_accepted`]; when that says
    /// the client has already gone, the reactor will not call `on_close`, and the job
    /// runs the close handling itself.
    fn on_open(&self, conn: &Arc<ConnShared>, req: &UpgradeRequest) -> Option<Job>;

    /// A complete text (`text == true`, valid UTF-8) or binary message arrived. With
    /// `inline_ok` the application may handle it right here on the reactor thread and
    /// return the reply frame's payload ([`Dispatch::Reply`]); it must then do no I/O
    /// and never wait. Otherwise it returns a job for the worker pool.
    fn on_message(
        &self,
        conn: &Arc<ConnShared>,
        text: bool,
        payload: &[u8],
        inline_ok: bool,
    ) -> Dispatch;

    /// An accepted connection ended (any cause). Called exactly once per accepted
    /// connection, after it left the registry.
    fn on_close(&self, conn: &Arc<ConnShared>) -> Option<Job>;

    /// Where pipelines that suspended resume: the worker pool's resumed queue (given
    /// once, when the pool starts).
    fn set_resume(&self, resume: Arc<dyn Schedule>) {
        let _ = resume;
    }

    /// The management listener is bound; `base` is its URL (e.g.
    /// `http://127.0.0.1:9100`), the default base of `postback-url` (8.6).
    fn set_management_url(&self, base: &str) {
        let _ = base;
    }

    /// Add the application's figures (handler latency, responses by status) to a
    /// `/metrics` snapshot.
    fn fill_metrics(&self, m: &mut MetricsSnapshot) {
        let _ = m;
    }
}
