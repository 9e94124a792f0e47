//! `imx serve`'s Kafka side beyond `kafka.publish`: the Kafka triggers (on
//! every node with `--kafka-brokers`) and the log relay (`--relay-topic`),
//! their flags, and their counters in `/metrics`.

use std::sync::Arc;

use anyhow::Context;
use clap::Args;
use engine::runtime::Runtime;
use engine::store::Store;
use engine::triggers::kafka::{
    KafkaTriggerConfig, KafkaTriggers, Outcome, SESSION_TIMEOUT_MS_DEFAULT, TriggerStats,
    start_kafka_triggers,
};
use engine::triggers::relay::{
    LineWriter, RELAY_LEASE_MS_DEFAULT, RelayConfig, RelayHandle, start_relay,
};
use prometheus::core::{Collector, Desc};
use prometheus::proto::MetricFamily;
use prometheus::{IntCounterVec, Opts};

/// Flags of the Kafka triggers and the relay.
#[derive(Debug, Clone, Args)]
pub struct KafkaTriggerArgs {
    /// Publish the global event log, in position order, to this Kafka topic
    /// (needs `--kafka-brokers`); one node among those given it relays at a time.
    #[arg(long = "relay-topic", env = "IMX_RELAY_TOPIC", value_name = "TOPIC")]
    pub relay_topic: Option<String>,
    /// The relay's lease, in ms: after a crash, another node takes over
    /// the relay after at most this long.
    #[arg(long = "relay-lease-ms", env = "IMX_RELAY_LEASE_MS", default_value_t = RELAY_LEASE_MS_DEFAULT)]
    pub relay_lease_ms: u64,
    /// Consumer group session timeout of the Kafka triggers, in ms: how long
    /// a crashed node's partitions wait before the group hands them on.
    #[arg(
        long = "kafka-session-timeout-ms",
        env = "IMX_KAFKA_SESSION_TIMEOUT_MS",
        default_value_t = SESSION_TIMEOUT_MS_DEFAULT
    )]
    pub session_timeout_ms: u64,
}

/// The running triggers and relay of a node.
#[derive(Debug, Default)]
pub struct Running {
    triggers: Option<KafkaTriggers>,
    relay: Option<RelayHandle>,
}

impl Running {
    /// The triggers' counters, when they run.
    pub fn stats(&self) -> Option<Arc<TriggerStats>> {
        self.triggers.as_ref().map(KafkaTriggers::stats)
    }

    pub async fn shutdown(self) {
        if let Some(relay) = self.relay {
            relay.shutdown().await;
        }
        if let Some(triggers) = self.triggers {
            triggers.shutdown().await;
        }
    }
}

/// Starts the Kafka triggers when the node has brokers, and the relay when
/// asked for (which needs brokers).
pub fn start(
    runtime: &Arc<Runtime<Store>>,
    brokers: Option<&str>,
    args: &KafkaTriggerArgs,
) -> anyhow::Result<Running> {
    let Some(brokers) = brokers else {
        if args.relay_topic.is_some() {
            anyhow::bail!(
                "IMX0606: `--relay-topic` needs Kafka brokers: add `--kafka-brokers HOST:PORT` (IMX_KAFKA_BROKERS)"
            );
        }
        return Ok(Running::default());
    };
    let node = &runtime.config().node;
    let mut config = KafkaTriggerConfig::new(brokers, node);
    config.session_timeout_ms = args.session_timeout_ms;
    let triggers =
        start_kafka_triggers(runtime.clone(), config).context("cannot start the Kafka triggers")?;
    let relay = match &args.relay_topic {
        Some(topic) => {
            let mut config = RelayConfig::new(brokers, topic, node);
            config.lease_ms = args.relay_lease_ms;
            let line: LineWriter = Arc::new(export_line);
            let relay = start_relay(runtime.store().clone(), config, line)
                .context("cannot start the log relay")?;
            eprintln!("imx serve: relaying the event log to Kafka topic `{topic}`");
            Some(relay)
        }
        None => None,
    };
    Ok(Running {
        triggers: Some(triggers),
        relay,
    })
}

/// The event's line exactly as `imx replay export` writes it (without the newline).
fn export_line(event: &engine::store::RecordedEvent) -> Vec<u8> {
    let mut line = Vec::with_capacity(1024);
    // Writing a struct of strings, numbers and a JSON value into memory cannot fail.
    let _ = replay::export::write_event_line(&mut line, event);
    line
}

/// `/metrics`' view of the Kafka triggers, read from their counters at every scrape.
pub struct TriggerCollector {
    stats: Arc<TriggerStats>,
    messages: IntCounterVec,
    dead_letters: IntCounterVec,
}

impl std::fmt::Debug for TriggerCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TriggerCollector").finish_non_exhaustive()
    }
}

impl TriggerCollector {
    pub fn new(stats: Arc<TriggerStats>) -> Result<TriggerCollector, prometheus::Error> {
        Ok(TriggerCollector {
            stats,
            messages: messages_vec()?,
            dead_letters: dead_letters_vec()?,
        })
    }
}

fn messages_vec() -> Result<IntCounterVec, prometheus::Error> {
    IntCounterVec::new(
        Opts::new(
            "imx_kafka_trigger_messages_total",
            "Messages a Kafka trigger of this node handled, by outcome (started, existing, dead_letter)",
        ),
        &["workflow", "trigger", "outcome"],
    )
}

fn dead_letters_vec() -> Result<IntCounterVec, prometheus::Error> {
    IntCounterVec::new(
        Opts::new(
            "imx_kafka_trigger_dead_letters_total",
            "Messages a Kafka trigger of this node sent to its dead-letter topic, by reason",
        ),
        &["workflow", "trigger", "reason"],
    )
}

impl Collector for TriggerCollector {
    fn desc(&self) -> Vec<&Desc> {
        let mut descs = self.messages.desc();
        descs.extend(self.dead_letters.desc());
        descs
    }

    fn collect(&self) -> Vec<MetricFamily> {
        // Fresh vectors per scrape: the counters live in the engine.
        let (Ok(messages), Ok(dead_letters)) = (messages_vec(), dead_letters_vec()) else {
            return Vec::new();
        };
        for ((workflow, trigger, outcome), count) in self.stats.snapshot() {
            let label = match outcome {
                Outcome::Started => "started",
                Outcome::Existing => "existing",
                Outcome::DeadLettered(reason) => {
                    dead_letters
                        .with_label_values(&[&workflow, &trigger, reason.label()])
                        .inc_by(count);
                    "dead_letter"
                }
            };
            messages
                .with_label_values(&[&workflow, &trigger, label])
                .inc_by(count);
        }
        let mut families = messages.collect();
        families.extend(dead_letters.collect());
        families
    }
}
