//! The embedded SQLite store: one file (WAL, synchronous FULL), every write in
//! a `BEGIN IMMEDIATE` transaction, so writers never fail half-way on an
//! upgrade. A process's writers take turns first come first served (the
//! write gate); processes on one file queue on SQLite's write lock (up to
//! the busy timeout).

mod doorbell;
mod event_log;
mod rows;
mod work;
mod workflows;

use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};
use sqlx::{Connection, Row, SqliteConnection};
use tokio::sync::Notify;
use uuid::Uuid;

use super::database::Database;
use super::decode::Columns;
use super::dialect::{Dialect, SqlStore};
use super::error::Error;
use super::prepare;
use super::schema::{
    APPLIED_SUCCESSFULLY_SQL, APPLIED_VERSION_SQL, MIGRATIONS_TABLE, SQLITE_MIGRATOR,
    check_version, is_current,
};
use super::types::*;

/// First pause between attempts to switch a fresh file to WAL mode, in ms;
/// each pause doubles up to [`WAL_SWITCH_BACKOFF_MAX_MS`].
const WAL_SWITCH_BACKOFF_INITIAL_MS: u64 = 2;
/// Longest pause between attempts to switch to WAL mode, in ms.
const WAL_SWITCH_BACKOFF_MAX_MS: u64 = 100;

/// The SQLite backend.
#[derive(Debug)]
pub struct SqliteStore {
    pool: SqlitePool,
    config: StoreConfig,
    /// Wakes this process's idle workers.
    work: Arc<Notify>,
    /// Wakes other processes' idle workers (a file database; `None` in
    /// memory, or where the file cannot be watched: they poll).
    doorbell: Option<doorbell::Doorbell>,
    /// This process's writers queue here, first come first served, before
    /// they ask SQLite for its one write lock. SQLite's own queue is a busy
    /// handler that sleeps and retries (1, 2, 5 … 100 ms): a writer that
    /// loses a few races sleeps for long stretches, holding a pool
    /// connection, while the others go ahead, and when that writer is the
    /// committer every run of the node waits. Across processes on one file
    /// the busy handler remains the only queue.
    write_gate: Arc<tokio::sync::Mutex<()>>,
}

/// A write transaction and this process's turn to write: the turn ends
/// when the transaction does (committed, or rolled back on drop).
pub(super) struct WriteTransaction {
    transaction: sqlx::Transaction<'static, sqlx::Sqlite>,
    _turn: tokio::sync::OwnedMutexGuard<()>,
}

impl WriteTransaction {
    pub(super) async fn commit(self) -> Result<(), sqlx::Error> {
        self.transaction.commit().await
    }
}

impl std::ops::Deref for WriteTransaction {
    type Target = SqliteConnection;

    fn deref(&self) -> &SqliteConnection {
        &self.transaction
    }
}

impl std::ops::DerefMut for WriteTransaction {
    fn deref_mut(&mut self) -> &mut SqliteConnection {
        &mut self.transaction
    }
}

/// A wait for a write transaction this long is logged (a warning): it
/// delays every run this node advances.
const SLOW_LOCK_WAIT: Duration = Duration::from_millis(250);

impl SqliteStore {
    /// The connection pool, for diagnostics and tests.
    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    async fn write_transaction(&self) -> Result<WriteTransaction, Error> {
        let started = Instant::now();
        let patience = Duration::from_millis(self.config.acquire_timeout_ms);
        let turn = tokio::time::timeout(patience, Arc::clone(&self.write_gate).lock_owned())
            .await
            .map_err(|_| sqlx::Error::PoolTimedOut)?;
        // IMMEDIATE takes the write lock up front: a deferred transaction
        // that reads first and then writes can fail with SQLITE_BUSY when
        // another writer got in between.
        let transaction = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let transaction = WriteTransaction {
            transaction,
            _turn: turn,
        };
        let waited = started.elapsed();
        if waited >= SLOW_LOCK_WAIT {
            tracing::warn!(
                waited_ms = waited.as_millis() as u64,
                "waited long for SQLite's write lock (a pool connection and the lock)"
            );
        }
        Ok(transaction)
    }

    fn now(&self) -> DateTime<Utc> {
        prepare::micros(self.config.clock.now())
    }

    fn wake_workers(&self) {
        super::wake_workers(&self.work);
        if let Some(doorbell) = &self.doorbell {
            doorbell.ring();
        }
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
            sqlx::query_scalar(APPLIED_VERSION_SQL)
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
    let mut backoff = Duration::from_millis(WAL_SWITCH_BACKOFF_INITIAL_MS);
    loop {
        match SqliteConnection::connect_with(options).await {
            Ok(connection) => {
                connection.close().await?;
                return Ok(());
            }
            Err(sqlx::Error::Database(error)) if is_busy(&*error) && Instant::now() < deadline => {
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_millis(WAL_SWITCH_BACKOFF_MAX_MS));
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

impl Database for SqliteStore {
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
        let mut pool = SqlitePoolOptions::new()
            .acquire_timeout(busy)
            .after_release(|connection, _| Box::pin(left_no_transaction(connection)));
        pool = if in_memory {
            // Every connection to `:memory:` is its own database: keep one.
            pool.max_connections(1)
                .min_connections(1)
                .idle_timeout(None)
                .max_lifetime(None)
        } else {
            pool.max_connections(config.pool_connections_max)
        };
        let work = Arc::new(Notify::new());
        let doorbell = (!in_memory)
            .then(|| doorbell::Doorbell::open(options.get_filename(), &work))
            .flatten();
        let pool = pool.connect_with(options).await?;
        let store = SqliteStore {
            pool,
            config,
            work,
            doorbell,
            write_gate: Arc::default(),
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

    async fn migrations_current(&self) -> Result<bool, Error> {
        let applied: Option<i64> = sqlx::query_scalar(APPLIED_SUCCESSFULLY_SQL)
            .fetch_one(&self.pool)
            .await?;
        Ok(is_current(&SQLITE_MIGRATOR, applied))
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

pub(super) fn parse_uuid(text: &str) -> Result<Uuid, Error> {
    Uuid::parse_str(text).map_err(|error| Error::corrupt(format!("bad uuid {text:?}: {error}")))
}

pub(super) fn parse_time(text: &str) -> Result<DateTime<Utc>, Error> {
    DateTime::parse_from_rfc3339(text)
        .map(|at| at.with_timezone(&Utc))
        .map_err(|error| Error::corrupt(format!("bad time {text:?}: {error}")))
}

/// SQLite keeps ids and times as text and every integer in 8 bytes.
impl Columns for SqliteRow {
    fn text(&self, column: &str) -> Result<String, Error> {
        Ok(self.try_get(column)?)
    }

    fn optional_text(&self, column: &str) -> Result<Option<String>, Error> {
        Ok(self.try_get(column)?)
    }

    fn uuid(&self, column: &str) -> Result<Uuid, Error> {
        parse_uuid(&self.text(column)?)
    }

    fn optional_uuid(&self, column: &str) -> Result<Option<Uuid>, Error> {
        self.optional_text(column)?
            .as_deref()
            .map(parse_uuid)
            .transpose()
    }

    fn time(&self, column: &str) -> Result<DateTime<Utc>, Error> {
        parse_time(&self.text(column)?)
    }

    fn optional_time(&self, column: &str) -> Result<Option<DateTime<Utc>>, Error> {
        self.optional_text(column)?
            .as_deref()
            .map(parse_time)
            .transpose()
    }

    fn optional_int8(&self, column: &str) -> Result<Option<i64>, Error> {
        Ok(self.try_get(column)?)
    }

    fn int4(&self, column: &str) -> Result<i64, Error> {
        Ok(self.try_get(column)?)
    }
}

impl Dialect for sqlx::Sqlite {
    type Id = String;
    type Time = String;

    fn id(id: Uuid) -> String {
        uuid_text(id)
    }

    fn time(at: DateTime<Utc>) -> String {
        time_text(at)
    }

    const EVENT_COLUMNS: &'static str = "run_id, seq, position, event_type, schema_version, payload, recorded_at, \
         prev_hash, hash, log_hash";
    const RUN_COLUMNS: &'static str = "r.run_id, r.workflow, r.version, r.status, r.input, r.output, r.error, \
         r.parent_run_id, r.forked_from, r.idempotency_key, r.created_at, r.updated_at, \
         (SELECT MAX(seq) FROM events e WHERE e.run_id = r.run_id) AS last_seq";
    const STEP_COLUMNS: &'static str =
        "run_id, step_id, status, attempts, output, error, updated_at";
    const STEP_ORDER: &'static str = "step_id";
    const WORKFLOW_COLUMNS: &'static str = "name, version, source, model, registered_at";
}

impl SqlStore for SqliteStore {
    type Db = sqlx::Sqlite;

    fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    fn limits(&self) -> &StoreConfig {
        &self.config
    }
}

/// Whether a connection handed back to the pool holds no transaction. A
/// COMMIT that failed (SQLITE_FULL: the disk is full) leaves SQLite's
/// transaction open or already rolled back where sqlx still counts it; the
/// rollback sqlx queues then fails too, and the connection would refuse
/// every later `BEGIN IMMEDIATE` ("non-zero transaction depth") for good.
/// Such a connection is closed instead of reused (found by the fault
/// battery's full-disk scenario).
async fn left_no_transaction(connection: &mut sqlx::SqliteConnection) -> Result<bool, sqlx::Error> {
    use sqlx::Connection;
    // A committed transaction left depth 0: no round trip on that path.
    if !connection.is_in_transaction() {
        return Ok(true);
    }
    // The ping queues behind a rollback the dropped transaction asked for.
    connection.ping().await?;
    Ok(!connection.is_in_transaction())
}
