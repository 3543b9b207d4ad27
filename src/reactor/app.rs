//! The seam between the reactor and an application (the Configurapi runner).
//!
//! The reactor calls these on its own thread, so they must be quick: they copy what
//! they need and return jobs, which the reactor hands to the worker pool. Results come
//! back through the connection's [`Handle`](super::Handle) (deliver, accept, reject).

use std::sync::Arc;

use crate::conn::shared::ConnShared;
use crate::work::Job;
use crate::ws::UpgradeRequest;

/// What an application does with connections and messages.
pub trait App: Send + Sync + 'static {
    /// A client finished the upgrade. `None` accepts it at once; `Some(job)` runs first
    /// (on_connect), and the job must end with [`Handle::accept`](super::Handle::accept)
    /// or [`Handle::reject`](super::Handle::reject). Messages that arrive meanwhile wait.
    /// Before accepting, the job calls [`ConnShared::claim_accepted`]; when that says
    /// the client has already gone, the reactor will not call `on_close`, and the job
    /// runs the close handling itself.
    fn on_open(&self, conn: &Arc<ConnShared>, req: &UpgradeRequest) -> Option<Job>;

    /// A complete text (`text == true`, valid UTF-8) or binary message arrived.
    fn on_message(&self, conn: &Arc<ConnShared>, text: bool, payload: &[u8]) -> Job;

    /// An accepted connection ended (any cause). Called exactly once per accepted
    /// connection, after it left the registry.
    fn on_close(&self, conn: &Arc<ConnShared>) -> Option<Job>;
}
