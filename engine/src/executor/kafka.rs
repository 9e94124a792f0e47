//! The `kafka.publish` executor: one message per attempt through one
//! idempotent librdkafka producer per node, carrying the attempt's
//! idempotency key as a header, the broker's acknowledgement (`acks=all`) as
//! the output, and failures sorted into retryable and not.

mod message;

use std::sync::{PoisonError, RwLock};
use std::time::Duration;

use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::util::Timeout;
use serde_json::json;

use super::{Attempt, BoxFuture, Executor, Outcome, deadline_passed, time_left};
use crate::core::workflow::StepKind;
use message::Message;
pub use message::{HEADERS_MAX, TOPIC_CHARS_MAX};

/// The `imx serve` / `imx run` flag that gives a node a `kafka.publish` executor.
pub const KAFKA_BROKERS_FLAG: &str = "--kafka-brokers";
/// The environment variable with the same meaning (`host:port,host:port`).
pub const KAFKA_BROKERS_ENV: &str = "IMX_KAFKA_BROKERS";
/// The header that carries the attempt's idempotency key (the same on every attempt).
pub const IDEMPOTENCY_KEY_HEADER: &str = "imx-idempotency-key";
/// Largest message (value, key and headers together) a step may publish, in
/// bytes. Below the producer's request limit, so that our check, with its
/// actionable message, is the one that fires.
pub const MESSAGE_BYTES_MAX: usize = 900 * 1024;
/// librdkafka's `message.max.bytes` (largest produce request): its default,
/// which fits under a Kafka broker's default `message.max.bytes` (1 048 588).
pub const PRODUCER_REQUEST_BYTES_MAX: usize = 1_000_000;
/// How long the producer keeps trying to deliver a message (librdkafka's
/// `message.timeout.ms`) when the attempt's deadline is later or absent, in ms.
pub const DELIVERY_TIMEOUT_MS_DEFAULT: u64 = 30_000;
/// How long a topic missing from the brokers' metadata is waited for before
/// the message fails as "unknown topic" (librdkafka's
/// `topic.metadata.propagation.max.ms`), in ms: long enough for a topic
/// created just before to show up, short enough to fail a typo quickly.
pub const UNKNOWN_TOPIC_WAIT_MS: u64 = 5_000;
/// Extra time our own timer gives librdkafka past its delivery timeout, so
/// that its more precise error usually wins the race, in ms.
const DELIVERY_TIMER_MARGIN_MS: u64 = 1_000;

/// How this node publishes `kafka.publish` steps' messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KafkaConfig {
    /// Bootstrap servers, `host:port[,host:port…]`.
    pub brokers: String,
    /// `client.id` the brokers see in their logs and quotas.
    pub client_id: String,
    /// Largest message (value + key + headers); larger ones fail, not retryable.
    pub message_bytes_max: usize,
    /// Time the producer keeps trying one message (when the deadline allows).
    pub delivery_timeout_ms: u64,
    /// Time a topic missing from the metadata is waited for.
    pub unknown_topic_wait_ms: u64,
}

impl KafkaConfig {
    /// The defaults, publishing to `brokers`.
    pub fn new(brokers: impl Into<String>) -> KafkaConfig {
        KafkaConfig {
            brokers: brokers.into(),
            client_id: format!("imx-{}", env!("CARGO_PKG_VERSION")),
            message_bytes_max: MESSAGE_BYTES_MAX,
            delivery_timeout_ms: DELIVERY_TIMEOUT_MS_DEFAULT,
            unknown_topic_wait_ms: UNKNOWN_TOPIC_WAIT_MS,
        }
    }
}

/// Why a [`KafkaExecutor`] could not be built. Codes `IMX0604`–`IMX0605`.
#[derive(Debug, thiserror::Error, strum::EnumDiscriminants)]
#[strum_discriminants(
    name(ErrorKind),
    vis(pub),
    derive(strum::VariantArray, Hash, PartialOrd, Ord)
)]
#[non_exhaustive]
pub enum Error {
    #[error("kafka executor config: {0}")]
    Config(String),
    #[error("creating the Kafka producer for {brokers} failed: {source}")]
    Producer {
        brokers: String,
        #[source]
        source: KafkaError,
    },
}

impl ErrorKind {
    /// The stable code of errors of this kind (`docs/errors.md`). The
    /// message does not open with it: `imx serve` prints it at start-up as it always did, so it kept its wording.
    pub const fn code(self) -> &'static str {
        match self {
            ErrorKind::Config => "IMX0604",
            ErrorKind::Producer => "IMX0605",
        }
    }
}

impl Error {
    /// The stable code (`docs/errors.md`), as data.
    pub fn code(&self) -> &'static str {
        ErrorKind::from(self).code()
    }
}

/// Runs `kafka.publish` steps; one producer shared by all attempts of the node.
pub struct KafkaExecutor {
    config: KafkaConfig,
    /// Replaced when librdkafka reports a fatal error (the idempotent
    /// producer cannot go on after one).
    producer: RwLock<FutureProducer>,
}

impl std::fmt::Debug for KafkaExecutor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaExecutor")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl KafkaExecutor {
    /// Checks the config and creates the producer; it connects lazily, so a
    /// broker that is down now is not an error here.
    pub fn new(config: KafkaConfig) -> Result<KafkaExecutor, Error> {
        check_config(&config)?;
        let producer = create_producer(&config)?;
        Ok(KafkaExecutor {
            config,
            producer: RwLock::new(producer),
        })
    }

    pub fn config(&self) -> &KafkaConfig {
        &self.config
    }

    async fn run(&self, attempt: &Attempt) -> Outcome {
        let message = match Message::parse(attempt, self.config.message_bytes_max) {
            Ok(message) => message,
            Err(problem) => return Outcome::failed(problem, false),
        };
        if let Some(late) = deadline_passed(attempt) {
            return late;
        }
        let (limit, limit_name) = self.time_limit(attempt);
        let producer = self.producer();
        let mut headers = OwnedHeaders::new_with_capacity(message.headers.len());
        for (name, value) in &message.headers {
            headers = headers.insert(Header {
                key: name,
                value: Some(value.as_str()),
            });
        }
        let mut record = FutureRecord::<str, [u8]>::to(&message.topic)
            .key(message.key.as_str())
            .headers(headers);
        if let Some(value) = &message.value {
            record = record.payload(value.as_slice());
        }
        let delivery = producer.send(record, Timeout::After(limit));
        match tokio::time::timeout(limit, delivery).await {
            Ok(Ok(delivery)) => Outcome::Succeeded {
                output: json!({
                    "topic": message.topic,
                    "partition": delivery.partition,
                    "offset": delivery.offset,
                }),
            },
            Ok(Err((error, _))) => self.failure(&error, &message),
            Err(_) => Outcome::failed(self.unacknowledged(&message, limit, limit_name), true),
        }
    }

    /// Our timer: the attempt's deadline, or just past the delivery timeout.
    fn time_limit(&self, attempt: &Attempt) -> (Duration, &'static str) {
        let delivery = Duration::from_millis(self.config.delivery_timeout_ms);
        match time_left(attempt.deadline) {
            Some(left) if left <= delivery => (left, "the attempt's deadline"),
            _ => (
                delivery + Duration::from_millis(DELIVERY_TIMER_MARGIN_MS),
                "the delivery timeout",
            ),
        }
    }

    fn producer(&self) -> FutureProducer {
        self.producer
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// After a fatal error: a new producer (new producer id) for later attempts.
    fn renew_producer(&self) -> Result<(), Error> {
        let fresh = create_producer(&self.config)?;
        let mut slot = self
            .producer
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        // Another attempt may have renewed it already; a healthy one stays.
        if slot.client().fatal_error().is_some() {
            *slot = fresh;
        }
        Ok(())
    }

    fn unacknowledged(&self, message: &Message, limit: Duration, limit_name: &str) -> String {
        format!(
            "no acknowledgement for the message to `{}` from the Kafka brokers {} within {} ms \
             ({limit_name}): are they running and reachable from this node? The message may \
             still arrive; consumers deduplicate by the `{IDEMPOTENCY_KEY_HEADER}` header",
            message.topic,
            self.config.brokers,
            limit.as_millis()
        )
    }

    /// The outcome of a delivery that librdkafka reported as failed.
    fn failure(&self, error: &KafkaError, message: &Message) -> Outcome {
        use RDKafkaErrorCode as Code;
        let topic = &message.topic;
        let brokers = &self.config.brokers;
        let Some(code) = error.rdkafka_error_code() else {
            return Outcome::failed(format!("publishing to `{topic}` failed: {error}"), true);
        };
        match code {
            Code::MessageSizeTooLarge | Code::InvalidMessageSize | Code::MessageBatchTooLarge => {
                Outcome::failed(
                    format!(
                        "the Kafka brokers refused the {}-byte message to `{topic}` as too large \
                         (the broker's `message.max.bytes` or the topic's `max.message.bytes` is \
                         lower); publish less data or raise that limit",
                        message.size_bytes()
                    ),
                    false,
                )
            }
            Code::UnknownTopicOrPartition | Code::UnknownTopic | Code::UnknownPartition => {
                Outcome::failed(
                    format!(
                        "topic `{topic}` does not exist on the Kafka brokers {brokers}, and they \
                         do not create topics on demand: create it \
                         (`kafka-topics.sh --create --topic {topic}`) or fix `with.topic`"
                    ),
                    false,
                )
            }
            Code::TopicAuthorizationFailed
            | Code::ClusterAuthorizationFailed
            | Code::TransactionalIdAuthorizationFailed => Outcome::failed(
                format!(
                    "the Kafka brokers do not allow this node to publish to `{topic}` ({code}); \
                     grant its principal WRITE on the topic (and IDEMPOTENT_WRITE on the cluster)"
                ),
                false,
            ),
            Code::InvalidTopic | Code::PolicyViolation | Code::InvalidRecord => Outcome::failed(
                format!("the Kafka brokers refused the message to `{topic}`: {code}"),
                false,
            ),
            Code::Fatal => self.fatal(topic),
            Code::MessageTimedOut => Outcome::failed(
                self.unacknowledged(
                    message,
                    Duration::from_millis(self.config.delivery_timeout_ms),
                    "the delivery timeout",
                ),
                true,
            ),
            _ => Outcome::failed(format!("publishing to `{topic}` failed: {code}"), true),
        }
    }

    /// A fatal producer error: renew the producer, let the retry policy decide.
    fn fatal(&self, topic: &str) -> Outcome {
        let reason = self.producer().client().fatal_error().map_or_else(
            || "unknown".to_owned(),
            |(code, text)| format!("{code}: {text}"),
        );
        let renewed = match self.renew_producer() {
            Ok(()) => "a new producer takes the next attempt".to_owned(),
            Err(error) => format!("renewing it failed: {error}"),
        };
        Outcome::failed(
            format!(
                "publishing to `{topic}` failed: the Kafka producer hit a fatal error ({reason}); {renewed}"
            ),
            true,
        )
    }
}

impl Executor for KafkaExecutor {
    fn kind(&self) -> StepKind {
        StepKind::KafkaPublish
    }

    fn execute<'a>(&'a self, attempt: &'a Attempt) -> BoxFuture<'a, Outcome> {
        Box::pin(self.run(attempt))
    }
}

/// Shared by [`KafkaExecutor::new`] and the renewal after a fatal error.
fn create_producer(config: &KafkaConfig) -> Result<FutureProducer, Error> {
    ClientConfig::new()
        .set("bootstrap.servers", &config.brokers)
        .set("client.id", &config.client_id)
        // Exactly one copy per send in the log, in order, even when
        // librdkafka retries internally: the broker deduplicates.
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("message.timeout.ms", config.delivery_timeout_ms.to_string())
        .set("message.max.bytes", PRODUCER_REQUEST_BYTES_MAX.to_string())
        .set(
            "topic.metadata.propagation.max.ms",
            config.unknown_topic_wait_ms.to_string(),
        )
        .create()
        .map_err(|source| Error::Producer {
            brokers: config.brokers.clone(),
            source,
        })
}

fn check_config(config: &KafkaConfig) -> Result<(), Error> {
    if config.brokers.trim().is_empty() {
        return Err(Error::Config(format!(
            "no brokers: give `{KAFKA_BROKERS_FLAG} host:port[,host:port…]` or set {KAFKA_BROKERS_ENV}"
        )));
    }
    if config.message_bytes_max == 0 || config.message_bytes_max >= PRODUCER_REQUEST_BYTES_MAX {
        return Err(Error::Config(format!(
            "message_bytes_max must be between 1 and {} (the producer's request limit leaves room for framing)",
            PRODUCER_REQUEST_BYTES_MAX - 1
        )));
    }
    if config.delivery_timeout_ms == 0 {
        return Err(Error::Config(
            "delivery_timeout_ms must be at least 1".to_owned(),
        ));
    }
    Ok(())
}
