//! What the pipeline costs: `Service::process` for a 3-policy route.
//!
//! `process_3_policies` times `process` alone (the event is built outside
//! the timing); `event_new_and_process` adds `Event::new` (UUID, path
//! mapping with singularisation) for the whole per-request core cost.
//!
//! `message_to_envelope_3_policies` is the whole inline path the reactor runs per
//! JSON message: the runner's `AppConn::on_message` (the call the reactor makes)
//! decodes the JSON envelope, builds the Event (connection headers, params), processes
//! a 3-policy route of non-blocking handlers, records the metrics and encodes the
//! reply envelope. Driven through `harness::Harness`: no server, no socket. Its
//! instruction profile is in docs/profile.md ("Inline JSON path: profile";
//! `tools/devtools/src/bin/inline_profile.rs` runs the same path for callgrind). Measured on the
//! same machine, pinned to one core: 2.66 us per message (22,014 instructions).
//!
//! Measured on the 2-core dev machine (release profile, fat LTO):
//! `process_3_policies` 844 ns [822 ns, 864 ns], `event_new_and_process`
//! 2.87 us [2.85 us, 2.91 us]. Most of `Event::new` is singularising path
//! segments; WebSocket events have an empty path and skip it.
//!
//! `singularize_resource_name`: one resource name of a path, now remembered per
//! thread: 42 ns (median; criterion's interval 41.7-42.6 ns) against 9.7 us before
//! (interval 3.9-13.5 us: measured while a CI run loaded the machine, regex built
//! for size as in the release profile), on 2026-12-05.

use configurapi_runner_ws::app::{App, Dispatch};
use configurapi_runner_ws::configurapi::{Event, HandlerRegistry, Payload, Request, Service};
use configurapi_runner_ws::harness::Harness;
use configurapi_runner_ws::runner::{self, Runner, RunnerOptions};
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use serde_json::{json, Value};
use std::hint::black_box;
use std::sync::Arc;

const CONFIG: &str = r#"
import: [configurapi-handler-http, configurapi-handler-json]
api:
  events:
    - name: post_v1_ping
      policies:
        - setResponseHeaderHandler: [X-Request, ping]
        - setResponseStatusCodeHandler: [201]
        - setJsonResponseHandler: [200, {message: Hi $($event.payload.from), id: $(ping)}]
"#;

/// The same route named for a WebSocket message (no path), as
/// tools/devtools/src/bin/inline_profile.rs has it.
const WS_CONFIG: &str = r#"
import: [configurapi-handler-http, configurapi-handler-json]
api:
  events:
    - name: ping
      policies:
        - setResponseHeaderHandler: [X-Request, ping]
        - setResponseStatusCodeHandler: [201]
        - setJsonResponseHandler: [200, {message: Hi $($event.payload.from), id: $(id)}]
"#;

/// A client message in the runner's envelope (docs/protocol.md).
const MESSAGE: &[u8] = br#"{"name":"ping","method":"post","params":{"id":42},"payload":{"from":"alice"},"headers":{"message-id":"m-1"}}"#;

fn request() -> Request {
    let mut r = Request::new("POST", "/v1/ping/42");
    r.payload = Payload::Json(json!({"from": "alice"}));
    r
}

fn bench(c: &mut Criterion) {
    let service = Service::from_str(CONFIG, "bench.yaml", HandlerRegistry::with_builtins())
        .expect("bench config");
    // Sanity check outside the timing.
    let mut event = Event::new(request());
    service.process(&mut event).expect("process");
    assert_eq!(event.name, "post_v1_ping");
    assert_eq!(event.response.status_code, 200);

    c.bench_function("process_3_policies", |b| {
        b.iter_batched_ref(
            || Event::new(request()),
            |event| service.process(black_box(event)),
            BatchSize::SmallInput,
        )
    });
    c.bench_function("event_new_and_process", |b| {
        b.iter(|| {
            let mut event = Event::new(black_box(request()));
            service.process(&mut event).expect("process");
            event
        })
    });
}

/// The runner's `on_message` with inline execution, as the reactor calls it per
/// message, driven by the harness (no server).
fn inline_message(c: &mut Criterion) {
    let service = Service::from_str(WS_CONFIG, "bench.yaml", runner::registry()).expect("config");
    let runner = Runner::new(service, RunnerOptions::default());
    // As the CLI does: the management listener's URL is the postback base (8.6).
    runner.set_management_url("http://127.0.0.1:9100");
    let harness = Harness::new(Arc::new(runner));
    let (mut conn, jobs) = harness.open("/", &[]);
    assert!(jobs.is_empty(), "no on_connect route: accepted at once");
    // Sanity check outside the timing.
    let Dispatch::Reply(frame) = harness.message(&mut conn, true, MESSAGE) else {
        panic!("the route should run inline");
    };
    let reply: Value = serde_json::from_slice(&frame).expect("envelope");
    assert_eq!(
        reply,
        json!({
            "statusCode": 200,
            "headers": {"X-Request": "ping", "Content-Type": "application/json", "message-id": "m-1"},
            "body": {"message": "Hi alice", "id": "42"}
        })
    );

    let mut g = c.benchmark_group("inline");
    g.throughput(Throughput::Elements(1));
    g.bench_function("message_to_envelope_3_policies", |b| {
        b.iter(
            || match harness.message(&mut conn, true, black_box(MESSAGE)) {
                Dispatch::Reply(frame) => frame,
                Dispatch::Job(_) | Dispatch::Later => unreachable!(),
            },
        )
    });
    g.finish();
}

/// What a message with a path pays per resource name (`/v1/users/7` singularises
/// `users`): the answers are remembered per thread, so an app's few names cost a
/// lookup, not the ~100 inflection rules.
fn singularize(c: &mut Criterion) {
    let words = ["users", "data", "people", "statuses", "orders", "items"];
    let mut i = 0;
    c.bench_function("singularize_resource_name", |b| {
        b.iter(|| {
            i = (i + 1) % words.len();
            configurapi_runner_ws::configurapi::singularize(black_box(words[i]))
        })
    });
}

criterion_group!(benches, bench, inline_message, singularize);
criterion_main!(benches);
