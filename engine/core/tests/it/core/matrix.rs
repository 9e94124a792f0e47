//! `matrix:` expansion (GitHub Actions' rules for `include`/`exclude`) and
//! `fail_fast` on any fan-out, through the simulated runtime.

use expect_test::expect;
use imx_core::matrix::combinations;
use imx_core::workflow::{Matrix, MatrixAxis, Step, StepKind};
use serde_json::{Value, json};
use testkit::histories::{step, workflow};

use super::driver::Outcome;
use super::rules::{check, fail, script};

fn matrix(axes: &[(&str, Value)], include: Value, exclude: Value) -> Matrix {
    Matrix {
        axes: axes
            .iter()
            .map(|(name, values)| MatrixAxis {
                name: (*name).to_owned(),
                values: values.clone(),
            })
            .collect(),
        include: include.as_array().cloned().unwrap_or_default(),
        exclude: exclude.as_array().cloned().unwrap_or_default(),
        max_parallel: 16,
    }
}

/// The combinations of `matrix`, with its template already literal.
fn expand(matrix: &Matrix) -> Result<Value, String> {
    combinations(matrix, &imx_core::matrix::template(matrix)).map(Value::Array)
}

#[test]
fn the_first_axis_varies_slowest() {
    let m = matrix(
        &[("os", json!(["linux", "macos"])), ("node", json!([20, 22]))],
        json!(null),
        json!(null),
    );
    assert_eq!(
        expand(&m),
        Ok(json!([
            {"os": "linux", "node": 20}, {"os": "linux", "node": 22},
            {"os": "macos", "node": 20}, {"os": "macos", "node": 22},
        ]))
    );
}

#[test]
fn exclude_removes_partial_matches_before_include_merges_or_adds() {
    // GitHub's documented example: `include` entries merge into matching
    // original combinations (without overwriting axis values), may
    // overwrite what an earlier include added, or become new combinations.
    let m = matrix(
        &[
            ("fruit", json!(["apple", "pear"])),
            ("animal", json!(["cat", "dog"])),
        ],
        json!([
            {"color": "green"},
            {"color": "pink", "animal": "cat"},
            {"fruit": "apple", "shape": "circle"},
            {"fruit": "banana"},
            {"fruit": "banana", "animal": "cat"},
        ]),
        json!([{"fruit": "pear", "animal": "dog"}]),
    );
    assert_eq!(
        expand(&m),
        Ok(json!([
            {"fruit": "apple", "animal": "cat", "color": "pink", "shape": "circle"},
            {"fruit": "apple", "animal": "dog", "color": "green", "shape": "circle"},
            {"fruit": "pear", "animal": "cat", "color": "pink"},
            {"fruit": "banana"},
            {"fruit": "banana", "animal": "cat"},
        ]))
    );
}

#[test]
fn a_matrix_of_only_include_entries_runs_each_entry() {
    let m = matrix(
        &[],
        json!([{"os": "linux"}, {"os": "windows"}]),
        json!(null),
    );
    assert_eq!(expand(&m), Ok(json!([{"os": "linux"}, {"os": "windows"}])));
}

#[test]
fn an_axis_that_is_not_a_list_and_too_many_combinations_are_refused() {
    let m = matrix(&[("os", json!("linux"))], json!(null), json!(null));
    assert_eq!(
        expand(&m),
        Err("matrix axis `os` must yield a list, got \"linux\"".to_owned())
    );
    let wide: Vec<u32> = (0..200).collect();
    let m = matrix(
        &[("a", json!(wide)), ("b", json!(wide))],
        json!(null),
        json!(null),
    );
    assert_eq!(
        expand(&m),
        Err("`matrix` has more combinations than the limit of 10000".to_owned())
    );
}

fn matrix_step(id: &str, kind: StepKind) -> Step {
    let mut step = step(id, kind);
    step.matrix = Some(matrix(
        &[("os", json!("{{ input.oses }}")), ("node", json!([20]))],
        json!([{"os": "linux", "lts": true}]),
        json!(null),
    ));
    step.with(json!({"target": "{{ matrix.os }}-{{ matrix.node }}", "lts": "{{ matrix.lts | default(false) }}", "index": "{{ index }}"}))
}

#[test]
fn a_matrix_step_expands_its_combinations_and_reads_matrix_axes() {
    let flow = workflow("m", vec![matrix_step("build", StepKind::Noop)]);
    check(
        &flow,
        json!({"oses": ["linux", "macos"]}),
        &mut script(|_, _, _| None),
        expect![[r#"
            1 run.started {"input":{"oses":["linux","macos"]}}
            2 for_each.expanded build {"count":2,"items":[{"lts":true,"node":20,"os":"linux"},{"node":20,"os":"macos"}]}
            3 step.scheduled build/0#1 {"input":{"index":0,"lts":true,"target":"linux-20"}}
            4 step.succeeded build/0#1 {"output":{"index":0,"lts":true,"target":"linux-20"}}
            5 step.scheduled build/1#1 {"input":{"index":1,"lts":false,"target":"macos-20"}}
            6 step.succeeded build/1#1 {"output":{"index":1,"lts":false,"target":"macos-20"}}
            7 run.succeeded
            => succeeded null
        "#]],
    );
}

/// Three http items, item 1 fails for good at once, items 0 and 2 hang.
fn fan_out(fail_fast: Option<bool>) -> imx_core::workflow::Workflow {
    let mut build = step("build", StepKind::Http).for_each("{{ [0, 1, 2] }}", 3);
    build.fail_fast = fail_fast;
    build.timeout_ms = Some(5_000);
    workflow("fan", vec![build])
}

fn item_1_fails(step: &str, index: Option<u32>, _: u32) -> Option<Outcome> {
    match (step, index) {
        ("build", Some(1)) => fail("broken", false),
        _ => Some(Outcome::Hang),
    }
}

#[test]
fn fail_fast_true_cancels_the_running_items_when_one_fails() {
    check(
        &fan_out(Some(true)),
        json!({}),
        &mut script(item_1_fails),
        expect![[r#"
            1 run.started {"input":{}}
            2 for_each.expanded build {"count":3,"fail_fast":true,"items":[0,1,2]}
            3 step.scheduled build/0#1 {"deadline":"+5000ms"}
            4 step.scheduled build/1#1 {"deadline":"+5000ms"}
            5 step.scheduled build/2#1 {"deadline":"+5000ms"}
            6 step.started build/0#1
            7 step.started build/1#1
            8 step.started build/2#1
            9 step.failed build/1#1 {"error":"broken","retryable":false}
            10 for_each.stopped build {"reason":"fail_fast: an item failed"}
            11 run.failed {"reason":"step `build` failed: item 1: broken"}
            => failed "step `build` failed: item 1: broken"
        "#]],
    );
}

/// One item at a time, item 1 fails for good, the others succeed.
fn one_at_a_time(fail_fast: Option<bool>) -> imx_core::workflow::Workflow {
    let mut build = step("build", StepKind::Http).for_each("{{ [0, 1, 2] }}", 1);
    build.fail_fast = fail_fast;
    workflow("fan", vec![build])
}

fn only_item_1_fails(step: &str, index: Option<u32>, _: u32) -> Option<Outcome> {
    match (step, index) {
        ("build", Some(1)) => fail("broken", false),
        _ => None,
    }
}

#[test]
fn fail_fast_false_lets_every_item_run_and_fails_the_step_at_the_end() {
    check(
        &one_at_a_time(Some(false)),
        json!({}),
        &mut script(only_item_1_fails),
        expect![[r#"
            1 run.started {"input":{}}
            2 for_each.expanded build {"count":3,"fail_fast":false,"items":[0,1,2]}
            3 step.scheduled build/0#1
            4 step.started build/0#1
            5 step.succeeded build/0#1
            6 step.scheduled build/1#1
            7 step.started build/1#1
            8 step.failed build/1#1 {"error":"broken","retryable":false}
            9 step.scheduled build/2#1
            10 step.started build/2#1
            11 step.succeeded build/2#1
            12 run.failed {"reason":"step `build` failed: item 1: broken"}
            => failed "step `build` failed: item 1: broken"
        "#]],
    );
}

#[test]
fn without_fail_fast_no_item_starts_after_a_failure() {
    check(
        &one_at_a_time(None),
        json!({}),
        &mut script(only_item_1_fails),
        expect![[r#"
            1 run.started {"input":{}}
            2 for_each.expanded build {"count":3,"items":[0,1,2]}
            3 step.scheduled build/0#1
            4 step.started build/0#1
            5 step.succeeded build/0#1
            6 step.scheduled build/1#1
            7 step.started build/1#1
            8 step.failed build/1#1 {"error":"broken","retryable":false}
            9 run.failed {"reason":"step `build` failed: item 1: broken"}
            => failed "step `build` failed: item 1: broken"
        "#]],
    );
}
