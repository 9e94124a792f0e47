//! JSON Schema `default`s applied to a run input before it is checked and
//! recorded in `run.started`: what the run sees is what the log holds, so a
//! replay never re-applies a schema (which a new version could change).
//!
//! The rule, as JSON Schema tools that fill defaults apply it: a missing
//! input (`null`) takes the schema's top-level `default`, or becomes `{}` when
//! the schema is an object schema with defaults in its `properties`; a
//! property missing from an object takes its subschema's `default`; present
//! objects are filled the same way, level by level. Only `properties` is
//! followed (not `$ref`, `allOf`, `if`/`then`, `items`): a default behind
//! those is not applied (docs/workflow-language.md).

use serde_json::{Map, Value};

/// Deepest schema nesting followed; schemas come from YAML, itself at most
/// `YAML_DEPTH_MAX` (48) deep.
pub const DEFAULTS_DEPTH_MAX: usize = crate::dsl::YAML_DEPTH_MAX;

/// `input` with the defaults of `schema` filled in (unchanged without a schema).
pub fn with_defaults(schema: Option<&Value>, input: Value) -> Value {
    match schema {
        Some(schema) => fill(schema, input, 0),
        None => input,
    }
}

fn fill(schema: &Value, value: Value, depth: usize) -> Value {
    if depth >= DEFAULTS_DEPTH_MAX {
        return value;
    }
    let Some(schema) = schema.as_object() else {
        return value;
    };
    let properties = schema.get("properties").and_then(Value::as_object);
    let value = match value {
        Value::Null if depth == 0 => match schema.get("default") {
            Some(default) => default.clone(),
            None if properties.is_some_and(has_defaults) => Value::Object(Map::new()),
            None => Value::Null,
        },
        other => other,
    };
    let Some(properties) = properties else {
        return value;
    };
    let mut fields = match value {
        Value::Object(fields) => fields,
        other => return other,
    };
    for (name, subschema) in properties {
        match fields.get_mut(name) {
            Some(present) => *present = fill(subschema, present.take(), depth + 1),
            None => {
                if let Some(default) = subschema.get("default") {
                    let filled = fill(subschema, default.clone(), depth + 1);
                    fields.insert(name.clone(), filled);
                }
            }
        }
    }
    Value::Object(fields)
}

fn has_defaults(properties: &Map<String, Value>) -> bool {
    properties
        .values()
        .any(|subschema| subschema.get("default").is_some())
}
