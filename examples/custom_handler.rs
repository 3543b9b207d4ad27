//! Embedding the Configurapi core with a handler of your own.
//!
//! Run with `cargo run --example custom_handler`. The runner binary does the
//! same with a config file and the network around it.

use configurapi_runner_ws::configurapi::{
    Context, Event, HandlerError, HandlerRegistry, Request, Service,
};
use serde_json::{json, Value};

const CONFIG: &str = r#"
import:
  - configurapi-handler-json
api:
  events:
    - name: get_v1_greeting
      policies:
        - greetHandler: [Hello]
        - setJsonResponseHandler: [200, {greeting: $(text), for: $(greeting)}]
"#;

/// `greetHandler [word]`: puts "<word>, <id>!" into `params.text` for the
/// next policy, or answers 400 when the path has no id.
fn greet(event: &mut Event, params: &[Value], ctx: &mut Context) -> Result<(), HandlerError> {
    let word = params.first().and_then(Value::as_str).unwrap_or("Hi");
    let who = event
        .params
        .get("greeting")
        .and_then(Value::as_str)
        .unwrap_or("");
    if who.is_empty() {
        return Err(HandlerError::new("Say who to greet.").with_status(400));
    }
    let text = format!("{word}, {who}!");
    ctx.emit(log::Level::Debug, &text);
    event.params.insert("text".into(), json!(text));
    Ok(())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut registry = HandlerRegistry::with_builtins();
    registry.register("greetHandler", greet);
    let service = Service::from_str(CONFIG, "config.yaml", registry)?;

    for path in ["/v1/greetings/ann", "/v1/greetings"] {
        let mut event = Event::new(Request::new("GET", path));
        service.process(&mut event)?;
        let body = event.response.body.to_http_bytes().unwrap_or_default();
        println!(
            "GET {path} -> {} {}",
            event.response.status_code,
            String::from_utf8_lossy(&body)
        );
    }
    Ok(())
}
