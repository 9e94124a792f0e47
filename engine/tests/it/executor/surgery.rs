//! Run surgery through the real runtime, on SQLite and on the real
//! PostgreSQL, with `http` steps against a real HTTP server: a rewind runs
//! exactly the downstream steps again with new idempotency keys, a fork
//! onto a fixed version reuses the upstream outputs, a pause holds a
//! `for_each` between items, a skip unblocks the dependents.

use engine::core::Secrets;
use engine::core::state::{ExecStatus, RunState, RunStatus};
use engine::runtime::{ForkRequest, Operator};
use engine::store::prelude::*;
use serde_json::json;

use super::flows::Node;
use super::http::server::Server;
use crate::store::Database;

fn operator(reason: &str) -> Operator {
    Operator {
        by: "key:ops".to_owned(),
        reason: reason.to_owned(),
    }
}

/// `prepare` → `charge` → `notify`, and `side` on its own; `charge` calls
/// `CHARGE_PATH`.
fn chain(charge_path: &str) -> String {
    format!(
        r#"
name: surgery-chain
input: {{ type: object, required: [base_url], properties: {{ base_url: {{ type: string }} }} }}
steps:
  prepare: {{ uses: http, with: {{ method: GET, url: "{{{{ input.base_url }}}}/json" }} }}
  charge:
    needs: [prepare]
    uses: http
    with: {{ method: POST, url: "{{{{ input.base_url }}}}{charge_path}", json: {{ ok: "{{{{ steps.prepare.output.body.ok }}}}" }} }}
  notify: {{ needs: [charge], uses: http, with: {{ method: POST, url: "{{{{ input.base_url }}}}/pager/pages" }} }}
  side: {{ uses: http, with: {{ method: GET, url: "{{{{ input.base_url }}}}/text" }} }}
"#
    )
}

/// The idempotency keys the server saw on `path`, in arrival order.
fn keys(server: &Server, path: &str) -> Vec<String> {
    server
        .requests()
        .iter()
        .filter(|request| request.path == path)
        .map(|request| request.header("idempotency-key").unwrap_or("").to_owned())
        .collect()
}

async fn start(node: &Node, server: &Server, source: &str) -> engine::store::RunId {
    let registered = node
        .runtime
        .register_source(source)
        .await
        .expect("register");
    let request = engine::runtime::StartRequest {
        workflow: registered.name,
        input: json!({ "base_url": server.base }),
        ..Default::default()
    };
    node.runtime.start_run(request).await.expect("start").run_id
}

async fn rewind_of_a_succeeded_run_reruns_exactly_the_downstream_steps_with_new_keys(
    database: Database,
) {
    let server = Server::start().await;
    let (node, handle) = Node::start(database, Secrets::none()).await;
    let run_id = start(&node, &server, &chain("/pay/charge")).await;
    let first = node.wait_until(run_id, RunState::is_finished).await;
    assert_eq!(first["status"], "succeeded", "{first:#}");
    node.runtime
        .rewind_run(
            run_id,
            "charge",
            &operator("the charge was refunded by mistake"),
        )
        .await
        .expect("rewind a succeeded run");
    let document = node
        .wait_until(run_id, |state| {
            state.is_finished() && state.step("charge").is_some_and(|s| s.generation == 1)
        })
        .await;
    handle.shutdown().await;
    assert_eq!(document["status"], "succeeded", "{document:#}");
    assert_eq!(document["steps"]["charge"]["generation"], 1);
    assert_eq!(
        keys(&server, "/json"),
        [format!("{run_id}/prepare")],
        "not downstream: kept"
    );
    assert_eq!(
        keys(&server, "/text"),
        [format!("{run_id}/side")],
        "not downstream: kept"
    );
    assert_eq!(
        keys(&server, "/pay/charge"),
        [format!("{run_id}/charge"), format!("{run_id}/charge@1")],
        "the rerun is a new execution with a new key"
    );
    assert_eq!(
        keys(&server, "/pager/pages"),
        [format!("{run_id}/notify"), format!("{run_id}/notify@1")]
    );
    let events = node
        .runtime
        .store()
        .read_stream(run_id, 0, 1_000)
        .await
        .expect("log");
    let rewound = events
        .iter()
        .find(|event| event.event_type == "run.rewound")
        .expect("the rewind is in the log");
    assert_eq!(rewound.payload["by"], "key:ops");
    assert_eq!(
        rewound.payload["reason"],
        "the charge was refunded by mistake"
    );
    assert_eq!(rewound.payload["steps"], json!(["charge", "notify"]));
}

async fn fork_onto_a_fixed_version_finishes_with_the_upstream_outputs_reused(database: Database) {
    let server = Server::start().await;
    let (node, handle) = Node::start(database, Secrets::none()).await;
    // Version 1 charges at a path that answers 401: the run fails at charge.
    let source = start(&node, &server, &chain("/echo-error")).await;
    let failed = node.wait_until(source, RunState::is_finished).await;
    assert_eq!(failed["status"], "failed", "{failed:#}");
    let fixed = node
        .runtime
        .register_source(&chain("/pay/charge"))
        .await
        .expect("register the fix");
    let request = ForkRequest {
        run_id: source,
        step: "charge".to_owned(),
        version: Some(fixed.version.clone()),
        input: None,
        operator: operator("charge endpoint fixed"),
    };
    let fork = node.runtime.fork_run(request).await.expect("fork").run_id;
    let document = node.wait_until(fork, RunState::is_finished).await;
    handle.shutdown().await;
    assert_eq!(document["status"], "succeeded", "{document:#}");
    assert_eq!(document["version"], fixed.version);
    assert_eq!(document["forked_from"]["run_id"], source.to_string());
    assert_eq!(
        document["steps"]["prepare"]["adopted_from"],
        source.to_string()
    );
    assert_eq!(
        keys(&server, "/json"),
        [format!("{source}/prepare")],
        "prepare ran once"
    );
    assert_eq!(
        keys(&server, "/text"),
        [format!("{source}/side")],
        "side ran once"
    );
    assert_eq!(keys(&server, "/pay/charge"), [format!("{fork}/charge")]);
    let store = node.runtime.store();
    let forks = store.list_forks(source, 10).await.expect("forks");
    assert_eq!(
        forks.iter().map(|run| run.row.run_id).collect::<Vec<_>>(),
        [fork]
    );
    let row = store.get_run(fork).await.expect("read").expect("the fork");
    assert_eq!(row.row.forked_from, Some(source));
}

const SLOW_ITEMS: &str = r#"
name: surgery-items
steps:
  items:
    for_each: "{{ [1, 2, 3, 4] }}"
    max_parallel: 1
    uses: sleep
    with: { duration: 150ms }
  after: { needs: [items], uses: noop }
"#;

async fn pause_during_a_for_each_stops_new_items_and_resume_finishes_them(database: Database) {
    let server = Server::start().await;
    let (node, handle) = Node::start(database, Secrets::none()).await;
    let run_id = start(&node, &server, SLOW_ITEMS).await;
    let succeeded = |state: &RunState| {
        state
            .step("items")
            .map_or(0, |s| s.counts.get(ExecStatus::Succeeded))
    };
    node.wait_until(run_id, |state| succeeded(state) >= 1).await;
    let paused = node
        .runtime
        .pause_run(run_id, &operator("hold the rollout"))
        .await
        .expect("pause");
    assert_eq!(paused.status, RunStatus::Paused);
    // The item in flight finishes; none starts after the pause.
    let drained = |state: &RunState| {
        state
            .step("items")
            .is_some_and(|s| s.counts.in_flight() == 0)
    };
    node.wait_until(run_id, drained).await;
    let state = node.runtime.state(run_id).await.expect("state");
    assert_eq!(state.status, RunStatus::Paused);
    assert!(
        succeeded(&state) < 4,
        "items were left for after the resume"
    );
    let events = node
        .runtime
        .store()
        .read_stream(run_id, 0, 1_000)
        .await
        .expect("log");
    let pause_seq = events
        .iter()
        .find(|event| event.event_type == "run.paused")
        .map(|event| event.seq)
        .expect("run.paused");
    assert!(
        !events
            .iter()
            .any(|event| event.seq > pause_seq && event.event_type == "step.scheduled"),
        "no attempt was handed out while paused"
    );
    node.runtime
        .resume_run(run_id, &operator("rollout approved"))
        .await
        .expect("resume");
    let document = node.wait_until(run_id, RunState::is_finished).await;
    handle.shutdown().await;
    assert_eq!(document["status"], "succeeded", "{document:#}");
    assert_eq!(
        document["steps"]["items"]["output"]
            .as_array()
            .map(Vec::len),
        Some(4)
    );
}

async fn skip_of_a_failed_step_unblocks_its_dependents(database: Database) {
    let server = Server::start().await;
    let (node, handle) = Node::start(database, Secrets::none()).await;
    let run_id = start(&node, &server, &chain("/echo-error")).await;
    let failed = node.wait_until(run_id, RunState::is_finished).await;
    assert_eq!(failed["status"], "failed", "{failed:#}");
    assert_eq!(failed["steps"]["notify"]["status"], "skipped");
    node.runtime
        .skip_step(
            run_id,
            "charge",
            json!({"body": {"charged": "by hand"}}),
            &operator("charged by phone"),
        )
        .await
        .expect("skip the failed step");
    let document = node.wait_until(run_id, RunState::is_finished).await;
    handle.shutdown().await;
    assert_eq!(document["status"], "succeeded", "{document:#}");
    assert_eq!(document["steps"]["charge"]["status"], "succeeded");
    assert_eq!(
        document["steps"]["charge"]["skipped_by"],
        "by key:ops: charged by phone"
    );
    // notify never ran before: its first execution keeps the plain key.
    assert_eq!(keys(&server, "/pager/pages"), [format!("{run_id}/notify")]);
}

/// Two nodes pause (then resume) one run at the same moment, round after
/// round: the expected-seq check lets exactly one of each pair through and
/// the other is refused by the state it finds; the log alternates.
async fn concurrent_surgery_on_one_run_records_each_operation_once(database: Database) {
    const ROUNDS: usize = 10;
    let url = database.url.clone();
    let (node, handle) = Node::start(database, Secrets::none()).await;
    let other = engine::store::open_with(&url, engine::store::StoreConfig::default())
        .await
        .expect("a second node's store");
    let other = engine::runtime::Runtime::new(
        std::sync::Arc::new(other),
        Vec::new(),
        engine::runtime::Config::default(),
    );
    let source = "name: surgery-gate\nsteps:\n  ask: { uses: approval }\n  after: { needs: [ask], uses: noop }\n";
    let registered = node
        .runtime
        .register_source(source)
        .await
        .expect("register");
    let request = engine::runtime::StartRequest {
        workflow: registered.name,
        ..Default::default()
    };
    let run_id = node.runtime.start_run(request).await.expect("start").run_id;
    let (a, b) = (operator("a"), operator("b"));
    for _ in 0..ROUNDS {
        let (first, second) = tokio::join!(
            node.runtime.pause_run(run_id, &a),
            other.pause_run(run_id, &b)
        );
        assert_one_went_through(&first, &second);
        let (first, second) = tokio::join!(
            node.runtime.resume_run(run_id, &a),
            other.resume_run(run_id, &b)
        );
        assert_one_went_through(&first, &second);
    }
    let events = node
        .runtime
        .store()
        .read_stream(run_id, 0, 1_000)
        .await
        .expect("log");
    handle.shutdown().await;
    let operations: Vec<&str> = events
        .iter()
        .map(|event| event.event_type.as_str())
        .filter(|kind| matches!(*kind, "run.paused" | "run.resumed"))
        .collect();
    let expected: Vec<&str> = ["run.paused", "run.resumed"].repeat(ROUNDS);
    assert_eq!(operations, expected);
}

fn assert_one_went_through(
    a: &Result<RunState, engine::runtime::Error>,
    b: &Result<RunState, engine::runtime::Error>,
) {
    let refused = |result: &Result<RunState, engine::runtime::Error>| {
        matches!(result, Err(engine::runtime::Error::SurgeryRefused { .. }))
    };
    assert!(
        (a.is_ok() && refused(b)) || (refused(a) && b.is_ok()),
        "exactly one of two concurrent operations is recorded: {a:?} / {b:?}"
    );
}

super::on_both_backends!(
    rewind_of_a_succeeded_run_reruns_exactly_the_downstream_steps_with_new_keys,
    fork_onto_a_fixed_version_finishes_with_the_upstream_outputs_reused,
    pause_during_a_for_each_stops_new_items_and_resume_finishes_them,
    skip_of_a_failed_step_unblocks_its_dependents,
    concurrent_surgery_on_one_run_records_each_operation_once,
);
