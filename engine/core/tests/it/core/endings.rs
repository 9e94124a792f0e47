//! The rules that end steps and runs early, end to end: timeouts, late
//! results, run timeout, cancellation, approvals, child runs, render
//! failures, idempotency keys and retry jitter.

use expect_test::expect;
use imx_core::Secrets;
use imx_core::state::RunStatus;
use imx_core::workflow::{Backoff, RetryPolicy, StepKind};
use serde_json::{Value, json};
use testkit::histories::{step, workflow};

use super::driver::{Driver, Obedient, Outcome, Scripted, World};
use super::rules::{check, fail, script};

#[test]
fn a_step_timeout_fails_the_attempt_and_a_late_result_is_ignored() {
    let retry = RetryPolicy {
        max_attempts: 2,
        backoff: Backoff::Fixed,
        ..RetryPolicy::default()
    };
    let flow = workflow(
        "timeout",
        vec![step("slow", StepKind::Http).timeout_ms(2_500).retry(retry)],
    );
    struct LateFirst;
    impl World for LateFirst {
        fn outcome(&mut self, _: &str, _: Option<u32>, attempt: u32, _: &Value) -> Outcome {
            Outcome::Succeed(json!({"attempt": attempt}))
        }
        fn work_ms(&mut self, _: &str, _: Option<u32>, attempt: u32) -> u64 {
            if attempt == 1 { 5_000 } else { 2_000 }
        }
    }
    let mut driver = Driver::new(&flow, Secrets::none());
    assert_eq!(driver.run(json!({}), &mut LateFirst), Ok(()));
    assert_eq!(
        driver.rejected, 1,
        "the late result of attempt 1 is rejected"
    );
    check(
        &flow,
        json!({}),
        &mut LateFirst,
        expect![[r#"
        1 run.started {"input":{}}
        2 step.scheduled slow#1 {"deadline":"+2500ms"}
        3 step.started slow#1
        4 timer.fired {"timer_id":"timeout/slow/1"}
        5 step.failed slow#1 {"error":"attempt 1 timed out after 2500 ms","retryable":true}
        6 step.retry_scheduled slow#2 {"fire_at":"+3500ms","timer_id":"retry/slow/2"}
        7 timer.fired {"timer_id":"retry/slow/2"}
        8 step.scheduled slow#2 {"deadline":"+6000ms"}
        9 step.started slow#2
        10 step.succeeded slow#2 {"output":{"attempt":2}}
        11 run.succeeded
        => succeeded null
    "#]],
    );
}

#[test]
fn the_run_timeout_cancels_running_steps_and_fails_the_run() {
    let mut flow = workflow(
        "slow",
        vec![
            step("hang", StepKind::Http),
            step("after", StepKind::Noop).needs(&["hang"]),
        ],
    );
    flow.timeout_ms = Some(10_000);
    let mut world = script(|_, _, _| Some(Outcome::Hang));
    check(
        &flow,
        json!({}),
        &mut world,
        expect![[r#"
        1 run.started {"deadline":"+10000ms","input":{}}
        2 step.scheduled hang#1
        3 step.started hang#1
        4 timer.fired {"timer_id":"run/timeout"}
        5 step.skipped after {"reason":"the run timed out"}
        6 step.cancelled hang {"reason":"the run timed out"}
        7 run.timed_out
        => failed "the run timed out"
    "#]],
    );
}

#[test]
fn cancellation_cancels_running_steps_and_skips_pending_ones() {
    let flow = workflow(
        "cancel",
        vec![
            step("hang", StepKind::Http),
            step("waits", StepKind::Approval),
            step("after", StepKind::Noop).needs(&["hang"]),
        ],
    );
    let mut world = Scripted {
        script: |_: &str, _: Option<u32>, _: u32| Some(Outcome::Hang),
        approve: true,
        cancel_at_ms: Some(5),
    };
    check(
        &flow,
        json!({}),
        &mut world,
        expect![[r#"
        1 run.started {"input":{}}
        2 step.scheduled hang#1
        3 step.scheduled waits#1
        4 approval.requested waits#1
        5 run.cancel_requested {"by":"sim"}
        6 step.skipped after {"reason":"cancelled on request (by sim)"}
        7 step.cancelled hang {"reason":"cancelled on request (by sim)"}
        8 step.cancelled waits {"reason":"cancelled on request (by sim)"}
        9 run.cancelled {"reason":"cancelled on request (by sim)"}
        => cancelled "cancelled on request (by sim)"
    "#]],
    );
}

#[test]
fn a_rejected_approval_fails_the_step() {
    let flow = workflow(
        "approval",
        vec![
            step("approve", StepKind::Approval).with(json!({"message": "ship {{ input.order }}?"})),
            step("ship", StepKind::Http).needs(&["approve"]),
        ],
    );
    let mut world = Scripted {
        script: |_: &str, _: Option<u32>, _: u32| None,
        approve: false,
        cancel_at_ms: None,
    };
    check(
        &flow,
        json!({"order": 7}),
        &mut world,
        expect![[r#"
        1 run.started {"input":{"order":7}}
        2 step.scheduled approve#1 {"input":{"message":"ship 7?"}}
        3 approval.requested approve#1 {"request":{"message":"ship 7?"}}
        4 approval.rejected approve {"by":"sim"}
        5 step.skipped ship {"reason":"all_success: dependency `approve` failed"}
        6 run.failed {"reason":"step `approve` failed: rejected by sim"}
        => failed "step `approve` failed: rejected by sim"
    "#]],
    );
}

#[test]
fn a_child_run_is_started_with_a_deterministic_id() {
    let mut flow = workflow(
        "parent",
        vec![
            step("ship", StepKind::Workflow)
                .with(json!({"name": "shipping", "input": {"order": "{{ input.order }}"}})),
        ],
    );
    flow.output = Some(json!("{{ steps.ship.output }}"));
    check(
        &flow,
        json!({"order": 7}),
        &mut Obedient,
        expect![[r#"
        1 run.started {"input":{"order":7}}
        2 step.scheduled ship#1 {"input":{"input":{"order":7},"name":"shipping"}}
        3 child_run.started ship#1 {"input":{"order":7}}
        4 child_run.finished ship {"outcome":"succeeded","output":{"order":7}}
        5 run.succeeded {"output":{"order":7}}
        => succeeded {"order":7}
    "#]],
    );
}

#[test]
fn an_output_that_cannot_render_fails_the_run() {
    let mut flow = workflow("bad-output", vec![step("a", StepKind::Noop)]);
    flow.output = Some(json!("{{ steps.a.output.missing.deeper }}"));
    check(
        &flow,
        json!({}),
        &mut Obedient,
        expect![[r#"
        1 run.started {"input":{}}
        2 step.scheduled a#1
        3 step.succeeded a#1
        4 run.failed {"reason":"cannot render the run output: cannot render `{{ steps.a.output.missing.deeper }}`: undefined value: `steps.a.output.missing` is undefined"}
        => failed "cannot render the run output: cannot render `{{ steps.a.output.missing.deeper }}`: undefined value: `steps.a.output.missing` is undefined"
    "#]],
    );
}

#[test]
fn an_input_that_cannot_render_fails_the_step_without_retry() {
    let retry = RetryPolicy {
        max_attempts: 3,
        ..RetryPolicy::default()
    };
    let flow = workflow(
        "bad-input",
        vec![
            step("a", StepKind::Http)
                .with(json!("{{ input.nope.deeper }}"))
                .retry(retry),
        ],
    );
    check(
        &flow,
        json!({}),
        &mut Obedient,
        expect![[r#"
        1 run.started {"input":{}}
        2 step.failed a#0 {"error":"cannot render `with`: cannot render `{{ input.nope.deeper }}`: undefined value: `input.nope` is undefined","retryable":false}
        3 run.failed {"reason":"step `a` failed: cannot render `with`: cannot render `{{ input.nope.deeper }}`: undefined value: `input.nope` is undefined"}
        => failed "step `a` failed: cannot render `with`: cannot render `{{ input.nope.deeper }}`: undefined value: `input.nope` is undefined"
    "#]],
    );
}

#[test]
fn idempotency_keys_are_stable_across_attempts() {
    let retry = RetryPolicy {
        max_attempts: 3,
        backoff: Backoff::Fixed,
        ..RetryPolicy::default()
    };
    let flow = workflow(
        "keys",
        vec![
            step("one", StepKind::Http).retry(retry.clone()),
            step("many", StepKind::Http)
                .for_each("{{ [1, 2] }}", 2)
                .retry(retry),
        ],
    );
    let mut world = script(|_, _, attempt| (attempt < 3).then(|| fail("again", true)).flatten());
    let mut driver = Driver::new(&flow, Secrets::none());
    assert_eq!(driver.run(json!({}), &mut world), Ok(()));
    let mut keys = std::collections::BTreeMap::<String, std::collections::BTreeSet<String>>::new();
    for envelope in &driver.log {
        if let imx_core::Event::StepScheduled(scheduled) = &envelope.event {
            let name = format!(
                "{}{}",
                scheduled.step,
                scheduled.index.map(|i| format!("/{i}")).unwrap_or_default()
            );
            keys.entry(name)
                .or_default()
                .insert(scheduled.idempotency_key.clone());
        }
    }
    let text: String = keys
        .iter()
        .map(|(name, keys)| format!("{name}: {keys:?}\n"))
        .collect();
    expect![[r#"
        many/0: {"00000000-0000-4000-8000-000000000001/many/0"}
        many/1: {"00000000-0000-4000-8000-000000000001/many/1"}
        one: {"00000000-0000-4000-8000-000000000001/one"}
    "#]]
    .assert_eq(&text);
    assert_eq!(driver.state.status, RunStatus::Succeeded);
}

#[test]
fn jitter_is_derived_from_the_key_and_attempt() {
    use imx_core::keys::retry_delay_ms;
    let policy = RetryPolicy {
        max_attempts: 10,
        backoff: Backoff::Exponential,
        initial_interval_ms: 1_000,
        max_interval_ms: 30_000,
        multiplier: 2.0,
        jitter: 0.5,
    };
    let mut text = String::new();
    for key in ["run-a/fetch", "run-b/fetch"] {
        let delays: Vec<u64> = (1..=7)
            .map(|attempt| retry_delay_ms(&policy, key, attempt))
            .collect();
        let again: Vec<u64> = (1..=7)
            .map(|attempt| retry_delay_ms(&policy, key, attempt))
            .collect();
        assert_eq!(
            delays, again,
            "the same key and attempt give the same delay"
        );
        for (attempt, delay) in (1..=7).zip(&delays) {
            let base = (1_000u64 << (attempt - 1)).min(30_000);
            assert!(
                *delay <= base && *delay >= base / 2,
                "attempt {attempt}: {delay} outside [{}, {base}]",
                base / 2
            );
        }
        text.push_str(&format!("{key}: {delays:?}\n"));
    }
    let no_jitter = RetryPolicy {
        jitter: 0.0,
        ..policy
    };
    let plain: Vec<u64> = (1..=7)
        .map(|attempt| retry_delay_ms(&no_jitter, "run-a/fetch", attempt))
        .collect();
    text.push_str(&format!("no jitter: {plain:?}\n"));
    expect![[r#"
        run-a/fetch: [836, 1300, 2793, 4538, 12374, 19169, 23575]
        run-b/fetch: [584, 1762, 3451, 6916, 12951, 21788, 22213]
        no jitter: [1000, 2000, 4000, 8000, 16000, 30000, 30000]
    "#]]
    .assert_eq(&text);
}
