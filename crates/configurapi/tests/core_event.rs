//! Section 2 of the contract: Event fields, path mapping, placeholders.

mod common;

use std::sync::Arc;

use common::*;
use configurapi::{map_path, Body, Event, Payload, Request, Response};
use serde_json::{json, Map, Value};

fn obj(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        _ => panic!("not an object"),
    }
}

fn event_with(params: Value, payload: Payload) -> Event {
    let mut event = Event::new(Request::named("x"));
    event.params = obj(params);
    event.set_payload(payload);
    event
}

#[test]
fn s2_1_1_every_event_gets_a_new_uuid_v4() {
    let a = Event::new(Request::default());
    let b = Event::new(Request::default());
    assert_ne!(a.id, b.id);
    for e in [&a, &b] {
        let id = uuid::Uuid::parse_str(&e.id.to_string()).unwrap();
        assert_eq!(id.get_version_num(), 4);
    }
}

#[test]
fn s2_1_2_correlation_id_query_then_header_then_id_exact_keys_presence_counts() {
    let mut r = Request::default();
    r.query.insert("correlationid".into(), json!("from-query"));
    r.headers
        .insert("correlation-id".into(), json!("from-header"));
    assert_eq!(Event::new(r).correlation_id, "from-query");

    let mut r = Request::default();
    r.headers
        .insert("correlation-id".into(), json!("from-header"));
    assert_eq!(Event::new(r).correlation_id, "from-header");

    let mut r = Request::default();
    r.query.insert("correlationid".into(), json!(""));
    r.headers
        .insert("correlation-id".into(), json!("from-header"));
    assert_eq!(
        Event::new(r).correlation_id,
        "",
        "an empty value is still used"
    );

    let mut r = Request::default();
    r.headers
        .insert("Correlation-Id".into(), json!("wrong-case"));
    r.query.insert("correlationId".into(), json!("wrong-case"));
    let e = Event::new(r);
    assert_eq!(e.correlation_id, e.id, "lookups are case-sensitive");
}

#[test]
fn s2_1_3_request_defaults() {
    let r = Request::default();
    assert_eq!(r.name, "");
    assert_eq!(r.method, "get");
    assert!(r.headers.is_empty());
    assert!(r.params.is_empty());
    assert_eq!(r.payload, Payload::Absent);
    assert!(r.query.is_empty());
    assert_eq!(r.path, "");
    assert_eq!(r.path_and_query, "");
    assert!(r.push.is_none());
    assert_eq!(
        Request::new("POST", "/x").method,
        "post",
        "the method is lowercased"
    );
}

#[test]
fn s2_1_4_query_is_a_mapping_and_path_a_string_so_a_default_request_works() {
    // With typed fields the Node TypeError for `query = ""` cannot happen.
    let event = Event::new(Request::default());
    assert_eq!(event.name, "");
    assert_eq!(event.method, "get");
}

#[test]
fn s2_1_5_initial_payload_method_response_identity_params_version() {
    let mut r = Request::new("PUT", "");
    r.payload = Payload::Json(json!({"a": 1}));
    r.params.insert("ignored".into(), json!("x"));
    let e = Event::new(r);
    assert_eq!(*e.payload(), Payload::Json(json!({"a": 1})));
    assert_eq!(e.method, "put");
    assert_eq!(e.response, Response::new("", 200));
    assert_eq!(e.response.body, Body::Text(String::new()));
    assert!(e.response.headers.is_empty());
    assert!(e.identity.is_none());
    assert!(e.params.is_empty());
    assert_eq!(e.version, None);
    assert_eq!(
        http_event("GET", "/v2/x", &[]).version.as_deref(),
        Some("v2")
    );
}

#[test]
fn s2_1_6_name_starts_as_request_name_or_empty() {
    assert_eq!(Event::new(Request::named("hello")).name, "hello");
    assert_eq!(Event::new(Request::default()).name, "");
}

#[test]
fn s2_2_1_empty_segments_are_dropped_and_no_segments_keeps_name_and_method() {
    let e = http_event("GET", "/", &[("q", "1")]);
    assert_eq!((e.name.as_str(), e.method.as_str()), ("", "get"));
    assert!(
        e.params.is_empty(),
        "query keys are not copied for an empty path"
    );
    let mut r = Request::new("GET", "//");
    r.name = "named".into();
    assert_eq!(Event::new(r).name, "named");
    assert_eq!(http_event("GET", "//users//", &[]).name, "list_users");
}

#[test]
fn s2_2_2_a_leading_version_segment_is_removed() {
    let e = http_event("GET", "/v1.2/users/1", &[]);
    assert_eq!(e.version.as_deref(), Some("v1.2"));
    assert_eq!(e.name, "get_v1.2_user");
    let e = http_event("GET", "/users/v1", &[]);
    assert_eq!(e.version, None, "only the first segment can be a version");
    assert_eq!(e.name, "get_user");
    assert_eq!(http_event("GET", "/v1x/a", &[]).version, None);
}

#[test]
fn s2_2_3_resource_id_pairs_singular_keys_and_list_for_get_collections() {
    let e = http_event("GET", "/users/someone/phones", &[]);
    assert_eq!(e.name, "list_user_phones");
    assert_eq!(e.method, "list");
    assert_eq!(e.params, obj(json!({"user": "someone", "phone": ""})));
    let e = http_event("PATCH", "/users/someone/phones", &[]);
    assert_eq!(e.name, "patch_user_phone");
    assert_eq!(e.method, "patch");
}

#[test]
fn s2_2_4_name_is_method_version_then_request_name_and_parts() {
    let key = map_path("", "get", "/v3/boxes/1", &Map::new());
    assert_eq!(key.name, "get_v3_box");
    // The quirk: a request with both a name and a path.
    let mut r = Request::new("GET", "/x/1");
    r.name = "getData".into();
    assert_eq!(Event::new(r).name, "getgetData_x");
}

#[test]
fn s2_2_5_query_keys_override_path_ids() {
    let e = http_event("GET", "/users/1", &[("user", "2"), ("q", "1")]);
    assert_eq!(e.params, obj(json!({"user": "2", "q": "1"})));
}

#[test]
fn s2_2_6_path_to_name_table() {
    let q = [("q", "1")];
    let rows: &[(&str, &str, &str, Value)] = &[
        ("GET", "/users", "list_users", json!({"user": "", "q": "1"})),
        (
            "GET",
            "/users/someone/phones/123",
            "get_user_phone",
            json!({"user": "someone", "phone": "123", "q": "1"}),
        ),
        (
            "GET",
            "/v1/users/someone/phones",
            "list_v1_user_phones",
            json!({"user": "someone", "phone": "", "q": "1"}),
        ),
        (
            "POST",
            "/v1/users/",
            "post_v1_user",
            json!({"user": "", "q": "1"}),
        ),
        (
            "DELETE",
            "/people/1",
            "delete_person",
            json!({"person": "1", "q": "1"}),
        ),
        ("GET", "/data", "list_data", json!({"datum": "", "q": "1"})),
        (
            "OPTIONS",
            "/v1/data",
            "options_v1_datum",
            json!({"datum": "", "q": "1"}),
        ),
        ("GET", "/news", "list_news", json!({"news": "", "q": "1"})),
        (
            "GET",
            "/v1.2/statuses",
            "list_v1.2_statuses",
            json!({"status": "", "q": "1"}),
        ),
        ("GET", "/v1", "get_v1", json!({"q": "1"})),
        (
            "GET",
            "/@connections",
            "list_@connections",
            json!({"@connection": "", "q": "1"}),
        ),
        (
            "POST",
            "/@connections/abc",
            "post_@connection",
            json!({"@connection": "abc", "q": "1"}),
        ),
        (
            "GET",
            "/list_@connections",
            "list_list_@connections",
            json!({"list_@connection": "", "q": "1"}),
        ),
    ];
    for (method, path, name, params) in rows {
        let e = http_event(method, path, &q);
        assert_eq!(&e.name, name, "{method} {path}");
        assert_eq!(e.params, obj(params.clone()), "{method} {path}");
        // The pure function gives the same answer.
        let key = map_path("", &method.to_lowercase(), path, &query_map(&q));
        assert_eq!((&key.name, &key.method), (&e.name, &e.method));
    }
}

#[test]
fn s2_3_1_resolve_strings_maps_and_sequences_others_unchanged() {
    let e = event_with(json!({"a": "A"}), Payload::Absent);
    assert_eq!(e.resolve_str("x$(a)y"), "xAy");
    assert_eq!(
        e.resolve(&json!({"k": ["$(a)", {"n": "$(a)"}, 1], "b": true})),
        json!({"k": ["A", {"n": "A"}, 1], "b": true})
    );
    for v in [json!(5), json!(true), json!(null), json!(1.5)] {
        assert_eq!(e.resolve(&v), v);
    }
}

#[test]
fn s2_3_2_tokens_run_to_the_next_paren_and_do_not_nest() {
    let e = event_with(json!({"a": "A", "b": "B", "a$(b": "odd"}), Payload::Absent);
    assert_eq!(e.resolve_str("$(a)$(b)"), "AB");
    assert_eq!(e.resolve_str("$(a$(b))"), "odd)");
    assert_eq!(e.resolve_str("$(a"), "$(a");
    assert_eq!(e.resolve_str("$a) $() (a)"), "$a) $() (a)");
}

#[test]
fn s2_3_3_lookup_rules_env_payload_params_and_dotted_params() {
    std::env::set_var("CFG_TEST_2_3_3", "from-env");
    let payload = Payload::Json(json!({"from": "alice", "list": [{"n": 1}, {"n": 2}]}));
    let e = event_with(
        json!({"user": {"name": "bob"}, "a.b": "literal", "plain": "p", "$event.payload.from": "shadowed"}),
        payload,
    );
    // a. env
    assert_eq!(e.resolve_str("$($env.CFG_TEST_2_3_3)"), "from-env");
    // b. payload path, with [n] meaning .n
    assert_eq!(e.resolve_str("$($event.payload.from)"), "alice");
    assert_eq!(e.resolve_str("$($event.payload.list[1].n)"), "2");
    // c. whole payload (mappings as JSON text)
    assert_eq!(
        e.resolve_str("$($event.payload)"),
        r#"{"from":"alice","list":[{"n":1},{"n":2}]}"#
    );
    // d. literal params keys, even with a dot
    assert_eq!(e.resolve_str("$(plain)"), "p");
    assert_eq!(e.resolve_str("$(a.b)"), "literal");
    // e. a dotted path into a params mapping
    assert_eq!(e.resolve_str("$(user.name)"), "bob");
    // e quirk: a string or number head is the value itself
    let e = event_with(json!({"user": "bob", "n": 7}), Payload::Absent);
    assert_eq!(e.resolve_str("$(user.name)"), "bob");
    assert_eq!(e.resolve_str("$(n.x)"), "7");
    // b/c need a truthy payload; otherwise params may answer
    let e = event_with(
        json!({"$event.payload.from": "param"}),
        Payload::Json(json!("")),
    );
    assert_eq!(e.resolve_str("$($event.payload.from)"), "param");
    assert_eq!(e.resolve_str("$($event.payload)"), "$($event.payload)");
}

#[test]
fn s2_3_4_undefined_leaves_the_token_null_is_text_null() {
    std::env::remove_var("CFG_TEST_2_3_4_UNSET");
    let e = event_with(json!({"nothing": null}), Payload::Absent);
    assert_eq!(e.resolve_str("$(missing)"), "$(missing)");
    assert_eq!(
        e.resolve_str("$($env.CFG_TEST_2_3_4_UNSET)"),
        "$($env.CFG_TEST_2_3_4_UNSET)"
    );
    assert_eq!(e.resolve_str("[$(nothing)]"), "[null]");
}

#[test]
fn s2_3_5_values_become_text_and_whole_tokens_stay_strings() {
    let e = event_with(
        json!({"n": 5, "f": 2.5, "seq": [1, "a", null], "map": {"k": "v"}, "t": true}),
        Payload::Absent,
    );
    assert_eq!(
        e.resolve(&json!("$(n)")),
        json!("5"),
        "never the original type"
    );
    assert_eq!(e.resolve_str("$(f)"), "2.5");
    assert_eq!(e.resolve_str("$(seq)"), "1,a,");
    assert_eq!(e.resolve_str("$(map)"), r#"{"k":"v"}"#);
    assert_eq!(e.resolve_str("$(t)"), "true");
}

#[test]
fn s2_3_6_bad_paths_stay_unresolved() {
    let e = event_with(
        json!({"arr": [1, 2], "s": "x"}),
        Payload::Json(json!({"s": "x", "z": null})),
    );
    assert_eq!(
        e.resolve_str("$($event.payload.s.k)"),
        "$($event.payload.s.k)"
    );
    assert_eq!(
        e.resolve_str("$($event.payload.z.k)"),
        "$($event.payload.z.k)"
    );
    assert_eq!(
        e.resolve_str("$(arr[1])"),
        "$(arr[1])",
        "rule e needs a dot"
    );
    assert_eq!(e.resolve_str("$(arr.1)"), "2");
    let e = event_with(json!({}), Payload::Text("plain".into()));
    assert_eq!(
        e.resolve_str("$($event.payload.foo)"),
        "$($event.payload.foo)"
    );
    assert_eq!(e.resolve_str("$($event.payload)"), "plain");
}

#[test]
fn s2_3_7_substitution_is_literal() {
    let e = event_with(
        json!({"v": "$& and $$ and $1 and $(other)", "other": "no"}),
        Payload::Absent,
    );
    assert_eq!(e.resolve_str("<$(v)>"), "<$& and $$ and $1 and $(other)>");
}

#[test]
fn s2_3_8_placeholders_resolve_on_a_copy() {
    let service = service(
        r#"
import: [configurapi-handler-http]
api:
  events:
    - name: post_v1_ping
      policies:
        - setResponseHandler:
          - 200
          - greeting: Hi $($event.payload.from)
"#,
    );
    for who in ["alice", "bob"] {
        let mut r = Request::new("POST", "/v1/ping");
        r.payload = Payload::Json(json!({"from": who}));
        let mut e = Event::new(r);
        service.process(&mut e).unwrap();
        assert_eq!(
            e.response.body,
            Body::Json(json!({"greeting": format!("Hi {who}")}))
        );
    }
    let params = json!({"k": "$(a)"});
    let e = event_with(json!({"a": "A"}), Payload::Absent);
    assert_eq!(
        e.resolve(&params),
        json!({"k": "A"}),
        "the copy is resolved"
    );
    assert_eq!(params, json!({"k": "$(a)"}), "the argument is untouched");
}

/// What a runner reads of an event and its request, as text: equal texts, equal events
/// (but for the id and the clock).
fn fields(e: &Event) -> String {
    format!(
        "{:?} {:?} {:?} {:?} {:?} {:?} {:?} {:?} {:?} {:?}",
        e.request,
        e.name,
        e.method,
        e.version,
        e.params,
        e.payload(),
        e.payload_is_the_requests(),
        e.response,
        e.identity,
        e.correlation_id == e.id,
    )
}

#[test]
fn a_recycled_event_comes_back_blank_and_begins_as_a_new_one_would() {
    // Everything a message and its pipeline can set, on a spare event.
    let mut event = Event::spare();
    let r = &mut event.request;
    r.name = "a-name-longer-than-twenty-four-bytes".into();
    r.method = "POST".into();
    r.headers.insert("correlation-id".into(), json!("given"));
    r.params.insert("p".into(), json!(1));
    r.query.insert("q".into(), json!(2));
    r.payload = Payload::Text("payload".into());
    r.path = "/v1/users/1".into();
    r.path_and_query = "/v1/users/1?q=2".into();
    event.begin();
    assert_eq!(event.version.as_deref(), Some("v1"));
    assert_eq!(event.correlation_id, "given");
    event.set_payload(Payload::Json(json!({"changed": true})));
    event.response = configurapi::ErrorResponse::not_implemented("x").to_response();
    event.response.headers.insert("h".into(), json!("v"));
    event.identity = Some(configurapi::Identity::new("someone", vec![]));
    // The connection a runner puts in for pushes.
    struct Sink;
    impl configurapi::PushSink for Sink {
        fn push(self: Arc<Self>, _: Response) -> Result<(), configurapi::PushError> {
            Ok(())
        }
    }
    let sink = Arc::new(Sink);
    event.request.push = Some(sink.clone());
    let kept = &*event as *const Event;
    Event::recycle(event);
    assert_eq!(
        Arc::strong_count(&sink),
        1,
        "the kept event lets the connection go"
    );

    // The next spare on this thread is that event, emptied: as a blank one.
    let mut spare = Event::spare();
    assert!(
        std::ptr::eq(&*spare, kept),
        "the spare is the recycled event"
    );
    assert_eq!(fields(&spare), fields(&Event::blank()));
    // A message read into it gives the event Event::new gives for that request.
    let mut request = Request::named("echo");
    request.headers.insert("message-id".into(), json!("m-1"));
    request.payload = Payload::Json(json!("hi"));
    spare.request = request.clone();
    spare.begin();
    let new = Event::new(request);
    assert_eq!(fields(&spare), fields(&new));
    assert_ne!(spare.id, new.id, "each begin draws its own id");

    // Spares taken at once are distinct events (a nested one is made anew).
    let other = Event::spare();
    assert_eq!(fields(&other), fields(&Event::blank()));
    Event::recycle(spare);
    Event::recycle(other);
}
