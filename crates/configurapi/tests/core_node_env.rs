//! 1.2.1 / 1.2.3 with the real environment variable. This file is its own
//! test process, and its single test is the only one touching `NODE_ENV`.

use configurapi::{HandlerRegistry, Service, ServiceOptions};

#[test]
fn s1_2_3_without_an_option_the_service_reads_node_env() {
    let yaml =
        "api:\n  events:\n    - name: x\n      when: ci-node-env-check\n      policies: []\n";
    std::env::set_var("NODE_ENV", "ci-node-env-check");
    let on = Service::from_str(yaml, "c", HandlerRegistry::with_builtins()).unwrap();
    std::env::set_var("NODE_ENV", "something-else");
    let off = Service::from_str(yaml, "c", HandlerRegistry::with_builtins()).unwrap();
    std::env::remove_var("NODE_ENV");
    let unset = Service::from_str(yaml, "c", HandlerRegistry::with_builtins()).unwrap();
    // The option wins over the variable.
    std::env::set_var("NODE_ENV", "something-else");
    let opt = ServiceOptions {
        node_env: Some("ci-node-env-check".into()),
    };
    let forced =
        Service::from_str_with_options(yaml, "c", HandlerRegistry::with_builtins(), &opt).unwrap();
    std::env::remove_var("NODE_ENV");
    assert!(on.has_route("x"));
    assert!(!off.has_route("x"));
    assert!(!unset.has_route("x"));
    assert!(forced.has_route("x"));
}
