//! PostgreSQL reads: streams, the global log, run and step projections.

use sqlx::postgres::PgRow;
use sqlx::{PgConnection, Row};
use uuid::Uuid;

use super::PostgresStore;
use crate::store::error::Error;
use crate::store::prepare;
use crate::store::types::*;

pub(super) const EVENT_COLUMNS: &str = "run_id, seq, position, event_type, schema_version, payload::text AS payload, \
     recorded_at, prev_hash, hash, log_hash";

const RUN_COLUMNS: &str = "r.run_id, r.workflow, r.version, r.status, r.input::text AS input, \
     r.output::text AS output, r.error, r.parent_run_id, r.idempotency_key, r.created_at, r.updated_at, \
     (SELECT MAX(seq) FROM events e WHERE e.run_id = r.run_id) AS last_seq";

pub(super) async fn read_stream(
    store: &PostgresStore,
    run_id: RunId,
    after_seq: u64,
    max: u32,
) -> Result<Vec<RecordedEvent>, Error> {
    let limit = prepare::page(&store.config, max)?;
    let sql = format!(
        "SELECT {EVENT_COLUMNS} FROM events WHERE run_id = $1 AND seq > $2 ORDER BY seq LIMIT $3"
    );
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(run_id)
        .bind(prepare::to_i64(after_seq)?)
        .bind(limit)
        .fetch_all(&store.pool)
        .await?;
    rows.iter().map(event_from_row).collect()
}

pub(super) async fn read_log(
    store: &PostgresStore,
    after_position: u64,
    max: u32,
) -> Result<Vec<RecordedEvent>, Error> {
    let limit = prepare::page(&store.config, max)?;
    let sql = format!(
        "SELECT {EVENT_COLUMNS} FROM events WHERE position > $1 ORDER BY position LIMIT $2"
    );
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(prepare::to_i64(after_position)?)
        .bind(limit)
        .fetch_all(&store.pool)
        .await?;
    rows.iter().map(event_from_row).collect()
}

pub(super) async fn log_head(connection: &mut PgConnection) -> Result<LogHead, Error> {
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
    store: &PostgresStore,
    run_id: RunId,
) -> Result<Option<RunRecord>, Error> {
    let sql = format!("SELECT {RUN_COLUMNS} FROM runs r WHERE r.run_id = $1");
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(run_id)
        .fetch_optional(&store.pool)
        .await?;
    row.as_ref().map(run_from_row).transpose()
}

pub(super) async fn find_run_by_key(
    store: &PostgresStore,
    key: &str,
) -> Result<Option<RunRecord>, Error> {
    let sql = format!("SELECT {RUN_COLUMNS} FROM runs r WHERE r.idempotency_key = $1");
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(key)
        .fetch_optional(&store.pool)
        .await?;
    row.as_ref().map(run_from_row).transpose()
}

pub(super) async fn get_steps(store: &PostgresStore, run_id: RunId) -> Result<Vec<StepRow>, Error> {
    let rows = sqlx::query(
        "SELECT run_id, step_id, status, attempts, output::text AS output, error, updated_at FROM steps \
         WHERE run_id = $1 ORDER BY step_id COLLATE \"C\"",
    )
    .bind(run_id)
    .fetch_all(&store.pool)
    .await?;
    rows.iter()
        .map(|row| {
            Ok(StepRow {
                run_id: row.try_get("run_id")?,
                step_id: row.try_get("step_id")?,
                status: row.try_get("status")?,
                attempts: u32::try_from(row.try_get::<i32, _>("attempts")?)
                    .map_err(|_| Error::corrupt("step attempts out of range"))?,
                output: parse_optional_json(row.try_get("output")?)?,
                error: row.try_get("error")?,
                updated_at: row.try_get("updated_at")?,
            })
        })
        .collect()
}

pub(super) async fn list_runs(
    store: &PostgresStore,
    query: &RunQuery,
) -> Result<Page<RunRecord, RunCursor>, Error> {
    let limit = prepare::page(&store.config, query.limit)?;
    let mut builder = sqlx::QueryBuilder::<sqlx::Postgres>::new(format!(
        "SELECT {RUN_COLUMNS} FROM runs r WHERE TRUE"
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
            .push_bind(after.created_at);
        builder.push(", ").push_bind(after.run_id).push(")");
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

pub(super) fn event_from_row(row: &PgRow) -> Result<RecordedEvent, Error> {
    Ok(RecordedEvent {
        run_id: row.try_get("run_id")?,
        seq: prepare::to_u64(row.try_get("seq")?, "seq")?,
        position: prepare::to_u64(row.try_get("position")?, "position")?,
        event_type: row.try_get("event_type")?,
        schema_version: u32::try_from(row.try_get::<i32, _>("schema_version")?)
            .map_err(|_| Error::corrupt("schema_version out of range"))?,
        payload: parse_json(&row.try_get::<String, _>("payload")?)?,
        recorded_at: row.try_get("recorded_at")?,
        prev_hash: row.try_get("prev_hash")?,
        hash: row.try_get("hash")?,
        log_hash: row.try_get("log_hash")?,
    })
}

fn run_from_row(row: &PgRow) -> Result<RunRecord, Error> {
    let last_seq: Option<i64> = row.try_get("last_seq")?;
    Ok(RunRecord {
        row: RunRow {
            run_id: row.try_get("run_id")?,
            workflow: row.try_get("workflow")?,
            version: row.try_get("version")?,
            status: row.try_get("status")?,
            input: parse_json(&row.try_get::<String, _>("input")?)?,
            output: parse_optional_json(row.try_get("output")?)?,
            error: row.try_get("error")?,
            parent_run_id: row.try_get::<Option<Uuid>, _>("parent_run_id")?,
            idempotency_key: row.try_get("idempotency_key")?,
            created_at: row.try_get("created_at")?,
            updated_at: row.try_get("updated_at")?,
        },
        last_seq: prepare::to_u64(last_seq.unwrap_or(0), "seq")?,
    })
}

pub(super) fn parse_json(text: &str) -> Result<serde_json::Value, Error> {
    serde_json::from_str(text).map_err(|error| Error::corrupt(format!("bad JSON column: {error}")))
}

fn parse_optional_json(text: Option<String>) -> Result<Option<serde_json::Value>, Error> {
    text.as_deref().map(parse_json).transpose()
}
