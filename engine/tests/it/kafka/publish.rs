//! One `kafka.publish` attempt at a time, read back by a real consumer:
//! what a message carries, what a retry carries, and how failures are sorted.

use engine::core::workflow::StepKind;
use engine::executor::kafka::{IDEMPOTENCY_KEY_HEADER, MESSAGE_BYTES_MAX};
use engine::executor::{Attempt, Executor, KafkaConfig, KafkaExecutor, Outcome};
use expect_test::expect;
use serde_json::{Value, json};

use super::{Read, brokers, create_topic, dead_broker, read_back};
use crate::executor::{attempt, render, with_deadline_ms};

/// A topic of this test alone, so that offsets are predictable.
fn fresh_topic(name: &str) -> String {
    format!("imx-test.{name}.{}", uuid::Uuid::now_v7().simple())
}

fn executor(brokers: &str) -> KafkaExecutor {
    KafkaExecutor::new(KafkaConfig::new(brokers)).expect("a producer")
}

fn publish(input: Value) -> Attempt {
    attempt(StepKind::KafkaPublish, input)
}

/// `(partition, offset)` of a successful publish to `topic`.
fn delivered(outcome: &Outcome, topic: &str) -> (i32, i64) {
    let Outcome::Succeeded { output } = outcome else {
        panic!("the publish failed: {outcome:?}");
    };
    assert_eq!(output["topic"], topic, "{output}");
    let partition = output["partition"].as_i64().expect("a partition");
    let offset = output["offset"].as_i64().expect("an offset");
    (i32::try_from(partition).expect("a small partition"), offset)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_published_message_is_read_back_with_value_key_and_idempotency_key_header() {
    let Some(brokers) = brokers() else { return };
    let topic = fresh_topic("read-back");
    create_topic(&brokers, &topic, &[]).await;
    let executor = executor(&brokers);
    let keyed = publish(json!({
        "topic": topic, "key": "order-7", "value": { "total": 12.5, "items": ["tea"] },
        "headers": { "source": "shop", "version": 2 },
    }));
    let outcome = executor.execute(&keyed).await;
    let (partition, offset) = delivered(&outcome, &topic);
    assert_eq!((partition, offset), (0, 0));
    let key_header = |key: &str| (IDEMPOTENCY_KEY_HEADER.to_owned(), key.to_owned());
    assert_eq!(
        read_back(&brokers, &topic, partition, offset).await,
        Read {
            key: Some("order-7".to_owned()),
            value: Some(r#"{"items":["tea"],"total":12.5}"#.to_owned()),
            headers: vec![
                ("source".to_owned(), "shop".to_owned()),
                ("version".to_owned(), "2".to_owned()),
                key_header(&keyed.idempotency_key),
            ],
        }
    );
    // No key: the idempotency key is the key; a string value is JSON text.
    let unkeyed = publish(json!({ "topic": topic, "value": "plain text" }));
    let (partition, offset) = delivered(&executor.execute(&unkeyed).await, &topic);
    assert_eq!(
        read_back(&brokers, &topic, partition, offset).await,
        Read {
            key: Some(unkeyed.idempotency_key.clone()),
            value: Some(r#""plain text""#.to_owned()),
            headers: vec![key_header(&unkeyed.idempotency_key)],
        }
    );
    // No value at all: a message without one (a tombstone).
    let tombstone = publish(json!({ "topic": topic, "key": "order-7" }));
    let (partition, offset) = delivered(&executor.execute(&tombstone).await, &topic);
    let read = read_back(&brokers, &topic, partition, offset).await;
    assert_eq!((read.key.as_deref(), read.value), (Some("order-7"), None));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_attempt_carries_the_same_key_and_idempotency_key() {
    let Some(brokers) = brokers() else { return };
    let topic = fresh_topic("retry");
    create_topic(&brokers, &topic, &[]).await;
    let executor = executor(&brokers);
    let first = publish(json!({ "topic": topic, "value": { "n": 1 } }));
    let retry = Attempt {
        attempt: 2,
        ..first.clone()
    };
    let mut reads = Vec::new();
    for attempt in [&first, &retry] {
        let (partition, offset) = delivered(&executor.execute(attempt).await, &topic);
        reads.push(read_back(&brokers, &topic, partition, offset).await);
    }
    assert_eq!(reads[0], reads[1], "both attempts send the same message");
    assert_eq!(
        reads[0].key.as_deref(),
        Some(first.idempotency_key.as_str())
    );
    assert_eq!(
        reads[0].headers,
        [(
            IDEMPOTENCY_KEY_HEADER.to_owned(),
            first.idempotency_key.clone()
        )]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_that_is_down_fails_the_attempt_retryably() {
    // Needs no broker: nothing listens at the address on purpose.
    let dead = dead_broker();
    let executor = executor(&dead);
    let input = json!({ "topic": "orders", "value": 1 });
    let by_deadline = executor
        .execute(&with_deadline_ms(publish(input.clone()), 700))
        .await;
    let mut config = KafkaConfig::new(&dead);
    config.delivery_timeout_ms = 500;
    let quick = KafkaExecutor::new(config).expect("a producer");
    let by_delivery_timeout = quick.execute(&publish(input)).await;
    let replace = [(dead.as_str(), "BROKER")];
    let lines = [by_deadline, by_delivery_timeout]
        .iter()
        .map(|outcome| render(outcome, &replace).replace(char::is_numeric, "9"))
        .collect::<Vec<_>>()
        .join("\n");
    expect![[r#"
        failed(retryable) no acknowledgement for the message to `orders` from the Kafka brokers BROKER within 999 ms (the attempt's deadline): are they running and reachable from this node? The message may still arrive; consumers deduplicate by the `imx-idempotency-key` header
        failed(retryable) no acknowledgement for the message to `orders` from the Kafka brokers BROKER within 999 ms (the delivery timeout): are they running and reachable from this node? The message may still arrive; consumers deduplicate by the `imx-idempotency-key` header"#]]
    .assert_eq(&lines);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_message_fails_for_good_before_anything_is_sent() {
    let Some(brokers) = brokers() else { return };
    let topic = fresh_topic("large");
    create_topic(&brokers, &topic, &[]).await;
    let executor = executor(&brokers);
    // Value, key (the idempotency key) and headers together count: a value of
    // exactly the limit is over it; a message of exactly the limit fits.
    let at_limit = publish(json!({ "topic": topic, "value": "x".repeat(MESSAGE_BYTES_MAX - 2) }));
    let over = executor.execute(&at_limit).await;
    let room = at_limit.idempotency_key.len() * 2 + IDEMPOTENCY_KEY_HEADER.len() + 2;
    let fits = "x".repeat(MESSAGE_BYTES_MAX - room);
    let under = executor
        .execute(&publish(json!({ "topic": topic, "value": fits })))
        .await;
    let text = [over, under]
        .iter()
        .map(|outcome| render(outcome, &[(topic.as_str(), "TOPIC")]))
        .collect::<Vec<_>>()
        .join("\n");
    expect![[r#"
        failed(final) the message to `TOPIC` is 921701 bytes (value, key and headers), more than the limit of 921600 bytes; publish a reference to the data (a URL, an object store key) instead of the data itself
        ok {"offset":0,"partition":0,"topic":"TOPIC"}"#]]
    .assert_eq(&text);
    // Nothing of the refused message reached the topic: the one that fit is first.
    let read = read_back(&brokers, &topic, 0, 0).await;
    assert_eq!(
        read.value.map(|value| value.len()),
        Some(MESSAGE_BYTES_MAX - room + 2)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_topic_the_broker_does_not_have_fails_for_good() {
    let Some(brokers) = brokers() else { return };
    let topic = fresh_topic("missing");
    let outcome = executor(&brokers)
        .execute(&publish(json!({ "topic": topic, "value": 1 })))
        .await;
    expect!["failed(final) topic `TOPIC` does not exist on the Kafka brokers BROKERS, and they do not create topics on demand: create it (`kafka-topics.sh --create --topic TOPIC`) or fix `with.topic`"].assert_eq(&render(
        &outcome,
        &[(topic.as_str(), "TOPIC"), (brokers.as_str(), "BROKERS")],
    ));
}

#[tokio::test]
async fn invalid_with_fails_for_good_naming_the_field() {
    // Checked before anything is sent: no broker needed.
    let executor = executor(&dead_broker());
    let cases = [
        json!(null),
        json!([1]),
        json!({ "value": 1 }),
        json!({ "topic": 7, "value": 1 }),
        json!({ "topic": "", "value": 1 }),
        json!({ "topic": "..", "value": 1 }),
        json!({ "topic": "orders/eu", "value": 1 }),
        json!({ "topic": "t".repeat(250), "value": 1 }),
        json!({ "topic": "orders", "key": { "id": 1 }, "value": 1 }),
        json!({ "topic": "orders", "headers": ["a"], "value": 1 }),
        json!({ "topic": "orders", "headers": { "a": { "b": 1 } }, "value": 1 }),
        json!({ "topic": "orders", "headers": { "": "x" }, "value": 1 }),
        json!({ "topic": "orders", "headers": { "IMX-Idempotency-Key": "mine" }, "value": 1 }),
        json!({ "topic": "orders", "value": 1, "partition": 3 }),
    ];
    let mut lines = String::new();
    for input in cases {
        let outcome = executor.execute(&publish(input.clone())).await;
        let shown: String = input.to_string().chars().take(60).collect();
        lines.push_str(&format!("{shown} => {}\n", render(&outcome, &[])));
    }
    expect![[r#"
        null => failed(final) `with` is missing (uses kafka.publish)
        [1] => failed(final) `with` must be a mapping (uses kafka.publish), found a list
        {"value":1} => failed(final) `with.topic` is missing
        {"topic":7,"value":1} => failed(final) `with.topic` must be a string, found a number
        {"topic":"","value":1} => failed(final) `with.topic` is empty
        {"topic":"..","value":1} => failed(final) `with.topic` cannot be `..`
        {"topic":"orders/eu","value":1} => failed(final) `with.topic` `orders/eu` has the character '/'; topic names use only letters, digits, `.`, `_` and `-`
        {"topic":"tttttttttttttttttttttttttttttttttttttttttttttttttt => failed(final) `with.topic` is longer than 249 characters (Kafka's limit)
        {"key":{"id":1},"topic":"orders","value":1} => failed(final) `with.key` must be a string (or a number or boolean), found a mapping
        {"headers":["a"],"topic":"orders","value":1} => failed(final) `with.headers` must be a mapping, found a list
        {"headers":{"a":{"b":1}},"topic":"orders","value":1} => failed(final) `with.headers.a` must be a string, number or boolean, found a mapping
        {"headers":{"":"x"},"topic":"orders","value":1} => failed(final) `with.headers` has an empty header name
        {"headers":{"IMX-Idempotency-Key":"mine"},"topic":"orders"," => failed(final) `with.headers.IMX-Idempotency-Key` is reserved: imx sets `imx-idempotency-key` to the step's idempotency key on every message; remove it from `with.headers`
        {"partition":3,"topic":"orders","value":1} => failed(final) `with.partition` is not a field of `uses: kafka.publish` (known: topic, key, value, headers)
    "#]].assert_eq(&lines);
}
