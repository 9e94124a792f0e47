//! The lifecycle of one execution (a plain step, or one `for_each` item)
//! across its attempts: one `match (status, input)`, every other pair is
//! rejected. Guards check the attempt number, so a late or duplicate result
//! from an earlier attempt never changes the state.
//!
//! ```text
//! pending ─scheduled─▶ scheduled ─started─▶ running ─succeeded─▶ succeeded
//!    ▲                    │ │                 │ │
//!    │ retry timer        │ └approval.requested─▶ waiting ─granted/rejected─▶ …
//!    │                    └──────failed───────┴─┴─▶ retry_pending ─retry_scheduled─▶ retry_waiting
//!    └──────────────────────────────────────────────────────────────────────────────────┘
//! failed for good (not retryable, or no attempts left) ─▶ failed
//! ```

use std::collections::BTreeMap;

use serde_json::json;

use crate::event::{ChildOutcome, Event};
use crate::keys;
use crate::state::{ApprovalDecision, ExecStatus, Execution, Timer, TimerKind};

/// What happened to an execution: an event, or one of its timers firing.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Input<'a> {
    Event(&'a Event),
    /// The timeout of this attempt fired.
    TimeoutTimer(u32),
    /// The retry timer for this (next) attempt fired.
    RetryTimer(u32),
}

/// Applies one input; changes nothing when it returns an error.
pub(crate) fn transition(
    exec: &mut Execution,
    step: &str,
    index: Option<u32>,
    input: Input<'_>,
    timers: &mut BTreeMap<String, Timer>,
) -> Result<(), String> {
    use ExecStatus::{Pending, RetryPending, RetryWaiting, Running, Scheduled, Waiting};
    let current = exec.attempt;
    match (exec.status, input) {
        (Pending, Input::Event(Event::StepScheduled(e))) if e.attempt == current + 1 => {
            scheduled(exec, step, index, e, timers);
        }
        // The input could not be rendered: the execution fails before its attempt.
        (Pending, Input::Event(Event::StepFailed(e))) if e.attempt == current && !e.retryable => {
            exec.status = ExecStatus::Failed;
            exec.error = Some(e.error.clone());
            exec.finished_at = Some(e.at);
        }
        (Scheduled, Input::Event(Event::StepStarted(e))) if e.attempt == current => {
            exec.status = Running;
            exec.started_at = Some(e.at);
        }
        (Scheduled | Running, Input::Event(Event::StepSucceeded(e)))
            if e.attempt == current && exec.child_run_id.is_none() =>
        {
            end_attempt(exec, step, index, timers, e.at);
            exec.status = ExecStatus::Succeeded;
            exec.output = Some(e.output.clone());
        }
        (Scheduled | Running | Waiting, Input::Event(Event::StepFailed(e)))
            if e.attempt == current =>
        {
            end_attempt(exec, step, index, timers, e.at);
            exec.error = Some(e.error.clone());
            exec.status =
                if e.retryable && current.saturating_sub(exec.attempt_base) < exec.max_attempts {
                    RetryPending
                } else {
                    ExecStatus::Failed
                };
        }
        (Scheduled | Running, Input::Event(Event::ApprovalRequested(e)))
            if e.attempt == current =>
        {
            exec.status = Waiting;
            exec.approval_request = Some(e.request.clone());
        }
        (Waiting, Input::Event(Event::ApprovalGranted(e))) => {
            end_attempt(exec, step, index, timers, e.at);
            exec.status = ExecStatus::Succeeded;
            exec.output = Some(json!({"approved": true, "by": e.by, "comment": e.comment}));
            exec.approval = Some(decision(true, &e.by, &e.comment, e.at));
        }
        (Waiting, Input::Event(Event::ApprovalRejected(e))) => {
            end_attempt(exec, step, index, timers, e.at);
            exec.status = ExecStatus::Failed;
            exec.error = Some(match &e.comment {
                Some(comment) => format!("rejected by {}: {comment}", e.by),
                None => format!("rejected by {}", e.by),
            });
            exec.approval = Some(decision(false, &e.by, &e.comment, e.at));
        }
        (Scheduled | Running, Input::Event(Event::ChildRunStarted(e)))
            if e.attempt == current && exec.child_run_id.is_none() =>
        {
            exec.status = Running;
            exec.child_run_id = Some(e.child_run_id);
            exec.started_at = Some(e.at);
        }
        (Running, Input::Event(Event::ChildRunFinished(e)))
            if exec.child_run_id == Some(e.child_run_id) =>
        {
            end_attempt(exec, step, index, timers, e.at);
            if e.outcome == ChildOutcome::Succeeded {
                exec.status = ExecStatus::Succeeded;
                exec.output = Some(e.output.clone());
            } else {
                // The child run had its own retries; its failure is final here.
                exec.status = ExecStatus::Failed;
                exec.error = Some(e.error.clone().unwrap_or_else(|| {
                    format!("child run {} ended {:?}", e.child_run_id, e.outcome)
                }));
            }
        }
        (RetryPending, Input::Event(Event::RetryScheduled(e))) if e.attempt == current + 1 => {
            exec.status = RetryWaiting;
            exec.retry_at = Some(e.fire_at);
            timers.insert(
                e.timer_id.clone(),
                Timer {
                    fire_at: e.fire_at,
                    kind: TimerKind::Retry {
                        step: step.to_owned(),
                        index,
                        attempt: e.attempt,
                    },
                },
            );
        }
        (RetryWaiting, Input::RetryTimer(attempt)) if attempt == current + 1 => {
            exec.status = Pending;
        }
        (Scheduled | Running | Waiting, Input::TimeoutTimer(attempt)) if attempt == current => {
            exec.timed_out = true;
        }
        (status, input) => {
            return Err(format!(
                "execution {} is {} at attempt {current}{}",
                keys::execution_name(step, index),
                status.as_str(),
                match input {
                    Input::Event(_) => String::new(),
                    Input::TimeoutTimer(attempt) => format!(" (timeout of attempt {attempt})"),
                    Input::RetryTimer(attempt) => format!(" (retry for attempt {attempt})"),
                }
            ));
        }
    }
    Ok(())
}

fn scheduled(
    exec: &mut Execution,
    step: &str,
    index: Option<u32>,
    e: &crate::event::StepScheduled,
    timers: &mut BTreeMap<String, Timer>,
) {
    exec.status = ExecStatus::Scheduled;
    exec.attempt = e.attempt;
    exec.max_attempts = e.max_attempts;
    exec.idempotency_key = Some(e.idempotency_key.clone());
    exec.input = e.input.clone();
    exec.scheduled_at = Some(e.at);
    exec.started_at = None;
    exec.finished_at = None;
    exec.deadline = e.deadline;
    exec.retry_at = None;
    exec.timed_out = false;
    exec.child_run_id = None;
    exec.approval_request = None;
    if let Some(deadline) = e.deadline {
        let kind = TimerKind::StepTimeout {
            step: step.to_owned(),
            index,
            attempt: e.attempt,
        };
        let timer = Timer {
            fire_at: deadline,
            kind,
        };
        timers.insert(keys::step_timeout_timer_id(step, index, e.attempt), timer);
    }
}

fn decision(
    granted: bool,
    by: &str,
    comment: &Option<String>,
    at: chrono::DateTime<chrono::Utc>,
) -> ApprovalDecision {
    ApprovalDecision {
        granted,
        by: by.to_owned(),
        comment: comment.clone(),
        at,
    }
}

/// Removes the timers an unfinished execution holds (cancellation).
pub(crate) fn drop_timers(
    exec: &Execution,
    step: &str,
    index: Option<u32>,
    timers: &mut BTreeMap<String, Timer>,
) {
    timers.remove(&keys::step_timeout_timer_id(step, index, exec.attempt));
    timers.remove(&keys::retry_timer_id(step, index, exec.attempt + 1));
}

fn end_attempt(
    exec: &mut Execution,
    step: &str,
    index: Option<u32>,
    timers: &mut BTreeMap<String, Timer>,
    at: chrono::DateTime<chrono::Utc>,
) {
    timers.remove(&keys::step_timeout_timer_id(step, index, exec.attempt));
    exec.finished_at = Some(at);
    exec.timed_out = false;
    // A later attempt starts its own child run; a late finish of this one is rejected.
    exec.child_run_id = None;
}
