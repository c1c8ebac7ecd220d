//! Reading paths out of Rust source text: tokens without comments and literals, use
//! trees, and the unit (module and file) each path names.

use std::collections::{BTreeMap, BTreeSet};

use super::graph::Unit;

// === Resolving paths to units ===

pub(crate) struct Resolver<'a> {
    /// Module -> the stems of its files.
    pub(crate) files: &'a BTreeMap<String, BTreeSet<String>>,
    /// Module -> what its mod.rs re-exports from its files.
    pub(crate) faces: &'a BTreeMap<String, BTreeMap<String, String>>,
}

impl Resolver<'_> {
    pub(crate) fn imports(&self, from: &Unit, tokens: &[Token]) -> Vec<Unit> {
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
                if let Some(unit) = unit
                    && !(face_use && unit.module == from.module)
                {
                    out.push(unit);
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
    pub(crate) fn absolute(&self, from: &Unit, path: &[String]) -> Option<Unit> {
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
    pub(crate) fn relative_super(&self, from: &Unit, path: &[String]) -> Option<Unit> {
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
    pub(crate) fn inside(&self, module: &str, path: &[String]) -> Option<Unit> {
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
pub(crate) fn re_exports(tokens: &[Token], files: &BTreeSet<String>) -> BTreeMap<String, String> {
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
            if let (Some(file), Some(name)) = (path.first(), path.last())
                && files.contains(*file)
                && path.len() > 1
            {
                out.insert((*name).clone(), (*file).clone());
            }
        }
    }
    out
}

/// Token ranges of `pub use ...;` and `pub(...) use ...;` statements.
pub(crate) fn face_ranges(tokens: &[Token]) -> Vec<(usize, usize)> {
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
pub(crate) fn test_ranges(tokens: &[Token]) -> Vec<(usize, usize)> {
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
pub(crate) fn use_tree(tokens: &[Token], mut i: usize) -> (Vec<Vec<String>>, usize) {
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
pub(crate) enum Token {
    Ident(String),
    PathSep,
    Punct(char),
}

impl Token {
    /// Identifiers, `::` and single punctuation; comments, strings, chars, lifetimes
    /// and numbers are dropped.
    pub(crate) fn read(text: &str) -> Vec<Token> {
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

pub(crate) fn is_ident(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

pub(crate) fn skip_string(chars: &[char], mut i: usize) -> usize {
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
pub(crate) fn raw_string_start(chars: &[char], i: usize) -> Option<(usize, usize)> {
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
