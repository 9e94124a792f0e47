//! Handing out one attempt: render the step's input (with secrets for the
//! executor's copy, redacted for the event), record `step.scheduled`, and
//! either decide pure kinds (`noop`, `fail`) inline or emit the effect that
//! hands the attempt to an executor, a human or a child run.

use chrono::{DateTime, TimeDelta, Utc};
use serde_json::Value;
use uuid::Uuid;

use crate::effect::{Decision, Effect};
use crate::event::{
    ApprovalRequested, ChildRunStarted, Event, ParentRun, StepFailed, StepScheduled, StepSucceeded,
};
use crate::keys;
use crate::scope::{self, Host};
use crate::state::{Execution, RunState};
use crate::template::Rendered;
use crate::workflow::{Step, StepKind, Workflow};

/// Everything a decision reads.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Context<'a> {
    pub workflow: &'a Workflow,
    pub state: &'a RunState,
    pub now: DateTime<Utc>,
    pub host: Host<'a>,
    pub run_id: Uuid,
    /// The decision stops adding work once it holds this many events.
    pub events_max: usize,
}

impl Context<'_> {
    /// Whether `out` used up the events this decision may record.
    pub fn is_full(&self, out: &Decision) -> bool {
        out.events.len() >= self.events_max
    }
}

/// `at + ms`, saturating far in the future instead of overflowing.
pub fn add_ms(at: DateTime<Utc>, ms: u64) -> DateTime<Utc> {
    let delta = TimeDelta::try_milliseconds(i64::try_from(ms).unwrap_or(i64::MAX))
        .unwrap_or(TimeDelta::MAX);
    at.checked_add_signed(delta)
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}

/// The idempotency key of an execution in its step's current generation.
pub(crate) fn execution_key(context: &Context<'_>, step: &str, index: Option<u32>) -> String {
    let generation = context.state.step(step).map_or(0, |state| state.generation);
    keys::execution_key(context.run_id, step, index, generation)
}

/// An attempt's input: the executor's copy (secrets resolved) and what reads
/// a secret. `attempt` is absolute; templates see it within the generation.
pub(crate) fn render_input(
    context: &Context<'_>,
    step: &Step,
    item: Option<(u32, &Value)>,
    attempt: u32,
) -> Result<Rendered, String> {
    let base = context
        .state
        .step(&step.id)
        .map_or(0, |state| state.attempt_base);
    let scope = scope::step_scope(
        context.workflow,
        context.state,
        &step.id,
        item,
        attempt.saturating_sub(base),
    );
    context.host.render(&step.with, &scope).map_err(|err| {
        context
            .host
            .secrets
            .redact_text(&format!("cannot render `with`: {err}"))
    })
}

/// Schedules `attempt` of one execution.
pub(crate) fn schedule(
    context: &Context<'_>,
    step: &Step,
    index: Option<u32>,
    item: Option<(u32, &Value)>,
    attempt: u32,
    out: &mut Decision,
) {
    let now = context.now;
    let failed = |error: String, attempt: u32, retryable: bool| {
        Event::StepFailed(StepFailed {
            at: now,
            step: step.id.clone(),
            index,
            attempt,
            error,
            retryable,
        })
    };
    let rendered = match render_input(context, step, item, attempt) {
        Ok(rendered) => rendered,
        // Rendering is deterministic: retrying cannot help, so the execution
        // fails before the attempt starts.
        Err(error) => return out.events.push(failed(error, attempt - 1, false)),
    };
    let key = execution_key(context, &step.id, index);
    let redacted = rendered.recorded(context.host.secrets);
    let input = rendered.value;
    let deadline = match step.uses.is_pure() {
        true => None,
        false => step.timeout_ms.map(|ms| add_ms(now, ms)),
    };
    out.events.push(Event::StepScheduled(StepScheduled {
        at: now,
        step: step.id.clone(),
        index,
        attempt,
        max_attempts: step.retry.max_attempts.max(1),
        idempotency_key: key.clone(),
        input: redacted.clone(),
        deadline,
    }));
    if let Some(fire_at) = deadline {
        out.effects.push(Effect::StartTimer {
            id: keys::step_timeout_timer_id(&step.id, index, attempt),
            fire_at,
        });
    }
    let attempt = Attempt {
        index,
        attempt,
        key,
        input,
        redacted,
        deadline,
    };
    hand_out(context, step, attempt, out);
}

/// One attempt, rendered and recorded.
struct Attempt {
    index: Option<u32>,
    attempt: u32,
    key: String,
    /// The executor's copy, secrets resolved.
    input: Value,
    redacted: Value,
    deadline: Option<DateTime<Utc>>,
}

/// Decides a pure kind inline, or emits the effect that hands the attempt out.
fn hand_out(context: &Context<'_>, step: &Step, attempt: Attempt, out: &mut Decision) {
    let now = context.now;
    let Attempt {
        index,
        attempt,
        key,
        input,
        redacted,
        deadline,
    } = attempt;
    let failed = |error: String, retryable: bool| {
        Event::StepFailed(StepFailed {
            at: now,
            step: step.id.clone(),
            index,
            attempt,
            error,
            retryable,
        })
    };
    match step.uses {
        StepKind::Noop => out.events.push(Event::StepSucceeded(StepSucceeded {
            at: now,
            step: step.id.clone(),
            index,
            attempt,
            output: redacted,
        })),
        StepKind::Fail => {
            let message = match redacted.get("message") {
                Some(Value::String(message)) => message.clone(),
                Some(other) => other.to_string(),
                None => "the step failed (uses: fail)".to_owned(),
            };
            out.events.push(failed(message, true));
        }
        StepKind::Approval => {
            out.events.push(Event::ApprovalRequested(ApprovalRequested {
                at: now,
                step: step.id.clone(),
                index,
                attempt,
                request: redacted,
            }));
            out.effects.push(Effect::RequestApproval {
                key,
                step: step.id.clone(),
                index,
                request: input,
            });
        }
        StepKind::Workflow => {
            match child_run(context, step, index, attempt, &key, &input, &redacted) {
                Ok((event, effect)) => {
                    out.events.push(event);
                    out.effects.push(effect);
                }
                Err(error) => out.events.push(failed(error, false)),
            }
        }
        kind => out.effects.push(Effect::ScheduleStep {
            key,
            step: step.id.clone(),
            kind,
            index,
            attempt,
            input,
            deadline,
        }),
    }
}

/// `uses: workflow` with `with: {name, input}`: the child run's event and effect.
fn child_run(
    context: &Context<'_>,
    step: &Step,
    index: Option<u32>,
    attempt: u32,
    key: &str,
    input: &Value,
    redacted: &Value,
) -> Result<(Event, Effect), String> {
    let Some(Value::String(workflow)) = input.get("name") else {
        return Err("`uses: workflow` needs `with.name`, the child workflow's name".to_owned());
    };
    let child_input = input.get("input").cloned().unwrap_or(Value::Null);
    let child_run_id = keys::child_run_id(key, attempt);
    let event = Event::ChildRunStarted(ChildRunStarted {
        at: context.now,
        step: step.id.clone(),
        index,
        attempt,
        child_run_id,
        workflow: workflow.clone(),
        input: redacted.get("input").cloned().unwrap_or(Value::Null),
    });
    let effect = Effect::StartChildRun {
        child_run_id,
        workflow: workflow.clone(),
        input: child_input,
        parent: ParentRun {
            run_id: context.run_id,
            step_key: key.to_owned(),
        },
    };
    Ok((event, effect))
}

/// The effect that stops an in-flight execution.
pub(crate) fn cancel_effect(
    context: &Context<'_>,
    step: &Step,
    index: Option<u32>,
    exec: &Execution,
) -> Effect {
    match exec.child_run_id {
        Some(child_run_id) => Effect::CancelChildRun { child_run_id },
        None => Effect::CancelStep {
            key: execution_key(context, &step.id, index),
            step: step.id.clone(),
            index,
            attempt: exec.attempt,
        },
    }
}
