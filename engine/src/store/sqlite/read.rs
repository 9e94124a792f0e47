//! SQLite reads: streams, the global log, run and step projections, and the
//! decoding of SQLite's text columns back into typed values.

use chrono::{DateTime, Utc};
use sqlx::sqlite::SqliteRow;
use sqlx::{Row, SqliteConnection};
use uuid::Uuid;

use super::{SqliteStore, time_text, uuid_text};
use crate::store::error::Error;
use crate::store::prepare;
use crate::store::types::*;

pub(super) const EVENT_COLUMNS: &str = "run_id, seq, position, event_type, schema_version, payload, recorded_at, prev_hash, hash, log_hash";

const RUN_COLUMNS: &str = "r.run_id, r.workflow, r.version, r.status, r.input, r.output, r.error, \
     r.parent_run_id, r.idempotency_key, r.created_at, r.updated_at, \
     (SELECT MAX(seq) FROM events e WHERE e.run_id = r.run_id) AS last_seq";

pub(super) async fn read_stream(
    store: &SqliteStore,
    run_id: RunId,
    after_seq: u64,
    max: u32,
) -> Result<Vec<RecordedEvent>, Error> {
    let limit = prepare::page(&store.config, max)?;
    let sql = format!(
        "SELECT {EVENT_COLUMNS} FROM events WHERE run_id = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3"
    );
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(uuid_text(run_id))
        .bind(prepare::to_i64(after_seq)?)
        .bind(limit)
        .fetch_all(&store.pool)
        .await?;
    rows.iter().map(event_from_row).collect()
}

pub(super) async fn read_log(
    store: &SqliteStore,
    after_position: u64,
    max: u32,
) -> Result<Vec<RecordedEvent>, Error> {
    let limit = prepare::page(&store.config, max)?;
    let sql = format!(
        "SELECT {EVENT_COLUMNS} FROM events WHERE position > ?1 ORDER BY position LIMIT ?2"
    );
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(prepare::to_i64(after_position)?)
        .bind(limit)
        .fetch_all(&store.pool)
        .await?;
    rows.iter().map(event_from_row).collect()
}

pub(super) async fn log_head(connection: &mut SqliteConnection) -> Result<LogHead, Error> {
    let row: Option<(i64, String)> =
        sqlx::query_as("SELECT position, log_hash FROM events ORDER BY position DESC LIMIT 1")
            .fetch_optional(connection)
            .await?;
    match row {
        Some((position, log_hash)) => Ok(LogHead {
            position: prepare::to_u64(position, "position")?,
            log_hash,
        }),
        None => Ok(LogHead::genesis()),
    }
}

pub(super) async fn get_run(
    store: &SqliteStore,
    run_id: RunId,
) -> Result<Option<RunRecord>, Error> {
    let sql = format!("SELECT {RUN_COLUMNS} FROM runs r WHERE r.run_id = ?1");
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(uuid_text(run_id))
        .fetch_optional(&store.pool)
        .await?;
    row.as_ref().map(run_from_row).transpose()
}

pub(super) async fn find_run_by_key(
    store: &SqliteStore,
    key: &str,
) -> Result<Option<RunRecord>, Error> {
    let sql = format!("SELECT {RUN_COLUMNS} FROM runs r WHERE r.idempotency_key = ?1");
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(key)
        .fetch_optional(&store.pool)
        .await?;
    row.as_ref().map(run_from_row).transpose()
}

pub(super) async fn get_steps(store: &SqliteStore, run_id: RunId) -> Result<Vec<StepRow>, Error> {
    let rows = sqlx::query(
        "SELECT run_id, step_id, status, attempts, output, error, updated_at FROM steps \
         WHERE run_id = ?1 ORDER BY step_id",
    )
    .bind(uuid_text(run_id))
    .fetch_all(&store.pool)
    .await?;
    rows.iter()
        .map(|row| {
            Ok(StepRow {
                run_id: parse_uuid(&row.try_get::<String, _>("run_id")?)?,
                step_id: row.try_get("step_id")?,
                status: row.try_get("status")?,
                attempts: u32::try_from(row.try_get::<i64, _>("attempts")?)
                    .map_err(|_| Error::corrupt("step attempts out of range"))?,
                output: parse_optional_json(row.try_get("output")?)?,
                error: row.try_get("error")?,
                updated_at: parse_time(&row.try_get::<String, _>("updated_at")?)?,
            })
        })
        .collect()
}

pub(super) async fn list_runs(
    store: &SqliteStore,
    query: &RunQuery,
) -> Result<Page<RunRecord, RunCursor>, Error> {
    let limit = prepare::page(&store.config, query.limit)?;
    let mut builder = sqlx::QueryBuilder::<sqlx::Sqlite>::new(format!(
        "SELECT {RUN_COLUMNS} FROM runs r WHERE 1 = 1"
    ));
    if let Some(status) = &query.status {
        builder.push(" AND r.status = ").push_bind(status.clone());
    }
    if let Some(workflow) = &query.workflow {
        builder
            .push(" AND r.workflow = ")
            .push_bind(workflow.clone());
    }
    if let Some(after) = &query.after {
        builder
            .push(" AND (r.created_at, r.run_id) < (")
            .push_bind(time_text(after.created_at));
        builder
            .push(", ")
            .push_bind(uuid_text(after.run_id))
            .push(")");
    }
    // One extra row tells whether another page follows.
    builder
        .push(" ORDER BY r.created_at DESC, r.run_id DESC LIMIT ")
        .push_bind(limit + 1);
    let rows = builder.build().fetch_all(&store.pool).await?;
    let mut items = rows
        .iter()
        .map(run_from_row)
        .collect::<Result<Vec<_>, _>>()?;
    let next = if items.len() as i64 > limit {
        items.truncate(limit as usize);
        items.last().map(|last| RunCursor {
            created_at: last.row.created_at,
            run_id: last.row.run_id,
        })
    } else {
        None
    };
    Ok(Page { items, next })
}

pub(super) fn event_from_row(row: &SqliteRow) -> Result<RecordedEvent, Error> {
    Ok(RecordedEvent {
        run_id: parse_uuid(&row.try_get::<String, _>("run_id")?)?,
        seq: prepare::to_u64(row.try_get("seq")?, "seq")?,
        position: prepare::to_u64(row.try_get("position")?, "position")?,
        event_type: row.try_get("event_type")?,
        schema_version: u32::try_from(row.try_get::<i64, _>("schema_version")?)
            .map_err(|_| Error::corrupt("schema_version out of range"))?,
        payload: parse_json(&row.try_get::<String, _>("payload")?)?,
        recorded_at: parse_time(&row.try_get::<String, _>("recorded_at")?)?,
        prev_hash: row.try_get("prev_hash")?,
        hash: row.try_get("hash")?,
        log_hash: row.try_get("log_hash")?,
    })
}

fn run_from_row(row: &SqliteRow) -> Result<RunRecord, Error> {
    let parent: Option<String> = row.try_get("parent_run_id")?;
    let last_seq: Option<i64> = row.try_get("last_seq")?;
    Ok(RunRecord {
        row: RunRow {
            run_id: parse_uuid(&row.try_get::<String, _>("run_id")?)?,
            workflow: row.try_get("workflow")?,
            version: row.try_get("version")?,
            status: row.try_get("status")?,
            input: parse_json(&row.try_get::<String, _>("input")?)?,
            output: parse_optional_json(row.try_get("output")?)?,
            error: row.try_get("error")?,
            parent_run_id: parent.as_deref().map(parse_uuid).transpose()?,
            idempotency_key: row.try_get("idempotency_key")?,
            created_at: parse_time(&row.try_get::<String, _>("created_at")?)?,
            updated_at: parse_time(&row.try_get::<String, _>("updated_at")?)?,
        },
        last_seq: prepare::to_u64(last_seq.unwrap_or(0), "seq")?,
    })
}

pub(super) fn parse_uuid(text: &str) -> Result<Uuid, Error> {
    Uuid::parse_str(text).map_err(|error| Error::corrupt(format!("bad uuid {text:?}: {error}")))
}

pub(super) fn parse_time(text: &str) -> Result<DateTime<Utc>, Error> {
    DateTime::parse_from_rfc3339(text)
        .map(|at| at.with_timezone(&Utc))
        .map_err(|error| Error::corrupt(format!("bad time {text:?}: {error}")))
}

pub(super) fn parse_json(text: &str) -> Result<serde_json::Value, Error> {
    serde_json::from_str(text).map_err(|error| Error::corrupt(format!("bad JSON column: {error}")))
}

fn parse_optional_json(text: Option<String>) -> Result<Option<serde_json::Value>, Error> {
    text.as_deref().map(parse_json).transpose()
}
