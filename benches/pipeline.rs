//! What the pipeline costs: `Service::process` for a 3-policy route.
//!
//! `process_3_policies` times `process` alone (the event is built outside
//! the timing); `event_new_and_process` adds `Event::new` (UUID, path
//! mapping with singularisation) for the whole per-request core cost.
//!
//! Measured on the 2-core dev machine (release profile, fat LTO):
//! `process_3_policies` 844 ns [822 ns, 864 ns], `event_new_and_process`
//! 2.87 us [2.85 us, 2.91 us]. Most of `Event::new` is singularising path
//! segments; WebSocket events have an empty path and skip it.

use configurapi_runner_ws::configurapi::{Event, HandlerRegistry, Payload, Request, Service};
use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use serde_json::json;
use std::hint::black_box;

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

criterion_group!(benches, bench);
criterion_main!(benches);
