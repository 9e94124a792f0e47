//! Workers: a long attempt keeps its lease against a second node, the
//! attempt deadline stops the executor, and shutdown lets a running attempt
//! finish and record its result, a cancel from another node stops an
//! attempt, the run timeout ends a run, and a task whose holders keep
//! crashing is dead-lettered as a failed attempt.

use std::sync::Arc;
use std::time::Duration;

use engine::core::state::RunStatus;
use engine::runtime::{Runtime, StartRequest, TASK_CLAIMS_MAX};
use engine::store::prelude::*;
use serde_json::json;

use super::{Node, both_backends, calls, test_config};

both_backends!(work:
    long_attempt_keeps_its_lease,
    deadline_stops_the_executor,
    shutdown_lets_a_running_attempt_finish,
    cancel_from_another_node_stops_the_attempt,
    run_timeout_fails_the_run,
    abandoned_task_fails_its_attempt,
);

async fn long_attempt_keeps_its_lease(url: &str) {
    let config = engine::runtime::Config {
        lease_ms: 300,
        ..test_config()
    };
    let first = Node::start_with(url, config.clone()).await;
    let second = Node::start_with(url, config).await;
    first
        .register(
            r#"
name: slow
steps:
  call: { uses: http, with: { method: GET, url: "http://test.invalid/x", json: { delay_ms: 1500 } } }
"#,
        )
        .await;
    let run_id = first.start_run("slow", json!({})).await;
    let document = first.finished(run_id).await;
    assert_eq!(document["status"], "succeeded", "{document}");
    // Five lease periods passed; renewals kept the other node off it.
    assert_eq!(calls(&format!("{run_id}/call")), 1);
    second.stop().await;
    first.stop().await;
}

async fn deadline_stops_the_executor(url: &str) {
    let node = Node::start(url).await;
    node.register(
        r#"
name: stuck
steps:
  call:
    uses: http
    with: { method: GET, url: "http://test.invalid/x", json: { delay_ms: 600000 } }
    timeout: 200ms
    retry: { max_attempts: 1 }
"#,
    )
    .await;
    let run_id = node.start_run("stuck", json!({})).await;
    let document = node.finished(run_id).await;
    assert_eq!(document["status"], "failed", "{document}");
    let error = document["steps"]["call"]["error"]
        .as_str()
        .unwrap_or_default();
    assert!(
        error.contains("deadline") || error.contains("timed out"),
        "{error}"
    );
    node.stop().await;
}

async fn shutdown_lets_a_running_attempt_finish(url: &str) {
    let node = Node::start(url).await;
    node.register(
        r#"
name: finishing
steps:
  call: { uses: http, with: { method: GET, url: "http://test.invalid/x", json: { delay_ms: 300 } } }
"#,
    )
    .await;
    let run_id = node.start_run("finishing", json!({})).await;
    let key = format!("{run_id}/call");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while calls(&key) == 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the attempt never started"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let runtime = std::sync::Arc::clone(&node.runtime);
    node.stop().await;
    let state = runtime.state(run_id).await.expect("state");
    assert_eq!(
        state.status,
        RunStatus::Succeeded,
        "recorded before the node stopped"
    );
}

/// A run cancelled through another node stops the attempt running here
/// (noticed at the next lease renewal) instead of letting it run to its end.
async fn cancel_from_another_node_stops_the_attempt(url: &str) {
    let config = engine::runtime::Config {
        lease_ms: 300,
        ..test_config()
    };
    let worker = Node::start_with(url, config).await;
    worker
        .register(
            r#"
name: long
steps:
  call: { uses: http, with: { method: GET, url: "http://test.invalid/x", json: { delay_ms: 600000 } } }
"#,
        )
        .await;
    let run_id = worker.start_run("long", json!({})).await;
    let key = format!("{run_id}/call");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while calls(&key) == 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the attempt never started"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // Another process's runtime: no workers, only the API.
    let store = engine::store::open(url).await.expect("open");
    let api = engine::runtime::Runtime::new(std::sync::Arc::new(store), Vec::new(), test_config());
    api.cancel_run(run_id, None, Some("stop".to_owned()))
        .await
        .expect("cancel");
    let document = worker.finished(run_id).await;
    assert_eq!(document["status"], "cancelled");
    // The worker lets go within a renewal period: shutdown does not wait
    // for the 10-minute attempt (its grace is 2 s).
    let stopped = tokio::time::timeout(Duration::from_secs(5), worker.stop()).await;
    assert!(stopped.is_ok(), "the cancelled attempt was still running");
}

async fn run_timeout_fails_the_run(url: &str) {
    let node = Node::start(url).await;
    node.register(
        r#"
name: late
timeout: 300ms
steps:
  nap: { uses: sleep, with: { duration: 1h } }
"#,
    )
    .await;
    let document = node.finished(node.start_run("late", json!({})).await).await;
    assert_eq!(document["status"], "failed", "{document}");
    assert_eq!(document["steps"]["nap"]["status"], "cancelled");
    assert!(
        document["error"]
            .as_str()
            .unwrap_or_default()
            .contains("timed out"),
        "{document}"
    );
    node.stop().await;
}

/// A task handed out `TASK_CLAIMS_MAX` times without a result (its holders
/// "crashed": claimed with a 1 ms lease and never reported) is not run a
/// sixth time: its attempt fails as abandoned and the retry runs normally.
async fn abandoned_task_fails_its_attempt(url: &str) {
    let store = Arc::new(engine::store::open(url).await.expect("open the store"));
    let idle = Runtime::new(Arc::clone(&store), Vec::new(), test_config());
    idle.register_source(
        r#"
name: poison
steps:
  call:
    uses: http
    with: { method: GET, url: "http://test.invalid/x", json: { echo: fine } }
    retry: { max_attempts: 2, initial_interval: 10ms }
"#,
    )
    .await
    .expect("register");
    let request = StartRequest {
        workflow: "poison".to_owned(),
        ..StartRequest::default()
    };
    let run_id = idle.start_run(request).await.expect("start").run_id;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let mut claims = 0;
    while claims < TASK_CLAIMS_MAX {
        assert!(
            tokio::time::Instant::now() < deadline,
            "claimed {claims} times"
        );
        let claimed = store
            .claim_tasks("crashing-node", "step:http", 1, 1)
            .await
            .expect("claim");
        claims += u32::try_from(claimed.len()).expect("a few tasks");
    }
    let node = Node::start(url).await;
    let document = node.finished(run_id).await;
    node.stop().await;
    assert_eq!(document["status"], "succeeded", "{document}");
    assert_eq!(document["steps"]["call"]["attempts"], 2, "{document}");
    assert_eq!(document["steps"]["call"]["output"]["attempt"], 2);
    let events = store.read_stream(run_id, 0, 100).await.expect("read");
    let failed: Vec<_> = events
        .iter()
        .filter(|event| event.event_type == "step.failed")
        .collect();
    assert_eq!(failed.len(), 1, "{events:?}");
    assert_eq!(failed[0].payload["attempt"], 1);
    let error = failed[0].payload["error"].as_str().unwrap_or_default();
    assert!(
        error.starts_with("abandoned: this attempt was handed to a worker 5 times"),
        "{error}"
    );
    // Attempt 1 never reached the executor again; attempt 2 ran once.
    assert_eq!(calls(&format!("{run_id}/call")), 1);
}
