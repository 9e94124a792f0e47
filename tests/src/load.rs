//! The mixed load of the storm, restart and soak scenarios: a workflow
//! with an `http` call to the target server, a durable `sleep`, a
//! `for_each` of http calls with `max_parallel`, an `agent` step served by
//! a real `imx agent` (whose command calls the target under the task's
//! idempotency key), an `approval` approved through the GraphQL API, and a
//! child workflow; started through GraphQL and the CLI, each start retried
//! with its idempotency key until a node acknowledges it.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use engine::store::RunQuery;
use engine::store::prelude::*;
use serde_json::json;
use tokio::sync::watch;
use uuid::Uuid;

use crate::graphql;

/// The agent queue of the mixed workflow.
pub const AGENT_QUEUE: &str = "e2e-warehouse";
/// The parent workflow's name.
pub const MIXED: &str = "e2e-mixed";
/// How long one start may keep failing (every node down, the database
/// away) before the scenario fails.
pub const START_MS_MAX: u64 = 120_000;
/// Pause between two tries of one start, or two approver passes.
pub const RETRY_MS: u64 = 100;

/// The parent workflow (child: [`CHILD_SOURCE`]).
pub const MIXED_SOURCE: &str = r#"
name: e2e-mixed
input: { type: object, required: [target, items] }
defaults:
  retry: { max_attempts: 20, backoff: fixed, initial_interval: 200ms }
steps:
  charge:
    uses: http
    with: { method: POST, url: "{{ input.target }}/charge", json: { run: "{{ run.id }}" } }
  nap:
    needs: [charge]
    uses: sleep
    with: { duration: 300ms }
  fan:
    needs: [charge]
    for_each: "{{ input.items }}"
    max_parallel: 2
    uses: http
    with: { method: POST, url: "{{ input.target }}/item/{{ item }}" }
  pack:
    needs: [nap]
    uses: agent
    with: { queue: e2e-warehouse, payload: { run: "{{ run.id }}" } }
  approve:
    needs: [pack, fan]
    uses: approval
    with: { role: ops, message: "ship {{ run.id }}?" }
  ship:
    needs: [approve]
    uses: workflow
    with: { name: e2e-child, input: { target: "{{ input.target }}" } }
output:
  tracking: "{{ steps.ship.output.tracking }}"
"#;

/// The child workflow `ship` starts.
pub const CHILD_SOURCE: &str = r#"
name: e2e-child
input: { type: object, required: [target] }
defaults:
  retry: { max_attempts: 20, backoff: fixed, initial_interval: 200ms }
steps:
  book:
    uses: http
    with: { method: POST, url: "{{ input.target }}/book" }
output:
  tracking: "{{ steps.book.output.body.tracking }}"
"#;

/// Registers both workflows through the first node that answers.
pub async fn register(bases: &Arc<Mutex<Vec<String>>>) {
    let client = graphql::client();
    for source in [CHILD_SOURCE, MIXED_SOURCE] {
        let answer = retry_on_nodes(&client, bases, graphql::REGISTER, json!({"source": source}))
            .await
            .unwrap_or_else(|| panic!("registering a workflow failed"));
        assert_eq!(
            answer.body["data"]["registerWorkflow"]["__typename"], "Workflow",
            "{answer:?}"
        );
    }
}

/// Runs `query` on the live nodes in turn until one answers without
/// error; `None` after [`START_MS_MAX`].
pub async fn retry_on_nodes(
    client: &reqwest::Client,
    bases: &Arc<Mutex<Vec<String>>>,
    query: &str,
    variables: serde_json::Value,
) -> Option<graphql::Answer> {
    let deadline = Instant::now() + Duration::from_millis(START_MS_MAX);
    let mut turn = 0usize;
    while Instant::now() < deadline {
        let base = {
            let bases = bases.lock().expect("bases lock");
            (!bases.is_empty()).then(|| bases[turn % bases.len()].clone())
        };
        turn += 1;
        if let Some(base) = base
            && let Ok(answer) = graphql::post(client, &base, query, variables.clone()).await
            && answer.body.get("errors").is_none()
        {
            return Some(answer);
        }
        tokio::time::sleep(Duration::from_millis(RETRY_MS)).await;
    }
    None
}

/// Starts `runs` runs of [`MIXED`] spread over `spread`: every fifth
/// through `imx run NAME` (the CLI records the start and exits 0), the
/// others through GraphQL, each retried under its idempotency key until
/// acknowledged. Returns the acknowledged run ids.
pub fn spawn_starters(
    url: &str,
    bases: Arc<Mutex<Vec<String>>>,
    target: &str,
    runs: usize,
    spread: Duration,
) -> tokio::task::JoinHandle<Vec<Uuid>> {
    let (url, target) = (url.to_owned(), target.to_owned());
    let batch = Uuid::now_v7().simple().to_string();
    tokio::spawn(async move {
        let client = graphql::client();
        let pause = spread / runs.max(1) as u32;
        let mut acknowledged = Vec::with_capacity(runs);
        for i in 0..runs {
            let key = format!("e2e-{batch}-{i}");
            let input = json!({"target": target, "items": [1, 2, 3]});
            let id = if i % 5 == 4 {
                start_by_cli(&url, &key, &input).await
            } else {
                let variables = json!({"workflow": MIXED, "input": input, "key": key});
                retry_on_nodes(&client, &bases, graphql::START, variables)
                    .await
                    .and_then(|answer| {
                        answer.body["data"]["startRun"]["run"]["id"]
                            .as_str()
                            .map(str::to_owned)
                    })
            };
            let id = id.unwrap_or_else(|| panic!("start {i} was never acknowledged"));
            acknowledged.push(Uuid::parse_str(&id).expect("a run id"));
            tokio::time::sleep(pause).await;
        }
        acknowledged
    })
}

async fn start_by_cli(url: &str, key: &str, input: &serde_json::Value) -> Option<String> {
    let deadline = Instant::now() + Duration::from_millis(START_MS_MAX);
    while Instant::now() < deadline {
        let args = [
            "--database-url",
            url,
            "run",
            MIXED,
            "--input",
            &input.to_string(),
        ]
        .into_iter()
        .chain(["--idempotency-key", key])
        .map(str::to_owned)
        .collect();
        let outcome = crate::binary::run_async(args).await;
        if outcome.code == 0 {
            return outcome.stdout.split_whitespace().last().map(str::to_owned);
        }
        tokio::time::sleep(Duration::from_millis(RETRY_MS)).await;
    }
    None
}

/// Approves the `approve` step of every waiting [`MIXED`] run through the
/// API of a live node until `stop`; the number of approvals that took.
pub fn spawn_approver(
    url: &str,
    bases: Arc<Mutex<Vec<String>>>,
    mut stop: watch::Receiver<bool>,
) -> tokio::task::JoinHandle<usize> {
    let url = url.to_owned();
    tokio::spawn(async move {
        let client = graphql::client();
        let store = engine::store::open(&url).await.expect("open the store");
        let mut approved = std::collections::HashSet::new();
        while !*stop.borrow() {
            let query = RunQuery {
                status: Some("waiting".into()),
                workflow: Some(MIXED.into()),
                after: None,
                limit: 100,
            };
            let waiting = store
                .list_runs(&query)
                .await
                .map(|page| page.items)
                .unwrap_or_default();
            for run in &waiting {
                if approved.contains(&run.row.run_id) {
                    continue;
                }
                let base = bases.lock().expect("bases lock").first().cloned();
                let Some(base) = base else { break };
                let variables = json!({"run": run.row.run_id.to_string(), "step": "approve"});
                if let Ok(answer) = graphql::post(&client, &base, graphql::APPROVE, variables).await
                    && answer.data("approveStep").is_some()
                {
                    approved.insert(run.row.run_id);
                }
            }
            let _ = tokio::time::timeout(Duration::from_millis(RETRY_MS), stop.changed()).await;
        }
        approved.len()
    })
}

/// `imx agent` on [`AGENT_QUEUE`]: its command POSTs to the target under
/// the task's idempotency key and returns the key.
pub fn spawn_agent(url: &str, target: &str) -> tokio::process::Child {
    let script = r#"cat >/dev/null; curl -fsS --noproxy '*' -o /dev/null -X POST -H "Idempotency-Key: $IMX_IDEMPOTENCY_KEY" "$E2E_TARGET/agent" && printf '{"key":"%s"}' "$IMX_IDEMPOTENCY_KEY""#;
    tokio::process::Command::new(crate::binary::imx())
        .args([
            "--database-url",
            url,
            "agent",
            "--queue",
            AGENT_QUEUE,
            "--workers",
            "4",
        ])
        .args(["--", "sh", "-c", script])
        .env("E2E_TARGET", target)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("imx agent starts")
}

/// Starts `runs` runs of the workflow file `file` through `imx run` (no
/// server: each start is recorded durably and acknowledged by exit 0), each
/// with the input `{"target": target}`; their ids, in order.
pub async fn start_runs_by_cli(url: &str, file: &str, target: &str, runs: usize) -> Vec<Uuid> {
    let input = json!({ "target": target }).to_string();
    let mut acknowledged = Vec::with_capacity(runs);
    for _ in 0..runs {
        let args = ["--database-url", url, "run", file, "--input", &input]
            .map(str::to_owned)
            .to_vec();
        let started = crate::binary::run_async(args).await;
        assert_eq!(started.code, 0, "{started:?}");
        let id = started.stdout.split_whitespace().last().expect("a run id");
        acknowledged.push(Uuid::parse_str(id).expect("a uuid"));
    }
    acknowledged
}
