//! `run.retry_requested`: a failed run runs its failed and skipped steps
//! again, keeps the outputs of the steps that succeeded, and can succeed.

use expect_test::expect;
use imx_core::event::{RunRetryRequested, StepSucceeded};
use imx_core::state::{RunStatus, StepStatus};
use imx_core::workflow::StepKind;
use serde_json::json;
use testkit::histories::{HistoryBuilder, step, workflow};

fn retried_history(succeed_after_retry: bool) -> testkit::histories::History {
    let steps = vec![
        step("prepare", StepKind::Noop).with(json!({"ready": true})),
        step("fetch", StepKind::Http)
            .needs(&["prepare"])
            .with(json!({"method": "GET", "url": "https://shop.example/orders"})),
        step("report", StepKind::Noop).needs(&["fetch"]),
    ];
    let builder = HistoryBuilder::start(workflow("partial", steps), json!({}))
        .failed("fetch", 1, "HTTP 503", false)
        .then(|at| {
            RunRetryRequested {
                at,
                by: Some("key:ops".to_owned()),
            }
            .into()
        });
    if succeed_after_retry {
        builder
            .then(|at| {
                StepSucceeded {
                    at,
                    step: "fetch".to_owned(),
                    index: None,
                    // Attempt numbers go on after a retry of the run.
                    attempt: 2,
                    output: json!({"status": 200}),
                }
                .into()
            })
            .settled()
    } else {
        builder.settled()
    }
}

fn types(history: &testkit::histories::History) -> String {
    history
        .events
        .iter()
        .map(|e| format!("{} {}", e.seq, e.event_type()))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn retry_reschedules_failed_and_skipped_steps_and_keeps_successes() {
    let history = retried_history(false);
    expect![[r#"
        1 run.started
        2 step.scheduled
        3 step.succeeded
        4 step.scheduled
        5 step.failed
        6 step.skipped
        7 run.failed
        8 run.retry_requested
        9 step.scheduled"#]]
    .assert_eq(&types(&history));
    let state = history.state().expect("the history replays");
    assert_eq!(state.status, RunStatus::Running);
    assert_eq!(state.failure, None);
    assert_eq!(state.step_status("prepare"), StepStatus::Succeeded);
    assert_eq!(
        state.step("prepare").and_then(|s| s.output.clone()),
        Some(json!({"ready": true}))
    );
    assert_eq!(state.step_status("fetch"), StepStatus::Running);
    assert_eq!(state.step_status("report"), StepStatus::Pending);
}

#[test]
fn a_retried_run_can_succeed() {
    let history = retried_history(true);
    let state = history.state().expect("the history replays");
    assert_eq!(state.status, RunStatus::Succeeded, "{}", types(&history));
    assert_eq!(state.step_status("report"), StepStatus::Succeeded);
}

#[test]
fn a_late_result_of_the_attempt_before_the_retry_is_rejected() {
    let history = retried_history(false);
    let mut state = history.state().expect("the history replays");
    let fetch = state.step("fetch").and_then(|s| s.execution(None)).cloned();
    let fetch = fetch.expect("fetch was scheduled again");
    assert_eq!((fetch.attempt, fetch.attempt_base), (2, 1));
    assert_eq!(
        fetch.idempotency_key.as_deref(),
        Some(format!("{}/fetch", testkit::histories::RUN_ID).as_str()),
        "a retry of the run keeps the execution's key"
    );
    let late = imx_core::EventEnvelope::new(
        testkit::histories::RUN_ID,
        state.seq + 1,
        StepSucceeded {
            at: testkit::histories::t0(),
            step: "fetch".to_owned(),
            index: None,
            attempt: 1,
            output: json!({"late": true}),
        },
    );
    assert!(
        state.apply(&late).is_err(),
        "attempt 1 ended before the retry"
    );
}

#[test]
fn only_failed_runs_accept_a_retry() {
    let history = HistoryBuilder::start(
        workflow("ok", vec![step("only", StepKind::Noop)]),
        json!({}),
    )
    .then(|at| RunRetryRequested { at, by: None }.into())
    .settled();
    // The builder leaves out events the state rejects: no retry after success.
    assert!(
        !types(&history).contains("run.retry_requested"),
        "{}",
        types(&history)
    );
    assert_eq!(
        history.state().expect("replays").status,
        RunStatus::Succeeded
    );
}
