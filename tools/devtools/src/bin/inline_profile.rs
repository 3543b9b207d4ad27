//! Runs the inline JSON path N times, for `valgrind --tool=callgrind`: a JSON message
//! through the runner's `AppConn::on_message` (the call the reactor makes per message)
//! on a 3-policy route of non-blocking handlers, to the reply envelope. No sockets:
//! `harness::Harness` plays the reactor, so nothing but the per-message path is
//! measured.
//!
//! ```sh
//! cargo build --release -p devtools --bin inline_profile
//! valgrind --tool=callgrind --dump-instr=no target/release/inline_profile 20000
//! valgrind --tool=callgrind --dump-instr=no target/release/inline_profile 20000 echo
//! ```
//!
//! With `echo`, the message is wsbench's JSON mode message on the built-in config's
//! `echo` route (one policy), the path `wsbench rr --mode json` drives.
//!
//! Instructions per message: (total at N) - (total at 0), divided by N. See
//! docs/profile.md ("Inline JSON path: profile").

use std::hint::black_box;
use std::sync::Arc;

use configurapi_runner_ws::app::{App, Dispatch};
use configurapi_runner_ws::configurapi::Service;
use configurapi_runner_ws::harness::Harness;
use configurapi_runner_ws::runner::{self, Runner, RunnerOptions};

/// The route of benches/pipeline.rs: three standard non-blocking policies.
const CONFIG: &str = r#"
import: [configurapi-handler-http, configurapi-handler-json]
api:
  events:
    - name: ping
      policies:
        - setResponseHeaderHandler: [X-Request, ping]
        - setResponseStatusCodeHandler: [201]
        - setJsonResponseHandler: [200, {message: Hi $($event.payload.from), id: $(id)}]
"#;

const MESSAGE: &[u8] = br#"{"name":"ping","method":"post","params":{"id":42},"payload":{"from":"alice"},"headers":{"message-id":"m-1"}}"#;

/// What `wsbench rr --mode json` sends.
const ECHO_MESSAGE: &[u8] = br#"{"name":"echo","payload":"hello","headers":{"message-id":"17"}}"#;

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .map_or(20_000, |s| s.parse().expect("N"));
    let echo = std::env::args().nth(2).as_deref() == Some("echo");
    let (config, message) = if echo {
        (runner::DEFAULT_CONFIG, ECHO_MESSAGE)
    } else {
        (CONFIG, MESSAGE)
    };
    let service = Service::from_str(config, "profile.yaml", runner::registry()).expect("config");
    let runner = Runner::new(service, RunnerOptions::default());
    // As the CLI does: the management listener's URL is the postback base (8.6).
    runner.set_management_url("http://127.0.0.1:9100");
    let harness = Harness::new(Arc::new(runner));
    let (mut conn, _) = harness.open("/", &[]);
    let mut bytes = 0usize;
    for _ in 0..n {
        match harness.message(&mut conn, true, black_box(message)) {
            Dispatch::Reply(frame) => bytes += black_box(frame).len(),
            Dispatch::Job(_) | Dispatch::Later => panic!("not inline"),
        }
    }
    println!("{n} messages, {bytes} reply bytes");
}
