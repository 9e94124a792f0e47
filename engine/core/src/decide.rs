//! `decide(&workflow, &state, now, &secrets) -> Decision`: what should happen
//! next, as data. A decision holds the events the core records (the step was
//! scheduled, skipped, the run succeeded…) and the effects the runtime carries
//! out once those events are appended (hand a step to an executor, set a
//! timer, start a child run). Every effect is paired with the event that
//! records it, so deciding again on the state after those events yields
//! nothing new: decide is idempotent.
//!
//! One call looks at the state once; consequences of its own events (a step
//! that becomes ready because a `noop` just succeeded) come in the next call.
//! [`crate::run::settle`] loops until nothing is left to decide.

use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::effect::{Decision, Effect};
use crate::event::{
    Event, ForEachExpanded, ForEachStopped, MainOutcome, RetryScheduled, RunCancelled, RunFailed,
    RunFinalizing, RunSucceeded, RunTimedOut, StepCancelled, StepFailed, StepSkipped,
};
use crate::keys;
use crate::schedule::{self, Context};
use crate::scope::{self, Host};
use crate::state::{ExecStatus, Execution, RunState, RunStatus, StepState, StepStatus};
use crate::template::Rendered;
use crate::workflow::{Step, TriggerRule, Workflow};

/// Most items one `for_each` may expand to.
pub const FOR_EACH_ITEMS_MAX: usize = 10_000;
/// Most events one `decide` call records beyond the budget it was given:
/// the budget is checked before each unit of work (a step, an execution),
/// and one unit records at most this many (scheduled + an inline result).
pub const DECISION_OVERSHOOT_MAX: usize = 2;

/// Decides what follows from `state`. Pure: same arguments, same decision.
pub fn decide(
    workflow: &Workflow,
    state: &RunState,
    now: DateTime<Utc>,
    host: Host<'_>,
) -> Decision {
    decide_within(workflow, state, now, host, usize::MAX)
}

/// [`decide`], stopping once the decision holds `events_max` events (at most
/// [`DECISION_OVERSHOOT_MAX`] more): what is left is decided by the next
/// call, on the state after these events. A 10,000-item `for_each` of pure
/// steps so becomes many appends of bounded size instead of one too large.
pub fn decide_within(
    workflow: &Workflow,
    state: &RunState,
    now: DateTime<Utc>,
    host: Host<'_>,
    events_max: usize,
) -> Decision {
    let mut out = Decision::default();
    let Some(run_id) = state.run_id else {
        return out;
    };
    if !state.status.is_active() {
        return out;
    }
    let context = Context {
        workflow,
        state,
        now,
        host,
        run_id,
        events_max,
    };
    // Before `run.finalizing` the main part runs; after it, the `finally:` steps.
    let finale = state.finalizing.as_ref();
    let in_phase = |id: &str| state.finally.contains(id) == finale.is_some();
    let ending = match finale {
        None => ending_reason(state),
        Some(_) => state.finally_stopped.clone(),
    };
    // A paused run records what its running attempts report, and nothing
    // new starts; a cancel or run timeout still winds it down, and the
    // `finally:` steps that follow a cancel or timeout run even if paused.
    let stopped_main = finale.is_some_and(|finale| {
        matches!(
            finale.outcome,
            MainOutcome::Cancelled | MainOutcome::TimedOut
        )
    });
    let hold = state.status == RunStatus::Paused && ending.is_none() && !stopped_main;
    if let Some(reason) = ending {
        wind_down(&context, &reason, in_phase, &mut out);
    } else {
        // Both maps are ordered by step id: walk them together instead of
        // looking each step up, which kept decide at O(n log n) per call.
        let mut definitions = workflow.steps.iter().peekable();
        for (id, step_state) in &state.steps {
            if context.is_full(&out) {
                break;
            }
            while definitions.next_if(|(def_id, _)| *def_id < id).is_some() {}
            if let Some((_, step)) = definitions.next_if(|(def_id, _)| *def_id == id)
                && in_phase(id)
            {
                advance_step(&context, step, step_state, hold, &mut out);
            }
        }
    }
    if !hold && out.events.is_empty() {
        if finale.is_none() && !state.finally.is_empty() && state.main_part_done() {
            finalize(&context, &mut out);
        } else if state.steps_terminal as usize == state.steps.len() {
            complete(&context, &mut out);
        }
    }
    out
}

fn ending_reason(state: &RunState) -> Option<String> {
    if state.timed_out {
        Some("the run timed out".to_owned())
    } else {
        state.cancel_requested.clone()
    }
}

fn advance_step(
    context: &Context<'_>,
    step: &Step,
    state: &StepState,
    hold: bool,
    out: &mut Decision,
) {
    match state.status {
        StepStatus::Pending if !hold => start_step(context, step, state, out),
        StepStatus::Running | StepStatus::Waiting => {
            if stop_fast(context, step, state, out) {
                return;
            }
            let mut capacity = match step.max_parallel() {
                _ if hold => 0,
                Some(max_parallel) => max_parallel.max(1).saturating_sub(state.counts.in_flight()),
                None => u32::MAX,
            };
            for (position, exec) in state.executions.iter().enumerate() {
                if context.is_full(out) {
                    break;
                }
                let index = state.items.as_ref().map(|_| position as u32);
                advance_execution(context, step, state, index, exec, &mut capacity, out);
            }
        }
        _ => {}
    }
}

/// `fail_fast: true` and an item failed for good: the unfinished items are
/// cancelled (`for_each.stopped`), the running ones told to stop.
fn stop_fast(context: &Context<'_>, step: &Step, state: &StepState, out: &mut Decision) -> bool {
    let failed = state.counts.get(ExecStatus::Failed);
    if state.fail_fast != Some(true) || failed == 0 || state.counts.open() == 0 {
        return false;
    }
    out.events.push(Event::ForEachStopped(ForEachStopped {
        at: context.now,
        step: step.id.clone(),
        reason: "fail_fast: an item failed".to_owned(),
    }));
    for (position, exec) in state.executions.iter().enumerate() {
        if exec.status.is_in_flight() {
            let index = Some(position as u32);
            out.effects
                .push(schedule::cancel_effect(context, step, index, exec));
        }
    }
    true
}

fn advance_execution(
    context: &Context<'_>,
    step: &Step,
    state: &StepState,
    index: Option<u32>,
    exec: &Execution,
    capacity: &mut u32,
    out: &mut Decision,
) {
    let now = context.now;
    match exec.status {
        ExecStatus::Pending if *capacity > 0 => {
            let item = index.and_then(|i| Some((i, state.items.as_ref()?.get(i as usize)?)));
            schedule::schedule(context, step, index, item, exec.attempt + 1, out);
            if !step.uses.is_pure() {
                *capacity -= 1;
            }
            // An item that failed for good inline skips the items not started
            // yet (in evolve), so scheduling more in this round would be invalid.
            if let Some(Event::StepFailed(failed)) = out.events.last()
                && state.fail_fast != Some(false)
                && (!failed.retryable
                    || failed.attempt.saturating_sub(exec.attempt_base)
                        >= step.retry.max_attempts.max(1))
            {
                *capacity = 0;
            }
        }
        ExecStatus::Scheduled | ExecStatus::Running | ExecStatus::Waiting if exec.timed_out => {
            let limit = step.timeout_ms.unwrap_or_default();
            out.events.push(Event::StepFailed(StepFailed {
                at: now,
                step: step.id.clone(),
                index,
                attempt: exec.attempt,
                error: format!("attempt {} timed out after {limit} ms", exec.attempt),
                retryable: true,
            }));
            out.effects
                .push(schedule::cancel_effect(context, step, index, exec));
        }
        ExecStatus::RetryPending => {
            let key = schedule::execution_key(context, &step.id, index);
            let delay = keys::retry_delay_ms(
                &step.retry,
                &key,
                exec.attempt.saturating_sub(exec.attempt_base),
            );
            let failed_at = exec.finished_at.unwrap_or(now);
            let fire_at = schedule::add_ms(failed_at, delay);
            let timer_id = keys::retry_timer_id(&step.id, index, exec.attempt + 1);
            out.events.push(Event::RetryScheduled(RetryScheduled {
                at: now,
                step: step.id.clone(),
                index,
                attempt: exec.attempt + 1,
                timer_id: timer_id.clone(),
                fire_at,
            }));
            out.effects.push(Effect::StartTimer {
                id: timer_id,
                fire_at,
            });
        }
        _ => {}
    }
}

/// A pending step whose `needs` all finished: skip it, expand it or schedule it.
fn start_step(context: &Context<'_>, step: &Step, state: &StepState, out: &mut Decision) {
    let now = context.now;
    let attempt_base = state.attempt_base;
    let skip = |reason: String, out: &mut Decision| {
        out.events.push(Event::StepSkipped(StepSkipped {
            at: now,
            step: step.id.clone(),
            reason,
        }));
    };
    let fail = |error: String, out: &mut Decision| {
        out.events.push(Event::StepFailed(StepFailed {
            at: now,
            step: step.id.clone(),
            index: None,
            attempt: attempt_base,
            error: context.host.secrets.redact_text(&error),
            retryable: false,
        }));
    };
    match trigger_verdict(context.workflow, context.state, step) {
        None => return,
        Some(Err(reason)) => return skip(reason, out),
        Some(Ok(())) => {}
    }
    let scope = || scope::step_scope(context.workflow, context.state, &step.id, None, 1);
    if let Some(condition) = &step.condition {
        match context.host.condition(condition, &scope()) {
            Ok(true) => {}
            Ok(false) => return skip(format!("`if: {condition}` is false"), out),
            Err(err) => return fail(format!("cannot evaluate `if`: {err}"), out),
        }
    }
    let (template, what) = match (&step.for_each, &step.matrix) {
        (Some(for_each), _) => (for_each.items.clone(), "for_each"),
        (None, Some(matrix)) => (crate::matrix::template(matrix), "matrix"),
        (None, None) => {
            return schedule::schedule(context, step, None, None, attempt_base + 1, out);
        }
    };
    let rendered = match (context.host.render(&template, &scope()), &step.matrix) {
        (Ok(rendered), Some(matrix)) if rendered.tainted.is_empty() => {
            match crate::matrix::combinations(matrix, &rendered.value) {
                Ok(combinations) => Ok(Rendered {
                    value: Value::Array(combinations),
                    ..rendered
                }),
                Err(error) => return fail(error, out),
            }
        }
        (other, _) => other,
    };
    let items = match rendered {
        // The items are recorded and every item's scope is built from the
        // record: a list that read a secret cannot be recorded whole.
        Ok(rendered) if !rendered.tainted.is_empty() => {
            return fail(
                format!(
                    "`{what}` read a secret: its items are recorded in the event log, so they \
                     cannot hold secrets; read `secrets.*` in the step's `with` instead"
                ),
                out,
            );
        }
        Ok(Rendered {
            value: Value::Array(items),
            ..
        }) if items.len() <= FOR_EACH_ITEMS_MAX => items,
        Ok(Rendered {
            value: Value::Array(items),
            ..
        }) => {
            return fail(
                format!(
                    "`{what}` yielded {} items, more than the limit of {FOR_EACH_ITEMS_MAX}",
                    items.len()
                ),
                out,
            );
        }
        Ok(Rendered { value: other, .. }) => {
            return fail(format!("`{what}` must yield a list, got {other}"), out);
        }
        Err(err) => return fail(format!("cannot render `{what}`: {err}"), out),
    };
    let items: Vec<Value> = items
        .into_iter()
        .map(|item| context.host.secrets.redact(item))
        .collect();
    out.events.push(Event::ForEachExpanded(ForEachExpanded {
        at: now,
        step: step.id.clone(),
        count: items.len() as u32,
        items,
        fail_fast: step.fail_fast,
    }));
}

/// `None` while a dependency is unfinished; then whether the rule lets the step run.
fn trigger_verdict(
    workflow: &Workflow,
    state: &RunState,
    step: &Step,
) -> Option<Result<(), String>> {
    let mut failed = None;
    let mut not_succeeded = None;
    for need in &step.needs {
        let status = state.step_status(need);
        if !status.is_terminal() {
            return None;
        }
        let covered = workflow.step(need).is_some_and(|s| s.continue_on_error);
        let is_failed = matches!(status, StepStatus::Failed | StepStatus::Cancelled) && !covered;
        if is_failed && failed.is_none() {
            failed = Some(format!("`{need}` {}", status.as_str()));
        }
        let succeeded =
            status == StepStatus::Succeeded || (status == StepStatus::Failed && covered);
        if !succeeded && not_succeeded.is_none() {
            not_succeeded = Some(format!("`{need}` {}", status.as_str()));
        }
    }
    let rule = step.trigger_rule.as_str();
    Some(match (step.trigger_rule, failed, not_succeeded) {
        (TriggerRule::AllSuccess, _, Some(need)) => Err(format!("{rule}: dependency {need}")),
        (TriggerRule::NoneFailed, Some(need), _) => Err(format!("{rule}: dependency {need}")),
        (TriggerRule::OneFailed, None, _) => Err(format!("{rule}: no dependency failed")),
        _ => Ok(()),
    })
}

/// Cancellation or run timeout: skip what has not started, cancel the rest
/// (of the steps `in_phase`: the main part, or the `finally:` steps).
fn wind_down(
    context: &Context<'_>,
    reason: &str,
    in_phase: impl Fn(&str) -> bool,
    out: &mut Decision,
) {
    for (id, state) in &context.state.steps {
        if context.is_full(out) {
            return;
        }
        if !in_phase(id) {
            continue;
        }
        match state.status {
            StepStatus::Pending => out.events.push(Event::StepSkipped(StepSkipped {
                at: context.now,
                step: id.clone(),
                reason: reason.to_owned(),
            })),
            StepStatus::Running | StepStatus::Waiting => {
                out.events.push(Event::StepCancelled(StepCancelled {
                    at: context.now,
                    step: id.clone(),
                    reason: reason.to_owned(),
                }));
                let Some(step) = context.workflow.step(id) else {
                    continue;
                };
                for (position, exec) in state.executions.iter().enumerate() {
                    if exec.status.is_in_flight() {
                        let index = state.items.as_ref().map(|_| position as u32);
                        out.effects
                            .push(schedule::cancel_effect(context, step, index, exec));
                    }
                }
            }
            _ => {}
        }
    }
}

/// Every step not under `finally:` ended: the outcome is fixed and recorded
/// (`run.finalizing`), then the `finally:` steps start.
fn finalize(context: &Context<'_>, out: &mut Decision) {
    let (outcome, reason, output) = main_outcome(context);
    out.events.push(Event::RunFinalizing(RunFinalizing {
        at: context.now,
        outcome,
        reason,
        output: output.unwrap_or_default(),
    }));
}

/// Every step finished: the run ends, as `run.finalizing` said when there
/// are `finally:` steps.
fn complete(context: &Context<'_>, out: &mut Decision) {
    let (state, now) = (context.state, context.now);
    let (outcome, reason, output) = match &state.finalizing {
        Some(finale) => (
            finale.outcome,
            finale.reason.clone(),
            Some(finale.output.clone()),
        ),
        None => main_outcome(context),
    };
    let event = match outcome {
        MainOutcome::TimedOut => Event::RunTimedOut(RunTimedOut { at: now }),
        MainOutcome::Cancelled => Event::RunCancelled(RunCancelled {
            at: now,
            reason: reason.clone().unwrap_or_default(),
        }),
        MainOutcome::Failed => Event::RunFailed(RunFailed {
            at: now,
            reason: reason.clone().unwrap_or_default(),
        }),
        MainOutcome::Succeeded => Event::RunSucceeded(RunSucceeded {
            at: now,
            output: output.clone().unwrap_or_default(),
        }),
    };
    out.events.push(event);
    out.effects.push(Effect::CompleteRun {
        status: outcome.run_status(),
        output: output.filter(|_| outcome == MainOutcome::Succeeded),
        reason,
        parent: state.parent.clone(),
    });
}

/// How the main part ended: the outcome, why (unless it succeeded) and the
/// rendered output (when it succeeded).
fn main_outcome(context: &Context<'_>) -> (MainOutcome, Option<String>, Option<Value>) {
    let state = context.state;
    if state.timed_out {
        (
            MainOutcome::TimedOut,
            Some("the run timed out".to_owned()),
            None,
        )
    } else if let Some(reason) = state.cancel_requested.clone() {
        (MainOutcome::Cancelled, Some(reason), None)
    } else {
        match run_outcome(context) {
            Ok(output) => (MainOutcome::Succeeded, None, Some(output)),
            Err(reason) => (MainOutcome::Failed, Some(reason), None),
        }
    }
}

/// The rendered output, or why the run failed.
fn run_outcome(context: &Context<'_>) -> Result<Value, String> {
    let (workflow, state, host) = (context.workflow, context.state, context.host);
    for (id, step) in &state.steps {
        let covered = workflow.step(id).is_some_and(|s| s.continue_on_error);
        if step.status == StepStatus::Failed && !covered {
            let error = step.reason.clone().unwrap_or_default();
            return Err(format!("step `{id}` failed: {error}"));
        }
    }
    let Some(output) = &workflow.output else {
        return Ok(Value::Null);
    };
    let scope = scope::run_scope(workflow, state);
    host.render(output, &scope)
        .map(|output| output.recorded(host.secrets))
        .map_err(|err| {
            host.secrets
                .redact_text(&format!("cannot render the run output: {err}"))
        })
}
