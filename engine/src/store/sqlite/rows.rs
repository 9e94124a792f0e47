//! The rows of a SQLite append batch, written with one statement per kind
//! (events, runs, steps, tasks, timers, cancelled timers, completed tasks)
//! whatever the batch size: each statement takes its rows as one JSON array
//! bound to `?1` and unpacked by `json_each`. Every statement is a hop to
//! sqlx's SQLite worker thread, so hops, not rows, set the cost of a batch.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::SqliteConnection;

use super::{time_text, uuid_text};
use crate::store::error::Error;
use crate::store::prepare::{self, Checked};
use crate::store::types::*;

/// Most bytes of event rows (mostly payloads) in one INSERT's JSON array;
/// bigger batches take several statements.
const EVENT_ROWS_JSON_BYTES_MAX: usize = 8 * 1024 * 1024;

/// Binds `rows` as one JSON array and runs `sql` (nothing when empty).
async fn execute_rows<T: Serialize>(
    connection: &mut SqliteConnection,
    sql: &'static str,
    rows: &[T],
) -> Result<(), Error> {
    if rows.is_empty() {
        return Ok(());
    }
    let json = serde_json::to_string(rows)
        .map_err(|error| Error::invalid(format!("encoding rows: {error}")))?;
    sqlx::query(sql)
        .bind(json)
        .execute(&mut *connection)
        .await?;
    Ok(())
}

type EventRow<'a> = (
    i64,
    String,
    i64,
    &'a str,
    u32,
    &'a str,
    String,
    &'a str,
    &'a str,
    &'a str,
    String,
);

/// Inserts the sealed events of every accepted request.
pub(super) async fn insert_events(
    connection: &mut SqliteConnection,
    accepted: &[(&Checked<'_>, Vec<RecordedEvent>)],
) -> Result<(), Error> {
    const SQL: &str = "INSERT INTO events (position, run_id, seq, event_type, schema_version, payload, \
        recorded_at, prev_hash, hash, log_hash, append_id) SELECT value ->> 0, value ->> 1, value ->> 2, \
        value ->> 3, value ->> 4, value ->> 5, value ->> 6, value ->> 7, value ->> 8, value ->> 9, \
        value ->> 10 FROM json_each(?1)";
    let mut rows: Vec<EventRow<'_>> = Vec::new();
    let mut bytes = 0;
    for (item, events) in accepted {
        let append_id = uuid_text(item.request.append_id);
        for (event, payload) in events.iter().zip(&item.payloads) {
            if bytes + payload.len() > EVENT_ROWS_JSON_BYTES_MAX && !rows.is_empty() {
                execute_rows(connection, SQL, &rows).await?;
                rows.clear();
                bytes = 0;
            }
            bytes += payload.len();
            rows.push((
                prepare::to_i64(event.position)?,
                uuid_text(event.run_id),
                prepare::to_i64(event.seq)?,
                &event.event_type,
                event.schema_version,
                payload,
                time_text(event.recorded_at),
                &event.prev_hash,
                &event.hash,
                &event.log_hash,
                append_id.clone(),
            ));
        }
    }
    execute_rows(connection, SQL, &rows).await
}

/// Upserts run and step rows (a later row for the same key wins).
pub(super) async fn write_projections(
    connection: &mut SqliteConnection,
    projections: &[&ProjectionUpdate],
) -> Result<(), Error> {
    // `WHERE true` tells SQLite's parser that ON CONFLICT belongs to the upsert.
    const RUNS: &str = "INSERT INTO runs (run_id, workflow, version, status, input, output, error, \
        parent_run_id, idempotency_key, created_at, updated_at, forked_from) SELECT value ->> 0, \
        value ->> 1, value ->> 2, value ->> 3, value ->> 4, value ->> 5, value ->> 6, value ->> 7, \
        value ->> 8, value ->> 9, value ->> 10, value ->> 11 FROM json_each(?1) WHERE true \
        ON CONFLICT (run_id) DO UPDATE SET workflow = excluded.workflow, version = excluded.version, \
        status = excluded.status, input = excluded.input, output = excluded.output, error = excluded.error, \
        parent_run_id = excluded.parent_run_id, idempotency_key = excluded.idempotency_key, \
        created_at = excluded.created_at, updated_at = excluded.updated_at, \
        forked_from = excluded.forked_from";
    const STEPS: &str = "INSERT INTO steps (run_id, step_id, status, attempts, output, error, updated_at) \
        SELECT value ->> 0, value ->> 1, value ->> 2, value ->> 3, value ->> 4, value ->> 5, value ->> 6 \
        FROM json_each(?1) WHERE true ON CONFLICT (run_id, step_id) DO UPDATE SET \
        status = excluded.status, attempts = excluded.attempts, output = excluded.output, \
        error = excluded.error, updated_at = excluded.updated_at";
    let runs: Vec<_> = projections
        .iter()
        .filter_map(|projection| projection.run.as_ref())
        .map(|run| {
            (
                uuid_text(run.run_id),
                &run.workflow,
                &run.version,
                &run.status,
                run.input.to_string(),
                run.output.as_ref().map(ToString::to_string),
                &run.error,
                run.parent_run_id.map(uuid_text),
                &run.idempotency_key,
                time_text(run.created_at),
                time_text(run.updated_at),
                run.forked_from.map(uuid_text),
            )
        })
        .collect();
    execute_rows(connection, RUNS, &runs).await?;
    let steps: Vec<_> = projections
        .iter()
        .flat_map(|projection| &projection.steps)
        .map(|step| {
            (
                uuid_text(step.run_id),
                &step.step_id,
                &step.status,
                step.attempts,
                step.output.as_ref().map(ToString::to_string),
                &step.error,
                time_text(step.updated_at),
            )
        })
        .collect();
    execute_rows(connection, STEPS, &steps).await
}

/// Enqueues tasks, adds and cancels timers, and removes completed tasks
/// (their leases were checked in this transaction, which holds the lock).
pub(super) async fn write_work(
    connection: &mut SqliteConnection,
    requests: &[&AppendRequest],
    now: DateTime<Utc>,
) -> Result<(), Error> {
    // A task leased at append time is claimed once already: ready again
    // (for anyone) when its lease expires, exactly as after a claim.
    const TASKS: &str = "INSERT INTO tasks (task_id, run_id, queue, payload, available_at, created_at, \
        lease_owner, lease_token, lease_expires_at, claims) \
        SELECT value ->> 0, value ->> 1, value ->> 2, value ->> 3, value ->> 4, value ->> 5, \
        value ->> 6, value ->> 7, value ->> 8, value ->> 9 FROM json_each(?1)";
    const TIMERS: &str = "INSERT INTO timers (timer_id, run_id, queue, payload, fire_at, created_at) \
        SELECT value ->> 0, value ->> 1, value ->> 2, value ->> 3, value ->> 4, value ->> 5 FROM json_each(?1)";
    const CANCEL: &str = "DELETE FROM timers WHERE (timer_id, run_id) IN \
        (SELECT value ->> 0, value ->> 1 FROM json_each(?1))";
    const COMPLETE: &str = "DELETE FROM tasks WHERE task_id IN (SELECT value FROM json_each(?1))";
    let created_at = time_text(now);
    let tasks: Vec<_> = requests
        .iter()
        .flat_map(|request| request.enqueue.iter().map(|task| (request.run_id, task)))
        .map(|(run_id, task)| {
            let lease = task.lease.as_ref();
            let expires_at = lease.map(|lease| {
                time_text(now + chrono::Duration::milliseconds(lease.lease_ms as i64))
            });
            let available_at = match &expires_at {
                Some(expires_at) => expires_at.clone(),
                None => time_text(task.available_at.unwrap_or(now)),
            };
            (
                uuid_text(task.task_id),
                uuid_text(run_id),
                &task.queue,
                task.payload.to_string(),
                available_at,
                &created_at,
                lease.map(|lease| &lease.owner),
                lease.map(|lease| uuid_text(lease.token.0)),
                expires_at,
                u32::from(lease.is_some()),
            )
        })
        .collect();
    execute_rows(connection, TASKS, &tasks).await?;
    let timers: Vec<_> = requests
        .iter()
        .flat_map(|request| request.timers.iter().map(|timer| (request.run_id, timer)))
        .map(|(run_id, timer)| {
            (
                uuid_text(timer.timer_id),
                uuid_text(run_id),
                &timer.queue,
                timer.payload.to_string(),
                time_text(timer.fire_at),
                &created_at,
            )
        })
        .collect();
    execute_rows(connection, TIMERS, &timers).await?;
    let cancelled: Vec<_> = requests
        .iter()
        .flat_map(|request| {
            let run_id = uuid_text(request.run_id);
            request
                .cancel_timers
                .iter()
                .map(move |timer_id| (uuid_text(*timer_id), run_id.clone()))
        })
        .collect();
    execute_rows(connection, CANCEL, &cancelled).await?;
    let completed: Vec<_> = requests
        .iter()
        .filter_map(|request| request.complete.map(|(task_id, _)| uuid_text(task_id)))
        .collect();
    execute_rows(connection, COMPLETE, &completed).await
}
