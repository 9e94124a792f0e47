//! Checkpoints in a Kafka topic (`--checkpoint-topic`): the writer
//! publishes each note, acknowledged by all in-sync replicas, before the
//! database; `imx replay verify --checkpoints-topic` reads every note back.

use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Header, Message, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};

use super::{Error, WITNESS_POST_TIMEOUT_MS};

/// The record header carrying the checkpoint's tree size (decimal).
pub const TREE_SIZE_HEADER: &str = "imx-tree-size";
/// How long reading a witness topic back may take in all, in ms.
pub const TOPIC_READ_MS_MAX: u64 = 60_000;

fn failed(brokers: &str, topic: &str, detail: impl ToString) -> Error {
    Error::Witness {
        target: format!("Kafka topic {topic} at {brokers}"),
        detail: detail.to_string(),
    }
}

/// Publishes `note` (key = the origin) and waits for the acknowledgement.
/// A producer per checkpoint: checkpoints are seconds apart, and a fresh
/// client never carries a broken connection over.
pub(super) async fn publish(
    brokers: &str,
    topic: &str,
    origin: &str,
    tree_size: u64,
    note: &str,
) -> Result<(), Error> {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("client.id", "imx-checkpoints")
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("message.timeout.ms", WITNESS_POST_TIMEOUT_MS.to_string())
        .create()
        .map_err(|error| failed(brokers, topic, error))?;
    let size = tree_size.to_string();
    let record =
        FutureRecord::to(topic)
            .key(origin)
            .payload(note)
            .headers(OwnedHeaders::new().insert(Header {
                key: TREE_SIZE_HEADER,
                value: Some(&size),
            }));
    producer
        .send(record, Duration::from_millis(WITNESS_POST_TIMEOUT_MS))
        .await
        .map_err(|(error, _)| failed(brokers, topic, error))?;
    Ok(())
}

/// Every record value of `topic` (all partitions, oldest first per
/// partition) up to the end it has when the call starts, at most
/// `bytes_max` bytes in all. Blocking: call it off the async workers.
pub fn read_topic(brokers: &str, topic: &str, bytes_max: u64) -> Result<Vec<String>, Error> {
    let deadline = Instant::now() + Duration::from_millis(TOPIC_READ_MS_MAX);
    let left = || deadline.saturating_duration_since(Instant::now());
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", "imx-replay-checkpoints")
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .create()
        .map_err(|error| failed(brokers, topic, error))?;
    let metadata = consumer
        .fetch_metadata(Some(topic), left())
        .map_err(|error| failed(brokers, topic, error))?;
    let partitions: Vec<i32> = metadata
        .topics()
        .iter()
        .filter(|found| found.name() == topic && found.error().is_none())
        .flat_map(|found| found.partitions().iter().map(|p| p.id()))
        .collect();
    if partitions.is_empty() {
        return Err(failed(brokers, topic, "no such topic"));
    }
    let mut assignment = TopicPartitionList::new();
    let mut ends = std::collections::HashMap::new();
    for partition in partitions {
        let (low, high) = consumer
            .fetch_watermarks(topic, partition, left())
            .map_err(|error| failed(brokers, topic, error))?;
        if high > low {
            ends.insert(partition, high);
            assignment
                .add_partition_offset(topic, partition, Offset::Offset(low))
                .map_err(|error| failed(brokers, topic, error))?;
        }
    }
    consumer
        .assign(&assignment)
        .map_err(|error| failed(brokers, topic, error))?;
    let mut notes = Vec::new();
    let mut bytes = 0u64;
    while !ends.is_empty() {
        if left().is_zero() {
            return Err(failed(
                brokers,
                topic,
                format!("not read to its end within {TOPIC_READ_MS_MAX} ms"),
            ));
        }
        let Some(message) = consumer.poll(left().min(Duration::from_millis(500))) else {
            continue;
        };
        let message = message.map_err(|error| failed(brokers, topic, error))?;
        let Some(&end) = ends.get(&message.partition()) else {
            continue;
        };
        if let Some(value) = message.payload() {
            bytes += value.len() as u64;
            if bytes > bytes_max {
                return Err(failed(
                    brokers,
                    topic,
                    format!("more than {bytes_max} bytes of checkpoints"),
                ));
            }
            let note = String::from_utf8(value.to_vec()).map_err(|_| {
                failed(
                    brokers,
                    topic,
                    format!("the record at offset {} is not UTF-8", message.offset()),
                )
            })?;
            notes.push(note);
        }
        if message.offset() + 1 >= end {
            ends.remove(&message.partition());
        }
    }
    Ok(notes)
}
