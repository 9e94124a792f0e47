//! Events as stored: payload round trips, the generated JSON Schemas (kept
//! in `schemas/events/`, regenerated with `UPDATE_SCHEMAS=1`), every
//! simulated event validating against its schema, typed transition errors,
//! and secrets kept out of the log.

use std::path::PathBuf;

use expect_test::expect;
use imx_core::event::{Event, EventEnvelope, StepSucceeded};
use imx_core::evolve::{self, Error};
use imx_core::workflow::StepKind;
use imx_core::{Effect, RunState, Secrets};
use serde_json::{Value, json};
use testkit::histories::{self, RUN_ID, step, workflow};

use super::driver::{Driver, Outcome, Scripted};
use super::sim::{CANARY, run_seed, validators};

fn schema_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../schemas/events")
}

fn schema_text(schema: &schemars::Schema) -> String {
    let mut text = serde_json::to_string_pretty(schema).unwrap_or_default();
    text.push('\n');
    text
}

#[test]
fn event_schemas_on_disk_match_the_rust_types() {
    let dir = schema_dir();
    let update = std::env::var_os("UPDATE_SCHEMAS").is_some();
    let mut stale = Vec::new();
    for (event_type, schema) in Event::schemas() {
        let path = dir.join(format!("{event_type}.schema.json"));
        let fresh = schema_text(&schema);
        let on_disk = std::fs::read_to_string(&path).unwrap_or_default();
        if on_disk == fresh {
            continue;
        }
        if update {
            std::fs::create_dir_all(&dir).expect("create schemas/events");
            std::fs::write(&path, fresh).expect("write a schema");
        } else {
            stale.push(event_type);
        }
    }
    assert!(
        stale.is_empty(),
        "stale event schemas {stale:?}: run `UPDATE_SCHEMAS=1 cargo test -p imx-engine --test it core::events`"
    );
    let files = std::fs::read_dir(&dir)
        .map(|entries| entries.count())
        .unwrap_or(0);
    assert_eq!(
        files,
        Event::TYPES.len(),
        "schemas/events holds a schema per event type, no more"
    );
}

fn all_simulated_events() -> Vec<EventEnvelope> {
    let mut events: Vec<EventEnvelope> = (0..300u64)
        .flat_map(|seed| run_seed(seed).map(|run| run.log).unwrap_or_default())
        .collect();
    for history in [
        histories::retry_then_ok(),
        histories::approval_granted(),
        histories::child_run_succeeded(),
        histories::forked_at_charge(),
    ] {
        events.extend(history.events);
    }
    events
}

#[test]
fn every_simulated_event_validates_against_its_schema_and_round_trips() {
    let validators = validators();
    let events = all_simulated_events();
    let mut seen = std::collections::BTreeSet::new();
    for envelope in &events {
        let (event_type, version, payload) = envelope.event.to_payload();
        seen.insert(event_type);
        let errors: Vec<String> = validators[event_type]
            .iter_errors(&payload)
            .map(|e| e.to_string())
            .collect();
        assert!(
            errors.is_empty(),
            "{event_type} {payload} breaks its schema: {errors:?}"
        );
        let back =
            Event::from_payload(event_type, version, &payload).expect("a payload reads back");
        assert_eq!(back, envelope.event);
        let stored = EventEnvelope::from_json(&envelope.to_json()).expect("an envelope reads back");
        assert_eq!(&stored, envelope);
    }
    // `run.retry_requested` comes only from an operator (retryRun), never
    // from the simulated world; core::retry_run covers it.
    let missing: Vec<&&str> = Event::TYPES
        .iter()
        .filter(|t| !seen.contains(*t) && **t != "run.retry_requested")
        .collect();
    assert!(
        missing.is_empty(),
        "the simulation never produced {missing:?}"
    );
}

#[test]
fn unreadable_payloads_are_typed_errors() {
    let errors = [
        Event::from_payload("step.exploded", 1, &json!({})),
        Event::from_payload("step.succeeded", 2, &json!({})),
        Event::from_payload("step.succeeded", 1, &json!({"step": "a"})),
    ];
    let text: String = errors
        .iter()
        .map(|e| {
            format!(
                "{}\n",
                e.as_ref()
                    .err()
                    .map(ToString::to_string)
                    .unwrap_or_default()
            )
        })
        .collect();
    expect![[r#"
        unknown event type `step.exploded`; known types: run.started, step.scheduled, step.started, step.succeeded, step.failed, step.skipped, step.cancelled, step.retry_scheduled, timer.fired, approval.requested, approval.granted, approval.rejected, child_run.started, child_run.finished, for_each.expanded, for_each.stopped, run.cancel_requested, run.retry_requested, run.rewound, run.paused, run.resumed, step.bypassed, step.adopted, run.finalizing, run.succeeded, run.failed, run.cancelled, run.timed_out
        event `step.succeeded` has schema version 2, this engine reads version 1
        payload of event `step.succeeded` does not match its schema: missing field `at`
    "#]].assert_eq(&text);
}

fn succeeded(seq: u64, step: &str, attempt: u32) -> EventEnvelope {
    let event = StepSucceeded {
        at: histories::t0(),
        step: step.to_owned(),
        index: None,
        attempt,
        output: Value::Null,
    };
    EventEnvelope::new(RUN_ID, seq, event)
}

#[test]
fn impossible_events_are_typed_errors_and_change_nothing() {
    let history = histories::retry_then_ok();
    let state = history.state().expect("the canned history replays");
    let next = state.seq + 1;
    let mut other_run = succeeded(next, "fetch", 2);
    other_run.run_id = uuid::Uuid::from_u128(7);
    let attempts = [
        ("duplicate success", succeeded(next, "fetch", 2)),
        ("late result of attempt 1", succeeded(next, "fetch", 1)),
        ("unknown step", succeeded(next, "nope", 1)),
        ("step not scheduled", succeeded(next, "report", 1)),
        ("seq gap", succeeded(next + 1, "report", 1)),
        ("other run", other_run),
    ];
    let mut text = String::new();
    for (what, envelope) in attempts {
        let mut copy = state.clone();
        let result = copy.apply(&envelope);
        assert_eq!(copy, state, "{what}: a rejected event changed the state");
        text.push_str(&format!(
            "{what}: {}\n",
            result.err().map(|e| e.to_string()).unwrap_or_default()
        ));
    }
    let before_start = evolve::evolve(RunState::new(), &succeeded(1, "fetch", 1));
    assert!(matches!(
        before_start,
        Err(Error::InvalidTransition {
            seq: 1,
            event: "step.succeeded",
            ..
        })
    ));
    expect![[r#"
        duplicate success: run 00000000-0000-4000-8000-000000000001: event seq 10 (step.succeeded) is not allowed: step `fetch` is succeeded
        late result of attempt 1: run 00000000-0000-4000-8000-000000000001: event seq 10 (step.succeeded) is not allowed: step `fetch` is succeeded
        unknown step: run 00000000-0000-4000-8000-000000000001: event seq 10 (step.succeeded) is not allowed: the workflow has no step `nope`
        step not scheduled: run 00000000-0000-4000-8000-000000000001: event seq 10 (step.succeeded) is not allowed: step `report` is pending
        seq gap: run 00000000-0000-4000-8000-000000000001: expected event seq 10, got 11 (the log has a gap or a duplicate)
        other run: event of run 00000000-0000-0000-0000-000000000007 applied to the state of run 00000000-0000-4000-8000-000000000001
    "#]].assert_eq(&text);
}

#[test]
fn secrets_reach_the_executor_but_never_an_event() {
    let mut flow = workflow(
        "secrets",
        vec![
            step("call", StepKind::Http)
                .with(json!({"headers": {"Authorization": "Bearer {{ secrets.TOKEN }}"}})),
            step("echo", StepKind::Noop)
                .needs(&["call"])
                .with(json!({"token": "{{ secrets.TOKEN }}", "n": 1})),
            step("fails", StepKind::Fail)
                .needs(&["echo"])
                .with(json!({"message": "bad token {{ secrets.TOKEN }}"}))
                .continue_on_error(),
        ],
    );
    flow.output = Some(json!({"token": "{{ secrets.TOKEN }}"}));
    let secrets: Secrets = [("TOKEN", CANARY)].into_iter().collect();
    assert!(
        !format!("{secrets:?}").contains(CANARY),
        "Debug shows secret names only"
    );
    let mut driver = Driver::new(&flow, secrets);
    // Executors redact their own outputs; this one returns none of its input.
    let mut world = Scripted {
        script: |_: &str, _: Option<u32>, _: u32| Some(Outcome::Succeed(json!({"status": 200}))),
        approve: true,
        cancel_at_ms: None,
    };
    driver.run(json!({}), &mut world).expect("the run ends");
    let executor_copy = driver.effects.iter().find_map(|effect| match effect {
        Effect::ScheduleStep { input, .. } => Some(input.to_string()),
        _ => None,
    });
    assert!(
        executor_copy.is_some_and(|input| input.contains(CANARY)),
        "the executor gets the secret"
    );
    let log: String = driver
        .log
        .iter()
        .map(|e| format!("{}\n", e.to_json()))
        .collect();
    assert!(!log.contains(CANARY), "a secret reached the log:\n{log}");
    expect![[r#"
        1 run.started {"input":{}}
        2 step.scheduled call#1 {"input":{"headers":{"Authorization":"***"}}}
        3 step.started call#1
        4 step.succeeded call#1 {"output":{"status":200}}
        5 step.scheduled echo#1 {"input":{"n":1,"token":"***"}}
        6 step.succeeded echo#1 {"output":{"n":1,"token":"***"}}
        7 step.scheduled fails#1 {"input":{"message":"***"}}
        8 step.failed fails#1 {"error":"***","retryable":true}
        9 run.succeeded {"output":{"token":"***"}}
    "#]]
    .assert_eq(&super::support::render_brief(&driver.log));
}

#[test]
fn effects_do_not_show_secrets_in_debug_output() {
    let flow = workflow(
        "debug",
        vec![step("call", StepKind::Http).with(json!({"token": "{{ secrets.TOKEN }}"}))],
    );
    let secrets: Secrets = [("TOKEN", CANARY)].into_iter().collect();
    let (started, _) = imx_core::start_run(
        &flow,
        "v",
        RUN_ID,
        imx_core::run::Start::with_input(json!({})),
        histories::t0(),
    );
    let mut state = RunState::new();
    state.apply(&started).expect("run.started applies");
    let settled = imx_core::settle(
        &flow,
        &mut state,
        histories::t0(),
        imx_core::Host::in_process(&secrets),
    )
    .expect("settles");
    let shown = format!("{:?}", settled.effects);
    assert!(
        matches!(&settled.effects[..], [Effect::ScheduleStep { input, .. }] if input.to_string().contains(CANARY))
    );
    assert!(
        !shown.contains(CANARY),
        "Debug of an effect shows a secret: {shown}"
    );
}

#[test]
fn a_run_started_by_a_trigger_records_it_in_the_event_state_and_document() {
    let flow = workflow("nightly", vec![step("a", StepKind::Noop)]);
    let trigger = imx_core::event::TriggerContext::Cron {
        trigger: "cron".to_owned(),
        scheduled_at: histories::t0(),
    };
    let start = imx_core::run::Start {
        idempotency_key: Some("cron:nightly:cron:2026-01-01T00:00:00Z".to_owned()),
        trigger: Some(trigger.clone()),
        ..imx_core::run::Start::with_input(json!({}))
    };
    let (started, _) = imx_core::start_run(&flow, "v", RUN_ID, start, histories::t0());
    let (_, _, payload) = started.event.to_payload();
    expect![[r#"{"kind":"cron","scheduled_at":"2026-01-01T00:00:00Z","trigger":"cron"}"#]]
        .assert_eq(&payload["trigger"].to_string());
    let mut state = RunState::new();
    state.apply(&started).expect("run.started applies");
    assert_eq!(state.trigger, Some(trigger));
    assert_eq!(state.document()["trigger"]["kind"], "cron");

    // An explicit start writes no `trigger` key: old logs hash the same.
    let (plain, _) = imx_core::start_run(
        &flow,
        "v",
        RUN_ID,
        imx_core::run::Start::with_input(json!({})),
        histories::t0(),
    );
    assert!(plain.event.to_payload().2.get("trigger").is_none());
}
