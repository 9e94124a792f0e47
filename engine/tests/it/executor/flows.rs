//! Example workflows from `workflows/` run by the real runtime, on SQLite and
//! on the real PostgreSQL, with the real executors against a real HTTP server,
//! real programs and (the `kafka` module's flows) a real Kafka broker.

use std::sync::Arc;
use std::time::Duration;

use engine::core::Secrets;
use engine::core::state::RunState;
use engine::executor::{ExecConfig, Executor, standard_executors};
use engine::runtime::{Config, Runtime, StartRequest};
use engine::store::prelude::*;
use engine::store::{RunId, Store, StoreConfig};
use serde_json::{Value, json};

use super::http::server::Server;
use crate::kafka::flows::{
    nightly_data_pipeline_loads_the_partitions_and_announces_the_load,
    payment_events_publishes_reviewed_and_unreviewed_payments_to_the_audit_topic,
};
use crate::repo_path;
use crate::store::Database;

/// How long a run may take before the test fails.
const RUN_WAIT_MS_MAX: u64 = 30_000;

pub(crate) struct Node {
    pub(crate) runtime: Arc<Runtime<Store>>,
    _database: Database,
}

impl Node {
    pub(crate) async fn start(
        database: Database,
        secrets: Secrets,
    ) -> (Node, engine::runtime::RuntimeHandle) {
        Node::start_with(database, secrets, Vec::new()).await
    }

    /// A node with the standard executors plus `extra` (a Kafka executor).
    pub(crate) async fn start_with(
        database: Database,
        secrets: Secrets,
        extra: Vec<Arc<dyn Executor>>,
    ) -> (Node, engine::runtime::RuntimeHandle) {
        let store = engine::store::open_with(&database.url, StoreConfig::default())
            .await
            .expect("open the store");
        let mut executors =
            standard_executors(super::loopback_http(), ExecConfig::enabled()).expect("executors");
        executors.extend(extra);
        let config = Config {
            workers: 4,
            poll_ms: 20,
            secrets,
            ..Config::default()
        };
        let runtime = Runtime::new(Arc::new(store), executors, config);
        let handle = runtime.start().await.expect("start the runtime");
        let node = Node {
            runtime,
            _database: database,
        };
        (node, handle)
    }

    pub(crate) async fn run(&self, example: &str, input: Value) -> (RunId, Value) {
        let run_id = self.start_run(example, input).await;
        let document = self.wait_until(run_id, RunState::is_finished).await;
        (run_id, document)
    }

    /// Registers `workflows/<example>.yaml` and starts a run of it.
    pub(crate) async fn start_run(&self, example: &str, input: Value) -> RunId {
        let source = std::fs::read_to_string(repo_path(&format!("workflows/{example}.yaml")))
            .expect("read the example");
        self.runtime
            .register_source(&source)
            .await
            .expect("register the example");
        let request = StartRequest {
            workflow: example.to_owned(),
            input,
            ..StartRequest::default()
        };
        self.runtime.start_run(request).await.expect("start").run_id
    }

    /// Waits until the run's state satisfies `done`; returns its document.
    pub(crate) async fn wait_until(
        &self,
        run_id: RunId,
        done: impl Fn(&RunState) -> bool,
    ) -> Value {
        let within = Duration::from_millis(RUN_WAIT_MS_MAX);
        testkit::poll::run_state(&self.runtime, run_id, within, done)
            .await
            .document()
    }

    /// Every payload of the run's events, as one text.
    async fn log_text(&self, run_id: RunId) -> String {
        let events = self
            .runtime
            .store()
            .read_stream(run_id, 0, 1_000)
            .await
            .expect("read the log");
        events
            .iter()
            .map(|event| format!("{} {}\n", event.event_type, event.payload))
            .collect()
    }
}

async fn shipping_books_through_a_busy_carrier_and_keeps_the_token_out_of_the_log(
    database: Database,
) {
    let server = Server::start().await;
    let secrets: Secrets = [("CARRIER_TOKEN", "carrier-token-123")]
        .into_iter()
        .collect();
    let (node, handle) = Node::start(database, secrets).await;
    let input = json!({ "order": "o-7", "base_url": server.base });
    let (run_id, document) = node.run("shipping", input).await;
    handle.shutdown().await;
    assert_eq!(document["status"], "succeeded", "{document:#}");
    assert_eq!(document["output"]["tracking"], "T-1");
    assert_eq!(document["steps"]["book"]["attempts"], 2, "{document:#}");
    let requests = server.requests();
    assert_eq!(requests.len(), 2);
    for request in &requests {
        assert_eq!(
            request.header("idempotency-key"),
            Some(&*format!("{run_id}/book"))
        );
        assert_eq!(
            request.header("authorization"),
            Some("Bearer carrier-token-123")
        );
        let body: Value = serde_json::from_slice(&request.body).expect("JSON body");
        assert_eq!(
            body,
            json!({ "reference": "o-7", "parent_run": run_id.to_string() })
        );
    }
    let log = node.log_text(run_id).await;
    assert!(!log.contains("carrier-token-123"), "{log}");
    assert!(log.contains("HTTP 503 Service Unavailable: busy"), "{log}");
}

async fn disk_housekeeping_prunes_measures_and_enforces_the_budget(database: Database) {
    let folder = tempfile::tempdir().expect("temp dir");
    let path = folder.path().display().to_string();
    std::fs::write(folder.path().join("fresh.log"), vec![b'x'; 64 * 1024]).expect("write");
    let (node, handle) = Node::start(database, Secrets::none()).await;
    let input = json!({ "folder": path, "folders": [path], "budget_kib": 1_000_000 });
    let (_, within) = node.run("disk-housekeeping", input).await;
    let input = json!({ "folder": path, "folders": [path], "budget_kib": 0 });
    let (_, over) = node.run("disk-housekeeping", input).await;
    handle.shutdown().await;
    assert_eq!(within["status"], "succeeded", "{within:#}");
    let usage = within["output"]["usage"].as_str().expect("du's text");
    let (kib, measured) = usage.trim_end().split_once('\t').expect("`KIB\tPATH`");
    assert_eq!(measured, path);
    assert!(kib.parse::<u64>().is_ok_and(|kib| kib >= 64), "{usage}");
    assert_eq!(within["steps"]["over_budget"]["status"], "skipped");
    assert!(
        folder.path().join("fresh.log").exists(),
        "a fresh file was pruned"
    );
    assert_eq!(over["status"], "failed", "{over:#}");
    assert_eq!(over["steps"]["over_budget"]["status"], "failed");
    assert_eq!(over["steps"]["report"]["status"], "skipped");
}

/// The `METHOD PATH` of every request the server received, in order.
fn calls(server: &Server) -> Vec<String> {
    server
        .requests()
        .iter()
        .map(|request| format!("{} {}", request.method, request.path))
        .collect()
}

async fn deploy_promotes_a_healthy_canary_and_keeps_the_token_out_of_the_log(database: Database) {
    let server = Server::start().await;
    let secrets: Secrets = [("DEPLOY_TOKEN", "deploy-token-456")].into_iter().collect();
    let (node, handle) = Node::start(database, secrets).await;
    let input = json!({
        "base_url": server.base, "service": "web", "image": "web:1.2.3",
        "bake": "50ms", "smoke_tests": true,
    });
    let (run_id, document) = node.run("deploy", input).await;
    handle.shutdown().await;
    assert_eq!(document["status"], "succeeded", "{document:#}");
    assert_eq!(
        document["output"],
        json!({ "service": "web", "image": "web:1.2.3", "smoke": "succeeded", "promoted": true })
    );
    assert_eq!(document["steps"]["rollback"]["status"], "skipped");
    let calls = calls(&server);
    assert_eq!(calls.len(), 4, "{calls:?}");
    assert_eq!(calls[0], "POST /deployments/web/canary");
    // smoke and health run side by side after the bake, in either order
    let mut after_bake = calls[1..3].to_vec();
    after_bake.sort();
    assert_eq!(
        after_bake,
        [
            "GET /deployments/web/canary/health",
            "GET /deployments/web/canary/smoke"
        ]
    );
    assert_eq!(calls[3], "POST /deployments/web/promote");
    let log = node.log_text(run_id).await;
    assert!(!log.contains("deploy-token-456"), "{log}");
}

async fn deploy_rolls_back_a_canary_that_never_gets_healthy(database: Database) {
    let server = Server::start().await;
    let secrets: Secrets = [("DEPLOY_TOKEN", "deploy-token-456")].into_iter().collect();
    let (node, handle) = Node::start(database, secrets).await;
    let input = json!({
        "base_url": server.base, "service": "api", "image": "api:9", "bake": "50ms",
    });
    let (_, document) = node.run("deploy", input).await;
    handle.shutdown().await;
    // health fails for good (2 attempts, fixed backoff), nothing covers it.
    assert_eq!(document["status"], "failed", "{document:#}");
    assert_eq!(document["steps"]["health"]["status"], "failed");
    assert_eq!(document["steps"]["health"]["attempts"], 2);
    assert_eq!(document["steps"]["smoke"]["status"], "skipped");
    assert_eq!(document["steps"]["promote"]["status"], "skipped");
    assert_eq!(document["steps"]["rollback"]["status"], "succeeded");
    assert_eq!(
        calls(&server),
        [
            "POST /deployments/api/canary",
            "GET /deployments/api/canary/health",
            "GET /deployments/api/canary/health",
            "DELETE /deployments/api/canary",
        ]
    );
}

/// The JSON bodies the server received on `path`, in order.
fn bodies(server: &Server, path: &str) -> Vec<Value> {
    server
        .requests()
        .iter()
        .filter(|request| request.path == path)
        .map(|request| serde_json::from_slice(&request.body).expect("JSON body"))
        .collect()
}

fn step_is_waiting(step: &'static str) -> impl Fn(&RunState) -> bool {
    move |state| state.document()["steps"][step]["status"] == "waiting"
}

async fn incident_escalation_escalates_a_rejected_page_and_closes_the_incident(database: Database) {
    let server = Server::start().await;
    let (node, handle) = Node::start(database, Secrets::none()).await;
    let alert = json!({ "id": "inc-9", "severity": "critical", "summary": "db down" });
    let run_id = node
        .start_run(
            "incident-escalation",
            json!({ "base_url": server.base, "alert": alert }),
        )
        .await;
    node.wait_until(run_id, step_is_waiting("acknowledge"))
        .await;
    node.runtime
        .reject(
            run_id,
            "acknowledge",
            "oncall-bob",
            Some("asleep".to_owned()),
        )
        .await
        .expect("reject the page");
    let document = node.wait_until(run_id, RunState::is_finished).await;
    handle.shutdown().await;
    // The rejection fails `acknowledge`, continue_on_error keeps the run going.
    assert_eq!(document["status"], "succeeded", "{document:#}");
    assert_eq!(
        document["output"],
        json!({ "acknowledged": "failed", "escalated": "succeeded" })
    );
    let pages: Vec<Value> = bodies(&server, "/pager/pages")
        .into_iter()
        .map(|page| page["to"].clone())
        .collect();
    assert_eq!(
        pages,
        [json!("oncall"), json!("manager"), json!("director")]
    );
    assert_eq!(
        bodies(&server, "/incidents/inc-9"),
        [json!({ "state": "closed", "acknowledged": false, "escalated": true })]
    );
}

async fn incident_escalation_closes_an_acknowledged_page_without_escalating(database: Database) {
    let server = Server::start().await;
    let (node, handle) = Node::start(database, Secrets::none()).await;
    let alert = json!({ "id": "inc-10", "severity": "minor", "summary": "disk 80%" });
    let run_id = node
        .start_run(
            "incident-escalation",
            json!({ "base_url": server.base, "alert": alert }),
        )
        .await;
    node.wait_until(run_id, step_is_waiting("acknowledge"))
        .await;
    node.runtime
        .approve(run_id, "acknowledge", "oncall-bob", None)
        .await
        .expect("acknowledge the page");
    let document = node.wait_until(run_id, RunState::is_finished).await;
    handle.shutdown().await;
    assert_eq!(document["status"], "succeeded", "{document:#}");
    assert_eq!(document["steps"]["escalate"]["status"], "skipped");
    assert_eq!(document["steps"]["wake_director"]["status"], "skipped");
    assert_eq!(bodies(&server, "/pager/pages").len(), 1);
    assert_eq!(
        bodies(&server, "/incidents/inc-10"),
        [json!({ "state": "closed", "acknowledged": true, "escalated": false })]
    );
}

/// The warehouse of workflows/order-fulfilment.yaml: an agent that packs
/// one item per task.
#[derive(Debug)]
struct Packer;

impl engine::executor::Executor for Packer {
    fn kind(&self) -> engine::core::workflow::StepKind {
        engine::core::workflow::StepKind::Agent
    }

    fn execute<'a>(
        &'a self,
        attempt: &'a engine::executor::Attempt,
    ) -> engine::executor::BoxFuture<'a, engine::executor::Outcome> {
        Box::pin(async move {
            engine::executor::Outcome::Succeeded {
                output: json!({ "packed": attempt.input["payload"]["sku"] }),
            }
        })
    }
}

async fn order_fulfilment_charges_packs_waits_for_finance_and_ships_through_the_child(
    database: Database,
) {
    let server = Server::start().await;
    let secrets: Secrets = [("CARRIER_TOKEN", "carrier-token-123")]
        .into_iter()
        .collect();
    let (node, handle) = Node::start(database, secrets).await;
    let warehouse = node
        .runtime
        .start_agent(engine::runtime::agent_queue("warehouse"), Arc::new(Packer));
    let shipping = std::fs::read_to_string(repo_path("workflows/shipping.yaml")).expect("read");
    node.runtime
        .register_source(&shipping)
        .await
        .expect("register the child workflow");
    let run_id = node
        .start_run(
            "order-fulfilment",
            json!({ "order_id": "o-1", "base_url": server.base }),
        )
        .await;
    node.wait_until(run_id, step_is_waiting("approve")).await;
    node.runtime
        .approve(run_id, "approve", "finance-fay", Some("ok".to_owned()))
        .await
        .expect("approve");
    let document = node.wait_until(run_id, RunState::is_finished).await;
    warehouse.shutdown().await;
    handle.shutdown().await;
    assert_eq!(document["status"], "succeeded", "{document:#}");
    assert_eq!(document["output"], json!({ "tracking": "T-1" }));
    assert_eq!(
        document["steps"]["pack"]["output"],
        json!([{ "packed": "tea" }, { "packed": "cup" }, { "packed": "pot" }]),
        "for_each outputs in item order"
    );
    assert_eq!(
        bodies(&server, "/pay/charge"),
        [json!({ "order": "o-1" })],
        "the unpaid order is charged once"
    );
    assert_eq!(document["steps"]["cleanup"]["status"], "succeeded");
}

/// An `http` step against a server that fails twice, then answers.
const FLAKY: &str = r#"
name: flaky
input: { type: object, required: [base_url], properties: { base_url: { type: string } } }
steps:
  call:
    uses: http
    retry: { max_attempts: 3, backoff: fixed, initial_interval: 300ms }
    with: { method: GET, url: "{{ input.base_url }}/flaky" }
"#;

/// The retry delay of [`FLAKY`], in milliseconds.
const FLAKY_BACKOFF_MS: i64 = 300;

async fn http_step_retries_on_durable_timers_with_one_idempotency_key(database: Database) {
    let server = Server::start().await;
    let (node, handle) = Node::start(database, Secrets::none()).await;
    node.runtime.register_source(FLAKY).await.expect("register");
    let request = StartRequest {
        workflow: "flaky".to_owned(),
        input: json!({ "base_url": server.base }),
        ..StartRequest::default()
    };
    let run_id = node.runtime.start_run(request).await.expect("start").run_id;
    let document = node.wait_until(run_id, RunState::is_finished).await;
    handle.shutdown().await;
    assert_eq!(document["status"], "succeeded", "{document:#}");
    assert_eq!(document["steps"]["call"]["attempts"], 3);
    assert_eq!(
        document["steps"]["call"]["output"]["body"],
        json!({ "attempts_seen": 3 })
    );
    let requests = server.requests();
    assert_eq!(requests.len(), 3);
    let key = format!("{run_id}/call");
    for request in &requests {
        assert_eq!(request.header("idempotency-key"), Some(key.as_str()));
    }
    // Each retry waited for its durable timer: the next attempt was handed
    // out no earlier than the timer's fire time, which is the backoff after
    // the failure.
    let events = node
        .runtime
        .store()
        .read_stream(run_id, 0, 1_000)
        .await
        .expect("read the log");
    let at = |event: &engine::store::RecordedEvent, field: &str| {
        let text = event.payload[field].as_str().expect("a time field");
        chrono::DateTime::parse_from_rfc3339(text).expect("RFC 3339")
    };
    let failures: Vec<_> = events
        .iter()
        .filter(|e| e.event_type == "step.failed")
        .collect();
    let retries: Vec<_> = events
        .iter()
        .filter(|e| e.event_type == "step.retry_scheduled")
        .collect();
    let scheduled: Vec<_> = events
        .iter()
        .filter(|e| e.event_type == "step.scheduled")
        .collect();
    assert_eq!((failures.len(), retries.len(), scheduled.len()), (2, 2, 3));
    for attempt in 0..2 {
        let fire_at = at(retries[attempt], "fire_at");
        let backoff = fire_at - at(failures[attempt], "at");
        assert_eq!(backoff.num_milliseconds(), FLAKY_BACKOFF_MS);
        assert!(at(scheduled[attempt + 1], "at") >= fire_at);
    }
}

super::on_both_backends!(
    shipping_books_through_a_busy_carrier_and_keeps_the_token_out_of_the_log,
    disk_housekeeping_prunes_measures_and_enforces_the_budget,
    deploy_promotes_a_healthy_canary_and_keeps_the_token_out_of_the_log,
    deploy_rolls_back_a_canary_that_never_gets_healthy,
    incident_escalation_escalates_a_rejected_page_and_closes_the_incident,
    incident_escalation_closes_an_acknowledged_page_without_escalating,
    order_fulfilment_charges_packs_waits_for_finance_and_ships_through_the_child,
    http_step_retries_on_durable_timers_with_one_idempotency_key,
    nightly_data_pipeline_loads_the_partitions_and_announces_the_load,
    payment_events_publishes_reviewed_and_unreviewed_payments_to_the_audit_topic,
);
