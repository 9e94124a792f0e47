//! The test Kafka broker (tansu, started by `scripts/test-kafka` on a
//! loopback port): its address, topics, and reading records as text.

use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::error::RDKafkaErrorCode;
use rdkafka::message::{BorrowedMessage, Headers, Message};

/// Names the test broker's address (`scripts/test-kafka` exports it).
pub const BROKERS_ENV: &str = "IMX_TEST_KAFKA_BROKERS";
/// How long the broker may take to create a topic.
pub const TOPIC_CREATE_MS_MAX: u64 = 15_000;

/// The test broker's address; `None` (after a loud note) when unset, a
/// failure when unset under `CI=true`.
pub fn brokers() -> Option<String> {
    match std::env::var(BROKERS_ENV) {
        Ok(brokers) if !brokers.is_empty() => Some(brokers),
        _ if std::env::var("CI").is_ok_and(|ci| ci == "true") => {
            panic!("{BROKERS_ENV} is unset: run `eval \"$(scripts/test-kafka)\"` before the tests")
        }
        _ => {
            eprintln!(
                "\n!!!!!! SKIPPED: a Kafka test did NOT run: {BROKERS_ENV} is unset.\n\
                 !!!!!! Run `eval \"$(scripts/test-kafka)\"` first (CI=true turns this into a failure).\n"
            );
            None
        }
    }
}

/// Creates `topic` with `partitions` partitions and `config` entries; an
/// existing topic is fine (tests running side by side share the examples').
pub async fn create_topic(brokers: &str, topic: &str, partitions: i32, config: &[(&str, &str)]) {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .expect("an admin client");
    let mut new_topic = NewTopic::new(topic, partitions, TopicReplication::Fixed(1));
    for (key, value) in config {
        new_topic = new_topic.set(key, value);
    }
    let options =
        AdminOptions::new().operation_timeout(Some(Duration::from_millis(TOPIC_CREATE_MS_MAX)));
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

/// UTF-8 bytes of a record as text (tests publish text only).
pub fn text(bytes: &[u8]) -> String {
    String::from_utf8(bytes.to_vec()).expect("UTF-8")
}

/// A record's headers as (name, text value), in order.
pub fn headers(message: &BorrowedMessage<'_>) -> Vec<(String, String)> {
    message
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
        .unwrap_or_default()
}
