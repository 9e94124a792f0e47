//! The event payload schemas (`schemas/events/*.schema.json`, generated from
//! the core's types by `event::schemas()`), compiled once per process: by
//! `jsonschema` (the verdict and its message) and, where it can, by
//! [`crate::compiled`] (the verifier's fast path over a parsed tape).

use std::collections::HashMap;
use std::sync::OnceLock;

use engine::core::event::{EVENT_SCHEMA_VERSION, Event};
use serde_json::Value;

use crate::compiled::Compiled;
use crate::tape::Tape;
use crate::verify::Fault;

/// Most schema errors named in one report.
pub const SCHEMA_ERRORS_SHOWN_MAX: usize = 3;

/// The ranges the generator's integer formats name (`"format": "uint32"`
/// on an `attempt`). JSON Schema validators ignore formats they do not know,
/// so without this `attempt` = 2^32 passed; `docs/export-format.md` makes
/// the ranges normative. `int64`/`uint64` need nothing: every integer in a
/// hashed object is within ±(2^53 − 1) anyway.
pub const INTEGER_FORMAT_RANGES: &[(&str, i64, i64)] = &[
    ("int8", i8::MIN as i64, i8::MAX as i64),
    ("int16", i16::MIN as i64, i16::MAX as i64),
    ("int32", i32::MIN as i64, i32::MAX as i64),
    ("uint8", 0, u8::MAX as i64),
    ("uint16", 0, u16::MAX as i64),
    ("uint32", 0, u32::MAX as i64),
];

/// Adds `minimum`/`maximum` beside every integer `format` of
/// [`INTEGER_FORMAT_RANGES`] (keeping a stricter bound already there).
fn bound_integer_formats(schema: &mut Value) {
    match schema {
        Value::Object(object) => {
            let range = object.get("format").and_then(Value::as_str).and_then(|format| {
                INTEGER_FORMAT_RANGES
                    .iter()
                    .find(|(name, _, _)| *name == format)
            });
            if let Some((_, low, high)) = range {
                let low = object.get("minimum").and_then(Value::as_i64).map_or(*low, |m| m.max(*low));
                let high = object.get("maximum").and_then(Value::as_i64).map_or(*high, |m| m.min(*high));
                object.insert("minimum".to_owned(), Value::from(low));
                object.insert("maximum".to_owned(), Value::from(high));
            }
            object.values_mut().for_each(bound_integer_formats);
        }
        Value::Array(items) => items.iter_mut().for_each(bound_integer_formats),
        _ => {}
    }
}

/// A compiled validator per event type of schema version 1.
#[derive(Debug)]
pub struct Schemas {
    validators: HashMap<&'static str, jsonschema::Validator>,
    fast: HashMap<&'static str, Compiled>,
}

impl Schemas {
    /// The process-wide compiled set.
    pub fn get() -> &'static Schemas {
        static SCHEMAS: OnceLock<Schemas> = OnceLock::new();
        SCHEMAS.get_or_init(|| {
            let schemas: Vec<(&'static str, Value)> = Event::schemas()
                .into_iter()
                .filter_map(|(event_type, schema)| {
                    let mut schema = serde_json::to_value(&schema).ok()?;
                    bound_integer_formats(&mut schema);
                    Some((event_type, schema))
                })
                .collect();
            let fast = schemas
                .iter()
                .filter_map(|(event_type, schema)| Some((*event_type, Compiled::new(schema)?)))
                .collect();
            let validators = schemas
                .into_iter()
                .filter_map(|(event_type, schema)| {
                    // The engine's tests compile every generated schema, so
                    // a failure here cannot happen with a released build;
                    // an unknown type is then reported for that event.
                    let validator = jsonschema::options()
                        .should_validate_formats(true)
                        .build(&schema)
                        .ok()?;
                    Some((event_type, validator))
                })
                .collect();
            Schemas { validators, fast }
        })
    }

    /// The fast path's check of a payload parsed onto `tape`: `true` when it
    /// is valid, `false` when invalid or not sure (then ask [`Schemas::check`]).
    pub fn accepts(&self, event_type: &str, version: u32, tape: &Tape) -> bool {
        version == EVENT_SCHEMA_VERSION
            && self.validators.contains_key(event_type)
            && self
                .fast
                .get(event_type)
                .is_some_and(|compiled| compiled.accepts(tape))
    }

    /// How many event types the fast path can check (the others always go
    /// to `jsonschema`); the tests expect all of them.
    #[cfg(feature = "internals")]
    pub fn compiled_types(&self) -> usize {
        self.fast.len()
    }

    /// Checks one payload against the schema of its type and version.
    pub fn check(&self, event_type: &str, version: u32, payload: &Value) -> Result<(), Fault> {
        let fault = |detail: String| Fault::Schema {
            event_type: event_type.to_owned(),
            version,
            detail,
        };
        if version != EVENT_SCHEMA_VERSION {
            return Err(fault(format!(
                "this build knows schema version {EVENT_SCHEMA_VERSION} only"
            )));
        }
        let Some(validator) = self.validators.get(event_type) else {
            return Err(fault(format!(
                "unknown event type; known: {}",
                Event::TYPES.join(", ")
            )));
        };
        if validator.is_valid(payload) {
            return Ok(());
        }
        let errors: Vec<String> = validator
            .iter_errors(payload)
            .take(SCHEMA_ERRORS_SHOWN_MAX)
            .map(|error| format!("{} at `{}`", error, error.instance_path()))
            .collect();
        Err(fault(errors.join("; ")))
    }
}
