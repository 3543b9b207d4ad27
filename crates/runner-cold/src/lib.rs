//! The runner's cold code: what runs at start-up, per JS handler call over a pipe, or
//! per TLS configuration, never per frame. A package of its own because cargo sets
//! opt-level per package: the release profile builds this one for size ("z") and the
//! reactor, codec and runner at 3 (issue #17, docs/size.md). `configurapi-runner-ws`
//! re-exports each module at its old path; nothing here calls back into the runner.
#![deny(missing_docs)]

#[doc(hidden)]
pub mod jshost;
pub mod sdnotify;
pub mod tls;

/// The environment variable that may hold the management token (`--management-token`
/// wins over it). Here because the JS host hands it to Node; `mgmt` re-exports it.
pub const TOKEN_ENV: &str = "CONFIGURAPI_MANAGEMENT_TOKEN";
