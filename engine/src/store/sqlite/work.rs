//! SQLite work distribution: leasing ready tasks, fencing by lease token, and
//! firing due timers into tasks exactly once. Each operation is one
//! `BEGIN IMMEDIATE` transaction, so claims never overlap.

use std::time::Duration;

use chrono::{DateTime, Utc};

use super::{SqliteStore, time_text, uuid_text};
use crate::store::decode;
use crate::store::error::Error;
use crate::store::prepare;
use crate::store::types::*;
use crate::store::work_queue::WorkQueue;

impl WorkQueue for SqliteStore {
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
        // Nothing ready: answer from a read, which in WAL mode takes no
        // lock. An idle claim would otherwise take SQLite's one write lock
        // and make the committer's appends wait behind it (and, through
        // the busy handler's growing sleeps, stall every run for a while).
        let ready: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM tasks WHERE queue = ?1 AND available_at <= ?2)",
        )
        .bind(queue)
        .bind(time_text(self.now()))
        .fetch_one(&self.pool)
        .await?;
        if !ready {
            return Ok(Vec::new());
        }
        let mut transaction = self.write_transaction().await?;
        let now = self.now();
        let expires_at = now + lease_length;
        // available_at moves to the lease expiry: the task is ready again (for
        // anyone) exactly when the lease runs out.
        let rows = sqlx::query(
            "UPDATE tasks SET lease_owner = ?1, lease_token = ?2, lease_expires_at = ?3, available_at = ?3, \
             claims = claims + 1 WHERE task_id IN (SELECT task_id FROM tasks WHERE queue = ?4 AND available_at <= ?5 \
             ORDER BY available_at, task_id LIMIT ?6) RETURNING task_id, run_id, queue, payload, claims",
        )
        .bind(worker)
        .bind(uuid_text(token.0))
        .bind(time_text(expires_at))
        .bind(queue)
        .bind(time_text(now))
        .bind(limit)
        .fetch_all(&mut *transaction)
        .await?;
        transaction.commit().await?;
        let lease = Lease {
            owner: worker.to_owned(),
            token,
            expires_at,
        };
        let mut tasks = rows
            .iter()
            .map(|row| decode::claimed_task(row, &lease))
            .collect::<Result<Vec<_>, Error>>()?;
        // RETURNING gives no order guarantee; hand tasks out oldest first.
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
        let mut transaction = self.write_transaction().await?;
        let now = self.now();
        let expires_at = now + lease_length;
        let owner: Option<String> = sqlx::query_scalar(
            "UPDATE tasks SET lease_expires_at = ?1, available_at = ?1 \
             WHERE task_id = ?2 AND lease_token = ?3 AND lease_expires_at > ?4 RETURNING lease_owner",
        )
        .bind(time_text(expires_at))
        .bind(uuid_text(task_id))
        .bind(uuid_text(token.0))
        .bind(time_text(now))
        .fetch_optional(&mut *transaction)
        .await?;
        transaction.commit().await?;
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
        let mut transaction = self.write_transaction().await?;
        let now = self.now();
        let done = sqlx::query(
            "DELETE FROM tasks WHERE task_id = ?1 AND lease_token = ?2 AND lease_expires_at > ?3",
        )
        .bind(uuid_text(task_id))
        .bind(uuid_text(token.0))
        .bind(time_text(now))
        .execute(&mut *transaction)
        .await?;
        transaction.commit().await?;
        if done.rows_affected() == 1 {
            Ok(())
        } else {
            Err(Error::LeaseLost { task_id })
        }
    }

    async fn due_timers(&self, now: DateTime<Utc>, max: u32) -> Result<Vec<FiredTimer>, Error> {
        let limit = prepare::page(&self.config, max)?;
        // Nothing due (the timer loop's usual answer): a read, no write
        // lock, as for an idle claim.
        let due: bool =
            sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM timers WHERE fire_at <= ?1)")
                .bind(time_text(now))
                .fetch_one(&self.pool)
                .await?;
        if !due {
            return Ok(Vec::new());
        }
        let mut transaction = self.write_transaction().await?;
        let rows = sqlx::query(
            "DELETE FROM timers WHERE timer_id IN (SELECT timer_id FROM timers WHERE fire_at <= ?1 \
             ORDER BY fire_at, timer_id LIMIT ?2) RETURNING timer_id, run_id, queue, payload, fire_at",
        )
        .bind(time_text(now))
        .bind(limit)
        .fetch_all(&mut *transaction)
        .await?;
        let mut fired = rows
            .iter()
            .map(decode::fired_timer)
            .collect::<Result<Vec<_>, Error>>()?;
        fired.sort_by_key(|timer| (timer.fire_at, timer.timer_id));
        let created_at = self.now();
        for timer in &fired {
            sqlx::query(
                "INSERT INTO tasks (task_id, run_id, queue, payload, available_at, created_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )
            .bind(uuid_text(timer.timer_id))
            .bind(uuid_text(timer.run_id))
            .bind(&timer.queue)
            .bind(timer.payload.to_string())
            .bind(time_text(timer.fire_at))
            .bind(time_text(created_at))
            .execute(&mut *transaction)
            .await?;
        }
        transaction.commit().await?;
        if !fired.is_empty() {
            self.wake_workers();
        }
        Ok(fired)
    }

    async fn wait_for_work(&self, timeout: Duration) -> Result<bool, Error> {
        Ok(tokio::time::timeout(timeout, self.work.notified())
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
            "SELECT COUNT(*) FROM tasks WHERE lease_owner IS NOT NULL AND lease_expires_at < ?1",
        )
        .bind(time_text(now))
        .fetch_one(&self.pool)
        .await?;
        Ok(decode::count(count))
    }
}
