//! The log relay of a real `imx serve` against a real broker: a consumer
//! reads the relay topic while the relaying node is SIGKILLed and
//! restarted; what it read, deduplicated by position, is line for line
//! what `imx replay export` writes for the same store.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use engine::runtime::{Config, Runtime, StartRequest};
use engine::store::prelude::*;
use engine::store::{RunQuery, Store};
use serde_json::{Value, json};

use super::{
    Record, Served, brokers, create_topic, database_url, fresh_topic, next_record, reader,
    until_some,
};

/// Runs started while the relay works.
const RUNS: usize = 40;
const PARTITIONS: i32 = 3;
/// How long relaying everything may take (including one lease expiry).
const RELAYED_MS_MAX: u64 = 120_000;

const WORKFLOW: &str = "name: relayed\n\
    input: { type: object, required: [n] }\n\
    steps:\n\
    \x20 a: { uses: noop, with: { n: \"{{ input.n }}\" } }\n\
    \x20 b: { needs: [a], uses: noop, with: { n: \"{{ input.n }}\" } }\n\
    \x20 c: { needs: [b], uses: noop }\n";

/// Reads records into `read` (by position) until `head` positions are in.
async fn read_until(
    consumer: &rdkafka::consumer::StreamConsumer,
    read: &mut BTreeMap<u64, Vec<Record>>,
    head: u64,
) {
    let deadline = tokio::time::Instant::now() + Duration::from_millis(RELAYED_MS_MAX);
    while (read.len() as u64) < head {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let record = next_record(consumer, left)
            .await
            .unwrap_or_else(|| panic!("only {} of {head} positions relayed in time", read.len()));
        let position: u64 = record
            .header("imx-position")
            .expect("a position header")
            .parse()
            .expect("a decimal position");
        read.entry(position).or_default().push(record);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_relayed_log_deduplicated_by_position_is_the_export_across_a_sigkill() {
    let Some(brokers) = brokers() else { return };
    let topic = fresh_topic("relay");
    create_topic(&brokers, &topic, PARTITIONS).await;
    let url = database_url("kafka-relay");
    let store = Arc::new(engine::store::open(&url).await.expect("open the store"));
    let runtime = Runtime::new(store.clone(), Vec::new(), Config::default());
    runtime.register_source(WORKFLOW).await.expect("register");
    let relay = ["--relay-topic", topic.as_str(), "--relay-lease-ms", "1000"];
    let consumer = reader(&brokers, &topic, PARTITIONS);
    let mut read = BTreeMap::new();

    let first = Served::start(&url, &brokers, &relay).await;
    for n in 0..RUNS / 2 {
        start(&runtime, n).await;
    }
    read_until(&consumer, &mut read, 20).await;
    first.kill().await;
    for n in RUNS / 2..RUNS {
        start(&runtime, n).await;
    }
    let second = Served::start(&url, &brokers, &relay).await;
    every_run_succeeded(&store).await;
    let head = store.log_head().await.expect("the head").position;
    read_until(&consumer, &mut read, head).await;
    second.stop().await;

    let exported = crate::imx(&["--database-url", &url, "replay", "export"]);
    assert_eq!(exported.code, 0, "{}", exported.stderr);
    let lines: Vec<&str> = exported.stdout.lines().collect();
    let events = &lines[1..lines.len() - 1];
    assert_eq!(events.len() as u64, head, "the export holds the whole log");
    assert_eq!(
        read.keys().copied().collect::<Vec<_>>(),
        (1..=head).collect::<Vec<_>>(),
        "every position relayed, none beyond the log"
    );
    for (line, (position, copies)) in events.iter().zip(&read) {
        for record in copies {
            assert_eq!(
                record.value, *line,
                "position {position} is the export's line"
            );
            let event: Value = serde_json::from_str(line).expect("an event line");
            let header = |name| record.header(name).map(str::to_owned);
            assert_eq!(
                json!({
                    "key": record.key, "seq": header("imx-seq"), "type": header("imx-type"),
                    "hash": header("imx-hash"), "log_hash": header("imx-log-hash"),
                }),
                json!({
                    "key": event["run_id"], "seq": event["seq"].to_string(),
                    "type": event["event_type"], "hash": event["hash"],
                    "log_hash": event["log_hash"],
                }),
                "position {position}: key and headers name the event"
            );
        }
    }
}

async fn start(runtime: &Runtime<Store>, n: usize) {
    runtime
        .start_run(StartRequest {
            workflow: "relayed".to_owned(),
            input: json!({ "n": n }),
            ..Default::default()
        })
        .await
        .expect("start a run");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_nodes_given_the_relay_topic_publish_each_position_once() {
    let Some(brokers) = brokers() else { return };
    let topic = fresh_topic("relay-two");
    create_topic(&brokers, &topic, PARTITIONS).await;
    let url = database_url("kafka-relay-two");
    let store = Arc::new(engine::store::open(&url).await.expect("open the store"));
    let runtime = Runtime::new(store.clone(), Vec::new(), Config::default());
    runtime.register_source(WORKFLOW).await.expect("register");
    let relay = ["--relay-topic", topic.as_str()];
    let one = Served::start(&url, &brokers, &relay).await;
    let two = Served::start(&url, &brokers, &relay).await;
    for n in 0..RUNS {
        start(&runtime, n).await;
    }
    every_run_succeeded(&store).await;
    let head = store.log_head().await.expect("the head").position;
    let consumer = reader(&brokers, &topic, PARTITIONS);
    let mut read = BTreeMap::new();
    read_until(&consumer, &mut read, head).await;
    one.stop().await;
    two.stop().await;
    // Two active relays would both start at position 1: their copies
    // would be among the records read up to the head.
    let twice: Vec<_> = read
        .iter()
        .filter(|(_, copies)| copies.len() > 1)
        .map(|(position, _)| *position)
        .collect();
    assert_eq!(twice, Vec::<u64>::new(), "positions published twice");
    let lease = store
        .relay_lease(&topic)
        .await
        .expect("read the lease")
        .expect("the relay's row");
    assert_eq!(lease.position, head, "the stored position is the head");
}

/// Waits (up to `RELAYED_MS_MAX`) until all `RUNS` runs succeeded.
async fn every_run_succeeded(store: &Store) {
    let wait = Duration::from_millis(RELAYED_MS_MAX);
    until_some("every run finishing", wait, || async {
        let query = RunQuery {
            status: Some("succeeded".to_owned()),
            limit: 100,
            ..RunQuery::default()
        };
        let runs = store.list_runs(&query).await.ok()?;
        (runs.items.len() == RUNS).then_some(())
    })
    .await;
}
