//! What the Kafka triggers did, counted per workflow and trigger, for
//! `/metrics` (the gateway turns a snapshot into Prometheus counters).

use std::collections::BTreeMap;
use std::sync::{Mutex, PoisonError};

use super::DeadLetterReason;

/// What became of one message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Outcome {
    /// It started a run.
    Started,
    /// Its run existed already (a redelivery).
    Existing,
    /// It went to the dead-letter topic.
    DeadLettered(DeadLetterReason),
}

/// Counters by (workflow, trigger, outcome); cheap to update from every consumer.
#[derive(Debug, Default)]
pub struct TriggerStats {
    counts: Mutex<BTreeMap<(String, String, Outcome), u64>>,
}

impl TriggerStats {
    pub fn count(&self, workflow: &str, trigger: &str, outcome: Outcome) {
        let mut counts = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
        *counts
            .entry((workflow.to_owned(), trigger.to_owned(), outcome))
            .or_default() += 1;
    }

    /// Every counter: ((workflow, trigger, outcome), count).
    pub fn snapshot(&self) -> Vec<((String, String, Outcome), u64)> {
        let counts = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
        counts
            .iter()
            .map(|(key, count)| (key.clone(), *count))
            .collect()
    }
}
