//! Run surgery: repairs an operator makes to a run, each one an event the
//! core folds like any other, so replay, inspect and verify show who changed
//! the run, when and why. This module decides whether an operation is
//! allowed on a run and builds its event; `reset` holds the state side.
//!
//! * rewind (`run.rewound`): an ended run runs a step and everything
//!   downstream of it again, as a new generation with new idempotency keys;
//! * pause / resume (`run.paused`, `run.resumed`): no new attempt starts
//!   while paused;
//! * skip (`step.bypassed`): a failed or waiting step counts as succeeded
//!   with a given output, and its dependents proceed;
//! * fork (`run.started` with `fork`, then `step.adopted`): a new run takes
//!   over the outputs of the steps not downstream of a step, optionally on
//!   another version of the workflow.

mod reset;

use std::collections::{BTreeSet, VecDeque};

use chrono::{DateTime, Utc};
use serde_json::Value;
use uuid::Uuid;

use crate::compat::{self, Incompatibility};
use crate::effect::Effect;
use crate::event::{
    EventEnvelope, ForkOrigin, RunPaused, RunResumed, RunRewound, StepAdopted, StepBypassed,
};
use crate::run::{Start, start_run};
use crate::state::{RunState, RunStatus, StepStatus};
use crate::workflow::{StepId, Workflow};

/// Longest `reason` an operation accepts, in bytes: it is recorded in the
/// run's history and shown with it.
pub const REASON_BYTES_MAX: usize = 1_024;

/// Why an operation is refused; nothing is recorded then.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum Refusal {
    #[error("a reason is required: it is recorded in the run's history with who asked")]
    ReasonMissing,
    #[error("the reason is {bytes} bytes; the limit is {REASON_BYTES_MAX}")]
    ReasonTooLong { bytes: usize },
    #[error("the run has no step `{step}`; its steps: {known}")]
    UnknownStep { step: String, known: String },
    #[error("{operation} needs a run that is {allowed}; this run is {status}")]
    RunState {
        operation: &'static str,
        status: String,
        allowed: &'static str,
    },
    #[error("{operation} needs a step that is {allowed}; step `{step}` is {status}")]
    StepState {
        operation: &'static str,
        step: String,
        status: &'static str,
        allowed: &'static str,
    },
    #[error("version {version} cannot take over the source run's steps: {}", reasons.join("; "))]
    Incompatible {
        version: String,
        reasons: Vec<String>,
    },
}

/// `by …: reason`, how the state and the run document name an operation.
pub fn attribution(by: &str, reason: &str) -> String {
    format!("by {by}: {reason}")
}

/// `step` and every step that depends on it, directly or not: `step` first,
/// then the others in the workflow's topological order.
pub fn downstream(workflow: &Workflow, step: &str) -> Vec<StepId> {
    let mut reached = BTreeSet::from([step.to_owned()]);
    let mut queue = VecDeque::from([step.to_owned()]);
    while let Some(current) = queue.pop_front() {
        for candidate in workflow.steps.values() {
            if candidate.needs.contains(&current) && reached.insert(candidate.id.clone()) {
                queue.push_back(candidate.id.clone());
            }
        }
    }
    let mut order = vec![step.to_owned()];
    order.extend(
        workflow
            .topological_order()
            .into_iter()
            .filter(|id| *id != step && reached.contains(*id))
            .map(str::to_owned),
    );
    order
}

/// `run.rewound` for an ended run: `step`, everything downstream of it, and
/// the steps the run's ending cut short (skipped or cancelled by a cancel or
/// a run timeout) run again; every other step keeps its outcome.
pub fn rewind(
    workflow: &Workflow,
    state: &RunState,
    step: &str,
    by: &str,
    reason: &str,
    now: DateTime<Utc>,
) -> Result<RunRewound, Refusal> {
    check_reason(reason)?;
    if !state.status.is_terminal() {
        return Err(run_state("rewind", state, "succeeded, failed or cancelled"));
    }
    known_step(workflow, state, step)?;
    let mut steps = downstream(workflow, step);
    let listed: BTreeSet<StepId> = steps.iter().cloned().collect();
    steps.extend(
        workflow
            .topological_order()
            .into_iter()
            .filter(|id| !listed.contains(*id))
            .filter(|id| state.step(id).is_some_and(|s| s.wound_down))
            .map(str::to_owned),
    );
    Ok(RunRewound {
        at: now,
        step: step.to_owned(),
        steps,
        by: by.to_owned(),
        reason: reason.to_owned(),
    })
}

/// `run.paused` for a running or waiting run that is not ending.
pub fn pause(
    state: &RunState,
    by: &str,
    reason: &str,
    now: DateTime<Utc>,
) -> Result<RunPaused, Refusal> {
    check_reason(reason)?;
    let ending = state.cancel_requested.is_some() || state.timed_out;
    if !matches!(state.status, RunStatus::Running | RunStatus::Waiting) || ending {
        return Err(run_state("pause", state, "running or waiting"));
    }
    Ok(RunPaused {
        at: now,
        by: by.to_owned(),
        reason: reason.to_owned(),
    })
}

/// `run.resumed` for a paused run.
pub fn resume(
    state: &RunState,
    by: &str,
    reason: &str,
    now: DateTime<Utc>,
) -> Result<RunResumed, Refusal> {
    check_reason(reason)?;
    if state.status != RunStatus::Paused {
        return Err(run_state("resume", state, "paused"));
    }
    Ok(RunResumed {
        at: now,
        by: by.to_owned(),
        reason: reason.to_owned(),
    })
}

/// `step.bypassed` for a failed or waiting step of a run that is running,
/// waiting, paused or failed (not one being cancelled, nor a cancelled
/// run: its other steps were cut short). The dependents that were skipped,
/// failed or cancelled become pending again.
pub fn skip(
    workflow: &Workflow,
    state: &RunState,
    step: &str,
    output: Value,
    by: &str,
    reason: &str,
    now: DateTime<Utc>,
) -> Result<StepBypassed, Refusal> {
    check_reason(reason)?;
    let ending = state.cancel_requested.is_some() || state.timed_out;
    let allowed = match state.status {
        RunStatus::Failed => !state.timed_out,
        status => status.is_active() && !ending,
    };
    if !allowed {
        return Err(run_state(
            "skip",
            state,
            "running, waiting, paused or failed (not timed out, not being cancelled)",
        ));
    }
    let status = known_step(workflow, state, step)?;
    if state.main_outcome_fixed() && !state.finally.contains(step) {
        // The outcome is recorded; skip it once the run has ended.
        return Err(Refusal::RunState {
            operation: "skip of a step under `steps:`",
            status: "running its `finally:` steps".to_owned(),
            allowed: "running its main part, or ended",
        });
    }
    if !matches!(status, StepStatus::Failed | StepStatus::Waiting) {
        return Err(Refusal::StepState {
            operation: "skip",
            step: step.to_owned(),
            status: status.as_str(),
            allowed: "failed or waiting",
        });
    }
    let reset = downstream(workflow, step)
        .into_iter()
        .skip(1)
        .filter(|id| {
            matches!(
                state.step_status(id),
                StepStatus::Skipped | StepStatus::Failed | StepStatus::Cancelled
            )
        })
        .collect();
    Ok(StepBypassed {
        at: now,
        step: step.to_owned(),
        output,
        reset,
        by: by.to_owned(),
        reason: reason.to_owned(),
    })
}

/// What a fork takes over from its source run.
#[derive(Debug, Clone, PartialEq)]
pub struct ForkPlan {
    pub origin: ForkOrigin,
    /// The succeeded steps not downstream of `origin.step` (in `target`),
    /// with their recorded outputs.
    pub adopted: Vec<(StepId, Value)>,
}

/// Plans a fork of `source` (a run of `source_workflow`) at `step` onto
/// `target`: the steps that succeeded in the source, are not downstream of
/// `step` in `target` and still exist there are taken over. Refused with
/// every reason when `target` changed one of them the way `imx replay
/// check` refuses (its needs or its kind); a changed input schema is not a
/// reason here, because the fork's input is checked against `target`.
pub fn fork(
    source_workflow: &Workflow,
    source: &RunState,
    target: &Workflow,
    target_version: &str,
    step: &str,
    by: &str,
    reason: &str,
) -> Result<ForkPlan, Refusal> {
    check_reason(reason)?;
    let Some(run_id) = source.run_id else {
        return Err(run_state("fork", source, "started"));
    };
    if !target.steps.contains_key(step) {
        return Err(Refusal::UnknownStep {
            step: step.to_owned(),
            known: known_steps(target),
        });
    }
    let rerun: BTreeSet<StepId> = downstream(target, step).into_iter().collect();
    let mut taken = source.clone();
    taken.steps.retain(|id, state| {
        state.status == StepStatus::Succeeded
            && !rerun.contains(id)
            && target.steps.contains_key(id)
    });
    let reasons: Vec<String> = compat::compatibility(source_workflow, target, &taken)
        .into_iter()
        // A fork brings its own input and renders its own vars.
        .filter(|found| {
            !matches!(
                found,
                Incompatibility::InputSchemaChanged { .. } | Incompatibility::VarsChanged { .. }
            )
        })
        .map(|found| found.to_string())
        .collect();
    if !reasons.is_empty() {
        return Err(Refusal::Incompatible {
            version: target_version.to_owned(),
            reasons,
        });
    }
    let adopted = target
        .topological_order()
        .into_iter()
        .filter_map(|id| {
            let output = taken.step(id)?.output.clone().unwrap_or(Value::Null);
            Some((id.to_owned(), output))
        })
        .collect();
    Ok(ForkPlan {
        origin: ForkOrigin {
            run_id,
            step: step.to_owned(),
            by: by.to_owned(),
            reason: reason.to_owned(),
        },
        adopted,
    })
}

/// The first events of a fork: `run.started` naming the source, then one
/// `step.adopted` per step taken over; and the run-timeout timer. `vars`
/// are the fork's own ([`crate::run::render_vars`] for the target version).
pub fn start_fork(
    workflow: &Workflow,
    version: &str,
    run_id: Uuid,
    (input, vars): (Value, Option<Value>),
    plan: ForkPlan,
    now: DateTime<Utc>,
) -> (Vec<EventEnvelope>, Vec<Effect>) {
    let from_run = plan.origin.run_id;
    let start = Start {
        input,
        vars,
        fork: Some(plan.origin),
        ..Start::default()
    };
    let (started, effects) = start_run(workflow, version, run_id, start, now);
    let mut events = vec![started];
    for (seq, (step, output)) in (2..).zip(plan.adopted) {
        let adopted = StepAdopted {
            at: now,
            step,
            output,
            from_run,
        };
        events.push(EventEnvelope::new(run_id, seq, adopted));
    }
    (events, effects)
}

fn check_reason(reason: &str) -> Result<(), Refusal> {
    if reason.trim().is_empty() {
        return Err(Refusal::ReasonMissing);
    }
    if reason.len() > REASON_BYTES_MAX {
        return Err(Refusal::ReasonTooLong {
            bytes: reason.len(),
        });
    }
    Ok(())
}

fn run_state(operation: &'static str, state: &RunState, allowed: &'static str) -> Refusal {
    let ending = match (state.timed_out, &state.cancel_requested) {
        (true, _) if !state.status.is_terminal() => " (timing out)",
        (true, _) => " (timed out)",
        (false, Some(_)) if !state.status.is_terminal() => " (being cancelled)",
        _ => "",
    };
    Refusal::RunState {
        operation,
        status: format!("{}{ending}", state.status.as_str()),
        allowed,
    }
}

/// The step's status, or the refusal naming the run's steps.
fn known_step(workflow: &Workflow, state: &RunState, step: &str) -> Result<StepStatus, Refusal> {
    match (workflow.steps.contains_key(step), state.step(step)) {
        (true, Some(found)) => Ok(found.status),
        _ => Err(Refusal::UnknownStep {
            step: step.to_owned(),
            known: known_steps(workflow),
        }),
    }
}

fn known_steps(workflow: &Workflow) -> String {
    let ids: Vec<&str> = workflow.steps.keys().map(String::as_str).collect();
    ids.join(", ")
}
