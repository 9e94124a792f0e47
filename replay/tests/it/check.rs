//! `check`: hand-made version pairs against a run in flight, safe and
//! unsafe, with the reasons; and the report over runs found in a real store.

use engine::core::state::RunState;
use engine::core::workflow::{StepKind, Workflow};
use engine::store::NewWorkflow;
use engine::store::prelude::*;
use expect_test::{Expect, expect};
use replay::check::render_report;
use replay::compatibility;
use replay::online::check_runs;
use serde_json::json;
use testkit::histories::{HistoryBuilder, step, workflow};

use crate::support::{RunLog, append_runs, block_on, run_id, sqlite};

/// `orders` v1: fetch (http) → charge (http) → notify (agent); input `{order: integer}`.
fn old() -> Workflow {
    let mut flow = workflow(
        "orders",
        vec![
            step("fetch", StepKind::Http)
                .with(json!({"method": "GET", "url": "https://shop.example/{{ input.order }}"})),
            step("charge", StepKind::Http)
                .needs(&["fetch"])
                .with(json!({"method": "POST", "url": "https://pay.example"})),
            step("notify", StepKind::Agent)
                .needs(&["charge"])
                .with(json!({"queue": "mail"})),
        ],
    );
    flow.input = Some(
        json!({"type": "object", "required": ["order"], "properties": {"order": {"type": "integer"}}}),
    );
    flow
}

/// A run of v1 with `fetch` succeeded, `charge` running, `notify` pending.
fn in_flight() -> RunState {
    HistoryBuilder::start(old(), json!({"order": 7}))
        .started("fetch", None, 1)
        .after_ms(100)
        .succeeded("fetch", None, 1, json!({"status": 200}))
        .started("charge", None, 1)
        .settled()
        .state()
        .expect("the history folds")
}

fn check(change: impl FnOnce(&mut Workflow), expect: Expect) {
    let mut new = old();
    change(&mut new);
    let state = in_flight();
    let found = compatibility(&old(), &new, &state);
    let text: Vec<String> = found
        .iter()
        .map(|incompatibility| format!("- {incompatibility}"))
        .collect();
    let text = if text.is_empty() {
        "safe".to_owned()
    } else {
        text.join("\n")
    };
    expect.assert_eq(&(text + "\n"));
}

#[test]
fn the_run_in_flight_is_where_the_test_says() {
    let state = in_flight();
    let statuses: Vec<String> = state
        .steps
        .iter()
        .map(|(id, step)| format!("{id}={}", step.status.as_str()))
        .collect();
    assert_eq!(
        statuses,
        ["charge=running", "fetch=succeeded", "notify=pending"]
    );
}

#[test]
fn added_steps_and_changed_templates_of_pending_steps_are_safe() {
    check(
        |new| {
            new.steps.insert(
                "audit".into(),
                step("audit", StepKind::Noop).needs(&["fetch"]),
            );
            let notify = new.steps.get_mut("notify").expect("notify");
            notify.with = json!({"queue": "mail-v2"});
            notify.needs.push("audit".into());
        },
        expect![[r#"
            safe
        "#]],
    );
}

#[test]
fn renaming_a_running_step_is_unsafe() {
    check(
        |new| {
            let mut pay = new.steps.remove("charge").expect("charge");
            pay.id = "pay".into();
            new.steps.insert("pay".into(), pay);
            new.steps.get_mut("notify").expect("notify").needs = vec!["pay".into()];
        },
        expect![[r#"
            - step `charge` is running but the new version has no step `charge` (removed or renamed): its result would have nowhere to go
        "#]],
    );
}

#[test]
fn removing_a_pending_step_is_unsafe_but_a_finished_one_is_not() {
    check(
        |new| {
            new.steps.remove("notify");
        },
        expect![[r#"
            - step `notify` is pending but the new version has no step `notify` (removed or renamed): its result would have nowhere to go
        "#]],
    );
    check(
        |new| {
            new.steps.remove("fetch");
            new.steps.get_mut("charge").expect("charge").needs.clear();
        },
        expect![[r#"
            safe
        "#]],
    );
}

#[test]
fn changing_the_needs_of_a_finished_step_is_unsafe() {
    check(
        |new| {
            new.steps
                .insert("prepare".into(), step("prepare", StepKind::Noop));
            new.steps.get_mut("fetch").expect("fetch").needs = vec!["prepare".into()];
        },
        expect![[r#"
            - step `fetch` already finished after needs [], the new version says [prepare]: its recorded inputs would not match the new DAG
        "#]],
    );
}

#[test]
fn changing_the_input_schema_is_unsafe_and_says_whether_the_input_still_fits() {
    check(
        |new| {
            new.input = Some(
                json!({"type": "object", "required": ["order"], "properties": {"order": {"type": "string"}}}),
            )
        },
        expect![[r#"
            - the input schema changed and this run's input does not satisfy it: 7 is not of type "string" at `/order`
        "#]],
    );
    check(
        |new| {
            new.input = Some(
                json!({"type": "object", "properties": {"order": {"type": "integer"}, "note": {"type": "string"}}}),
            )
        },
        expect![[r#"
            - the input schema changed (this run's input still satisfies it, but templates may read fields differently)
        "#]],
    );
}

#[test]
fn changing_the_kind_of_a_started_step_is_unsafe_but_of_a_pending_one_is_not() {
    check(
        |new| {
            new.steps.get_mut("charge").expect("charge").uses = StepKind::Agent;
            new.steps.get_mut("notify").expect("notify").uses = StepKind::Http;
        },
        expect![[r#"
            - step `charge` already started as `http`, the new version makes it `agent`: the attempt in flight belongs to another executor
        "#]],
    );
}

#[test]
fn the_report_lists_runs_in_flight_on_other_versions_only() {
    block_on(async {
        let fixture = sqlite().await;
        let run = |n, builder: HistoryBuilder| RunLog::canned(builder.settled(), run_id(n));
        let in_flight = HistoryBuilder::start(old(), json!({"order": 7}))
            .succeeded("fetch", None, 1, json!({}))
            .started("charge", None, 1);
        let finished = HistoryBuilder::start(old(), json!({"order": 8}))
            .succeeded("fetch", None, 1, json!({}))
            .succeeded("charge", None, 1, json!({}))
            .succeeded("notify", None, 1, json!({}));
        let runs = [run(201, in_flight), run(202, finished)];
        assert!(runs[1].live.is_finished(), "the second run ended");
        append_runs(&fixture, &runs, 100).await;
        // v2 renames `charge` (running) and makes the finished `fetch` wait for a new step.
        let mut new = old();
        let mut pay = new.steps.remove("charge").expect("charge");
        pay.id = "pay".into();
        new.steps.insert("pay".into(), pay);
        new.steps.get_mut("notify").expect("notify").needs = vec!["pay".into()];
        new.steps
            .insert("prepare".into(), step("prepare", StepKind::Noop));
        new.steps.get_mut("fetch").expect("fetch").needs = vec!["prepare".into()];

        let unknown = check_runs(&fixture.store, &new, None).await.expect("check");
        expect![[r#"
            workflow orders, new version VERSION
            1 run(s) in flight on other versions, 1 affected

            run 01960000-0000-7000-8000-0000000000c9 (sha256:test, running at seq 5): CANNOT take over
              note: the run's version is not in the registry; only removed steps were checked
              - step `charge` is running but the new version has no step `charge` (removed or renamed): its result would have nowhere to go
        "#]]
        .assert_eq(&render_report("orders", "VERSION", &unknown));

        // The runs' version in the registry: the whole comparison.
        let model = serde_json::to_value(old()).expect("the model serializes");
        let registered = NewWorkflow {
            name: "orders".into(),
            version: "sha256:test".into(),
            source: String::new(),
            model,
        };
        fixture
            .store
            .register_workflow(registered)
            .await
            .expect("register");
        let known = check_runs(&fixture.store, &new, None).await.expect("check");
        expect![[r#"
            workflow orders, new version VERSION
            1 run(s) in flight on other versions, 1 affected

            run 01960000-0000-7000-8000-0000000000c9 (sha256:test, running at seq 5): CANNOT take over
              - step `charge` is running but the new version has no step `charge` (removed or renamed): its result would have nowhere to go
              - step `fetch` already finished after needs [], the new version says [prepare]: its recorded inputs would not match the new DAG
        "#]]
        .assert_eq(&render_report("orders", "VERSION", &known));

        let same = check_runs(&fixture.store, &old(), None)
            .await
            .expect("check");
        assert_eq!(
            same.len(),
            1,
            "v1 itself is another version than sha256:test"
        );
        assert!(
            same[0].is_safe(),
            "v1 can take over a run of the same model"
        );
    });
}
