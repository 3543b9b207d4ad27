//! The section 8 decisions that concern the core (8.1, 8.3, 8.8, 8.10).

mod common;

use common::*;
use configurapi::{
    Body, Chunk, Context, Event, HandlerError, Identity, PushError, PushSink, Request, Response,
};
use serde_json::{json, Value};
use std::sync::{Arc, Mutex};

#[test]
fn s8_1_envelope_bodies_absent_empty_null_null_values_as_json() {
    assert_eq!(Body::Absent.to_envelope_value(), Some((json!(""), false)));
    assert_eq!(Body::Null.to_envelope_value(), Some((Value::Null, false)));
    for v in [
        json!({"a": 1}),
        json!([1]),
        json!(3),
        json!(true),
        json!("s"),
    ] {
        assert_eq!(Body::Json(v.clone()).to_envelope_value(), Some((v, false)));
    }
    // The core adds no Content-Type of its own to a JSON body.
    let r = Response::new(json!({"a": 1}), 200);
    assert!(r.headers.is_empty());
}

#[test]
fn s8_3_identity_can_be_given_to_an_event_and_read_back_after_process() {
    let s = service("api:\n  events:\n    - name: x\n      policies: []\n");
    let mut e = Event::new(Request::named("x"));
    e.identity = Some(Identity::new("from-on_connect", vec![]));
    s.process(&mut e).unwrap();
    assert_eq!(e.identity.unwrap().id, "from-on_connect");
}

#[test]
fn s8_8_event_names_are_plain_strings() {
    let s = service(
        "api:\n  events:\n    - name: constructor\n      policies: [{traceHandler: [c]}]\n    - name: toString\n      policies: [{traceHandler: [t]}]\n",
    );
    assert_eq!(trace_of(&run_named(&s, "constructor")), "c");
    assert_eq!(trace_of(&run_named(&s, "toString")), "t");
    for name in ["__proto__", "hasOwnProperty", "valueOf"] {
        assert_eq!(run_named(&s, name).response.status_code, 501, "{name}");
    }
}

#[test]
fn s8_10_section_8_wins_null_is_null_in_envelopes_and_empty_over_http() {
    assert_eq!(Body::Null.to_envelope_value(), Some((Value::Null, false)));
    assert_eq!(Body::Null.to_http_bytes(), Some(Vec::new()));
}

struct Recorder(Mutex<Vec<Response>>);

impl PushSink for Recorder {
    fn push(self: Arc<Self>, response: Response) -> Result<(), PushError> {
        self.0.lock().unwrap().push(response);
        Ok(())
    }
}

#[test]
fn push_sink_and_streams_are_the_runners_hooks() {
    let recorder = Arc::new(Recorder(Mutex::new(Vec::new())));
    let mut reg = registry();
    reg.register(
        "pushTwice",
        |e: &mut Event, _: &[Value], _: &mut Context| {
            e.push(Response::new("first", 200))?;
            e.push(Response::stream(
                vec![
                    Ok(Chunk::Text("a".into())),
                    Err(HandlerError::new("mid-stream")),
                ]
                .into_iter(),
                200,
            ))?;
            Ok(())
        },
    );
    let s = configurapi::Service::from_str(
        "api:\n  events:\n    - name: x\n      policies: [pushTwice]\n",
        "c",
        reg,
    )
    .unwrap();
    let mut r = Request::named("x");
    r.push = Some(recorder.clone());
    let mut e = Event::new(r);
    s.process(&mut e).unwrap();
    assert_eq!(e.response.status_code, 200);
    let mut pushed = recorder.0.lock().unwrap();
    assert_eq!(pushed.len(), 2);
    assert_eq!(pushed[0].body, Body::from("first"));
    let mut stream = pushed[1].take_stream().unwrap();
    assert_eq!(stream.next_chunk(), Some(Ok(Chunk::Text("a".into()))));
    assert!(matches!(stream.next_chunk(), Some(Err(_))));

    // Without a sink a push fails, and as a thrown error it is a 500.
    let e = run_named(&s, "x");
    assert_eq!(e.response.status_code, 500);
    assert_eq!(
        e.response.error.unwrap().message,
        PushError::Unsupported.to_string()
    );
}
