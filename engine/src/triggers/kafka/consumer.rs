//! One Kafka trigger's consumer: messages in partition order, each turned
//! into one run start (or one dead letter) before its offset is stored for
//! commit. A failure that passes (database or broker away) is retried on
//! the same message, so nothing after it is committed first.

use std::sync::Arc;
use std::time::Duration;

use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::message::{BorrowedMessage, Headers, Message};
use serde_json::{Map, Value, json};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::message::{DeadLetterReason, Received, Rejected, idempotency_key, scope};
use super::{COMMIT_INTERVAL_MS, Error, KafkaTriggerConfig, Outcome, TriggerSpec, TriggerStats};
use crate::core::event::TriggerContext;
use crate::runtime::{self, Runtime, StartRequest, Started};
use crate::store::{self, EventStore};

/// What every consumer of a node shares.
pub(super) struct Shared<S: EventStore> {
    pub runtime: Arc<Runtime<S>>,
    pub config: KafkaTriggerConfig,
    pub producer: rdkafka::producer::FutureProducer,
    pub stats: Arc<TriggerStats>,
}

/// A consumer's task.
pub(super) struct Running {
    spec: TriggerSpec,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl Running {
    /// Joins `spec`'s group and consumes in a task of its own.
    pub fn start<S: EventStore + 'static>(
        shared: Arc<Shared<S>>,
        spec: TriggerSpec,
    ) -> Result<Running, Error> {
        let consumer = consumer(&shared.config, &spec)?;
        let (stop, stopped) = watch::channel(false);
        tracing::info!(workflow = %spec.workflow, trigger = %spec.trigger, topic = %spec.topic,
            group = %spec.group, "kafka trigger consuming");
        let task = tokio::spawn(consume(shared, spec.clone(), consumer, stopped));
        Ok(Running { spec, stop, task })
    }

    pub fn spec(&self) -> &TriggerSpec {
        &self.spec
    }

    /// Stops after the message in hand; stored offsets are committed first.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        if let Err(failed) = self.task.await
            && failed.is_panic()
        {
            std::panic::resume_unwind(failed.into_panic());
        }
    }
}

fn consumer(config: &KafkaTriggerConfig, spec: &TriggerSpec) -> Result<StreamConsumer, Error> {
    let session = config.session_timeout_ms;
    let consumer: StreamConsumer = super::client_config(config)
        .set("group.id", &spec.group)
        // Offsets are stored by hand once a start is durable; librdkafka
        // commits only stored offsets (periodically, and when partitions
        // are revoked or the consumer closes).
        .set("enable.auto.offset.store", "false")
        .set("enable.auto.commit", "true")
        .set("auto.commit.interval.ms", COMMIT_INTERVAL_MS.to_string())
        // A new group reads the topic from its start: no message published
        // before the first node joined is lost.
        .set("auto.offset.reset", "earliest")
        .set("session.timeout.ms", session.to_string())
        .set(
            "heartbeat.interval.ms",
            (session / 3).clamp(1, 3_000).to_string(),
        )
        .create()
        .map_err(|source| Error::Client {
            what: "a trigger's consumer",
            brokers: config.brokers.clone(),
            source,
        })?;
    consumer
        .subscribe(&[&spec.topic])
        .map_err(|source| Error::Client {
            what: "a trigger's subscription",
            brokers: config.brokers.clone(),
            source,
        })?;
    Ok(consumer)
}

async fn consume<S: EventStore + 'static>(
    shared: Arc<Shared<S>>,
    spec: TriggerSpec,
    consumer: StreamConsumer,
    mut stopped: watch::Receiver<bool>,
) {
    let retry_ms = shared.config.retry_ms;
    loop {
        let received = tokio::select! {
            _ = stopped.changed() => break,
            received = consumer.recv() => received,
        };
        let message = match received {
            Ok(message) => message,
            Err(error) => {
                tracing::warn!(%error, topic = %spec.topic, group = %spec.group, "kafka trigger: consuming failed");
                if pause(&mut stopped, retry_ms).await {
                    break;
                }
                continue;
            }
        };
        if !handle(&shared, &spec, &message, &mut stopped).await {
            break;
        }
        // Revoked meanwhile: the new owner gets it again and starts nothing new.
        if let Err(error) = consumer.store_offset_from_message(&message) {
            tracing::info!(%error, "kafka trigger: offset not stored (partition revoked)");
        }
    }
    if let Err(error) = consumer.commit_consumer_state(CommitMode::Sync) {
        tracing::info!(%error, group = %spec.group, "kafka trigger: final commit");
    }
}

/// Starts the message's run or dead-letters it, trying again while the
/// failure passes; `false` when stopped before that.
async fn handle<S: EventStore + 'static>(
    shared: &Shared<S>,
    spec: &TriggerSpec,
    message: &BorrowedMessage<'_>,
    stopped: &mut watch::Receiver<bool>,
) -> bool {
    loop {
        match attempt(shared, spec, message).await {
            Ok(outcome) => {
                shared.stats.count(&spec.workflow, &spec.trigger, outcome);
                return true;
            }
            Err(problem) => {
                tracing::warn!(workflow = %spec.workflow, trigger = %spec.trigger,
                    topic = message.topic(), partition = message.partition(),
                    offset = message.offset(), %problem, "kafka trigger: retrying the message");
                if pause(stopped, shared.config.retry_ms).await {
                    return false;
                }
            }
        }
    }
}

/// Why a start did not happen.
enum Failure {
    /// The message cannot start a run: dead-letter it.
    Rejected(Rejected),
    /// Try the same message again later.
    Passing(String),
}

async fn attempt<S: EventStore + 'static>(
    shared: &Shared<S>,
    spec: &TriggerSpec,
    message: &BorrowedMessage<'_>,
) -> Result<Outcome, String> {
    let rejected = match start(shared, spec, message).await {
        Ok(started) if started.existing => return Ok(Outcome::Existing),
        Ok(_) => return Ok(Outcome::Started),
        Err(Failure::Passing(problem)) => return Err(problem),
        Err(Failure::Rejected(rejected)) => rejected,
    };
    super::dead_letter::publish(&shared.producer, spec, message, &rejected).await?;
    tracing::warn!(workflow = %spec.workflow, trigger = %spec.trigger,
        topic = message.topic(), partition = message.partition(), offset = message.offset(),
        dead_letter_topic = %spec.dead_letter_topic, reason = rejected.reason.label(),
        error = %rejected.detail, "kafka trigger: message dead-lettered");
    Ok(Outcome::DeadLettered(rejected.reason))
}

async fn start<S: EventStore + 'static>(
    shared: &Shared<S>,
    spec: &TriggerSpec,
    message: &BorrowedMessage<'_>,
) -> Result<Started, Failure> {
    let headers = message
        .headers()
        .map(|headers| {
            headers
                .iter()
                .map(|header| (header.key, header.value))
                .collect()
        })
        .unwrap_or_default();
    let received = Received {
        topic: message.topic(),
        partition: message.partition(),
        offset: message.offset(),
        key: message.key(),
        value: message.payload(),
        headers,
    };
    let message_scope = scope(&received).map_err(Failure::Rejected)?;
    let input = if spec.input.is_null() {
        message_scope["value"].clone()
    } else {
        let mut variables = Map::new();
        variables.insert("message".to_owned(), message_scope);
        variables.insert("trigger".to_owned(), json!({ "id": spec.trigger }));
        render(shared, spec, variables).await?
    };
    let request = StartRequest {
        workflow: spec.workflow.clone(),
        version: Some(spec.version.clone()),
        input,
        idempotency_key: Some(idempotency_key(
            &spec.workflow,
            &spec.trigger,
            received.topic,
            received.partition,
            received.offset,
        )),
        trigger: Some(TriggerContext::Kafka {
            trigger: spec.trigger.clone(),
            topic: received.topic.to_owned(),
            partition: received.partition,
            offset: received.offset,
        }),
    };
    shared.runtime.start_run(request).await.map_err(classify)
}

async fn render<S: EventStore + 'static>(
    shared: &Shared<S>,
    spec: &TriggerSpec,
    variables: Map<String, Value>,
) -> Result<Value, Failure> {
    shared
        .runtime
        .render_trigger_input(&spec.workflow, &spec.trigger, &spec.input, variables)
        .await
        .map_err(|error| {
            let detail = match error {
                runtime::Error::TriggerInput { detail, .. } => detail,
                other => other.to_string(),
            };
            Failure::Rejected(Rejected::new(
                DeadLetterReason::Template,
                format!("the trigger's `input` cannot be rendered: {detail}"),
            ))
        })
}

/// Refusals that the same message would get again are dead letters; the
/// rest (database away, contention) pass.
fn classify(error: runtime::Error) -> Failure {
    match &error {
        runtime::Error::InvalidInput { problems, .. } => Failure::Rejected(Rejected::new(
            DeadLetterReason::InvalidInput,
            format!(
                "the input does not match the workflow's `input` schema: {}",
                problems.join("; ")
            ),
        )),
        runtime::Error::Store(
            store::Error::PayloadTooLarge { .. } | store::Error::LimitExceeded { .. },
        ) => Failure::Rejected(Rejected::new(DeadLetterReason::TooLarge, error.to_string())),
        _ => Failure::Passing(error.to_string()),
    }
}

/// Waits `ms` or until stopped; true when stopped.
async fn pause(stopped: &mut watch::Receiver<bool>, ms: u64) -> bool {
    if *stopped.borrow() {
        return true;
    }
    tokio::select! {
        () = tokio::time::sleep(Duration::from_millis(ms)) => *stopped.borrow(),
        changed = stopped.changed() => changed.is_err() || *stopped.borrow(),
    }
}
