//! Maps between places in the config text and key paths (`routes[2].match.path_regex`),
//! so every config error can name both the key and the line.

use std::ops::Range;

use toml_edit::{ImDocument, Item, Table, Value};

/// A parsed copy of the config text that keeps the spans of every key and value.
pub struct Locator {
    text: String,
    doc: Option<ImDocument<String>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Key(String),
    Index(usize),
}

impl Locator {
    pub fn new(text: &str) -> Self {
        Locator {
            text: text.to_string(),
            doc: ImDocument::parse(text.to_string()).ok(),
        }
    }

    /// 1-based line of a byte offset.
    pub fn line_of(&self, offset: usize) -> usize {
        let end = offset.min(self.text.len());
        self.text.as_bytes()[..end]
            .iter()
            .filter(|b| **b == b'\n')
            .count()
            + 1
    }

    /// 1-based column (in characters) of a byte offset.
    pub fn column_of(&self, offset: usize) -> usize {
        let mut end = offset.min(self.text.len());
        while !self.text.is_char_boundary(end) {
            end -= 1;
        }
        let line_start = self.text[..end].rfind('\n').map_or(0, |at| at + 1);
        self.text[line_start..end].chars().count() + 1
    }

    /// Line of the value at `path`; when that key is absent, the line of the nearest
    /// enclosing table or array item that exists (where the missing key belongs).
    pub fn line_of_path(&self, path: &str) -> Option<usize> {
        let doc = self.doc.as_ref()?;
        let segments = parse_path(path);
        let mut best: Option<Range<usize>> = doc.as_table().span();
        let mut item: Option<Node<'_>> = Some(Node::Item(doc.as_item()));
        for segment in &segments {
            let Some(current) = item else { break };
            let next = current.child(segment);
            if let Some(next) = &next
                && let Some(span) = next.span()
            {
                best = Some(span);
            }
            item = next;
        }
        best.map(|span| self.line_of(span.start))
    }

    /// The deepest key path whose key or value span contains `offset`.
    pub fn path_at(&self, offset: usize) -> Option<String> {
        let doc = self.doc.as_ref()?;
        let mut path = Vec::new();
        descend(Node::Item(doc.as_item()), offset, &mut path);
        if path.is_empty() {
            None
        } else {
            Some(format_path(&path))
        }
    }
}

/// A view over toml_edit's three kinds of tree nodes.
#[derive(Clone, Copy)]
enum Node<'a> {
    Item(&'a Item),
    Table(&'a Table),
    Value(&'a Value),
}

impl<'a> Node<'a> {
    fn span(&self) -> Option<Range<usize>> {
        match *self {
            Node::Item(Item::Value(value)) | Node::Value(value) => value.span(),
            Node::Item(Item::Table(table)) | Node::Table(table) => table.span(),
            Node::Item(Item::ArrayOfTables(array)) => array.span(),
            Node::Item(Item::None) => None,
        }
    }

    /// A table or array of tables, whose parts may lie anywhere in the text.
    fn is_table(&self) -> bool {
        matches!(
            self,
            Node::Item(Item::Table(_) | Item::ArrayOfTables(_)) | Node::Table(_)
        )
    }

    fn child(&self, segment: &Segment) -> Option<Node<'a>> {
        self.children()
            .into_iter()
            .find(|(candidate, _, _)| candidate == segment)
            .map(|(_, _, node)| node)
    }

    /// Children with their segment and the span of their key (for tables).
    fn children(&self) -> Vec<(Segment, Option<Range<usize>>, Node<'a>)> {
        match *self {
            Node::Item(Item::Table(table)) | Node::Table(table) => table
                .iter()
                .filter(|(_, item)| !item.is_none())
                .map(|(key, item)| {
                    let key_span = table.key(key).and_then(|k| k.span());
                    (Segment::Key(key.to_string()), key_span, Node::Item(item))
                })
                .collect(),
            Node::Item(Item::ArrayOfTables(array)) => array
                .iter()
                .enumerate()
                .map(|(i, table)| (Segment::Index(i), None, Node::Table(table)))
                .collect(),
            Node::Item(Item::Value(value)) | Node::Value(value) => match value {
                Value::InlineTable(table) => table
                    .iter()
                    .map(|(key, value)| {
                        let key_span = table.key(key).and_then(|k| k.span());
                        (Segment::Key(key.to_string()), key_span, Node::Value(value))
                    })
                    .collect(),
                Value::Array(array) => array
                    .iter()
                    .enumerate()
                    .map(|(i, value)| (Segment::Index(i), None, Node::Value(value)))
                    .collect(),
                _ => Vec::new(),
            },
            Node::Item(Item::None) => Vec::new(),
        }
    }
}

/// Pushes the segments down to the key or value at `offset`; false if none is there.
fn descend(node: Node<'_>, offset: usize, path: &mut Vec<Segment>) -> bool {
    let children = node.children();
    for (segment, key_span, child) in &children {
        let in_key = key_span.as_ref().is_some_and(|s| s.contains(&offset));
        let in_value = child.span().is_some_and(|s| s.contains(&offset));
        if in_key || in_value {
            path.push(segment.clone());
            if in_value {
                descend(*child, offset, path);
            }
            return true;
        }
    }
    // A table may be written in parts, outside its own span: `[routes.canary]` after
    // the keys of the `[[routes]]` it belongs to. Look inside tables too.
    for (segment, _, child) in children {
        if child.is_table() {
            path.push(segment);
            if descend(child, offset, path) {
                return true;
            }
            path.pop();
        }
    }
    false
}

fn parse_path(path: &str) -> Vec<Segment> {
    let mut segments = Vec::new();
    for part in path.split('.') {
        let mut rest = part;
        if let Some(open) = rest.find('[') {
            if open > 0 {
                segments.push(Segment::Key(rest[..open].to_string()));
            }
            rest = &rest[open..];
            while let Some(stripped) = rest.strip_prefix('[') {
                let close = stripped.find(']').unwrap_or(stripped.len());
                if let Ok(index) = stripped[..close].parse() {
                    segments.push(Segment::Index(index));
                }
                rest = stripped.get(close + 1..).unwrap_or("");
            }
        } else if !rest.is_empty() {
            segments.push(Segment::Key(rest.to_string()));
        }
    }
    segments
}

fn format_path(segments: &[Segment]) -> String {
    let mut out = String::new();
    for segment in segments {
        match segment {
            Segment::Key(key) => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(key);
            }
            Segment::Index(index) => out.push_str(&format!("[{index}]")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "[admin]\nbind = \"x\"\n\n[[routes]]\nname = \"a\"\n\n[[routes]]\nname = \"b\"\nmatch = { path = \"/x\", model = \"m\" }\n";

    #[test]
    fn path_to_line() {
        let locator = Locator::new(TEXT);
        assert_eq!(locator.line_of_path("admin.bind"), Some(2));
        assert_eq!(locator.line_of_path("routes[1].name"), Some(8));
        assert_eq!(locator.line_of_path("routes[1].match.model"), Some(9));
        // A missing key points at where it belongs.
        assert_eq!(locator.line_of_path("routes[0].pool"), Some(4));
    }

    /// Found by the `config` fuzz target: a key of a table written after the keys of
    /// the `[[routes]]` entry it belongs to had no path.
    #[test]
    fn offset_in_a_table_written_apart_from_its_parent() {
        let text =
            "[[routes]]\nname = \"a\"\n\n[routes.canary]\nsteps = [5]\nmax_errob_rate = 0.05\n";
        let locator = Locator::new(text);
        let offset = text.find("max_errob_rate").unwrap();
        assert_eq!(
            locator.path_at(offset).as_deref(),
            Some("routes[0].canary.max_errob_rate")
        );
        let offset = text.find("[5]").unwrap() + 1;
        assert_eq!(
            locator.path_at(offset).as_deref(),
            Some("routes[0].canary.steps[0]")
        );
    }

    #[test]
    fn offset_to_path() {
        let locator = Locator::new(TEXT);
        let offset = TEXT.find("\"m\"").unwrap();
        assert_eq!(
            locator.path_at(offset).as_deref(),
            Some("routes[1].match.model")
        );
    }
}
