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
//! `cargo test --test layers -- --ignored --nocapture` prints the whole graph, its
//! circles and the pairs of modules that import each other.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::Path;

// === The declared order ===

/// Top-level modules, lowest layer first. A module may import only from the layers
/// below its own; modules that share a layer do not import each other.
const LAYERS: &[&[&str]] = &[
    // Integer digits without core::fmt.
    &["decimal"],
    // Byte-level rules: message normalisation; AI API shapes (`model`, SSE, usage).
    &["normalize", "llm"],
    // Picking among endpoints, known only as `balance::Candidate`; stable hashes, RNG.
    &["balance"],
    // Pools, endpoints and their state (the registry), the HTTP client, health.
    &["upstream"],
    // Metrics state, access log, trace ids: recorded by every layer above.
    &["telemetry"],
    // Splits and their runtime controls, canary analysis.
    &["canary"],
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
    &["demo"],
    &["main"],
];

/// Imports the checks leave out, each with its reason. `from` and `to` are `module`
/// (any of its files) or `module/file`. An entry that no longer matches an import
/// fails the test, so the list cannot outlive the code it excuses.
const ALLOWED: &[(&str, &str, &str)] = &[
    // --- issue #12: the proxy core work (pipeline/, fastpath/) moves these ---
    (
        "upstream/client",
        "pipeline",
        "issue #12: moved by the core work (ProxyBody)",
    ),
    (
        "pipeline/versioning",
        "pipeline/handler",
        "issue #12: moved by the core work (affinity_hash; the circle handler <-> versioning)",
    ),
    (
        "pipeline",
        "config",
        "issue #12: moved by the core work (the hyper engine reads Plan and ListenerPlan)",
    ),
    (
        "fastpath",
        "config",
        "issue #12: moved by the core work (the fast engine reads Plan and ListenerPlan)",
    ),
    (
        "pipeline/mod",
        "server",
        "issue #12: moved by the core work (Downstream holds the Gateway)",
    ),
    (
        "pipeline/handler",
        "egress",
        "issue #12: moved by the core work (egress dispatched inside the gateway handler)",
    ),
    (
        "routing/mod",
        "pipeline",
        "issue #12: moved by the core work (a Route holds its FilterChain, from pipeline/mod.rs)",
    ),
    (
        "security",
        "pipeline",
        "issue #12: moved by the core work (the filters implement pipeline's Filter, Flow, RequestCtx)",
    ),
    // --- found by this check, left for the listener-level dispatch (issue #12 item 4) ---
    (
        "server/listeners",
        "admin",
        "issue #12 item 4: the listener calls admin::handle; it should be handed its service",
    ),
    (
        "egress/mod",
        "server",
        "issue #12 item 4: egress tunnels are counted with server::client_slots::ClientCounts",
    ),
    (
        "server/listeners",
        "server/gateway",
        "issue #12 item 4: the gateway owns the running listeners, which read its plan",
    ),
    // --- found by this check inside upstream/, not yet split ---
    (
        "upstream/endpoint",
        "upstream/client",
        "an endpoint's state holds the client's ConnectionCache (typed on ProxyBody)",
    ),
    (
        "upstream/endpoint",
        "upstream/health",
        "an endpoint's state holds its health verdict, in health.rs beside the checker",
    ),
];

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
    // upstream knows nothing of the pipeline but ProxyBody in client.rs, which the
    // core work moves.
    let to_pipeline: Vec<String> = graph
        .edges
        .keys()
        .filter(|edge| edge.matches("upstream", "pipeline"))
        .map(|edge| edge.from.name())
        .collect();
    assert_eq!(to_pipeline, ["upstream/client"]);
}

/// Prints the graph: `cargo test --test layers -- --ignored --nocapture`.
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

// === Reading the sources ===

/// Every file under src/ but lib.rs, which only declares the modules (the crate root,
/// not a layer), as (path under src/, text).
fn crate_sources() -> Vec<(String, String)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut sources = Vec::new();
    collect(&root, &root, &mut sources);
    sources.sort();
    sources
}

fn collect(root: &Path, dir: &Path, out: &mut Vec<(String, String)>) {
    for entry in std::fs::read_dir(dir).expect("src/ is readable") {
        let path = entry.expect("a directory entry").path();
        if path.is_dir() {
            collect(root, &path, out);
        } else if path.extension().is_some_and(|e| e == "rs") && path != root.join("lib.rs") {
            let relative = path
                .strip_prefix(root)
                .unwrap()
                .to_string_lossy()
                .replace('\\', "/");
            let text = std::fs::read_to_string(&path).expect("a source file is UTF-8");
            out.push((relative, text));
        }
    }
}

/// A file as a node: its top-level module and its file (`mod` for a `mod.rs`; a file
/// directly under `src/` is a module of one file, named like it).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Unit {
    module: String,
    file: String,
}

impl Unit {
    fn of(path: &str) -> Unit {
        let parts: Vec<&str> = path.trim_end_matches(".rs").split('/').collect();
        match parts.as_slice() {
            [file] => Unit {
                module: file.to_string(),
                file: file.to_string(),
            },
            [module, file] => Unit {
                module: module.to_string(),
                file: file.to_string(),
            },
            _ => panic!("{path}: the checker reads src/<module>/<file>.rs only; extend Unit::of"),
        }
    }

    fn name(&self) -> String {
        if self.module == self.file {
            self.module.clone()
        } else {
            format!("{}/{}", self.module, self.file)
        }
    }

    /// `module` names every file of the module, `module/file` one file.
    fn is(&self, pattern: &str) -> bool {
        match pattern.split_once('/') {
            Some((module, file)) => self.module == module && self.file == file,
            None => self.module == pattern,
        }
    }
}

/// One import of `to` by `from`. `to.file` is resolved only inside one module; for
/// another module it is the module's face, `mod`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Edge {
    from: Unit,
    to: Unit,
}

impl Edge {
    fn matches(&self, from: &str, to: &str) -> bool {
        self.from.is(from) && self.to.is(to)
    }
}

struct Graph {
    modules: BTreeSet<String>,
    /// Each edge with the source files it was seen in.
    edges: BTreeMap<Edge, BTreeSet<String>>,
}

impl Graph {
    fn read(sources: &[(String, String)]) -> Graph {
        let mut files: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for (path, _) in sources {
            let unit = Unit::of(path);
            files.entry(unit.module).or_default().insert(unit.file);
        }
        // What each mod.rs re-exports from its own files: name -> file.
        let mut faces: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
        for (path, text) in sources {
            let unit = Unit::of(path);
            if unit.file == "mod" {
                let tokens = Token::read(text);
                faces.insert(
                    unit.module.clone(),
                    re_exports(&tokens, &files[&unit.module]),
                );
            }
        }
        let resolver = Resolver {
            files: &files,
            faces: &faces,
        };
        let mut edges: BTreeMap<Edge, BTreeSet<String>> = BTreeMap::new();
        for (path, text) in sources {
            let from = Unit::of(path);
            for to in resolver.imports(&from, &Token::read(text)) {
                if to != from {
                    edges
                        .entry(Edge {
                            from: from.clone(),
                            to,
                        })
                        .or_default()
                        .insert(path.clone());
                }
            }
        }
        Graph {
            modules: files.keys().cloned().collect(),
            edges,
        }
    }

    fn without(&self, allowed: &[(&str, &str, &str)]) -> Graph {
        let edges = self
            .edges
            .iter()
            .filter(|(edge, _)| !allowed.iter().any(|(from, to, _)| edge.matches(from, to)))
            .map(|(edge, seen)| (edge.clone(), seen.clone()))
            .collect();
        Graph {
            modules: self.modules.clone(),
            edges,
        }
    }

    /// Top-level module edges.
    fn module_edges(&self) -> BTreeMap<String, BTreeSet<String>> {
        let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for edge in self.edges.keys() {
            if edge.from.module != edge.to.module {
                out.entry(edge.from.module.clone())
                    .or_default()
                    .insert(edge.to.module.clone());
            }
        }
        out
    }

    /// File edges inside one module each, between files other than `mod.rs`: a
    /// module's `mod.rs` holds what its files share and puts them together, so it
    /// imports them and they import it by nature.
    fn file_edges(&self) -> BTreeMap<String, BTreeSet<String>> {
        let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for edge in self.edges.keys() {
            let face = edge.from.file == "mod" || edge.to.file == "mod";
            if edge.from.module == edge.to.module && !face {
                out.entry(edge.from.name())
                    .or_default()
                    .insert(edge.to.name());
            }
        }
        out
    }

    /// Every circle, one per strongly connected set: the shortest circle through its
    /// first member, then the set when it is larger than that circle.
    fn circles(&self) -> Vec<String> {
        let mut out = Vec::new();
        for edges in [self.module_edges(), self.file_edges()] {
            for set in strongly_connected(&edges) {
                let circle = shortest_circle(&edges, &set);
                let mut line = circle.join(" -> ");
                if circle.len() - 1 < set.len() {
                    let _ = write!(line, "   (all of {{{}}} import each other)", set.join(", "));
                }
                out.push(line);
            }
        }
        out
    }

    /// Pairs of top-level modules that import each other directly.
    fn mutual_pairs(&self) -> Vec<String> {
        let edges = self.module_edges();
        let mut out = Vec::new();
        for (from, tos) in &edges {
            for to in tos {
                if from < to && edges.get(to).is_some_and(|back| back.contains(from)) {
                    out.push(format!("{from} <-> {to}"));
                }
            }
        }
        out
    }

    /// Each file's import from a module on its own layer or above.
    fn upward(&self, layers: &[&[&str]]) -> Vec<String> {
        let layer_of = |module: &str| layers.iter().position(|layer| layer.contains(&module));
        let mut out = Vec::new();
        for edge in self.edges.keys() {
            if edge.from.module == edge.to.module {
                continue;
            }
            let (Some(from), Some(to)) = (layer_of(&edge.from.module), layer_of(&edge.to.module))
            else {
                continue;
            };
            if to >= from {
                out.push(format!("{} -> {}", edge.from.name(), edge.to.module));
            }
        }
        out
    }

    fn report(&self) -> String {
        let mut out = String::from("== module imports ==\n");
        for (from, tos) in self.module_edges() {
            let _ = writeln!(
                out,
                "{from} -> {}",
                tos.into_iter().collect::<Vec<_>>().join(", ")
            );
        }
        out.push_str("== file imports inside a module ==\n");
        for (from, tos) in self.file_edges() {
            let _ = writeln!(
                out,
                "{from} -> {}",
                tos.into_iter().collect::<Vec<_>>().join(", ")
            );
        }
        out.push_str("== every cross-module import, with the files ==\n");
        for (edge, seen) in &self.edges {
            if edge.from.module != edge.to.module {
                let _ = writeln!(
                    out,
                    "{} -> {}   [{}]",
                    edge.from.name(),
                    edge.to.module,
                    seen.iter().cloned().collect::<Vec<_>>().join(", ")
                );
            }
        }
        let _ = writeln!(out, "== circles ==\n{}", self.circles().join("\n"));
        let _ = writeln!(
            out,
            "== modules that import each other ==\n{}",
            self.mutual_pairs().join("\n")
        );
        out
    }
}

// === Resolving paths to units ===

struct Resolver<'a> {
    /// Module -> the stems of its files.
    files: &'a BTreeMap<String, BTreeSet<String>>,
    /// Module -> what its mod.rs re-exports from its files.
    faces: &'a BTreeMap<String, BTreeMap<String, String>>,
}

impl Resolver<'_> {
    fn imports(&self, from: &Unit, tokens: &[Token]) -> Vec<Unit> {
        let test = test_ranges(tokens);
        let face = if from.file == "mod" {
            face_ranges(tokens)
        } else {
            Vec::new()
        };
        let own_files = &self.files[&from.module];
        let mut out = Vec::new();
        let mut i = 0;
        while i < tokens.len() {
            let in_range =
                |ranges: &[(usize, usize)]| ranges.iter().any(|(a, b)| (*a..*b).contains(&i));
            let starts_path = tokens.get(i + 1) == Some(&Token::PathSep)
                && !matches!(
                    i.checked_sub(1).map(|p| &tokens[p]),
                    Some(Token::PathSep | Token::Punct('$'))
                );
            let Token::Ident(root) = &tokens[i] else {
                i += 1;
                continue;
            };
            if !starts_path || in_range(&test) {
                i += 1;
                continue;
            }
            let crate_root = root == "crate" || (root == "junction" && from.module == "main");
            let child = from.file == "mod" && own_files.contains(root) && root != "mod";
            if !(crate_root || root == "super" || root == "self" || child) {
                i += 1;
                continue;
            }
            let (paths, next) = use_tree(tokens, i + 2);
            let face_use = in_range(&face);
            for path in paths {
                let unit = if crate_root {
                    self.absolute(from, &path)
                } else if root == "super" {
                    self.relative_super(from, &path)
                } else if root == "self" {
                    if from.file == "mod" {
                        self.inside(&from.module, &path)
                    } else {
                        None
                    }
                } else {
                    let mut full = vec![root.clone()];
                    full.extend(path);
                    self.inside(&from.module, &full)
                };
                // A mod.rs's `pub use` of its own files is its face.
                if let Some(unit) = unit {
                    if !(face_use && unit.module == from.module) {
                        out.push(unit);
                    }
                }
            }
            i = next.max(i + 1);
        }
        // A mod.rs's own code naming what it re-exports from its files.
        if from.file == "mod" {
            let names = &self.faces[&from.module];
            for (i, token) in tokens.iter().enumerate() {
                let Token::Ident(name) = token else { continue };
                let after_path = matches!(
                    i.checked_sub(1).map(|p| &tokens[p]),
                    Some(Token::PathSep | Token::Punct('.'))
                );
                let in_range =
                    |ranges: &[(usize, usize)]| ranges.iter().any(|(a, b)| (*a..*b).contains(&i));
                if let Some(file) = names
                    .get(name)
                    .filter(|_| !after_path && !in_range(&test) && !in_range(&face))
                {
                    out.push(Unit {
                        module: from.module.clone(),
                        file: file.clone(),
                    });
                }
            }
        }
        out
    }

    /// `crate::<path>`.
    fn absolute(&self, from: &Unit, path: &[String]) -> Option<Unit> {
        let module = path.first()?;
        if !self.files.contains_key(module) {
            return None; // a macro or a name at the crate root
        }
        if *module == from.module {
            return self.inside(module, &path[1..]);
        }
        Some(Unit {
            module: module.clone(),
            file: "mod".into(),
        })
    }

    /// `super::<path>`, where further leading `super`s are in `path`.
    fn relative_super(&self, from: &Unit, path: &[String]) -> Option<Unit> {
        let ups = 1 + path.iter().take_while(|s| *s == "super").count();
        let rest = &path[ups - 1..];
        // From src/m/f.rs `super` is m; from src/m/mod.rs or src/f.rs it is the crate.
        // Inline modules (mod tests) add one `super` each; they are not counted (tests
        // are skipped), but a deeper `super` that names a module is read as the crate.
        if from.file == "mod"
            || from.module == from.file
            || ups > 1 && self.files.contains_key(rest.first()?)
        {
            return self.absolute(from, rest);
        }
        self.inside(&from.module, rest)
    }

    /// A path inside `module`, whose first segment is one of its files or a name its
    /// mod.rs defines or re-exports.
    fn inside(&self, module: &str, path: &[String]) -> Option<Unit> {
        let Some(first) = path.first() else {
            return Some(Unit {
                module: module.into(),
                file: "mod".into(),
            });
        };
        let file = if self.files[module].contains(first) && first != "mod" {
            first.clone()
        } else if let Some(file) = self.faces.get(module).and_then(|face| face.get(first)) {
            file.clone()
        } else {
            "mod".into()
        };
        Some(Unit {
            module: module.into(),
            file,
        })
    }
}

/// Name -> own file, for each `pub use <file>::...` of a mod.rs.
fn re_exports(tokens: &[Token], files: &BTreeSet<String>) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for (start, end) in face_ranges(tokens) {
        let mut i = start;
        // skip to after `use`
        while i < end && tokens[i] != Token::Ident("use".into()) {
            i += 1;
        }
        let (paths, _) = use_tree(tokens, i + 1);
        for path in paths {
            let path: Vec<&String> = path.iter().skip_while(|s| *s == "self").collect();
            if let (Some(file), Some(name)) = (path.first(), path.last()) {
                if files.contains(*file) && path.len() > 1 {
                    out.insert((*name).clone(), (*file).clone());
                }
            }
        }
    }
    out
}

/// Token ranges of `pub use ...;` and `pub(...) use ...;` statements.
fn face_ranges(tokens: &[Token]) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    for i in 0..tokens.len() {
        if tokens[i] != Token::Ident("pub".into()) {
            continue;
        }
        let mut j = i + 1;
        if tokens.get(j) == Some(&Token::Punct('(')) {
            while j < tokens.len() && tokens[j] != Token::Punct(')') {
                j += 1;
            }
            j += 1;
        }
        if tokens.get(j) == Some(&Token::Ident("use".into())) {
            let end = (j..tokens.len())
                .find(|&k| tokens[k] == Token::Punct(';'))
                .unwrap_or(tokens.len());
            out.push((i, end));
        }
    }
    out
}

/// Token ranges of items under `#[cfg(test)]`.
fn test_ranges(tokens: &[Token]) -> Vec<(usize, usize)> {
    let attribute = [
        Token::Punct('#'),
        Token::Punct('['),
        Token::Ident("cfg".into()),
        Token::Punct('('),
        Token::Ident("test".into()),
        Token::Punct(')'),
        Token::Punct(']'),
    ];
    let mut out = Vec::new();
    let mut i = 0;
    while i + attribute.len() <= tokens.len() {
        if tokens[i..i + attribute.len()] != attribute {
            i += 1;
            continue;
        }
        // The item ends at its first `;` outside braces, or at the brace that closes
        // its body.
        let mut depth = 0usize;
        let mut j = i + attribute.len();
        while j < tokens.len() {
            match tokens[j] {
                Token::Punct('{') => depth += 1,
                Token::Punct('}') => {
                    depth -= 1;
                    if depth == 0 {
                        break;
                    }
                }
                Token::Punct(';') if depth == 0 => break,
                _ => {}
            }
            j += 1;
        }
        out.push((i, j + 1));
        i = j + 1;
    }
    out
}

/// The paths of a use tree starting at `i` (after `root::`), and the index after it.
/// `{a::B, c}` gives `[a, B]` and `[c]`; a glob gives the path up to it.
fn use_tree(tokens: &[Token], mut i: usize) -> (Vec<Vec<String>>, usize) {
    match tokens.get(i) {
        Some(Token::Punct('{')) => {
            i += 1;
            let mut paths = Vec::new();
            while i < tokens.len() {
                if tokens[i] == Token::Punct('}') {
                    return (paths, i + 1);
                }
                let (inner, next) = use_tree(tokens, i);
                paths.extend(inner);
                i = next;
                match tokens.get(i) {
                    Some(Token::Punct(',')) => i += 1,
                    Some(Token::Punct('}')) => return (paths, i + 1),
                    _ => return (paths, i),
                }
            }
            (paths, i)
        }
        Some(Token::Ident(name)) => {
            let name = name.clone();
            i += 1;
            let continues = tokens.get(i) == Some(&Token::PathSep)
                && matches!(
                    tokens.get(i + 1),
                    Some(Token::Ident(_) | Token::Punct('{' | '*'))
                );
            if continues {
                let (rest, next) = use_tree(tokens, i + 1);
                let paths = rest
                    .into_iter()
                    .map(|mut tail| {
                        if tail.first().is_some_and(|s| s == "self") {
                            tail.remove(0);
                        }
                        let mut path = vec![name.clone()];
                        path.extend(tail);
                        path
                    })
                    .collect();
                return (paths, next);
            }
            if tokens.get(i) == Some(&Token::Ident("as".into())) {
                i += 2;
            }
            (vec![vec![name]], i)
        }
        Some(Token::Punct('*')) => (vec![vec![]], i + 1),
        _ => (vec![vec![]], i),
    }
}

// === Tokens ===

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Ident(String),
    PathSep,
    Punct(char),
}

impl Token {
    /// Identifiers, `::` and single punctuation; comments, strings, chars, lifetimes
    /// and numbers are dropped.
    fn read(text: &str) -> Vec<Token> {
        let chars: Vec<char> = text.chars().collect();
        let mut out = Vec::new();
        let mut i = 0;
        while i < chars.len() {
            let c = chars[i];
            let next = chars.get(i + 1).copied();
            if c == '/' && next == Some('/') {
                while i < chars.len() && chars[i] != '\n' {
                    i += 1;
                }
            } else if c == '/' && next == Some('*') {
                let mut depth = 0;
                while i < chars.len() {
                    if chars[i] == '/' && chars.get(i + 1) == Some(&'*') {
                        depth += 1;
                        i += 2;
                    } else if chars[i] == '*' && chars.get(i + 1) == Some(&'/') {
                        depth -= 1;
                        i += 2;
                        if depth == 0 {
                            break;
                        }
                    } else {
                        i += 1;
                    }
                }
            } else if c == '"' {
                i = skip_string(&chars, i + 1);
            } else if (c == 'r' || c == 'b') && raw_string_start(&chars, i).is_some() {
                let (hashes, body) = raw_string_start(&chars, i).unwrap();
                i = body;
                while i < chars.len() {
                    if chars[i] == '"'
                        && chars[i + 1..]
                            .iter()
                            .take(hashes)
                            .filter(|&&h| h == '#')
                            .count()
                            == hashes
                    {
                        i += 1 + hashes;
                        break;
                    }
                    i += 1;
                }
            } else if c == 'b' && next == Some('"') {
                i = skip_string(&chars, i + 2);
            } else if c == '\'' || (c == 'b' && next == Some('\'')) {
                let q = if c == 'b' { i + 1 } else { i };
                // A char literal ('x', '\n', '\u{..}') or a lifetime ('a).
                if chars.get(q + 1) == Some(&'\\') {
                    let mut j = q + 2;
                    while j < chars.len() && chars[j] != '\'' {
                        j += 1;
                    }
                    i = j + 1;
                } else if chars.get(q + 2) == Some(&'\'') {
                    i = q + 3;
                } else {
                    i = q + 1;
                    while i < chars.len() && is_ident(chars[i]) {
                        i += 1;
                    }
                }
            } else if c.is_ascii_digit() {
                while i < chars.len()
                    && (is_ident(chars[i])
                        || chars[i] == '.' && chars.get(i + 1).is_some_and(|d| d.is_ascii_digit()))
                {
                    i += 1;
                }
            } else if is_ident(c) {
                let start = i;
                while i < chars.len() && is_ident(chars[i]) {
                    i += 1;
                }
                let word: String = chars[start..i].iter().collect();
                out.push(Token::Ident(word.trim_start_matches("r#").to_string()));
            } else if c == ':' && next == Some(':') {
                out.push(Token::PathSep);
                i += 2;
            } else if c.is_whitespace() {
                i += 1;
            } else {
                out.push(Token::Punct(c));
                i += 1;
            }
        }
        out
    }
}

fn is_ident(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

fn skip_string(chars: &[char], mut i: usize) -> usize {
    while i < chars.len() {
        match chars[i] {
            '\\' => i += 2,
            '"' => return i + 1,
            _ => i += 1,
        }
    }
    i
}

/// `r"`, `r#"`, `br#"` ...: the number of `#` and the index after the opening quote.
fn raw_string_start(chars: &[char], i: usize) -> Option<(usize, usize)> {
    if i > 0 && is_ident(chars[i - 1]) {
        return None;
    }
    let mut j = i;
    if chars[j] == 'b' {
        j += 1;
    }
    if chars.get(j) != Some(&'r') {
        return None;
    }
    j += 1;
    let hashes = chars[j..].iter().take_while(|&&c| c == '#').count();
    j += hashes;
    (chars.get(j) == Some(&'"')).then_some((hashes, j + 1))
}

// === Graph algorithms ===

/// Strongly connected sets of more than one node (Tarjan), each sorted, in order.
fn strongly_connected(edges: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    struct State<'a> {
        edges: &'a BTreeMap<String, BTreeSet<String>>,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on_stack: BTreeSet<&'a str>,
        sets: Vec<Vec<String>>,
    }
    fn visit<'a>(state: &mut State<'a>, node: &'a str) {
        let n = state.index.len();
        state.index.insert(node, n);
        state.low.insert(node, n);
        state.stack.push(node);
        state.on_stack.insert(node);
        for next in state.edges.get(node).into_iter().flatten() {
            if !state.index.contains_key(next.as_str()) {
                visit(state, next);
                let low = state.low[node].min(state.low[next.as_str()]);
                state.low.insert(node, low);
            } else if state.on_stack.contains(next.as_str()) {
                let low = state.low[node].min(state.index[next.as_str()]);
                state.low.insert(node, low);
            }
        }
        if state.low[node] == state.index[node] {
            let mut set = Vec::new();
            loop {
                let member = state.stack.pop().unwrap();
                state.on_stack.remove(member);
                set.push(member.to_string());
                if member == node {
                    break;
                }
            }
            if set.len() > 1 {
                set.sort();
                state.sets.push(set);
            }
        }
    }
    let mut state = State {
        edges,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        sets: Vec::new(),
    };
    for node in edges.keys() {
        if !state.index.contains_key(node.as_str()) {
            visit(&mut state, node);
        }
    }
    state.sets.sort();
    state.sets
}

/// The shortest circle from the set's first member back to it (breadth first).
fn shortest_circle(edges: &BTreeMap<String, BTreeSet<String>>, set: &[String]) -> Vec<String> {
    let start = &set[0];
    let mut parent: BTreeMap<&str, &str> = BTreeMap::new();
    let mut queue = std::collections::VecDeque::from([start.as_str()]);
    while let Some(node) = queue.pop_front() {
        for next in edges.get(node).into_iter().flatten() {
            if !set.contains(next) {
                continue;
            }
            if next == start {
                let mut circle = vec![start.clone()];
                let mut at = node;
                while at != start {
                    circle.push(at.to_string());
                    at = parent[at];
                }
                circle.push(start.clone());
                circle.reverse();
                return circle;
            }
            if !parent.contains_key(next.as_str()) {
                parent.insert(next, node);
                queue.push_back(next);
            }
        }
    }
    unreachable!("a strongly connected set has a circle through each member")
}
