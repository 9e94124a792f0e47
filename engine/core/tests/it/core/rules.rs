//! Every DSL rule, run end to end through the simulated runtime: the
//! snapshot is the whole event log of the run.

use expect_test::{Expect, expect};
use imx_core::workflow::{Backoff, RetryPolicy, StepKind, TriggerRule, Workflow};
use imx_core::{Host, Secrets, decide};
use serde_json::{Value, json};
use testkit::histories::{step, workflow};

use super::driver::{Driver, Obedient, Outcome, Scripted, World};
use super::support::render_brief;

/// Runs `workflow` with `input` in `world` and snapshots the log and the end status.
pub(super) fn check(workflow: &Workflow, input: Value, world: &mut dyn World, expected: Expect) {
    let mut driver = Driver::new(workflow, Secrets::none());
    if let Err(err) = driver.run(input, world) {
        panic!("the run broke: {err}\n{}", render_brief(&driver.log));
    }
    let again = decide(workflow, &driver.state, driver.now, Host::none());
    assert!(again.is_empty(), "a finished run still decides {again:?}");
    let text = format!(
        "{}=> {} {}\n",
        render_brief(&driver.log),
        driver.state.status.as_str(),
        driver
            .state
            .output
            .clone()
            .or(driver.state.failure.clone().map(Value::String))
            .unwrap_or_default()
    );
    expected.assert_eq(&text);
}

pub(super) fn script(
    script: impl FnMut(&str, Option<u32>, u32) -> Option<Outcome>,
) -> Scripted<impl FnMut(&str, Option<u32>, u32) -> Option<Outcome>> {
    Scripted {
        script,
        approve: true,
        cancel_at_ms: None,
    }
}

pub(super) fn fail(error: &str, retryable: bool) -> Option<Outcome> {
    Some(Outcome::Fail {
        error: error.to_owned(),
        retryable,
    })
}

#[test]
fn steps_run_in_needs_order_and_the_output_is_rendered() {
    let mut flow = workflow(
        "diamond",
        vec![
            step("a", StepKind::Http).with(json!({"n": "{{ input.n }}"})),
            step("b", StepKind::Noop)
                .needs(&["a"])
                .with(json!("{{ steps.a.output.n + 1 }}")),
            step("c", StepKind::Agent)
                .needs(&["a"])
                .with(json!({"run": "{{ run.workflow }} #{{ run.attempt }}"})),
            step("d", StepKind::Noop)
                .needs(&["b", "c"])
                .with(json!(["{{ steps.b.output }}", "{{ steps.c.status }}"])),
        ],
    );
    flow.output = Some(json!({"d": "{{ steps.d.output }}", "c": "{{ steps.c.output.run }}"}));
    check(
        &flow,
        json!({"n": 41}),
        &mut Obedient,
        expect![[r#"
        1 run.started {"input":{"n":41}}
        2 step.scheduled a#1 {"input":{"n":41}}
        3 step.started a#1
        4 step.succeeded a#1 {"output":{"n":41}}
        5 step.scheduled b#1 {"input":42}
        6 step.succeeded b#1 {"output":42}
        7 step.scheduled c#1 {"input":{"run":"diamond #1"}}
        8 step.started c#1
        9 step.succeeded c#1 {"output":{"run":"diamond #1"}}
        10 step.scheduled d#1 {"input":[42,"succeeded"]}
        11 step.succeeded d#1 {"output":[42,"succeeded"]}
        12 run.succeeded {"output":{"c":"diamond #1","d":[42,"succeeded"]}}
        => succeeded {"c":"diamond #1","d":[42,"succeeded"]}
    "#]],
    );
}

#[test]
fn a_false_if_skips_the_step_and_the_skip_propagates() {
    let flow = workflow(
        "conditions",
        vec![
            step("gate", StepKind::Noop).when("input.ship"),
            step("after", StepKind::Noop).needs(&["gate"]),
            step("anyway", StepKind::Noop)
                .needs(&["gate"])
                .rule(TriggerRule::NoneFailed),
            step("yes", StepKind::Noop).when("input.n > 1"),
        ],
    );
    check(
        &flow,
        json!({"ship": false, "n": 2}),
        &mut Obedient,
        expect![[r#"
        1 run.started {"input":{"n":2,"ship":false}}
        2 step.skipped gate {"reason":"`if: input.ship` is false"}
        3 step.scheduled yes#1
        4 step.succeeded yes#1
        5 step.skipped after {"reason":"all_success: dependency `gate` skipped"}
        6 step.scheduled anyway#1
        7 step.succeeded anyway#1
        8 run.succeeded
        => succeeded null
    "#]],
    );
}

#[test]
fn a_step_failing_for_good_fails_the_run_but_cleanup_still_runs() {
    let flow = workflow(
        "cleanup",
        vec![
            step("charge", StepKind::Http),
            step("ship", StepKind::Http).needs(&["charge"]),
            step("cleanup", StepKind::Noop)
                .needs(&["ship"])
                .rule(TriggerRule::AllDone),
            step("alert", StepKind::Noop)
                .needs(&["charge"])
                .rule(TriggerRule::OneFailed),
        ],
    );
    let mut world = script(|step, _, _| {
        (step == "charge")
            .then(|| fail("card declined", false))
            .flatten()
    });
    check(
        &flow,
        json!({}),
        &mut world,
        expect![[r#"
        1 run.started {"input":{}}
        2 step.scheduled charge#1
        3 step.started charge#1
        4 step.failed charge#1 {"error":"card declined","retryable":false}
        5 step.scheduled alert#1
        6 step.succeeded alert#1
        7 step.skipped ship {"reason":"all_success: dependency `charge` failed"}
        8 step.scheduled cleanup#1
        9 step.succeeded cleanup#1
        10 run.failed {"reason":"step `charge` failed: card declined"}
        => failed "step `charge` failed: card declined"
    "#]],
    );
}

#[test]
fn continue_on_error_covers_a_failure() {
    let mut flow = workflow(
        "covered",
        vec![
            step("optional", StepKind::Fail)
                .with(json!({"message": "not today"}))
                .continue_on_error(),
            step("next", StepKind::Noop)
                .needs(&["optional"])
                .with(json!("{{ steps.optional.status }}")),
        ],
    );
    flow.output = Some(json!("{{ steps.next.output }}"));
    check(
        &flow,
        json!({}),
        &mut Obedient,
        expect![[r#"
        1 run.started {"input":{}}
        2 step.scheduled optional#1 {"input":{"message":"not today"}}
        3 step.failed optional#1 {"error":"not today","retryable":true}
        4 step.scheduled next#1 {"input":"failed"}
        5 step.succeeded next#1 {"output":"failed"}
        6 run.succeeded {"output":"failed"}
        => succeeded "failed"
    "#]],
    );
}

#[test]
fn for_each_keeps_item_order_and_bounds_parallelism() {
    struct Slow;
    impl World for Slow {
        fn outcome(&mut self, _: &str, index: Option<u32>, _: u32, input: &Value) -> Outcome {
            Outcome::Succeed(json!({"item": input["item"], "index": index}))
        }
        // Earlier items take longer, so they finish out of order.
        fn work_ms(&mut self, _: &str, index: Option<u32>, _: u32) -> u64 {
            1_000 - 100 * u64::from(index.unwrap_or(0))
        }
    }
    let mut flow = workflow(
        "fan-out",
        vec![
            step("pack", StepKind::Agent)
                .for_each("{{ input.items }}", 2)
                .with(json!({"item": "{{ item }}"})),
        ],
    );
    flow.output = Some(json!(
        "{{ steps.pack.output | map(attribute='item') | list }}"
    ));
    let mut driver = Driver::new(&flow, Secrets::none());
    let run = driver.run(json!({"items": ["a", "b", "c", "d", "e"]}), &mut Slow);
    assert_eq!(run, Ok(()));
    let mut in_flight: i32 = 0;
    let mut most = 0;
    for envelope in &driver.log {
        match envelope.event_type() {
            "step.scheduled" => in_flight += 1,
            "step.succeeded" => in_flight -= 1,
            _ => {}
        }
        most = most.max(in_flight);
    }
    assert_eq!(most, 2, "max_parallel is 2");
    check(
        &flow,
        json!({"items": ["a", "b", "c", "d", "e"]}),
        &mut Slow,
        expect![[r#"
        1 run.started {"input":{"items":["a","b","c","d","e"]}}
        2 for_each.expanded pack {"count":5,"items":["a","b","c","d","e"]}
        3 step.scheduled pack/0#1 {"input":{"item":"a"}}
        4 step.scheduled pack/1#1 {"input":{"item":"b"}}
        5 step.started pack/0#1
        6 step.started pack/1#1
        7 step.succeeded pack/1#1 {"output":{"index":1,"item":"b"}}
        8 step.scheduled pack/2#1 {"input":{"item":"c"}}
        9 step.started pack/2#1
        10 step.succeeded pack/0#1 {"output":{"index":0,"item":"a"}}
        11 step.scheduled pack/3#1 {"input":{"item":"d"}}
        12 step.started pack/3#1
        13 step.succeeded pack/2#1 {"output":{"index":2,"item":"c"}}
        14 step.scheduled pack/4#1 {"input":{"item":"e"}}
        15 step.succeeded pack/3#1 {"output":{"index":3,"item":"d"}}
        16 step.started pack/4#1
        17 step.succeeded pack/4#1 {"output":{"index":4,"item":"e"}}
        18 run.succeeded {"output":["a","b","c","d","e"]}
        => succeeded ["a","b","c","d","e"]
    "#]],
    );
}

#[test]
fn for_each_over_nothing_succeeds_with_an_empty_list() {
    let flow = workflow(
        "empty",
        vec![step("pack", StepKind::Agent).for_each("{{ input.items }}", 4)],
    );
    check(
        &flow,
        json!({"items": []}),
        &mut Obedient,
        expect![[r#"
        1 run.started {"input":{"items":[]}}
        2 for_each.expanded pack {"count":0,"items":[]}
        3 run.succeeded
        => succeeded null
    "#]],
    );
}

#[test]
fn a_failed_item_fails_the_step_and_skips_items_not_started() {
    let flow = workflow(
        "fan-out-fail",
        vec![
            step("pack", StepKind::Agent)
                .for_each("{{ input.items }}", 1)
                .with(json!("{{ item }}")),
        ],
    );
    let mut world =
        script(|_, index, _| (index == Some(1)).then(|| fail("no box", false)).flatten());
    check(
        &flow,
        json!({"items": [1, 2, 3, 4]}),
        &mut world,
        expect![[r#"
        1 run.started {"input":{"items":[1,2,3,4]}}
        2 for_each.expanded pack {"count":4,"items":[1,2,3,4]}
        3 step.scheduled pack/0#1 {"input":1}
        4 step.started pack/0#1
        5 step.succeeded pack/0#1 {"output":1}
        6 step.scheduled pack/1#1 {"input":2}
        7 step.started pack/1#1
        8 step.failed pack/1#1 {"error":"no box","retryable":false}
        9 run.failed {"reason":"step `pack` failed: item 1: no box"}
        => failed "step `pack` failed: item 1: no box"
    "#]],
    );
}

#[test]
fn retries_back_off_exponentially_up_to_the_cap() {
    let retry = RetryPolicy {
        max_attempts: 5,
        backoff: Backoff::Exponential,
        initial_interval_ms: 1_000,
        max_interval_ms: 5_000,
        multiplier: 3.0,
        jitter: 0.0,
    };
    let flow = workflow("backoff", vec![step("flaky", StepKind::Http).retry(retry)]);
    let mut world = script(|_, _, attempt| (attempt < 5).then(|| fail("HTTP 503", true)).flatten());
    check(
        &flow,
        json!({}),
        &mut world,
        expect![[r#"
        1 run.started {"input":{}}
        2 step.scheduled flaky#1
        3 step.started flaky#1
        4 step.failed flaky#1 {"error":"HTTP 503","retryable":true}
        5 step.retry_scheduled flaky#2 {"fire_at":"+1020ms","timer_id":"retry/flaky/2"}
        6 timer.fired {"timer_id":"retry/flaky/2"}
        7 step.scheduled flaky#2
        8 step.started flaky#2
        9 step.failed flaky#2 {"error":"HTTP 503","retryable":true}
        10 step.retry_scheduled flaky#3 {"fire_at":"+4040ms","timer_id":"retry/flaky/3"}
        11 timer.fired {"timer_id":"retry/flaky/3"}
        12 step.scheduled flaky#3
        13 step.started flaky#3
        14 step.failed flaky#3 {"error":"HTTP 503","retryable":true}
        15 step.retry_scheduled flaky#4 {"fire_at":"+9060ms","timer_id":"retry/flaky/4"}
        16 timer.fired {"timer_id":"retry/flaky/4"}
        17 step.scheduled flaky#4
        18 step.started flaky#4
        19 step.failed flaky#4 {"error":"HTTP 503","retryable":true}
        20 step.retry_scheduled flaky#5 {"fire_at":"+14080ms","timer_id":"retry/flaky/5"}
        21 timer.fired {"timer_id":"retry/flaky/5"}
        22 step.scheduled flaky#5
        23 step.started flaky#5
        24 step.succeeded flaky#5
        25 run.succeeded
        => succeeded null
    "#]],
    );
}

#[test]
fn a_pure_fail_step_fails_every_attempt() {
    let retry = RetryPolicy {
        max_attempts: 2,
        backoff: Backoff::Fixed,
        ..RetryPolicy::default()
    };
    let flow = workflow(
        "fail",
        vec![
            step("boom", StepKind::Fail)
                .with(json!({"message": "boom {{ input.n }}"}))
                .retry(retry),
        ],
    );
    check(
        &flow,
        json!({"n": 1}),
        &mut Obedient,
        expect![[r#"
        1 run.started {"input":{"n":1}}
        2 step.scheduled boom#1 {"input":{"message":"boom 1"}}
        3 step.failed boom#1 {"error":"boom 1","retryable":true}
        4 step.retry_scheduled boom#2 {"fire_at":"+1000ms","timer_id":"retry/boom/2"}
        5 timer.fired {"timer_id":"retry/boom/2"}
        6 step.scheduled boom#2 {"input":{"message":"boom 1"}}
        7 step.failed boom#2 {"error":"boom 1","retryable":true}
        8 run.failed {"reason":"step `boom` failed: boom 1"}
        => failed "step `boom` failed: boom 1"
    "#]],
    );
}
