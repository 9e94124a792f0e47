//! A step's `matrix:`: axes (each a non-empty list, or a template yielding
//! one), `include` and `exclude` (lists of mappings; `exclude` keys must be
//! axes). The combinations are computed when the step starts
//! (`crate::matrix`); here only what is known when the workflow is registered.

use serde_json::Value as Json;

use super::diagnostic::Code;
use super::fields::{self, Sink, quoted_list, suggest};
use super::step::{is_valid_step_id, valid_step_id_from};
use super::yaml::{Node, Value};
use crate::decide::FOR_EACH_ITEMS_MAX;
use crate::workflow::MatrixAxis;

/// Most axes in one `matrix`.
pub const MATRIX_AXES_MAX: usize = 16;

/// What a `matrix:` mapping holds, with the names templates may read as
/// `matrix.<name>` (the axes and the keys `include` adds).
#[derive(Debug, Default)]
pub(crate) struct Parsed {
    pub axes: Vec<MatrixAxis>,
    pub include: Vec<Json>,
    pub exclude: Vec<Json>,
    pub names: Vec<String>,
}

/// The matrix as far as it could be read, and whether it is valid (the
/// names are kept either way, for checking `matrix.<name>` references).
pub(crate) fn matrix(sink: &mut Sink, node: &Node) -> (Parsed, bool) {
    let Value::Map(entries) = &node.value else {
        let message = format!(
            "`matrix` must be a mapping from axis name to a list of values (plus `include`/`exclude`), found {}",
            node.value.kind()
        );
        sink.error(Code::InvalidMatrix, node.pos, message, None);
        return (Parsed::default(), false);
    };
    let mut parsed = Parsed::default();
    let mut valid = true;
    let mut static_count: Option<usize> = Some(1);
    let (mut include_node, mut exclude_node) = (None, None);
    for (key, value) in entries {
        let Some(name) = fields::plain_key(sink, key) else {
            valid = false;
            continue;
        };
        match name {
            "include" => include_node = Some(value),
            "exclude" => exclude_node = Some(value),
            _ if !is_valid_step_id(name) => {
                let hint = valid_step_id_from(name).map(|fixed| {
                    format!("templates read it as `matrix.<axis>`, where `-` or `.` would not parse; try `{fixed}`")
                });
                let message = format!("matrix axis `{name}` must match `[a-z][a-z0-9_]*`");
                sink.error(Code::InvalidMatrix, key.pos, message, hint);
                valid = false;
            }
            _ => {
                static_count = match &value.value {
                    Value::Seq(items) if !items.is_empty() => {
                        static_count.map(|count| count.saturating_mul(items.len()))
                    }
                    Value::String(text) if text.contains("{{") => None,
                    other => {
                        let message = format!(
                            "matrix axis `{name}` must be a non-empty list or a template yielding one, found {}",
                            match other {
                                Value::Seq(_) => "an empty list",
                                other => other.kind(),
                            }
                        );
                        sink.error(Code::InvalidMatrix, value.pos, message, None);
                        valid = false;
                        continue;
                    }
                };
                parsed.names.push(name.to_owned());
                parsed.axes.push(MatrixAxis {
                    name: name.to_owned(),
                    values: value.to_json(),
                });
            }
        }
    }
    if parsed.axes.len() > MATRIX_AXES_MAX {
        let message = format!(
            "`matrix` has {} axes, more than the limit of {MATRIX_AXES_MAX}",
            parsed.axes.len()
        );
        sink.error(Code::LimitExceeded, node.pos, message, None);
        valid = false;
    }
    if let Some(count) = static_count.filter(|count| *count > FOR_EACH_ITEMS_MAX) {
        let message = format!(
            "`matrix` has {count} combinations, more than the limit of {FOR_EACH_ITEMS_MAX}"
        );
        sink.error(Code::LimitExceeded, node.pos, message, None);
        valid = false;
    }
    if let Some(list) = include_node {
        for entry in mappings(sink, list, "include") {
            for (key, _) in entry_keys(entry) {
                if !parsed.names.iter().any(|name| name == key) {
                    parsed.names.push(key.to_owned());
                }
            }
            parsed.include.push(entry.to_json());
        }
    }
    if let Some(list) = exclude_node {
        let axes: Vec<&str> = parsed.axes.iter().map(|axis| axis.name.as_str()).collect();
        for entry in mappings(sink, list, "exclude") {
            for (key, pos) in entry_keys(entry) {
                if !axes.contains(&key) {
                    let hint = match suggest(key, axes.iter().copied()) {
                        Some(best) => format!("did you mean `{best}`?"),
                        None => format!("axes: {}", quoted_list(axes.iter().copied())),
                    };
                    let message = format!("`exclude` names `{key}`, which is not a matrix axis");
                    sink.error(Code::InvalidMatrix, pos, message, Some(hint));
                    valid = false;
                }
            }
            parsed.exclude.push(entry.to_json());
        }
    }
    if parsed.axes.is_empty() && parsed.include.is_empty() {
        sink.error(
            Code::InvalidMatrix,
            node.pos,
            "`matrix` needs at least one axis (or `include` entries)",
            Some("e.g. `matrix: { os: [linux, macos], node: [20, 22] }`".to_owned()),
        );
        valid = false;
    }
    (parsed, valid)
}

/// The entries of an `include`/`exclude` list; each must be a mapping.
fn mappings<'a>(sink: &mut Sink, node: &'a Node, what: &str) -> Vec<&'a Node> {
    let Value::Seq(items) = &node.value else {
        let message = format!(
            "`matrix.{what}` must be a list of mappings, found {}",
            node.value.kind()
        );
        sink.error(Code::InvalidMatrix, node.pos, message, None);
        return Vec::new();
    };
    items
        .iter()
        .filter(|item| {
            let is_map = matches!(item.value, Value::Map(_));
            if !is_map {
                let message = format!(
                    "each `matrix.{what}` entry must be a mapping of axis values, found {}",
                    item.value.kind()
                );
                sink.error(Code::InvalidMatrix, item.pos, message, None);
            }
            is_map
        })
        .collect()
}

fn entry_keys(entry: &Node) -> Vec<(&str, super::yaml::Pos)> {
    match &entry.value {
        Value::Map(entries) => entries
            .iter()
            .filter_map(|(key, _)| Some((key.text.as_deref()?, key.pos)))
            .collect(),
        _ => Vec::new(),
    }
}
