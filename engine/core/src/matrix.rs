//! `matrix:` expansion, pure: the combinations of a step's axes (the first
//! axis varies slowest), minus `exclude`, plus `include`, with GitHub
//! Actions' rules, bounded by [`crate::decide::FOR_EACH_ITEMS_MAX`].
//!
//! `include`: an entry is merged into every combination whose values agree
//! with it on each of the entry's keys that is an axis (its other keys are
//! added, and may overwrite what an earlier `include` added); an entry that
//! agrees with no combination is added as a combination of its own.
//! `exclude`: a combination is left out when it agrees with an entry on all
//! of the entry's keys. `exclude` applies before `include`.

use serde_json::{Map, Value};

use crate::decide::FOR_EACH_ITEMS_MAX;
use crate::workflow::Matrix;

/// The template tree of a matrix, rendered once when the step starts: the
/// axes' values in order, `include` and `exclude`.
pub fn template(matrix: &Matrix) -> Value {
    serde_json::json!({
        "axes": matrix.axes.iter().map(|axis| axis.values.clone()).collect::<Vec<_>>(),
        "include": matrix.include,
        "exclude": matrix.exclude,
    })
}

/// The combinations of a rendered [`template`], each a mapping from axis
/// name (and included keys) to a value; an error says what is wrong.
pub fn combinations(matrix: &Matrix, rendered: &Value) -> Result<Vec<Value>, String> {
    let names: Vec<&str> = matrix.axes.iter().map(|axis| axis.name.as_str()).collect();
    let mut axes: Vec<&Vec<Value>> = Vec::with_capacity(names.len());
    let mut count: usize = 1;
    for (position, name) in names.iter().enumerate() {
        match rendered["axes"].get(position) {
            Some(Value::Array(values)) => {
                count = count.saturating_mul(values.len());
                axes.push(values);
            }
            other => {
                return Err(format!(
                    "matrix axis `{name}` must yield a list, got {}",
                    other.cloned().unwrap_or_default()
                ));
            }
        }
    }
    let include = entries(rendered, "include")?;
    let exclude = entries(rendered, "exclude")?;
    if count > FOR_EACH_ITEMS_MAX || count.saturating_add(include.len()) > FOR_EACH_ITEMS_MAX {
        return Err(format!(
            "`matrix` has more combinations than the limit of {FOR_EACH_ITEMS_MAX}"
        ));
    }
    let mut combos: Vec<Map<String, Value>> = if names.is_empty() {
        Vec::new()
    } else {
        vec![Map::new()]
    };
    for (name, values) in names.iter().zip(&axes) {
        combos = combos
            .into_iter()
            .flat_map(|combo| {
                values.iter().map(move |value| {
                    let mut next = combo.clone();
                    next.insert((*name).to_owned(), value.clone());
                    next
                })
            })
            .collect();
    }
    combos.retain(|combo| !exclude.iter().any(|entry| agrees(combo, entry, None)));
    let originals = combos.len();
    for entry in include {
        let mut merged = false;
        for combo in combos.iter_mut().take(originals) {
            if agrees(combo, entry, Some(&names)) {
                for (key, value) in entry {
                    if !names.contains(&key.as_str()) {
                        combo.insert(key.clone(), value.clone());
                    }
                }
                merged = true;
            }
        }
        if !merged {
            combos.push(entry.clone());
        }
    }
    Ok(combos.into_iter().map(Value::Object).collect())
}

fn entries<'a>(rendered: &'a Value, key: &str) -> Result<Vec<&'a Map<String, Value>>, String> {
    match &rendered[key] {
        Value::Null => Ok(Vec::new()),
        Value::Array(items) => items
            .iter()
            .map(|item| {
                item.as_object().ok_or_else(|| {
                    format!("each `matrix.{key}` entry must be a mapping, got {item}")
                })
            })
            .collect(),
        other => Err(format!("`matrix.{key}` must be a list, got {other}")),
    }
}

/// Whether `combo` has the entry's value for each of its keys (only its
/// keys that are `axes`, when given).
fn agrees(combo: &Map<String, Value>, entry: &Map<String, Value>, axes: Option<&[&str]>) -> bool {
    entry
        .iter()
        .filter(|(key, _)| axes.is_none_or(|axes| axes.contains(&key.as_str())))
        .all(|(key, value)| combo.get(key) == Some(value))
}
