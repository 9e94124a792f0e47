//! The Kafka side of a real `imx serve` process against a real broker
//! (tansu, from `scripts/test-kafka`): Kafka triggers (`triggers`) and the
//! log relay (`relay`). Here: the broker, topics, a producer and a reader,
//! and the served node, which is SIGKILLed and restarted by the tests.

mod relay;
mod triggers;

use std::process::Stdio;
use std::time::Duration;

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::{Header, Message, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};
use testkit::kafka;
pub use testkit::kafka::brokers;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// How long the broker may take to create a topic or take a message.
const BROKER_WAIT_MS_MAX: u64 = 15_000;
/// Consumer group session timeout of the served nodes: short, so that a
/// SIGKILLed node's partitions move on quickly.
pub const SESSION_TIMEOUT_MS: &str = "6000";

/// A topic of this test alone.
pub fn fresh_topic(name: &str) -> String {
    format!("imx-it.{name}.{}", uuid::Uuid::now_v7().simple())
}

/// Creates `topic` with `partitions` partitions.
pub async fn create_topic(brokers: &str, topic: &str, partitions: i32) {
    kafka::create_topic(brokers, topic, partitions, &[]).await;
}

pub fn producer(brokers: &str) -> FutureProducer {
    ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .create()
        .expect("a producer")
}

/// Publishes `value` to `partition` of `topic`; its offset.
pub async fn publish(
    producer: &FutureProducer,
    topic: &str,
    partition: i32,
    value: &[u8],
    headers: &[(&str, &str)],
) -> i64 {
    let mut owned = OwnedHeaders::new();
    for (key, value) in headers {
        owned = owned.insert(Header {
            key,
            value: Some(*value),
        });
    }
    let record = FutureRecord::<str, [u8]>::to(topic)
        .partition(partition)
        .payload(value)
        .headers(owned);
    let delivery = producer
        .send(record, Duration::from_millis(BROKER_WAIT_MS_MAX))
        .await
        .unwrap_or_else(|(error, _)| panic!("publishing to {topic} failed: {error}"));
    delivery.offset
}

/// One consumed record, as text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    pub partition: i32,
    pub offset: i64,
    pub key: Option<String>,
    pub value: String,
    pub headers: Vec<(String, String)>,
}

impl Record {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .rev()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }
}

/// A reader of every partition of `topic` from its start, in no group.
pub fn reader(brokers: &str, topic: &str, partitions: i32) -> StreamConsumer {
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set(
            "group.id",
            format!("imx-it-reader-{}", uuid::Uuid::now_v7().simple()),
        )
        .set("enable.auto.commit", "false")
        .create()
        .expect("a consumer");
    let mut assignment = TopicPartitionList::new();
    for partition in 0..partitions {
        assignment
            .add_partition_offset(topic, partition, Offset::Beginning)
            .expect("an assignment");
    }
    consumer.assign(&assignment).expect("assign the partitions");
    consumer
}

/// The next record `consumer` reads, or `None` after `wait` without one.
pub async fn next_record(consumer: &StreamConsumer, wait: Duration) -> Option<Record> {
    let message = tokio::time::timeout(wait, consumer.recv()).await.ok()?;
    let message = message.expect("a record");
    let headers = kafka::headers(&message);
    Some(Record {
        partition: message.partition(),
        offset: message.offset(),
        key: message.key().map(kafka::text),
        value: message.payload().map(kafka::text).unwrap_or_default(),
        headers,
    })
}

/// A served node: `imx serve` on `url` with Kafka brokers and `extra` flags.
pub struct Served {
    pub child: Child,
    /// `host:port` of its API.
    pub address: String,
}

impl Served {
    pub async fn start(url: &str, brokers: &str, extra: &[&str]) -> Served {
        let mut child = Command::new(env!("CARGO_BIN_EXE_imx"))
            .args(["--database-url", url, "serve", "--listen", "127.0.0.1:0"])
            .args(["--insecure-no-auth", "--lease-ms", "1000"])
            .args(["--kafka-brokers", brokers])
            .args(["--kafka-session-timeout-ms", SESSION_TIMEOUT_MS])
            .args(extra)
            .stderr(Stdio::piped())
            .stdout(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("imx serve starts");
        let mut lines = BufReader::new(child.stderr.take().expect("stderr")).lines();
        let address = tokio::time::timeout(crate::api::WAIT, async {
            while let Ok(Some(line)) = lines.next_line().await {
                if let Some(rest) = line.split("API on http://").nth(1) {
                    return rest.split('/').next().map(str::to_owned);
                }
            }
            None
        })
        .await
        .expect("imx serve comes up in time")
        .expect("imx serve names its API address");
        // Keep draining its log so that it never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Served { child, address }
    }

    /// SIGKILL: no graceful anything.
    pub async fn kill(mut self) {
        self.child.kill().await.expect("SIGKILL imx serve");
    }

    /// SIGTERM, and the exit status is success.
    pub async fn stop(mut self) {
        let pid = self.child.id().expect("a pid").to_string();
        let killed = Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .await
            .expect("kill runs");
        assert!(killed.success());
        let status = tokio::time::timeout(crate::api::WAIT, self.child.wait())
            .await
            .expect("imx serve stops in time")
            .expect("an exit status");
        assert_eq!(status.code(), Some(0), "imx serve exits cleanly");
    }

    pub async fn metrics(&self) -> String {
        reqwest::get(format!("http://{}/metrics", self.address))
            .await
            .expect("GET /metrics")
            .text()
            .await
            .expect("the metrics text")
    }
}

/// A new SQLite store in the test's temporary folder.
pub fn database_url(name: &str) -> String {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("{name}-{}", uuid::Uuid::now_v7().simple()));
    format!("sqlite://{}/imx.db", dir.display())
}

pub use testkit::poll::until_some;
