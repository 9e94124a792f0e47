//! Run surgery in the core: which run and step states accept each new event
//! (tables), and what each operation does to a run — rewind with new keys,
//! pause holding new attempts, skip unblocking dependents, fork taking over
//! outputs — as logs.

use expect_test::expect;
use imx_core::event::{
    Event, EventEnvelope, RunPaused, RunResumed, RunRewound, StepAdopted, StepBypassed,
};
use imx_core::state::{RunStatus, StepStatus};
use imx_core::surgery::{self, Refusal};
use imx_core::workflow::{StepKind, Workflow};
use imx_core::{Host, RunState, settle};
use serde_json::{Value, json};
use testkit::histories::{History, HistoryBuilder, RUN_ID, step, t0, workflow};
use uuid::Uuid;

use super::support::render_log;

const BY: &str = "key:ops";
const WHY: &str = "upstream fixed";
const SOURCE: Uuid = Uuid::from_u128(0x0000_0000_0000_4000_8000_0000_0000_00aa);

/// `fetch` (http, one attempt) then `gate` (approval), and `side` (noop) alone.
fn gated() -> Workflow {
    workflow(
        "gated",
        vec![
            step("fetch", StepKind::Http)
                .with(json!({"url": "https://shop.example/{{ run.attempt }}"})),
            step("gate", StepKind::Approval)
                .needs(&["fetch"])
                .with(json!({"role": "ops"})),
            step("side", StepKind::Noop).with(json!({"side": true})),
        ],
    )
}

/// The run of [`gated`] in each status the tables look at.
fn runs_by_status() -> Vec<(&'static str, History)> {
    let start = || HistoryBuilder::start(gated(), json!({}));
    let paused = |at| {
        RunPaused {
            at,
            by: BY.into(),
            reason: WHY.into(),
        }
        .into()
    };
    vec![
        ("running", start().settled()),
        (
            "waiting",
            start().succeeded("fetch", None, 1, json!(1)).settled(),
        ),
        ("paused", start().then(paused).settled()),
        (
            "succeeded",
            start()
                .succeeded("fetch", None, 1, json!(1))
                .approve("gate", "ann")
                .settled(),
        ),
        (
            "failed",
            start().failed("fetch", 1, "HTTP 400", false).settled(),
        ),
        ("cancelled", start().cancel("ann").settled()),
    ]
}

/// Each new event, as `evolve` sees it, against a run of [`gated`].
fn candidate_events(at: chrono::DateTime<chrono::Utc>) -> Vec<(&'static str, Event)> {
    vec![
        (
            "run.rewound",
            RunRewound {
                at,
                step: "fetch".into(),
                steps: vec!["fetch".into(), "gate".into()],
                by: BY.into(),
                reason: WHY.into(),
            }
            .into(),
        ),
        (
            "run.paused",
            RunPaused {
                at,
                by: BY.into(),
                reason: WHY.into(),
            }
            .into(),
        ),
        (
            "run.resumed",
            RunResumed {
                at,
                by: BY.into(),
                reason: WHY.into(),
            }
            .into(),
        ),
        (
            "step.bypassed",
            StepBypassed {
                at,
                step: "fetch".into(),
                output: json!("manual"),
                reset: vec!["gate".into()],
                by: BY.into(),
                reason: WHY.into(),
            }
            .into(),
        ),
        (
            "step.adopted",
            StepAdopted {
                at,
                step: "side".into(),
                output: json!({}),
                from_run: SOURCE,
            }
            .into(),
        ),
    ]
}

fn applies(state: &RunState, event: Event) -> &'static str {
    let mut state = state.clone();
    match state.apply(&EventEnvelope::new(RUN_ID, state.seq + 1, event)) {
        Ok(()) => "accepted",
        Err(_) => "rejected",
    }
}

#[test]
fn every_surgery_event_against_every_run_status() {
    let mut table = String::new();
    for (status, history) in runs_by_status() {
        let state = history.state().expect("the history replays");
        assert_eq!(state.status.as_str(), status);
        let row: Vec<String> = candidate_events(t0())
            .into_iter()
            .map(|(name, event)| format!("{name} {}", applies(&state, event)))
            .collect();
        table.push_str(&format!("{status:<9} {}\n", row.join(", ")));
    }
    // `fetch` is running, waiting done, failed or cancelled: the bypass of a
    // step that is not failed or waiting is rejected; adoption needs a fork.
    expect![[r#"
        running   run.rewound rejected, run.paused accepted, run.resumed rejected, step.bypassed rejected, step.adopted rejected
        waiting   run.rewound rejected, run.paused accepted, run.resumed rejected, step.bypassed rejected, step.adopted rejected
        paused    run.rewound rejected, run.paused rejected, run.resumed accepted, step.bypassed rejected, step.adopted rejected
        succeeded run.rewound accepted, run.paused rejected, run.resumed rejected, step.bypassed rejected, step.adopted rejected
        failed    run.rewound accepted, run.paused rejected, run.resumed rejected, step.bypassed accepted, step.adopted rejected
        cancelled run.rewound accepted, run.paused rejected, run.resumed rejected, step.bypassed rejected, step.adopted rejected
    "#]]
    .assert_eq(&table);
}

#[test]
fn every_operation_planned_against_every_run_status() {
    let flow = gated();
    let mut table = String::new();
    for (status, history) in runs_by_status() {
        let state = history.state().expect("the history replays");
        let verdict = |result: Result<(), Refusal>| match result {
            Ok(()) => "ok".to_owned(),
            Err(refusal) => format!("refused ({refusal})"),
        };
        let rewind = surgery::rewind(&flow, &state, "fetch", BY, WHY, t0()).map(drop);
        let pause = surgery::pause(&state, BY, WHY, t0()).map(drop);
        let resume = surgery::resume(&state, BY, WHY, t0()).map(drop);
        table.push_str(&format!(
            "{status}\n  rewind {}\n  pause  {}\n  resume {}\n",
            verdict(rewind),
            verdict(pause),
            verdict(resume)
        ));
    }
    expect![[r#"
        running
          rewind refused (rewind needs a run that is succeeded, failed or cancelled; this run is running)
          pause  ok
          resume refused (resume needs a run that is paused; this run is running)
        waiting
          rewind refused (rewind needs a run that is succeeded, failed or cancelled; this run is waiting)
          pause  ok
          resume refused (resume needs a run that is paused; this run is waiting)
        paused
          rewind refused (rewind needs a run that is succeeded, failed or cancelled; this run is paused)
          pause  refused (pause needs a run that is running or waiting; this run is paused)
          resume ok
        succeeded
          rewind ok
          pause  refused (pause needs a run that is running or waiting; this run is succeeded)
          resume refused (resume needs a run that is paused; this run is succeeded)
        failed
          rewind ok
          pause  refused (pause needs a run that is running or waiting; this run is failed)
          resume refused (resume needs a run that is paused; this run is failed)
        cancelled
          rewind ok
          pause  refused (pause needs a run that is running or waiting; this run is cancelled)
          resume refused (resume needs a run that is paused; this run is cancelled)
    "#]]
    .assert_eq(&table);
}

#[test]
fn skip_against_every_step_status() {
    let flow = gated();
    let mut table = String::new();
    for (status, history) in runs_by_status() {
        let state = history.state().expect("the history replays");
        for (id, step) in &state.steps {
            let verdict = match surgery::skip(&flow, &state, id, json!(null), BY, WHY, t0()) {
                Ok(event) => format!("ok, resets {:?}", event.reset),
                Err(refusal) => format!("refused ({refusal})"),
            };
            table.push_str(&format!(
                "{status:<9} {id:<5} {:<9} {verdict}\n",
                step.status.as_str()
            ));
        }
    }
    expect![[r#"
        running   fetch running   refused (skip needs a step that is failed or waiting; step `fetch` is running)
        running   gate  pending   refused (skip needs a step that is failed or waiting; step `gate` is pending)
        running   side  succeeded refused (skip needs a step that is failed or waiting; step `side` is succeeded)
        waiting   fetch succeeded refused (skip needs a step that is failed or waiting; step `fetch` is succeeded)
        waiting   gate  waiting   ok, resets []
        waiting   side  succeeded refused (skip needs a step that is failed or waiting; step `side` is succeeded)
        paused    fetch running   refused (skip needs a step that is failed or waiting; step `fetch` is running)
        paused    gate  pending   refused (skip needs a step that is failed or waiting; step `gate` is pending)
        paused    side  succeeded refused (skip needs a step that is failed or waiting; step `side` is succeeded)
        succeeded fetch succeeded refused (skip needs a run that is running, waiting, paused or failed (not timed out, not being cancelled); this run is succeeded)
        succeeded gate  succeeded refused (skip needs a run that is running, waiting, paused or failed (not timed out, not being cancelled); this run is succeeded)
        succeeded side  succeeded refused (skip needs a run that is running, waiting, paused or failed (not timed out, not being cancelled); this run is succeeded)
        failed    fetch failed    ok, resets ["gate"]
        failed    gate  skipped   refused (skip needs a step that is failed or waiting; step `gate` is skipped)
        failed    side  succeeded refused (skip needs a step that is failed or waiting; step `side` is succeeded)
        cancelled fetch cancelled refused (skip needs a run that is running, waiting, paused or failed (not timed out, not being cancelled); this run is cancelled)
        cancelled gate  skipped   refused (skip needs a run that is running, waiting, paused or failed (not timed out, not being cancelled); this run is cancelled)
        cancelled side  succeeded refused (skip needs a run that is running, waiting, paused or failed (not timed out, not being cancelled); this run is cancelled)
    "#]]
    .assert_eq(&table);
}

/// Applies an operator's event and settles, as the runtime does.
fn operate(history: History, event: Event) -> History {
    let mut state = history.state().expect("the history replays");
    let mut events = history.events;
    let envelope = EventEnvelope::new(RUN_ID, state.seq + 1, event);
    state
        .apply(&envelope)
        .expect("the state accepts the operation");
    events.push(envelope);
    let now = events.last().map_or_else(t0, |e| e.event.at());
    let settled = settle(&history.workflow, &mut state, now, Host::none()).expect("settles");
    events.extend(settled.events);
    History {
        workflow: history.workflow,
        events,
    }
}

fn since(history: &History, seq: u64) -> String {
    render_log(&history.events[seq as usize..])
}

#[test]
fn rewind_reruns_the_step_and_everything_downstream_with_new_keys() {
    let done = HistoryBuilder::start(gated(), json!({}))
        .failed("fetch", 1, "HTTP 500", true)
        .succeeded("fetch", None, 1, json!("never: attempt 1 failed"))
        .build();
    // One attempt only: fetch failed for good, gate was skipped, the run failed.
    let done = History {
        workflow: done.workflow,
        events: done.events,
    }
    .settled();
    let state = done.state().expect("replays");
    assert_eq!(state.status, RunStatus::Failed);
    let rewind = surgery::rewind(&done.workflow, &state, "fetch", BY, WHY, t0()).expect("allowed");
    let seq = state.seq;
    let rewound = operate(done, rewind.into());
    expect![[r#"
        8 run.rewound {"by":"key:ops","reason":"upstream fixed","step":"fetch","steps":["fetch","gate"]}
        9 step.scheduled {"attempt":2,"idempotency_key":"00000000-0000-4000-8000-000000000001/fetch@1","input":{"url":"https://shop.example/1"},"max_attempts":1,"step":"fetch"}
    "#]]
    .assert_eq(&since(&rewound, seq));
    let state = rewound.state().expect("replays");
    assert_eq!(state.status, RunStatus::Running);
    assert_eq!(
        state.step_status("side"),
        StepStatus::Succeeded,
        "not downstream: kept"
    );
    assert_eq!(state.step("fetch").map(|s| s.generation), Some(1));
    // A late result of the first generation's attempt is refused.
    let mut late = state.clone();
    let old = EventEnvelope::new(
        RUN_ID,
        state.seq + 1,
        imx_core::event::StepSucceeded {
            at: t0(),
            step: "fetch".into(),
            index: None,
            attempt: 1,
            output: json!("late"),
        },
    );
    assert!(late.apply(&old).is_err());
    // The new attempt finishes the run again.
    let mut builder_state = state;
    let ok = EventEnvelope::new(
        RUN_ID,
        builder_state.seq + 1,
        imx_core::event::StepSucceeded {
            at: t0(),
            step: "fetch".into(),
            index: None,
            attempt: 2,
            output: json!("fixed"),
        },
    );
    builder_state.apply(&ok).expect("attempt 2 is current");
    assert_eq!(builder_state.step_status("gate"), StepStatus::Pending);
}

#[test]
fn rewind_of_a_cancelled_run_also_reruns_what_the_cancel_cut_short() {
    let flow = workflow(
        "two",
        vec![
            step("a", StepKind::Http).with(json!({})),
            step("b", StepKind::Http).with(json!({})),
        ],
    );
    let cancelled = HistoryBuilder::start(flow, json!({}))
        .succeeded("a", None, 1, json!("a"))
        .cancel("ann")
        .settled();
    let state = cancelled.state().expect("replays");
    assert_eq!(state.status, RunStatus::Cancelled);
    let rewind = surgery::rewind(&cancelled.workflow, &state, "a", BY, WHY, t0()).expect("ok");
    assert_eq!(rewind.steps, ["a", "b"], "b was cancelled by the cancel");
}

#[test]
fn pause_holds_new_attempts_and_resume_starts_them() {
    let flow = workflow(
        "chain",
        vec![
            step("a", StepKind::Http).with(json!({})),
            step("b", StepKind::Http).needs(&["a"]).with(json!({})),
        ],
    );
    let paused = HistoryBuilder::start(flow, json!({}))
        .then(|at| {
            RunPaused {
                at,
                by: BY.into(),
                reason: WHY.into(),
            }
            .into()
        })
        .succeeded("a", None, 1, json!("a"))
        .settled();
    let state = paused.state().expect("replays");
    assert_eq!(state.status, RunStatus::Paused);
    assert_eq!(
        state.step_status("a"),
        StepStatus::Succeeded,
        "recorded while paused"
    );
    assert_eq!(
        state.step_status("b"),
        StepStatus::Pending,
        "not started while paused"
    );
    let seq = state.seq;
    let resume = surgery::resume(&state, BY, "go on", t0()).expect("paused");
    let resumed = operate(paused, resume.into());
    expect![[r#"
        5 run.resumed {"by":"key:ops","reason":"go on"}
        6 step.scheduled {"attempt":1,"idempotency_key":"00000000-0000-4000-8000-000000000001/b","input":{},"max_attempts":1,"step":"b"}
    "#]]
    .assert_eq(&since(&resumed, seq));
}

#[test]
fn a_paused_run_is_cancelled_at_once() {
    let paused = HistoryBuilder::start(gated(), json!({}))
        .then(|at| {
            RunPaused {
                at,
                by: BY.into(),
                reason: WHY.into(),
            }
            .into()
        })
        .cancel("ann")
        .settled();
    let state = paused.state().expect("replays");
    assert_eq!(state.status, RunStatus::Cancelled);
    assert_eq!(state.paused, None);
}

#[test]
fn skip_of_a_failed_step_reopens_the_run_and_runs_its_dependents() {
    let failed = HistoryBuilder::start(gated(), json!({}))
        .failed("fetch", 1, "HTTP 400", false)
        .settled();
    let state = failed.state().expect("replays");
    assert_eq!(state.status, RunStatus::Failed);
    let skip = surgery::skip(
        &failed.workflow,
        &state,
        "fetch",
        json!({"status": 200}),
        BY,
        WHY,
        t0(),
    )
    .expect("allowed");
    let seq = state.seq;
    let skipped = operate(failed, skip.into());
    expect![[r#"
        8 step.bypassed {"by":"key:ops","output":{"status":200},"reason":"upstream fixed","reset":["gate"],"step":"fetch"}
        9 step.scheduled {"attempt":1,"idempotency_key":"00000000-0000-4000-8000-000000000001/gate","input":{"role":"ops"},"max_attempts":1,"step":"gate"}
        10 approval.requested {"attempt":1,"request":{"role":"ops"},"step":"gate"}
    "#]]
    .assert_eq(&since(&skipped, seq));
    let state = skipped.state().expect("replays");
    assert_eq!(state.status, RunStatus::Waiting);
    let fetch = state.step("fetch").expect("fetch");
    assert_eq!(fetch.output, Some(json!({"status": 200})));
    assert_eq!(
        fetch.bypassed.as_deref(),
        Some("by key:ops: upstream fixed")
    );
}

#[test]
fn skip_of_a_waiting_approval_lets_the_run_finish() {
    let waiting = HistoryBuilder::start(gated(), json!({}))
        .succeeded("fetch", None, 1, json!(1))
        .settled();
    let state = waiting.state().expect("replays");
    let skip = surgery::skip(
        &waiting.workflow,
        &state,
        "gate",
        Value::Null,
        BY,
        WHY,
        t0(),
    )
    .expect("allowed");
    let state = operate(waiting, skip.into()).state().expect("replays");
    assert_eq!(state.status, RunStatus::Succeeded);
    assert!(state.timers.is_empty());
}

/// `a` → `b` → `c`; the source run failed at `b`.
fn chain(b_needs: &[&str]) -> Workflow {
    workflow(
        "chain",
        vec![
            step("a", StepKind::Http).with(json!({})),
            step("b", StepKind::Http)
                .needs(b_needs)
                .with(json!({"fixed": false})),
            step("c", StepKind::Noop)
                .needs(&["b"])
                .with(json!({"a": "{{ steps.a.output }}"})),
        ],
    )
}

fn failed_at_b() -> History {
    HistoryBuilder::start(chain(&["a"]), json!({"order": 7}))
        .succeeded("a", None, 1, json!("from a"))
        .failed("b", 1, "bug", false)
        .settled()
}

#[test]
fn fork_takes_over_the_upstream_outputs_and_runs_the_rest_on_the_fixed_version() {
    let source = failed_at_b();
    let mut source_state = source.state().expect("replays");
    source_state.run_id = Some(SOURCE);
    let mut fixed = chain(&["a"]);
    if let Some(b) = fixed.steps.get_mut("b") {
        b.with = json!({"fixed": true});
    }
    let plan = surgery::fork(
        &source.workflow,
        &source_state,
        &fixed,
        "sha256:fixed",
        "b",
        BY,
        WHY,
    )
    .expect("compatible");
    assert_eq!(plan.adopted, vec![("a".to_owned(), json!("from a"))]);
    let (first, _) = surgery::start_fork(
        &fixed,
        "sha256:fixed",
        RUN_ID,
        (json!({"order": 7}), None),
        plan,
        t0(),
    );
    let fork = History {
        workflow: fixed,
        events: first,
    }
    .settled();
    expect![[r#"
        1 run.started {"fork":{"by":"key:ops","reason":"upstream fixed","run_id":"00000000-0000-4000-8000-0000000000aa","step":"b"},"input":{"order":7},"steps":["a","b","c"],"version":"sha256:fixed","workflow":"chain"}
        2 step.adopted {"from_run":"00000000-0000-4000-8000-0000000000aa","output":"from a","step":"a"}
        3 step.scheduled {"attempt":1,"idempotency_key":"00000000-0000-4000-8000-000000000001/b","input":{"fixed":true},"max_attempts":1,"step":"b"}
    "#]]
    .assert_eq(&render_log(&fork.events));
    let state = fork.state().expect("replays");
    assert_eq!(state.fork.as_ref().map(|f| f.run_id), Some(SOURCE));
    assert_eq!(state.step("a").and_then(|s| s.adopted_from), Some(SOURCE));
}

#[test]
fn fork_onto_a_version_that_changed_a_taken_over_step_is_refused_with_the_reasons() {
    let source = failed_at_b();
    let state = source.state().expect("replays");
    let mut changed = chain(&["a"]);
    if let Some(a) = changed.steps.get_mut("a") {
        a.uses = StepKind::Exec;
    }
    let refusal = surgery::fork(
        &source.workflow,
        &state,
        &changed,
        "sha256:v2",
        "b",
        BY,
        WHY,
    )
    .expect_err("a changed its kind");
    expect![[r#"version sha256:v2 cannot take over the source run's steps: step `a` already started as `http`, the new version makes it `exec`: the attempt in flight belongs to another executor"#]]
        .assert_eq(&refusal.to_string());
    let unknown = surgery::fork(
        &source.workflow,
        &state,
        &source.workflow,
        "v",
        "zz",
        BY,
        WHY,
    )
    .expect_err("no such step");
    assert!(matches!(unknown, Refusal::UnknownStep { .. }), "{unknown}");
    let no_reason = surgery::fork(
        &source.workflow,
        &state,
        &source.workflow,
        "v",
        "b",
        BY,
        " ",
    )
    .expect_err("a reason is required");
    assert_eq!(no_reason, Refusal::ReasonMissing);
}
