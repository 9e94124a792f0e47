//! Kafka triggers: on a node with brokers configured, one consumer per
//! `kafka` trigger of the newest version of each workflow. Each message
//! starts one run (idempotency key [`idempotency_key`]); its offset is
//! stored for commit only after the run start is durable, so a crash or a
//! rebalance redelivers at most, and a redelivery starts nothing new. A
//! message that cannot start a run goes to the trigger's dead-letter topic
//! with the reason in headers, then its offset is stored: it never blocks
//! its partition. The supervisor re-reads the registry every
//! [`TRIGGER_REFRESH_MS`] and starts, restarts or stops consumers to match.

mod consumer;
mod dead_letter;
mod message;
mod stats;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use rdkafka::config::ClientConfig;
use rdkafka::error::KafkaError;
use rdkafka::producer::FutureProducer;
use serde_json::Value;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::core::workflow::{Trigger, Workflow};
use crate::runtime::Runtime;
use crate::store::EventStore;
pub use dead_letter::{
    DLQ_DELIVERY_TIMEOUT_MS, DLQ_ERROR_BYTES_MAX, HEADER_DLQ_ERROR, HEADER_DLQ_OFFSET,
    HEADER_DLQ_PARTITION, HEADER_DLQ_REASON, HEADER_DLQ_TOPIC, HEADER_DLQ_TRIGGER,
    HEADER_DLQ_WORKFLOW,
};
pub use message::{
    DeadLetterReason, Received, Rejected, TRIGGER_MESSAGE_BYTES_MAX, default_dead_letter_topic,
    default_group, idempotency_key, scope,
};
pub use stats::{Outcome, TriggerStats};

/// How often the registry is read for new or changed Kafka triggers, in ms.
pub const TRIGGER_REFRESH_MS: u64 = 1_000;
/// Most Kafka triggers (consumers, each a librdkafka client with its own
/// threads) one node runs; triggers past it are not started, and logged.
pub const KAFKA_TRIGGERS_MAX: usize = 256;
/// The consumer group session timeout by default, in ms: how long a
/// crashed node's partitions wait before the group hands them on.
pub const SESSION_TIMEOUT_MS_DEFAULT: u64 = 10_000;
/// The `imx serve` flag for [`KafkaTriggerConfig::session_timeout_ms`].
pub const SESSION_TIMEOUT_FLAG: &str = "--kafka-session-timeout-ms";
/// How often librdkafka commits the offsets stored after durable starts, in ms.
pub const COMMIT_INTERVAL_MS: u64 = 500;
/// Wait before a message whose run start or dead-lettering failed for a
/// passing reason (database or broker unreachable) is tried again, in ms.
pub const TRIGGER_RETRY_MS: u64 = 1_000;

/// Why the Kafka triggers or the relay could not be set up. Codes
/// `IMX0606`–`IMX0607` (`docs/errors.md`).
#[derive(Debug, thiserror::Error, strum::EnumDiscriminants)]
#[strum_discriminants(
    name(ErrorKind),
    vis(pub),
    derive(strum::VariantArray, Hash, PartialOrd, Ord)
)]
#[non_exhaustive]
pub enum Error {
    #[error("IMX0606: Kafka trigger or relay settings: {0}")]
    Config(String),
    #[error("IMX0607: creating {what} for the Kafka brokers {brokers} failed: {source}")]
    Client {
        what: &'static str,
        brokers: String,
        #[source]
        source: KafkaError,
    },
}

impl ErrorKind {
    /// The stable code of errors of this kind, also the message's prefix.
    pub const fn code(self) -> &'static str {
        match self {
            ErrorKind::Config => "IMX0606",
            ErrorKind::Client => "IMX0607",
        }
    }
}

impl Error {
    pub fn code(&self) -> &'static str {
        ErrorKind::from(self).code()
    }
}

/// How this node consumes Kafka triggers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KafkaTriggerConfig {
    /// Bootstrap servers, `host:port[,host:port…]`.
    pub brokers: String,
    /// Names the node's consumers (`client.id`) in the brokers' logs.
    pub node: String,
    pub session_timeout_ms: u64,
    pub refresh_ms: u64,
    pub retry_ms: u64,
}

impl KafkaTriggerConfig {
    pub fn new(brokers: &str, node: &str) -> KafkaTriggerConfig {
        KafkaTriggerConfig {
            brokers: brokers.to_owned(),
            node: node.to_owned(),
            session_timeout_ms: SESSION_TIMEOUT_MS_DEFAULT,
            refresh_ms: TRIGGER_REFRESH_MS,
            retry_ms: TRIGGER_RETRY_MS,
        }
    }

    fn check(&self) -> Result<(), Error> {
        if self.brokers.trim().is_empty() {
            return Err(Error::Config(
                "Kafka triggers need brokers (`--kafka-brokers`)".to_owned(),
            ));
        }
        if self.session_timeout_ms == 0 || self.refresh_ms == 0 {
            return Err(Error::Config(format!(
                "`{SESSION_TIMEOUT_FLAG}` and the refresh interval must be at least 1 ms"
            )));
        }
        Ok(())
    }
}

/// One `kafka` trigger of the newest version of a workflow, resolved.
#[derive(Clone, Debug, PartialEq)]
pub struct TriggerSpec {
    pub workflow: String,
    pub version: String,
    pub trigger: String,
    pub topic: String,
    pub group: String,
    /// The `input` template tree; `Null`: the message value is the input.
    pub input: Value,
    pub dead_letter_topic: String,
}

/// Every `kafka` trigger of `workflow` (registered as `version`), with its
/// group and dead-letter topic filled in.
pub fn trigger_specs(workflow: &Workflow, version: &str) -> Vec<TriggerSpec> {
    let mut specs: Vec<(TriggerSpec, Option<String>)> = Vec::new();
    for (id, trigger) in workflow.triggers_with_ids() {
        if let Trigger::Kafka {
            topic,
            group,
            input,
            dead_letter_topic,
            ..
        } = trigger
        {
            let spec = TriggerSpec {
                workflow: workflow.name.clone(),
                version: version.to_owned(),
                trigger: id,
                topic: topic.clone(),
                group: String::new(),
                input: input.clone(),
                dead_letter_topic: dead_letter_topic
                    .clone()
                    .unwrap_or_else(|| default_dead_letter_topic(topic)),
            };
            specs.push((spec, group.clone()));
        }
    }
    let topics: Vec<String> = specs.iter().map(|(spec, _)| spec.topic.clone()).collect();
    specs
        .into_iter()
        .map(|(mut spec, group)| {
            let shares_topic = topics.iter().filter(|topic| **topic == spec.topic).count() > 1;
            spec.group =
                group.unwrap_or_else(|| default_group(&spec.workflow, &spec.trigger, shares_topic));
            spec
        })
        .collect()
}

/// The running Kafka triggers of a node.
#[derive(Debug)]
pub struct KafkaTriggers {
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
    stats: Arc<TriggerStats>,
}

impl KafkaTriggers {
    /// Counts by workflow, trigger and outcome (for `/metrics`).
    pub fn stats(&self) -> Arc<TriggerStats> {
        self.stats.clone()
    }

    /// Stops every consumer; stored offsets are committed on the way out.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        if let Err(failed) = self.task.await
            && failed.is_panic()
        {
            std::panic::resume_unwind(failed.into_panic());
        }
    }
}

/// Checks `config`, creates the dead-letter producer and starts the supervisor.
pub fn start_kafka_triggers<S: EventStore + 'static>(
    runtime: Arc<Runtime<S>>,
    config: KafkaTriggerConfig,
) -> Result<KafkaTriggers, Error> {
    config.check()?;
    let producer = dead_letter::producer(&config)?;
    let stats = Arc::new(TriggerStats::default());
    let (stop, stopped) = watch::channel(false);
    let shared = Arc::new(consumer::Shared {
        runtime,
        config,
        producer,
        stats: stats.clone(),
    });
    let task = tokio::spawn(supervise(shared, stopped));
    Ok(KafkaTriggers { stop, task, stats })
}

/// Keeps one consumer per trigger of the registry's newest versions.
async fn supervise<S: EventStore + 'static>(
    shared: Arc<consumer::Shared<S>>,
    mut stopped: watch::Receiver<bool>,
) {
    let mut running: BTreeMap<(String, String), consumer::Running> = BTreeMap::new();
    loop {
        match wanted(&shared).await {
            Ok(specs) => reconcile(&shared, &mut running, specs).await,
            Err(error) => tracing::warn!(%error, "kafka triggers: reading the workflows failed"),
        }
        let wait = tokio::time::sleep(Duration::from_millis(shared.config.refresh_ms));
        tokio::select! {
            () = wait => {}
            _ = stopped.changed() => {}
        }
        if *stopped.borrow() {
            break;
        }
    }
    for (_, consumer) in running {
        consumer.stop().await;
    }
}

/// The triggers of the newest version of every registered workflow.
async fn wanted<S: EventStore + 'static>(
    shared: &consumer::Shared<S>,
) -> Result<Vec<TriggerSpec>, crate::runtime::Error> {
    let mut specs = Vec::new();
    for (workflow, version) in super::newest_workflows(&shared.runtime).await? {
        specs.extend(trigger_specs(&workflow, &version));
    }
    Ok(specs)
}

async fn reconcile<S: EventStore + 'static>(
    shared: &Arc<consumer::Shared<S>>,
    running: &mut BTreeMap<(String, String), consumer::Running>,
    specs: Vec<TriggerSpec>,
) {
    let mut wanted: BTreeMap<(String, String), TriggerSpec> = specs
        .into_iter()
        .map(|spec| ((spec.workflow.clone(), spec.trigger.clone()), spec))
        .collect();
    let stale: Vec<_> = running
        .iter()
        .filter(|(key, consumer)| wanted.get(*key) != Some(consumer.spec()))
        .map(|(key, _)| key.clone())
        .collect();
    for key in stale {
        if let Some(consumer) = running.remove(&key) {
            consumer.stop().await;
        }
    }
    wanted.retain(|key, _| !running.contains_key(key));
    for (key, spec) in wanted {
        if running.len() >= KAFKA_TRIGGERS_MAX {
            tracing::error!(workflow = %spec.workflow, trigger = %spec.trigger,
                "kafka trigger not started: this node runs KAFKA_TRIGGERS_MAX ({KAFKA_TRIGGERS_MAX}) already");
            continue;
        }
        match consumer::Running::start(shared.clone(), spec) {
            Ok(consumer) => {
                running.insert(key, consumer);
            }
            Err(error) => tracing::error!(%error, "kafka trigger not started"),
        }
    }
}

/// The consumers' and the dead-letter producer's common settings.
fn client_config(config: &KafkaTriggerConfig) -> ClientConfig {
    let mut client = ClientConfig::new();
    client
        .set("bootstrap.servers", &config.brokers)
        .set("client.id", format!("imx-triggers-{}", config.node));
    client
}

/// An idempotent producer that waits for every in-sync replica.
fn idempotent_producer(
    mut client: ClientConfig,
    brokers: &str,
    what: &'static str,
) -> Result<FutureProducer, Error> {
    client
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .create()
        .map_err(|source| Error::Client {
            what,
            brokers: brokers.to_owned(),
            source,
        })
}
