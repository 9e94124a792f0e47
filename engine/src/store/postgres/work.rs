//! PostgreSQL work distribution: `FOR UPDATE SKIP LOCKED` claims with leases,
//! fencing by lease token, and firing due timers into tasks exactly once.

use std::time::Duration;

use chrono::{DateTime, Utc};

use super::{PostgresStore, WORK_CHANNEL};
use crate::store::decode;
use crate::store::error::Error;
use crate::store::prepare;
use crate::store::types::*;
use crate::store::work_queue::WorkQueue;

impl WorkQueue for PostgresStore {
    async fn claim_tasks(
        &self,
        worker: &str,
        queue: &str,
        max: u32,
        lease_ms: u64,
    ) -> Result<Vec<ClaimedTask>, Error> {
        let limit = prepare::page(&self.config, max)?;
        let lease_length = prepare::lease(&self.config, lease_ms)?;
        let token = LeaseToken(new_id());
        let now = self.now();
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
        .fetch_all(&self.pool)
        .await?;
        let lease = Lease {
            owner: worker.to_owned(),
            token,
            expires_at,
        };
        let mut tasks = rows
            .iter()
            .map(|row| decode::claimed_task(row, &lease))
            .collect::<Result<Vec<_>, Error>>()?;
        tasks.sort_by_key(|task| task.task_id);
        Ok(tasks)
    }

    async fn renew_lease(
        &self,
        task_id: TaskId,
        token: LeaseToken,
        lease_ms: u64,
    ) -> Result<Lease, Error> {
        let lease_length = prepare::lease(&self.config, lease_ms)?;
        let now = self.now();
        let expires_at = now + lease_length;
        let owner: Option<String> = sqlx::query_scalar(
            "UPDATE tasks SET lease_expires_at = $1, available_at = $1 \
             WHERE task_id = $2 AND lease_token = $3 AND lease_expires_at > $4 RETURNING lease_owner",
        )
        .bind(expires_at)
        .bind(task_id)
        .bind(token.0)
        .bind(now)
        .fetch_optional(&self.pool)
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

    async fn complete_task(&self, task_id: TaskId, token: LeaseToken) -> Result<(), Error> {
        let done = sqlx::query(
            "DELETE FROM tasks WHERE task_id = $1 AND lease_token = $2 AND lease_expires_at > $3",
        )
        .bind(task_id)
        .bind(token.0)
        .bind(self.now())
        .execute(&self.pool)
        .await?;
        if done.rows_affected() == 1 {
            Ok(())
        } else {
            Err(Error::LeaseLost { task_id })
        }
    }

    async fn due_timers(&self, now: DateTime<Utc>, max: u32) -> Result<Vec<FiredTimer>, Error> {
        let limit = prepare::page(&self.config, max)?;
        let mut transaction = self.pool.begin().await?;
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
        .bind(self.now())
        .fetch_all(&mut *transaction)
        .await?;
        let fired = rows
            .iter()
            .map(decode::fired_timer)
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

    async fn wait_for_work(&self, timeout: Duration) -> Result<bool, Error> {
        self.start_listener().await?;
        Ok(tokio::time::timeout(timeout, self.wakes.local.notified())
            .await
            .is_ok())
    }

    async fn queue_depth(&self) -> Result<u64, Error> {
        let count = sqlx::query_scalar(decode::QUEUE_DEPTH_SQL)
            .fetch_one(&self.pool)
            .await?;
        Ok(decode::count(count))
    }

    async fn expired_leases(&self, now: DateTime<Utc>) -> Result<u64, Error> {
        let count = sqlx::query_scalar(
            "SELECT COUNT(*) FROM tasks WHERE lease_owner IS NOT NULL AND lease_expires_at < $1",
        )
        .bind(now)
        .fetch_one(&self.pool)
        .await?;
        Ok(decode::count(count))
    }
}
