//! The event log's SHA-256 hash chains: canonical event bytes, hashing and
//! verification. Pure (no I/O, no clock), shared by the stores, which compute
//! the hashes on append, and by the auditors, which recompute them offline.
//!
//! The normative description is `docs/event-log.md`; keep the two in step.
//!
//! Two chains cover every event:
//! * the **run chain**: `hash = SHA-256(prev_hash ‖ canonical_event)`, where
//!   `prev_hash` is the `hash` of the same run's previous event (or
//!   [`GENESIS_HASH`] for `seq` 1). It lets one run's export be verified alone.
//! * the **log chain**: `log_hash = SHA-256(prev_log_hash ‖ hash)` in global
//!   `position` order (positions are gap-free from 1). It covers the global
//!   order: deleting a whole run, reordering runs or truncating the log's tail
//!   (against a recorded [`LogHead`]) is detected.

mod canonical;

pub use canonical::{
    canonical_event_into, canonical_json, utf16_order, write_canonical_event,
    write_string as write_json_string,
};

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use uuid::Uuid;

/// Characters of a hash as the log stores it: a SHA-256 digest (32 bytes)
/// in lowercase hex.
pub const HASH_HEX_CHARS: usize = 64;

/// The `prev_hash` of a run's first event and the `prev_log_hash` of the
/// log's first event: 32 zero bytes, hex-encoded.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";
const _: () = assert!(GENESIS_HASH.len() == HASH_HEX_CHARS);

/// Largest integer that survives RFC 8785 canonicalization unchanged
/// (canonical JSON numbers are IEEE-754 doubles): 2^53 - 1.
pub const CANONICAL_INTEGER_MAX: u64 = (1 << 53) - 1;

/// One event as stored in the log, with everything the chains cover.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RecordedEvent {
    pub run_id: Uuid,
    /// Gap-free per run, starting at 1.
    pub seq: u64,
    /// Gap-free over the whole log, starting at 1; commit order.
    pub position: u64,
    pub event_type: String,
    pub schema_version: u32,
    pub payload: serde_json::Value,
    /// Microsecond precision (both stores keep exactly that).
    pub recorded_at: DateTime<Utc>,
    pub prev_hash: String,
    pub hash: String,
    pub log_hash: String,
}

/// Where one run's chain ends after verification.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Head {
    pub run_id: Uuid,
    /// 0 for a run without events.
    pub seq: u64,
    pub hash: String,
}

/// Where the whole log's chain ends: record it to detect later truncation.
/// Read strictly (an export's `start` is one): no other key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogHead {
    /// 0 for an empty log.
    pub position: u64,
    pub log_hash: String,
}

impl LogHead {
    pub fn genesis() -> Self {
        LogHead {
            position: 0,
            log_hash: GENESIS_HASH.to_owned(),
        }
    }
}

/// The first place where a chain does not hold.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[error("event log chain broken at run {run_id} seq {seq}: {what}")]
pub struct ChainError {
    pub run_id: Uuid,
    pub seq: u64,
    pub what: ChainFault,
}

/// What is wrong at the place a [`ChainError`] names.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum ChainFault {
    #[error("event belongs to run {found}, expected run {expected}")]
    WrongRun { expected: Uuid, found: Uuid },
    #[error("seq {found} where {expected} was expected (gap, duplicate or reordering)")]
    SeqGap { expected: u64, found: u64 },
    #[error("position {found} where {expected} was expected")]
    PositionGap { expected: u64, found: u64 },
    #[error("position {found} does not increase after {previous}")]
    PositionNotIncreasing { previous: u64, found: u64 },
    #[error("prev_hash {found} does not link to the previous hash {expected}")]
    PrevHashMismatch { expected: String, found: String },
    #[error("hash {found} does not match the recomputed {expected} (event edited)")]
    HashMismatch { expected: String, found: String },
    #[error("log_hash {found} does not match the recomputed {expected}")]
    LogHashMismatch { expected: String, found: String },
    #[error("{field} is not 64 lowercase hex digits: {value:?}")]
    BadHex { field: &'static str, value: String },
    #[error("the event cannot be canonicalized: {message}")]
    NotCanonical { message: String },
}

/// The bytes hashed for one event: RFC 8785 (JCS) JSON of the object
/// `{event_type, payload, position, recorded_at, run_id, schema_version, seq}`.
/// `recorded_at` is RFC 3339 UTC with exactly six fractional digits and `Z`;
/// `run_id` is the lowercase hyphenated UUID.
pub fn canonical_event_bytes(event: &RecordedEvent) -> Result<Vec<u8>, ChainFault> {
    let object = serde_json::json!({
        "event_type": event.event_type,
        "payload": event.payload,
        "position": event.position,
        "recorded_at": format_recorded_at(event.recorded_at),
        "run_id": event.run_id.hyphenated().to_string(),
        "schema_version": event.schema_version,
        "seq": event.seq,
    });
    check_canonical_numbers(&object)?;
    serde_json_canonicalizer::to_vec(&object).map_err(|error| ChainFault::NotCanonical {
        message: error.to_string(),
    })
}

/// RFC 3339 with microseconds and `Z`, the one form `recorded_at` takes in
/// hashed bytes (and in the SQLite store).
pub fn format_recorded_at(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// Rejects integers that canonical JSON would round (beyond ±2^53-1), so that
/// what is hashed and stored is exactly what the caller meant.
pub fn check_canonical_numbers(value: &serde_json::Value) -> Result<(), ChainFault> {
    match value {
        serde_json::Value::Number(number) => {
            let too_big = match (number.as_u64(), number.as_i64()) {
                (Some(unsigned), _) => unsigned > CANONICAL_INTEGER_MAX,
                (None, Some(signed)) => signed.unsigned_abs() > CANONICAL_INTEGER_MAX,
                (None, None) => false,
            };
            if too_big {
                return Err(ChainFault::NotCanonical {
                    message: format!(
                        "integer {number} is beyond ±{CANONICAL_INTEGER_MAX} (I-JSON); send it as a string"
                    ),
                });
            }
            Ok(())
        }
        serde_json::Value::Array(items) => items.iter().try_for_each(check_canonical_numbers),
        serde_json::Value::Object(map) => map.values().try_for_each(check_canonical_numbers),
        _ => Ok(()),
    }
}

/// `hex(SHA-256(prev_hash_bytes ‖ canonical_event_bytes(event)))`, where
/// `prev_hash_bytes` are the 32 bytes `event.prev_hash` encodes.
pub fn event_hash(event: &RecordedEvent) -> Result<String, ChainFault> {
    let prev = decode_hash("prev_hash", &event.prev_hash)?;
    let mut hasher = Sha256::new();
    hasher.update(prev);
    hasher.update(canonical_event_bytes(event)?);
    Ok(hex::encode(hasher.finalize()))
}

/// `hex(SHA-256(prev_log_hash_bytes ‖ hash_bytes))`.
pub fn log_hash(prev_log_hash: &str, hash: &str) -> Result<String, ChainFault> {
    let mut hasher = Sha256::new();
    hasher.update(decode_hash("prev_log_hash", prev_log_hash)?);
    hasher.update(decode_hash("hash", hash)?);
    Ok(hex::encode(hasher.finalize()))
}

/// Fills in `prev_hash`, `hash` and `log_hash` of `event` (whose other fields
/// are set) as the successor of `run_prev_hash` and `log_prev_hash`.
pub fn seal(
    event: &mut RecordedEvent,
    run_prev_hash: &str,
    log_prev_hash: &str,
) -> Result<(), ChainFault> {
    event.prev_hash = run_prev_hash.to_owned();
    event.hash = event_hash(event)?;
    event.log_hash = log_hash(log_prev_hash, &event.hash)?;
    Ok(())
}

/// [`seal`] for an append that already holds the payload's canonical text
/// (`canonical_payload == canonical_json(&event.payload)`): the same hashes
/// without canonicalizing the payload a second time.
pub fn seal_canonical(
    event: &mut RecordedEvent,
    canonical_payload: &str,
    run_prev_hash: &str,
    log_prev_hash: &str,
) -> Result<(), ChainFault> {
    let prev = decode_hash("prev_hash", run_prev_hash)?;
    let mut bytes = Vec::with_capacity(canonical_payload.len() + 256);
    write_canonical_event(event, canonical_payload, &mut bytes)?;
    let mut hasher = Sha256::new();
    hasher.update(prev);
    hasher.update(&bytes);
    event.prev_hash = run_prev_hash.to_owned();
    event.hash = hex::encode(hasher.finalize());
    event.log_hash = log_hash(log_prev_hash, &event.hash)?;
    Ok(())
}

/// Verifies one run's complete stream, in `seq` order from 1: same run id,
/// gap-free `seq`, increasing `position`, genesis `prev_hash`, links and
/// hashes. Returns the run's head (for no events: the nil run id, seq 0 and
/// [`GENESIS_HASH`]). `log_hash` is not checked (it needs the other runs'
/// events: see [`verify_log`]).
pub fn verify_run(events: &[RecordedEvent]) -> Result<Head, ChainError> {
    let run_id = events.first().map_or(Uuid::nil(), |event| event.run_id);
    let mut head = Head {
        run_id,
        seq: 0,
        hash: GENESIS_HASH.to_owned(),
    };
    let mut last_position = 0;
    for event in events {
        let fail = |what| ChainError {
            run_id,
            seq: event.seq,
            what,
        };
        if event.run_id != run_id {
            return Err(fail(ChainFault::WrongRun {
                expected: run_id,
                found: event.run_id,
            }));
        }
        if event.seq != head.seq + 1 {
            return Err(fail(ChainFault::SeqGap {
                expected: head.seq + 1,
                found: event.seq,
            }));
        }
        if event.position <= last_position {
            return Err(fail(ChainFault::PositionNotIncreasing {
                previous: last_position,
                found: event.position,
            }));
        }
        check_link_and_hash(event, &head.hash).map_err(fail)?;
        last_position = event.position;
        head = Head {
            run_id,
            seq: event.seq,
            hash: event.hash.clone(),
        };
    }
    Ok(head)
}

/// Verifies a contiguous slice of the global log, in `position` order,
/// starting right after `from` ([`LogHead::genesis`] for the whole log):
/// gap-free positions, every event's own hash, the log chain, and the run
/// chain links between the events given (a run whose earlier events lie
/// before `from` is linked from its first event seen here on).
pub fn verify_log(from: &LogHead, events: &[RecordedEvent]) -> Result<LogHead, ChainError> {
    let mut head = from.clone();
    let mut run_heads: std::collections::HashMap<Uuid, (u64, String)> = Default::default();
    for event in events {
        let fail = |what| ChainError {
            run_id: event.run_id,
            seq: event.seq,
            what,
        };
        if event.position != head.position + 1 {
            return Err(fail(ChainFault::PositionGap {
                expected: head.position + 1,
                found: event.position,
            }));
        }
        let expected_prev = match run_heads.get(&event.run_id) {
            Some((seq, hash)) => {
                if event.seq != seq + 1 {
                    return Err(fail(ChainFault::SeqGap {
                        expected: seq + 1,
                        found: event.seq,
                    }));
                }
                hash.clone()
            }
            None if event.seq == 1 => GENESIS_HASH.to_owned(),
            None => event.prev_hash.clone(),
        };
        check_link_and_hash(event, &expected_prev).map_err(fail)?;
        let expected_log = log_hash(&head.log_hash, &event.hash).map_err(fail)?;
        if event.log_hash != expected_log {
            return Err(fail(ChainFault::LogHashMismatch {
                expected: expected_log,
                found: event.log_hash.clone(),
            }));
        }
        run_heads.insert(event.run_id, (event.seq, event.hash.clone()));
        head = LogHead {
            position: event.position,
            log_hash: event.log_hash.clone(),
        };
    }
    Ok(head)
}

fn check_link_and_hash(event: &RecordedEvent, expected_prev: &str) -> Result<(), ChainFault> {
    if event.prev_hash != expected_prev {
        return Err(ChainFault::PrevHashMismatch {
            expected: expected_prev.to_owned(),
            found: event.prev_hash.clone(),
        });
    }
    let expected = event_hash(event)?;
    if event.hash != expected {
        return Err(ChainFault::HashMismatch {
            expected,
            found: event.hash.clone(),
        });
    }
    Ok(())
}

fn decode_hash(field: &'static str, value: &str) -> Result<[u8; 32], ChainFault> {
    let bad = || ChainFault::BadHex {
        field,
        value: value.to_owned(),
    };
    // Lowercase only: one spelling per hash keeps exports byte-comparable.
    if value.len() != HASH_HEX_CHARS || value.bytes().any(|b| b.is_ascii_uppercase()) {
        return Err(bad());
    }
    let mut bytes = [0u8; 32];
    hex::decode_to_slice(value, &mut bytes).map_err(|_| bad())?;
    Ok(bytes)
}
