//! The import graph of tests/layers.rs: the sources read, files as units, the imports
//! between them, and the circles and upward imports found in it.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::Path;

use super::paths::{Resolver, Token, re_exports};

// === Reading the sources ===

/// Every file under src/ but lib.rs, which only declares the modules (the crate root,
/// not a layer), as (path under src/, text).
pub(crate) fn crate_sources() -> Vec<(String, String)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut sources = Vec::new();
    collect(&root, &root, &mut sources);
    sources.sort();
    sources
}

pub(crate) fn collect(root: &Path, dir: &Path, out: &mut Vec<(String, String)>) {
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
pub(crate) struct Unit {
    pub(crate) module: String,
    pub(crate) file: String,
}

impl Unit {
    pub(crate) fn of(path: &str) -> Unit {
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
            // A directory inside a module (src/llm/translate/) is one unit of it, named
            // like the directory: its files import each other as one file's parts do.
            [module, directory, _] => Unit {
                module: module.to_string(),
                file: directory.to_string(),
            },
            _ => panic!(
                "{path}: the checker reads src/<module>/[<directory>/]<file>.rs only; extend Unit::of"
            ),
        }
    }

    pub(crate) fn name(&self) -> String {
        if self.module == self.file {
            self.module.clone()
        } else {
            format!("{}/{}", self.module, self.file)
        }
    }

    /// `module` names every file of the module, `module/file` one file.
    pub(crate) fn is(&self, pattern: &str) -> bool {
        match pattern.split_once('/') {
            Some((module, file)) => self.module == module && self.file == file,
            None => self.module == pattern,
        }
    }
}

/// One import of `to` by `from`. `to.file` is resolved only inside one module; for
/// another module it is the module's face, `mod`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Edge {
    pub(crate) from: Unit,
    pub(crate) to: Unit,
}

impl Edge {
    pub(crate) fn matches(&self, from: &str, to: &str) -> bool {
        self.from.is(from) && self.to.is(to)
    }
}

pub(crate) struct Graph {
    pub(crate) modules: BTreeSet<String>,
    /// Each edge with the source files it was seen in.
    pub(crate) edges: BTreeMap<Edge, BTreeSet<String>>,
}

impl Graph {
    pub(crate) fn read(sources: &[(String, String)]) -> Graph {
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

    pub(crate) fn without(&self, allowed: &[(&str, &str, &str)]) -> Graph {
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
    pub(crate) fn module_edges(&self) -> BTreeMap<String, BTreeSet<String>> {
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
    pub(crate) fn file_edges(&self) -> BTreeMap<String, BTreeSet<String>> {
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
    pub(crate) fn circles(&self) -> Vec<String> {
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
    pub(crate) fn mutual_pairs(&self) -> Vec<String> {
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
    pub(crate) fn upward(&self, layers: &[&[&str]]) -> Vec<String> {
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

    pub(crate) fn report(&self) -> String {
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

// === Graph algorithms ===

/// Strongly connected sets of more than one node (Tarjan), each sorted, in order.
pub(crate) fn strongly_connected(edges: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
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
pub(crate) fn shortest_circle(
    edges: &BTreeMap<String, BTreeSet<String>>,
    set: &[String],
) -> Vec<String> {
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
