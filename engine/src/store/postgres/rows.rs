//! The non-event rows of a PostgreSQL append, written in ONE statement (one
//! round trip): run and step upserts, new tasks and timers, cancelled timers,
//! the wake-up NOTIFY, and finally the log lock. Round trips, not rows, are
//! what a single-event transition pays for, so this statement carries it all.

use chrono::{DateTime, Utc};
use sqlx::PgConnection;
use uuid::Uuid;

use super::WORK_CHANNEL;
use super::append::LOG_LOCK_KEY;
use crate::store::error::Error;
use crate::store::types::*;

/// Data-modifying CTEs run to completion before the final SELECT reads their
/// counts; the lock's argument depends on every count, so the log lock is
/// taken after all row locks (the order every transaction follows).
const WRITE_ROWS: &str = "WITH \
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
    ct AS (DELETE FROM timers d USING UNNEST($30::uuid[], $31::uuid[]) AS c(timer_id, run_id) \
        WHERE d.timer_id = c.timer_id AND d.run_id = c.run_id RETURNING 1), \
    done AS MATERIALIZED (SELECT (SELECT count(*) FROM r) + (SELECT count(*) FROM s) + (SELECT count(*) FROM tm) \
        + (SELECT count(*) FROM ct) AS rows, (SELECT count(*) FROM t) AS tasks) \
    SELECT (SELECT count(*) FROM (SELECT pg_notify($33, '') FROM done WHERE done.tasks > 0 OFFSET 0) AS sent) AS notified, \
    (SELECT count(*) FROM (SELECT pg_advisory_xact_lock($32 + 0 * (done.rows + done.tasks)) FROM done OFFSET 0) AS locked) \
    AS locked";

/// Writes the rows of `requests` (each request's projection and work) and
/// takes the log lock, in one round trip. Rows are sorted by key so that
/// concurrent transactions lock them in the same order.
pub(super) async fn write_rows_and_lock(
    connection: &mut PgConnection,
    requests: &[&AppendRequest],
    now: DateTime<Utc>,
) -> Result<(), Error> {
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
    let tasks: Vec<(Uuid, &NewTask)> = requests
        .iter()
        .flat_map(|request| request.enqueue.iter().map(|task| (request.run_id, task)))
        .collect();
    let timers: Vec<(Uuid, &NewTimer)> = requests
        .iter()
        .flat_map(|request| request.timers.iter().map(|timer| (request.run_id, timer)))
        .collect();
    let cancelled: Vec<(Uuid, Uuid)> = requests
        .iter()
        .flat_map(|request| {
            request
                .cancel_timers
                .iter()
                .map(|timer_id| (*timer_id, request.run_id))
        })
        .collect();
    sqlx::query(WRITE_ROWS)
        .bind(runs.iter().map(|run| run.run_id).collect::<Vec<_>>())
        .bind(
            runs.iter()
                .map(|run| run.workflow.clone())
                .collect::<Vec<_>>(),
        )
        .bind(
            runs.iter()
                .map(|run| run.version.clone())
                .collect::<Vec<_>>(),
        )
        .bind(
            runs.iter()
                .map(|run| run.status.clone())
                .collect::<Vec<_>>(),
        )
        .bind(
            runs.iter()
                .map(|run| run.input.to_string())
                .collect::<Vec<_>>(),
        )
        .bind(
            runs.iter()
                .map(|run| run.output.as_ref().map(ToString::to_string))
                .collect::<Vec<_>>(),
        )
        .bind(runs.iter().map(|run| run.error.clone()).collect::<Vec<_>>())
        .bind(runs.iter().map(|run| run.parent_run_id).collect::<Vec<_>>())
        .bind(
            runs.iter()
                .map(|run| run.idempotency_key.clone())
                .collect::<Vec<_>>(),
        )
        .bind(runs.iter().map(|run| run.created_at).collect::<Vec<_>>())
        .bind(runs.iter().map(|run| run.updated_at).collect::<Vec<_>>())
        .bind(steps.iter().map(|step| step.run_id).collect::<Vec<_>>())
        .bind(
            steps
                .iter()
                .map(|step| step.step_id.clone())
                .collect::<Vec<_>>(),
        )
        .bind(
            steps
                .iter()
                .map(|step| step.status.clone())
                .collect::<Vec<_>>(),
        )
        .bind(
            steps
                .iter()
                .map(|step| i32::try_from(step.attempts).unwrap_or(i32::MAX))
                .collect::<Vec<_>>(),
        )
        .bind(
            steps
                .iter()
                .map(|step| step.output.as_ref().map(ToString::to_string))
                .collect::<Vec<_>>(),
        )
        .bind(
            steps
                .iter()
                .map(|step| step.error.clone())
                .collect::<Vec<_>>(),
        )
        .bind(steps.iter().map(|step| step.updated_at).collect::<Vec<_>>())
        .bind(
            tasks
                .iter()
                .map(|(_, task)| task.task_id)
                .collect::<Vec<_>>(),
        )
        .bind(tasks.iter().map(|(run_id, _)| *run_id).collect::<Vec<_>>())
        .bind(
            tasks
                .iter()
                .map(|(_, task)| task.queue.clone())
                .collect::<Vec<_>>(),
        )
        .bind(
            tasks
                .iter()
                .map(|(_, task)| task.payload.to_string())
                .collect::<Vec<_>>(),
        )
        .bind(
            tasks
                .iter()
                .map(|(_, task)| task.available_at.unwrap_or(now))
                .collect::<Vec<_>>(),
        )
        .bind(now)
        .bind(
            timers
                .iter()
                .map(|(_, timer)| timer.timer_id)
                .collect::<Vec<_>>(),
        )
        .bind(timers.iter().map(|(run_id, _)| *run_id).collect::<Vec<_>>())
        .bind(
            timers
                .iter()
                .map(|(_, timer)| timer.queue.clone())
                .collect::<Vec<_>>(),
        )
        .bind(
            timers
                .iter()
                .map(|(_, timer)| timer.payload.to_string())
                .collect::<Vec<_>>(),
        )
        .bind(
            timers
                .iter()
                .map(|(_, timer)| timer.fire_at)
                .collect::<Vec<_>>(),
        )
        .bind(
            cancelled
                .iter()
                .map(|(timer_id, _)| *timer_id)
                .collect::<Vec<_>>(),
        )
        .bind(
            cancelled
                .iter()
                .map(|(_, run_id)| *run_id)
                .collect::<Vec<_>>(),
        )
        .bind(LOG_LOCK_KEY)
        .bind(WORK_CHANNEL)
        .execute(&mut *connection)
        .await?;
    Ok(())
}
