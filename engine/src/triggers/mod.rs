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

use sha2::{Digest, Sha256};

use crate::runtime::IDEMPOTENCY_KEY_BYTES_MAX;

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
