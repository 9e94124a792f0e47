//! A minimal runtime around the pure core for the example workflows: every
//! executor answers after a few ms (http with a canned body, agents and
//! sleeps with a verdict), humans approve, child runs succeed with their input,
//! timers fire on time. The state the loop holds is the live state that
//! replay must reproduce.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use engine::core::event::{
    ApprovalGranted, ChildOutcome, ChildRunFinished, Event, EventEnvelope, StepStarted,
    StepSucceeded, TimerFired,
};
use engine::core::workflow::{StepKind, Workflow};
use engine::core::{Effect, Host, RunState, Secrets, settle, start_run};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::support::{RunLog, start_time};

/// Most events a driven run may produce before it counts as stuck.
pub const DRIVEN_EVENTS_MAX: usize = 5_000;

/// What a canned `http` step answers: enough for the examples' templates.
fn http_output() -> Value {
    json!({
        "status": 200,
        "headers": {},
        "body": {"status": "unpaid", "items": ["a", "b"], "partitions": ["p1", "p2"], "rows": 3, "tracking": "T-1", "healthy": true}
    })
}

/// Drives one run of `workflow` with `input` to its end.
pub fn drive(workflow: &Workflow, run_id: Uuid, input: Value, secrets: &Secrets) -> RunLog {
    let mut now = start_time();
    let (started, effects) = start_run(
        workflow,
        "sha256:driven",
        run_id,
        engine::core::run::Start::with_input(input),
        now,
    );
    let mut state = RunState::new();
    state.apply(&started).expect("run.started applies");
    let mut log = vec![started];
    let mut queue: BTreeMap<(DateTime<Utc>, u64), Event> = BTreeMap::new();
    let mut arrivals = 0u64;
    let mut pending = effects;
    loop {
        let settled = settle(workflow, &mut state, now, Host::in_process(secrets)).expect("settle");
        log.extend(settled.events);
        pending.extend(settled.effects);
        for effect in pending.drain(..) {
            for (due, event) in react(&effect, now) {
                arrivals += 1;
                queue.insert((due, arrivals), event);
            }
        }
        let Some(((due, _), event)) = queue.pop_first() else {
            break;
        };
        now = due;
        let envelope = EventEnvelope::new(run_id, state.seq + 1, event);
        // Stale timers and late results are rejected, as the runtime drops them.
        if state.apply(&envelope).is_ok() {
            log.push(envelope);
        }
        assert!(log.len() < DRIVEN_EVENTS_MAX, "the run does not end");
    }
    RunLog {
        events: log,
        live: state,
    }
}

fn later(now: DateTime<Utc>, ms: i64) -> DateTime<Utc> {
    now + chrono::TimeDelta::milliseconds(ms)
}

/// The facts an effect leads to, with the time they arrive.
fn react(effect: &Effect, now: DateTime<Utc>) -> Vec<(DateTime<Utc>, Event)> {
    match effect {
        Effect::ScheduleStep {
            step,
            kind,
            index,
            attempt,
            ..
        } => {
            let (step, index, attempt) = (step.clone(), *index, *attempt);
            let output = if *kind == StepKind::Http {
                http_output()
            } else {
                json!({"verdict": "approve"})
            };
            let at = later(now, 5);
            let done = later(now, 15);
            vec![
                (
                    at,
                    StepStarted {
                        at,
                        step: step.clone(),
                        index,
                        attempt,
                    }
                    .into(),
                ),
                (
                    done,
                    StepSucceeded {
                        at: done,
                        step,
                        index,
                        attempt,
                        output,
                    }
                    .into(),
                ),
            ]
        }
        Effect::StartTimer { id, fire_at } => vec![(
            *fire_at,
            TimerFired {
                at: *fire_at,
                timer_id: id.clone(),
            }
            .into(),
        )],
        Effect::RequestApproval { step, index, .. } => {
            let at = later(now, 20);
            vec![(
                at,
                ApprovalGranted {
                    at,
                    step: step.clone(),
                    index: *index,
                    by: "auditor".into(),
                    comment: None,
                }
                .into(),
            )]
        }
        Effect::StartChildRun {
            child_run_id,
            input,
            parent,
            ..
        } => {
            // The parent's step key is `<run-id>/<step-id>[/<index>]`.
            let mut parts = parent.step_key.splitn(3, '/').skip(1);
            let step = parts.next().unwrap_or_default().to_owned();
            let index = parts.next().and_then(|index| index.parse().ok());
            let at = later(now, 30);
            let finished = ChildRunFinished {
                at,
                step,
                index,
                child_run_id: *child_run_id,
                outcome: ChildOutcome::Succeeded,
                output: json!({"tracking": "T-1", "input": input}),
                error: None,
            };
            vec![(at, finished.into())]
        }
        Effect::CancelStep { .. } | Effect::CancelChildRun { .. } | Effect::CompleteRun { .. } => {
            Vec::new()
        }
    }
}

/// Driven runs of the example workflows, one per example, with fixed ids.
pub fn example_runs() -> Vec<RunLog> {
    let secrets: Secrets = [
        ("DEPLOY_TOKEN", "s3cret-deploy"),
        ("CARRIER_TOKEN", "s3cret-carrier"),
    ]
    .into_iter()
    .collect();
    let base = "http://127.0.0.1:9";
    let runs = [
        (
            "order-fulfilment",
            json!({"order_id": "o-1", "base_url": base}),
        ),
        ("shipping", json!({"order": "o-1", "base_url": base})),
        (
            "deploy",
            json!({"base_url": base, "service": "web", "image": "web:1.2.3", "bake": "1s"}),
        ),
        (
            "incident-escalation",
            json!({"base_url": base, "alert": {"id": "a-1", "severity": "critical", "summary": "disk"}}),
        ),
        (
            "nightly-data-pipeline",
            json!({"base_url": base, "date": "2026-11-24"}),
        ),
        (
            "payment-events",
            json!({"payment_id": "p-1", "amount": 12000, "currency": "EUR"}),
        ),
    ];
    runs.into_iter()
        .enumerate()
        .map(|(n, (name, input))| {
            drive(
                &crate::support::example(name),
                crate::support::run_id(100 + n as u128),
                input,
                &secrets,
            )
        })
        .collect()
}
