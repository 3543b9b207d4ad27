//! Start-up errors that help: every missing handler at once with the route that names
//! it and the pack to import, and schema files resolved against the config file's
//! folder, checked when the service is built.

use std::path::PathBuf;

use configurapi::handlers;
use configurapi::{Config, ConfigErrorKind, HandlerRegistry, MissingHandler, Service};

/// A folder of its own under the system temp dir, removed when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!("core-startup-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("schemas")).unwrap();
        Scratch(dir)
    }

    fn write(&self, rel: &str, text: &str) -> PathBuf {
        let path = self.0.join(rel);
        std::fs::write(&path, text).unwrap();
        path
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

const SCHEMA: &str = r#"{"type": "object", "required": ["name"]}"#;

#[test]
fn every_missing_handler_is_listed_at_once_with_its_routes_and_pack() {
    let yaml = r#"
import: [configurapi-handler-http]
api:
  events:
    - name: on_before_request
      policies: [logRequestHandler]
    - name: on_after_request
      policies: [logResponseHandler]
    - name: get_v1_hello
      policies: [helloWorldHandler, setResponseHandler]
    - name: get_v1_bye
      policies: [helloWorldHandler, validateJsonRequestHandler]
    - name: disabled
      when: no-such-env
      policies: [neverCheckedHandler]
"#;
    let err =
        Service::from_str(yaml, "app/config.yaml", HandlerRegistry::with_builtins()).unwrap_err();
    assert_eq!(err.kind, ConfigErrorKind::UnknownHandler);
    assert_eq!(
        err.to_string(),
        "app/config.yaml: 4 handlers could not be found: \
         'logRequestHandler' (route 'on_before_request', in configurapi-handler-logging), \
         'logResponseHandler' (route 'on_after_request', in configurapi-handler-logging), \
         'helloWorldHandler' (routes 'get_v1_hello', 'get_v1_bye'), \
         'validateJsonRequestHandler' (route 'get_v1_bye', in configurapi-handler-json). \
         Add to import: configurapi-handler-json, configurapi-handler-logging."
    );

    // The same list as data, for a runner that looks for the names elsewhere.
    let config = Config::parse(yaml, "app/config.yaml", None).unwrap();
    let missing = HandlerRegistry::with_builtins()
        .missing_handlers(&config, "app/config.yaml")
        .unwrap();
    assert_eq!(
        missing.iter().map(|m| m.name.as_str()).collect::<Vec<_>>(),
        [
            "logRequestHandler",
            "logResponseHandler",
            "helloWorldHandler",
            "validateJsonRequestHandler"
        ]
    );
    assert_eq!(
        missing[2],
        MissingHandler {
            name: "helloWorldHandler".into(),
            routes: vec!["get_v1_hello".into(), "get_v1_bye".into()],
            pack: None,
        }
    );
    // A user registration or the import makes them all go away.
    let mut reg = HandlerRegistry::with_builtins();
    reg.register("helloWorldHandler", handlers::http::set_response_handler);
    let fixed = yaml.replace(
        "import: [configurapi-handler-http]",
        "import: [configurapi-handler-http, configurapi-handler-json, configurapi-handler-logging]",
    );
    let fixed = fixed.replace(
        "[helloWorldHandler, validateJsonRequestHandler]",
        "[helloWorldHandler, {validateJsonRequestHandler: [true]}]",
    );
    Service::from_str(&fixed, "app/config.yaml", reg).unwrap();
}

#[test]
fn one_missing_handler_names_its_route_and_pack_on_one_line() {
    let err = Service::from_str(
        "api:\n  events:\n    - name: on_before_request\n      policies: [logRequestHandler]\n",
        "config.yaml",
        HandlerRegistry::with_builtins(),
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "config.yaml: Handler 'logRequestHandler' could not be found \
         (route 'on_before_request', in configurapi-handler-logging). \
         Add to import: configurapi-handler-logging."
    );
}

#[cfg(feature = "json-schema")]
#[test]
fn schemas_resolve_against_the_config_files_folder_not_the_working_directory() {
    use configurapi::{Event, Payload, Request};
    use serde_json::json;

    let app = Scratch::new("relative");
    app.write("schemas/post_v1_datum.json", SCHEMA);
    let config = app.write(
        "config.yaml",
        "import: [configurapi-handler-json]\napi:\n  events:\n    - name: post_v1_datum\n      policies: [validateJsonRequestHandler]\n",
    );
    // The working directory (the crate) has no schemas/ folder.
    assert!(!std::path::Path::new("schemas").exists());
    let service = Service::load(&config).unwrap();
    let post = |payload| {
        let mut event = Event::new(Request::new("POST", "/v1/data"));
        event.set_payload(Payload::Json(payload));
        service.process(&mut event).unwrap();
        event.response.status_code
    };
    assert_eq!(post(json!({"name": "n"})), 200);
    assert_eq!(post(json!({"size": 1})), 400);
}

/// What a 400 from validateJsonRequestHandler says and what the validator checks: a
/// `$ref` to a file beside the schema, draft-07's `format` asserted (not annotation
/// only), an ECMA-262 pattern, and every failure's instance pointer in the details.
#[cfg(feature = "json-schema")]
#[test]
fn validation_follows_refs_beside_the_schema_and_reports_each_failure() {
    use configurapi::{Event, Payload, Request};
    use serde_json::json;

    let app = Scratch::new("refs");
    app.write(
        "schemas/post_v1_datum.json",
        r#"{"$schema": "http://json-schema.org/draft-07/schema#",
            "type": "object", "required": ["name", "owner"],
            "properties": {
              "name": {"type": "string", "pattern": "^\\p{L}+$"},
              "owner": {"$ref": "owner.json"}}}"#,
    );
    app.write(
        "schemas/owner.json",
        r#"{"$schema": "http://json-schema.org/draft-07/schema#",
            "type": "object", "required": ["email"],
            "properties": {"email": {"type": "string", "format": "email"}}}"#,
    );
    let config = app.write(
        "config.yaml",
        "import: [configurapi-handler-json]\napi:\n  events:\n    - name: post_v1_datum\n      policies: [validateJsonRequestHandler]\n",
    );
    let service = Service::load(&config).unwrap();
    let post = |payload| {
        let mut event = Event::new(Request::new("POST", "/v1/data"));
        event.set_payload(Payload::Json(payload));
        service.process(&mut event).unwrap();
        event.response
    };
    let ok = post(json!({"name": "Zoë", "owner": {"email": "a@example.com"}}));
    assert_eq!(ok.status_code, 200, "{:?}", ok.error);

    let bad = post(json!({"name": "Zoë 2", "owner": {"email": "not an email"}}));
    assert_eq!(bad.status_code, 400);
    let error = bad.error.unwrap();
    assert!(error.message.starts_with("/name: "), "{}", error.message);
    assert!(
        error.details.contains("/owner/email: "),
        "the $ref'd schema's format failure is reported: {}",
        error.details
    );
    assert_eq!(error.details.split("; ").count(), 2, "{}", error.details);

    let missing = post(json!({"name": "Zoë"})).error.unwrap();
    assert!(missing.message.contains("'owner'"), "{}", missing.message);
}

#[test]
fn a_missing_schema_file_is_a_startup_error_naming_the_file_and_route() {
    let app = Scratch::new("missing");
    app.write("schemas/post_v1_datum.json", SCHEMA);
    let config = app.write(
        "config.yaml",
        r#"
import: [configurapi-handler-json]
api:
  events:
    - name: post_v1_datum
      policies: [validateJsonRequestHandler]
    - name: post_v1_thing
      policies: [validateJsonRequestHandler]
    - name: put_v1_thing
      policies: [validateJsonRequestHandler]
    # No schema is needed where the payload must be empty, nor where the event name
    # is only known per request.
    - name: delete_v1_thing
      policies: [{validateJsonRequestHandler: [true]}]
    - name: catchall
      policies: [validateJsonRequestHandler]
"#,
    );
    let err = Service::load(&config).unwrap_err();
    assert_eq!(err.kind, ConfigErrorKind::HandlerSetup);
    let shown = err.to_string();
    assert!(!shown.contains('\n'), "{shown}");
    let schemas = app.0.join("schemas");
    for route in ["post_v1_thing", "put_v1_thing"] {
        let file = schemas.join(format!("{route}.json"));
        assert!(
            shown.contains(&format!(
                "validateJsonRequestHandler in route '{route}': schema file '{}' could not be read: ",
                file.display()
            )),
            "{shown}"
        );
    }
    assert!(!shown.contains("post_v1_datum"), "{shown}");
    assert!(!shown.contains("delete_v1_thing"), "{shown}");
    assert!(
        shown.starts_with(&format!("{}: ", config.display())),
        "{shown}"
    );
}

#[cfg(feature = "json-schema")]
#[test]
fn an_invalid_schema_file_is_a_startup_error() {
    let app = Scratch::new("invalid");
    app.write("schemas/post_v1_datum.json", "{not json");
    app.write("schemas/post_v1_other.json", r#"{"type": 12}"#);
    let config = app.write(
        "config.yaml",
        "import: [configurapi-handler-json]\napi:\n  events:\n    - name: post_v1_datum\n      policies: [validateJsonRequestHandler]\n    - name: post_v1_other\n      policies: [validateJsonRequestHandler]\n",
    );
    let shown = Service::load(&config).unwrap_err().to_string();
    assert!(
        shown.contains("post_v1_datum.json' is not valid JSON"),
        "{shown}"
    );
    assert!(
        shown.contains("post_v1_other.json' is not a valid JSON Schema"),
        "{shown}"
    );
}

/// Each draft's schema is checked against that draft's own metaschema (#17: boon
/// compiles them per draft): `exclusiveMinimum` is a boolean in draft-04 and a number
/// from draft-06 on, so each file below is valid under its own draft only.
#[cfg(feature = "json-schema")]
#[test]
fn each_draft_is_checked_against_its_own_metaschema() {
    let app = Scratch::new("drafts");
    let drafts = [
        ("d4", Some("http://json-schema.org/draft-04/schema#"), true),
        ("d6", Some("http://json-schema.org/draft-06/schema#"), false),
        ("d7", Some("http://json-schema.org/draft-07/schema#"), false),
        (
            "d2019",
            Some("https://json-schema.org/draft/2019-09/schema"),
            false,
        ),
        (
            "d2020",
            Some("https://json-schema.org/draft/2020-12/schema"),
            false,
        ),
        ("default", None, false),
    ];
    let mut yaml = String::from("import: [configurapi-handler-json]\napi:\n  events:\n");
    for (name, url, boolean) in drafts {
        let head = url
            .map(|u| format!(r#""$schema": "{u}", "#))
            .unwrap_or_default();
        let (good, bad) = if boolean {
            ("true", "5")
        } else {
            ("5", "true")
        };
        for (kind, value) in [("ok", good), ("bad", bad)] {
            let route = format!("post_v1_{name}{kind}");
            app.write(
                &format!("schemas/{route}.json"),
                &format!(r#"{{{head}"minimum": 0, "exclusiveMinimum": {value}}}"#),
            );
            yaml.push_str(&format!(
                "    - name: {route}\n      policies: [validateJsonRequestHandler]\n"
            ));
        }
    }
    let config = app.write("config.yaml", &yaml);
    let shown = Service::load(&config).unwrap_err().to_string();
    for (name, _, _) in drafts {
        assert!(
            shown.contains(&format!(
                "post_v1_{name}bad.json' is not a valid JSON Schema"
            )),
            "{name}: {shown}"
        );
        assert!(
            !shown.contains(&format!("post_v1_{name}ok.json")),
            "{name}: {shown}"
        );
    }
}

/// A 2020-12 or draft-07 schema that is certainly valid skips compiling the metaschema
/// (#17 startup: vendor/boon's quick check); every other one is still checked against
/// it, and a schema the metaschema rejects is still a start-up error naming the file,
/// with the metaschema's own words. Each bad file below breaks one keyword the quick
/// check knows; each good one uses the same keyword correctly.
#[cfg(feature = "json-schema")]
#[test]
fn a_2020_12_or_draft_07_schema_the_metaschema_rejects_is_still_a_startup_error() {
    let cases_2020 = [
        (r#"{"minLength": 1}"#, r#"{"minLength": -1}"#, "must be >=0"),
        (
            r#"{"minLength": 1}"#,
            r#"{"minLength": 1.5}"#,
            "want integer",
        ),
        (
            r#"{"pattern": "^a+$"}"#,
            r#"{"pattern": "("}"#,
            "is not valid regex",
        ),
        (
            r#"{"$anchor": "a1"}"#,
            r#"{"$anchor": "1a"}"#,
            "does not match pattern",
        ),
        (
            r#"{"$id": "http://e.com/s.json"}"#,
            r#"{"$id": "http://e.com/s.json#x"}"#,
            "does not match pattern",
        ),
        (
            r#"{"required": ["a", "b"]}"#,
            r#"{"required": ["a", "a"]}"#,
            "are equal",
        ),
        (
            r#"{"type": ["string", "null"]}"#,
            r#"{"type": ["string", "strin"]}"#,
            "value must be one of",
        ),
        (
            r#"{"allOf": [{"type": "string"}]}"#,
            r#"{"allOf": []}"#,
            "minimum 1 items required",
        ),
        (
            r#"{"properties": {"a": {"multipleOf": 2}}}"#,
            r#"{"properties": {"a": {"multipleOf": 0}}}"#,
            "must be > 0",
        ),
        (
            r#"{"patternProperties": {"^x-": {}}}"#,
            r#"{"patternProperties": {"(": {}}}"#,
            "is not valid regex",
        ),
    ];
    let cases_7 = [
        (r#"{"minLength": 1}"#, r#"{"minLength": -1}"#, "must be >=0"),
        (
            r#"{"enum": ["a"]}"#,
            r#"{"enum": []}"#,
            "minimum 1 items required",
        ),
        (
            r#"{"enum": ["a", "b"]}"#,
            r#"{"enum": ["a", "a"]}"#,
            "are equal",
        ),
        (r#"{"items": [{}]}"#, r#"{"items": []}"#, "anyOf failed"),
        (
            r#"{"dependencies": {"a": ["b"]}}"#,
            r#"{"dependencies": {"a": 1}}"#,
            "anyOf failed",
        ),
        (
            r#"{"definitions": {"a": {"pattern": "^a"}}}"#,
            r#"{"definitions": {"a": {"pattern": "("}}}"#,
            "is not valid regex",
        ),
    ];
    let draft_7 = r#"{"$schema": "http://json-schema.org/draft-07/schema#", "#;
    let drafts = [("", &cases_2020[..]), (draft_7, &cases_7[..])];
    let app = Scratch::new("quick");
    let mut yaml = String::from("import: [configurapi-handler-json]\napi:\n  events:\n");
    for (d, (head, cases)) in drafts.iter().enumerate() {
        for (i, (good, bad, _)) in cases.iter().enumerate() {
            for (kind, body) in [("ok", good), ("bad", bad)] {
                let route = format!("post_v1_d{d}c{i}{kind}");
                let body = if head.is_empty() {
                    body.to_string()
                } else {
                    body.replacen('{', head, 1)
                };
                app.write(&format!("schemas/{route}.json"), &body);
                yaml.push_str(&format!(
                    "    - name: {route}\n      policies: [validateJsonRequestHandler]\n"
                ));
            }
        }
    }
    let config = app.write("config.yaml", &yaml);
    let shown = Service::load(&config).unwrap_err().to_string();
    for (d, (_, cases)) in drafts.iter().enumerate() {
        for (i, (_, bad, why)) in cases.iter().enumerate() {
            // This file's part of the error, up to the next route's.
            let at = shown
                .find(&format!(
                    "post_v1_d{d}c{i}bad.json' is not a valid JSON Schema"
                ))
                .unwrap_or_else(|| panic!("{bad} was accepted: {shown}"));
            let line = &shown[at..];
            let line = &line[..line.find("in route '").unwrap_or(line.len())];
            assert!(
                line.contains("is not valid against metaschema") && line.contains(why),
                "{bad}: {line}"
            );
            assert!(
                !shown.contains(&format!("post_v1_d{d}c{i}ok.json")),
                "{shown}"
            );
        }
    }
}
