//! The global log tail: one task per server reads `read_log` from the head
//! it saw at start-up and broadcasts each event to the subscriptions and the
//! metrics. It reads again as soon as this node's runtime appended (the
//! wake is a stored permit, so an append made while a batch is being
//! handled is not lost), when the store announces new work (other nodes),
//! when `/metrics` asks it to catch up, and at the latest every
//! `subscription_poll_ms` (other nodes' appends that enqueue nothing).

use std::sync::Arc;
use std::time::Duration;

use engine::store::prelude::*;
use engine::store::{RecordedEvent, Store};
use tokio::sync::{Notify, broadcast, watch};

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
    wake: Arc<Notify>,
    /// The global position of the last event handled.
    position: watch::Receiver<u64>,
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
        let (position, position_seen) = watch::channel(head.position);
        let wake = Arc::new(Notify::new());
        let tail = Arc::new(LogTail {
            sender: sender.clone(),
            shutdown: shutdown.clone(),
            wake: Arc::clone(&wake),
            position: position_seen,
        });
        let reader = Reader {
            store,
            poll,
            sender,
            shutdown,
            metrics,
            wake,
            position,
        };
        tokio::spawn(reader.follow(head.position));
        Ok(tail)
    }

    /// Asks the tail to read now (something was appended).
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// Waits until the tail has handled every event up to `position`, at
    /// most `timeout`; false when it did not get there in time.
    pub async fn caught_up(&self, position: u64, timeout: Duration) -> bool {
        self.wake();
        let mut seen = self.position.clone();
        tokio::time::timeout(timeout, seen.wait_for(|handled| *handled >= position))
            .await
            .is_ok_and(|handled| handled.is_ok())
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Arc<RecordedEvent>> {
        self.sender.subscribe()
    }

    /// Flips to true when the server shuts down.
    pub fn shutdown(&self) -> watch::Receiver<bool> {
        self.shutdown.clone()
    }
}

/// The tail's reading task.
struct Reader {
    store: Arc<Store>,
    poll: Duration,
    sender: broadcast::Sender<Arc<RecordedEvent>>,
    shutdown: watch::Receiver<bool>,
    metrics: Arc<Metrics>,
    wake: Arc<Notify>,
    position: watch::Sender<u64>,
}

impl Reader {
    async fn follow(mut self, mut position: u64) {
        let mut kinds = StepKinds::new(self.store.clone());
        loop {
            if *self.shutdown.borrow() {
                return;
            }
            match self.store.read_log(position, READ_LOG_BATCH).await {
                Ok(batch) => {
                    let full = batch.len() as u32 == READ_LOG_BATCH;
                    for event in batch {
                        position = event.position;
                        let kind = match event.event_type.as_str() {
                            "run.started" => {
                                kinds.learn(&event);
                                super::step_kinds::KIND_UNKNOWN
                            }
                            "step.succeeded" | "step.failed" => kinds.kind(&event).await,
                            _ => super::step_kinds::KIND_UNKNOWN,
                        };
                        self.metrics.observe_event(&event, kind);
                        // No receiver is fine: nobody subscribes right now.
                        let _ = self.sender.send(Arc::new(event));
                    }
                    self.metrics.log_position.set(position as i64);
                    self.position.send_replace(position);
                    if full {
                        continue;
                    }
                }
                Err(error) => tracing::warn!(%error, "reading the global log failed; retrying"),
            }
            tokio::select! {
                _ = self.shutdown.changed() => {}
                () = self.wake.notified() => {}
                _ = self.store.wait_for_work(self.poll) => {}
            }
        }
    }
}
