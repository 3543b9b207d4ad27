//! Section 1 of the contract: config.yaml grammar, `when`, and load errors.

mod common;

use common::*;
use configurapi::{Body, Config, ConfigErrorKind, HandlerRegistry, LogLevel, Service};
use serde_json::json;

fn body_json(event: &configurapi::Event) -> serde_json::Value {
    match &event.response.body {
        Body::Json(v) => v.clone(),
        other => panic!("expected a JSON body, got {other:?}"),
    }
}

#[test]
fn s1_1_1_config_loads_from_path_and_parameters_keep_yaml_types() {
    let dir = std::env::temp_dir().join(format!("cfg-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("config.yaml");
    std::fs::write(
        &path,
        "api:\n  events:\n    - name: x\n      policies:\n        - paramsHandler: [1, 2.5, true, text, {a: [1, null]}, [x, y], null]\n",
    )
    .unwrap();
    let service = Service::load_with(&path, registry()).unwrap();
    let event = run_named(&service, "x");
    assert_eq!(
        body_json(&event),
        json!([1, 2.5, true, "text", {"a": [1, null]}, ["x", "y"], null])
    );
    assert_eq!(configurapi::config::DEFAULT_CONFIG_PATH, "config.yaml");
}

#[test]
fn s1_1_2_imports_are_registry_keys_including_relative_ones() {
    let service = service(
        "import: [configurapi-handler-http]\napi:\n  events:\n    - name: x\n      policies:\n        - setResponseBodyHandler: [hi]\n",
    );
    assert_eq!(run_named(&service, "x").response.body, Body::from("hi"));

    // A `./` import is a key into the registry too.
    let mut reg = HandlerRegistry::with_builtins();
    reg.add_importable_pack(
        configurapi::HandlerPack::new("./handlers/local").with("localHandler", trace_handler),
    );
    let yaml = "import: [./handlers/local]\napi:\n  events:\n    - name: x\n      policies:\n        - localHandler: [ran]\n";
    let service = Service::from_str(yaml, "config.yaml", reg).unwrap();
    assert_eq!(trace_of(&run_named(&service, "x")), "ran");
}

#[test]
fn s1_1_3_parameters_from_sequence_else_parameters_key_else_empty() {
    let service = service(
        r#"
api:
  events:
    - name: seq
      policies:
        - paramsHandler: [1, 2]
          parameters: [9]
    - name: key
      policies:
        - paramsHandler: ignored
          parameters: [3, 4]
    - name: scalar
      policies:
        - paramsHandler: 5
    - name: none
      policies:
        - paramsHandler
"#,
    );
    assert_eq!(body_json(&run_named(&service, "seq")), json!([1, 2]));
    assert_eq!(body_json(&run_named(&service, "key")), json!([3, 4]));
    assert_eq!(body_json(&run_named(&service, "scalar")), json!([]));
    assert_eq!(body_json(&run_named(&service, "none")), json!([]));
}

#[test]
fn s1_1_4_handler_name_is_the_first_key_in_document_order() {
    let config = Config::parse(
        "api:\n  events:\n    - name: x\n      policies:\n        - logLevel: debug\n          myHandler: [1]\n",
        "config.yaml",
        None,
    )
    .unwrap();
    assert_eq!(config.routes[0].policies[0].handler, "logLevel");
    let err = config_error(
        "api:\n  events:\n    - name: x\n      policies:\n        - logLevel: debug\n          myHandler: [1]\n",
    );
    assert_eq!(
        err.message,
        "Handler 'logLevel' could not be found (route 'x')."
    );
}

#[test]
fn s1_1_5_name_is_any_scalar_and_empty_name_is_the_root_route() {
    let service = service(
        "api:\n  events:\n    - name: 5\n      policies: [{traceHandler: [five]}]\n    - name: \"\"\n      policies: [{traceHandler: [root]}]\n",
    );
    assert_eq!(trace_of(&run_named(&service, "5")), "five");
    let mut event = http_event("GET", "/", &[]);
    service.process(&mut event).unwrap();
    assert_eq!(event.name, "");
    assert_eq!(trace_of(&event), "root");
}

#[test]
fn s1_1_6_last_enabled_duplicate_wins_and_disabled_never_replaces() {
    let service = service(
        r#"
api:
  events:
    - name: x
      policies: [{traceHandler: [first]}]
    - name: x
      policies: [{traceHandler: [second]}]
    - name: x
      when: production
      policies: [{traceHandler: [disabled]}]
"#,
    );
    assert_eq!(trace_of(&run_named(&service, "x")), "second");
}

#[test]
fn s1_1_7_log_level_is_case_insensitive_defaults_to_trace_unknown_is_unset() {
    assert_eq!(LogLevel::parse("DEBUG"), LogLevel::Debug);
    assert_eq!(LogLevel::parse("Trace"), LogLevel::Trace);
    assert_eq!(LogLevel::parse("info"), LogLevel::Info);
    assert_eq!(LogLevel::parse("error"), LogLevel::Error);
    assert_eq!(LogLevel::parse("none"), LogLevel::Unset);
    assert_eq!(LogLevel::parse("loud"), LogLevel::Unset);
    assert!(LogLevel::Unset < LogLevel::Error);
    let config = Config::parse(
        "api:\n  events:\n    - name: x\n      logLevel: ERROR\n      policies:\n        - a\n        - b: []\n          logLevel: bogus\n",
        "config.yaml",
        None,
    )
    .unwrap();
    assert_eq!(config.routes[0].log_level, LogLevel::Error);
    assert_eq!(config.routes[0].policies[0].log_level, LogLevel::Trace);
    assert_eq!(config.routes[0].policies[1].log_level, LogLevel::Unset);
}

#[test]
fn s1_2_1_when_enables_a_route_only_when_node_env_equals_it() {
    let yaml = r#"
api:
  events:
    - name: x
      when: Production
      policies: [{traceHandler: [on]}]
    - name: y
      when: ""
      policies: [{traceHandler: [always]}]
"#;
    let reg = registry;
    let on = Service::from_str_with_options(yaml, "c", reg(), &options("Production")).unwrap();
    assert!(on.has_route("x"));
    let off = Service::from_str_with_options(yaml, "c", reg(), &options("production")).unwrap();
    assert!(!off.has_route("x"), "comparison is case-sensitive");
    assert!(off.has_route("y"), "a falsy when is no condition");
    let unset = Config::parse(yaml, "c", None).unwrap();
    assert_eq!(unset.routes.len(), 1);
}

#[test]
fn s1_2_2_a_disabled_route_is_absent_so_method_catchall_and_501_apply() {
    let service = service(
        r#"
api:
  events:
    - name: get_v1_thing
      when: production
      policies: [{traceHandler: [disabled]}]
    - name: handlerless
      when: production
      policies: [{notRegisteredAnywhere: []}]
"#,
    );
    let mut event = http_event("GET", "/v1/thing/1", &[]);
    service.process(&mut event).unwrap();
    assert_eq!(event.response.status_code, 501);

    let service = service_with_fallbacks();
    let mut event = http_event("GET", "/v1/thing/1", &[]);
    service.process(&mut event).unwrap();
    assert_eq!(trace_of(&event), "method");
}

fn service_with_fallbacks() -> Service {
    service(
        r#"
api:
  events:
    - name: get_v1_thing
      when: production
      policies: [{traceHandler: [disabled]}]
    - name: get
      policies: [{traceHandler: [method]}]
    - name: catchall
      policies: [{traceHandler: [catchall]}]
"#,
    )
}

#[test]
fn s1_2_3_a_runner_option_overrides_node_env() {
    let yaml = "api:\n  events:\n    - name: x\n      when: staging\n      policies: []\n";
    let s = Service::from_str_with_options(yaml, "c", registry(), &options("staging")).unwrap();
    assert!(s.has_route("x"));
    let s = Service::from_str_with_options(yaml, "c", registry(), &options("other")).unwrap();
    assert!(!s.has_route("x"));
}

#[test]
fn s1_3_1_unreadable_file_fails_to_load_naming_it() {
    let err = Service::load("/nonexistent/dir/config.yaml").unwrap_err();
    assert_eq!(err.kind, ConfigErrorKind::Read);
    assert_eq!(err.message, "Failed to load '/nonexistent/dir/config.yaml'");
    assert!(err.cause.is_some(), "the OS error is nested");
    assert!(err
        .to_string()
        .starts_with("Failed to load '/nonexistent/dir/config.yaml': "));
}

#[test]
fn s1_3_2_a_document_that_is_not_a_mapping_is_rejected() {
    for yaml in ["", "~", "42", "just text", "- a\n- b\n"] {
        let err = config_error(yaml);
        assert_eq!(
            err.message, "The specified config file is not an invalid yaml.",
            "{yaml:?}"
        );
        assert_eq!(
            err.to_string(),
            "config.yaml: The specified config file is not an invalid yaml."
        );
    }
}

#[test]
fn s1_3_3_a_yaml_syntax_error_is_the_parsers_error_with_its_line() {
    let err = config_error("api:\n  events:\n    - name: [unclosed\n");
    assert_eq!(err.kind, ConfigErrorKind::Syntax);
    assert!(err.line.is_some());
    let shown = err.to_string();
    assert!(
        shown.starts_with(&format!("config.yaml:{}: ", err.line.unwrap())),
        "{shown}"
    );
    assert!(!shown.contains('\n'));
}

#[test]
fn s1_3_4_missing_api() {
    let err = config_error("import: []\n");
    assert_eq!(err.message, "Could not find 'api' in the config document");
}

#[test]
fn s1_3_5_api_null_not_mapping_or_without_events() {
    for yaml in ["api:\n", "api: 5\n", "api: [1]\n", "api:\n  modules: []\n"] {
        assert_eq!(
            config_error(yaml).message,
            "Could not find 'api.events' in the config document",
            "{yaml:?}"
        );
    }
}

#[test]
fn s1_3_6_events_not_iterable_including_null() {
    for yaml in [
        "api:\n  events: 5\n",
        "api:\n  events: true\n",
        "api:\n  events:\n",
        "api:\n  events: ~\n",
    ] {
        assert_eq!(
            config_error(yaml).message,
            "Events could not be empty in the config document.",
            "{yaml:?}"
        );
    }
}

#[test]
fn s1_3_7_route_without_name_reports_the_real_index() {
    let err =
        config_error("api:\n  events:\n    - name: a\n      policies: []\n    - policies: []\n");
    assert_eq!(
        err.message,
        "Could not find 'api.events[1].name' in the config document"
    );
    let err = config_error("api:\n  events:\n    - just a string\n");
    assert_eq!(
        err.message,
        "Could not find 'api.events[0].name' in the config document"
    );
}

#[test]
fn s1_3_8_route_without_policies_or_with_non_iterable_policies() {
    let err = config_error("api:\n  events:\n    - name: a\n");
    assert_eq!(
        err.message,
        "Could not find 'api.events[a].policies' in the config document"
    );
    for policies in ["5", "~", "", "{x: 1}"] {
        let yaml = format!("api:\n  events:\n    - name: a\n      policies: {policies}\n");
        assert_eq!(
            config_error(&yaml).message,
            "Policies 'api.events[a].policies' could not be empty in the config document.",
            "{policies:?}"
        );
    }
}

#[test]
fn s1_3_9_empty_string_empty_mapping_or_number_policy() {
    for policy in ["\"\"", "{}", "42"] {
        let yaml = format!("api:\n  events:\n    - name: a\n      policies:\n        - traceHandler\n        - {policy}\n");
        assert_eq!(
            config_error(&yaml).message,
            "Could not find 'api.events[a].policies[1]' in the config document",
            "{policy}"
        );
    }
}

#[test]
fn s1_3_10_import_that_is_not_a_sequence_is_rejected() {
    let err = config_error("import: abc\napi:\n  events: []\n");
    assert_eq!(err.kind, ConfigErrorKind::BadImport);
    assert_eq!(
        err.message,
        "Could not load 'import.abc' in the config document"
    );
    let err = config_error("import: 5\napi:\n  events: []\n");
    assert_eq!(
        err.message,
        "Could not load 'import.5' in the config document"
    );
}

#[test]
fn s1_3_10_unknown_import_lists_the_known_packs() {
    let err = config_error("import: [configurapi-handler-nope]\napi:\n  events: []\n");
    assert_eq!(err.kind, ConfigErrorKind::UnknownImport);
    assert!(err
        .message
        .starts_with("Could not load 'import.configurapi-handler-nope'"));
    assert!(err.message.contains("configurapi-handler-http"));
    assert!(err.message.contains("configurapi-handler-json"));
}

#[test]
fn s1_3_11_empty_events_and_empty_policies_are_valid_and_handled() {
    let s = service("api:\n  events: []\n");
    assert_eq!(s.route_names().len(), 0);
    let s = service("api:\n  events:\n    - name: x\n      policies: []\n");
    let event = run_named(&s, "x");
    assert_eq!(event.response.status_code, 200);
    assert!(!event.response.is_error_response());
}

#[test]
fn s1_3_12_unknown_handler_fails_at_startup_for_enabled_routes_only() {
    let err = config_error("api:\n  events:\n    - name: x\n      policies: [nopeHandler]\n");
    assert_eq!(err.kind, ConfigErrorKind::UnknownHandler);
    assert_eq!(
        err.message,
        "Handler 'nopeHandler' could not be found (route 'x')."
    );
    assert_eq!(
        err.to_string(),
        "config.yaml: Handler 'nopeHandler' could not be found (route 'x')."
    );
    // Disabled routes are not checked.
    service(
        "api:\n  events:\n    - name: x\n      when: production\n      policies: [nopeHandler]\n",
    );
}

#[test]
fn s1_3_errors_are_values_never_panics() {
    for yaml in [
        "api: {events: [{name: {a: 1}, policies: [[1]]}]}",
        "api: {events: [{name: null, policies: [{a: 1, b: 2}]}]}",
        "!!binary aGVsbG8=",
        "api: {events: [{name: x, policies: [true]}]}",
        "? [a]\n: b\n",
        "api: &a {events: *a}",
        "---\na: 1\n---\nb: 2\n",
        "api: {events: [{name: .nan, policies: [{x: .inf}]}]}",
    ] {
        // Each is refused with a one-line error naming the file, not loaded.
        match try_service(yaml) {
            Ok(_) => panic!("loaded: {yaml:?}"),
            Err(e) => {
                let text = e.to_string();
                assert!(text.starts_with("config.yaml"), "{yaml:?}: {text}");
                assert!(!text.contains('\n'), "{yaml:?}: {text}");
            }
        }
    }
}

#[test]
fn s1_3_mutated_configs_never_panic() {
    // Deterministic byte mutations of real configs: every outcome must be a
    // value (Ok or a ConfigError), never a panic.
    let seeds = [
        include_str!("fixtures/hello.yaml"),
        include_str!("fixtures/ping.yaml"),
        include_str!("fixtures/cors.yaml"),
    ];
    let alphabet = b" :-[]{}\"'\n#&*!|>?,.$()0a";
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for seed in seeds {
        for _ in 0..300 {
            let mut bytes = seed.as_bytes().to_vec();
            for _ in 0..(1 + next() % 4) {
                let at = (next() as usize) % bytes.len();
                match next() % 3 {
                    0 => bytes[at] = alphabet[(next() as usize) % alphabet.len()],
                    1 => {
                        bytes.remove(at);
                    }
                    _ => bytes.insert(at, alphabet[(next() as usize) % alphabet.len()]),
                }
            }
            let text = String::from_utf8_lossy(&bytes);
            // Either outcome is fine; an error must still be one line naming the file.
            if let Err(e) = try_service(&text) {
                let line = e.to_string();
                assert!(line.starts_with("config.yaml"), "{text:?}: {line}");
                assert!(!line.contains('\n'), "{text:?}: {line}");
            }
        }
    }
}
