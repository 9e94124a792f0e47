//! The global log tail: one task per server reads `read_log` from the head
//! it saw at start-up, woken by `wait_for_work` (or every
//! `subscription_poll_ms`, since appends without new work wake nobody), and
//! broadcasts each event to the subscriptions and the metrics.

use std::sync::Arc;
use std::time::Duration;

use engine::store::{EventStore, RecordedEvent, Store};
use tokio::sync::{broadcast, watch};

use super::metrics::Metrics;
use super::step_kinds::StepKinds;

/// Events buffered per subscriber before it counts as lagging.
pub const TAIL_BUFFER_EVENTS: usize = 4_096;
/// Events read per `read_log` call.
const READ_LOG_BATCH: u32 = 500;

/// The broadcast side of the tail.
#[derive(Debug)]
pub struct LogTail {
    sender: broadcast::Sender<Arc<RecordedEvent>>,
    shutdown: watch::Receiver<bool>,
}

impl LogTail {
    /// Starts tailing after the log's current head.
    pub async fn start(
        store: Arc<Store>,
        poll: Duration,
        shutdown: watch::Receiver<bool>,
        metrics: Arc<Metrics>,
    ) -> Result<Arc<LogTail>, engine::store::Error> {
        let head = store.log_head().await?;
        let (sender, _) = broadcast::channel(TAIL_BUFFER_EVENTS);
        let tail = Arc::new(LogTail {
            sender: sender.clone(),
            shutdown: shutdown.clone(),
        });
        tokio::spawn(follow(
            store,
            head.position,
            poll,
            sender,
            shutdown,
            metrics,
        ));
        Ok(tail)
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Arc<RecordedEvent>> {
        self.sender.subscribe()
    }

    /// Flips to true when the server shuts down.
    pub fn shutdown(&self) -> watch::Receiver<bool> {
        self.shutdown.clone()
    }
}

async fn follow(
    store: Arc<Store>,
    mut position: u64,
    poll: Duration,
    sender: broadcast::Sender<Arc<RecordedEvent>>,
    mut shutdown: watch::Receiver<bool>,
    metrics: Arc<Metrics>,
) {
    let mut kinds = StepKinds::new(store.clone());
    loop {
        if *shutdown.borrow() {
            return;
        }
        match store.read_log(position, READ_LOG_BATCH).await {
            Ok(batch) => {
                let full = batch.len() as u32 == READ_LOG_BATCH;
                for event in batch {
                    position = event.position;
                    let kind = match event.event_type.as_str() {
                        "step.succeeded" | "step.failed" => kinds.kind(&event).await,
                        _ => super::step_kinds::KIND_UNKNOWN,
                    };
                    metrics.observe_event(&event, kind);
                    // No receiver is fine: nobody subscribes right now.
                    let _ = sender.send(Arc::new(event));
                }
                metrics.log_position.set(position as i64);
                if full {
                    continue;
                }
            }
            Err(error) => tracing::warn!(%error, "reading the global log failed; retrying"),
        }
        tokio::select! {
            _ = shutdown.changed() => {}
            _ = store.wait_for_work(poll) => {}
        }
    }
}
