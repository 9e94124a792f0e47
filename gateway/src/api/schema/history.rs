//! Reading a run's log back as core events, bounded: the current state of a
//! run (kept and caught up incrementally, [`StateCache`]) for the step
//! details only the folded state has (timings, approvals), the state at a
//! seq for `runAt`, and the hash chain check for `verifyRun`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use engine::core::{EventEnvelope, RunState};
use engine::store::prelude::*;
use engine::store::{RecordedEvent, Store};
use uuid::Uuid;

use engine::runtime::Error as RuntimeError;

use crate::api::error::ApiError;

/// Events fetched per store read.
const READ_BATCH: u32 = 500;

/// The state after the first `seq` events, folded from the start on a
/// blocking thread (`runAt`: an earlier state cannot come from a later one).
pub async fn state_at(
    store: &Store,
    run_id: Uuid,
    seq: u64,
    history_events_max: u64,
) -> Result<RunState, ApiError> {
    if seq > history_events_max {
        return Err(too_long(run_id, history_events_max));
    }
    let mut events = Vec::new();
    let mut after = 0;
    while after < seq {
        let max = READ_BATCH.min(u32::try_from(seq - after).unwrap_or(READ_BATCH));
        let batch = store.read_stream(run_id, after, max).await?;
        let Some(last) = batch.last() else { break };
        after = last.seq;
        events.extend(batch);
    }
    if events.is_empty() {
        return Err(ApiError::not_found(format!("run {run_id} has no events")));
    }
    if after < seq {
        return Err(ApiError::validation(format!(
            "run {run_id} has only {after} events; seq {seq} does not exist yet"
        )));
    }
    tokio::task::spawn_blocking(move || fold(RunState::new(), &events))
        .await
        .map_err(|stopped| ApiError::internal(&stopped, None))?
}

/// Most runs whose folded state the API keeps ([`StateCache`]).
pub const STATE_CACHE_RUNS_MAX: usize = 64;
/// Most events folded into the kept states, in all (a state grows with its
/// events; the runtime's cache holds 20,000 and forgets ended runs, which
/// are the ones people read).
pub const STATE_CACHE_EVENTS_MAX: u64 = 200_000;
/// Most events folded on the async worker; a longer catch-up (a first read
/// of a long history) folds on a blocking thread.
const INLINE_FOLD_MAX: usize = 64;

/// The folded states of the runs this node's API read lately, each caught
/// up with the log on every read. The log is append-only (surgery appends
/// too), so the events after a kept state's seq are all that changed: a
/// live page asking again after every event costs a read of the new events
/// and their fold, not a fold of the whole history. Any node can serve any
/// read: a state is only ever extended from the shared log.
#[derive(Debug, Default)]
pub struct StateCache {
    runs: Mutex<KeptStates>,
}

#[derive(Debug, Default)]
struct KeptStates {
    states: HashMap<Uuid, (Arc<RunState>, u64)>,
    /// The sum of the kept states' `seq`.
    events: u64,
    clock: u64,
}

impl KeptStates {
    fn get(&mut self, run_id: Uuid) -> Option<Arc<RunState>> {
        self.clock += 1;
        let clock = self.clock;
        self.states.get_mut(&run_id).map(|(state, used)| {
            *used = clock;
            Arc::clone(state)
        })
    }

    /// Drops the kept state when it is `state`, which is about to grow.
    fn release(&mut self, run_id: Uuid, state: &Arc<RunState>) {
        if self
            .states
            .get(&run_id)
            .is_some_and(|(kept, _)| Arc::ptr_eq(kept, state))
            && let Some((kept, _)) = self.states.remove(&run_id)
        {
            self.events -= kept.seq;
        }
    }

    fn keep(&mut self, run_id: Uuid, state: Arc<RunState>) {
        self.clock += 1;
        self.events += state.seq;
        if let Some((old, _)) = self.states.insert(run_id, (state, self.clock)) {
            self.events -= old.seq;
        }
        while self.states.len() > STATE_CACHE_RUNS_MAX || self.events > STATE_CACHE_EVENTS_MAX {
            let Some(oldest) = self
                .states
                .iter()
                .min_by_key(|(_, (_, used))| *used)
                .map(|(id, _)| *id)
            else {
                break;
            };
            if let Some((evicted, _)) = self.states.remove(&oldest) {
                self.events -= evicted.seq;
            }
        }
    }
}

impl StateCache {
    /// The run's state after its last event: the kept state caught up with
    /// the events appended since. LIMIT past `history_events_max` events,
    /// NOT_FOUND for a run without events.
    pub async fn current(
        &self,
        store: &Store,
        run_id: Uuid,
        history_events_max: u64,
    ) -> Result<Arc<RunState>, ApiError> {
        let kept = self.runs.lock().ok().and_then(|mut runs| runs.get(run_id));
        let mut state = kept.unwrap_or_else(|| Arc::new(RunState::new()));
        let mut changed = false;
        loop {
            let batch = store.read_stream(run_id, state.seq, READ_BATCH).await?;
            let Some(last) = batch.last() else { break };
            if last.seq > history_events_max {
                return Err(too_long(run_id, history_events_max));
            }
            let full = batch.len() == READ_BATCH as usize;
            // Extended in place unless another read holds the same state.
            if let Ok(mut runs) = self.runs.lock() {
                runs.release(run_id, &state);
            }
            let mut owned = Arc::unwrap_or_clone(state);
            if batch.len() > INLINE_FOLD_MAX {
                owned = tokio::task::spawn_blocking(move || fold(owned, &batch))
                    .await
                    .map_err(|stopped| ApiError::internal(&stopped, None))??;
            } else {
                owned = fold(owned, &batch)?;
            }
            state = Arc::new(owned);
            changed = true;
            if !full {
                break;
            }
        }
        if state.seq == 0 {
            return Err(ApiError::not_found(format!("run {run_id} has no events")));
        }
        if state.seq > history_events_max {
            return Err(too_long(run_id, history_events_max));
        }
        if changed && let Ok(mut runs) = self.runs.lock() {
            runs.keep(run_id, Arc::clone(&state));
        }
        Ok(state)
    }
}

fn too_long(run_id: Uuid, history_events_max: u64) -> ApiError {
    ApiError::limit(format!(
        "run {run_id} has more than {history_events_max} events (history_events_max); ask for an earlier seq"
    ))
}

/// `state` with `events` applied, in order.
fn fold(mut state: RunState, events: &[RecordedEvent]) -> Result<RunState, ApiError> {
    for recorded in events {
        state.apply(&to_envelope(recorded)?).map_err(|error| {
            ApiError::from(RuntimeError::Corrupt {
                what: format!(
                    "the log of run {} cannot be replayed: {error}",
                    recorded.run_id
                ),
            })
        })?;
    }
    Ok(state)
}

pub fn to_envelope(recorded: &RecordedEvent) -> Result<EventEnvelope, ApiError> {
    EventEnvelope::from_stored(
        recorded.run_id,
        recorded.seq,
        &recorded.event_type,
        recorded.schema_version,
        &recorded.payload,
    )
    .map_err(|error| {
        ApiError::from(RuntimeError::Corrupt {
            what: format!(
                "event {} of run {} is unreadable: {error}",
                recorded.seq, recorded.run_id
            ),
        })
    })
}

/// What `verifyRun` found: the run's hash chain checked on the server.
#[derive(async_graphql::SimpleObject, Debug)]
pub struct RunVerification {
    pub run_id: async_graphql::ID,
    /// True when every event links to the one before and hashes to its `hash`.
    pub ok: bool,
    /// Events checked.
    pub events: u64,
    /// Seq of the last event that verified.
    pub head_seq: u64,
    /// The hash of that event: the run's head hash.
    pub head_hash: String,
    /// Where and how the chain breaks, when it does.
    pub problem: Option<String>,
}

/// Reads the whole stream of `run_id` (at most `history_events_max`
/// events) and checks its hash chain off the async workers.
pub async fn verify(
    store: &Store,
    run_id: Uuid,
    history_events_max: u64,
) -> Result<RunVerification, ApiError> {
    let mut events = Vec::new();
    let mut after = 0;
    loop {
        let batch = store.read_stream(run_id, after, READ_BATCH).await?;
        let Some(last) = batch.last() else { break };
        after = last.seq;
        if after > history_events_max {
            return Err(ApiError::limit(format!(
                "run {run_id} has more than {history_events_max} events (history_events_max)"
            )));
        }
        events.extend(batch);
    }
    if events.is_empty() {
        return Err(super::run_not_found(run_id));
    }
    let count = events.len() as u64;
    let checked = tokio::task::spawn_blocking(move || {
        engine::chain::verify_run(&events).map_err(|error| {
            // The head is the last event before the break.
            let before = events
                .iter()
                .take_while(|event| event.seq < error.seq)
                .last()
                .map(|event| (event.seq, event.hash.clone()))
                .unwrap_or_default();
            (error, before)
        })
    })
    .await
    .map_err(|stopped| ApiError::internal(&stopped, None))?;
    let run_id = async_graphql::ID(run_id.to_string());
    Ok(match checked {
        Ok(head) => RunVerification {
            run_id,
            ok: true,
            events: count,
            head_seq: head.seq,
            head_hash: head.hash,
            problem: None,
        },
        Err((error, (head_seq, head_hash))) => RunVerification {
            run_id,
            ok: false,
            events: count,
            head_seq,
            head_hash,
            problem: Some(error.to_string()),
        },
    })
}
