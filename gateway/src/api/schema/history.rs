//! Reading a run's log back as core events, bounded, for `runAt` and for the
//! step details that only the folded state has (timings, approvals).

use engine::core::{EventEnvelope, RunState, replay};
use engine::store::prelude::*;
use engine::store::{RecordedEvent, Store};
use uuid::Uuid;

use engine::runtime::Error as RuntimeError;

use crate::api::error::ApiError;

/// Events fetched per store read.
const READ_BATCH: u32 = 500;

/// The state after the first `upto` events (all when `None`).
pub async fn state_at(
    store: &Store,
    run_id: Uuid,
    upto: Option<u64>,
    history_events_max: u64,
) -> Result<RunState, ApiError> {
    let wanted = upto.unwrap_or(u64::MAX);
    let mut envelopes = Vec::new();
    let mut after = 0;
    while after < wanted {
        let max = READ_BATCH.min(u32::try_from(wanted - after).unwrap_or(READ_BATCH));
        let batch = store.read_stream(run_id, after, max).await?;
        let Some(last) = batch.last() else { break };
        after = last.seq;
        if after > history_events_max {
            return Err(ApiError::limit(format!(
                "run {run_id} has more than {history_events_max} events (history_events_max); ask for an earlier seq"
            )));
        }
        for recorded in &batch {
            envelopes.push(to_envelope(recorded)?);
        }
    }
    if envelopes.is_empty() {
        return Err(ApiError::not_found(format!("run {run_id} has no events")));
    }
    if let Some(seq) = upto
        && after < seq
    {
        return Err(ApiError::validation(format!(
            "run {run_id} has only {after} events; seq {seq} does not exist yet"
        )));
    }
    replay(&envelopes).map_err(|error| {
        ApiError::from(RuntimeError::Corrupt {
            what: format!("the log of run {run_id} cannot be replayed: {error}"),
        })
    })
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
