//! `finally:` steps end to end through the simulated runtime: they run once
//! the main part ended, whatever the ending (success, failure, cancel, run
//! timeout), see `run.status`/`run.error` and the steps' errors, and never
//! change the run's status; a cancel or the run timeout while they run stops them.

use expect_test::expect;
use imx_core::event::{Event, EventEnvelope, RunSucceeded, StepScheduled};
use imx_core::state::RunStatus;
use imx_core::workflow::{StepKind, TriggerRule, Workflow};
use imx_core::{RunState, Secrets};
use serde_json::json;
use testkit::histories::{step, workflow};

use super::driver::{Driver, Outcome, Scripted};
use super::rules::{check, fail, script};

/// `build` (a noop) then, under `finally:`, `report` reading how the run ended.
fn with_report(main: imx_core::workflow::Step) -> Workflow {
    workflow(
        "finale",
        vec![
            main,
            step("report", StepKind::Noop).in_finally().with(json!({
                "status": "{{ run.status }}",
                "error": "{{ run.error }}",
                "build": "{{ steps.build.status }}",
                "build_error": "{{ steps.build.error }}",
            })),
        ],
    )
}

#[test]
fn finally_steps_run_after_a_success_and_the_run_succeeds() {
    let mut flow = with_report(step("build", StepKind::Noop).with(json!({"ok": true})));
    flow.output = Some(json!("{{ steps.build.output }}"));
    check(
        &flow,
        json!({}),
        &mut script(|_, _, _| None),
        expect![[r#"
        1 run.started {"finally":["report"],"input":{}}
        2 step.scheduled build#1 {"input":{"ok":true}}
        3 step.succeeded build#1 {"output":{"ok":true}}
        4 run.finalizing {"outcome":"succeeded","output":{"ok":true}}
        5 step.scheduled report#1 {"input":{"build":"succeeded","build_error":null,"error":null,"status":"succeeded"}}
        6 step.succeeded report#1 {"output":{"build":"succeeded","build_error":null,"error":null,"status":"succeeded"}}
        7 run.succeeded {"output":{"ok":true}}
        => succeeded {"ok":true}
    "#]],
    );
}

#[test]
fn finally_steps_run_after_a_failure_and_read_the_error() {
    let flow = with_report(step("build", StepKind::Http));
    check(
        &flow,
        json!({}),
        &mut script(|step, _, _| (step == "build").then(|| fail("exit 2", false)).flatten()),
        expect![[r#"
        1 run.started {"finally":["report"],"input":{}}
        2 step.scheduled build#1
        3 step.started build#1
        4 step.failed build#1 {"error":"exit 2","retryable":false}
        5 run.finalizing {"outcome":"failed","reason":"step `build` failed: exit 2"}
        6 step.scheduled report#1 {"input":{"build":"failed","build_error":"exit 2","error":"step `build` failed: exit 2","status":"failed"}}
        7 step.succeeded report#1 {"output":{"build":"failed","build_error":"exit 2","error":"step `build` failed: exit 2","status":"failed"}}
        8 run.failed {"reason":"step `build` failed: exit 2"}
        => failed "step `build` failed: exit 2"
    "#]],
    );
}

#[test]
fn a_failing_finally_step_is_reported_and_the_run_keeps_its_status() {
    let flow = workflow(
        "finale",
        vec![
            step("build", StepKind::Noop),
            step("notify", StepKind::Http).in_finally(),
            step("after", StepKind::Noop)
                .in_finally()
                .needs(&["notify"])
                .rule(TriggerRule::AllDone),
        ],
    );
    let mut driver = Driver::new(&flow, Secrets::none());
    let mut world = script(|step, _, _| (step == "notify").then(|| fail("503", false)).flatten());
    driver.run(json!({}), &mut world).expect("the run ends");
    assert_eq!(driver.state.status, RunStatus::Succeeded);
    assert_eq!(driver.state.finally_failed(), vec!["notify"]);
    let document = driver.state.document();
    assert_eq!(document["finally_failed"], json!(["notify"]));
    assert_eq!(document["steps"]["notify"]["status"], "failed");
    assert_eq!(document["steps"]["after"]["status"], "succeeded");
}

#[test]
fn finally_steps_run_after_a_cancel_and_the_run_ends_cancelled() {
    let flow = with_report(step("build", StepKind::Http));
    let mut world = Scripted {
        script: |step: &str, _: Option<u32>, _: u32| (step == "build").then_some(Outcome::Hang),
        approve: true,
        cancel_at_ms: Some(5),
    };
    check(
        &flow,
        json!({}),
        &mut world,
        expect![[r#"
        1 run.started {"finally":["report"],"input":{}}
        2 step.scheduled build#1
        3 run.cancel_requested {"by":"sim"}
        4 step.cancelled build {"reason":"cancelled on request (by sim)"}
        5 run.finalizing {"outcome":"cancelled","reason":"cancelled on request (by sim)"}
        6 step.scheduled report#1 {"input":{"build":"cancelled","build_error":null,"error":"cancelled on request (by sim)","status":"cancelled"}}
        7 step.succeeded report#1 {"output":{"build":"cancelled","build_error":null,"error":"cancelled on request (by sim)","status":"cancelled"}}
        8 run.cancelled {"reason":"cancelled on request (by sim)"}
        => cancelled "cancelled on request (by sim)"
    "#]],
    );
}

#[test]
fn finally_steps_run_after_the_run_timeout_and_the_run_fails() {
    let mut flow = with_report(step("build", StepKind::Http));
    flow.timeout_ms = Some(10_000);
    check(
        &flow,
        json!({}),
        &mut script(|step, _, _| (step == "build").then_some(Outcome::Hang)),
        expect![[r#"
        1 run.started {"deadline":"+10000ms","finally":["report"],"input":{}}
        2 step.scheduled build#1
        3 step.started build#1
        4 timer.fired {"timer_id":"run/timeout"}
        5 step.cancelled build {"reason":"the run timed out"}
        6 run.finalizing {"outcome":"timed_out","reason":"the run timed out"}
        7 step.scheduled report#1 {"input":{"build":"cancelled","build_error":null,"error":"the run timed out","status":"failed"}}
        8 step.succeeded report#1 {"output":{"build":"cancelled","build_error":null,"error":"the run timed out","status":"failed"}}
        9 run.timed_out
        => failed "the run timed out"
    "#]],
    );
}

#[test]
fn a_cancel_while_finally_steps_run_stops_them_and_the_outcome_stays() {
    let flow = workflow(
        "finale",
        vec![
            step("build", StepKind::Noop),
            step("cleanup", StepKind::Http).in_finally(),
            step("after", StepKind::Noop)
                .in_finally()
                .needs(&["cleanup"]),
        ],
    );
    let mut world = Scripted {
        script: |step: &str, _: Option<u32>, _: u32| (step == "cleanup").then_some(Outcome::Hang),
        approve: true,
        cancel_at_ms: Some(5),
    };
    check(
        &flow,
        json!({}),
        &mut world,
        expect![[r#"
            1 run.started {"finally":["after","cleanup"],"input":{}}
            2 step.scheduled build#1
            3 step.succeeded build#1
            4 run.finalizing {"outcome":"succeeded"}
            5 step.scheduled cleanup#1
            6 run.cancel_requested {"by":"sim"}
            7 step.skipped after {"reason":"cancelled on request (by sim)"}
            8 step.cancelled cleanup {"reason":"cancelled on request (by sim)"}
            9 run.succeeded
            => succeeded null
        "#]],
    );
}

#[test]
fn the_run_timeout_while_finally_steps_run_stops_them() {
    let mut flow = workflow(
        "finale",
        vec![
            step("build", StepKind::Noop),
            step("cleanup", StepKind::Http).in_finally(),
        ],
    );
    flow.timeout_ms = Some(10_000);
    check(
        &flow,
        json!({}),
        &mut script(|step, _, _| (step == "cleanup").then_some(Outcome::Hang)),
        expect![[r#"
            1 run.started {"deadline":"+10000ms","finally":["cleanup"],"input":{}}
            2 step.scheduled build#1
            3 step.succeeded build#1
            4 run.finalizing {"outcome":"succeeded"}
            5 step.scheduled cleanup#1
            6 step.started cleanup#1
            7 timer.fired {"timer_id":"run/timeout"}
            8 step.cancelled cleanup {"reason":"the run timed out"}
            9 run.succeeded
            => succeeded null
        "#]],
    );
}

#[test]
fn evolve_refuses_a_finally_step_before_the_main_part_ended_and_an_early_end() {
    let flow = workflow(
        "finale",
        vec![
            step("build", StepKind::Http),
            step("report", StepKind::Noop).in_finally(),
        ],
    );
    let run_id = uuid::Uuid::from_u128(10);
    let at = chrono::DateTime::UNIX_EPOCH;
    let (started, _) = imx_core::start_run(&flow, "v1", run_id, imx_core::Start::default(), at);
    let state: RunState = imx_core::replay([&started]).expect("started");
    let next = state.seq + 1;
    let early = EventEnvelope::new(
        run_id,
        next,
        Event::StepScheduled(StepScheduled {
            at,
            step: "report".into(),
            index: None,
            attempt: 1,
            max_attempts: 1,
            idempotency_key: format!("{run_id}/report"),
            input: json!(null),
            deadline: None,
        }),
    );
    let refused = imx_core::evolve(state.clone(), &early).expect_err("refused");
    expect![[r#"
        run 00000000-0000-0000-0000-00000000000a: event seq 2 (step.scheduled) is not allowed: step `report` is a `finally:` step and the main part has not ended"#]]
    .assert_eq(&refused.to_string());
    let end = EventEnvelope::new(
        run_id,
        next,
        RunSucceeded {
            at,
            output: json!(null),
        },
    );
    assert!(
        imx_core::evolve(state, &end).is_err(),
        "no end before run.finalizing"
    );
}
