//! The embedded SQLite store: one file (WAL, synchronous FULL), every write in
//! a `BEGIN IMMEDIATE` transaction, so writers queue on SQLite's single write
//! lock (up to the busy timeout) and never fail half-way on an upgrade.

mod append;
mod read;
mod rows;
mod work;
mod workflows;

use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{Connection, SqliteConnection};
use tokio::sync::Notify;

use super::error::Error;
use super::registry::{NewWorkflow, WorkflowRecord};
use super::schema::{MIGRATIONS_TABLE, SQLITE_MIGRATOR, check_version};
use super::types::*;
use super::{EventStore, prepare};

/// The SQLite backend.
#[derive(Debug)]
pub struct SqliteStore {
    pool: SqlitePool,
    config: StoreConfig,
    /// Wakes this process's idle workers; other processes on the same file
    /// find work when their `wait_for_work` times out.
    work: Arc<Notify>,
}

impl SqliteStore {
    /// The connection pool, for diagnostics and tests.
    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    async fn write_transaction(&self) -> Result<sqlx::Transaction<'static, sqlx::Sqlite>, Error> {
        // IMMEDIATE takes the write lock up front: a deferred transaction
        // that reads first and then writes can fail with SQLITE_BUSY when
        // another writer got in between.
        Ok(self.pool.begin_with("BEGIN IMMEDIATE").await?)
    }

    fn now(&self) -> DateTime<Utc> {
        prepare::micros(self.config.clock.now())
    }

    fn wake_workers(&self) {
        super::wake_workers(&self.work);
    }
}

/// Fails when the file was migrated by a newer imx (`IMX0306`).
async fn check_schema(connection: &mut SqliteConnection) -> Result<(), Error> {
    let table: Option<String> =
        sqlx::query_scalar("SELECT name FROM sqlite_master WHERE type = 'table' AND name = ?1")
            .bind(MIGRATIONS_TABLE)
            .fetch_optional(&mut *connection)
            .await?;
    let version: Option<i64> = match table {
        Some(_) => {
            sqlx::query_scalar("SELECT MAX(version) FROM _sqlx_migrations")
                .fetch_one(&mut *connection)
                .await?
        }
        None => None,
    };
    check_version(&SQLITE_MIGRATOR, version)
}

/// Puts the file in WAL mode from one connection, retrying while others
/// open it at the same moment (several nodes or tasks starting on a fresh
/// `./.imx/`): the switch needs the file to itself, and SQLite answers
/// SQLITE_BUSY to a connection that finds it shared instead of waiting out
/// the busy timeout. WAL mode is persistent, so once it is on, every
/// connection's own switch (sqlx issues it on connect) is a no-op.
async fn enable_wal(options: &SqliteConnectOptions, patience: Duration) -> Result<(), Error> {
    let deadline = Instant::now() + patience;
    let mut backoff = Duration::from_millis(2);
    loop {
        match SqliteConnection::connect_with(options).await {
            Ok(connection) => {
                connection.close().await?;
                return Ok(());
            }
            Err(sqlx::Error::Database(error)) if is_busy(&*error) && Instant::now() < deadline => {
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_millis(100));
            }
            Err(error) => return Err(error.into()),
        }
    }
}

/// SQLITE_BUSY, or one of its extended codes (the primary code is the low byte).
fn is_busy(error: &dyn sqlx::error::DatabaseError) -> bool {
    error
        .code()
        .and_then(|code| code.parse::<i32>().ok())
        .is_some_and(|code| code & 0xff == 5)
}

impl EventStore for SqliteStore {
    async fn connect(url: &str, config: StoreConfig) -> Result<Self, Error> {
        let options = SqliteConnectOptions::from_str(url)
            .map_err(|error| Error::invalid(format!("bad SQLite URL: {error}")))?;
        let in_memory = url.contains(":memory:") || url.contains("mode=memory");
        if !in_memory {
            create_parent_folder(options.get_filename())?;
        }
        let busy = Duration::from_millis(config.acquire_timeout_ms);
        let options = options
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(busy);
        if !in_memory {
            enable_wal(&options, busy).await?;
        }
        let mut pool = SqlitePoolOptions::new().acquire_timeout(busy);
        pool = if in_memory {
            // Every connection to `:memory:` is its own database: keep one.
            pool.max_connections(1)
                .min_connections(1)
                .idle_timeout(None)
                .max_lifetime(None)
        } else {
            pool.max_connections(config.pool_connections_max)
        };
        let pool = pool.connect_with(options).await?;
        let store = SqliteStore {
            pool,
            config,
            work: Arc::new(Notify::new()),
        };
        store.migrate().await?;
        Ok(store)
    }

    fn config(&self) -> &StoreConfig {
        &self.config
    }

    async fn migrate(&self) -> Result<(), Error> {
        // sqlx takes no lock for SQLite migrations: two processes opening a
        // fresh file at once (`imx serve` and `imx run` on an empty ./.imx/)
        // would both apply them. Holding SQLite's write lock for the whole
        // check-and-migrate makes the others wait (busy timeout) and then
        // find every migration applied; sqlx nests each migration's own
        // transaction as a SAVEPOINT inside this one.
        let mut transaction = self.write_transaction().await?;
        check_schema(&mut transaction).await?;
        // `run_direct` is what `run` calls; `run(&mut *transaction)` itself
        // trips sqlx's "Acquire is not general enough" in an async trait fn.
        SQLITE_MIGRATOR
            .run_direct(None, &mut *transaction, false)
            .await?;
        transaction.commit().await?;
        Ok(())
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
        Ok(tokio::time::timeout(timeout, self.work.notified())
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

fn create_parent_folder(file: &std::path::Path) -> Result<(), Error> {
    match file.parent() {
        Some(folder) if !folder.as_os_str().is_empty() => {
            std::fs::create_dir_all(folder).map_err(|source| Error::CreateFolder {
                path: folder.display().to_string(),
                source,
            })
        }
        _ => Ok(()),
    }
}

/// Text forms used in SQLite columns.
pub(super) fn uuid_text(id: uuid::Uuid) -> String {
    id.hyphenated().to_string()
}

pub(super) fn time_text(at: DateTime<Utc>) -> String {
    crate::chain::format_recorded_at(at)
}
