//! Prometheus metrics of one node: API operations, and run and step
//! outcomes as seen in the global log tail (so they count work done by any
//! node on the database), plus the queue depth read at scrape time.

use std::collections::HashMap;
use std::sync::Mutex;

use chrono::{DateTime, Utc};
use engine::store::RecordedEvent;
use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts,
    Registry, TextEncoder,
};

/// Step attempts whose start is remembered to time them; older ones are dropped.
pub const TIMED_ATTEMPTS_MAX: usize = 10_000;

/// The smallest append histogram bucket: appends are sub-millisecond on SQLite.
pub const APPEND_BUCKET_SECONDS_MIN: f64 = 0.000_05;
/// Append buckets, doubling from the smallest (up to about 1.6 s).
pub const APPEND_BUCKETS: usize = 16;

/// (run, step, index, attempt).
type AttemptKey = (uuid::Uuid, String, Option<u64>, u64);

/// Every metric the API exports.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    pub api_operations: IntCounterVec,
    pub api_seconds: Histogram,
    pub runs_started: IntCounter,
    pub runs_finished: IntCounterVec,
    pub step_seconds: HistogramVec,
    pub append_seconds: Histogram,
    pub queue_depth: IntGauge,
    pub expired_leases: IntGauge,
    pub log_position: IntGauge,
    pub subscriptions: IntGauge,
    /// Webhook requests by outcome (`accepted`, `refused`) and reason.
    pub webhooks: IntCounterVec,
    /// (run, step, index, attempt) -> start time, for the step histogram.
    started: Mutex<HashMap<AttemptKey, DateTime<Utc>>>,
}

/// Decrements the subscription gauge when a subscription ends.
#[derive(Debug)]
pub struct SubscriptionGuard(IntGauge);

impl Drop for SubscriptionGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}

impl Metrics {
    pub fn new() -> Result<Metrics, prometheus::Error> {
        let registry = Registry::new();
        let api_operations = IntCounterVec::new(
            Opts::new("imx_api_operations_total", "GraphQL operations by outcome"),
            &["outcome"],
        )?;
        let api_seconds = Histogram::with_opts(HistogramOpts::new(
            "imx_api_operation_duration_seconds",
            "Time to answer one GraphQL operation over HTTP",
        ))?;
        let runs_started = IntCounter::new("imx_runs_started_total", "Runs started (log tail)")?;
        let runs_finished = IntCounterVec::new(
            Opts::new(
                "imx_runs_finished_total",
                "Runs finished by status (log tail)",
            ),
            &["status"],
        )?;
        let step_seconds = HistogramVec::new(
            HistogramOpts::new(
                "imx_step_duration_seconds",
                "Step attempt time from start (or scheduling, for pure kinds) to result, by kind (log tail)",
            ),
            &["kind", "outcome"],
        )?;
        let append_seconds = Histogram::with_opts(
            HistogramOpts::new(
                "imx_append_seconds",
                "Time of one store append by this node's runtime",
            )
            .buckets(prometheus::exponential_buckets(
                APPEND_BUCKET_SECONDS_MIN,
                2.0,
                APPEND_BUCKETS,
            )?),
        )?;
        let queue_depth = IntGauge::new("imx_queue_depth", "Tasks in the work queue (at scrape)")?;
        let expired_leases = IntGauge::new(
            "imx_expired_leases",
            "Tasks whose lease expired without completion (at scrape)",
        )?;
        let log_position = IntGauge::new("imx_log_position", "Global log position tailed")?;
        let subscriptions = IntGauge::new("imx_api_subscriptions", "Open subscriptions")?;
        let webhooks = IntCounterVec::new(
            Opts::new(
                "imx_webhooks_total",
                "Webhook requests to this node by outcome (accepted, refused) and reason",
            ),
            &["outcome", "reason"],
        )?;
        registry.register(Box::new(api_operations.clone()))?;
        registry.register(Box::new(api_seconds.clone()))?;
        registry.register(Box::new(runs_started.clone()))?;
        registry.register(Box::new(runs_finished.clone()))?;
        registry.register(Box::new(step_seconds.clone()))?;
        registry.register(Box::new(append_seconds.clone()))?;
        registry.register(Box::new(queue_depth.clone()))?;
        registry.register(Box::new(expired_leases.clone()))?;
        registry.register(Box::new(log_position.clone()))?;
        registry.register(Box::new(subscriptions.clone()))?;
        registry.register(Box::new(webhooks.clone()))?;
        Ok(Metrics {
            registry,
            api_operations,
            api_seconds,
            runs_started,
            runs_finished,
            step_seconds,
            append_seconds,
            queue_depth,
            expired_leases,
            log_position,
            subscriptions,
            webhooks,
            started: Mutex::new(HashMap::new()),
        })
    }

    pub fn subscription_guard(&self) -> SubscriptionGuard {
        self.subscriptions.inc();
        SubscriptionGuard(self.subscriptions.clone())
    }

    /// Counts one webhook request: `accepted` (`started`, `redelivery`) or
    /// `refused` (the reason, docs/triggers-webhook.md).
    pub fn count_webhook(&self, outcome: &str, reason: &str) {
        self.webhooks.with_label_values(&[outcome, reason]).inc();
    }

    /// Counts one event of the global log; `kind` labels a step's duration.
    pub fn observe_event(&self, event: &RecordedEvent, kind: &str) {
        let payload = &event.payload;
        let field = |name: &str| payload.get(name);
        let key = || {
            (
                event.run_id,
                field("step")
                    .and_then(|v| v.as_str())
                    .unwrap_or_default()
                    .to_owned(),
                field("index").and_then(|v| v.as_u64()),
                field("attempt").and_then(|v| v.as_u64()).unwrap_or(0),
            )
        };
        let at = || {
            field("at")
                .and_then(|v| v.as_str())
                .and_then(|text| DateTime::parse_from_rfc3339(text).ok())
                .map(|at| at.with_timezone(&Utc))
        };
        let mut started = self.started.lock().unwrap_or_else(|p| p.into_inner());
        match event.event_type.as_str() {
            "run.started" => self.runs_started.inc(),
            "run.succeeded" => self.runs_finished.with_label_values(&["succeeded"]).inc(),
            "run.failed" => self.runs_finished.with_label_values(&["failed"]).inc(),
            "run.cancelled" => self.runs_finished.with_label_values(&["cancelled"]).inc(),
            // Pure kinds (noop, sleep) have no `step.started`: they are timed
            // from scheduling; an executor's `step.started` restarts the clock
            // so that its histogram holds the attempt, not the queue wait.
            "step.scheduled" | "step.started" => {
                if started.len() >= TIMED_ATTEMPTS_MAX {
                    started.clear();
                }
                if let Some(at) = at() {
                    started.insert(key(), at);
                }
            }
            "step.succeeded" | "step.failed" => {
                if let (Some(begin), Some(end)) = (started.remove(&key()), at()) {
                    let outcome = &event.event_type["step.".len()..];
                    let seconds = (end - begin).num_microseconds().unwrap_or(0) as f64 / 1e6;
                    self.step_seconds
                        .with_label_values(&[kind, outcome])
                        .observe(seconds.max(0.0));
                }
            }
            _ => {}
        }
    }

    /// Adds a collector that other parts of the node feed (read at scrape).
    pub fn register(
        &self,
        collector: Box<dyn prometheus::core::Collector>,
    ) -> Result<(), prometheus::Error> {
        self.registry.register(collector)
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut buffer = Vec::new();
        let encoder = TextEncoder::new();
        if let Err(error) = encoder.encode(&self.registry.gather(), &mut buffer) {
            tracing::warn!(%error, "encoding metrics failed");
        }
        String::from_utf8(buffer).unwrap_or_default()
    }
}
