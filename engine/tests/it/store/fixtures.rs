//! Builders for store tests: events of a tiny stand-in workflow, and the fold
//! that projects them into run and step rows (the store's caller computes
//! rows; the real core's fold lives elsewhere).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use engine::store::prelude::*;
use engine::store::{
    AppendRequest, NewEvent, NewTask, NewTimer, ProjectionUpdate, RecordedEvent, RunId, RunRow,
    StepRow, new_id,
};

use super::start_time;
use serde_json::{Value, json};

pub fn event(event_type: &str, payload: Value) -> NewEvent {
    NewEvent {
        event_type: event_type.to_owned(),
        schema_version: 1,
        payload,
    }
}

pub fn run_started(workflow: &str, at: DateTime<Utc>, key: Option<&str>) -> NewEvent {
    event(
        "RunStarted",
        json!({ "workflow": workflow, "input": { "n": 1 }, "at": at, "key": key }),
    )
}

pub fn step_completed(step: &str, output: Value, at: DateTime<Utc>) -> NewEvent {
    event(
        "StepCompleted",
        json!({ "step": step, "output": output, "at": at }),
    )
}

pub fn run_succeeded(at: DateTime<Utc>) -> NewEvent {
    event(
        "RunSucceeded",
        json!({ "output": { "done": true }, "at": at }),
    )
}

/// Starts `run_id` with a projection row, as the runtime would.
pub fn start_request(
    run_id: RunId,
    workflow: &str,
    at: DateTime<Utc>,
    key: Option<&str>,
) -> AppendRequest {
    let events = vec![run_started(workflow, at, key)];
    let mut request = AppendRequest::new(run_id, 0, events.clone());
    request.projection = project(&[], &events, run_id);
    request
}

/// Appends `events` after `history` with the rows the fold gives: the whole
/// run row and only the step rows these events touched.
pub fn next_request(run_id: RunId, history: &[NewEvent], events: Vec<NewEvent>) -> AppendRequest {
    let mut request = AppendRequest::new(run_id, history.len() as u64, events.clone());
    request.projection = project(history, &events, run_id);
    request
}

/// Incremental projection: fold everything, keep the steps `new` touched.
pub fn project(history: &[NewEvent], new: &[NewEvent], run_id: RunId) -> ProjectionUpdate {
    let all: Vec<&NewEvent> = history.iter().chain(new).collect();
    let mut update = fold_events(run_id, &all);
    let touched: Vec<&str> = new
        .iter()
        .filter_map(|event| event.payload["step"].as_str())
        .collect();
    update
        .steps
        .retain(|step| touched.contains(&step.step_id.as_str()));
    update
}

/// The rebuild fold: rows from a run's complete recorded stream.
pub fn fold(events: &[RecordedEvent]) -> ProjectionUpdate {
    let run_id = events.first().map(|event| event.run_id).unwrap_or_default();
    let as_new: Vec<NewEvent> = events
        .iter()
        .map(|event| NewEvent {
            event_type: event.event_type.clone(),
            schema_version: event.schema_version,
            payload: event.payload.clone(),
        })
        .collect();
    fold_events(run_id, &as_new.iter().collect::<Vec<_>>())
}

fn fold_events(run_id: RunId, events: &[&NewEvent]) -> ProjectionUpdate {
    let mut run: Option<RunRow> = None;
    let mut steps: BTreeMap<String, StepRow> = BTreeMap::new();
    for event in events {
        let at: DateTime<Utc> =
            serde_json::from_value(event.payload["at"].clone()).expect("event time");
        match event.event_type.as_str() {
            "RunStarted" => {
                run = Some(RunRow {
                    run_id,
                    workflow: event.payload["workflow"]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned(),
                    version: "sha256:test".to_owned(),
                    status: "running".to_owned(),
                    input: event.payload["input"].clone(),
                    output: None,
                    error: None,
                    parent_run_id: None,
                    forked_from: None,
                    idempotency_key: event.payload["key"].as_str().map(str::to_owned),
                    created_at: at,
                    updated_at: at,
                });
            }
            "StepCompleted" => {
                let step_id = event.payload["step"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned();
                let attempts = steps.get(&step_id).map_or(0, |step| step.attempts) + 1;
                let row = StepRow {
                    run_id,
                    step_id: step_id.clone(),
                    status: "succeeded".to_owned(),
                    attempts,
                    output: Some(event.payload["output"].clone()),
                    error: None,
                    updated_at: at,
                };
                steps.insert(step_id, row);
            }
            "RunSucceeded" => {
                if let Some(run) = run.as_mut() {
                    run.status = "succeeded".to_owned();
                    run.output = Some(event.payload["output"].clone());
                }
            }
            _ => {}
        }
        if let Some(run) = run.as_mut() {
            run.updated_at = at;
        }
    }
    ProjectionUpdate {
        run,
        steps: steps.into_values().collect(),
    }
}

/// A task on `queue`, told apart by `n`.
pub fn task(queue: &str, n: usize) -> NewTask {
    NewTask {
        task_id: new_id(),
        queue: queue.to_owned(),
        payload: json!({ "n": n }),
        available_at: None,
        lease: None,
    }
}

/// Starts a run whose start enqueues `tasks` and sets `timers`.
pub async fn start_with_tasks<S: EventStore>(
    store: &S,
    tasks: Vec<NewTask>,
    timers: Vec<NewTimer>,
) -> RunId {
    let run_id = new_id();
    let mut request = start_request(run_id, "work", start_time(), None);
    request.enqueue = tasks;
    request.timers = timers;
    store.append(request).await.expect("start with work");
    run_id
}
