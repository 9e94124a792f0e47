//! Canned histories (STYLE rule 9) and the decision the core takes on each:
//! the snapshot shows the log, then what `decide` returns on its state.

use expect_test::{Expect, expect};
use imx_core::{Host, decide};
use testkit::histories::{self, History};

use super::support::{render_decision, render_log};

fn check(history: History, expected: Expect) {
    let state = match history.state() {
        Ok(state) => state,
        Err(err) => panic!("the canned history does not replay: {err}"),
    };
    let now = history
        .events
        .last()
        .map(|e| e.event.at())
        .unwrap_or_else(histories::t0);
    let decision = decide(&history.workflow, &state, now, Host::none());
    let again = decide(&history.workflow, &state, now, Host::none());
    assert_eq!(decision, again, "decide is not a function of its arguments");
    let text = format!(
        "{}--- decide:\n{}",
        render_log(&history.events),
        render_decision(&decision)
    );
    expected.assert_eq(&text);
}

#[test]
fn retry_then_ok_runs_the_dependent_step() {
    check(
        histories::retry_then_ok(),
        expect![[r#"
        1 run.started {"input":{"order":7},"steps":["fetch","report"],"version":"sha256:test","workflow":"retry"}
        2 step.scheduled {"attempt":1,"idempotency_key":"00000000-0000-4000-8000-000000000001/fetch","input":{"method":"GET","url":"https://shop.example/7"},"max_attempts":3,"step":"fetch"}
        3 step.started {"attempt":1,"step":"fetch"}
        4 step.failed {"attempt":1,"error":"connection reset","retryable":true,"step":"fetch"}
        5 step.retry_scheduled {"attempt":2,"fire_at":"+1200ms","step":"fetch","timer_id":"retry/fetch/2"}
        6 timer.fired {"timer_id":"retry/fetch/2"}
        7 step.scheduled {"attempt":2,"idempotency_key":"00000000-0000-4000-8000-000000000001/fetch","input":{"method":"GET","url":"https://shop.example/7"},"max_attempts":3,"step":"fetch"}
        8 step.started {"attempt":2,"step":"fetch"}
        9 step.succeeded {"attempt":2,"output":{"status":200},"step":"fetch"}
        --- decide:
        event step.scheduled {"attempt":1,"idempotency_key":"00000000-0000-4000-8000-000000000001/report","input":{"status":200},"max_attempts":1,"step":"report"}
        event step.succeeded {"attempt":1,"output":{"status":200},"step":"report"}
    "#]],
    );
}

#[test]
fn retry_exhausted_skips_the_dependent_step() {
    check(
        histories::retry_exhausted(),
        expect![[r#"
        1 run.started {"input":{"order":7},"steps":["fetch","report"],"version":"sha256:test","workflow":"exhausted"}
        2 step.scheduled {"attempt":1,"idempotency_key":"00000000-0000-4000-8000-000000000001/fetch","input":{"method":"GET","url":"https://shop.example/7"},"max_attempts":2,"step":"fetch"}
        3 step.failed {"attempt":1,"error":"HTTP 503","retryable":true,"step":"fetch"}
        4 step.retry_scheduled {"attempt":2,"fire_at":"+1000ms","step":"fetch","timer_id":"retry/fetch/2"}
        5 timer.fired {"timer_id":"retry/fetch/2"}
        6 step.scheduled {"attempt":2,"idempotency_key":"00000000-0000-4000-8000-000000000001/fetch","input":{"method":"GET","url":"https://shop.example/7"},"max_attempts":2,"step":"fetch"}
        7 step.failed {"attempt":2,"error":"HTTP 503","retryable":true,"step":"fetch"}
        --- decide:
        event step.skipped {"reason":"all_success: dependency `fetch` failed","step":"report"}
    "#]],
    );
}

#[test]
fn step_timeout_fails_the_attempt_and_cancels_it() {
    check(
        histories::step_timed_out(),
        expect![[r#"
            1 run.started {"input":{"order":7},"steps":["fetch"],"version":"sha256:test","workflow":"timeout"}
            2 step.scheduled {"attempt":1,"deadline":"+5000ms","idempotency_key":"00000000-0000-4000-8000-000000000001/fetch","input":{"method":"GET","url":"https://shop.example/7"},"max_attempts":2,"step":"fetch"}
            3 step.started {"attempt":1,"step":"fetch"}
            4 timer.fired {"timer_id":"timeout/fetch/1"}
            --- decide:
            event step.failed {"attempt":1,"error":"attempt 1 timed out after 5000 ms","retryable":true,"step":"fetch"}
            effect CancelStep { key: "00000000-0000-4000-8000-000000000001/fetch", attempt: 1 }
        "#]],
    );
}

#[test]
fn approval_granted_lets_the_next_step_run() {
    check(
        histories::approval_granted(),
        expect![[r#"
        1 run.started {"input":{"order":7},"steps":["approve","ship"],"version":"sha256:test","workflow":"approval"}
        2 step.scheduled {"attempt":1,"idempotency_key":"00000000-0000-4000-8000-000000000001/approve","input":{"message":"Ship order 7?","role":"finance"},"max_attempts":1,"step":"approve"}
        3 approval.requested {"attempt":1,"request":{"message":"Ship order 7?","role":"finance"},"step":"approve"}
        4 approval.granted {"by":"ada","comment":"ok","step":"approve"}
        --- decide:
        event step.scheduled {"attempt":1,"idempotency_key":"00000000-0000-4000-8000-000000000001/ship","input":{"by":"ada"},"max_attempts":1,"step":"ship"}
        event step.succeeded {"attempt":1,"output":{"by":"ada"},"step":"ship"}
    "#]],
    );
}

#[test]
fn child_run_output_becomes_the_step_output() {
    check(
        histories::child_run_succeeded(),
        expect![[r#"
        1 run.started {"input":{"order":7},"steps":["ship"],"version":"sha256:test","workflow":"parent"}
        2 step.scheduled {"attempt":1,"idempotency_key":"00000000-0000-4000-8000-000000000001/ship","input":{"input":{"order":7},"name":"shipping"},"max_attempts":1,"step":"ship"}
        3 child_run.started {"attempt":1,"child_run_id":"f78aca38-cc77-830b-92f2-89ecf4b09018","input":{"order":7},"step":"ship","workflow":"shipping"}
        4 child_run.finished {"child_run_id":"f78aca38-cc77-830b-92f2-89ecf4b09018","outcome":"succeeded","output":{"tracking":"Z-1"},"step":"ship"}
        --- decide:
        event run.succeeded {"output":{"tracking":"Z-1"}}
        effect CompleteRun { status: Succeeded, output: Some(Object {"tracking": String("Z-1")}), reason: None, parent: None }
    "#]],
    );
}

#[test]
fn cancel_request_cancels_running_and_skips_pending_steps() {
    check(
        histories::cancel_while_running(),
        expect![[r#"
            1 run.started {"input":{"order":7},"steps":["fetch","report"],"version":"sha256:test","workflow":"cancel"}
            2 step.scheduled {"attempt":1,"idempotency_key":"00000000-0000-4000-8000-000000000001/fetch","input":{"method":"GET","url":"https://shop.example/7"},"max_attempts":1,"step":"fetch"}
            3 step.started {"attempt":1,"step":"fetch"}
            4 run.cancel_requested {"by":"ops"}
            --- decide:
            event step.cancelled {"reason":"cancelled on request (by ops)","step":"fetch"}
            event step.skipped {"reason":"cancelled on request (by ops)","step":"report"}
            effect CancelStep { key: "00000000-0000-4000-8000-000000000001/fetch", attempt: 1 }
        "#]],
    );
}

#[test]
fn run_timeout_cancels_what_runs() {
    check(
        histories::run_timed_out(),
        expect![[r#"
            1 run.started {"deadline":"+60000ms","input":{"order":7},"steps":["fetch"],"version":"sha256:test","workflow":"slow"}
            2 step.scheduled {"attempt":1,"idempotency_key":"00000000-0000-4000-8000-000000000001/fetch","input":{"method":"GET","url":"https://shop.example/7"},"max_attempts":1,"step":"fetch"}
            3 timer.fired {"timer_id":"run/timeout"}
            --- decide:
            event step.cancelled {"reason":"the run timed out","step":"fetch"}
            effect CancelStep { key: "00000000-0000-4000-8000-000000000001/fetch", attempt: 1 }
        "#]],
    );
}

#[test]
fn fan_out_schedules_the_next_item_within_max_parallel() {
    check(
        histories::fan_out_item_done(),
        expect![[r#"
        1 run.started {"input":{"items":["a","b","c"]},"steps":["pack"],"version":"sha256:test","workflow":"fan-out"}
        2 for_each.expanded {"count":3,"items":["a","b","c"],"step":"pack"}
        3 step.scheduled {"attempt":1,"idempotency_key":"00000000-0000-4000-8000-000000000001/pack/0","index":0,"input":{"n":0,"payload":"a","queue":"warehouse"},"max_attempts":1,"step":"pack"}
        4 step.scheduled {"attempt":1,"idempotency_key":"00000000-0000-4000-8000-000000000001/pack/1","index":1,"input":{"n":1,"payload":"b","queue":"warehouse"},"max_attempts":1,"step":"pack"}
        5 step.succeeded {"attempt":1,"index":0,"output":"packed a","step":"pack"}
        --- decide:
        event step.scheduled {"attempt":1,"idempotency_key":"00000000-0000-4000-8000-000000000001/pack/2","index":2,"input":{"n":2,"payload":"c","queue":"warehouse"},"max_attempts":1,"step":"pack"}
        effect ScheduleStep agent pack/2 #1 input={"n":2,"payload":"c","queue":"warehouse"}
    "#]],
    );
}

#[test]
fn failed_dependency_applies_each_trigger_rule() {
    check(
        histories::failed_dependency(),
        expect![[r#"
        1 run.started {"input":{"order":7},"steps":["after_audit","audit","charge","on_done","on_failure","on_no_failure","on_success"],"version":"sha256:test","workflow":"rules"}
        2 step.scheduled {"attempt":1,"idempotency_key":"00000000-0000-4000-8000-000000000001/audit","input":{"method":"GET","url":"https://shop.example/7"},"max_attempts":1,"step":"audit"}
        3 step.scheduled {"attempt":1,"idempotency_key":"00000000-0000-4000-8000-000000000001/charge","input":{"method":"GET","url":"https://shop.example/7"},"max_attempts":1,"step":"charge"}
        4 step.failed {"attempt":1,"error":"HTTP 500","retryable":false,"step":"audit"}
        5 step.scheduled {"attempt":1,"idempotency_key":"00000000-0000-4000-8000-000000000001/after_audit","max_attempts":1,"step":"after_audit"}
        6 step.succeeded {"attempt":1,"step":"after_audit"}
        7 step.failed {"attempt":1,"error":"card declined","retryable":false,"step":"charge"}
        --- decide:
        event step.scheduled {"attempt":1,"idempotency_key":"00000000-0000-4000-8000-000000000001/on_done","max_attempts":1,"step":"on_done"}
        event step.succeeded {"attempt":1,"step":"on_done"}
        event step.scheduled {"attempt":1,"idempotency_key":"00000000-0000-4000-8000-000000000001/on_failure","max_attempts":1,"step":"on_failure"}
        event step.succeeded {"attempt":1,"step":"on_failure"}
        event step.skipped {"reason":"none_failed: dependency `charge` failed","step":"on_no_failure"}
        event step.skipped {"reason":"all_success: dependency `charge` failed","step":"on_success"}
    "#]],
    );
}

#[test]
fn recovery_reissues_every_effect_still_owed() {
    use imx_core::workflow::StepKind;
    use serde_json::json;
    use testkit::histories::{HistoryBuilder, step, workflow};
    let mut flow = workflow(
        "in-flight",
        vec![
            step("call", StepKind::Http)
                .timeout_ms(30_000)
                .with(json!({"url": "{{ input.url }}"})),
            step("ask", StepKind::Approval).with(json!({"message": "ok?"})),
            step("child", StepKind::Workflow).with(json!({"name": "sub", "input": {"x": 1}})),
            step("pack", StepKind::Agent)
                .for_each("{{ [10, 20] }}", 1)
                .with(json!({"item": "{{ item }}"})),
        ],
    );
    flow.timeout_ms = Some(3_600_000);
    let history = HistoryBuilder::start(flow, json!({"url": "https://a.example"})).settled();
    let state = history.state().expect("replays");
    let owed = imx_core::outstanding(&history.workflow, &state, Host::none());
    let text: String = owed
        .iter()
        .map(|effect| format!("{}\n", super::support::render_effect(effect)))
        .collect();
    expect![[r#"
        StartTimer run/timeout at +3600000ms
        StartTimer timeout/call/1 at +30000ms
        RequestApproval 00000000-0000-4000-8000-000000000001/ask request={"message":"ok?"}
        ScheduleStep http call #1 input={"url":"https://a.example"} deadline=+30000ms
        StartChildRun sub f88a8093-ab6b-848e-98a3-522411d4d175 input={"x":1} parent=00000000-0000-4000-8000-000000000001/child
        ScheduleStep agent pack/0 #1 input={"item":10}
    "#]].assert_eq(&text);
}

#[test]
fn the_run_document_shows_every_step() {
    let history = histories::retry_exhausted().settled();
    let state = history.state().expect("replays");
    expect![[r#"
        {
          "error": "step `fetch` failed: HTTP 503",
          "id": "00000000-0000-4000-8000-000000000001",
          "input": {
            "order": 7
          },
          "output": null,
          "status": "failed",
          "steps": {
            "fetch": {
              "attempts": 2,
              "error": "HTTP 503",
              "output": null,
              "status": "failed"
            },
            "report": {
              "attempts": 0,
              "error": "all_success: dependency `fetch` failed",
              "output": null,
              "status": "skipped"
            }
          },
          "version": "sha256:test",
          "workflow": "exhausted"
        }"#]]
    .assert_eq(&serde_json::to_string_pretty(&state.document()).unwrap_or_default());
}
