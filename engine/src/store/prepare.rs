//! Backend-independent work around an append: validating requests against the
//! limits before anything is written, and sealing events into the chains.

use std::collections::{HashMap, HashSet};
use std::hash::Hash;

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::error::Error;
use super::types::{AppendRequest, LogHead, RecordedEvent, StoreConfig};
use crate::chain;

/// A request that passed validation, with each event's canonical payload
/// (what is stored and hashed).
#[derive(Debug)]
pub(crate) struct Checked<'a> {
    pub request: &'a AppendRequest,
    pub payloads: Vec<String>,
}

/// Validates a batch: size, one request per run, and every request.
pub(crate) fn check_batch<'a>(
    config: &StoreConfig,
    requests: &'a [AppendRequest],
) -> Result<Vec<Checked<'a>>, Error> {
    if requests.len() > config.batch_runs_max {
        return Err(Error::limit(
            "the number of runs in one batch",
            requests.len(),
            config.batch_runs_max,
            "batch_runs_max",
        ));
    }
    let mut runs = HashSet::new();
    for request in requests {
        if !runs.insert(request.run_id) {
            return Err(Error::invalid(format!(
                "run {} appears twice in one batch; merge its events into one request",
                request.run_id
            )));
        }
    }
    requests
        .iter()
        .map(|request| check_append(config, request))
        .collect()
}

/// Validates one request: limits, canonical payloads, rows of the right run.
pub(crate) fn check_append<'a>(
    config: &StoreConfig,
    request: &'a AppendRequest,
) -> Result<Checked<'a>, Error> {
    if request.events.len() > config.events_per_append_max {
        return Err(Error::limit(
            format!(
                "the number of events in one append to run {}",
                request.run_id
            ),
            request.events.len(),
            config.events_per_append_max,
            "events_per_append_max",
        ));
    }
    let mut payloads = Vec::with_capacity(request.events.len());
    for (index, event) in request.events.iter().enumerate() {
        if event.event_type.is_empty() {
            return Err(Error::invalid(format!(
                "event {index} has an empty event_type"
            )));
        }
        let text = canonical_payload(&event.payload).map_err(|message| {
            Error::invalid(format!(
                "event {index} ({}) payload: {message}",
                event.event_type
            ))
        })?;
        if text.len() > config.payload_bytes_max {
            return Err(Error::PayloadTooLarge {
                run_id: request.run_id,
                index,
                event_type: event.event_type.clone(),
                bytes: text.len(),
                max: config.payload_bytes_max,
            });
        }
        payloads.push(text);
    }
    check_rows(request)?;
    for leased in request
        .enqueue
        .iter()
        .filter_map(|task| task.lease.as_ref())
    {
        lease(config, leased.lease_ms)?;
        if leased.owner.is_empty() {
            return Err(Error::invalid("a task is leased to an empty owner name"));
        }
    }
    Ok(Checked { request, payloads })
}

fn check_rows(request: &AppendRequest) -> Result<(), Error> {
    let run_id = request.run_id;
    if let Some(run) = &request.projection.run
        && run.run_id != run_id
    {
        return Err(Error::invalid(format!(
            "the run row is for run {} but the append is for run {run_id}",
            run.run_id
        )));
    }
    if let Some(step) = request
        .projection
        .steps
        .iter()
        .find(|step| step.run_id != run_id)
    {
        return Err(Error::invalid(format!(
            "step row {} is for run {} but the append is for run {run_id}",
            step.step_id, step.run_id
        )));
    }
    let queues = request.enqueue.iter().map(|task| &task.queue);
    if queues
        .chain(request.timers.iter().map(|timer| &timer.queue))
        .any(String::is_empty)
    {
        return Err(Error::invalid("a task or timer has an empty queue name"));
    }
    Ok(())
}

/// RFC 8785 text of a payload, refusing numbers canonical JSON would round.
pub(crate) fn canonical_payload(payload: &Value) -> Result<String, String> {
    chain::canonical_json(payload).map_err(|fault| fault.to_string())
}

/// Turns a checked request into recorded events following the run's head
/// (`last_seq`, `last_hash`) and the log head, which it advances.
pub(crate) fn seal(
    checked: &Checked<'_>,
    last_hash: &str,
    log_head: &mut LogHead,
    recorded_at: DateTime<Utc>,
) -> Result<Vec<RecordedEvent>, Error> {
    let request = checked.request;
    let mut run_hash = last_hash.to_owned();
    let mut sealed = Vec::with_capacity(request.events.len());
    for (offset, event) in request.events.iter().enumerate() {
        let mut recorded = RecordedEvent {
            run_id: request.run_id,
            seq: request.expected_seq + 1 + offset as u64,
            position: log_head.position + 1,
            event_type: event.event_type.clone(),
            schema_version: event.schema_version,
            payload: event.payload.clone(),
            recorded_at,
            prev_hash: String::new(),
            hash: String::new(),
            log_hash: String::new(),
        };
        chain::seal_canonical(
            &mut recorded,
            &checked.payloads[offset],
            &run_hash,
            &log_head.log_hash,
        )
        .map_err(|fault| Error::corrupt(format!("sealing an event: {fault}")))?;
        run_hash.clone_from(&recorded.hash);
        *log_head = LogHead {
            position: recorded.position,
            log_hash: recorded.log_hash.clone(),
        };
        sealed.push(recorded);
    }
    Ok(sealed)
}

/// `now` cut to microseconds: both databases keep exactly that much, and the
/// hashed `recorded_at` must survive the round trip.
pub(crate) fn micros(now: DateTime<Utc>) -> DateTime<Utc> {
    let nanos = now.timestamp_subsec_nanos();
    now - chrono::Duration::nanoseconds(i64::from(nanos % 1_000))
}

/// Checks and converts a page size.
pub(crate) fn page(config: &StoreConfig, max: u32) -> Result<i64, Error> {
    if max == 0 || max > config.page_size_max {
        return Err(Error::limit(
            "the requested page size",
            max as usize,
            config.page_size_max as usize,
            "page_size_max",
        ));
    }
    Ok(i64::from(max))
}

/// Checks a lease length.
pub(crate) fn lease(config: &StoreConfig, lease_ms: u64) -> Result<chrono::Duration, Error> {
    if lease_ms == 0 || lease_ms > config.lease_ms_max {
        return Err(Error::limit(
            "the requested lease (ms)",
            lease_ms as usize,
            config.lease_ms_max as usize,
            "lease_ms_max",
        ));
    }
    Ok(chrono::Duration::milliseconds(lease_ms as i64))
}

/// `u64` seq/position to the databases' signed 64-bit integers.
pub(crate) fn to_i64(value: u64) -> Result<i64, Error> {
    i64::try_from(value).map_err(|_| Error::invalid(format!("{value} is beyond 2^63-1")))
}

/// A signed database integer back to `u64`.
pub(crate) fn to_u64(value: i64, what: &str) -> Result<u64, Error> {
    u64::try_from(value).map_err(|_| Error::corrupt(format!("negative {what} {value}")))
}

/// Splits head rows `(run id, seq, hash)` into the log head (the row
/// without a run id: its seq is the position, its hash the log hash) and
/// each run's `(seq, hash)`; no log-head row means the genesis head.
pub(crate) fn split_heads<K: Eq + Hash>(
    rows: impl IntoIterator<Item = (Option<K>, u64, String)>,
) -> (LogHead, HashMap<K, (u64, String)>) {
    let mut log_head = LogHead::genesis();
    let mut run_heads = HashMap::new();
    for (run_id, seq, hash) in rows {
        match run_id {
            None => {
                log_head = LogHead {
                    position: seq,
                    log_hash: hash,
                }
            }
            Some(run_id) => {
                run_heads.insert(run_id, (seq, hash));
            }
        }
    }
    (log_head, run_heads)
}
