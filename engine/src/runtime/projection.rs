//! The read-model rows (runs, steps) computed from a run's folded state, for
//! the append that changed it; only the steps its events touch are written.

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::core::event::{Event, EventEnvelope};
use crate::core::state::RunState;
use crate::store::{ProjectionUpdate, RunRow, StepRow};

/// Rows for `state` after `events`; every step when `events` start the run
/// or reset steps (a retry of the run, a rewind, a skip).
pub fn update(state: &RunState, events: &[EventEnvelope], now: DateTime<Utc>) -> ProjectionUpdate {
    let Some(run_id) = state.run_id else {
        return ProjectionUpdate::default();
    };
    let everything = events.iter().any(|envelope| {
        envelope.seq == 1
            || matches!(
                envelope.event,
                Event::RunRetryRequested(_) | Event::RunRewound(_) | Event::StepBypassed(_)
            )
    });
    let touched: BTreeSet<String> = events
        .iter()
        .filter_map(|envelope| match envelope.payload().get("step") {
            Some(Value::String(step)) => Some(step.clone()),
            _ => None,
        })
        .collect();
    let steps = state
        .steps
        .iter()
        .filter(|(id, _)| everything || touched.contains(*id))
        .map(|(id, step)| StepRow {
            run_id,
            step_id: id.clone(),
            status: step.status.as_str().to_owned(),
            attempts: step.attempts(),
            output: step.output.clone(),
            error: step.reason.clone(),
            updated_at: now,
        })
        .collect();
    ProjectionUpdate {
        run: Some(run_row(state, now)),
        steps,
    }
}

/// The `runs` row of a started run.
pub fn run_row(state: &RunState, now: DateTime<Utc>) -> RunRow {
    RunRow {
        run_id: state.run_id.unwrap_or_default(),
        workflow: state.workflow.clone(),
        version: state.version.clone(),
        status: state.status.as_str().to_owned(),
        input: state.input.clone(),
        output: state.output.clone(),
        error: state.failure.clone(),
        parent_run_id: state.parent.as_ref().map(|parent| parent.run_id),
        forked_from: state.fork.as_ref().map(|fork| fork.run_id),
        idempotency_key: state.idempotency_key.clone(),
        created_at: state.started_at.unwrap_or(now),
        updated_at: now,
    }
}
