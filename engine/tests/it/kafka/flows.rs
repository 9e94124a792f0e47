//! The example workflows that publish to Kafka, run by the real runtime with
//! a real `kafka.publish` executor; each message is read back from the
//! broker. Run on both stores by `executor::flows`' `on_both_backends!`.

use std::sync::Arc;

use engine::core::Secrets;
use engine::core::workflow::StepKind;
use engine::executor::{Attempt, BoxFuture, Executor, KafkaConfig, KafkaExecutor, Outcome};
use engine::runtime::RuntimeHandle;
use engine::store::RunId;
use serde_json::{Value, json};

use super::{Read, brokers, create_topic, read_back};
use crate::executor::flows::Node;
use crate::executor::http::server::Server;
use crate::store::Database;

/// A node with a Kafka executor for `brokers`, after creating `topic`.
async fn kafka_node(database: Database, brokers: &str, topic: &str) -> (Node, RuntimeHandle) {
    create_topic(brokers, topic, &[]).await;
    let kafka = KafkaExecutor::new(KafkaConfig::new(brokers)).expect("a producer");
    Node::start_with(database, Secrets::none(), vec![Arc::new(kafka)]).await
}

/// The message a run's `step` published, read back from the broker.
async fn published(brokers: &str, document: &Value, step: &str) -> Read {
    let output = &document["steps"][step]["output"];
    let topic = output["topic"].as_str().expect("the topic in the output");
    let partition = output["partition"].as_i64().expect("a partition");
    let offset = output["offset"].as_i64().expect("an offset");
    let partition = i32::try_from(partition).expect("a small partition");
    read_back(brokers, topic, partition, offset).await
}

fn value(read: &Read) -> Value {
    serde_json::from_str(read.value.as_deref().expect("a value")).expect("JSON text")
}

fn idempotency_header(run_id: RunId, step: &str) -> (String, String) {
    (
        engine::executor::kafka::IDEMPOTENCY_KEY_HEADER.to_owned(),
        format!("{run_id}/{step}"),
    )
}

pub async fn nightly_data_pipeline_loads_the_partitions_and_announces_the_load(database: Database) {
    let Some(brokers) = brokers() else { return };
    let server = Server::start().await;
    let (node, handle) = kafka_node(database, &brokers, "warehouse.loads").await;
    let input = json!({ "base_url": server.base, "date": "2026-01-02", "settle": "10ms" });
    let (run_id, document) = node.run("nightly-data-pipeline", input).await;
    handle.shutdown().await;
    assert_eq!(document["status"], "succeeded", "{document:#}");
    let load = json!({ "load_id": "L-1", "rows": 600 });
    assert_eq!(document["output"], json!({ "partitions": 3, "load": load }));
    let read = published(&brokers, &document, "announce").await;
    assert_eq!(read.key.as_deref(), Some("2026-01-02"));
    assert_eq!(read.headers, [idempotency_header(run_id, "announce")]);
    assert_eq!(
        value(&read),
        json!({ "date": "2026-01-02", "load": load, "run": run_id.to_string() })
    );
}

/// workflows/payment-events.yaml's fraud reviewers: clear every payment.
#[derive(Debug)]
struct Reviewer;

impl Executor for Reviewer {
    fn kind(&self) -> StepKind {
        StepKind::Agent
    }

    fn execute<'a>(&'a self, attempt: &'a Attempt) -> BoxFuture<'a, Outcome> {
        Box::pin(async move {
            let payment = attempt.input["payload"]["payment"]["payment_id"].clone();
            Outcome::Succeeded {
                output: json!({ "verdict": "clear", "payment": payment }),
            }
        })
    }
}

pub async fn payment_events_publishes_reviewed_and_unreviewed_payments_to_the_audit_topic(
    database: Database,
) {
    let Some(brokers) = brokers() else { return };
    let (node, handle) = kafka_node(database, &brokers, "payments.audited").await;
    let reviewers = node.runtime.start_agent(
        engine::runtime::agent_queue("fraud-review"),
        Arc::new(Reviewer),
    );
    let small = json!({ "payment_id": "p-1", "amount": 50, "currency": "EUR" });
    let large = json!({ "payment_id": "p-2", "amount": 25_000, "currency": "USD" });
    let (small_id, small_run) = node.run("payment-events", small.clone()).await;
    let (large_id, large_run) = node.run("payment-events", large.clone()).await;
    reviewers.shutdown().await;
    handle.shutdown().await;
    assert_eq!(small_run["status"], "succeeded", "{small_run:#}");
    assert_eq!(
        small_run["output"],
        json!({ "key": "EUR-p-1", "reviewed": "skipped" })
    );
    assert_eq!(large_run["status"], "succeeded", "{large_run:#}");
    assert_eq!(
        large_run["output"],
        json!({ "key": "USD-p-2", "reviewed": "succeeded" })
    );
    let workflow = ("workflow".to_owned(), "payment-events".to_owned());
    let read = published(&brokers, &small_run, "publish").await;
    assert_eq!(read.key.as_deref(), Some("EUR-p-1"));
    assert_eq!(
        read.headers,
        [workflow.clone(), idempotency_header(small_id, "publish")]
    );
    assert_eq!(
        value(&read),
        json!({ "payment": small, "reviewed": false, "verdict": null })
    );
    let read = published(&brokers, &large_run, "publish").await;
    assert_eq!(read.key.as_deref(), Some("USD-p-2"));
    assert_eq!(
        read.headers,
        [workflow, idempotency_header(large_id, "publish")]
    );
    assert_eq!(
        value(&read),
        json!({ "payment": large, "reviewed": true, "verdict": "clear" })
    );
}
