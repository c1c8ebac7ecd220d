//! Layers that point one way (issue #12): every file under `src/` is read, the modules
//! it names are collected, and the test fails when modules import each other through a
//! circle, or when a module imports from a layer above its own.
//!
//! What counts as an import is read from the source text, not from the compiler:
//! - a path starting `crate::` (or `junction::` in `main.rs`), in a `use` or inline,
//!   with `use` groups (`crate::{a::X, b::Y}`) split into their paths;
//! - a path starting `super::`, resolved to a sibling file of the same module;
//! - in a `mod.rs`, a path starting with the name of one of its files (`relay::run()`).
//!
//! Comments, string and char literals are skipped. Code under `#[cfg(test)]` is not
//! counted: a unit test may build whatever it needs (a balancer test may build a plan),
//! as a dev-dependency may, without the module depending on it. A `mod.rs`'s `pub use`
//! of its own files is the module's face, not a dependency of the module's own code: a
//! name it re-exports is resolved to the file that defines it.
//!
//! Two granularities are checked: top-level modules (`upstream`, `pipeline`, ...), and
//! the files of each module (`config/compile`, `egress/dial`, ...). Circles are looked
//! for at both; the layer order is declared for top-level modules. A `mod.rs` and the
//! files of its own module are not checked against each other: it holds what they
//! share and puts them together, so each imports the other by nature.
//!
//! `cargo test --test integration layers:: -- --ignored --nocapture` prints the whole graph, its
//! circles and the pairs of modules that import each other.

mod graph;
mod paths;

use std::collections::BTreeSet;

use graph::{Graph, crate_sources};

// === The declared order ===

/// Top-level modules, lowest layer first. A module may import only from the layers
/// below its own; modules that share a layer do not import each other.
const LAYERS: &[&[&str]] = &[
    // Integer digits without core::fmt; durations and sizes written for people; JSON
    // string text (escapes, plain runs); CIDR blocks as integers; the Redis connection
    // every shared state uses.
    &["decimal", "units", "json_text", "cidr", "redis_connection"],
    // Byte-level rules: message normalisation; AI API shapes (`model`, SSE, usage).
    &["normalize", "llm"],
    // Sensitive-data masking: detectors, actions, JSON/text/SSE body maskers (pure).
    &["masking"],
    // Inspection: captured flows (format, recording, on-disk ring), filter expressions.
    &["inspect"],
    // TLS: certificates by SNI, reloaded in place; server configs; client identities.
    &["tls"],
    // Picking among endpoints, known only as `balance::Candidate`; stable hashes, RNG.
    &["balance"],
    // Pools, endpoints and their state (the registry), the HTTP client, health.
    &["upstream"],
    // ACME certificates: orders, storage, renewal, HTTP-01 answers (its own HTTP client).
    &["acme"],
    // Metrics state, access log, trace ids: recorded by every layer above.
    &["telemetry"],
    // Splits and their runtime controls, canary analysis.
    &["canary"],
    // What policies are written against: the Filter trait and chain, the request's
    // context, the engine-neutral head view and edits, a filter's local reply.
    &["filter"],
    // Routes, matchers, retry policies.
    &["routing"],
    // Route policies: address lists, header rules, keys, rate limits, audit log.
    &["security"],
    // The hyper engine: the Filter trait, the phases of a request.
    &["pipeline"],
    // The hand-written HTTP/1.1 engine.
    &["fastpath"],
    // The forward proxy.
    &["egress"],
    // File -> spec -> Plan: builds the run-time types of every layer below.
    &["config"],
    // Listeners, the running plan, reload.
    &["server"],
    // The admin API (/metrics, /api/...), served on its own listener.
    &["admin"],
    // Tools over a whole config: the demo; replay of captured flows (to a pool's endpoints).
    &["demo", "replay"],
    // Entry points for the fuzz targets (feature `fuzzing`): above what they reach.
    &["fuzzing"],
    &["main"],
];

/// Imports the checks leave out, each with its reason. `from` and `to` are `module`
/// (any of its files) or `module/file`. An entry that no longer matches an import
/// fails the test, so the list cannot outlive the code it excuses.
/// Empty since every circle issue #12 found is broken; an entry added must say why.
const ALLOWED: &[(&str, &str, &str)] = &[];

// === The checks ===

#[test]
fn the_crate_has_no_import_circles() {
    let graph = Graph::read(&crate_sources());
    let circles = graph.without(ALLOWED).circles();
    assert!(
        circles.is_empty(),
        "import circles (break them, or allow-list with a reason):\n{}",
        circles.join("\n")
    );
}

#[test]
fn no_module_imports_from_a_layer_above_its_own() {
    let graph = Graph::read(&crate_sources());
    let upward = graph.without(ALLOWED).upward(LAYERS);
    assert!(
        upward.is_empty(),
        "imports from a layer above (move the shared piece down):\n{}",
        upward.join("\n")
    );
}

#[test]
fn every_module_has_a_layer() {
    let graph = Graph::read(&crate_sources());
    let layered: BTreeSet<&str> = LAYERS
        .iter()
        .flat_map(|layer| layer.iter().copied())
        .collect();
    let missing: Vec<&String> = graph
        .modules
        .iter()
        .filter(|m| !layered.contains(m.as_str()))
        .collect();
    assert!(
        missing.is_empty(),
        "modules without a layer in LAYERS: {missing:?}"
    );
    let gone: Vec<&&str> = layered
        .iter()
        .filter(|m| !graph.modules.contains(**m))
        .collect();
    assert!(
        gone.is_empty(),
        "LAYERS names modules that do not exist: {gone:?}"
    );
}

#[test]
fn every_allowed_import_still_occurs() {
    let graph = Graph::read(&crate_sources());
    for (from, to, reason) in ALLOWED {
        assert!(
            graph.edges.keys().any(|edge| edge.matches(from, to)),
            "ALLOWED has {from} -> {to} ({reason}), which no longer occurs: remove it"
        );
    }
}

/// Issue #12 named these; none may come back, allow-listed or not.
#[test]
fn the_circles_issue_12_names_stay_broken() {
    let graph = Graph::read(&crate_sources());
    let gone = [
        ("balance", "upstream"),
        ("balance", "config"),
        ("config/pools", "config/compile"),
        ("config/routes", "config/compile"),
        ("config/security", "config/compile"),
        ("config/egress", "config/compile"),
        ("egress/dial", "egress/exits"),
        ("upstream", "config"),
        ("upstream", "routing"),
        ("server/listeners", "server/gateway"),
        ("upstream/endpoint", "upstream/client"),
        ("upstream/endpoint", "upstream/health"),
        ("upstream/connections", "upstream/endpoint"),
    ];
    for (from, to) in gone {
        let back: Vec<String> = graph
            .edges
            .iter()
            .filter(|(edge, _)| edge.matches(from, to))
            .map(|(edge, _)| format!("{} -> {}", edge.from.name(), edge.to.name()))
            .collect();
        assert!(back.is_empty(), "{from} imports {to} again: {back:?}");
    }
    // upstream knows nothing of the pipeline: the client sends its own `RequestBody`.
    let to_pipeline: Vec<String> = graph
        .edges
        .keys()
        .filter(|edge| edge.matches("upstream", "pipeline"))
        .map(|edge| edge.from.name())
        .collect();
    assert!(to_pipeline.is_empty(), "{to_pipeline:?}");
}

/// Prints the graph: `cargo test --test integration layers:: -- --ignored --nocapture`.
#[test]
#[ignore = "prints the import graph"]
fn print_the_import_graph() {
    let graph = Graph::read(&crate_sources());
    println!("{}", graph.report());
    let allowed = graph.without(ALLOWED);
    println!("== after the allow-list ==");
    println!("circles:\n{}", allowed.circles().join("\n"));
    println!("upward:\n{}", allowed.upward(LAYERS).join("\n"));
}

// === Tests of the checker itself ===

fn synthetic(files: &[(&str, &str)]) -> Graph {
    let sources: Vec<(String, String)> = files
        .iter()
        .map(|(path, text)| (path.to_string(), text.to_string()))
        .collect();
    Graph::read(&sources)
}

#[test]
fn a_circle_between_modules_is_caught() {
    let graph = synthetic(&[
        ("a/mod.rs", "use crate::b::Thing;\n"),
        (
            "b/mod.rs",
            "pub struct Thing;\nfn f() { crate::c::go(); }\n",
        ),
        ("c.rs", "pub fn go() { let _ = crate::a::X; }\n"),
        ("d.rs", "use crate::a;\n"),
    ]);
    assert_eq!(graph.circles(), vec!["a -> b -> c -> a"]);
    assert_eq!(
        graph.without(&[("c", "a", "test")]).circles(),
        Vec::<String>::new(),
        "an allowed edge breaks the circle"
    );
}

#[test]
fn a_circle_between_files_of_one_module_is_caught() {
    let graph = synthetic(&[
        ("m/mod.rs", "mod x;\nmod y;\npub use x::Shared;\n"),
        (
            "m/x.rs",
            "pub struct Shared;\nuse super::y::{self, helper};\n",
        ),
        ("m/y.rs", "fn helper() -> super::Shared { todo!() }\n"),
    ]);
    assert_eq!(graph.circles(), vec!["m/x -> m/y -> m/x"]);
}

#[test]
fn a_mod_rs_and_its_own_files_are_no_circle() {
    let graph = synthetic(&[
        (
            "m/mod.rs",
            "mod x;\npub struct Shared;\nfn run() { x::go(); }\n",
        ),
        ("m/x.rs", "use super::Shared;\npub fn go() {}\n"),
    ]);
    let edges: Vec<String> = graph
        .edges
        .keys()
        .map(|e| format!("{} -> {}", e.from.name(), e.to.name()))
        .collect();
    assert_eq!(edges, ["m/mod -> m/x", "m/x -> m/mod"]);
    assert!(graph.circles().is_empty());
}

#[test]
fn grouped_uses_comments_strings_and_tests_are_read_right() {
    let graph = synthetic(&[
        (
            "a/mod.rs",
            "use crate::{\n    b::{self, B},\n    c as see,\n};\n\
             // crate::d::X in a comment\n/* crate::d::Y /* nested */ crate::d::Z */\n\
             const S: &str = \"crate::d::W\"; const R: &str = r#\"crate::d::V\"#;\n\
             const C: char = '\"'; fn f<'a>(x: &'a str) {}\n\
             #[cfg(test)]\nmod tests { use crate::d::T; }\n\
             fn g() { crate::e::go(); }\n",
        ),
        ("b/mod.rs", ""),
        ("c.rs", ""),
        ("d.rs", ""),
        ("e.rs", ""),
    ]);
    let to: BTreeSet<&str> = graph
        .edges
        .keys()
        .filter(|e| e.from.module == "a")
        .map(|e| e.to.module.as_str())
        .collect();
    assert_eq!(to, BTreeSet::from(["b", "c", "e"]));
}

#[test]
fn an_import_from_a_layer_above_is_caught() {
    let graph = synthetic(&[("low.rs", "use crate::high::X;\n"), ("high.rs", "")]);
    let layers: &[&[&str]] = &[&["low"], &["high"]];
    assert_eq!(graph.upward(layers), vec!["low -> high"]);
    let same: &[&[&str]] = &[&["low", "high"]];
    assert_eq!(
        graph.upward(same).len(),
        1,
        "a module does not import from its own layer"
    );
}
