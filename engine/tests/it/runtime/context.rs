//! Inputs and the run context through the runtime, on both stores, with
//! `workflows/context-report.yaml`: schema `default`s and `vars` recorded in
//! `run.started`, `run.started_at`/`run.trigger`/`run.status` and
//! `steps.<id>.error` in templates, and `vars` that cannot render refusing
//! the start with nothing written.

use engine::core::state::RunStatus;
use engine::runtime::{Error, StartRequest};
use engine::store::prelude::*;
use serde_json::{Value, json};

use super::{Node, both_backends};

both_backends!(context:
    defaults_and_vars_are_recorded_in_run_started,
    a_handler_after_a_failure_reads_the_error_and_the_run_status,
    vars_that_cannot_render_refuse_the_start,
);

fn example() -> String {
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../workflows/context-report.yaml");
    std::fs::read_to_string(&path).unwrap_or_else(|err| panic!("{}: {err}", path.display()))
}

/// The payload of the run's `run.started`.
async fn run_started(node: &Node, run_id: engine::store::RunId) -> Value {
    let events = node
        .runtime
        .store()
        .read_stream(run_id, 0, 1)
        .await
        .expect("read the stream");
    assert_eq!(events[0].event_type, "run.started");
    events[0].payload.clone()
}

async fn defaults_and_vars_are_recorded_in_run_started(url: &str) {
    let node = Node::start(url).await;
    node.register(&example()).await;
    let run_id = node.start_run("context-report", json!({})).await;
    let document = node.finished(run_id).await;
    assert_eq!(document["status"], "succeeded", "{document}");
    let started = run_started(&node, run_id).await;
    let defaulted = json!({"user": "world", "region": "eu-west", "fail": false});
    assert_eq!(started["input"], defaulted);
    assert_eq!(document["input"], defaulted);
    let state = node.runtime.state(run_id).await.expect("state");
    let started_at = state
        .started_at
        .expect("started")
        .to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true);
    assert_eq!(
        started["vars"],
        json!({
            "greeting": "Hello, world!",
            "bucket": "reports-eu-west",
            "started_at": started_at,
            "started_by": "manual",
        })
    );
    assert_eq!(document["output"]["greeting"], "Hello, world!");
    let report = &document["output"]["report"];
    assert_eq!(
        (&report["risky"], &report["error"], &report["run_status"]),
        (&json!("skipped"), &Value::Null, &json!("running")),
        "{report}"
    );
    assert_eq!(report["started_at"], json!(started_at));
    // An input that sets what the defaults would: recorded as given.
    let given = json!({"user": "ada", "region": "us", "fail": false});
    let second = node.start_run("context-report", given.clone()).await;
    let document = node.finished(second).await;
    assert_eq!(run_started(&node, second).await["input"], given);
    assert_eq!(document["output"]["greeting"], "Hello, ada!");
    node.stop().await;
}

async fn a_handler_after_a_failure_reads_the_error_and_the_run_status(url: &str) {
    let node = Node::start(url).await;
    node.register(&example()).await;
    let run_id = node
        .start_run("context-report", json!({"fail": true, "region": "ap"}))
        .await;
    let state = node.wait_for(run_id, |state| state.is_finished()).await;
    assert_eq!(state.status, RunStatus::Failed);
    let report = state.steps["report"]
        .output
        .clone()
        .expect("the report ran");
    assert_eq!(report["risky"], "failed", "{report}");
    let error = report["error"].as_str().expect("an error text");
    assert!(error.contains("reports-ap is not writable"), "{report}");
    assert_eq!(report["run_status"], "running", "{report}");
    node.stop().await;
}

async fn vars_that_cannot_render_refuse_the_start(url: &str) {
    let node = Node::start(url).await;
    node.register(
        "name: strict-vars\nvars:\n  region: \"{{ input.deploy.region }}\"\nsteps:\n  a: { uses: noop, with: { r: \"{{ vars.region }}\" } }\n",
    )
    .await;
    let refused = node
        .runtime
        .start_run(StartRequest {
            workflow: "strict-vars".to_owned(),
            input: json!({}),
            ..StartRequest::default()
        })
        .await;
    let Err(error) = refused else {
        panic!("a start whose vars cannot render: {refused:?}")
    };
    assert!(matches!(error, Error::Vars { .. }), "{error:?}");
    assert!(
        error
            .to_string()
            .starts_with("IMX0418: the `vars` of workflow `strict-vars`"),
        "{error}"
    );
    node.assert_no_runs().await;
    node.stop().await;
}
