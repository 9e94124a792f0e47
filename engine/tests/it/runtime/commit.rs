//! Group commit: appends that queue while a commit is in flight share the
//! next transaction; inside it a conflict fails only its own request (which
//! reloads and decides again), two starts with one idempotency key queued
//! together return one run, and runs end exactly as they do one at a time.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use engine::executor::Executor;
use engine::runtime::{CommitCounts, Config, Runtime, StartRequest, Started};
use engine::store::RunId;
use serde_json::{Value, json};
use tokio::task::JoinHandle;

use super::gated::Gated;
use super::{Node, Scripted, both_backends, event_types, test_config};

both_backends!(commit:
    queued_appends_share_one_commit,
    conflict_in_a_batch_fails_only_that_request,
    idempotent_start_in_a_batch_returns_the_existing_run,
    concurrent_runs_end_as_serial_runs_do,
);

/// How long a test waits for appends to queue before failing.
const QUEUE_WAIT_MS_MAX: u64 = 10_000;

const NOOPS: &str = r#"
name: noops
input: { type: object }
steps:
  a: { uses: noop, with: { n: "{{ input.n }}" } }
  b: { needs: [a], uses: noop }
  c: { needs: [b], uses: noop }
"#;

/// A runtime on a gated store; not started: only the test appends.
async fn gated_runtime(url: &str) -> Arc<Runtime<Gated>> {
    let executors: Vec<Arc<dyn Executor>> = vec![Arc::new(Scripted)];
    let config = Config {
        resume_on_start: false,
        ..test_config()
    };
    let runtime = Runtime::new(Arc::new(Gated::open(url).await), executors, config);
    runtime.register_source(NOOPS).await.expect("register");
    runtime
}

fn start(runtime: &Arc<Runtime<Gated>>, n: u64, key: Option<&str>) -> JoinHandle<Started> {
    let runtime = Arc::clone(runtime);
    let request = StartRequest {
        workflow: "noops".to_owned(),
        input: json!({ "n": n }),
        idempotency_key: key.map(str::to_owned),
        ..StartRequest::default()
    };
    tokio::spawn(async move { runtime.start_run(request).await.expect("start") })
}

/// Polls (with a deadline) until `reached` holds.
async fn poll_until(what: &str, reached: impl FnMut() -> bool) {
    testkit::poll::until(what, Duration::from_millis(QUEUE_WAIT_MS_MAX), reached).await;
}

/// Shuts the gate and starts one run whose commit then waits in the store:
/// whatever is appended next queues behind it.
async fn block_committer(runtime: &Arc<Runtime<Gated>>) -> JoinHandle<Started> {
    let store = Arc::clone(runtime.store());
    let before = store.batches().len();
    store.shut();
    let blocker = start(runtime, 0, None);
    poll_until("the blocking commit", || store.batches().len() > before).await;
    blocker
}

/// Waits until `count` appends queue behind the blocked commit, opens the gate.
async fn release_when_queued(runtime: &Arc<Runtime<Gated>>, count: u64) {
    poll_until("the appends queueing", || {
        runtime.commit_counts().queued == count
    })
    .await;
    runtime.store().release();
}

async fn joined<T>(handles: Vec<JoinHandle<T>>) -> Vec<T> {
    let mut results = Vec::new();
    for handle in handles {
        results.push(handle.await.expect("join"));
    }
    results
}

async fn queued_appends_share_one_commit(url: &str) {
    let runtime = gated_runtime(url).await;
    let blocker = block_committer(&runtime).await;
    let handles: Vec<_> = (1..=20).map(|n| start(&runtime, n, None)).collect();
    release_when_queued(&runtime, 20).await;
    let started = joined(handles).await;
    blocker.await.expect("blocker");
    assert_eq!(runtime.store().batches(), vec![1, 20]);
    let counts = runtime.commit_counts();
    let expected = CommitCounts {
        transactions: 2,
        appends: 21,
        queued: 0,
    };
    assert_eq!(counts, expected);
    // Each run got its own events and ended (pure steps are decided inline).
    for (n, started) in (1..=20).zip(&started) {
        let state = runtime.state(started.run_id).await.expect("state");
        let document = state.document();
        assert_eq!(document["status"], "succeeded", "{document}");
        assert_eq!(document["steps"]["a"]["output"], json!({ "n": n }));
    }
}

const TWO_APPROVALS: &str = r#"
name: two-approvals
steps:
  p: { uses: approval, with: { role: ops, message: "p?" } }
  q: { uses: approval, with: { role: ops, message: "q?" } }
  done: { needs: [p, q], uses: noop }
"#;

async fn conflict_in_a_batch_fails_only_that_request(url: &str) {
    let runtime = gated_runtime(url).await;
    runtime
        .register_source(TWO_APPROVALS)
        .await
        .expect("register");
    let request = StartRequest {
        workflow: "two-approvals".to_owned(),
        input: json!({}),
        ..StartRequest::default()
    };
    let run_id = runtime.start_run(request).await.expect("start").run_id;
    // Another node on the same database, with its own committer.
    let other = Node::start(url).await;

    let blocker = block_committer(&runtime).await;
    let approving = {
        let runtime = Arc::clone(&runtime);
        tokio::spawn(async move { runtime.approve(run_id, "p", "ada", None).await })
    };
    let mut handles: Vec<_> = (1..=4).map(|n| start(&runtime, n, None)).collect();
    poll_until("the appends queueing", || {
        runtime.commit_counts().queued == 5
    })
    .await;
    // The other node approves `q` first: the queued approval of `p` now
    // expects a seq the run has passed.
    other
        .runtime
        .approve(run_id, "q", "bob", None)
        .await
        .expect("approve q");
    runtime.store().release();
    let state = approving
        .await
        .expect("join")
        .expect("approve p after reloading");
    handles.push(blocker);
    for started in joined(handles).await {
        let document = runtime
            .state(started.run_id)
            .await
            .expect("state")
            .document();
        assert_eq!(document["status"], "succeeded", "{document}");
    }
    assert_eq!(state.document()["status"], "succeeded");
    // start, blocker, the batch with the conflict, `p` again on its own.
    assert_eq!(runtime.store().batches(), vec![1, 1, 5, 1]);
    let types = event_types(runtime.store().as_ref(), run_id).await;
    let granted: Vec<_> = types
        .iter()
        .filter(|event_type| *event_type == "approval.granted")
        .collect();
    assert_eq!(granted.len(), 2, "{types:?}");
    other.stop().await;
}

async fn idempotent_start_in_a_batch_returns_the_existing_run(url: &str) {
    let runtime = gated_runtime(url).await;
    let blocker = block_committer(&runtime).await;
    let handles = vec![
        start(&runtime, 1, Some("order-7")),
        start(&runtime, 2, None),
        start(&runtime, 3, Some("order-7")),
    ];
    release_when_queued(&runtime, 3).await;
    let started = joined(handles).await;
    blocker.await.expect("blocker");
    // All three share one transaction; the store settles the second start
    // with the key as taken, so it returns the first one's run.
    assert_eq!(runtime.store().batches(), vec![1, 3]);
    assert_eq!(started[0].run_id, started[2].run_id, "{started:?}");
    assert_ne!(started[0].run_id, started[1].run_id);
    assert_eq!(
        started.iter().filter(|started| started.existing).count(),
        1,
        "{started:?}"
    );
    let keyed = started[0].run_id;
    let types = event_types(runtime.store().as_ref(), keyed).await;
    assert_eq!(types.iter().filter(|t| *t == "run.started").count(), 1);
}

/// http steps (the scripted executor) between noops: several appends per run.
const MIXED: &str = r#"
name: mixed
input: { type: object }
steps:
  a: { uses: noop, with: { n: "{{ input.n }}" } }
  b: { needs: [a], uses: http, with: { method: GET, url: "http://test.invalid/b", json: { echo: "{{ steps.a.output.n }}" } } }
  c: { needs: [b], uses: noop, with: { from_b: "{{ steps.b.output.echo }}" } }
  d: { needs: [c], uses: http, with: { method: GET, url: "http://test.invalid/d", json: { echo: "{{ steps.c.output.from_b }}" } } }
output:
  last: "{{ steps.d.output.echo }}"
"#;

async fn concurrent_runs_end_as_serial_runs_do(url: &str) {
    let node = Node::start(url).await;
    node.register(MIXED).await;
    let runs = 12;
    let mut serial = Vec::new();
    for n in 0..runs {
        let run_id = node.start_run("mixed", json!({ "n": n })).await;
        serial.push(outcome(&node, run_id).await);
    }
    let started = node.runtime.commit_counts();
    let run_ids = concurrently((0..runs).map(|n| node.start_run("mixed", json!({ "n": n })))).await;
    let concurrent = concurrently(run_ids.iter().map(|run_id| outcome(&node, *run_id))).await;
    assert_eq!(serial, concurrent);
    let counts = node.runtime.commit_counts();
    assert!(counts.appends - started.appends >= 3 * runs, "{counts:?}");
    node.stop().await;
}

async fn concurrently<T>(futures: impl Iterator<Item = impl Future<Output = T>>) -> Vec<T> {
    futures_util::future::join_all(futures).await
}

/// The run document and event types, the run id written as `RUN`.
async fn outcome(node: &Node, run_id: RunId) -> (Value, Vec<String>) {
    let document = node.finished(run_id).await;
    let text = document.to_string().replace(&run_id.to_string(), "RUN");
    let document: Value = serde_json::from_str(&text).expect("json");
    (
        document,
        event_types(node.runtime.store().as_ref(), run_id).await,
    )
}
