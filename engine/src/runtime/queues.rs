//! Names of the store queues the runtime uses and the task and timer
//! payloads on them. Payloads never hold a step's input: it may contain
//! secrets, so the executing node renders it again from the log.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::core::workflow::StepKind;
use crate::store::RunId;

/// Queue of fired timers (retry, timeouts, `sleep`), handled by every node.
pub const TIMER_QUEUE: &str = "timers";
/// Prefix of the queue of one step kind: `step:http`, `step:exec`, …
pub const STEP_QUEUE_PREFIX: &str = "step:";

/// The queue of attempts of `kind`; only nodes with that executor claim it.
pub fn step_queue(kind: StepKind) -> String {
    format!("{STEP_QUEUE_PREFIX}{}", kind.as_str())
}

/// The queue of `uses: agent` steps with `with.queue: NAME`.
pub fn agent_queue(name: &str) -> String {
    format!("agent:{name}")
}

/// One attempt to execute (task payload).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(super) struct AttemptTask {
    pub step: String,
    pub index: Option<u32>,
    pub attempt: u32,
    pub key: String,
}

/// What a fired timer means (timer payload, then task payload).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(super) enum TimerTask {
    /// A core timer: append `timer.fired` with this id.
    Core { timer: String },
    /// A `sleep` step's attempt is over: append `step.succeeded`.
    Sleep {
        step: String,
        index: Option<u32>,
        attempt: u32,
        duration_ms: u64,
    },
    /// The run's last append stopped at the settle budget: settle it again.
    /// Durable, so that whichever node claims it carries the run on.
    Continue,
}

/// The store id of a run's timer: derived from its name, so that the
/// runtime can cancel a timer the core dropped without keeping a map.
pub(super) fn timer_uuid(run_id: RunId, name: &str) -> Uuid {
    let digest = Sha256::digest(format!("{run_id}#{name}").as_bytes());
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    uuid::Builder::from_custom_bytes(bytes).into_uuid()
}

/// The name of the timer that ends a `sleep` attempt.
pub(super) fn sleep_timer_name(step: &str, index: Option<u32>, attempt: u32) -> String {
    match index {
        Some(index) => format!("sleep/{step}/{index}/{attempt}"),
        None => format!("sleep/{step}/{attempt}"),
    }
}
