//! `matrix:` and `fail_fast` through the runtime, on both stores:
//! `workflows/matrix-build.yaml` expands its combinations (exclude, include),
//! and a fan-out whose item fails cancels the running items (`fail_fast:
//! true`) or lets every item run (`false`).

use engine::core::state::{ExecStatus, RunStatus, StepStatus};
use serde_json::json;

use super::{Node, both_backends, calls, event_types};

both_backends!(matrix:
    the_example_matrix_expands_its_combinations,
    fail_fast_true_cancels_the_running_items,
    fail_fast_false_runs_every_item_then_fails_the_step,
);

fn example() -> String {
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../workflows/matrix-build.yaml");
    std::fs::read_to_string(&path).unwrap_or_else(|err| panic!("{}: {err}", path.display()))
}

async fn the_example_matrix_expands_its_combinations(url: &str) {
    let node = Node::start(url).await;
    node.register(&example()).await;
    let run_id = node.start_run("matrix-build", json!({})).await;
    let document = node.finished(run_id).await;
    assert_eq!(document["status"], "succeeded", "{document}");
    assert_eq!(
        document["output"]["targets"],
        json!([
            "linux-node20",
            "linux-node22",
            "macos-node22",
            "windows-node22"
        ])
    );
    let builds = &document["steps"]["build"]["output"];
    assert_eq!(builds[0]["experimental"], true, "{builds}");
    assert_eq!(builds[2]["experimental"], false, "{builds}");
    assert_eq!(builds[3]["position"], 3, "{builds}");
    assert_eq!(document["steps"]["check"]["attempts"], 4);
    node.stop().await;
}

/// `build` over three items, at most `max_parallel` at once: item 1 fails
/// (a scripted retryable failure, one attempt), the others take `delay_ms`.
fn fan_out(fail_fast: bool, max_parallel: u32, delay_ms: u64) -> String {
    format!(
        r#"name: fan-out-{fail_fast}
steps:
  build:
    for_each: "{{{{ [0, 1, 2] }}}}"
    max_parallel: {max_parallel}
    fail_fast: {fail_fast}
    uses: http
    with:
      method: POST
      url: http://127.0.0.1:9/build
      json:
        delay_ms: "{{{{ 0 if item == 1 else {delay_ms} }}}}"
        fail_times: "{{{{ 9 if item == 1 else 0 }}}}"
"#
    )
}

async fn fail_fast_true_cancels_the_running_items(url: &str) {
    let node = Node::start(url).await;
    node.register(&fan_out(true, 3, 600_000)).await;
    let run_id = node.start_run("fan-out-true", json!({})).await;
    // Items 0 and 2 would take ten minutes: only the cancel ends the run in time.
    let state = node.wait_for(run_id, |state| state.is_finished()).await;
    assert_eq!(state.status, RunStatus::Failed);
    let build = &state.steps["build"];
    assert_eq!(build.status, StepStatus::Failed);
    let statuses: Vec<ExecStatus> = build.executions.iter().map(|e| e.status).collect();
    assert_eq!(
        statuses,
        vec![
            ExecStatus::Cancelled,
            ExecStatus::Failed,
            ExecStatus::Cancelled
        ]
    );
    assert!(
        build
            .reason
            .as_deref()
            .is_some_and(|r| r.starts_with("item 1: scripted failure")),
        "{build:?}"
    );
    let types = event_types(node.runtime.store().as_ref(), run_id).await;
    assert!(types.contains(&"for_each.stopped".to_owned()), "{types:?}");
    node.stop().await;
}

async fn fail_fast_false_runs_every_item_then_fails_the_step(url: &str) {
    let node = Node::start(url).await;
    node.register(&fan_out(false, 1, 0)).await;
    let run_id = node.start_run("fan-out-false", json!({})).await;
    let state = node.wait_for(run_id, |state| state.is_finished()).await;
    assert_eq!(state.status, RunStatus::Failed);
    let statuses: Vec<ExecStatus> = state.steps["build"]
        .executions
        .iter()
        .map(|e| e.status)
        .collect();
    assert_eq!(
        statuses,
        vec![
            ExecStatus::Succeeded,
            ExecStatus::Failed,
            ExecStatus::Succeeded
        ]
    );
    // One at a time: item 2 started after item 1 had failed.
    assert_eq!(calls(&format!("{run_id}/build/2")), 1);
    node.stop().await;
}
