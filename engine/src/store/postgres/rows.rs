//! The non-event rows of a PostgreSQL append, written in ONE statement (one
//! round trip): run and step upserts, new tasks and timers, cancelled timers,
//! the wake-up NOTIFY, and finally the log lock. Round trips, not rows, are
//! what a single-event transition pays for, so this statement carries it all.

use chrono::{DateTime, Utc};
use sqlx::postgres::{PgArguments, PgRow};
use sqlx::query::Query;
use sqlx::{PgConnection, Postgres};
use uuid::Uuid;

use super::WORK_CHANNEL;
use super::append::LOG_LOCK_KEY;
use crate::store::error::Error;
use crate::store::types::*;

/// Data-modifying CTEs shared by both statements: completions, run and step
/// upserts, tasks, timers, cancelled timers, and the NOTIFY (sent once, when
/// tasks were enqueued). They run to completion before anything reads their
/// counts, and the log-lock functions get every count as an argument, so the
/// log lock is taken after all row locks (the order every transaction follows).
macro_rules! row_ctes {
    () => {
        "WITH \
            r AS (INSERT INTO runs (run_id, workflow, version, status, input, output, error, parent_run_id, \
                idempotency_key, created_at, updated_at) \
                SELECT u.run_id, u.workflow, u.version, u.status, u.input::json, u.output::json, u.error, \
                u.parent_run_id, u.idempotency_key, u.created_at, u.updated_at \
                FROM UNNEST($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], \
                $8::uuid[], $9::text[], $10::timestamptz[], $11::timestamptz[]) AS u(run_id, workflow, version, \
                status, input, output, error, parent_run_id, idempotency_key, created_at, updated_at) \
                ON CONFLICT (run_id) DO UPDATE SET workflow = EXCLUDED.workflow, version = EXCLUDED.version, \
                status = EXCLUDED.status, input = EXCLUDED.input, output = EXCLUDED.output, error = EXCLUDED.error, \
                parent_run_id = EXCLUDED.parent_run_id, idempotency_key = EXCLUDED.idempotency_key, \
                created_at = EXCLUDED.created_at, updated_at = EXCLUDED.updated_at RETURNING 1), \
            s AS (INSERT INTO steps (run_id, step_id, status, attempts, output, error, updated_at) \
                SELECT u.run_id, u.step_id, u.status, u.attempts, u.output::json, u.error, u.updated_at \
                FROM UNNEST($12::uuid[], $13::text[], $14::text[], $15::int4[], $16::text[], $17::text[], \
                $18::timestamptz[]) AS u(run_id, step_id, status, attempts, output, error, updated_at) \
                ON CONFLICT (run_id, step_id) DO UPDATE SET status = EXCLUDED.status, attempts = EXCLUDED.attempts, \
                output = EXCLUDED.output, error = EXCLUDED.error, updated_at = EXCLUDED.updated_at RETURNING 1), \
            t AS (INSERT INTO tasks (task_id, run_id, queue, payload, available_at, created_at) \
                SELECT u.task_id, u.run_id, u.queue, u.payload::json, u.available_at, $24 \
                FROM UNNEST($19::uuid[], $20::uuid[], $21::text[], $22::text[], $23::timestamptz[]) \
                AS u(task_id, run_id, queue, payload, available_at) RETURNING 1), \
            tm AS (INSERT INTO timers (timer_id, run_id, queue, payload, fire_at, created_at) \
                SELECT u.timer_id, u.run_id, u.queue, u.payload::json, u.fire_at, $24 \
                FROM UNNEST($25::uuid[], $26::uuid[], $27::text[], $28::text[], $29::timestamptz[]) \
                AS u(timer_id, run_id, queue, payload, fire_at) RETURNING 1), \
            ct AS (DELETE FROM timers d WHERE d.timer_id = ANY($30::uuid[]) \
                AND (d.timer_id, d.run_id) IN (SELECT * FROM UNNEST($30::uuid[], $31::uuid[])) RETURNING 1), \
            cp AS (DELETE FROM tasks d WHERE d.task_id = ANY($35::uuid[]) \
                AND (d.task_id, d.lease_token) IN (SELECT * FROM UNNEST($35::uuid[], $36::uuid[])) \
                AND d.lease_expires_at > $24 RETURNING 1), \
            done AS MATERIALIZED (SELECT (SELECT count(*) FROM cp) AS completed, (SELECT count(*) FROM r) + (SELECT count(*) FROM s) + (SELECT count(*) FROM tm) \
                + (SELECT count(*) FROM ct) AS rows, (SELECT count(*) FROM t) AS tasks), \
            notified AS MATERIALIZED (SELECT count(*) AS n FROM (SELECT pg_notify($33, '') FROM done \
                WHERE done.tasks > 0 OFFSET 0) AS sent)"
    };
}

/// The rows, then the log lock and the heads read after it (migration 0004).
const WRITE_ROWS: &str = concat!(
    row_ctes!(),
    " SELECT h.head_run_id, h.head_seq, h.head_hash FROM done, notified, \
     LATERAL imx_lock_log_heads($32, $34::uuid[], done.completed + done.rows + done.tasks + notified.n) AS h"
);

/// Everything in one statement: the rows, the log lock (taken after every
/// row lock, the order all transactions follow), then the events, sealed
/// against the heads this node committed. A stale head makes the events
/// INSERT fail on UNIQUE (position) or (run_id, seq); a lost lease fails the
/// statement through `imx_fail` (IX001, migration 0006). The events join
/// `chk`, so they are inserted last.
const APPEND_ALL: &str = concat!(
    row_ctes!(),
    ", lk AS MATERIALIZED (SELECT pg_advisory_xact_lock($32) FROM done, notified), \
     chk AS MATERIALIZED (SELECT CASE WHEN done.completed <> $37 \
        THEN imx_fail('IX001', 'imx: a completed task''s lease is no longer held') ELSE true END AS ok \
        FROM done, lk), \
     ev AS (INSERT INTO events (position, run_id, seq, event_type, schema_version, payload, recorded_at, \
        prev_hash, hash, log_hash, append_id) SELECT e.position, e.run_id, e.seq, e.event_type, \
        e.schema_version, e.payload::json, e.recorded_at, e.prev_hash, e.hash, e.log_hash, e.append_id \
        FROM UNNEST($38::int8[], $39::uuid[], $40::int8[], $41::text[], $42::int4[], $43::text[], \
        $44::timestamptz[], $45::text[], $46::text[], $47::text[], $48::uuid[]) AS e(position, run_id, seq, \
        event_type, schema_version, payload, recorded_at, prev_hash, hash, log_hash, append_id), chk \
        WHERE chk.ok RETURNING 1) \
     SELECT count(*) AS appended FROM ev"
);

/// Writes the rows of `requests` (each request's projection and work), takes
/// the log lock and returns the heads (`imx_lock_log_heads` rows), in one
/// round trip. Completions were done before (`$35`/`$36` stay empty).
pub(super) async fn write_rows_and_lock(
    connection: &mut PgConnection,
    requests: &[&AppendRequest],
    now: DateTime<Utc>,
) -> Result<Vec<PgRow>, Error> {
    let query = bind_rows(sqlx::query(WRITE_ROWS), requests, now, false);
    Ok(query.fetch_all(&mut *connection).await?)
}

/// The whole append as one statement (an implicit transaction): rows,
/// completions and the sealed events. `IX001` (a lease was lost) or a
/// unique violation (another writer moved a head) mean nothing was written.
pub(super) async fn append_all(
    pool: &sqlx::PgPool,
    requests: &[&AppendRequest],
    events: &[(&RecordedEvent, &String, Uuid)],
    now: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    let completing = requests
        .iter()
        .filter(|request| request.complete.is_some())
        .count();
    bind_rows(sqlx::query(APPEND_ALL), requests, now, true)
        .bind(completing as i64)
        .bind(col(events, |(event, _, _)| event.position as i64))
        .bind(col(events, |(event, _, _)| event.run_id))
        .bind(col(events, |(event, _, _)| event.seq as i64))
        .bind(col(events, |(event, _, _)| event.event_type.clone()))
        .bind(col(events, |(event, _, _)| event.schema_version as i32))
        .bind(col(events, |(_, payload, _)| (*payload).clone()))
        .bind(col(events, |(event, _, _)| event.recorded_at))
        .bind(col(events, |(event, _, _)| event.prev_hash.clone()))
        .bind(col(events, |(event, _, _)| event.hash.clone()))
        .bind(col(events, |(event, _, _)| event.log_hash.clone()))
        .bind(col(events, |(_, _, append_id)| *append_id))
        .execute(pool)
        .await?;
    Ok(())
}

/// Binds `$1`..`$36`: the rows of `requests`, sorted by key so that
/// concurrent transactions lock them in the same order.
fn bind_rows<'q>(
    query: Query<'q, Postgres, PgArguments>,
    requests: &[&AppendRequest],
    now: DateTime<Utc>,
    with_completions: bool,
) -> Query<'q, Postgres, PgArguments> {
    let tasks: Vec<(Uuid, &NewTask)> = requests
        .iter()
        .flat_map(|request| request.enqueue.iter().map(|task| (request.run_id, task)))
        .collect();
    let timers: Vec<(Uuid, &NewTimer)> = requests
        .iter()
        .flat_map(|request| request.timers.iter().map(|timer| (request.run_id, timer)))
        .collect();
    let mut completions: Vec<(Uuid, Uuid)> = requests
        .iter()
        .filter(|_| with_completions)
        .filter_map(|request| request.complete.map(|(task_id, token)| (task_id, token.0)))
        .collect();
    completions.sort();
    let cancelled: Vec<(Uuid, Uuid)> = requests
        .iter()
        .flat_map(|request| request.cancel_timers.iter().map(|id| (*id, request.run_id)))
        .collect();
    bind_projections(query, requests)
        .bind(col(&tasks, |(_, task)| task.task_id))
        .bind(col(&tasks, |(run_id, _)| *run_id))
        .bind(col(&tasks, |(_, task)| task.queue.clone()))
        .bind(col(&tasks, |(_, task)| task.payload.to_string()))
        .bind(col(&tasks, |(_, task)| task.available_at.unwrap_or(now)))
        .bind(now)
        .bind(col(&timers, |(_, timer)| timer.timer_id))
        .bind(col(&timers, |(run_id, _)| *run_id))
        .bind(col(&timers, |(_, timer)| timer.queue.clone()))
        .bind(col(&timers, |(_, timer)| timer.payload.to_string()))
        .bind(col(&timers, |(_, timer)| timer.fire_at))
        .bind(col(&cancelled, |(timer_id, _)| *timer_id))
        .bind(col(&cancelled, |(_, run_id)| *run_id))
        .bind(LOG_LOCK_KEY)
        .bind(WORK_CHANNEL)
        .bind(col(requests, |request| request.run_id))
        .bind(col(&completions, |(task_id, _)| *task_id))
        .bind(col(&completions, |(_, token)| *token))
}

/// Binds `$1`..`$18`: run rows and step rows.
fn bind_projections<'q>(
    query: Query<'q, Postgres, PgArguments>,
    requests: &[&AppendRequest],
) -> Query<'q, Postgres, PgArguments> {
    let projections: Vec<&ProjectionUpdate> =
        requests.iter().map(|request| &request.projection).collect();
    let mut runs: Vec<&RunRow> = projections
        .iter()
        .filter_map(|projection| projection.run.as_ref())
        .collect();
    runs.sort_by_key(|run| run.run_id);
    let mut steps: Vec<&StepRow> = projections
        .iter()
        .flat_map(|projection| &projection.steps)
        .collect();
    steps.sort_by(|a, b| (a.run_id, &a.step_id).cmp(&(b.run_id, &b.step_id)));
    // ON CONFLICT cannot touch one row twice in a statement: last one wins.
    steps.reverse();
    steps.dedup_by(|a, b| a.run_id == b.run_id && a.step_id == b.step_id);
    steps.reverse();
    query
        .bind(col(&runs, |run| run.run_id))
        .bind(col(&runs, |run| run.workflow.clone()))
        .bind(col(&runs, |run| run.version.clone()))
        .bind(col(&runs, |run| run.status.clone()))
        .bind(col(&runs, |run| run.input.to_string()))
        .bind(col(&runs, |run| {
            run.output.as_ref().map(ToString::to_string)
        }))
        .bind(col(&runs, |run| run.error.clone()))
        .bind(col(&runs, |run| run.parent_run_id))
        .bind(col(&runs, |run| run.idempotency_key.clone()))
        .bind(col(&runs, |run| run.created_at))
        .bind(col(&runs, |run| run.updated_at))
        .bind(col(&steps, |step| step.run_id))
        .bind(col(&steps, |step| step.step_id.clone()))
        .bind(col(&steps, |step| step.status.clone()))
        .bind(col(&steps, |step| {
            i32::try_from(step.attempts).unwrap_or(i32::MAX)
        }))
        .bind(col(&steps, |step| {
            step.output.as_ref().map(ToString::to_string)
        }))
        .bind(col(&steps, |step| step.error.clone()))
        .bind(col(&steps, |step| step.updated_at))
}

/// One column of a multi-row statement: `field` of every item.
fn col<T, U>(items: &[T], field: impl Fn(&T) -> U) -> Vec<U> {
    items.iter().map(field).collect()
}
