//! The template scope of a step or of the run's output, the secrets that go
//! into it, and the redaction that keeps secret values out of every event.
//!
//! Secrets are rendered into the executor's copy only; whatever the core
//! records (inputs, outputs of pure steps, errors, the run output) passes
//! through [`Secrets::redact`], which replaces every occurrence of every
//! secret value with `***`, also inside longer strings (`Bearer <token>`).

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value, json};

use crate::core::state::RunState;
use crate::core::workflow::Workflow;

/// What a secret value is replaced with in events.
pub const REDACTED: &str = "***";

/// Secret values by name (`secrets.NAME` in templates). Its `Debug` shows names only.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secrets {
    values: BTreeMap<String, String>,
}

impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set().entries(self.values.keys()).finish()
    }
}

impl<K: Into<String>, V: Into<String>> FromIterator<(K, V)> for Secrets {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        Secrets {
            values: iter
                .into_iter()
                .map(|(name, value)| (name.into(), value.into()))
                .collect(),
        }
    }
}

impl Secrets {
    pub fn none() -> Secrets {
        Secrets::default()
    }

    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// Replaces every occurrence of every (non-empty) secret value in the
    /// strings of `value` with `***`. Object keys are left alone.
    pub fn redact(&self, value: Value) -> Value {
        if self.values.values().all(String::is_empty) {
            return value;
        }
        match value {
            Value::String(text) => Value::String(self.redact_text(&text)),
            Value::Array(items) => {
                Value::Array(items.into_iter().map(|item| self.redact(item)).collect())
            }
            Value::Object(fields) => Value::Object(
                fields
                    .into_iter()
                    .map(|(key, field)| (key, self.redact(field)))
                    .collect(),
            ),
            other => other,
        }
    }

    pub fn redact_text(&self, text: &str) -> String {
        // Longest first, so a secret that contains another is replaced whole.
        let mut secrets: Vec<&String> = self.values.values().filter(|v| !v.is_empty()).collect();
        secrets.sort_by_key(|secret| std::cmp::Reverse(secret.len()));
        let mut text = text.to_owned();
        for secret in secrets {
            if text.contains(secret.as_str()) {
                text = text.replace(secret.as_str(), REDACTED);
            }
        }
        text
    }

    fn to_value(&self) -> Value {
        Value::Object(
            self.values
                .iter()
                .map(|(name, value)| (name.clone(), Value::String(value.clone())))
                .collect(),
        )
    }
}

/// The scope a step's templates see: `input`, `steps.<id>.output|status` of
/// the step's ancestors (validation guarantees templates read only those),
/// `run {id, workflow, attempt}`, `item`/`index` for `for_each`, `secrets`.
pub(crate) fn step_scope(
    workflow: &Workflow,
    state: &RunState,
    step_id: &str,
    item: Option<(u32, &Value)>,
    attempt: u32,
    secrets: &Secrets,
) -> Value {
    let ancestors = ancestors(workflow, step_id);
    let mut scope = base_scope(
        state,
        ancestors.iter().map(String::as_str),
        attempt,
        secrets,
    );
    if let Some((index, item)) = item {
        scope.insert("item".to_owned(), item.clone());
        scope.insert("index".to_owned(), json!(index));
    }
    Value::Object(scope)
}

/// The scope of the run's `output`: every step.
pub(crate) fn run_scope(workflow: &Workflow, state: &RunState, secrets: &Secrets) -> Value {
    Value::Object(base_scope(
        state,
        workflow.steps.keys().map(String::as_str),
        1,
        secrets,
    ))
}

fn base_scope<'a>(
    state: &RunState,
    step_ids: impl Iterator<Item = &'a str>,
    attempt: u32,
    secrets: &Secrets,
) -> Map<String, Value> {
    let steps: Map<String, Value> = step_ids
        .map(|id| {
            let (status, output) = match state.steps.get(id) {
                Some(step) => (step.status.as_str(), step.output.clone()),
                None => ("pending", None),
            };
            (
                id.to_owned(),
                json!({"status": status, "output": output.unwrap_or(Value::Null)}),
            )
        })
        .collect();
    let run_id = state.run_id.map(|id| id.to_string()).unwrap_or_default();
    let mut scope = Map::new();
    scope.insert("input".to_owned(), state.input.clone());
    scope.insert("steps".to_owned(), Value::Object(steps));
    scope.insert(
        "run".to_owned(),
        json!({"id": run_id, "workflow": state.workflow, "attempt": attempt}),
    );
    scope.insert("secrets".to_owned(), secrets.to_value());
    scope
}

/// Every step `step_id` transitively needs.
fn ancestors(workflow: &Workflow, step_id: &str) -> BTreeSet<String> {
    let mut seen = BTreeSet::new();
    let mut stack: Vec<&str> = workflow
        .step(step_id)
        .map(|step| step.needs.iter().map(String::as_str).collect())
        .unwrap_or_default();
    while let Some(id) = stack.pop() {
        if seen.insert(id.to_owned())
            && let Some(step) = workflow.step(id)
        {
            stack.extend(step.needs.iter().map(String::as_str));
        }
    }
    seen
}
