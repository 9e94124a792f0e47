//! The dead-letter topic: a message that cannot start a run is published
//! there unchanged (key, value, its own headers), with headers saying why
//! and where it came from; the consumer moves on only after the broker
//! acknowledged it.

use std::time::Duration;

use rdkafka::message::{BorrowedMessage, Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::util::Timeout;

use super::{Error, KafkaTriggerConfig, Rejected, TriggerSpec};

/// Header: the reason's stable label (`not_json`, `invalid_input`, …).
pub const HEADER_DLQ_REASON: &str = "imx-dlq-reason";
/// Header: `IMX06xx: what was wrong` (for `invalid_input`, every problem with its JSON pointer).
pub const HEADER_DLQ_ERROR: &str = "imx-dlq-error";
/// Header: the topic the message was consumed from.
pub const HEADER_DLQ_TOPIC: &str = "imx-dlq-topic";
/// Header: its partition (decimal).
pub const HEADER_DLQ_PARTITION: &str = "imx-dlq-partition";
/// Header: its offset (decimal).
pub const HEADER_DLQ_OFFSET: &str = "imx-dlq-offset";
/// Header: the workflow whose trigger refused it.
pub const HEADER_DLQ_WORKFLOW: &str = "imx-dlq-workflow";
/// Header: that trigger's id.
pub const HEADER_DLQ_TRIGGER: &str = "imx-dlq-trigger";
/// Longest `imx-dlq-error` text, in bytes (cut at a character boundary).
pub const DLQ_ERROR_BYTES_MAX: usize = 4 * 1024;
/// How long the broker has to acknowledge a dead letter, in ms.
pub const DLQ_DELIVERY_TIMEOUT_MS: u64 = 10_000;

/// The node's dead-letter producer (idempotent, `acks=all`).
pub(super) fn producer(config: &KafkaTriggerConfig) -> Result<FutureProducer, Error> {
    let mut client = super::client_config(config);
    client.set("message.timeout.ms", DLQ_DELIVERY_TIMEOUT_MS.to_string());
    super::idempotent_producer(client, &config.brokers, "the dead-letter producer")
}

/// Publishes `message` to `spec`'s dead-letter topic; `Err` (to retry) when
/// the broker did not acknowledge it.
pub(super) async fn publish(
    producer: &FutureProducer,
    spec: &TriggerSpec,
    message: &BorrowedMessage<'_>,
    rejected: &Rejected,
) -> Result<(), String> {
    let error = cut(rejected.message(), DLQ_ERROR_BYTES_MAX);
    let (partition, offset) = (
        message.partition().to_string(),
        message.offset().to_string(),
    );
    let mut headers = OwnedHeaders::new();
    if let Some(original) = message.headers() {
        for header in original.iter() {
            headers = headers.insert(header);
        }
    }
    let ours: [(&str, &str); 7] = [
        (HEADER_DLQ_REASON, rejected.reason.label()),
        (HEADER_DLQ_ERROR, &error),
        (HEADER_DLQ_TOPIC, message.topic()),
        (HEADER_DLQ_PARTITION, &partition),
        (HEADER_DLQ_OFFSET, &offset),
        (HEADER_DLQ_WORKFLOW, &spec.workflow),
        (HEADER_DLQ_TRIGGER, &spec.trigger),
    ];
    for (key, value) in ours {
        headers = headers.insert(Header {
            key,
            value: Some(value),
        });
    }
    let mut record = FutureRecord::<[u8], [u8]>::to(&spec.dead_letter_topic).headers(headers);
    if let Some(key) = message.key() {
        record = record.key(key);
    }
    if let Some(value) = message.payload() {
        record = record.payload(value);
    }
    let timeout = Duration::from_millis(DLQ_DELIVERY_TIMEOUT_MS);
    match producer.send(record, Timeout::After(timeout)).await {
        Ok(_) => Ok(()),
        Err((error, _)) => Err(format!(
            "the dead-letter topic `{}` did not take the message {}/{}@{}: {error} (does the \
             topic exist?)",
            spec.dead_letter_topic,
            message.topic(),
            message.partition(),
            message.offset()
        )),
    }
}

/// `text` cut to at most `max` bytes at a character boundary.
fn cut(mut text: String, max: usize) -> String {
    if text.len() > max {
        let mut end = max;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
    text
}
