//! The runner's whole command line with a handler of your own.
//!
//! Run with `cargo run --example ws_runner` (every flag of the runner works, e.g.
//! `cargo run --example ws_runner -- --port 9000 --config app/config.yaml`), then send
//! `{"name":"hello","params":{"who":"ann"},"headers":{"message-id":"1"}}` to
//! ws://127.0.0.1:8000/ and get `{"statusCode":200,...,"body":"Hello, ann!"}`.

use std::process::ExitCode;

use configurapi_runner_ws::configurapi::{Body, Context, Event, HandlerError};
use configurapi_runner_ws::{cli, runner};
use serde_json::Value;

/// Served when there is no `--config` and no `./config.yaml`.
const CONFIG: &str = r#"
api:
  events:
    - name: hello
      policies:
        - helloHandler
"#;

/// `helloHandler`: greets `params.who`.
fn hello(event: &mut Event, _: &[Value], _: &mut Context) -> Result<(), HandlerError> {
    let who = event
        .params
        .get("who")
        .and_then(Value::as_str)
        .unwrap_or("world");
    event.response.body = Body::Text(format!("Hello, {who}!"));
    Ok(())
}

fn main() -> ExitCode {
    let mut registry = runner::registry(); // the built-in packs and configurapi-handler-ws
    registry.register("helloHandler", hello);
    cli::Cli::new(registry).default_config(CONFIG).run()
}
