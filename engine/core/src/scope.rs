//! The template scope of a step or of the run's output, the secrets that go
//! into it, and the redaction that keeps secret values out of every event.
//!
//! Secrets are rendered into the executor's copy only. Templates see them as
//! a tainting object (`core::template`): a leaf whose evaluation read one is
//! recorded as `***` whole. Whatever the core records besides (outputs that
//! echo a secret, errors) passes through [`Secrets::redact`], which replaces
//! every occurrence of every secret value with `***`, also inside longer
//! strings (`Bearer <token>`).

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::event::{ParentRun, TriggerContext};
use crate::state::{RunState, StepStatus};
use crate::template::{self, Evaluated, Evaluator, InProcess, Rendered, Request};
use crate::workflow::Workflow;

/// What a secret value is replaced with in events.
pub const REDACTED: &str = "***";

/// Secret values by name (`secrets.NAME` in templates). Its `Debug` shows names only.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
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

/// No secrets at all, for `Host::none`.
pub static NO_SECRETS: Secrets = Secrets {
    values: BTreeMap::new(),
};

/// What the node lends the core for one decision: its secrets, and where
/// templates are evaluated (in a sandboxed child process on a node).
#[derive(Debug, Clone, Copy)]
pub struct Host<'a> {
    pub secrets: &'a Secrets,
    pub evaluator: &'a dyn Evaluator,
}

impl<'a> Host<'a> {
    /// `secrets`, with templates evaluated on the calling thread.
    pub fn in_process(secrets: &'a Secrets) -> Host<'a> {
        Host {
            secrets,
            evaluator: &InProcess,
        }
    }
}

impl Host<'_> {
    /// Renders a template tree with this node's secrets and evaluator.
    pub fn render(&self, template: &Value, scope: &Value) -> Result<Rendered, template::Error> {
        let request = Request::Render {
            template: std::borrow::Cow::Borrowed(template),
            scope: std::borrow::Cow::Borrowed(scope),
        };
        match self.evaluator.evaluate(&request, self.secrets)? {
            Evaluated::Rendered(rendered) => Ok(rendered),
            Evaluated::Condition(_) => Err(mismatched()),
        }
    }

    /// Evaluates an `if` expression with this node's secrets and evaluator.
    pub fn condition(&self, expression: &str, scope: &Value) -> Result<bool, template::Error> {
        let request = Request::Condition {
            expression: std::borrow::Cow::Borrowed(expression),
            scope: std::borrow::Cow::Borrowed(scope),
        };
        match self.evaluator.evaluate(&request, self.secrets)? {
            Evaluated::Condition(value) => Ok(value),
            Evaluated::Rendered(_) => Err(mismatched()),
        }
    }
}

fn mismatched() -> template::Error {
    template::Error::Sandbox {
        detail: "the evaluator answered a different request".to_owned(),
    }
}

impl Host<'static> {
    /// No secrets, templates evaluated on the calling thread (tools, tests).
    pub fn none() -> Host<'static> {
        Host::in_process(&NO_SECRETS)
    }
}

impl Secrets {
    pub fn none() -> Secrets {
        Secrets::default()
    }

    /// The names, in order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.values.keys().map(String::as_str)
    }

    /// The value of `name`, if this node has it.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.values.get(name).map(String::as_str)
    }

    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// Replaces every occurrence of every (non-empty) secret value in the
    /// strings of `value` with `***`. Object keys are left alone.
    pub fn redact(&self, value: Value) -> Value {
        if self.values.values().all(|v| v.len() < REDACTED.len()) {
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
        // Values shorter than `***` are not matched: replacing every `a` in
        // an output says nothing and would make the record longer than the
        // value (templates that read them are still redacted by taint).
        let mut secrets: Vec<&String> = self
            .values
            .values()
            .filter(|v| v.len() >= REDACTED.len())
            .collect();
        secrets.sort_by_key(|secret| std::cmp::Reverse(secret.len()));
        let mut text = text.to_owned();
        for secret in secrets {
            if text.contains(secret.as_str()) {
                text = text.replace(secret.as_str(), REDACTED);
            }
        }
        text
    }
}

/// The scope a step's templates see: `input`, `steps.<id>.output|status` of
/// the step's ancestors (validation guarantees templates read only those),
/// `run {id, workflow, attempt}`, `item`/`index` for `for_each`. `secrets`
/// is added by the template evaluation, never put into a JSON scope.
pub(crate) fn step_scope(
    workflow: &Workflow,
    state: &RunState,
    step_id: &str,
    item: Option<(u32, &Value)>,
    attempt: u32,
) -> Value {
    let mut ancestors = ancestors(workflow, step_id);
    // A `finally:` step runs after every other step ended: it reads them all.
    if workflow.step(step_id).is_some_and(|step| step.finally) {
        ancestors.extend(main_steps(workflow).map(str::to_owned));
    }
    let mut scope = base_scope(state, ancestors.iter().map(String::as_str), attempt);
    if let Some((index, item)) = item {
        // A `matrix` item is its combination: `matrix.<axis>`.
        if workflow
            .step(step_id)
            .is_some_and(|step| step.matrix.is_some())
        {
            scope.insert("matrix".to_owned(), item.clone());
        }
        scope.insert("item".to_owned(), item.clone());
        scope.insert("index".to_owned(), json!(index));
    }
    Value::Object(scope)
}

/// The scope of the run's `output`: every step but the `finally:` ones
/// (the output is rendered before they run).
pub(crate) fn run_scope(workflow: &Workflow, state: &RunState) -> Value {
    Value::Object(base_scope(state, main_steps(workflow), 1))
}

fn main_steps(workflow: &Workflow) -> impl Iterator<Item = &str> {
    workflow
        .steps
        .values()
        .filter(|step| !step.finally)
        .map(|step| step.id.as_str())
}

fn base_scope<'a>(
    state: &RunState,
    step_ids: impl Iterator<Item = &'a str>,
    attempt: u32,
) -> Map<String, Value> {
    let steps: Map<String, Value> = step_ids
        .map(|id| {
            let (status, output, error) = match state.steps.get(id) {
                Some(step) => (
                    step.status,
                    step.output.clone(),
                    // Why it failed; known only once it has.
                    step.reason
                        .clone()
                        .filter(|_| step.status == StepStatus::Failed),
                ),
                None => (StepStatus::Pending, None, None),
            };
            let step = json!({
                "status": status.as_str(),
                "output": output.unwrap_or(Value::Null),
                "error": error,
            });
            (id.to_owned(), step)
        })
        .collect();
    let mut scope = Map::new();
    scope.insert("input".to_owned(), state.input.clone());
    scope.insert("steps".to_owned(), Value::Object(steps));
    scope.insert(
        "vars".to_owned(),
        state.vars.clone().unwrap_or_else(|| json!({})),
    );
    let run = RunContext {
        id: state.run_id,
        workflow: &state.workflow,
        attempt,
        started_at: state.started_at,
        trigger: state.trigger.as_ref(),
        parent: state.parent.as_ref(),
        // In `finally:` steps: how the main part ended, and why.
        status: match &state.finalizing {
            Some(finale) => finale.outcome.run_status().as_str(),
            None => state.status.as_str(),
        },
        error: state
            .finalizing
            .as_ref()
            .and_then(|finale| finale.reason.as_deref()),
    };
    scope.insert("run".to_owned(), run.to_json());
    scope
}

/// What templates read as `run`: all of it recorded in the log (or the
/// attempt being rendered), so a render from the log is the same anywhere.
#[derive(Debug, Clone, Copy)]
pub struct RunContext<'a> {
    pub id: Option<Uuid>,
    pub workflow: &'a str,
    pub attempt: u32,
    pub started_at: Option<DateTime<Utc>>,
    pub trigger: Option<&'a TriggerContext>,
    pub parent: Option<&'a ParentRun>,
    /// The run's status when the template is rendered (`running` in steps;
    /// `failed` is seen by steps that run after a failure, e.g. `all_done`).
    pub status: &'static str,
    /// Why the run failed or was cancelled, as known when rendering: set
    /// for `finally:` steps (from `run.finalizing`), else null.
    pub error: Option<&'a str>,
}

impl RunContext<'_> {
    /// `{id, workflow, attempt, started_at, status, error, trigger}`; `trigger` is
    /// what `run.started` recorded (`kind` `cron`, `webhook`, `kafka`), or
    /// `{kind: workflow, parent_run}` for a child run, or `{kind: manual}`.
    pub fn to_json(&self) -> Value {
        let trigger = match (self.trigger, self.parent) {
            (Some(trigger), _) => serde_json::to_value(trigger).unwrap_or(Value::Null),
            (None, Some(parent)) => {
                json!({"kind": "workflow", "parent_run": parent.run_id.to_string()})
            }
            (None, None) => json!({"kind": "manual"}),
        };
        json!({
            "id": self.id.map(|id| id.to_string()).unwrap_or_default(),
            "workflow": self.workflow,
            "attempt": self.attempt,
            "started_at": self
                .started_at
                .map(|at| at.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)),
            "status": self.status,
            "error": self.error,
            "trigger": trigger,
        })
    }
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
