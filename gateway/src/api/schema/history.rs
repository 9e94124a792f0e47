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
