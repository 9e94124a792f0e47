//! YAML source text to a positioned generic tree, with hard bounds on size,
//! nesting, node count and alias expansion so hostile input fails fast.
//!
//! serde-saphyr does the YAML work (scanner, scalar typing, anchors, merge
//! keys, budgets). We deserialize into our own [`Node`] tree, each node
//! wrapped in `Spanned`, and let the caller walk it: a typed serde target
//! would stop at the first problem, the tree lets us report all of them.

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_saphyr::Spanned;
use serde_saphyr::options::{AliasLimits, DuplicateKeyPolicy, NonFiniteFloatPolicy};

/// Largest workflow source accepted, in bytes.
pub const SOURCE_BYTES_MAX: usize = 1024 * 1024;
/// Deepest nesting of YAML collections.
pub const YAML_DEPTH_MAX: usize = 48;
/// Most YAML nodes (scalars, sequences, mappings) in one document.
pub const YAML_NODES_MAX: usize = 200_000;
/// Most parser events (including those replayed through aliases).
pub const YAML_EVENTS_MAX: usize = 400_000;
/// Most aliases (`*name`) in one document.
pub const YAML_ALIASES_MAX: usize = 1_000;
/// Most events replayed through aliases; this is what stops "billion laughs".
pub const YAML_ALIAS_REPLAYED_EVENTS_MAX: usize = 100_000;

/// A source position, 1-based; `line == 0` means unknown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Pos {
    pub line: u32,
    pub column: u32,
}

/// A YAML node and where it was written.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub value: Value,
    pub pos: Pos,
}

/// A mapping key. `text` is `None` for a key that is not a scalar (`? [a]: b`).
#[derive(Debug, Clone, PartialEq)]
pub struct Key {
    pub text: Option<String>,
    pub pos: Pos,
}

/// The generic YAML value with positioned children.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Bool(bool),
    Number(serde_json::Number),
    String(String),
    Seq(Vec<Node>),
    /// Entries in source order; duplicates are kept so the caller can report them.
    Map(Vec<(Key, Node)>),
}

/// Why the source is not a YAML document we can read.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error("{message}")]
    Syntax { message: String, pos: Pos },
    #[error("{message}")]
    Limit { message: String, pos: Pos },
}

/// Parses one YAML document into a positioned tree.
pub fn parse(source: &str) -> Result<Node, Error> {
    if source.len() > SOURCE_BYTES_MAX {
        return Err(Error::Limit {
            message: format!(
                "the source is {} bytes, more than the limit of {SOURCE_BYTES_MAX}",
                source.len()
            ),
            pos: Pos { line: 1, column: 1 },
        });
    }
    if source.trim().is_empty() {
        return Ok(Node {
            value: Value::Null,
            pos: Pos { line: 1, column: 1 },
        });
    }
    let root: Spanned<Value> =
        serde_saphyr::from_str_with_options(source, options()).map_err(convert_error)?;
    Ok(node(root))
}

impl Value {
    /// The kind of value, for "expected X, found Y" messages.
    pub fn kind(&self) -> &'static str {
        match self {
            Value::Null => "null",
            Value::Bool(_) => "a boolean",
            Value::Number(_) => "a number",
            Value::String(_) => "a string",
            Value::Seq(_) => "a list",
            Value::Map(_) => "a mapping",
        }
    }
}

impl Node {
    /// The plain JSON value of this subtree (duplicate keys: the last one wins,
    /// the caller has already reported them; non-scalar keys are dropped).
    pub fn to_json(&self) -> serde_json::Value {
        match &self.value {
            Value::Null => serde_json::Value::Null,
            Value::Bool(flag) => serde_json::Value::Bool(*flag),
            Value::Number(number) => serde_json::Value::Number(number.clone()),
            Value::String(text) => serde_json::Value::String(text.clone()),
            Value::Seq(items) => {
                serde_json::Value::Array(items.iter().map(Node::to_json).collect())
            }
            Value::Map(entries) => serde_json::Value::Object(
                entries
                    .iter()
                    .filter_map(|(key, value)| Some((key.text.clone()?, value.to_json())))
                    .collect(),
            ),
        }
    }
}

fn options() -> serde_saphyr::Options {
    let mut budget = serde_saphyr::Budget::default();
    budget.max_reader_input_bytes = Some(SOURCE_BYTES_MAX);
    budget.max_depth = YAML_DEPTH_MAX;
    budget.flow_nesting_limit = YAML_DEPTH_MAX;
    budget.max_nodes = YAML_NODES_MAX;
    budget.max_events = YAML_EVENTS_MAX;
    budget.max_aliases = YAML_ALIASES_MAX;
    budget.max_documents = 1;
    let mut alias_limits = AliasLimits::default();
    alias_limits.max_total_replayed_events = YAML_ALIAS_REPLAYED_EVENTS_MAX;
    alias_limits.max_replay_stack_depth = YAML_DEPTH_MAX;
    serde_saphyr::options! {
        budget: Some(budget),
        // Duplicates reach our visitor so that every one of them is reported.
        duplicate_keys: DuplicateKeyPolicy::PassThrough,
        alias_limits: alias_limits,
        // `no`, `on`, `yes` stay strings (the YAML 1.1 "Norway problem").
        strict_booleans: true,
        // JSON has no NaN or infinity; keep the spelling rather than failing.
        non_finite_float_policy: NonFiniteFloatPolicy::AsString,
        emit_comments: false,
    }
}

fn position(location: serde_saphyr::Location) -> Pos {
    Pos {
        line: u32::try_from(location.line()).unwrap_or(u32::MAX),
        column: u32::try_from(location.column()).unwrap_or(u32::MAX),
    }
}

fn node(spanned: Spanned<Value>) -> Node {
    Node {
        value: spanned.value,
        pos: position(spanned.referenced),
    }
}

fn convert_error(error: serde_saphyr::Error) -> Error {
    let pos = error
        .location()
        .map(position)
        .unwrap_or(Pos { line: 1, column: 1 });
    let pos = if pos.line == 0 {
        Pos { line: 1, column: 1 }
    } else {
        pos
    };
    let message = first_line(&error.without_snippet().to_string());
    let lowered = message.to_lowercase();
    let is_limit = [
        "budget", "limit", "exceed", "too many", "too deep", "nesting",
    ]
    .iter()
    .any(|word| lowered.contains(word));
    if is_limit {
        Error::Limit { message, pos }
    } else {
        Error::Syntax { message, pos }
    }
}

/// The first line of serde-saphyr's message without its " at line L, column C"
/// suffix: the diagnostic carries the position itself.
fn first_line(text: &str) -> String {
    let line = text.lines().next().unwrap_or("invalid YAML");
    let line = line.find(" at line ").map_or(line, |end| &line[..end]);
    line.trim().to_owned()
}

impl<'de> Deserialize<'de> for Value {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(ValueVisitor)
    }
}

struct ValueVisitor;

impl<'de> Visitor<'de> for ValueVisitor {
    type Value = Value;

    fn expecting(&self, formatter: &mut std::fmt::Formatter) -> std::fmt::Result {
        formatter.write_str("any YAML value")
    }

    fn visit_unit<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        Value::deserialize(deserializer)
    }

    fn visit_bool<E: de::Error>(self, flag: bool) -> Result<Value, E> {
        Ok(Value::Bool(flag))
    }

    fn visit_i64<E: de::Error>(self, number: i64) -> Result<Value, E> {
        Ok(Value::Number(number.into()))
    }

    fn visit_u64<E: de::Error>(self, number: u64) -> Result<Value, E> {
        Ok(Value::Number(number.into()))
    }

    fn visit_i128<E: de::Error>(self, number: i128) -> Result<Value, E> {
        match i64::try_from(number) {
            Ok(small) => Ok(Value::Number(small.into())),
            Err(_) => Ok(Value::String(number.to_string())),
        }
    }

    fn visit_u128<E: de::Error>(self, number: u128) -> Result<Value, E> {
        match u64::try_from(number) {
            Ok(small) => Ok(Value::Number(small.into())),
            Err(_) => Ok(Value::String(number.to_string())),
        }
    }

    fn visit_f64<E: de::Error>(self, number: f64) -> Result<Value, E> {
        Ok(serde_json::Number::from_f64(number)
            .map(Value::Number)
            .unwrap_or_else(|| Value::String(number.to_string())))
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<Value, E> {
        Ok(Value::String(text.to_owned()))
    }

    fn visit_string<E: de::Error>(self, text: String) -> Result<Value, E> {
        Ok(Value::String(text))
    }

    fn visit_bytes<E: de::Error>(self, bytes: &[u8]) -> Result<Value, E> {
        Ok(Value::String(String::from_utf8_lossy(bytes).into_owned()))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<Spanned<Value>>()? {
            items.push(node(item));
        }
        Ok(Value::Seq(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut entries = Vec::new();
        while let Some(key) = map.next_key::<Spanned<Value>>()? {
            let value = map.next_value::<Spanned<Value>>()?;
            let text = match key.value {
                Value::String(text) => Some(text),
                Value::Number(number) => Some(number.to_string()),
                Value::Bool(flag) => Some(flag.to_string()),
                Value::Null => Some("null".to_owned()),
                Value::Seq(_) | Value::Map(_) => None,
            };
            let key = Key {
                text,
                pos: position(key.referenced),
            };
            entries.push((key, node(value)));
        }
        Ok(Value::Map(entries))
    }
}
