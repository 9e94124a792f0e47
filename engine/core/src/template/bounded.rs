//! Walks over values an expression built, each bounded by a byte budget.
//!
//! minijinja charges fuel for what it builds, but not for walking a result
//! afterwards: `[[1] * 100000000] * 100000000` is cheap to build (repetition
//! is lazy) and endless to print or convert. Every walk the engine makes over
//! a result goes through here and stops as soon as the JSON it stands for
//! would exceed the budget; shared parts are counted each time they appear,
//! as printing would.

use minijinja::value::{Value, ValueKind};
use serde_json::{Map, Number};

/// Nesting deeper than this is refused (JSON readers and the event log have limits too).
pub const VALUE_DEPTH_MAX: usize = 64;
/// The most a number takes in JSON, in bytes (`-1.7976931348623157e308`).
const NUMBER_BYTES_MAX: usize = 24;

/// Why a walk stopped.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Stop {
    /// The value stands for more JSON bytes than the budget.
    TooLarge,
    /// The value holds undefined somewhere.
    Undefined,
    /// Something that has no JSON form (a macro, a non-string key, bytes…), or nested too deep.
    Invalid(String),
}

/// A walk's remaining byte budget.
#[derive(Debug)]
pub(super) struct Budget {
    left: usize,
}

impl Budget {
    pub(super) fn new(bytes: usize) -> Budget {
        Budget { left: bytes }
    }

    pub(super) fn left(&self) -> usize {
        self.left
    }

    pub(super) fn spend(&mut self, bytes: usize) -> Result<(), Stop> {
        self.left = self.left.checked_sub(bytes).ok_or(Stop::TooLarge)?;
        Ok(())
    }
}

/// Converts `value` to JSON within `budget` (an upper bound of its encoded size).
pub(super) fn to_json(
    value: &Value,
    budget: &mut Budget,
    depth: usize,
) -> Result<serde_json::Value, Stop> {
    if depth > VALUE_DEPTH_MAX {
        return Err(Stop::Invalid(format!(
            "the value is nested deeper than {VALUE_DEPTH_MAX} levels"
        )));
    }
    match value.kind() {
        ValueKind::Undefined => Err(Stop::Undefined),
        ValueKind::None => budget.spend(4).map(|()| serde_json::Value::Null),
        ValueKind::Bool => budget
            .spend(5)
            .map(|()| serde_json::Value::Bool(value.is_true())),
        ValueKind::Number => {
            budget.spend(NUMBER_BYTES_MAX)?;
            Ok(number(value))
        }
        ValueKind::String => {
            let text = value.as_str().unwrap_or_default();
            budget.spend(string_bytes(text))?;
            Ok(serde_json::Value::String(text.to_owned()))
        }
        ValueKind::Seq | ValueKind::Iterable => {
            check_length(value, budget)?;
            budget.spend(2)?;
            let mut items = Vec::new();
            for item in iterate(value)? {
                budget.spend(1)?;
                items.push(to_json(&item, budget, depth + 1)?);
            }
            Ok(serde_json::Value::Array(items))
        }
        ValueKind::Map => {
            check_length(value, budget)?;
            budget.spend(2)?;
            let mut fields = Map::new();
            for key in iterate(value)? {
                let name = key_text(&key)?;
                budget.spend(string_bytes(&name) + 2)?;
                let field = value
                    .get_item(&key)
                    .map_err(|err| Stop::Invalid(err.to_string()))?;
                fields.insert(name, to_json(&field, budget, depth + 1)?);
            }
            Ok(serde_json::Value::Object(fields))
        }
        other => Err(Stop::Invalid(format!("a {other} has no JSON form"))),
    }
}

/// Spends what printing `value` would write, without building anything.
pub(super) fn measure(value: &Value, budget: &mut Budget, depth: usize) -> Result<(), Stop> {
    if depth > VALUE_DEPTH_MAX {
        return Err(Stop::Invalid(format!(
            "the value is nested deeper than {VALUE_DEPTH_MAX} levels"
        )));
    }
    match value.kind() {
        ValueKind::String => budget.spend(value.as_str().map_or(0, str::len)),
        ValueKind::Seq | ValueKind::Iterable | ValueKind::Map => {
            check_length(value, budget)?;
            budget.spend(2)?;
            let is_map = value.kind() == ValueKind::Map;
            for item in iterate(value)? {
                budget.spend(2)?;
                measure(&item, budget, depth + 1)?;
                if is_map {
                    let field = value.get_item(&item).unwrap_or_default();
                    budget.spend(2)?;
                    measure(&field, budget, depth + 1)?;
                }
            }
            Ok(())
        }
        _ => budget.spend(NUMBER_BYTES_MAX),
    }
}

/// A container that says it is longer than the budget fails before its first item.
fn check_length(value: &Value, budget: &Budget) -> Result<(), Stop> {
    match value.len() {
        Some(len) if len > budget.left => Err(Stop::TooLarge),
        _ => Ok(()),
    }
}

fn iterate(value: &Value) -> Result<impl Iterator<Item = Value>, Stop> {
    value
        .try_iter()
        .map_err(|err| Stop::Invalid(err.to_string()))
}

fn key_text(key: &Value) -> Result<String, Stop> {
    match key.kind() {
        ValueKind::String => Ok(key.as_str().unwrap_or_default().to_owned()),
        ValueKind::Number if key.as_i64().is_some() => Ok(key.to_string()),
        other => Err(Stop::Invalid(format!(
            "a map key must be a string or an integer to become JSON, not a {other}"
        ))),
    }
}

fn number(value: &Value) -> serde_json::Value {
    if let Some(int) = value.as_i64() {
        return serde_json::Value::from(int);
    }
    if let Ok(unsigned) = u64::try_from(value.clone()) {
        return serde_json::Value::from(unsigned);
    }
    f64::try_from(value.clone())
        .ok()
        .and_then(Number::from_f64)
        .map_or(serde_json::Value::Null, serde_json::Value::Number)
}

/// The encoded length of `text` as a JSON string, quotes included.
pub(super) fn string_bytes(text: &str) -> usize {
    2 + text
        .bytes()
        .map(|byte| match byte {
            b'"' | b'\\' | b'\n' | b'\r' | b'\t' | 0x08 | 0x0c => 2,
            0..=0x1f => 6,
            _ => 1,
        })
        .sum::<usize>()
}
