//! A serde `Deserializer` over the node tree, the second stage of parsing. It gives the serde
//! types of `file` their positions (`At<T>`), reports every unknown key of a mapping rather than
//! the first, and lets one step fail (`Lenient<T>`) while the others are still read.
//! Knows nothing of steps: the types it fills are `file`'s.

use std::cell::RefCell;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::marker::PhantomData;

use serde::de::{
    self, Deserialize, DeserializeSeed, Deserializer, Error as _, Expected, IntoDeserializer,
    MapAccess, SeqAccess, Unexpected, Visitor,
};

use crate::error::{Problem, did_you_mean};
use crate::node::{Kind, Node, Pos};

/// Names that only our deserializer recognises; any other deserializer sees plain newtypes.
const AT_MARKER: &str = "$datakit_ci_pipeline::At";
const LENIENT_MARKER: &str = "$datakit_ci_pipeline::Lenient";
const SCALAR_MARKER: &str = "$datakit_ci_pipeline::ScalarText";

/// What one deserialization collects besides its result.
#[derive(Default)]
pub(crate) struct Collector {
    pub(crate) problems: RefCell<Vec<Problem>>,
}

/// Deserializes `T` from `node`, recording unknown keys (and failed `Lenient` parts) in `collector`.
pub(crate) fn from_node<'de, T: Deserialize<'de>>(
    node: &'de Node,
    collector: &'de Collector,
) -> Result<T, Problem> {
    T::deserialize(NodeDe {
        node,
        collector,
        key_pos: None,
    })
    .map_err(|e| Problem::at(e.pos.or(node.pos), e.message))
}

/// A value with the position of its node (1-based; `None` when unknown).
#[derive(Debug, Clone)]
pub(crate) struct At<T> {
    pub(crate) pos: Option<Pos>,
    pub(crate) value: T,
}

// Equality and hashing look at the value only, so `At<String>` can key a map.
impl<T: PartialEq> PartialEq for At<T> {
    fn eq(&self, other: &Self) -> bool {
        self.value == other.value
    }
}
impl<T: Eq> Eq for At<T> {}
impl<T: Hash> Hash for At<T> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.value.hash(state);
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for At<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct AtVisitor<T>(PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for AtVisitor<T> {
            type Value = At<T>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a value")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<At<T>, A::Error> {
                // Our deserializer sends (line, column, value); line 0 means unknown.
                let line: usize = seq.next_element()?.unwrap_or(0);
                let column: usize = seq.next_element()?.unwrap_or(0);
                let value = seq
                    .next_element()?
                    .ok_or_else(|| de::Error::custom("missing value"))?;
                let pos = (line > 0).then_some(Pos { line, column });
                Ok(At { pos, value })
            }
            fn visit_newtype_struct<D: Deserializer<'de>>(
                self,
                deserializer: D,
            ) -> Result<At<T>, D::Error> {
                Ok(At {
                    pos: None,
                    value: T::deserialize(deserializer)?,
                })
            }
        }
        deserializer.deserialize_newtype_struct(AT_MARKER, AtVisitor(PhantomData))
    }
}

impl<T: schemars::JsonSchema> schemars::JsonSchema for At<T> {
    fn inline_schema() -> bool {
        T::inline_schema()
    }
    fn schema_name() -> std::borrow::Cow<'static, str> {
        T::schema_name()
    }
    fn schema_id() -> std::borrow::Cow<'static, str> {
        T::schema_id()
    }
    fn json_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        T::json_schema(generator)
    }
}

/// A part that may fail on its own: its problem is recorded and the value is `None`, while
/// reading goes on with the next part. `Default` is `None`, for keys left out.
#[derive(Debug)]
pub(crate) struct Lenient<T>(pub(crate) Option<T>);

impl<T> Default for Lenient<T> {
    fn default() -> Self {
        Lenient(None)
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Lenient<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct LenientVisitor<T>(PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for LenientVisitor<T> {
            type Value = Lenient<T>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a value")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Lenient<T>, A::Error> {
                // Our deserializer ends the sequence early (after recording why) on failure.
                Ok(Lenient(seq.next_element()?))
            }
            fn visit_newtype_struct<D: Deserializer<'de>>(
                self,
                deserializer: D,
            ) -> Result<Lenient<T>, D::Error> {
                Ok(Lenient(Some(T::deserialize(deserializer)?)))
            }
        }
        deserializer.deserialize_newtype_struct(LENIENT_MARKER, LenientVisitor(PhantomData))
    }
}

impl<T: schemars::JsonSchema> schemars::JsonSchema for Lenient<T> {
    fn inline_schema() -> bool {
        T::inline_schema()
    }
    fn schema_name() -> std::borrow::Cow<'static, str> {
        T::schema_name()
    }
    fn schema_id() -> std::borrow::Cow<'static, str> {
        T::schema_id()
    }
    fn json_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        T::json_schema(generator)
    }
}

/// A scalar taken as text: a string as is, a number or boolean as written (`1.90` stays `1.90`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ScalarText(pub(crate) String);

impl<'de> Deserialize<'de> for ScalarText {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ScalarVisitor;
        impl<'de> Visitor<'de> for ScalarVisitor {
            type Value = ScalarText;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string, number or boolean")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<ScalarText, E> {
                Ok(ScalarText(v.to_owned()))
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<ScalarText, E> {
                Ok(ScalarText(v.to_string()))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<ScalarText, E> {
                Ok(ScalarText(v.to_string()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<ScalarText, E> {
                Ok(ScalarText(v.to_string()))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<ScalarText, E> {
                Ok(ScalarText(v.to_string()))
            }
            fn visit_newtype_struct<D: Deserializer<'de>>(
                self,
                deserializer: D,
            ) -> Result<ScalarText, D::Error> {
                deserializer.deserialize_any(self)
            }
        }
        deserializer.deserialize_newtype_struct(SCALAR_MARKER, ScalarVisitor)
    }
}

impl schemars::JsonSchema for ScalarText {
    fn inline_schema() -> bool {
        true
    }
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Scalar".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({ "type": ["string", "number", "boolean"] })
    }
}

/// A deserialization error, with the position of the node it is about once known.
#[derive(Debug)]
pub(crate) struct DeError {
    pos: Option<Pos>,
    message: String,
    /// A missing key is best shown at the key that holds the mapping, not inside it.
    missing: bool,
}

impl DeError {
    fn or_at(mut self, pos: Option<Pos>) -> Self {
        if self.pos.is_none() && !self.missing {
            self.pos = pos;
        }
        self
    }
    fn or_at_key(mut self, pos: Option<Pos>) -> Self {
        if self.pos.is_none() {
            self.pos = pos;
            self.missing = false;
        }
        self
    }
}

impl fmt::Display for DeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for DeError {}

impl de::Error for DeError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        DeError {
            pos: None,
            message: msg.to_string(),
            missing: false,
        }
    }
    fn invalid_type(unexpected: Unexpected<'_>, expected: &dyn Expected) -> Self {
        Self::custom(format_args!(
            "expected {}, found {}",
            expected_text(expected),
            unexpected_text(&unexpected)
        ))
    }
    fn invalid_value(unexpected: Unexpected<'_>, expected: &dyn Expected) -> Self {
        Self::invalid_type(unexpected, expected)
    }
    fn unknown_field(field: &str, expected: &'static [&'static str]) -> Self {
        Self::custom(format_args!(
            "unknown key {field:?}{}",
            did_you_mean(field, expected.iter().copied())
        ))
    }
    fn missing_field(field: &'static str) -> Self {
        DeError {
            pos: None,
            message: format!("missing key {field:?}"),
            missing: true,
        }
    }
}

/// serde names primitive types by their Rust names; users read YAML.
fn expected_text(expected: &dyn Expected) -> String {
    let text = expected.to_string();
    match text.as_str() {
        "u8" | "u16" | "u32" | "u64" | "i8" | "i16" | "i32" | "i64" | "usize" => {
            "a whole number".to_owned()
        }
        "a sequence" => "a list".to_owned(),
        "a map" => "a mapping".to_owned(),
        _ => text,
    }
}

fn unexpected_text(unexpected: &Unexpected<'_>) -> String {
    match unexpected {
        Unexpected::Bool(b) => format!("the boolean {b}"),
        Unexpected::Unsigned(n) => format!("the number {n}"),
        Unexpected::Signed(n) => format!("the number {n}"),
        Unexpected::Float(n) => format!("the number {n}"),
        Unexpected::Str(s) => format!("the string {s:?}"),
        Unexpected::Unit | Unexpected::Option => "nothing".to_owned(),
        Unexpected::Seq => "a list".to_owned(),
        Unexpected::Map => "a mapping".to_owned(),
        other => other.to_string(),
    }
}

/// The deserializer for one node.
#[derive(Clone, Copy)]
struct NodeDe<'de> {
    node: &'de Node,
    collector: &'de Collector,
    /// The position of the key this node is the value of, if any.
    key_pos: Option<Pos>,
}

impl<'de> NodeDe<'de> {
    fn child(self, node: &'de Node, key_pos: Option<Pos>) -> Self {
        NodeDe {
            node,
            collector: self.collector,
            key_pos,
        }
    }

    fn visit<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match &self.node.kind {
            Kind::Null => visitor.visit_unit(),
            Kind::Bool(b) => visitor.visit_bool(*b),
            Kind::Int(i) => visitor.visit_i64(*i),
            Kind::UInt(u) => visitor.visit_u64(*u),
            Kind::Float(f) => visitor.visit_f64(*f),
            Kind::Str(s) => visitor.visit_str(s),
            Kind::Seq(items) => visitor.visit_seq(SeqDe {
                de: self,
                items: items.iter(),
            }),
            Kind::Map(entries) => visitor.visit_map(MapDe {
                de: self,
                entries: entries.iter().collect::<Vec<_>>().into_iter(),
                value: None,
            }),
        }
    }
}

impl<'de> Deserializer<'de> for NodeDe<'de> {
    type Error = DeError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        let pos = self.node.pos;
        self.visit(visitor).map_err(|e| e.or_at(pos))
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        let pos = self.node.pos;
        match self.node.kind {
            Kind::Null => visitor.visit_none(),
            _ => visitor.visit_some(self),
        }
        .map_err(|e| e.or_at(pos))
    }

    fn deserialize_identifier<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        // Keys are names: `1:` is the name "1", never serde's field number 1.
        let pos = self.node.pos;
        match self.node.scalar_text() {
            Some(text) => visitor.visit_str(&text),
            None => self.visit(visitor),
        }
        .map_err(|e| e.or_at(pos))
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        let pos = self.node.pos;
        let entries = match &self.node.kind {
            Kind::Map(entries) => entries,
            // serde's derived structs would also take a list, field by field; ours are mappings.
            Kind::Seq(_) => return Err(DeError::invalid_type(Unexpected::Seq, &visitor).or_at(pos)),
            _ => return self.visit(visitor).map_err(|e| e.or_at(pos)),
        };
        // Every unknown key is reported here, and skipped, so that one typo does not hide the
        // next problem of the same mapping.
        let mut known = Vec::with_capacity(entries.len());
        for entry in entries {
            let name = entry.0.scalar_text().unwrap_or_default();
            if fields.contains(&name.as_str()) {
                known.push(entry);
            } else {
                self.collector.problems.borrow_mut().push(Problem::at(
                    entry.0.pos,
                    DeError::unknown_field(&name, fields).message,
                ));
            }
        }
        visitor
            .visit_map(MapDe {
                de: self,
                entries: known.into_iter(),
                value: None,
            })
            .map_err(|e| e.or_at(pos))
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        let pos = self.node.pos;
        match name {
            AT_MARKER => {
                let (line, column) = pos.map_or((0, 0), |p| (p.line, p.column));
                visitor.visit_seq(AtSeq {
                    de: self,
                    line: Some(line),
                    column: Some(column),
                    done: false,
                })
            }
            LENIENT_MARKER => visitor.visit_seq(LenientSeq {
                de: self,
                done: false,
            }),
            SCALAR_MARKER => match self.node.scalar_text() {
                Some(text) => visitor.visit_string(text),
                None => Err(DeError::custom(format_args!(
                    "expected a string, number or boolean, found {}",
                    self.node.describe()
                ))),
            },
            _ => visitor.visit_newtype_struct(self),
        }
        .map_err(|e| e.or_at(pos))
    }

    fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        // Where text is expected, a number or boolean is its text as written: `run: 3` is the
        // script "3", and `y` stays "y" though YAML 1.1 reads it as a boolean.
        let pos = self.node.pos;
        match self.node.scalar_text() {
            Some(text) => visitor.visit_str(&text),
            None => self.visit(visitor),
        }
        .map_err(|e| e.or_at(pos))
    }

    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_str(visitor)
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char
        bytes byte_buf unit unit_struct seq tuple tuple_struct map enum ignored_any
    }
}

struct SeqDe<'de> {
    de: NodeDe<'de>,
    items: std::slice::Iter<'de, Node>,
}

impl<'de> SeqAccess<'de> for SeqDe<'de> {
    type Error = DeError;
    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, DeError> {
        match self.items.next() {
            Some(item) => seed.deserialize(self.de.child(item, None)).map(Some),
            None => Ok(None),
        }
    }
}

struct MapDe<'de> {
    de: NodeDe<'de>,
    entries: std::vec::IntoIter<&'de (Node, Node)>,
    value: Option<&'de (Node, Node)>,
}

impl<'de> MapAccess<'de> for MapDe<'de> {
    type Error = DeError;
    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, DeError> {
        let Some(entry) = self.entries.next() else {
            return Ok(None);
        };
        self.value = Some(entry);
        seed.deserialize(self.de.child(&entry.0, None)).map(Some)
    }
    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, DeError> {
        let Some((key, value)) = self.value.take() else {
            return Err(DeError::custom("a value was asked for before its key"));
        };
        seed.deserialize(self.de.child(value, key.pos))
            .map_err(|e| e.or_at_key(key.pos))
    }
}

/// The (line, column, value) triple `At<T>` reads.
struct AtSeq<'de> {
    de: NodeDe<'de>,
    line: Option<usize>,
    column: Option<usize>,
    done: bool,
}

impl<'de> SeqAccess<'de> for AtSeq<'de> {
    type Error = DeError;
    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, DeError> {
        if let Some(line) = self.line.take() {
            return seed.deserialize(line.into_deserializer()).map(Some);
        }
        if let Some(column) = self.column.take() {
            return seed.deserialize(column.into_deserializer()).map(Some);
        }
        if self.done {
            return Ok(None);
        }
        self.done = true;
        seed.deserialize(self.de).map(Some)
    }
}

/// The one-element sequence `Lenient<T>` reads, empty when the element failed.
struct LenientSeq<'de> {
    de: NodeDe<'de>,
    done: bool,
}

impl<'de> SeqAccess<'de> for LenientSeq<'de> {
    type Error = DeError;
    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, DeError> {
        if self.done {
            return Ok(None);
        }
        self.done = true;
        match seed.deserialize(self.de) {
            Ok(value) => Ok(Some(value)),
            Err(error) => {
                let error = error.or_at_key(self.de.key_pos).or_at_key(self.de.node.pos);
                self.de
                    .collector
                    .problems
                    .borrow_mut()
                    .push(Problem::at(error.pos, error.message));
                Ok(None)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    use super::*;
    use crate::node::parse_tree;

    #[derive(Deserialize, Debug)]
    #[serde(deny_unknown_fields)]
    struct Sample {
        name: At<String>,
        #[serde(default)]
        count: Lenient<u32>,
        #[serde(default)]
        tags: Lenient<Vec<At<ScalarText>>>,
    }

    fn read(text: &str) -> (Result<Sample, Problem>, Vec<String>) {
        let node = match parse_tree(text) {
            Ok(Some(node)) => node,
            other => panic!("expected a tree, got {other:?}"),
        };
        let collector = Collector::default();
        let result = from_node::<Sample>(&node, &collector);
        let problems = collector
            .problems
            .take()
            .iter()
            .map(ToString::to_string)
            .collect();
        (result, problems)
    }

    #[test]
    fn values_carry_their_positions() {
        let (sample, problems) = read("name: x\ntags: [1.0, b]\n");
        let sample = sample.expect("a valid sample");
        assert!(problems.is_empty());
        assert_eq!(sample.name.value, "x");
        assert_eq!(sample.name.pos, Some(Pos { line: 1, column: 7 }));
        let tags = sample.tags.0.expect("tags");
        assert_eq!(tags[0].value, ScalarText("1.0".into()));
        assert_eq!(
            tags[1].pos,
            Some(Pos {
                line: 2,
                column: 13
            })
        );
    }

    #[test]
    fn unknown_keys_and_lenient_failures_are_all_collected() {
        let (sample, problems) = read("nam: y\nname: x\ncount: many\ntags: {a: 1}\nother: 2\n");
        let sample = sample.expect("the required key is there");
        assert!(sample.count.0.is_none());
        assert!(sample.tags.0.is_none());
        assert_eq!(
            problems,
            [
                r#"1:1: unknown key "nam", did you mean "name"?"#,
                r#"5:1: unknown key "other""#,
                r#"3:8: expected a whole number, found the string "many""#,
                "4:7: expected a list, found a mapping",
            ]
        );
    }

    #[test]
    fn a_missing_key_is_an_error_of_the_mapping() {
        let (sample, problems) = read("count: 1\n");
        let problem = sample.expect_err("name is required");
        assert_eq!(problem.to_string(), r#"1:1: missing key "name""#);
        assert!(problems.is_empty());
    }
}
