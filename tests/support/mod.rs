//! The one support tree of the integration tests (each test binary declares
//! `mod support;`): servers in-process or as the binary, clients over plain TCP or TLS,
//! the management HTTP client, readiness waits with a deadline, and test certificates.
//!
//! - [`server`]: [`TestServer`], one in-process server wrapper with a [`Builder`]
//!   (echo or a Configurapi runner, management API, plain or TLS listener);
//! - [`binary`]: the runner binary as a child process ([`Bin`]), scratch folders, and
//!   `Command` output with a deadline;
//! - [`client`]: [`Stream`] (plain TCP or TLS) and [`Ws`], a raw-frame JSON client;
//! - [`frames`]: masked client frames, server frames and HTTP heads read from the wire;
//! - [`mgmt`]: a raw HTTP/1.1 client for the management listener;
//! - [`runner`]: the runner settings and test handlers (gates, recorders);
//! - [`wait`]: the test deadline and waits for an observable state;
//! - [`certs`]: a test CA and server certificates made with rcgen;
//! - [`rss`]: this process's resident set and its peak growth during an attack.
//!
//! A test of what a client sees on the wire is one body taking a [`Transport`], run by
//! two tests: `over_both!(body: plain_name, tls_name)`.
//!
//! Every binary uses a different part, so unused items are expected.
#![allow(dead_code, unused_imports)]

pub mod binary;
pub mod certs;
pub mod client;
pub mod frames;
pub mod mgmt;
pub mod rss;
pub mod runner;
pub mod server;
pub mod wait;

/// Two tests, one body: `over_both!(body: plain_name, tls_name)` defines `#[test] fn
/// plain_name` running `body(Transport::Plain)` and `#[test] fn tls_name` running
/// `body(Transport::Tls)`.
#[allow(unused_macros)]
macro_rules! over_both {
    ($body:ident: $plain:ident, $tls:ident) => {
        #[test]
        fn $plain() {
            $body(support::Transport::Plain);
        }

        #[test]
        fn $tls() {
            $body(support::Transport::Tls);
        }
    };
}
pub(crate) use over_both;

pub use binary::*;
pub use certs::*;
pub use client::*;
pub use frames::*;
pub use mgmt::*;
pub use rss::*;
pub use runner::*;
pub use server::*;
pub use wait::*;
