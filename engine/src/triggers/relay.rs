//! The log relay (`imx serve --relay-topic T`): publishes the global event
//! log, in position order, to one Kafka topic, each event as the line
//! `imx replay export` writes for it, keyed by run id (a run's events stay
//! in one partition, in order). The position lives in the database
//! ([`Relay`]) and advances only after the broker acknowledged every record
//! up to it (idempotent producer, `acks=all`); one node among many relays,
//! by a lease in the same row that fences a node whose lease was taken
//! over. A crash resumes at the stored position: no gap, and duplicates
//! (records past the stored position) carry their position in a header.

use std::sync::Arc;
use std::time::Duration;

use rdkafka::config::ClientConfig;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::kafka::Error;
use crate::chain::RecordedEvent;
use crate::store::{LogReader, Relay};

/// The `imx serve` flag that turns the relay on (the topic to publish to).
pub const RELAY_TOPIC_FLAG: &str = "--relay-topic";
/// The environment variable with the same meaning.
pub const RELAY_TOPIC_ENV: &str = "IMX_RELAY_TOPIC";
/// How long a relay's lease lasts without renewal, in ms: after a SIGKILL,
/// another node (or the restarted one) takes over after at most this long.
pub const RELAY_LEASE_MS_DEFAULT: u64 = 10_000;
/// Events read from the log and published per batch (the position advances
/// once per batch).
pub const RELAY_BATCH_EVENTS_MAX: u32 = 500;
/// How often an idle relay looks for new events (and renews its lease), and
/// how often a node without the lease tries to take it, in ms.
pub const RELAY_IDLE_POLL_MS: u64 = 100;
/// Wait after a failed batch (broker or database unreachable) before the
/// batch is read and published again, in ms.
pub const RELAY_RETRY_MS: u64 = 1_000;
/// Largest record (the event line plus key and headers) the relay
/// publishes, in bytes; the topic's `max.message.bytes` must be at least
/// this (the broker default, about 1 MB, holds all but the largest events).
pub const RELAY_RECORD_BYTES_MAX: usize = 2 * 1024 * 1024;
// An event line is its payload plus its own fields, and the headers repeat a few of them.
const _: () = assert!(
    crate::store::PAYLOAD_BYTES_MAX + 2 * crate::store::EVENT_FIELDS_BYTES_MAX
        <= RELAY_RECORD_BYTES_MAX
);

/// Header: the event's global log position (decimal).
pub const HEADER_POSITION: &str = "imx-position";
/// Header: the event's seq in its run (decimal).
pub const HEADER_SEQ: &str = "imx-seq";
/// Header: the event type (`step.succeeded`).
pub const HEADER_TYPE: &str = "imx-type";
/// Header: the event's run-chain hash.
pub const HEADER_HASH: &str = "imx-hash";
/// Header: the event's log-chain hash.
pub const HEADER_LOG_HASH: &str = "imx-log-hash";

/// Turns an event into the record value: the export's event line (the
/// gateway passes `imx replay export`'s line writer; the engine cannot
/// depend on the replay crate, which depends on it).
pub type LineWriter = Arc<dyn Fn(&RecordedEvent) -> Vec<u8> + Send + Sync>;

/// How this node relays.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RelayConfig {
    /// Bootstrap servers, `host:port[,host:port…]`.
    pub brokers: String,
    /// The topic to publish to; also the relay's name in the database.
    pub topic: String,
    /// This node's name in the lease.
    pub holder: String,
    pub lease_ms: u64,
    pub batch_events_max: u32,
    pub idle_poll_ms: u64,
    pub retry_ms: u64,
}

impl RelayConfig {
    /// The defaults, relaying to `topic` on `brokers` as `holder`.
    pub fn new(brokers: &str, topic: &str, holder: &str) -> RelayConfig {
        RelayConfig {
            brokers: brokers.to_owned(),
            topic: topic.to_owned(),
            holder: holder.to_owned(),
            lease_ms: RELAY_LEASE_MS_DEFAULT,
            batch_events_max: RELAY_BATCH_EVENTS_MAX,
            idle_poll_ms: RELAY_IDLE_POLL_MS,
            retry_ms: RELAY_RETRY_MS,
        }
    }

    fn check(&self) -> Result<(), Error> {
        let problem = if self.brokers.trim().is_empty() {
            format!("the relay needs brokers: give `--kafka-brokers` with `{RELAY_TOPIC_FLAG}`")
        } else if self.topic.trim().is_empty() {
            format!("`{RELAY_TOPIC_FLAG}` is empty")
        } else if self.lease_ms < 2 * self.idle_poll_ms.max(1) {
            format!(
                "the relay lease ({} ms) must be at least twice the idle poll ({} ms), or it \
                 expires between renewals",
                self.lease_ms, self.idle_poll_ms
            )
        } else if self.batch_events_max == 0 {
            "the relay batch must hold at least one event".to_owned()
        } else {
            return Ok(());
        };
        Err(Error::Config(problem))
    }

    /// librdkafka's delivery timeout: well inside the lease, so a batch the
    /// broker does not take fails (and is retried) before the lease runs out.
    fn delivery_timeout_ms(&self) -> u64 {
        (self.lease_ms / 2).max(1)
    }
}

/// A running relay; [`RelayHandle::shutdown`] stops it and releases its lease.
#[derive(Debug)]
pub struct RelayHandle {
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl RelayHandle {
    /// Stops after the batch in flight and releases the lease, so another
    /// node takes over without waiting for it to expire.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        if let Err(failed) = self.task.await
            && failed.is_panic()
        {
            std::panic::resume_unwind(failed.into_panic());
        }
    }
}

/// Checks `config`, creates the producer and starts relaying in a task.
pub fn start_relay<S>(
    store: Arc<S>,
    config: RelayConfig,
    line: LineWriter,
) -> Result<RelayHandle, Error>
where
    S: Relay + LogReader + 'static,
{
    config.check()?;
    let producer = producer(&config)?;
    let (stop, stopped) = watch::channel(false);
    let relay = Relayer {
        store,
        config,
        line,
        producer,
        stopped,
    };
    let task = tokio::spawn(relay.run());
    Ok(RelayHandle { stop, task })
}

fn producer(config: &RelayConfig) -> Result<FutureProducer, Error> {
    ClientConfig::new()
        .set("bootstrap.servers", &config.brokers)
        .set("client.id", format!("imx-relay-{}", config.holder))
        // One copy per send, in order per partition, even across librdkafka's own retries.
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set(
            "message.timeout.ms",
            config.delivery_timeout_ms().to_string(),
        )
        .set("message.max.bytes", RELAY_RECORD_BYTES_MAX.to_string())
        .create()
        .map_err(|source| Error::Client {
            what: "the relay's producer",
            brokers: config.brokers.clone(),
            source,
        })
}

/// Why relaying under one lease ended.
enum Ended {
    /// Another node holds the lease now.
    LeaseLost,
    Stopped,
}

struct Relayer<S> {
    store: Arc<S>,
    config: RelayConfig,
    line: LineWriter,
    producer: FutureProducer,
    stopped: watch::Receiver<bool>,
}

impl<S: Relay + LogReader + 'static> Relayer<S> {
    async fn run(mut self) {
        loop {
            let token = uuid::Uuid::now_v7().to_string();
            let acquired = self
                .store
                .acquire_relay(
                    &self.config.topic,
                    &self.config.holder,
                    &token,
                    self.config.lease_ms,
                )
                .await;
            match acquired {
                Ok(Some(lease)) => {
                    tracing::info!(topic = %self.config.topic, position = lease.position, "relay lease taken");
                    match self.relay(&token, lease.position).await {
                        Ended::Stopped => {
                            let _ = self.store.release_relay(&self.config.topic, &token).await;
                            return;
                        }
                        Ended::LeaseLost => {
                            tracing::warn!(topic = %self.config.topic, "relay lease lost to another node")
                        }
                    }
                }
                Ok(None) => {}
                Err(error) => tracing::warn!(%error, "relay: taking the lease failed"),
            }
            if self.pause(self.config.idle_poll_ms).await {
                return;
            }
        }
    }

    /// Relays from `position` while `token` holds the lease.
    async fn relay(&mut self, token: &str, mut position: u64) -> Ended {
        loop {
            if *self.stopped.borrow() {
                return Ended::Stopped;
            }
            let wait = match self.batch(token, position).await {
                Ok(Some(next)) if next > position => {
                    position = next;
                    continue;
                }
                Ok(Some(_)) => self.config.idle_poll_ms,
                Ok(None) => return Ended::LeaseLost,
                Err(problem) => {
                    tracing::warn!(topic = %self.config.topic, position, %problem, "relay batch failed; retrying");
                    self.config.retry_ms
                }
            };
            if self.pause(wait).await {
                return Ended::Stopped;
            }
        }
    }

    /// Publishes the events after `position` (one batch), waits for every
    /// acknowledgement, then records the new position and renews the lease.
    /// `Ok(None)`: the lease is gone.
    async fn batch(&self, token: &str, position: u64) -> Result<Option<u64>, String> {
        let events = self
            .store
            .read_log(position, self.config.batch_events_max)
            .await
            .map_err(|error| error.to_string())?;
        let mut deliveries = Vec::with_capacity(events.len());
        for event in &events {
            deliveries.push((event.position, self.send(event)?));
        }
        let mut acknowledged = position;
        for (at, delivery) in deliveries {
            match delivery.await {
                Ok(Ok(_)) => acknowledged = at,
                Ok(Err((error, _))) => {
                    return Err(format!(
                        "the brokers {} did not take the record of position {at} for `{}`: {error}",
                        self.config.brokers, self.config.topic
                    ));
                }
                Err(_) => return Err("the producer dropped a delivery".to_owned()),
            }
        }
        let held = self
            .store
            .advance_relay(
                &self.config.topic,
                token,
                acknowledged,
                self.config.lease_ms,
            )
            .await
            .map_err(|error| error.to_string())?;
        Ok(held.then_some(acknowledged))
    }

    /// Queues one event's record; librdkafka sends in queue order.
    fn send(&self, event: &RecordedEvent) -> Result<DeliveryFuture, String> {
        let value = (self.line)(event);
        let key = event.run_id.to_string();
        let (position, seq) = (event.position.to_string(), event.seq.to_string());
        let headers = OwnedHeaders::new_with_capacity(5)
            .insert(header(HEADER_POSITION, &position))
            .insert(header(HEADER_SEQ, &seq))
            .insert(header(HEADER_TYPE, &event.event_type))
            .insert(header(HEADER_HASH, &event.hash))
            .insert(header(HEADER_LOG_HASH, &event.log_hash));
        let record = FutureRecord::to(&self.config.topic)
            .key(key.as_str())
            .payload(value.as_slice())
            .headers(headers);
        self.producer.send_result(record).map_err(|(error, _)| {
            format!(
                "queueing the record of position {} for `{}` failed: {error} (a record is at \
                 most {RELAY_RECORD_BYTES_MAX} bytes; the topic's `max.message.bytes` must allow it)",
                event.position, self.config.topic
            )
        })
    }

    /// Waits `ms` or until stopped; true when stopped.
    async fn pause(&mut self, ms: u64) -> bool {
        if *self.stopped.borrow() {
            return true;
        }
        let wait = tokio::time::sleep(Duration::from_millis(ms));
        tokio::select! {
            () = wait => *self.stopped.borrow(),
            changed = self.stopped.changed() => changed.is_err() || *self.stopped.borrow(),
        }
    }
}

fn header<'a>(key: &'a str, value: &'a str) -> Header<'a, &'a str> {
    Header {
        key,
        value: Some(value),
    }
}
