//! A WebSocket runner with a handler of your own, in a few lines.
//!
//! Run with `cargo run --example ws_runner`, then send
//! `{"name":"hello","params":{"who":"ann"},"headers":{"message-id":"1"}}` to
//! ws://127.0.0.1:8000/ and get `{"statusCode":200,...,"body":"Hello, ann!"}`.

use std::sync::Arc;

use configurapi_runner_ws::configurapi::{Body, Context, Event, HandlerError, Service};
use configurapi_runner_ws::runner::{self, Runner, RunnerOptions};
use configurapi_runner_ws::{Mode, Server, ServerConfig};
use serde_json::Value;

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

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut registry = runner::registry(); // the built-in packs and configurapi-handler-ws
    registry.register("helloHandler", hello);
    let service = Service::from_str(CONFIG, "config.yaml", registry)?;
    let runner = Runner::new(service, RunnerOptions::default());
    let cfg = ServerConfig {
        mode: Mode::App(Arc::new(runner)),
        ..ServerConfig::default()
    };
    let server = Server::bind(cfg)?;
    println!("listening on ws://{}", server.local_addr());
    server.run()?;
    Ok(())
}
