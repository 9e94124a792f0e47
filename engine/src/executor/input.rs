//! Reading an attempt's rendered `with` (a JSON object) into typed fields, with
//! messages that name the field and never quote a value (values may hold secrets).

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use crate::core::dsl::duration::parse_duration_ms;

/// The `with` of an attempt as an object whose keys are all known to `kind`.
pub(crate) fn object<'a>(
    input: &'a Value,
    kind: &str,
    known: &[&str],
) -> Result<&'a Map<String, Value>, String> {
    let fields = match input {
        Value::Object(fields) => fields,
        Value::Null => return Err(format!("`with` is missing (uses {kind})")),
        other => {
            return Err(format!(
                "`with` must be a mapping (uses {kind}), found {}",
                kind_of(other)
            ));
        }
    };
    if let Some(unknown) = fields.keys().find(|key| !known.contains(&key.as_str())) {
        return Err(format!(
            "`with.{unknown}` is not a field of `uses: {kind}` (known: {})",
            known.join(", ")
        ));
    }
    Ok(fields)
}

/// A required string field.
pub(crate) fn required_string<'a>(
    fields: &'a Map<String, Value>,
    name: &str,
) -> Result<&'a str, String> {
    optional_string(fields, name)?.ok_or_else(|| format!("`with.{name}` is missing"))
}

/// An optional string field (`null` counts as absent).
pub(crate) fn optional_string<'a>(
    fields: &'a Map<String, Value>,
    name: &str,
) -> Result<Option<&'a str>, String> {
    match fields.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) => Ok(Some(text)),
        Some(other) => Err(format!(
            "`with.{name}` must be a string, found {}",
            kind_of(other)
        )),
    }
}

/// An optional map of names to scalar values (strings, numbers, booleans), as text.
pub(crate) fn text_map(
    fields: &Map<String, Value>,
    name: &str,
) -> Result<BTreeMap<String, String>, String> {
    let entries = match fields.get(name) {
        None | Some(Value::Null) => return Ok(BTreeMap::new()),
        Some(Value::Object(entries)) => entries,
        Some(other) => {
            return Err(format!(
                "`with.{name}` must be a mapping, found {}",
                kind_of(other)
            ));
        }
    };
    entries
        .iter()
        .map(|(key, value)| match scalar_text(value) {
            Some(text) => Ok((key.clone(), text)),
            None => Err(format!(
                "`with.{name}.{key}` must be a string, number or boolean, found {}",
                kind_of(value)
            )),
        })
        .collect()
}

/// An optional duration field: a duration string (`10s`, `1m30s`) or a number of ms.
pub(crate) fn optional_duration_ms(
    fields: &Map<String, Value>,
    name: &str,
) -> Result<Option<u64>, String> {
    match fields.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) => parse_duration_ms(text)
            .map(Some)
            .map_err(|err| format!("`with.{name}`: {err}")),
        Some(Value::Number(number)) => number
            .as_u64()
            .map(Some)
            .ok_or_else(|| format!("`with.{name}` must be a whole number of milliseconds")),
        Some(other) => Err(format!(
            "`with.{name}` must be a duration such as `10s`, found {}",
            kind_of(other)
        )),
    }
}

/// Strings, numbers and booleans as the text a header, query or variable carries.
pub(crate) fn scalar_text(value: &Value) -> Option<String> {
    match value {
        Value::String(text) => Some(text.clone()),
        Value::Number(number) => Some(number.to_string()),
        Value::Bool(flag) => Some(flag.to_string()),
        _ => None,
    }
}

pub(crate) fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a mapping",
    }
}
