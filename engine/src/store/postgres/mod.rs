//! The PostgreSQL store (production): READ COMMITTED transactions, UNIQUE
//! (run_id, seq) for optimistic concurrency, one transaction-scoped advisory
//! lock around position assignment so the global log is gap-free and in
//! commit order, `FOR UPDATE SKIP LOCKED` leases, and LISTEN/NOTIFY wake-ups.

mod append;
mod fast;
mod read;
mod rows;
mod wake;
mod work;
mod workflows;

pub use wake::REMOTE_WAKE_INTERVAL;

use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::postgres::{PgConnectOptions, PgListener, PgPool, PgPoolOptions};

use super::error::Error;
use super::registry::{NewWorkflow, WorkflowRecord};
use super::schema::{MIGRATIONS_TABLE, POSTGRES_MIGRATOR, check_version};
use super::types::*;
use super::{EventStore, prepare};

/// The channel `NOTIFY` wakes idle nodes on (at most once per
/// `wake::REMOTE_WAKE_INTERVAL` per node, see wake.rs).
pub const WORK_CHANNEL: &str = "imx_work";

/// Prepared statements kept per connection: the append's shapes (up to 2 x
/// 64, rows.rs) and the store's other statements.
const STATEMENT_CACHE_CAPACITY: usize = 256;

/// The PostgreSQL backend.
#[derive(Debug)]
pub struct PostgresStore {
    pool: PgPool,
    config: StoreConfig,
    /// Wake-ups of this node's workers and (NOTIFY) of the other nodes'.
    wakes: wake::Wakes,
    /// The task that LISTENs and turns notifications into local wake-ups;
    /// started by the first `wait_for_work`.
    listener: Mutex<Option<tokio::task::JoinHandle<()>>>,
    /// The heads this node last wrote, for one-round-trip appends.
    heads: Mutex<fast::HeadCache>,
}

impl PostgresStore {
    /// The connection pool, for diagnostics and tests.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    fn now(&self) -> DateTime<Utc> {
        prepare::micros(self.config.clock.now())
    }

    async fn check_schema(&self) -> Result<(), Error> {
        let exists: bool = sqlx::query_scalar("SELECT to_regclass($1) IS NOT NULL")
            .bind(MIGRATIONS_TABLE)
            .fetch_one(&self.pool)
            .await?;
        let version: Option<i64> = if exists {
            sqlx::query_scalar("SELECT MAX(version) FROM _sqlx_migrations")
                .fetch_one(&self.pool)
                .await?
        } else {
            None
        };
        check_version(&POSTGRES_MIGRATOR, version)
    }

    async fn start_listener(&self) -> Result<(), Error> {
        let running = self
            .listener
            .lock()
            .map(|guard| guard.as_ref().is_some_and(|task| !task.is_finished()))
            .unwrap_or(false);
        if running {
            return Ok(());
        }
        let mut listener = PgListener::connect_with(&self.pool).await?;
        listener.listen(WORK_CHANNEL).await?;
        let work = Arc::clone(&self.wakes.local);
        let task = tokio::spawn(async move {
            loop {
                match listener.recv().await {
                    Ok(_) => {}
                    Err(sqlx::Error::PoolClosed) => return,
                    // Notifications sent while disconnected are lost: wake
                    // everyone so they look, then let `recv` reconnect.
                    Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                }
                super::wake_workers(&work);
            }
        });
        if let Ok(mut guard) = self.listener.lock()
            && let Some(old) = guard.replace(task)
        {
            old.abort();
        }
        Ok(())
    }
}

impl Drop for PostgresStore {
    fn drop(&mut self) {
        if let Ok(mut guard) = self.listener.lock()
            && let Some(task) = guard.take()
        {
            task.abort();
        }
    }
}

impl EventStore for PostgresStore {
    async fn connect(url: &str, config: StoreConfig) -> Result<Self, Error> {
        // The append statements are big, one text per shape of append
        // (rows.rs, a few dozen in use): prepare and plan each once per
        // connection instead of on every execution, and keep them all.
        // Every query of the store is a key lookup or a key-ordered range,
        // so no plan should scan a table: a generic plan made while `tasks`
        // held a page of rows chose a sequential scan for the completion
        // delete and kept it after the queue grew (6 ms a completion at
        // 100,000 tasks, until ANALYZE), which `enable_seqscan = off`
        // rules out (a query without a usable index still scans).
        let options = PgConnectOptions::from_str(url)
            .map_err(|error| Error::invalid(format!("bad PostgreSQL URL: {error}")))?
            .options([
                ("plan_cache_mode", "force_generic_plan"),
                ("enable_seqscan", "off"),
            ])
            .statement_cache_capacity(STATEMENT_CACHE_CAPACITY);
        let pool = PgPoolOptions::new()
            .max_connections(config.pool_connections_max)
            .acquire_timeout(Duration::from_millis(config.acquire_timeout_ms))
            .connect_with(options)
            .await?;
        let store = PostgresStore {
            pool,
            config,
            wakes: wake::Wakes::default(),
            listener: Mutex::new(None),
            heads: Mutex::default(),
        };
        store.migrate().await?;
        Ok(store)
    }

    fn config(&self) -> &StoreConfig {
        &self.config
    }

    async fn migrate(&self) -> Result<(), Error> {
        self.check_schema().await?;
        Ok(POSTGRES_MIGRATOR.run(&self.pool).await?)
    }

    async fn ping(&self) -> Result<(), Error> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    async fn append_batch(
        &self,
        requests: Vec<AppendRequest>,
    ) -> Result<Vec<Result<Appended, Error>>, Error> {
        append::append_batch(self, &requests).await
    }

    async fn read_stream(
        &self,
        run_id: RunId,
        after_seq: u64,
        max: u32,
    ) -> Result<Vec<RecordedEvent>, Error> {
        read::read_stream(self, run_id, after_seq, max).await
    }

    async fn read_log(&self, after_position: u64, max: u32) -> Result<Vec<RecordedEvent>, Error> {
        read::read_log(self, after_position, max).await
    }

    async fn log_head(&self) -> Result<LogHead, Error> {
        let mut connection = self.pool.acquire().await?;
        read::log_head(&mut connection).await
    }

    async fn get_run(&self, run_id: RunId) -> Result<Option<RunRecord>, Error> {
        read::get_run(self, run_id).await
    }

    async fn find_run_by_key(&self, key: &str) -> Result<Option<RunRecord>, Error> {
        read::find_run_by_key(self, key).await
    }

    async fn get_steps(&self, run_id: RunId) -> Result<Vec<StepRow>, Error> {
        read::get_steps(self, run_id).await
    }

    async fn list_runs(&self, query: &RunQuery) -> Result<Page<RunRecord, RunCursor>, Error> {
        read::list_runs(self, query).await
    }

    async fn claim_tasks(
        &self,
        worker: &str,
        queue: &str,
        max: u32,
        lease_ms: u64,
    ) -> Result<Vec<ClaimedTask>, Error> {
        work::claim_tasks(self, worker, queue, max, lease_ms).await
    }

    async fn renew_lease(
        &self,
        task_id: TaskId,
        token: LeaseToken,
        lease_ms: u64,
    ) -> Result<Lease, Error> {
        work::renew_lease(self, task_id, token, lease_ms).await
    }

    async fn complete_task(&self, task_id: TaskId, token: LeaseToken) -> Result<(), Error> {
        work::complete_task(self, task_id, token).await
    }

    async fn due_timers(&self, now: DateTime<Utc>, max: u32) -> Result<Vec<FiredTimer>, Error> {
        work::due_timers(self, now, max).await
    }

    async fn wait_for_work(&self, timeout: Duration) -> Result<bool, Error> {
        self.start_listener().await?;
        Ok(tokio::time::timeout(timeout, self.wakes.local.notified())
            .await
            .is_ok())
    }

    async fn rebuild_projections<F>(&self, fold: F) -> Result<RebuildStats, Error>
    where
        F: FnMut(&[RecordedEvent]) -> ProjectionUpdate + Send,
    {
        append::rebuild_projections(self, fold).await
    }

    async fn register_workflow(&self, workflow: NewWorkflow) -> Result<WorkflowRecord, Error> {
        workflows::register(self, &workflow).await
    }

    async fn get_workflow(
        &self,
        name: &str,
        version: Option<&str>,
    ) -> Result<Option<WorkflowRecord>, Error> {
        workflows::get(self, name, version).await
    }

    async fn list_workflows(&self) -> Result<Vec<WorkflowRecord>, Error> {
        workflows::list(self).await
    }
}
