//! Every integration test of the project, one module per file, built as one test binary:
//! 67 binaries each linked the whole crate and its dependencies again, which was most of
//! the test build's time (docs/testing.md, "One test binary"). Run one file's tests with
//! `cargo test --test integration FILE::`.

#[macro_use]
mod support;

mod acme;
mod admin;
mod anomalies;
mod balancing;
mod canary_pause;
mod capture;
mod config_check;
mod connect_retries;
mod connection_limits;
mod connection_tokens;
mod dashboard;
mod demo;
mod egress;
mod egress_adaptive;
mod egress_ban_reports;
mod egress_fleet;
mod egress_inspection;
mod egress_intercept;
mod egress_masking;
mod egress_policies;
mod egress_rotation;
mod egress_socks5;
mod egress_state;
mod egress_verify;
mod engine_differential;
mod errors;
mod fallback_chains;
mod fast_path_parity;
mod fleet;
mod flows_export;
mod grafana;
mod health;
mod http1_conformance;
mod layers;
mod least_queue;
mod lifecycle;
mod mask_command;
mod masking_bodies;
mod masking_corpus;
mod masking_faker_phones;
mod masking_formats;
mod masking_proxy;
mod masking_websocket;
mod model_map;
mod observability;
mod pool_credentials;
mod protocols;
mod rate_limits;
mod reload_purity;
mod replay;
mod request_bodies;
mod request_limits;
mod resilience;
mod response_framing;
mod routing;
mod security;
mod shared_limits;
mod smoke;
mod smuggling;
mod streaming;
mod tls;
mod tls_client_auth;
mod tls_upstream;
mod translation;
mod upgrades;
mod usage;
mod versioning;

/// A file in tests/ without its `mod` line above would never be built or run, in silence.
#[test]
fn every_file_in_tests_is_a_module_of_this_binary() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests");
    let this = std::fs::read_to_string(dir.join("integration.rs")).unwrap();
    let mut missing = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        if let Some(module) = name.strip_suffix(".rs")
            && module != "integration"
            && !this.contains(&format!("\nmod {module};\n"))
        {
            missing.push(name);
        }
    }
    assert!(
        missing.is_empty(),
        "not declared in tests/integration.rs: {missing:?}"
    );
}
