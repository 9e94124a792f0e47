//! SQLite appends (single and batched, one transaction) and the projection
//! rebuild. Under `BEGIN IMMEDIATE` this transaction is the only writer, so
//! every check (expected seq, lease, idempotency key) is made before writing.

use chrono::{DateTime, Utc};
use sqlx::SqliteConnection;

use super::read::{self, EVENT_COLUMNS};
use super::{SqliteStore, time_text, uuid_text};
use crate::store::error::Error;
use crate::store::prepare::{self, Checked};
use crate::store::types::*;

pub(super) async fn append_batch(
    store: &SqliteStore,
    requests: &[AppendRequest],
) -> Result<Vec<Result<Appended, Error>>, Error> {
    let checked = prepare::check_batch(&store.config, requests)?;
    let mut transaction = store.write_transaction().await?;
    let now = store.now();
    let mut log_head = read::log_head(&mut transaction).await?;
    let mut results = Vec::with_capacity(checked.len());
    let mut enqueued = false;
    for item in &checked {
        let result = append_one(&mut transaction, item, &mut log_head, now).await?;
        enqueued |= result.is_ok() && !item.request.enqueue.is_empty();
        results.push(result);
    }
    transaction.commit().await?;
    if enqueued {
        store.wake_workers();
    }
    Ok(results)
}

/// The outer error aborts the whole transaction; the inner one rejects only
/// this request, which has written nothing.
async fn append_one(
    connection: &mut SqliteConnection,
    item: &Checked<'_>,
    log_head: &mut LogHead,
    now: DateTime<Utc>,
) -> Result<Result<Appended, Error>, Error> {
    let request = item.request;
    let run_id = request.run_id;
    let (last_seq, last_hash) = run_head(connection, run_id).await?;
    if last_seq != request.expected_seq {
        if let Some(events) = already_appended(connection, request).await? {
            return Ok(Ok(Appended { run_id, events }));
        }
        let conflict = Error::Conflict {
            run_id,
            expected_seq: request.expected_seq,
            actual_seq: Some(last_seq),
        };
        return Ok(Err(conflict));
    }
    if let Some((task_id, token)) = request.complete
        && !lease_held(connection, task_id, token, now).await?
    {
        return Ok(Err(Error::LeaseLost { task_id }));
    }
    if let Some(key) = request
        .projection
        .run
        .as_ref()
        .and_then(|run| run.idempotency_key.as_deref())
    {
        let owner: Option<String> =
            sqlx::query_scalar("SELECT run_id FROM runs WHERE idempotency_key = ?1")
                .bind(key)
                .fetch_optional(&mut *connection)
                .await?;
        if let Some(owner) = owner.map(|text| read::parse_uuid(&text)).transpose()?
            && owner != run_id
        {
            return Ok(Err(Error::IdempotencyKeyTaken {
                key: key.to_owned(),
                run_id: owner,
            }));
        }
    }
    let events = prepare::seal(item, &last_hash, log_head, now)?;
    insert_events(connection, &events, item).await?;
    write_projection(connection, &request.projection).await?;
    write_work(connection, request, now).await?;
    Ok(Ok(Appended { run_id, events }))
}

async fn run_head(
    connection: &mut SqliteConnection,
    run_id: RunId,
) -> Result<(u64, String), Error> {
    let row: Option<(i64, String)> =
        sqlx::query_as("SELECT seq, hash FROM events WHERE run_id = ?1 ORDER BY seq DESC LIMIT 1")
            .bind(uuid_text(run_id))
            .fetch_optional(&mut *connection)
            .await?;
    match row {
        Some((seq, hash)) => Ok((prepare::to_u64(seq, "seq")?, hash)),
        None => Ok((0, crate::chain::GENESIS_HASH.to_owned())),
    }
}

/// The events this very request wrote in an earlier attempt whose outcome
/// the caller did not learn (the connection dropped during commit).
async fn already_appended(
    connection: &mut SqliteConnection,
    request: &AppendRequest,
) -> Result<Option<Vec<RecordedEvent>>, Error> {
    let sql = format!(
        "SELECT {EVENT_COLUMNS} FROM events WHERE run_id = ?1 AND seq > ?2 AND append_id = ?3 ORDER BY seq"
    );
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(uuid_text(request.run_id))
        .bind(prepare::to_i64(request.expected_seq)?)
        .bind(uuid_text(request.append_id))
        .fetch_all(&mut *connection)
        .await?;
    let events = rows
        .iter()
        .map(read::event_from_row)
        .collect::<Result<Vec<_>, _>>()?;
    let complete = events.len() == request.events.len()
        && events
            .first()
            .is_some_and(|event| event.seq == request.expected_seq + 1);
    Ok(complete.then_some(events))
}

async fn lease_held(
    connection: &mut SqliteConnection,
    task_id: TaskId,
    token: LeaseToken,
    now: DateTime<Utc>,
) -> Result<bool, Error> {
    let held: Option<i64> = sqlx::query_scalar(
        "SELECT 1 FROM tasks WHERE task_id = ?1 AND lease_token = ?2 AND lease_expires_at > ?3",
    )
    .bind(uuid_text(task_id))
    .bind(uuid_text(token.0))
    .bind(time_text(now))
    .fetch_optional(&mut *connection)
    .await?;
    Ok(held.is_some())
}

async fn insert_events(
    connection: &mut SqliteConnection,
    events: &[RecordedEvent],
    item: &Checked<'_>,
) -> Result<(), Error> {
    let append_id = uuid_text(item.request.append_id);
    for (event, payload) in events.iter().zip(&item.payloads) {
        sqlx::query(
            "INSERT INTO events (position, run_id, seq, event_type, schema_version, payload, recorded_at, \
             prev_hash, hash, log_hash, append_id) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
        )
        .bind(prepare::to_i64(event.position)?)
        .bind(uuid_text(event.run_id))
        .bind(prepare::to_i64(event.seq)?)
        .bind(&event.event_type)
        .bind(i64::from(event.schema_version))
        .bind(payload)
        .bind(time_text(event.recorded_at))
        .bind(&event.prev_hash)
        .bind(&event.hash)
        .bind(&event.log_hash)
        .bind(&append_id)
        .execute(&mut *connection)
        .await
        .map_err(|error| unique_is_conflict(error, item.request))?;
    }
    Ok(())
}

/// The UNIQUE (run_id, seq) constraint is the last line of defence against
/// a forked stream; a violation means another writer won.
fn unique_is_conflict(error: sqlx::Error, request: &AppendRequest) -> Error {
    match &error {
        sqlx::Error::Database(database) if database.is_unique_violation() => Error::Conflict {
            run_id: request.run_id,
            expected_seq: request.expected_seq,
            actual_seq: None,
        },
        _ => error.into(),
    }
}

pub(super) async fn write_projection(
    connection: &mut SqliteConnection,
    projection: &ProjectionUpdate,
) -> Result<(), Error> {
    if let Some(run) = &projection.run {
        sqlx::query(
            "INSERT INTO runs (run_id, workflow, version, status, input, output, error, parent_run_id, \
             idempotency_key, created_at, updated_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11) \
             ON CONFLICT (run_id) DO UPDATE SET workflow = excluded.workflow, version = excluded.version, \
             status = excluded.status, input = excluded.input, output = excluded.output, error = excluded.error, \
             parent_run_id = excluded.parent_run_id, idempotency_key = excluded.idempotency_key, \
             created_at = excluded.created_at, updated_at = excluded.updated_at",
        )
        .bind(uuid_text(run.run_id))
        .bind(&run.workflow)
        .bind(&run.version)
        .bind(&run.status)
        .bind(run.input.to_string())
        .bind(run.output.as_ref().map(ToString::to_string))
        .bind(&run.error)
        .bind(run.parent_run_id.map(uuid_text))
        .bind(&run.idempotency_key)
        .bind(time_text(run.created_at))
        .bind(time_text(run.updated_at))
        .execute(&mut *connection)
        .await?;
    }
    for step in &projection.steps {
        sqlx::query(
            "INSERT INTO steps (run_id, step_id, status, attempts, output, error, updated_at) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) ON CONFLICT (run_id, step_id) DO UPDATE SET \
             status = excluded.status, attempts = excluded.attempts, output = excluded.output, \
             error = excluded.error, updated_at = excluded.updated_at",
        )
        .bind(uuid_text(step.run_id))
        .bind(&step.step_id)
        .bind(&step.status)
        .bind(i64::from(step.attempts))
        .bind(step.output.as_ref().map(ToString::to_string))
        .bind(&step.error)
        .bind(time_text(step.updated_at))
        .execute(&mut *connection)
        .await?;
    }
    Ok(())
}

async fn write_work(
    connection: &mut SqliteConnection,
    request: &AppendRequest,
    now: DateTime<Utc>,
) -> Result<(), Error> {
    let run = uuid_text(request.run_id);
    for task in &request.enqueue {
        sqlx::query(
            "INSERT INTO tasks (task_id, run_id, queue, payload, available_at, created_at) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )
        .bind(uuid_text(task.task_id))
        .bind(&run)
        .bind(&task.queue)
        .bind(task.payload.to_string())
        .bind(time_text(task.available_at.unwrap_or(now)))
        .bind(time_text(now))
        .execute(&mut *connection)
        .await?;
    }
    for timer in &request.timers {
        sqlx::query(
            "INSERT INTO timers (timer_id, run_id, queue, payload, fire_at, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )
        .bind(uuid_text(timer.timer_id))
        .bind(&run)
        .bind(&timer.queue)
        .bind(timer.payload.to_string())
        .bind(time_text(timer.fire_at))
        .bind(time_text(now))
        .execute(&mut *connection)
        .await?;
    }
    for timer_id in &request.cancel_timers {
        sqlx::query("DELETE FROM timers WHERE timer_id = ?1 AND run_id = ?2")
            .bind(uuid_text(*timer_id))
            .bind(&run)
            .execute(&mut *connection)
            .await?;
    }
    if let Some((task_id, _)) = request.complete {
        // The lease was checked in this transaction, which holds the lock.
        sqlx::query("DELETE FROM tasks WHERE task_id = ?1")
            .bind(uuid_text(task_id))
            .execute(&mut *connection)
            .await?;
    }
    Ok(())
}

pub(super) async fn rebuild_projections<F>(
    store: &SqliteStore,
    mut fold: F,
) -> Result<RebuildStats, Error>
where
    F: FnMut(&[RecordedEvent]) -> ProjectionUpdate + Send,
{
    let mut transaction = store.write_transaction().await?;
    sqlx::query("DELETE FROM steps")
        .execute(&mut *transaction)
        .await?;
    sqlx::query("DELETE FROM runs")
        .execute(&mut *transaction)
        .await?;
    let run_ids: Vec<String> =
        sqlx::query_scalar("SELECT run_id FROM events WHERE seq = 1 ORDER BY position")
            .fetch_all(&mut *transaction)
            .await?;
    let mut stats = RebuildStats { runs: 0, events: 0 };
    for run_id in run_ids {
        let sql = format!("SELECT {EVENT_COLUMNS} FROM events WHERE run_id = ?1 ORDER BY seq");
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(&run_id)
            .fetch_all(&mut *transaction)
            .await?;
        let events = rows
            .iter()
            .map(read::event_from_row)
            .collect::<Result<Vec<_>, _>>()?;
        let update = fold(&events);
        write_projection(&mut transaction, &update).await?;
        stats.runs += 1;
        stats.events += events.len() as u64;
    }
    transaction.commit().await?;
    Ok(stats)
}
