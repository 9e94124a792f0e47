//! The `kafka.publish` executor against a real Kafka-protocol broker (tansu,
//! started by `scripts/test-kafka`): topics created with the admin client,
//! messages read back with a real consumer. `flows` runs the example
//! workflows that publish (plugged into `executor::flows`' backends macro).

pub mod flows;
mod publish;
mod trigger_message;

use std::time::Duration;

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::{Offset, TopicPartitionList};
use testkit::kafka;
pub use testkit::kafka::brokers;

/// How long creating a topic or reading a message back may take.
const BROKER_WAIT_MS_MAX: u64 = 15_000;

/// Creates `topic` with one partition (and `config` entries).
pub async fn create_topic(brokers: &str, topic: &str, config: &[(&str, &str)]) {
    kafka::create_topic(brokers, topic, 1, config).await;
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
    Read {
        key: message.key().map(kafka::text),
        value: message.payload().map(kafka::text),
        headers: kafka::headers(message),
    }
}

/// A loopback address where nothing listens (bound, then released).
pub fn dead_broker() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
    let address = listener.local_addr().expect("bound address");
    drop(listener);
    address.to_string()
}
