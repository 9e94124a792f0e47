//! Kafka triggers in a real `imx serve` against a real broker: one run per
//! message across a SIGKILL (offsets committed only after durable starts,
//! redeliveries start nothing new), and poison messages dead-lettered
//! without blocking their partition, counted in `/metrics`.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use engine::runtime::{Config, Runtime};
use engine::store::prelude::*;
use engine::store::{RecordedEvent, Store};
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::{Offset, TopicPartitionList};

use super::{
    Served, brokers, create_topic, database_url, fresh_topic, next_record, producer, publish,
    reader, until_some,
};

/// Messages that start runs in the crash test.
const MESSAGES: usize = 1_000;
const PARTITIONS: i32 = 3;
/// How long the runs of all messages may take to start.
const ALL_STARTED_MS_MAX: u64 = 180_000;

fn workflow(name: &str, topic: &str) -> String {
    format!(
        "name: {name}\n\
         input: {{ type: object, required: [n], properties: {{ n: {{ type: integer }} }} }}\n\
         triggers:\n  - kafka: {{ topic: {topic} }}\n\
         steps:\n  echo: {{ uses: noop, with: {{ n: \"{{{{ input.n }}}}\" }} }}\n"
    )
}

/// Registers `source` in the store at `url` (as `imx serve` reads it).
async fn register(url: &str, source: &str) -> Arc<Store> {
    let store = Arc::new(engine::store::open(url).await.expect("open the store"));
    let runtime = Runtime::new(store.clone(), Vec::new(), Config::default());
    runtime.register_source(source).await.expect("register");
    store
}

/// Every `run.started` in the log.
async fn starts(store: &Store) -> Vec<RecordedEvent> {
    let mut found = Vec::new();
    let mut after = 0;
    loop {
        let page = store.read_log(after, 1_000).await.expect("read the log");
        let Some(last) = page.last() else {
            return found;
        };
        after = last.position;
        found.extend(
            page.into_iter()
                .filter(|event| event.event_type == "run.started"),
        );
    }
}

/// (partition, offset) of the message that started each run.
fn started_by(events: &[RecordedEvent]) -> Vec<(i64, i64)> {
    events
        .iter()
        .map(|event| {
            let trigger = &event.payload["trigger"];
            assert_eq!(trigger["kind"], "kafka", "{trigger}");
            (
                trigger["partition"].as_i64().expect("a partition"),
                trigger["offset"].as_i64().expect("an offset"),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_thousand_messages_over_three_partitions_start_a_thousand_runs_across_a_sigkill() {
    let Some(brokers) = brokers() else { return };
    let topic = fresh_topic("orders");
    create_topic(&brokers, &topic, PARTITIONS).await;
    create_topic(&brokers, &format!("{topic}.dlq"), 1).await;
    let url = database_url("kafka-crash");
    let store = register(&url, &workflow("kafka-orders", &topic)).await;
    let producer = producer(&brokers);
    let mut published = BTreeSet::new();
    for n in 0..MESSAGES {
        let partition = (n % PARTITIONS as usize) as i32;
        let value = format!("{{\"n\": {n}}}");
        let offset = publish(&producer, &topic, partition, value.as_bytes(), &[]).await;
        published.insert((i64::from(partition), offset));
    }

    let first = Served::start(&url, &brokers, &[]).await;
    let wait = Duration::from_millis(ALL_STARTED_MS_MAX);
    until_some("a third of the runs starting", wait, || async {
        (starts(&store).await.len() >= MESSAGES / 3).then_some(())
    })
    .await;
    first.kill().await;
    let killed_at = starts(&store).await.len();
    assert!(killed_at < MESSAGES, "the kill came before the end");

    let second = Served::start(&url, &brokers, &[]).await;
    until_some("every message's run starting", wait, || async {
        (starts(&store).await.len() >= MESSAGES).then_some(())
    })
    .await;
    second.stop().await;

    let events = starts(&store).await;
    let runs: Vec<_> = started_by(&events);
    let distinct: BTreeSet<_> = runs.iter().copied().collect();
    assert_eq!(runs.len(), MESSAGES, "exactly one run per message");
    assert_eq!(distinct, published, "one run for each published offset");
    let inputs: BTreeSet<i64> = events
        .iter()
        .map(|event| event.payload["input"]["n"].as_i64().expect("n"))
        .collect();
    assert_eq!(
        inputs.len(),
        MESSAGES,
        "each message's value is its run's input"
    );

    // The graceful stop committed every offset: a node joining now would
    // start at the end of each partition.
    let committed = committed_offsets(&brokers, "imx.kafka-orders", &topic);
    let ends: Vec<i64> = (0..PARTITIONS)
        .map(|partition| {
            published
                .iter()
                .filter(|(p, _)| *p == i64::from(partition))
                .map(|(_, offset)| offset + 1)
                .max()
                .expect("messages in every partition")
        })
        .collect();
    assert_eq!(
        committed, ends,
        "committed offsets are the partitions' ends"
    );
}

/// The offsets `group` committed on `topic`'s partitions.
fn committed_offsets(brokers: &str, group: &str, topic: &str) -> Vec<i64> {
    let consumer: StreamConsumer = rdkafka::config::ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .create()
        .expect("a consumer");
    let mut partitions = TopicPartitionList::new();
    for partition in 0..PARTITIONS {
        partitions.add_partition(topic, partition);
    }
    let committed = consumer
        .committed_offsets(partitions, Duration::from_secs(15))
        .expect("the committed offsets");
    (0..PARTITIONS)
        .map(|partition| {
            match committed
                .find_partition(topic, partition)
                .expect("the partition")
                .offset()
            {
                Offset::Offset(offset) => offset,
                other => panic!("partition {partition}: no committed offset ({other:?})"),
            }
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn poison_messages_go_to_the_dead_letter_topic_and_the_partition_keeps_flowing() {
    let Some(brokers) = brokers() else { return };
    let topic = fresh_topic("poison");
    let dead_letters = format!("{topic}.dlq");
    create_topic(&brokers, &topic, 1).await;
    create_topic(&brokers, &dead_letters, 1).await;
    let url = database_url("kafka-poison");
    let store = register(&url, &workflow("kafka-poison", &topic)).await;
    let producer = producer(&brokers);
    let values: [&[u8]; 5] = [
        br#"{"n": 1}"#,
        b"not json",
        br#"{"n": "two"}"#,
        br#"{"n": 3}"#,
        br#"{"n": 4}"#,
    ];
    for value in values {
        publish(&producer, &topic, 0, value, &[("source", "test")]).await;
    }
    let served = Served::start(&url, &brokers, &[]).await;
    let wait = Duration::from_millis(60_000);
    let events = until_some("the good messages' runs", wait, || async {
        let events = starts(&store).await;
        (events.len() >= 3).then_some(events)
    })
    .await;
    assert_eq!(
        started_by(&events).into_iter().collect::<BTreeSet<_>>(),
        BTreeSet::from([(0, 0), (0, 3), (0, 4)]),
        "the messages after the poison ones started their runs"
    );

    let consumer = reader(&brokers, &dead_letters, 1);
    let mut records = Vec::new();
    while records.len() < 2 {
        let record = next_record(&consumer, Duration::from_secs(20))
            .await
            .expect("a dead letter within 20 s");
        records.push(record);
    }
    let reasons: Vec<_> = records
        .iter()
        .map(|record| {
            (
                record.header("imx-dlq-reason").expect("a reason"),
                record.header("imx-dlq-offset").expect("an offset"),
                record.header("imx-dlq-topic") == Some(topic.as_str()),
                record.header("imx-dlq-partition"),
                record.header("source"),
                record.value.as_str(),
            )
        })
        .collect();
    assert_eq!(
        reasons,
        [
            ("not_json", "1", true, Some("0"), Some("test"), "not json"),
            (
                "invalid_input",
                "2",
                true,
                Some("0"),
                Some("test"),
                r#"{"n": "two"}"#
            ),
        ]
    );
    let error = records[1].header("imx-dlq-error").expect("an error");
    assert!(
        error.starts_with("IMX0612: ") && error.contains("/n"),
        "{error}"
    );

    let expected = [
        r#"imx_kafka_trigger_messages_total{outcome="started",trigger="kafka",workflow="kafka-poison"} 3"#,
        r#"imx_kafka_trigger_messages_total{outcome="dead_letter",trigger="kafka",workflow="kafka-poison"} 2"#,
        r#"imx_kafka_trigger_dead_letters_total{reason="not_json",trigger="kafka",workflow="kafka-poison"} 1"#,
        r#"imx_kafka_trigger_dead_letters_total{reason="invalid_input",trigger="kafka",workflow="kafka-poison"} 1"#,
    ];
    // The counters move right after each message is done: poll the scrape.
    let counted = until_some("the trigger counters", wait, || async {
        let metrics = served.metrics().await;
        expected
            .iter()
            .all(|line| metrics.contains(line))
            .then_some(metrics)
    })
    .await;
    assert!(counted.contains("imx_kafka_trigger_messages_total"));
    served.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_example_workflows_kafka_triggers_start_a_run_from_a_published_message() {
    let Some(brokers) = brokers() else { return };
    let unique = uuid::Uuid::now_v7().simple().to_string();
    let examples = [
        (
            "payment-events",
            "payments",
            serde_json::json!({ "payment_id": unique, "amount": 12, "currency": "EUR" }),
        ),
        (
            "order-fulfilment",
            "orders",
            serde_json::json!({ "order_id": unique, "base_url": "http://127.0.0.1:9" }),
        ),
    ];
    let url = database_url("kafka-examples");
    let store = Arc::new(engine::store::open(&url).await.expect("open the store"));
    let runtime = Runtime::new(store.clone(), Vec::new(), Config::default());
    let producer = producer(&brokers);
    for (name, topic, _) in &examples {
        let path = crate::repo_root().join(format!("workflows/{name}.yaml"));
        let source = std::fs::read_to_string(path).expect("the example");
        runtime.register_source(&source).await.expect("register");
        // Shared with other runs of this test on the same broker: ours are
        // told apart by the unique id in the value.
        create_topic(&brokers, topic, 1).await;
        create_topic(&brokers, &format!("{topic}.dlq"), 1).await;
    }
    let served = Served::start(&url, &brokers, &[]).await;
    for (_, topic, value) in &examples {
        publish(&producer, topic, 0, value.to_string().as_bytes(), &[]).await;
    }
    let wait = Duration::from_millis(60_000);
    for (name, topic, value) in &examples {
        let started = until_some("the example's run", wait, || async {
            starts(&store).await.into_iter().find(|event| {
                event.payload["workflow"] == *name && event.payload["input"] == *value
            })
        })
        .await;
        let trigger = &started.payload["trigger"];
        assert_eq!(
            (&trigger["kind"], &trigger["trigger"], &trigger["topic"]),
            (&"kafka".into(), &"kafka".into(), &(*topic).into()),
            "{name}: {trigger}"
        );
    }
    served.stop().await;
}

/// Messages of the rebalance test.
const REBALANCED_MESSAGES: usize = 300;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_node_joining_and_a_node_leaving_the_group_start_each_message_once_on_postgres() {
    let Some(brokers) = brokers() else { return };
    let Some(database) = testkit::postgres::ScratchDatabase::create(
        "the Kafka rebalance test",
        "imx_kafka_rebalance",
        testkit::postgres::ClusterUse::Shared,
    )
    .await
    else {
        return;
    };
    let topic = fresh_topic("rebalance");
    create_topic(&brokers, &topic, PARTITIONS).await;
    create_topic(&brokers, &format!("{topic}.dlq"), 1).await;
    let store = register(&database.url, &workflow("kafka-rebalance", &topic)).await;
    let producer = producer(&brokers);
    let mut published = BTreeSet::new();
    for n in 0..REBALANCED_MESSAGES {
        let partition = (n % PARTITIONS as usize) as i32;
        let value = format!("{{\"n\": {n}}}");
        let offset = publish(&producer, &topic, partition, value.as_bytes(), &[]).await;
        published.insert((i64::from(partition), offset));
    }
    let wait = Duration::from_millis(ALL_STARTED_MS_MAX);
    let reached = |count: usize| {
        let store = store.clone();
        move || {
            let store = store.clone();
            async move { (starts(&store).await.len() >= count).then_some(()) }
        }
    };
    let leaving = Served::start(&database.url, &brokers, &[]).await;
    until_some(
        "a third of the runs",
        wait,
        reached(REBALANCED_MESSAGES / 3),
    )
    .await;
    // A second node joins: the group moves partitions to it.
    let joining = Served::start(&database.url, &brokers, &[]).await;
    until_some(
        "two thirds of the runs",
        wait,
        reached(2 * REBALANCED_MESSAGES / 3),
    )
    .await;
    // The first leaves cleanly: its partitions move to the second.
    leaving.stop().await;
    until_some("every run", wait, reached(REBALANCED_MESSAGES)).await;
    joining.stop().await;
    let runs = started_by(&starts(&store).await);
    assert_eq!(
        runs.len(),
        REBALANCED_MESSAGES,
        "exactly one run per message"
    );
    assert_eq!(runs.into_iter().collect::<BTreeSet<_>>(), published);
}
