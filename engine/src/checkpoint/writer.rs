//! The checkpoint writer `imx serve --signing-key` runs: every
//! `every_events` events or `every_ms` (whichever comes first, and only when
//! the log grew) it builds the Merkle tree up to the log's head, signs a
//! checkpoint, hands it to every witness (file, URL, Kafka topic; before the
//! database, so a checkpoint in the database is always also outside it,
//! barring a crash in between) and stores it. One writer among all nodes: the lease row
//! `CHECKPOINT_LEASE_NAME` of the relay table, fenced by its token. A crash
//! at any point loses nothing: checkpoints cover prefixes of the log, so the
//! next one covers every event appended before it.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::{Checkpoint, Error, PrivateKey};
use crate::store::{CheckpointRecord, EventStore};

/// Events between checkpoints by default (`--checkpoint-every-events`).
pub const CHECKPOINT_EVERY_EVENTS_DEFAULT: u64 = 1_000;
/// Longest time between checkpoints of a growing log by default, in ms
/// (`--checkpoint-every-ms`).
pub const CHECKPOINT_EVERY_MS_DEFAULT: u64 = 60_000;
/// The writer's lease (a row of the relay table): after a crash another
/// node writes checkpoints after at most this long.
pub const CHECKPOINT_LEASE_MS: u64 = 30_000;
/// The lease row's name.
pub const CHECKPOINT_LEASE_NAME: &str = "imx-checkpoints";
/// How often the writer looks at the log's head, in ms (at most).
pub const CHECKPOINT_POLL_MS_MAX: u64 = 500;
/// How long a witness URL or topic may take to accept a checkpoint, in ms.
pub const WITNESS_POST_TIMEOUT_MS: u64 = 10_000;

/// Where checkpoints go besides the database.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Witness {
    /// Appended (and synced) to this file, one note after another.
    File(PathBuf),
    /// POSTed to this URL (`text/plain`, the note); any 2xx answer is
    /// taken as kept.
    Url(String),
    /// Published to this Kafka topic (key = the origin, value = the note,
    /// header `imx-tree-size`), acknowledged by all in-sync replicas.
    Topic { brokers: String, topic: String },
}

/// The writer's settings.
#[derive(Clone, Debug)]
pub struct Config {
    pub key: Arc<PrivateKey>,
    /// The log's name, the note's first line.
    pub origin: String,
    pub every_events: u64,
    pub every_ms: u64,
    pub witnesses: Vec<Witness>,
    /// This node's name in the lease.
    pub holder: String,
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// Sends the note to a witness URL.
async fn post(url: &str, note: &str) -> Result<(), Error> {
    let failed = |detail: String| Error::Witness {
        target: url.to_owned(),
        detail,
    };
    let answer = reqwest::Client::builder()
        .timeout(Duration::from_millis(WITNESS_POST_TIMEOUT_MS))
        .build()
        .map_err(|error| failed(error.to_string()))?
        .post(url)
        .header("content-type", "text/plain; charset=utf-8")
        .body(note.to_owned())
        .send()
        .await
        .map_err(|error| failed(error.to_string()))?;
    if !answer.status().is_success() {
        return Err(failed(format!("answered {}", answer.status())));
    }
    Ok(())
}

fn witness(path: &std::path::Path, note: &str) -> Result<(), Error> {
    let failed = |error: std::io::Error| Error::Witness {
        target: path.display().to_string(),
        detail: error.to_string(),
    };
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(failed)?;
    // A blank line between notes (docs/checkpoints.md).
    file.write_all(format!("{note}\n").as_bytes())
        .map_err(failed)?;
    file.sync_data().map_err(failed)
}

/// Signs and records a checkpoint of the log's head, unless the newest
/// checkpoint already has that size (or the log is empty).
pub async fn checkpoint_once<S: EventStore>(
    store: &S,
    config: &Config,
) -> Result<Option<CheckpointRecord>, Error> {
    let head = store.log_head().await?;
    let latest = store.latest_checkpoint().await?;
    if head.position == 0 || latest.is_some_and(|latest| latest.tree_size >= head.position) {
        return Ok(None);
    }
    let root = crate::merkle::root_at(store, head.position).await?;
    let checkpoint = Checkpoint {
        origin: config.origin.clone(),
        tree_size: head.position,
        root,
        log_hash: head.log_hash,
        time_ms: now_ms(),
    };
    let note = checkpoint.sign(&config.key);
    for target in &config.witnesses {
        match target {
            Witness::File(path) => {
                let (path, note) = (path.clone(), note.clone());
                // File I/O (and fsync) off the async workers.
                tokio::task::spawn_blocking(move || witness(&path, &note))
                    .await
                    .map_err(|error| Error::Witness {
                        target: "a witness file".to_owned(),
                        detail: error.to_string(),
                    })??;
            }
            Witness::Url(url) => post(url, &note).await?,
            Witness::Topic { brokers, topic } => {
                super::topic::publish(brokers, topic, &config.origin, checkpoint.tree_size, &note)
                    .await?;
            }
        }
    }
    let record = CheckpointRecord {
        tree_size: checkpoint.tree_size,
        key_id: config.key.public().key_id,
        root: hex::encode(checkpoint.root),
        log_hash: checkpoint.log_hash,
        signed_at_ms: checkpoint.time_ms,
        note,
    };
    store.append_checkpoint(&record).await?;
    Ok(Some(record))
}

/// A running writer; [`Handle::shutdown`] stops it and frees its lease.
#[derive(Debug)]
pub struct Handle {
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl Handle {
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        if let Err(failed) = self.task.await
            && failed.is_panic()
        {
            std::panic::resume_unwind(failed.into_panic());
        }
    }
}

/// Starts the writer in a task.
pub fn spawn<S: EventStore + 'static>(store: Arc<S>, config: Config) -> Handle {
    let (stop, mut stopped) = watch::channel(false);
    let task = tokio::spawn(async move {
        let token = uuid::Uuid::now_v7().to_string();
        let poll = Duration::from_millis(config.every_ms.clamp(1, CHECKPOINT_POLL_MS_MAX));
        let mut last_at = now_ms();
        while !*stopped.borrow() {
            if let Err(error) = round(&*store, &config, &token, &mut last_at).await {
                tracing::warn!(%error, "checkpoint writer: will try again");
            }
            tokio::select! {
                _ = tokio::time::sleep(poll) => {}
                _ = stopped.changed() => {}
            }
        }
        let _ = store.release_relay(CHECKPOINT_LEASE_NAME, &token).await;
    });
    Handle { stop, task }
}

/// One look at the log: take or renew the lease, checkpoint when due.
async fn round<S: EventStore>(
    store: &S,
    config: &Config,
    token: &str,
    last_at: &mut i64,
) -> Result<(), Error> {
    let Some(lease) = store
        .acquire_relay(
            CHECKPOINT_LEASE_NAME,
            &config.holder,
            token,
            CHECKPOINT_LEASE_MS,
        )
        .await?
    else {
        return Ok(());
    };
    let head = store.log_head().await?.position;
    let due_by_count = head >= lease.position.saturating_add(config.every_events.max(1));
    let due_by_time = head > lease.position
        && now_ms().saturating_sub(*last_at) >= i64::try_from(config.every_ms).unwrap_or(i64::MAX);
    let mut position = lease.position;
    if due_by_count || due_by_time {
        if let Some(record) = checkpoint_once(store, config).await? {
            tracing::info!(tree_size = record.tree_size, key_id = %record.key_id, "checkpoint signed");
            position = record.tree_size;
        } else if let Some(latest) = store.latest_checkpoint().await? {
            position = position.max(latest.tree_size);
        }
        *last_at = now_ms();
    }
    store
        .advance_relay(CHECKPOINT_LEASE_NAME, token, position, CHECKPOINT_LEASE_MS)
        .await?;
    Ok(())
}
