//! Opaque, stable cursors: base64 of a versioned key. Run cursors carry the
//! keyset position (created_at, run id), so a cursor stays valid while new
//! runs arrive; event cursors carry the seq.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use engine::store::RunCursor;
use uuid::Uuid;

use crate::api::error::ApiError;

const RUN_PREFIX: &str = "run:v1:";
const EVENT_PREFIX: &str = "event:v1:";

pub fn encode_run(cursor: &RunCursor) -> String {
    URL_SAFE_NO_PAD.encode(format!(
        "{RUN_PREFIX}{}:{}",
        cursor.created_at.timestamp_micros(),
        cursor.run_id
    ))
}

pub fn decode_run(text: &str) -> Result<RunCursor, ApiError> {
    let bad = || ApiError::validation(format!("{text:?} is not a runs cursor from this API"));
    let raw = URL_SAFE_NO_PAD.decode(text).map_err(|_| bad())?;
    let raw = String::from_utf8(raw).map_err(|_| bad())?;
    let rest = raw.strip_prefix(RUN_PREFIX).ok_or_else(bad)?;
    let (micros, run_id) = rest.split_once(':').ok_or_else(bad)?;
    let micros: i64 = micros.parse().map_err(|_| bad())?;
    Ok(RunCursor {
        created_at: DateTime::<Utc>::from_timestamp_micros(micros).ok_or_else(bad)?,
        run_id: Uuid::parse_str(run_id).map_err(|_| bad())?,
    })
}

pub fn encode_event(seq: u64) -> String {
    URL_SAFE_NO_PAD.encode(format!("{EVENT_PREFIX}{seq}"))
}

pub fn decode_event(text: &str) -> Result<u64, ApiError> {
    let bad = || ApiError::validation(format!("{text:?} is not an events cursor from this API"));
    let raw = URL_SAFE_NO_PAD.decode(text).map_err(|_| bad())?;
    let raw = String::from_utf8(raw).map_err(|_| bad())?;
    raw.strip_prefix(EVENT_PREFIX)
        .ok_or_else(bad)?
        .parse()
        .map_err(|_| bad())
}
