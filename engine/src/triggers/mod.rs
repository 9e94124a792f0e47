//! What starts runs besides an explicit start, carried out by `imx serve`:
//! cron schedules, signed webhooks and Kafka consumers; and the relay that
//! publishes the event log to Kafka. Every trigger starts its run through
//! `Runtime::start_run` with an idempotency key derived from what fired
//! (the scheduled instant, the delivery id, the topic/partition/offset), so
//! a redelivery or a second node starts nothing new, and records what fired
//! in `run.started` (`TriggerContext`).

pub mod cron;
pub mod kafka;
pub mod relay;
pub mod webhook;

use std::sync::Arc;

use sha2::{Digest, Sha256};

use crate::core::workflow::Workflow;
use crate::runtime::{self, IDEMPOTENCY_KEY_BYTES_MAX, Runtime};
use crate::store::{EventStore, WORKFLOWS_LIST_MAX};

/// The newest registered version of every workflow, loaded through the
/// runtime's cache: the versions whose triggers fire (runs started by a
/// trigger are pinned to the version that read what fired).
pub async fn newest_workflows<S: EventStore>(
    runtime: &Runtime<S>,
) -> Result<Vec<(Arc<Workflow>, String)>, runtime::Error> {
    let newest = runtime.store().newest_workflow_versions().await?;
    if newest.len() >= WORKFLOWS_LIST_MAX as usize {
        tracing::warn!(
            limit = WORKFLOWS_LIST_MAX,
            "the registry lists its maximum of workflows; triggers of workflows past it are not seen"
        );
    }
    let mut loaded = Vec::with_capacity(newest.len());
    for (name, version) in newest {
        loaded.push(runtime.workflow(&name, Some(&version)).await?);
    }
    Ok(loaded)
}

/// A run's idempotency key from what fired: `<kind>:<parts joined by ':'>`,
/// or `<kind>:sha256:<hex of that text>` when it would be longer than
/// [`IDEMPOTENCY_KEY_BYTES_MAX`] (long names): still one key per fire.
pub fn run_key(kind: &str, parts: &[&str]) -> String {
    let key = format!("{kind}:{}", parts.join(":"));
    if key.len() <= IDEMPOTENCY_KEY_BYTES_MAX {
        return key;
    }
    format!(
        "{kind}:sha256:{}",
        hex::encode(Sha256::digest(key.as_bytes()))
    )
}
