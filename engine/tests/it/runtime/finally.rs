//! `finally:` steps through the runtime, on both stores, with
//! `workflows/finally-cleanup.yaml`: they run after a success, a failure and
//! a cancel, read how the main part ended, and a failing one leaves the
//! run's status as the main part reached it (listed in `finally_failed`).

use engine::core::state::{RunStatus, StepStatus};
use serde_json::{Value, json};

use super::{Node, both_backends, event_types};

both_backends!(finally:
    finally_steps_run_after_a_success_and_the_run_succeeds,
    finally_steps_run_after_a_failure_and_read_the_error,
    finally_steps_run_after_a_cancel_and_the_run_ends_cancelled,
    a_failing_finally_step_leaves_the_run_succeeded_and_is_listed,
);

fn example() -> String {
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../workflows/finally-cleanup.yaml");
    std::fs::read_to_string(&path).unwrap_or_else(|err| panic!("{}: {err}", path.display()))
}

/// A node with the example registered and a finished run of it with `input`.
async fn finished_run(url: &str, input: Value) -> (Node, engine::store::RunId, Value) {
    let node = Node::start(url).await;
    node.register(&example()).await;
    let run_id = node.start_run("finally-cleanup", input).await;
    let document = node.finished(run_id).await;
    (node, run_id, document)
}

async fn finally_steps_run_after_a_success_and_the_run_succeeds(url: &str) {
    let (node, run_id, document) = finished_run(url, json!({})).await;
    assert_eq!(document["status"], "succeeded", "{document}");
    let lock = format!("build-{run_id}");
    assert_eq!(document["output"], json!({"lock": lock}));
    let release = &document["steps"]["release"]["output"];
    assert_eq!(
        release,
        &json!({"released": lock, "status": "succeeded", "error": null})
    );
    assert_eq!(document["steps"]["release_failed"]["status"], "skipped");
    assert_eq!(document["steps"]["report"]["status"], "succeeded");
    assert!(document.get("finally_failed").is_none(), "{document}");
    let types = event_types(node.runtime.store().as_ref(), run_id).await;
    let finalizing = types.iter().position(|t| t == "run.finalizing");
    let release_scheduled = types.iter().rposition(|t| t == "step.scheduled");
    assert!(
        finalizing.is_some() && finalizing < release_scheduled,
        "run.finalizing comes before the finally steps: {types:?}"
    );
    assert_eq!(types.last().map(String::as_str), Some("run.succeeded"));
    node.stop().await;
}

async fn finally_steps_run_after_a_failure_and_read_the_error(url: &str) {
    let (node, _, document) = finished_run(url, json!({"fail": true})).await;
    assert_eq!(document["status"], "failed", "{document}");
    let release = &document["steps"]["release"]["output"];
    assert_eq!(release["status"], "failed", "{release}");
    let error = release["error"].as_str().unwrap_or_default();
    assert!(
        error.starts_with("step `test` failed: tests failed after 10ms"),
        "{release}"
    );
    let report = &document["steps"]["report"]["output"];
    assert_eq!(report["test_error"], "tests failed after 10ms", "{report}");
    node.stop().await;
}

async fn finally_steps_run_after_a_cancel_and_the_run_ends_cancelled(url: &str) {
    let node = Node::start(url).await;
    node.register(&example()).await;
    let run_id = node
        .start_run("finally-cleanup", json!({"work": "1h"}))
        .await;
    node.wait_for(run_id, |state| {
        state.step_status("build") == StepStatus::Running
    })
    .await;
    node.runtime
        .cancel_run(
            run_id,
            Some("ops".to_owned()),
            Some("wrong branch".to_owned()),
        )
        .await
        .expect("cancel");
    let state = node.wait_for(run_id, |state| state.is_finished()).await;
    assert_eq!(state.status, RunStatus::Cancelled);
    let document = state.document();
    assert_eq!(
        document["steps"]["build"]["status"], "cancelled",
        "{document}"
    );
    let release = &document["steps"]["release"]["output"];
    assert_eq!(
        (&release["status"], &release["error"]),
        (&json!("cancelled"), &json!("wrong branch (by ops)")),
        "{release}"
    );
    assert_eq!(document["steps"]["report"]["output"]["build"], "cancelled");
    node.stop().await;
}

async fn a_failing_finally_step_leaves_the_run_succeeded_and_is_listed(url: &str) {
    let (node, _, document) = finished_run(url, json!({"fail_cleanup": true})).await;
    assert_eq!(document["status"], "succeeded", "{document}");
    assert_eq!(document["finally_failed"], json!(["release_failed"]));
    let failed = &document["steps"]["release_failed"];
    assert_eq!(failed["status"], "failed");
    assert!(
        failed["error"]
            .as_str()
            .is_some_and(|error| error.starts_with("could not release build-")),
        "{failed}"
    );
    assert_eq!(document["steps"]["report"]["status"], "succeeded");
    node.stop().await;
}
