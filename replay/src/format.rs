//! The export file format `imx-event-log` v1: one JSON object per line, a
//! header, the events in log order, a trailer. Normative text:
//! `docs/export-format.md`; keep the two in step.

use chrono::{DateTime, Utc};
use engine::chain::{self, GENESIS_HASH, LogHead, RecordedEvent};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

/// The `format` of the header line.
pub const FORMAT_NAME: &str = "imx-event-log";
/// The `format_version` this build writes and reads.
pub const FORMAT_VERSION: u32 = 1;
/// Longest line the reader accepts, in bytes: the store caps a payload at
/// 1 MiB of canonical JSON, escaping can at most double it, plus the fields.
pub const LINE_BYTES_MAX: usize = 3 * 1024 * 1024;

/// How the hashes in the file are computed (informative for auditors; the
/// verifier refuses any other values).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChainParams {
    pub hash: String,
    pub canonicalization: String,
    pub genesis: String,
    /// The fields of an event line that the canonical bytes cover.
    pub event_fields: Vec<String>,
    pub event_hash: String,
    pub log_hash: String,
    pub recorded_at: String,
}

impl ChainParams {
    /// The one parameter set of format version 1.
    pub fn v1() -> Self {
        let fields = [
            "event_type",
            "payload",
            "position",
            "recorded_at",
            "run_id",
            "schema_version",
            "seq",
        ];
        ChainParams {
            hash: "sha-256".to_owned(),
            canonicalization: "rfc8785".to_owned(),
            genesis: GENESIS_HASH.to_owned(),
            event_fields: fields.iter().map(|f| (*f).to_owned()).collect(),
            event_hash: "sha256(unhex(prev_hash) || jcs(event_fields))".to_owned(),
            log_hash: "sha256(unhex(prev_log_hash) || unhex(hash))".to_owned(),
            recorded_at: "rfc3339, UTC, 6 fractional digits, Z".to_owned(),
        }
    }
}

/// Which part of the log a file holds.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scope {
    /// `Some`: only this run's events, in seq order (the log chain is not checkable).
    pub run: Option<Uuid>,
    /// Only events with `position > since` (0: from the start).
    pub since: u64,
}

/// The first line: `{"header": {...}}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Header {
    pub format: String,
    pub format_version: u32,
    pub chain: ChainParams,
    pub scope: Scope,
    /// The log head just before the first exported event (genesis for a
    /// whole-log export): the log chain continues from it.
    pub start: LogHead,
    /// Informative only: not hashed, not signed; an RFC 3339 date-time.
    #[serde(deserialize_with = "rfc3339")]
    pub exported_at: DateTime<Utc>,
}

/// The last line: `{"trailer": {...}}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Trailer {
    pub events: u64,
    /// The head to keep elsewhere: the last event's `log_hash` (log scope) or
    /// `hash` (run scope); the start head's hash when no event was exported.
    pub head: String,
    /// Position of the last exported event (the start position when none).
    pub position: u64,
}

/// One event line, field for field the store's row; `recorded_at` already in
/// its canonical spelling.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventLine {
    pub run_id: Uuid,
    pub seq: u64,
    pub position: u64,
    pub event_type: String,
    pub schema_version: u32,
    /// Any JSON object; duplicate keys (at any depth) are refused because
    /// the hash covers one canonical form and a reader must not pick one.
    #[serde(deserialize_with = "crate::unique::value")]
    pub payload: Value,
    pub recorded_at: String,
    pub prev_hash: String,
    pub hash: String,
    pub log_hash: String,
}

/// `exported_at`: an RFC 3339 date-time as `docs/export-format.md` spells
/// it (chrono alone also takes a space for `T`).
fn rfc3339<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<DateTime<Utc>, D::Error> {
    let text = String::deserialize(deserializer)?;
    DateTime::parse_from_rfc3339(&text)
        .ok()
        .filter(|_| crate::compiled::is_date_time(&text))
        .map(|at| at.with_timezone(&Utc))
        .ok_or_else(|| {
            serde::de::Error::custom(format!("exported_at {text:?} is not an RFC 3339 date-time"))
        })
}

impl EventLine {
    pub fn from_recorded(event: &RecordedEvent) -> Self {
        EventLine {
            run_id: event.run_id,
            seq: event.seq,
            position: event.position,
            event_type: event.event_type.clone(),
            schema_version: event.schema_version,
            payload: event.payload.clone(),
            recorded_at: chain::format_recorded_at(event.recorded_at),
            prev_hash: event.prev_hash.clone(),
            hash: event.hash.clone(),
            log_hash: event.log_hash.clone(),
        }
    }

    /// The stored form; `Err(recorded_at)` when that is not the canonical spelling.
    pub fn into_recorded(self) -> Result<RecordedEvent, String> {
        let parsed = DateTime::parse_from_rfc3339(&self.recorded_at)
            .map(|at| at.with_timezone(&Utc))
            .ok()
            .filter(|at| chain::format_recorded_at(*at) == self.recorded_at);
        match parsed {
            Some(recorded_at) => Ok(RecordedEvent {
                run_id: self.run_id,
                seq: self.seq,
                position: self.position,
                event_type: self.event_type,
                schema_version: self.schema_version,
                payload: self.payload,
                recorded_at,
                prev_hash: self.prev_hash,
                hash: self.hash,
                log_hash: self.log_hash,
            }),
            None => Err(self.recorded_at),
        }
    }
}

/// An event line written straight from the store's row, without copying
/// the payload; field for field [`EventLine`].
#[derive(Debug, Serialize)]
pub struct EventLineRef<'a> {
    pub run_id: Uuid,
    pub seq: u64,
    pub position: u64,
    pub event_type: &'a str,
    pub schema_version: u32,
    pub payload: &'a Value,
    pub recorded_at: String,
    pub prev_hash: &'a str,
    pub hash: &'a str,
    pub log_hash: &'a str,
}

impl<'a> EventLineRef<'a> {
    pub fn new(event: &'a RecordedEvent) -> Self {
        EventLineRef {
            run_id: event.run_id,
            seq: event.seq,
            position: event.position,
            event_type: &event.event_type,
            schema_version: event.schema_version,
            payload: &event.payload,
            recorded_at: chain::format_recorded_at(event.recorded_at),
            prev_hash: &event.prev_hash,
            hash: &event.hash,
            log_hash: &event.log_hash,
        }
    }
}

/// What one line of a file holds.
#[derive(Clone, Debug, PartialEq)]
pub enum Line {
    Header(Box<Header>),
    Event(Box<EventLine>),
    Trailer(Trailer),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct HeaderLine {
    header: Header,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TrailerLine {
    trailer: Trailer,
}

impl Line {
    /// Reads one line. Event lines are by far the most common, so they are
    /// tried first; `deny_unknown_fields` makes a header or trailer fail fast.
    pub fn parse(text: &str) -> Result<Line, serde_json::Error> {
        let event_error = match serde_json::from_str::<EventLine>(text) {
            Ok(event) => return Ok(Line::Event(Box::new(event))),
            Err(error) => error,
        };
        if let Ok(line) = serde_json::from_str::<HeaderLine>(text) {
            return Ok(Line::Header(Box::new(line.header)));
        }
        if let Ok(line) = serde_json::from_str::<TrailerLine>(text) {
            return Ok(Line::Trailer(line.trailer));
        }
        Err(event_error)
    }

    /// The line's JSON text, without the newline.
    pub fn to_text(&self) -> String {
        let value = match self {
            Line::Header(header) => serde_json::json!({ "header": header }),
            // Struct order (run_id first) reads better than sorted keys.
            Line::Event(event) => return serde_json::to_string(event).unwrap_or_default(),
            Line::Trailer(trailer) => serde_json::json!({ "trailer": trailer }),
        };
        value.to_string()
    }
}
