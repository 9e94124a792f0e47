//! The `kafka.publish` executor against a real Kafka-protocol broker (tansu,
//! started by `scripts/test-kafka`): topics created with the admin client,
//! messages read back with a real consumer. `flows` runs the example
//! workflows that publish (plugged into `executor::flows`' backends macro).

pub mod flows;
mod publish;
mod trigger_message;

use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::error::RDKafkaErrorCode;
use rdkafka::message::{BorrowedMessage, Headers, Message};
use rdkafka::{Offset, TopicPartitionList};

/// How long creating a topic or reading a message back may take.
const BROKER_WAIT_MS_MAX: u64 = 15_000;

/// The test broker's address from `IMX_TEST_KAFKA_BROKERS`; `None` (after a
/// loud note) when unset, a failure when unset under `CI=true`.
pub fn brokers() -> Option<String> {
    match std::env::var("IMX_TEST_KAFKA_BROKERS") {
        Ok(brokers) if !brokers.is_empty() => Some(brokers),
        _ if std::env::var("CI").is_ok_and(|ci| ci == "true") => {
            panic!(
                "IMX_TEST_KAFKA_BROKERS is unset: run `eval \"$(scripts/test-kafka)\"` before the tests"
            );
        }
        _ => {
            eprintln!(
                "\n!!!!!! SKIPPED: a Kafka test did NOT run: IMX_TEST_KAFKA_BROKERS is unset.\n\
                 !!!!!! Run `eval \"$(scripts/test-kafka)\"` first (CI=true turns this into a failure).\n"
            );
            None
        }
    }
}

/// Creates `topic` with one partition (and `config` entries); an existing
/// topic is fine: tests running side by side share the examples' topics.
pub async fn create_topic(brokers: &str, topic: &str, config: &[(&str, &str)]) {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .expect("an admin client");
    let mut new_topic = NewTopic::new(topic, 1, TopicReplication::Fixed(1));
    for (key, value) in config {
        new_topic = new_topic.set(key, value);
    }
    let options =
        AdminOptions::new().operation_timeout(Some(Duration::from_millis(BROKER_WAIT_MS_MAX)));
    let results = admin
        .create_topics([&new_topic], &options)
        .await
        .expect("the create-topics request");
    for result in results {
        match result {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((name, code)) => panic!("creating topic {name} failed: {code}"),
        }
    }
}

/// One message as a consumer reads it: key, value and headers as text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Read {
    pub key: Option<String>,
    pub value: Option<String>,
    pub headers: Vec<(String, String)>,
}

/// Reads the message at `offset` of `topic`'s `partition` (taken from a
/// publish step's output), with a consumer of its own that joins no group.
pub async fn read_back(brokers: &str, topic: &str, partition: i32, offset: i64) -> Read {
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", "imx-tests-read-back")
        .set("enable.auto.commit", "false")
        .set("session.timeout.ms", "6000")
        .create()
        .expect("a consumer");
    let mut assignment = TopicPartitionList::new();
    assignment
        .add_partition_offset(topic, partition, Offset::Offset(offset))
        .expect("an assignment");
    consumer.assign(&assignment).expect("assign the partition");
    let limit = Duration::from_millis(BROKER_WAIT_MS_MAX);
    let message = tokio::time::timeout(limit, consumer.recv())
        .await
        .unwrap_or_else(|_| panic!("no message at {topic}/{partition}@{offset} within {limit:?}"))
        .expect("a message");
    assert_eq!(message.offset(), offset, "read the asked-for offset");
    read(&message)
}

fn read(message: &BorrowedMessage<'_>) -> Read {
    let text = |bytes: &[u8]| String::from_utf8(bytes.to_vec()).expect("UTF-8");
    let headers = message
        .headers()
        .map(|headers| {
            headers
                .iter()
                .map(|header| {
                    (
                        header.key.to_owned(),
                        header.value.map(text).unwrap_or_default(),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    Read {
        key: message.key().map(text),
        value: message.payload().map(text),
        headers,
    }
}

/// A loopback address where nothing listens (bound, then released).
pub fn dead_broker() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
    let address = listener.local_addr().expect("bound address");
    drop(listener);
    address.to_string()
}
