//! Scenario 3, a stalled node (fencing): node A runs slow http steps and
//! is SIGSTOPped while it holds their leases, past the lease; node B takes
//! the tasks over and sends the same requests under the same idempotency
//! keys; A is SIGCONTinued while B's requests are still out, A's results
//! come first and are refused (its leases are gone), B's are recorded, and
//! each step succeeds once.

use std::time::{Duration, Instant};

use e2e::checker::{self, Expect};
use e2e::cluster::{Node, NodeOptions};
use e2e::graphql;
use e2e::target::Target;
use nix::sys::signal::Signal;
use serde_json::json;
use testkit::postgres::{ClusterUse, ScratchDatabase};

/// Runs whose step A holds when it stalls.
const RUNS: usize = 4;
/// The lease of both nodes.
const LEASE_MS: u64 = 1_000;
/// How long the target holds each answer: A's answers arrive while it is
/// stopped, B's after A was continued.
const ANSWER_DELAY_MS: u64 = 4_000;
/// How long any wait of the scenario may take on a loaded machine.
const WAIT_MS_MAX: u64 = 120_000;

const SLOW: &str = r#"
name: e2e-slow
input: { type: object, required: [url] }
steps:
  call:
    uses: http
    timeout: 60s
    retry: { max_attempts: 5, backoff: fixed, initial_interval: 200ms }
    with: { method: POST, url: "{{ input.url }}" }
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_nodes_late_results_are_refused_and_each_step_succeeds_once() {
    let _alone = e2e::one_at_a_time().await;
    let Some(database) =
        ScratchDatabase::create("the stalled node", "imx_e2e_stall", ClusterUse::Shared).await
    else {
        return;
    };
    let began = Instant::now();
    let target = Target::start().await;
    let options = NodeOptions {
        lease_ms: LEASE_MS,
        ..NodeOptions::default()
    };
    let stalled = Node::start(&database.url, &options).await;
    let client = graphql::client();
    let registered = graphql::post(
        &client,
        &stalled.base,
        graphql::REGISTER,
        json!({"source": SLOW}),
    )
    .await
    .expect("register");
    assert_eq!(
        registered.body["data"]["registerWorkflow"]["__typename"],
        "Workflow"
    );
    let url = format!("{}/slow?delay_ms={ANSWER_DELAY_MS}", target.base);
    let mut acknowledged = Vec::new();
    for _ in 0..RUNS {
        let variables = json!({"workflow": "e2e-slow", "input": {"url": url}});
        let started = graphql::post(&client, &stalled.base, graphql::START, variables)
            .await
            .expect("start");
        let id = started.body["data"]["startRun"]["run"]["id"]
            .as_str()
            .expect("a run id");
        acknowledged.push(uuid::Uuid::parse_str(id).expect("a uuid"));
    }
    let within = Duration::from_millis(WAIT_MS_MAX);
    testkit::poll::until("A sends every request", within, || {
        target.hits().len() == RUNS
    })
    .await;
    stalled.signal(Signal::SIGSTOP);
    let stopped_at = Instant::now();
    let taker = Node::start(&database.url, &options).await;
    testkit::poll::until("B takes every task over", within, || {
        target.hits().len() == 2 * RUNS
    })
    .await;
    let stopped_for = stopped_at.elapsed();
    assert!(
        stopped_for.as_millis() > u128::from(LEASE_MS),
        "stalled past the lease"
    );
    stalled.signal(Signal::SIGCONT);
    let expect = Expect {
        acknowledged,
        within,
        all_succeed: true,
    };
    let report = checker::check(&database.url, &expect, &target).await;
    // Every key went out twice: A's attempt and B's takeover.
    let keys = target.keys();
    assert!(
        keys.len() == RUNS && keys.values().all(|n| *n == 2),
        "{keys:?}"
    );
    let refused = stalled
        .lines()
        .iter()
        .filter(|line| line.contains("lease was lost") || line.contains("lease lost"))
        .count();
    assert!(
        refused >= 1,
        "the stalled node's late results were not refused: {:#?}",
        stalled.lines()
    );
    taker.stop().await;
    stalled.stop().await;
    e2e::figures(
        "scenario 3 (a stalled node, fencing)",
        &format!(
            "{RUNS} runs, 1 SIGSTOP for {:.1} s (lease {LEASE_MS} ms), {refused} late results refused, {:.1} s in all; {report}",
            stopped_for.as_secs_f64(),
            began.elapsed().as_secs_f64()
        ),
    );
}
