//! Scenario 7, bad input at the boundaries under load: while two nodes on
//! PostgreSQL carry the mixed load, clients send idempotency keys over the
//! limit or holding NUL, input strings holding NUL, request bodies just
//! over the GraphQL and webhook limits, a CLI input just over its limit;
//! a service answers a NUL string; a step's rendered input exceeds the
//! event payload limit. Each is refused with its code (never a 5xx or
//! INTERNAL) or carried to an end state: nothing is wedged, the load loses
//! nothing.

use std::time::{Duration, Instant};

use e2e::checker::{self, Expect};
use e2e::cluster::{Cluster, NodeOptions};
use e2e::graphql::{self, Answer};
use e2e::target::Target;
use e2e::{load, sized};
use serde_json::{Value, json};
use testkit::postgres::{ClusterUse, ScratchDatabase};
use tokio::sync::watch;
use uuid::Uuid;

const NODES: usize = 2;
const WAIT_MS_MAX: u64 = 300_000;

/// Workflows the bad inputs go to.
const EDGES: &str = r#"
name: e2e-edges
input: { type: object }
triggers:
  - webhook: { secret_env: E2E_HOOK }
steps:
  echo:
    uses: noop
    with: { note: "{{ input.note }}" }
"#;
const NUL_ANSWER: &str = r#"
name: e2e-nul-answer
input: { type: object, required: [target] }
steps:
  call:
    uses: http
    retry: { max_attempts: 2, backoff: fixed, initial_interval: 100ms }
    with: { method: GET, url: "{{ input.target }}/nul" }
"#;
/// Six copies of a 200 KB output: 1.2 MB of rendered input, over the
/// 1 MiB event payload limit (each leaf is under the template limit).
const BIG_INPUT: &str = r#"
name: e2e-big-input
input: { type: object, required: [target] }
steps:
  fetch:
    uses: http
    with: { method: GET, url: "{{ input.target }}/big?bytes=200000" }
  copy:
    needs: [fetch]
    uses: noop
    with:
      a: "{{ steps.fetch.output.body.text }}"
      b: "{{ steps.fetch.output.body.text }}"
      c: "{{ steps.fetch.output.body.text }}"
      d: "{{ steps.fetch.output.body.text }}"
      e: "{{ steps.fetch.output.body.text }}"
      f: "{{ steps.fetch.output.body.text }}"
"#;

/// One boundary case and what came back.
#[derive(Debug)]
struct Case {
    name: &'static str,
    outcome: String,
}

fn refused_with_code(name: &str, answer: &Answer) -> String {
    let codes = answer.error_codes();
    assert!(
        answer.status < 500,
        "{name}: HTTP {}: {}",
        answer.status,
        answer.body
    );
    assert!(
        !codes.is_empty() && !codes.iter().any(|code| code == "INTERNAL"),
        "{name}: refused with a code, not INTERNAL: {}",
        answer.body
    );
    let imx = answer.body["errors"][0]["extensions"]["imxCode"]
        .as_str()
        .unwrap_or("-");
    format!("HTTP {} {} {imx}", answer.status, codes.join(","))
}

async fn start(base: &str, workflow: &str, input: Value, key: Option<&str>) -> Answer {
    let variables = json!({"workflow": workflow, "input": input, "key": key});
    graphql::post(&graphql::client(), base, graphql::START, variables)
        .await
        .expect("the node answers")
}

fn run_id(answer: &Answer) -> Option<Uuid> {
    answer.body["data"]["startRun"]["run"]["id"]
        .as_str()
        .and_then(|id| Uuid::parse_str(id).ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_at_every_boundary_is_refused_with_its_code_or_ends_its_run() {
    let _alone = e2e::one_at_a_time().await;
    let Some(db) = ScratchDatabase::create("bad input", "imx_e2e_input", ClusterUse::Shared).await
    else {
        return;
    };
    let began = Instant::now();
    let target = Target::start().await;
    let options = NodeOptions {
        env: vec![("IMX_SECRET_E2E_HOOK".into(), "hook-secret".into())],
        ..NodeOptions::default()
    };
    let cluster = Cluster::start(&db.url, NODES, options).await;
    load::register(&cluster.bases).await;
    let base = cluster.node(0).expect("node 0").base.clone();
    let client = graphql::client();
    for source in [EDGES, NUL_ANSWER, BIG_INPUT] {
        let answer = graphql::post(&client, &base, graphql::REGISTER, json!({"source": source}))
            .await
            .expect("register");
        assert_eq!(
            answer.body["data"]["registerWorkflow"]["__typename"], "Workflow",
            "{answer:?}"
        );
    }
    let mut agent = load::spawn_agent(&db.url, &target.base);
    let (stop, stopped) = watch::channel(false);
    let approver = load::spawn_approver(&db.url, cluster.bases.clone(), stopped);
    let runs = sized(20, 100);
    let starters = load::spawn_starters(
        &db.url,
        cluster.bases.clone(),
        &target.base,
        runs,
        Duration::from_secs(10),
    );
    let mut cases = Vec::new();
    let mut extra_runs = Vec::new();

    let long_key = "k".repeat(engine::runtime::IDEMPOTENCY_KEY_BYTES_MAX + 1);
    let answer = start(&base, "e2e-edges", json!({"note": "x"}), Some(&long_key)).await;
    cases.push(Case {
        name: "idempotency key 1 byte over",
        outcome: refused_with_code("long key", &answer),
    });
    let answer = start(&base, "e2e-edges", json!({"note": "x"}), Some("a\u{0}b")).await;
    cases.push(Case {
        name: "NUL in an idempotency key",
        outcome: refused_with_code("NUL key", &answer),
    });

    let answer = start(&base, "e2e-edges", json!({"note": "a\u{0}b"}), None).await;
    let outcome = match run_id(&answer) {
        Some(id) => {
            extra_runs.push(id);
            "accepted; the run must end".to_owned()
        }
        None => refused_with_code("NUL input", &answer),
    };
    cases.push(Case {
        name: "NUL in an input string",
        outcome,
    });

    let over = "y".repeat(imx_gateway_body_bytes_max() + 1);
    let response = client
        .post(format!("{base}/graphql"))
        .header("content-type", "application/json")
        .body(json!({"query": "{ workflows { name } }", "variables": {"pad": over}}).to_string())
        .send()
        .await
        .expect("the node answers");
    let status = response.status().as_u16();
    let body = response.text().await.unwrap_or_default();
    assert!(
        (400..500).contains(&status),
        "GraphQL body over the limit: HTTP {status}: {body}"
    );
    cases.push(Case {
        name: "GraphQL body just over BODY_BYTES_MAX",
        outcome: format!("HTTP {status}"),
    });

    let over = "z".repeat(e2e_webhook_body_bytes_max() + 1);
    let response = client
        .post(format!("{base}/hooks/e2e-edges"))
        .header("content-type", "application/json")
        .body(over)
        .send()
        .await
        .expect("the node answers");
    let status = response.status().as_u16();
    let body = response.text().await.unwrap_or_default();
    assert_eq!(status, 413, "webhook body over the limit: {body}");
    cases.push(Case {
        name: "webhook body just over WEBHOOK_BODY_BYTES_MAX",
        outcome: format!("HTTP {status} {body}"),
    });

    let folder = tempfile::tempdir().expect("temp dir");
    let input_file = folder.path().join("input.json");
    let pad = "p".repeat(engine::store::PAYLOAD_BYTES_MAX);
    std::fs::write(&input_file, json!({"note": pad}).to_string()).expect("write the input");
    let ran = e2e::binary::run_async(
        ["--database-url", &db.url, "run", "e2e-edges", "--input"]
            .into_iter()
            .map(str::to_owned)
            .chain([format!("@{}", input_file.display())])
            .collect(),
    )
    .await;
    // A usage error (exit 2) that names the limit; nothing is started.
    assert!(
        ran.code == 2 && ran.stderr.contains("limit"),
        "CLI input over the limit: {ran:?}"
    );
    cases.push(Case {
        name: "CLI --input just over INPUT_BYTES_MAX",
        outcome: format!("exit {}: {}", ran.code, ran.stderr.trim()),
    });

    let answer = start(
        &base,
        "e2e-nul-answer",
        json!({"target": target.base}),
        None,
    )
    .await;
    extra_runs.push(run_id(&answer).expect("a NUL answer run starts"));
    let answer = start(&base, "e2e-big-input", json!({"target": target.base}), None).await;
    let big = run_id(&answer).expect("a big input run starts");
    extra_runs.push(big);

    let mut acknowledged = starters.await.expect("the starters");
    let load_runs = acknowledged.clone();
    acknowledged.extend(&extra_runs);
    let expect = Expect {
        acknowledged,
        within: Duration::from_millis(WAIT_MS_MAX),
        all_succeed: false,
    };
    let report = checker::check(&db.url, &expect, &target).await;
    let store = engine::store::open(&db.url).await.expect("open the store");
    use engine::store::prelude::*;
    for id in &load_runs {
        let run = store.get_run(*id).await.expect("read").expect("the run");
        assert_eq!(run.row.status, "succeeded", "the load beside the bad input");
    }
    for id in &extra_runs {
        let run = store.get_run(*id).await.expect("read").expect("the run");
        let steps = store.get_steps(*id).await.expect("steps");
        let detail: Vec<_> = steps
            .iter()
            .map(|s| (s.step_id.clone(), s.status.clone(), s.error.clone()))
            .collect();
        cases.push(Case {
            name: "a run at a boundary",
            outcome: format!("{} {}: {detail:?}", run.row.workflow, run.row.status),
        });
    }
    let big_run = store.get_run(big).await.expect("read").expect("the run");
    let big_steps = store.get_steps(big).await.expect("steps");
    let copy = big_steps
        .iter()
        .find(|s| s.step_id == "copy")
        .expect("the copy step");
    assert_eq!(
        (big_run.row.status.as_str(), copy.status.as_str()),
        ("failed", "failed"),
        "a rendered input over the payload limit fails its step: {copy:?}"
    );
    let _ = stop.send(true);
    let _ = approver.await;
    let _ = agent.kill().await;
    cluster.shutdown().await;
    let table: Vec<String> = cases
        .iter()
        .map(|case| format!("{}: {}", case.name, case.outcome))
        .collect();
    e2e::figures(
        "scenario 7 (bad input at the boundaries under load)",
        &format!(
            "{runs} load runs, {} boundary cases [{}], {:.1} s in all; {report}",
            cases.len(),
            table.join("; "),
            began.elapsed().as_secs_f64()
        ),
    );
}

/// The API's request body limit (`gateway/src/api/config.rs`, BODY_BYTES_MAX).
fn imx_gateway_body_bytes_max() -> usize {
    256 * 1024
}

/// The webhook body limit (`gateway/src/api/webhook.rs`, WEBHOOK_BODY_BYTES_MAX).
fn e2e_webhook_body_bytes_max() -> usize {
    512 * 1024
}
