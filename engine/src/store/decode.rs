//! Decoding rows into the store's values, once for both backends. The
//! backends differ only in how a column holds a few types (SQLite keeps
//! ids and times as text and every integer in 8 bytes); each implements
//! [`Columns`] for its row type, and everything above that is shared.

use chrono::{DateTime, Utc};
use serde_json::Value;
use uuid::Uuid;

use super::api_keys::{ApiKeyRecord, parse_roles};
use super::error::Error;
use super::prepare;
use super::registry::WorkflowRecord;
use super::types::*;

/// Typed access to one row's columns: the backend-specific step.
pub trait Columns {
    fn text(&self, column: &str) -> Result<String, Error>;
    fn optional_text(&self, column: &str) -> Result<Option<String>, Error>;
    fn uuid(&self, column: &str) -> Result<Uuid, Error>;
    fn optional_uuid(&self, column: &str) -> Result<Option<Uuid>, Error>;
    fn time(&self, column: &str) -> Result<DateTime<Utc>, Error>;
    fn optional_time(&self, column: &str) -> Result<Option<DateTime<Utc>>, Error>;
    /// An 8-byte integer column (`int8`), possibly NULL (an aggregate).
    fn optional_int8(&self, column: &str) -> Result<Option<i64>, Error>;
    /// A 4-byte integer column (`int4`), widened.
    fn int4(&self, column: &str) -> Result<i64, Error>;

    fn int8(&self, column: &str) -> Result<i64, Error> {
        self.optional_int8(column)?
            .ok_or_else(|| Error::corrupt(format!("{column} is NULL")))
    }

    /// A JSON column, read as text.
    fn json(&self, column: &str) -> Result<Value, Error> {
        parse_json(&self.text(column)?)
    }

    fn optional_json(&self, column: &str) -> Result<Option<Value>, Error> {
        self.optional_text(column)?
            .as_deref()
            .map(parse_json)
            .transpose()
    }

    /// A non-negative 4-byte count (attempts, claims, schema version).
    fn count(&self, column: &str) -> Result<u32, Error> {
        u32::try_from(self.int4(column)?)
            .map_err(|_| Error::corrupt(format!("{column} out of range")))
    }
}

/// Tasks in every queue (same SQL on both).
pub(crate) const QUEUE_DEPTH_SQL: &str = "SELECT COUNT(*) FROM tasks";

/// A `COUNT(*)`.
pub(crate) fn count(count: i64) -> u64 {
    u64::try_from(count).unwrap_or(0)
}

/// A JSON column's text.
pub(crate) fn parse_json(text: &str) -> Result<Value, Error> {
    serde_json::from_str(text).map_err(|error| Error::corrupt(format!("bad JSON column: {error}")))
}

/// An event row (the columns of each backend's `EVENT_COLUMNS`).
pub(crate) fn event(row: &impl Columns) -> Result<RecordedEvent, Error> {
    Ok(RecordedEvent {
        run_id: row.uuid("run_id")?,
        seq: prepare::to_u64(row.int8("seq")?, "seq")?,
        position: prepare::to_u64(row.int8("position")?, "position")?,
        event_type: row.text("event_type")?,
        schema_version: row.count("schema_version")?,
        payload: row.json("payload")?,
        recorded_at: row.time("recorded_at")?,
        prev_hash: row.text("prev_hash")?,
        hash: row.text("hash")?,
        log_hash: row.text("log_hash")?,
    })
}

/// A run row with its `last_seq` (each backend's `RUN_COLUMNS`).
pub(crate) fn run(row: &impl Columns) -> Result<RunRecord, Error> {
    Ok(RunRecord {
        row: RunRow {
            run_id: row.uuid("run_id")?,
            workflow: row.text("workflow")?,
            version: row.text("version")?,
            status: row.text("status")?,
            input: row.json("input")?,
            output: row.optional_json("output")?,
            error: row.optional_text("error")?,
            parent_run_id: row.optional_uuid("parent_run_id")?,
            forked_from: row.optional_uuid("forked_from")?,
            idempotency_key: row.optional_text("idempotency_key")?,
            created_at: row.time("created_at")?,
            updated_at: row.time("updated_at")?,
        },
        last_seq: prepare::to_u64(row.optional_int8("last_seq")?.unwrap_or(0), "seq")?,
    })
}

pub(crate) fn step(row: &impl Columns) -> Result<StepRow, Error> {
    Ok(StepRow {
        run_id: row.uuid("run_id")?,
        step_id: row.text("step_id")?,
        status: row.text("status")?,
        attempts: row.count("attempts")?,
        output: row.optional_json("output")?,
        error: row.optional_text("error")?,
        updated_at: row.time("updated_at")?,
    })
}

/// A task a claim returned, under the claim's `lease`.
pub(crate) fn claimed_task(row: &impl Columns, lease: &Lease) -> Result<ClaimedTask, Error> {
    Ok(ClaimedTask {
        task_id: row.uuid("task_id")?,
        run_id: row.uuid("run_id")?,
        queue: row.text("queue")?,
        payload: row.json("payload")?,
        claims: row.count("claims")?,
        lease: lease.clone(),
    })
}

pub(crate) fn fired_timer(row: &impl Columns) -> Result<FiredTimer, Error> {
    Ok(FiredTimer {
        timer_id: row.uuid("timer_id")?,
        run_id: row.uuid("run_id")?,
        queue: row.text("queue")?,
        fire_at: row.time("fire_at")?,
        payload: row.json("payload")?,
    })
}

pub(crate) fn workflow(row: &impl Columns) -> Result<WorkflowRecord, Error> {
    Ok(WorkflowRecord {
        name: row.text("name")?,
        version: row.text("version")?,
        source: row.text("source")?,
        model: row.json("model")?,
        registered_at: row.time("registered_at")?,
    })
}

pub(crate) fn api_key(row: &impl Columns) -> Result<ApiKeyRecord, Error> {
    Ok(ApiKeyRecord {
        key_id: row.uuid("key_id")?,
        name: row.text("name")?,
        roles: parse_roles(&row.text("roles")?)?,
        key_hash: row.text("key_hash")?,
        created_at: row.time("created_at")?,
        revoked_at: row.optional_time("revoked_at")?,
    })
}
