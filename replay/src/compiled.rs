//! The event schemas compiled into plain checks over a [`Tape`], for the
//! verifier's fast path. They cover the keywords the generated event
//! schemas use (`type`, `properties`, `required`, `enum`, `const`, `anyOf`,
//! a `oneOf` whose branches a required constant tells apart, `items`,
//! `minimum`, `maximum`, `format` `date-time` and `uuid`, `$ref` into `$defs`); a schema
//! with any other keyword is not compiled. A check is one-sided on purpose:
//! `true` means `jsonschema` accepts the payload too (the formats accept a
//! strict subset of what `jsonschema` accepts), `false` means "not sure",
//! and the caller asks `jsonschema` for the verdict and its message.

use std::collections::HashMap;

use serde_json::Value;

use crate::tape::{Node, Tape};

/// Most properties a compiled object schema names (one bit each).
pub const COMPILED_PROPERTIES_MAX: usize = 64;

/// A compiled schema: `rules[root]` checks the payload.
#[derive(Debug)]
pub struct Compiled {
    rules: Vec<Rule>,
    root: usize,
}

#[derive(Debug, Default)]
struct Rule {
    /// Bit set of [`TYPE_NULL`]…; `None`: any type.
    types: Option<u8>,
    /// Named properties and their rule (`None`: anything).
    properties: Vec<(String, Option<usize>)>,
    /// Bits of `properties` that must be present.
    required: u64,
    enumeration: Option<Vec<Value>>,
    any_of: Vec<usize>,
    items: Option<usize>,
    minimum: Option<f64>,
    maximum: Option<f64>,
    format: Option<Format>,
    reference: Option<usize>,
}

#[derive(Clone, Copy, Debug)]
enum Format {
    DateTime,
    Uuid,
}

const TYPE_NULL: u8 = 1;
const TYPE_BOOLEAN: u8 = 2;
const TYPE_INTEGER: u8 = 4;
const TYPE_NUMBER: u8 = 8;
const TYPE_STRING: u8 = 16;
const TYPE_ARRAY: u8 = 32;
const TYPE_OBJECT: u8 = 64;

/// Keywords that do not constrain an instance.
const ANNOTATIONS: &[&str] = &[
    "$schema",
    "$defs",
    "$comment",
    "title",
    "description",
    "default",
    "examples",
    "deprecated",
    "readOnly",
    "writeOnly",
];

/// Formats `jsonschema` does not know, hence never checks (the generator
/// writes them for integer widths).
const UNCHECKED_FORMATS: &[&str] = &[
    "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64", "uint", "int",
    "float", "double",
];

impl Compiled {
    /// `None` when the schema uses something this compiler does not cover.
    pub fn new(schema: &Value) -> Option<Compiled> {
        let mut compiler = Compiler {
            root: schema,
            rules: Vec::new(),
            defs: HashMap::new(),
        };
        let root = compiler.compile(schema)?;
        Some(Compiled {
            rules: compiler.rules,
            root,
        })
    }

    /// `true`: the payload (the value at `tape.nodes[0]`) is valid.
    /// `false`: invalid, or not sure.
    pub fn accepts(&self, tape: &Tape) -> bool {
        self.check(self.root, tape, 0)
    }

    fn check(&self, rule: usize, tape: &Tape, index: usize) -> bool {
        let (Some(rule), Some(node)) = (self.rules.get(rule), tape.nodes.get(index)) else {
            return false;
        };
        if let Some(types) = rule.types
            && types & type_bits(node) == 0
        {
            return false;
        }
        if let (Some(minimum), Node::Int(value)) = (rule.minimum, node)
            && (*value as f64) < minimum
        {
            return false;
        }
        if let (Some(maximum), Node::Int(value)) = (rule.maximum, node)
            && (*value as f64) > maximum
        {
            return false;
        }
        if let (Some(format), Node::Str(text)) = (rule.format, node) {
            let valid = match format {
                Format::DateTime => is_date_time(text),
                Format::Uuid => is_uuid(text),
            };
            if !valid {
                return false;
            }
        }
        if let Some(values) = &rule.enumeration
            && !values.iter().any(|value| equals(tape, index, value))
        {
            return false;
        }
        if let Node::Object { .. } = node
            && !self.check_members(rule, tape, index)
        {
            return false;
        }
        if let (Some(items), Node::Array { .. }) = (rule.items, node)
            && !tape
                .elements(index)
                .all(|element| self.check(items, tape, element))
        {
            return false;
        }
        if !rule.any_of.is_empty()
            && !rule
                .any_of
                .iter()
                .any(|branch| self.check(*branch, tape, index))
        {
            return false;
        }
        rule.reference
            .is_none_or(|reference| self.check(reference, tape, index))
    }

    fn check_members(&self, rule: &Rule, tape: &Tape, index: usize) -> bool {
        let mut seen = 0u64;
        for (key, value) in tape.members(index) {
            // The first byte tells most names apart without a call to memcmp.
            let same = |name: &String| {
                name.as_bytes().first() == key.as_bytes().first() && name == key
            };
            let Some(n) = rule.properties.iter().position(|(name, _)| same(name)) else {
                continue;
            };
            seen |= 1 << n;
            if let Some((_, Some(property))) = rule.properties.get(n)
                && !self.check(*property, tape, value)
            {
                return false;
            }
        }
        seen & rule.required == rule.required
    }
}

struct Compiler<'s> {
    root: &'s Value,
    rules: Vec<Rule>,
    /// `$defs` names already compiled (or being compiled) and their rule.
    defs: HashMap<String, usize>,
}

/// Whether every branch allows only the values it lists (`enum` or
/// `const`) and no value is listed by two branches: then no payload can
/// match two branches (a plain enum beside a documented variant).
fn disjoint_values(branches: &[Value]) -> bool {
    let mut seen: Vec<&Value> = Vec::new();
    branches.iter().all(|branch| {
        let values: Vec<&Value> = match (
            branch.get("enum").and_then(Value::as_array),
            branch.get("const"),
        ) {
            (Some(values), None) => values.iter().collect(),
            (None, Some(value)) => vec![value],
            _ => return false,
        };
        values.into_iter().all(|value| {
            let new = !seen.contains(&value);
            seen.push(value);
            new
        })
    })
}

/// Whether every branch is an object schema that requires one property,
/// the same in each, to equal a constant of its own: then no payload can
/// match two branches.
fn discriminated(branches: &[Value]) -> bool {
    let constant = |branch: &Value, name: &str| -> Option<Value> {
        let required = branch.get("required")?.as_array()?;
        if !required.iter().any(|field| field.as_str() == Some(name)) {
            return None;
        }
        branch.get("properties")?.get(name)?.get("const").cloned()
    };
    let Some(first) = branches.first().and_then(|branch| branch.get("properties")) else {
        return false;
    };
    let Some(properties) = first.as_object() else {
        return false;
    };
    properties.keys().any(|name| {
        let mut seen = Vec::new();
        branches.iter().all(|branch| match constant(branch, name) {
            Some(value) if !seen.contains(&value) => {
                seen.push(value);
                true
            }
            _ => false,
        })
    })
}

impl Compiler<'_> {
    fn compile(&mut self, schema: &Value) -> Option<usize> {
        let index = self.rules.len();
        self.rules.push(Rule::default());
        let object = match schema {
            Value::Bool(true) => return Some(index),
            Value::Object(object) => object,
            _ => return None,
        };
        let mut rule = Rule::default();
        for (keyword, value) in object {
            match keyword.as_str() {
                "type" => rule.types = Some(types(value)?),
                "properties" => {
                    for (name, property) in value.as_object()? {
                        let property = self.compile(property)?;
                        rule.properties.push((name.clone(), Some(property)));
                    }
                }
                "required" => {} // below, once `properties` is known
                "enum" if rule.enumeration.is_none() => {
                    rule.enumeration = Some(value.as_array()?.clone());
                }
                "const" if rule.enumeration.is_none() => {
                    rule.enumeration = Some(vec![value.clone()]);
                }
                // Branches told apart by a required constant (a tagged enum),
                // or each a list of values no other branch lists, cannot
                // match together: `oneOf` is then `anyOf`.
                "oneOf"
                    if discriminated(value.as_array()?)
                        || disjoint_values(value.as_array()?) =>
                {
                    for branch in value.as_array()? {
                        let branch = self.compile(branch)?;
                        rule.any_of.push(branch);
                    }
                }
                "anyOf" => {
                    for branch in value.as_array()? {
                        let branch = self.compile(branch)?;
                        rule.any_of.push(branch);
                    }
                }
                "items" => rule.items = Some(self.compile(value)?),
                "minimum" => rule.minimum = Some(value.as_f64()?),
                "maximum" => rule.maximum = Some(value.as_f64()?),
                "format" => match value.as_str()? {
                    "date-time" => rule.format = Some(Format::DateTime),
                    "uuid" => rule.format = Some(Format::Uuid),
                    other if UNCHECKED_FORMATS.contains(&other) => {}
                    _ => return None,
                },
                "$ref" => rule.reference = Some(self.reference(value.as_str()?)?),
                other if ANNOTATIONS.contains(&other) => {}
                _ => return None,
            }
        }
        if let Some(required) = object.get("required") {
            for name in required.as_array()? {
                let name = name.as_str()?;
                let n = match rule.properties.iter().position(|(known, _)| known == name) {
                    Some(n) => n,
                    None => {
                        rule.properties.push((name.to_owned(), None));
                        rule.properties.len() - 1
                    }
                };
                rule.required |= 1 << n;
            }
        }
        if rule.properties.len() > COMPILED_PROPERTIES_MAX {
            return None;
        }
        self.rules[index] = rule;
        Some(index)
    }

    fn reference(&mut self, reference: &str) -> Option<usize> {
        let name = reference.strip_prefix("#/$defs/")?;
        if let Some(index) = self.defs.get(name) {
            return Some(*index);
        }
        // Reserve the index first so that a recursive definition ends.
        let index = self.rules.len();
        self.rules.push(Rule::default());
        self.defs.insert(name.to_owned(), index);
        let schema = self.root.get("$defs")?.get(name)?;
        let compiled = self.compile(schema)?;
        self.rules[index] = Rule {
            reference: Some(compiled),
            ..Rule::default()
        };
        Some(index)
    }
}

fn types(value: &Value) -> Option<u8> {
    let one = |name: &str| match name {
        "null" => Some(TYPE_NULL),
        "boolean" => Some(TYPE_BOOLEAN),
        "integer" => Some(TYPE_INTEGER),
        "number" => Some(TYPE_NUMBER),
        "string" => Some(TYPE_STRING),
        "array" => Some(TYPE_ARRAY),
        "object" => Some(TYPE_OBJECT),
        _ => None,
    };
    match value {
        Value::String(name) => one(name),
        Value::Array(names) => names
            .iter()
            .try_fold(0, |bits, name| Some(bits | one(name.as_str()?)?)),
        _ => None,
    }
}

fn type_bits(node: &Node) -> u8 {
    match node {
        Node::Null => TYPE_NULL,
        Node::Bool(_) => TYPE_BOOLEAN,
        // The tape holds integers only: each is also a number.
        Node::Int(_) => TYPE_INTEGER | TYPE_NUMBER,
        Node::Str(_) | Node::Key(_) => TYPE_STRING,
        Node::Array { .. } => TYPE_ARRAY,
        Node::Object { .. } => TYPE_OBJECT,
    }
}

/// JSON equality of the value at `index` with `value`.
fn equals(tape: &Tape, index: usize, value: &Value) -> bool {
    match (tape.nodes.get(index), value) {
        (Some(Node::Null), Value::Null) => true,
        (Some(Node::Bool(a)), Value::Bool(b)) => a == b,
        (Some(Node::Int(a)), Value::Number(b)) => {
            b.as_i64() == Some(*a) || (b.is_f64() && b.as_f64() == Some(*a as f64))
        }
        (Some(Node::Str(a)), Value::String(b)) => a == b,
        (Some(Node::Array { len, .. }), Value::Array(items)) => {
            *len as usize == items.len()
                && tape
                    .elements(index)
                    .zip(items)
                    .all(|(element, item)| equals(tape, element, item))
        }
        (Some(Node::Object { len, .. }), Value::Object(map)) => {
            *len as usize == map.len()
                && tape
                    .members(index)
                    .all(|(key, member)| map.get(key).is_some_and(|v| equals(tape, member, v)))
        }
        _ => false,
    }
}

/// `YYYY-MM-DDTHH:MM:SS[.fraction]Z` naming a real day, hour ≤ 23, minute
/// and second ≤ 59: a subset of RFC 3339 date-times (no offsets, no leap
/// second, no lowercase), each of which `jsonschema` accepts.
pub fn is_date_time(text: &str) -> bool {
    let bytes = text.as_bytes();
    let Some((head, rest)) = bytes.split_at_checked(19) else {
        return false;
    };
    let digits = |range: std::ops::Range<usize>| -> Option<u32> {
        head.get(range)?.iter().try_fold(0u32, |n, b| {
            b.is_ascii_digit().then(|| n * 10 + u32::from(b - b'0'))
        })
    };
    let shape = head[4] == b'-'
        && head[7] == b'-'
        && head[10] == b'T'
        && head[13] == b':'
        && head[16] == b':';
    let fields = (
        digits(0..4),
        digits(5..7),
        digits(8..10),
        digits(11..13),
        digits(14..16),
        digits(17..19),
    );
    let (Some(year), Some(month), Some(day), Some(hour), Some(minute), Some(second)) = fields
    else {
        return false;
    };
    let fraction_ok = match rest {
        [b'Z'] => true,
        [b'.', fraction @ .., b'Z'] => {
            !fraction.is_empty() && fraction.iter().all(u8::is_ascii_digit)
        }
        _ => false,
    };
    shape
        && fraction_ok
        && hour <= 23
        && minute <= 59
        && second <= 59
        && i32::try_from(year)
            .ok()
            .and_then(|year| chrono::NaiveDate::from_ymd_opt(year, month, day))
            .is_some()
}

/// Lowercase hyphenated `8-4-4-4-12` hex digits (a subset of what
/// `jsonschema` accepts as `uuid`).
pub fn is_uuid(text: &str) -> bool {
    let bytes = text.as_bytes();
    bytes.len() == 36
        && bytes.iter().enumerate().all(|(n, b)| match n {
            8 | 13 | 18 | 23 => *b == b'-',
            _ => b.is_ascii_digit() || (b'a'..=b'f').contains(b),
        })
}
