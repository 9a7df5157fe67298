//! The YAML text as a tree of nodes, each with its 1-based position: the first stage of parsing.
//! Only this module talks to serde-saphyr; it knows nothing of steps or jobs.

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_saphyr::Spanned;

use crate::error::Problem;

/// A 1-based line and column in the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Pos {
    pub(crate) line: usize,
    pub(crate) column: usize,
}

/// One YAML node.
#[derive(Debug, Clone)]
pub(crate) struct Node {
    /// Where the node starts; `None` when serde-saphyr could not say.
    pub(crate) pos: Option<Pos>,
    pub(crate) kind: Kind,
    /// The scalar's text as written (plain scalars), used where a number or boolean stands for a
    /// string: `1.90` must stay `1.90`, not become `1.9`.
    pub(crate) raw: Option<String>,
    /// Byte range of the node in the text, to recover `raw`.
    span: Option<(usize, usize)>,
}

/// What a node holds.
#[derive(Debug, Clone)]
pub(crate) enum Kind {
    Null,
    Bool(bool),
    Int(i64),
    UInt(u64),
    Float(f64),
    Str(String),
    Seq(Vec<Node>),
    Map(Vec<(Node, Node)>),
}

impl Node {
    /// A short description for "expected X, found Y" messages.
    pub(crate) fn describe(&self) -> String {
        match &self.kind {
            Kind::Null => "nothing".to_owned(),
            Kind::Bool(b) => format!("the boolean {b}"),
            Kind::Int(_) | Kind::UInt(_) | Kind::Float(_) => {
                format!("the number {}", self.text_or_empty())
            }
            Kind::Str(s) => format!("the string {s:?}"),
            Kind::Seq(_) => "a list".to_owned(),
            Kind::Map(_) => "a mapping".to_owned(),
        }
    }

    /// The scalar as text: a string's value, or a number's or boolean's text as written.
    pub(crate) fn scalar_text(&self) -> Option<String> {
        match &self.kind {
            Kind::Str(s) => Some(s.clone()),
            Kind::Bool(_) | Kind::Int(_) | Kind::UInt(_) | Kind::Float(_) => {
                Some(self.text_or_empty())
            }
            Kind::Null | Kind::Seq(_) | Kind::Map(_) => None,
        }
    }

    fn text_or_empty(&self) -> String {
        match (&self.raw, &self.kind) {
            (Some(raw), _) => raw.clone(),
            (None, Kind::Bool(b)) => b.to_string(),
            (None, Kind::Int(i)) => i.to_string(),
            (None, Kind::UInt(u)) => u.to_string(),
            (None, Kind::Float(f)) => f.to_string(),
            (None, _) => String::new(),
        }
    }

    fn fill_raw(&mut self, text: &str) {
        match &mut self.kind {
            Kind::Seq(items) => items.iter_mut().for_each(|n| n.fill_raw(text)),
            Kind::Map(entries) => entries.iter_mut().for_each(|(k, v)| {
                k.fill_raw(text);
                v.fill_raw(text);
            }),
            Kind::Bool(_) | Kind::Int(_) | Kind::UInt(_) | Kind::Float(_) => {
                if let Some((start, len)) = self.span {
                    self.raw = text
                        .get(start..start.saturating_add(len))
                        .map(|s| s.trim().to_owned())
                        .filter(|s| !s.is_empty());
                }
            }
            Kind::Null | Kind::Str(_) => {}
        }
    }
}

/// Parses the YAML text into a tree. A syntax error is the one problem returned.
pub(crate) fn parse_tree(text: &str) -> Result<Option<Node>, Problem> {
    // An empty document (or only comments) deserializes as nothing.
    // Duplicate keys pass through so that `dedup_keys` reports every one, with both positions,
    // instead of the parser stopping at the first.
    let options = serde_saphyr::options! {
        duplicate_keys: serde_saphyr::DuplicateKeyPolicy::PassThrough,
    };
    let parsed: Result<Option<Node>, _> = serde_saphyr::from_str_with_options(text, options);
    match parsed {
        Ok(mut node) => {
            if let Some(node) = node.as_mut() {
                node.fill_raw(text);
            }
            Ok(node)
        }
        Err(error) => Err(problem_from_saphyr(&error)),
    }
}

fn problem_from_saphyr(error: &serde_saphyr::Error) -> Problem {
    let location = error.location();
    let position = location
        .filter(|l| l.line() > 0)
        .map(|l| (to_usize(l.line()), to_usize(l.column())));
    let mut message = error
        .without_snippet()
        .render_with_options(serde_saphyr::render_options! {
            snippets: serde_saphyr::SnippetMode::Off,
        });
    // The position goes in front of the message (`FILE:LINE:COL:`), not after it.
    if let Some((line, column)) = position {
        let suffix = format!(" at line {line}, column {column}");
        if let Some(stripped) = message.strip_suffix(&suffix) {
            message = stripped.to_owned();
        }
    }
    if message.starts_with("multiple YAML documents detected") {
        // Said without serde-saphyr's advice to its own callers.
        message = "the file holds more than one YAML document (---); a pipeline is one".to_owned();
    }
    Problem {
        line: position.map(|p| p.0),
        column: position.map(|p| p.1),
        message,
    }
}

fn to_usize(n: u64) -> usize {
    usize::try_from(n).unwrap_or(usize::MAX)
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let spanned = Spanned::<KindOnly>::deserialize(deserializer)?;
        let location = spanned.referenced;
        let pos = (location.line() > 0).then(|| Pos {
            line: to_usize(location.line()),
            column: to_usize(location.column()),
        });
        let span = location.span();
        let span = span
            .byte_offset()
            .zip(span.byte_len())
            .map(|(o, l)| (to_usize(o), to_usize(l)));
        Ok(Node {
            pos,
            kind: spanned.value.0,
            raw: None,
            span,
        })
    }
}

/// A node's kind, deserialized inside a `Spanned` so the position comes with it.
struct KindOnly(Kind);

impl<'de> Deserialize<'de> for KindOnly {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(KindVisitor).map(KindOnly)
    }
}

struct KindVisitor;

impl<'de> Visitor<'de> for KindVisitor {
    type Value = Kind;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any YAML value")
    }
    fn visit_unit<E: de::Error>(self) -> Result<Kind, E> {
        Ok(Kind::Null)
    }
    fn visit_none<E: de::Error>(self) -> Result<Kind, E> {
        Ok(Kind::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Kind, D::Error> {
        deserializer.deserialize_any(KindVisitor)
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Kind, E> {
        Ok(Kind::Bool(v))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Kind, E> {
        Ok(Kind::Int(v))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Kind, E> {
        Ok(Kind::UInt(v))
    }
    fn visit_i128<E: de::Error>(self, v: i128) -> Result<Kind, E> {
        // Beyond 64 bits no key of ours accepts the number; keep its text.
        Ok(Kind::Str(v.to_string()))
    }
    fn visit_u128<E: de::Error>(self, v: u128) -> Result<Kind, E> {
        Ok(Kind::Str(v.to_string()))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Kind, E> {
        Ok(Kind::Float(v))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Kind, E> {
        Ok(Kind::Str(v.to_owned()))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Kind, E> {
        Ok(Kind::Str(v))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Kind, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<Node>()? {
            items.push(item);
        }
        Ok(Kind::Seq(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Kind, A::Error> {
        let mut entries = Vec::new();
        while let Some(key) = map.next_key::<Node>()? {
            let value = map.next_value::<Node>()?;
            entries.push((key, value));
        }
        Ok(Kind::Map(entries))
    }
}

/// Reports every repeated key of every mapping (YAML wants them unique) and keeps the first.
pub(crate) fn dedup_keys(node: &mut Node, problems: &mut Vec<Problem>) {
    match &mut node.kind {
        Kind::Seq(items) => items.iter_mut().for_each(|n| dedup_keys(n, problems)),
        Kind::Map(entries) => {
            let mut seen: Vec<(String, Option<Pos>)> = Vec::new();
            entries.retain(|(key, _)| {
                let Some(text) = key.scalar_text() else {
                    return true;
                };
                if let Some((_, first)) = seen.iter().find(|(t, _)| *t == text) {
                    let first = first
                        .map(|p| format!(" (first at line {})", p.line))
                        .unwrap_or_default();
                    problems.push(Problem::at(
                        key.pos,
                        format!("duplicate key {text:?}{first}"),
                    ));
                    false
                } else {
                    seen.push((text, key.pos));
                    true
                }
            });
            for (_, value) in entries.iter_mut() {
                dedup_keys(value, problems);
            }
        }
        Kind::Null
        | Kind::Bool(_)
        | Kind::Int(_)
        | Kind::UInt(_)
        | Kind::Float(_)
        | Kind::Str(_) => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree(text: &str) -> Node {
        match parse_tree(text) {
            Ok(Some(node)) => node,
            other => panic!("expected a tree, got {other:?}"),
        }
    }

    fn entries(node: &Node) -> &[(Node, Node)] {
        match &node.kind {
            Kind::Map(entries) => entries,
            _ => panic!("expected a mapping, got {}", node.describe()),
        }
    }

    #[test]
    fn nodes_have_positions_and_scalars_their_text() {
        let root = tree("a: 1.90\nb:\n  - yes\n  - 'q'\n");
        let top = entries(&root);
        assert_eq!(top[0].0.pos, Some(Pos { line: 1, column: 1 }));
        assert_eq!(top[0].1.pos, Some(Pos { line: 1, column: 4 }));
        assert_eq!(top[0].1.scalar_text().as_deref(), Some("1.90"));
        let Kind::Seq(items) = &top[1].1.kind else {
            panic!("expected a list")
        };
        assert_eq!(items[0].pos, Some(Pos { line: 3, column: 5 }));
        assert_eq!(items[0].scalar_text().as_deref(), Some("yes"));
        assert_eq!(items[1].scalar_text().as_deref(), Some("q"));
    }

    #[test]
    fn empty_text_is_no_tree() {
        assert!(matches!(parse_tree(""), Ok(None)));
        assert!(matches!(parse_tree("# only a comment\n"), Ok(None)));
    }

    #[test]
    fn every_duplicate_key_is_reported_and_the_first_kept() {
        let mut root = tree("a: 1\nb: {x: 1, x: 2}\na: 3\na: 4\n");
        let mut problems = Vec::new();
        dedup_keys(&mut root, &mut problems);
        let shown: Vec<String> = problems.iter().map(ToString::to_string).collect();
        assert_eq!(
            shown,
            [
                r#"3:1: duplicate key "a" (first at line 1)"#,
                r#"4:1: duplicate key "a" (first at line 1)"#,
                r#"2:11: duplicate key "x" (first at line 2)"#,
            ]
        );
        let top = entries(&root);
        assert_eq!(top.len(), 2);
        assert_eq!(top[0].1.scalar_text().as_deref(), Some("1"));
    }
}
