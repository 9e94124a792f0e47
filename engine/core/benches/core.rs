//! Benchmarks of the pure core (`cargo bench -p imx-core --bench core`):
//! decide+evolve throughput on a 1,000-step fan-out, and replay of 1k, 10k
//! and 100k event histories. Every figure comes with a baseline measured in
//! the same run: reading the same events back from their stored JSON.

// The purity guard (clippy.toml) is for the library; tests and benchmarks
// read clocks and the environment.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

use std::hint::black_box;
use std::time::{Duration, Instant};

use chrono::TimeDelta;
use imx_core::event::{
    Event, EventEnvelope, RunStarted, RunSucceeded, StepScheduled, StepStarted, StepSucceeded,
};
use imx_core::workflow::{StepKind, Workflow};
use imx_core::{Effect, Host, RunState, Secrets, replay, settle, start_run};
use serde_json::{Value, json};
use testkit::histories::{RUN_ID, step, t0, workflow};

const FAN_OUT_STEPS: usize = 1_000;
const REPEATS: usize = 5;

fn main() {
    println!("| benchmark | events | time | events/s | per event | vs baseline |");
    println!("| --- | ---: | ---: | ---: | ---: | ---: |");
    fan_out();
    let mut per_event = Vec::new();
    for steps in [333, 3_333, 33_333] {
        per_event.push(replay_history(steps));
    }
    let ratio = per_event[2].0 / per_event[0].0;
    let baseline_ratio = per_event[2].1 / per_event[0].1;
    println!();
    println!(
        "replay per-event time, 100k vs 1k events: {ratio:.2}x; the JSON-read baseline: \
         {baseline_ratio:.2}x (1.0 = linear, quadratic would be 100x; the rest is cache misses)"
    );
}

/// `root` then 1,000 steps that need it, then `join` that needs them all.
fn fan_out_workflow() -> Workflow {
    let mut steps = vec![step("root", StepKind::Http)];
    let leaves: Vec<String> = (0..FAN_OUT_STEPS).map(|i| format!("leaf{i:04}")).collect();
    for leaf in &leaves {
        steps.push(
            step(leaf, StepKind::Http)
                .needs(&["root"])
                .with(json!({"n": "{{ steps.root.output.n }}"})),
        );
    }
    let needs: Vec<&str> = leaves.iter().map(String::as_str).collect();
    steps.push(step("join", StepKind::Noop).needs(&needs));
    workflow("fan-out", steps)
}

/// Runs the fan-out the way the runtime does: every executor result is
/// applied, then settled. Returns the log.
fn run_fan_out(flow: &Workflow) -> Vec<EventEnvelope> {
    let secrets = Secrets::none();
    let (started, _) = start_run(
        flow,
        "sha256:bench",
        RUN_ID,
        imx_core::run::Start::with_input(json!({})),
        t0(),
    );
    let mut state = RunState::new();
    state.apply(&started).expect("run.started applies");
    let mut log = vec![started];
    let mut now = t0();
    let mut work = settle_into(flow, &mut state, &mut log, now, &secrets);
    while let Some((step, attempt)) = work.pop() {
        now += TimeDelta::milliseconds(1);
        let event = StepSucceeded {
            at: now,
            step,
            index: None,
            attempt,
            output: json!({"n": 1}),
        };
        let envelope = EventEnvelope::new(RUN_ID, state.seq + 1, event);
        state.apply(&envelope).expect("the result applies");
        log.push(envelope);
        work.extend(settle_into(flow, &mut state, &mut log, now, &secrets));
    }
    assert!(state.is_finished(), "the fan-out finished");
    log
}

fn settle_into(
    flow: &Workflow,
    state: &mut RunState,
    log: &mut Vec<EventEnvelope>,
    now: chrono::DateTime<chrono::Utc>,
    secrets: &Secrets,
) -> Vec<(String, u32)> {
    let settled = settle(flow, state, now, Host::in_process(secrets)).expect("settle");
    log.extend(settled.events);
    settled
        .effects
        .into_iter()
        .filter_map(|effect| match effect {
            Effect::ScheduleStep { step, attempt, .. } => Some((step, attempt)),
            _ => None,
        })
        .collect()
}

fn fan_out() {
    let flow = fan_out_workflow();
    let log = run_fan_out(&flow);
    let events = log.len();
    let live = best(|| black_box(run_fan_out(&flow)).len());
    let stored: Vec<Value> = log.iter().map(EventEnvelope::to_json).collect();
    let baseline = best(|| read_back(&stored).len());
    row("decide+evolve, 1,000-step fan-out", events, live, baseline);
}

/// A synthetic history of `steps` steps with 3 events each, plus start and end.
fn history(steps: usize) -> Vec<EventEnvelope> {
    let ids: Vec<String> = (0..steps).map(|i| format!("s{i:06}")).collect();
    let mut events: Vec<Event> = vec![
        RunStarted {
            at: t0(),
            workflow: "replay".into(),
            version: "sha256:bench".into(),
            input: json!({}),
            steps: ids.clone(),
            idempotency_key: None,
            parent: None,
            deadline: None,
            trigger: None,
            fork: None,
            vars: None,
            finally: Vec::new(),
        }
        .into(),
    ];
    for id in &ids {
        let at = t0();
        let key = format!("{RUN_ID}/{id}");
        events.push(
            StepScheduled {
                at,
                step: id.clone(),
                index: None,
                attempt: 1,
                max_attempts: 1,
                idempotency_key: key,
                input: json!({"url": "https://example.test"}),
                deadline: None,
            }
            .into(),
        );
        events.push(
            StepStarted {
                at,
                step: id.clone(),
                index: None,
                attempt: 1,
            }
            .into(),
        );
        events.push(
            StepSucceeded {
                at,
                step: id.clone(),
                index: None,
                attempt: 1,
                output: json!({"status": 200}),
            }
            .into(),
        );
    }
    events.push(
        RunSucceeded {
            at: t0(),
            output: Value::Null,
        }
        .into(),
    );
    events
        .into_iter()
        .enumerate()
        .map(|(i, event)| EventEnvelope::new(RUN_ID, i as u64 + 1, event))
        .collect()
}

/// Replays `steps * 3 + 2` events; returns the time per event in ns, for
/// replay and for the baseline.
fn replay_history(steps: usize) -> (f64, f64) {
    let log = history(steps);
    let stored: Vec<Value> = log.iter().map(EventEnvelope::to_json).collect();
    let baseline = best(|| read_back(&stored).len());
    let replayed = best(|| {
        let state = replay(black_box(&log)).expect("the history replays");
        state.steps.len()
    });
    let from_stored = best(|| {
        let events = read_back(&stored);
        replay(&events).expect("the history replays").steps.len()
    });
    row(
        &format!("replay {} events", log.len()),
        log.len(),
        replayed,
        baseline,
    );
    row(
        &format!("read + replay {} events", log.len()),
        log.len(),
        from_stored,
        baseline,
    );
    println!(
        "| baseline: read {} events from JSON | {} | {} | {} | {} | 1.00x |",
        log.len(),
        log.len(),
        fmt(baseline),
        rate(log.len(), baseline),
        per(log.len(), baseline)
    );
    let events = log.len() as f64;
    (
        replayed.as_nanos() as f64 / events,
        baseline.as_nanos() as f64 / events,
    )
}

fn read_back(stored: &[Value]) -> Vec<EventEnvelope> {
    stored
        .iter()
        .map(|value| EventEnvelope::from_json(black_box(value)).expect("an event reads back"))
        .collect()
}

/// The best of [`REPEATS`] runs.
fn best<T>(mut work: impl FnMut() -> T) -> Duration {
    (0..REPEATS)
        .map(|_| {
            let start = Instant::now();
            black_box(work());
            start.elapsed()
        })
        .min()
        .unwrap_or_default()
}

fn row(name: &str, events: usize, time: Duration, baseline: Duration) {
    let ratio = time.as_secs_f64() / baseline.as_secs_f64().max(1e-12);
    println!(
        "| {name} | {events} | {} | {} | {} | {ratio:.2}x |",
        fmt(time),
        rate(events, time),
        per(events, time)
    );
}

fn fmt(time: Duration) -> String {
    format!("{:.2} ms", time.as_secs_f64() * 1e3)
}

fn rate(events: usize, time: Duration) -> String {
    format!("{:.0}", events as f64 / time.as_secs_f64().max(1e-12))
}

fn per(events: usize, time: Duration) -> String {
    format!("{:.0} ns", time.as_nanos() as f64 / events as f64)
}
