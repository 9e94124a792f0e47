//! Whether a workflow version can take over the recorded history of a run
//! made by another version: the rules of `imx replay check` (a run in flight
//! moved to a new version) and of `forkRun` (a fork onto a fixed version
//! taking over the outputs of the steps it does not run again).

use serde::Serialize;

use crate::state::{RunState, StepStatus};
use crate::workflow::{StepId, StepKind, Workflow};

/// Why a run in flight could not be continued by the new version.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Incompatibility {
    /// A step that has not finished is gone from the new version (removed or renamed).
    StepRemoved { step: StepId, status: String },
    /// A finished step depends on other steps in the new version: the
    /// recorded history would not be one the new DAG could produce.
    NeedsChanged {
        step: StepId,
        old: Vec<StepId>,
        new: Vec<StepId>,
    },
    /// The run input schema changed; `input_valid` tells whether this run's
    /// input still satisfies the new one.
    InputSchemaChanged {
        input_valid: bool,
        detail: Option<String>,
    },
    /// The new version declares `vars` this run's `run.started` did not
    /// record: a run keeps the values rendered at its start, so its steps
    /// that read those would fail. (A fork renders its own and is not refused.)
    VarsChanged { missing: Vec<String> },
    /// A step that already started moved between `steps:` and `finally:`:
    /// it would run at another point of the run than it did.
    FinallyChanged { step: StepId, finally: bool },
    /// A step that already started runs another kind of executor in the new version.
    KindChanged {
        step: StepId,
        old: StepKind,
        new: StepKind,
    },
}

impl std::fmt::Display for Incompatibility {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Incompatibility::StepRemoved { step, status } => write!(
                f,
                "step `{step}` is {status} but the new version has no step `{step}` (removed or renamed): its result would have nowhere to go"
            ),
            Incompatibility::NeedsChanged { step, old, new } => write!(
                f,
                "step `{step}` already finished after needs [{}], the new version says [{}]: its recorded inputs would not match the new DAG",
                old.join(", "),
                new.join(", ")
            ),
            Incompatibility::InputSchemaChanged { input_valid: true, .. } => f.write_str(
                "the input schema changed (this run's input still satisfies it, but templates may read fields differently)",
            ),
            Incompatibility::InputSchemaChanged { input_valid: false, detail } => write!(
                f,
                "the input schema changed and this run's input does not satisfy it: {}",
                detail.as_deref().unwrap_or("invalid")
            ),
            Incompatibility::VarsChanged { missing } => write!(
                f,
                "the new version declares vars [{}] that this run did not render at its start (vars are rendered once): its steps that read them would fail",
                missing.join(", ")
            ),
            Incompatibility::FinallyChanged { step, finally } => write!(
                f,
                "step `{step}` already ran; the new version moves it {}: it would run at another point of the run",
                if *finally { "under `finally:`" } else { "out of `finally:`" }
            ),
            Incompatibility::KindChanged { step, old, new } => write!(
                f,
                "step `{step}` already started as `{old}`, the new version makes it `{new}`: the attempt in flight belongs to another executor"
            ),
        }
    }
}

/// Everything that keeps `new` from taking over the run `state` of `old`.
/// Empty: safe. Added steps, changed templates of steps not started yet and
/// removed finished steps are safe.
pub fn compatibility(old: &Workflow, new: &Workflow, state: &RunState) -> Vec<Incompatibility> {
    let mut found = removed_steps(new, state);
    for (id, step) in &state.steps {
        let (Some(before), Some(after)) = (old.steps.get(id), new.steps.get(id)) else {
            continue;
        };
        if step.status.is_terminal()
            && step.status != StepStatus::Skipped
            && sorted(&before.needs) != sorted(&after.needs)
        {
            found.push(Incompatibility::NeedsChanged {
                step: id.clone(),
                old: before.needs.clone(),
                new: after.needs.clone(),
            });
        }
        if !step.executions.is_empty() && before.finally != after.finally {
            found.push(Incompatibility::FinallyChanged {
                step: id.clone(),
                finally: after.finally,
            });
        }
        if !step.executions.is_empty() && before.uses != after.uses {
            found.push(Incompatibility::KindChanged {
                step: id.clone(),
                old: before.uses,
                new: after.uses,
            });
        }
    }
    if old.input != new.input {
        found.push(input_change(new, state));
    }
    let recorded = state.vars.as_ref().and_then(serde_json::Value::as_object);
    let missing: Vec<String> = new
        .vars
        .keys()
        .filter(|name| !recorded.is_some_and(|vars| vars.contains_key(*name)))
        .cloned()
        .collect();
    if !missing.is_empty() {
        found.push(Incompatibility::VarsChanged { missing });
    }
    found
}

/// What can be told without the old model: unfinished steps that the new
/// version lacks (the state lists every step of the pinned version).
pub fn removed_steps(new: &Workflow, state: &RunState) -> Vec<Incompatibility> {
    state
        .steps
        .iter()
        .filter(|(id, step)| !step.status.is_terminal() && !new.steps.contains_key(*id))
        .map(|(id, step)| Incompatibility::StepRemoved {
            step: id.clone(),
            status: step.status.as_str().to_owned(),
        })
        .collect()
}

fn sorted(ids: &[StepId]) -> Vec<&StepId> {
    let mut ids: Vec<&StepId> = ids.iter().collect();
    ids.sort();
    ids
}

fn input_change(new: &Workflow, state: &RunState) -> Incompatibility {
    let Some(schema) = &new.input else {
        return Incompatibility::InputSchemaChanged {
            input_valid: true,
            detail: None,
        };
    };
    let detail = match jsonschema::draft202012::new(schema) {
        Ok(validator) => validator
            .iter_errors(&state.input)
            .next()
            .map(|error| format!("{error} at `{}`", error.instance_path())),
        Err(error) => Some(format!("the new schema does not compile: {error}")),
    };
    Incompatibility::InputSchemaChanged {
        input_valid: detail.is_none(),
        detail,
    }
}
