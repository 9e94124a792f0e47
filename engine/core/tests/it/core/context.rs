//! Inputs and run context in the pure core: JSON Schema `default`s, `vars`
//! rendered once and recorded in `run.started`, the `run`/`steps` fields
//! templates read, a log written before `vars` existed, and `compat` on a
//! version that adds `vars`.

use imx_core::RunState;
use imx_core::compat::{Incompatibility, compatibility};
use imx_core::defaults::with_defaults;
use imx_core::dsl;
use imx_core::event::{Event, EventEnvelope, RunStarted};
use imx_core::run::{Start, render_vars, settle, start_run};
use imx_core::scope::{Host, RunContext};
use imx_core::workflow::Workflow;
use serde_json::{Value, json};
use testkit::histories::{RUN_ID, t0};

const FLOW: &str = r#"
name: context
input:
  type: object
  properties:
    user: { type: string, default: world }
    limits:
      type: object
      properties: { retries: { type: integer, default: 3 }, region: { type: string } }
      default: {}
vars:
  greeting: "Hello, {{ input.user }}!"
  since: "{{ run.started_at }}"
  via: "{{ run.trigger.kind }}"
steps:
  greet:
    uses: noop
    with: { text: "{{ vars.greeting }}", retries: "{{ input.limits.retries }}", since: "{{ vars.since }}" }
  risky:
    needs: [greet]
    uses: fail
    with: { message: boom }
  report:
    needs: [risky]
    trigger_rule: all_done
    uses: noop
    with: { error: "{{ steps.risky.error }}", status: "{{ run.status }}", via: "{{ run.trigger.kind }}" }
"#;

fn parsed(source: &str) -> Workflow {
    let parsed = dsl::parse(source);
    assert!(!parsed.has_errors(), "{:#?}", parsed.diagnostics);
    parsed.workflow.expect("a workflow")
}

#[test]
fn defaults_fill_what_is_missing_level_by_level_and_keep_what_is_given() {
    let schema = parsed(FLOW).input.expect("a schema");
    let cases = [
        (
            Value::Null,
            json!({"user": "world", "limits": {"retries": 3}}),
        ),
        (
            json!({}),
            json!({"user": "world", "limits": {"retries": 3}}),
        ),
        (
            json!({"user": "ada", "limits": {"region": "eu"}}),
            json!({"user": "ada", "limits": {"region": "eu", "retries": 3}}),
        ),
        (
            json!({"limits": {"retries": 0}}),
            json!({"user": "world", "limits": {"retries": 0}}),
        ),
        // Not an object: left for the schema check to refuse.
        (json!("text"), json!("text")),
    ];
    for (input, expected) in cases {
        assert_eq!(
            with_defaults(Some(&schema), input.clone()),
            expected,
            "{input}"
        );
    }
    assert_eq!(with_defaults(None, Value::Null), Value::Null);
    let top = json!({"type": "object", "default": {"mode": "fast"}});
    assert_eq!(
        with_defaults(Some(&top), Value::Null),
        json!({"mode": "fast"})
    );
    // Only `properties` is followed: a default behind `$ref` is not applied.
    let referenced = json!({
        "$defs": {"user": {"type": "string", "default": "x"}},
        "properties": {"user": {"$ref": "#/$defs/user"}}
    });
    assert_eq!(with_defaults(Some(&referenced), json!({})), json!({}));
}

/// `run.started` of a run of `workflow` with `input`, its vars rendered first.
fn started(workflow: &Workflow, input: Value) -> EventEnvelope {
    let input = with_defaults(workflow.input.as_ref(), input);
    let run = RunContext {
        id: Some(RUN_ID),
        workflow: &workflow.name,
        attempt: 1,
        started_at: Some(t0()),
        trigger: None,
        parent: None,
        status: "running",
        error: None,
    };
    let vars = render_vars(workflow, run, &input, Host::none()).expect("vars render");
    let start = Start {
        vars,
        ..Start::with_input(input)
    };
    start_run(workflow, "sha256:context", RUN_ID, start, t0()).0
}

#[test]
fn vars_are_rendered_once_recorded_in_run_started_and_read_by_steps() {
    let workflow = parsed(FLOW);
    let first = started(&workflow, json!({"user": "ada"}));
    let Event::RunStarted(payload) = &first.event else {
        panic!("run.started first")
    };
    assert_eq!(
        payload.vars,
        Some(json!({"greeting": "Hello, ada!", "since": "2026-01-01T00:00:00Z", "via": "manual"}))
    );
    let mut state = RunState::new();
    state.apply(&first).expect("run.started applies");
    settle(&workflow, &mut state, t0(), Host::none()).expect("settles");
    assert_eq!(
        state.steps["greet"].output,
        Some(json!({"text": "Hello, ada!", "retries": 3, "since": "2026-01-01T00:00:00Z"}))
    );
}

#[test]
fn a_step_after_a_failure_reads_its_error_and_the_run_status() {
    let workflow = parsed(FLOW);
    let mut state = RunState::new();
    state
        .apply(&started(&workflow, json!({})))
        .expect("run.started applies");
    settle(&workflow, &mut state, t0(), Host::none()).expect("settles");
    let report = state.steps["report"]
        .output
        .clone()
        .expect("the report ran");
    let error = report["error"].as_str().expect("the error of `risky`");
    assert!(error.contains("boom"), "{report}");
    assert_eq!(
        (&report["status"], &report["via"]),
        (&json!("running"), &json!("manual"))
    );
}

#[test]
fn a_run_started_from_before_vars_replays_and_reads_empty_vars() {
    let old = json!({
        "at": "2026-01-01T00:00:00Z", "workflow": "w", "version": "v", "input": {},
        "steps": ["a"], "idempotency_key": null, "parent": null, "deadline": null
    });
    let payload: RunStarted = serde_json::from_value(old.clone()).expect("an old payload reads");
    assert_eq!(payload.vars, None);
    // Written back, it is the same bytes: the new field is left out.
    assert_eq!(serde_json::to_value(&payload).expect("serialize"), old);
    let workflow = parsed("name: w\nsteps:\n  a: { uses: noop }\n");
    let model = serde_json::to_value(&workflow).expect("model");
    assert!(
        model.get("vars").is_none(),
        "no `vars` key, so versions stay as they were"
    );
}

#[test]
fn a_new_version_declaring_vars_the_run_lacks_is_reported_by_compat() {
    let old = parsed("name: w\nsteps:\n  a: { uses: noop }\n  b: { needs: [a], uses: noop }\n");
    let new = parsed(
        "name: w\nvars: { region: eu }\nsteps:\n  a: { uses: noop }\n  b: { needs: [a], uses: noop, with: { r: \"{{ vars.region }}\" } }\n",
    );
    let mut state = RunState::new();
    state.apply(&started(&old, json!({}))).expect("applies");
    assert_eq!(
        compatibility(&old, &new, &state),
        vec![Incompatibility::VarsChanged {
            missing: vec!["region".to_owned()]
        }]
    );
    let mut rendered = RunState::new();
    rendered.apply(&started(&new, json!({}))).expect("applies");
    assert!(compatibility(&new, &new, &rendered).is_empty());
}

#[test]
fn run_trigger_names_what_started_the_run() {
    let cron = imx_core::event::TriggerContext::Cron {
        trigger: "nightly".to_owned(),
        scheduled_at: t0(),
    };
    let parent = imx_core::event::ParentRun {
        run_id: RUN_ID,
        step_key: format!("{RUN_ID}/ship"),
    };
    let context = |trigger, parent| RunContext {
        id: Some(RUN_ID),
        workflow: "w",
        attempt: 2,
        started_at: Some(t0()),
        trigger,
        parent,
        status: "running",
        error: None,
    };
    assert_eq!(
        context(Some(&cron), None).to_json()["trigger"],
        json!({"kind": "cron", "trigger": "nightly", "scheduled_at": "2026-01-01T00:00:00Z"})
    );
    assert_eq!(
        context(None, Some(&parent)).to_json()["trigger"],
        json!({"kind": "workflow", "parent_run": RUN_ID.to_string()})
    );
    assert_eq!(
        context(None, None).to_json(),
        json!({
            "id": RUN_ID.to_string(), "workflow": "w", "attempt": 2,
            "started_at": "2026-01-01T00:00:00Z", "status": "running", "error": null,
            "trigger": {"kind": "manual"}
        })
    );
}
