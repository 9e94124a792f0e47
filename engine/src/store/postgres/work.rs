//! PostgreSQL work distribution: `FOR UPDATE SKIP LOCKED` claims with leases,
//! fencing by lease token, and firing due timers into tasks exactly once.

use chrono::{DateTime, Utc};
use sqlx::Row;
use uuid::Uuid;

use super::read::parse_json;
use super::{PostgresStore, WORK_CHANNEL};
use crate::store::error::Error;
use crate::store::prepare;
use crate::store::types::*;

pub(super) async fn claim_tasks(
    store: &PostgresStore,
    worker: &str,
    queue: &str,
    max: u32,
    lease_ms: u64,
) -> Result<Vec<ClaimedTask>, Error> {
    let limit = prepare::page(&store.config, max)?;
    let lease_length = prepare::lease(&store.config, lease_ms)?;
    let token = LeaseToken(new_id());
    let now = store.now();
    let expires_at = now + lease_length;
    // Competing workers skip each other's locked rows instead of queueing;
    // available_at moves to the lease expiry, when the task is ready again.
    let rows = sqlx::query(
        "WITH ready AS (SELECT task_id FROM tasks WHERE queue = $1 AND available_at <= $2 \
         ORDER BY available_at, task_id LIMIT $3 FOR UPDATE SKIP LOCKED) \
         UPDATE tasks t SET lease_owner = $4, lease_token = $5, lease_expires_at = $6, available_at = $6, \
         claims = t.claims + 1 FROM ready WHERE t.task_id = ready.task_id \
         RETURNING t.task_id, t.run_id, t.queue, t.payload::text AS payload, t.claims",
    )
    .bind(queue)
    .bind(now)
    .bind(limit)
    .bind(worker)
    .bind(token.0)
    .bind(expires_at)
    .fetch_all(&store.pool)
    .await?;
    let lease = Lease {
        owner: worker.to_owned(),
        token,
        expires_at,
    };
    let mut tasks = rows
        .iter()
        .map(|row| {
            Ok(ClaimedTask {
                task_id: row.try_get("task_id")?,
                run_id: row.try_get("run_id")?,
                queue: row.try_get("queue")?,
                payload: parse_json(&row.try_get::<String, _>("payload")?)?,
                claims: u32::try_from(row.try_get::<i32, _>("claims")?)
                    .map_err(|_| Error::corrupt("task claims out of range"))?,
                lease: lease.clone(),
            })
        })
        .collect::<Result<Vec<_>, Error>>()?;
    tasks.sort_by_key(|task| task.task_id);
    Ok(tasks)
}

pub(super) async fn renew_lease(
    store: &PostgresStore,
    task_id: TaskId,
    token: LeaseToken,
    lease_ms: u64,
) -> Result<Lease, Error> {
    let lease_length = prepare::lease(&store.config, lease_ms)?;
    let now = store.now();
    let expires_at = now + lease_length;
    let owner: Option<String> = sqlx::query_scalar(
        "UPDATE tasks SET lease_expires_at = $1, available_at = $1 \
         WHERE task_id = $2 AND lease_token = $3 AND lease_expires_at > $4 RETURNING lease_owner",
    )
    .bind(expires_at)
    .bind(task_id)
    .bind(token.0)
    .bind(now)
    .fetch_optional(&store.pool)
    .await?;
    match owner {
        Some(owner) => Ok(Lease {
            owner,
            token,
            expires_at,
        }),
        None => Err(Error::LeaseLost { task_id }),
    }
}

pub(super) async fn complete_task(
    store: &PostgresStore,
    task_id: TaskId,
    token: LeaseToken,
) -> Result<(), Error> {
    let done = sqlx::query(
        "DELETE FROM tasks WHERE task_id = $1 AND lease_token = $2 AND lease_expires_at > $3",
    )
    .bind(task_id)
    .bind(token.0)
    .bind(store.now())
    .execute(&store.pool)
    .await?;
    if done.rows_affected() == 1 {
        Ok(())
    } else {
        Err(Error::LeaseLost { task_id })
    }
}

pub(super) async fn due_timers(
    store: &PostgresStore,
    now: DateTime<Utc>,
    max: u32,
) -> Result<Vec<FiredTimer>, Error> {
    let limit = prepare::page(&store.config, max)?;
    let mut transaction = store.pool.begin().await?;
    // Deleting the timer and inserting its task in one statement is what
    // makes it fire once, however many nodes poll.
    let rows = sqlx::query(
        "WITH due AS (SELECT timer_id FROM timers WHERE fire_at <= $1 ORDER BY fire_at, timer_id LIMIT $2 \
         FOR UPDATE SKIP LOCKED), \
         fired AS (DELETE FROM timers t USING due WHERE t.timer_id = due.timer_id \
         RETURNING t.timer_id, t.run_id, t.queue, t.payload, t.fire_at), \
         moved AS (INSERT INTO tasks (task_id, run_id, queue, payload, available_at, created_at) \
         SELECT timer_id, run_id, queue, payload, fire_at, $3 FROM fired) \
         SELECT timer_id, run_id, queue, payload::text AS payload, fire_at FROM fired ORDER BY fire_at, timer_id",
    )
    .bind(now)
    .bind(limit)
    .bind(store.now())
    .fetch_all(&mut *transaction)
    .await?;
    let fired = rows
        .iter()
        .map(|row| {
            Ok(FiredTimer {
                timer_id: row.try_get::<Uuid, _>("timer_id")?,
                run_id: row.try_get("run_id")?,
                queue: row.try_get("queue")?,
                fire_at: row.try_get("fire_at")?,
                payload: parse_json(&row.try_get::<String, _>("payload")?)?,
            })
        })
        .collect::<Result<Vec<_>, Error>>()?;
    if !fired.is_empty() {
        sqlx::query("SELECT pg_notify($1, '')")
            .bind(WORK_CHANNEL)
            .execute(&mut *transaction)
            .await?;
    }
    transaction.commit().await?;
    Ok(fired)
}
