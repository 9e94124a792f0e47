//! The PostgreSQL store (production): READ COMMITTED transactions, UNIQUE
//! (run_id, seq) for optimistic concurrency, one transaction-scoped advisory
//! lock around position assignment so the global log is gap-free and in
//! commit order, `FOR UPDATE SKIP LOCKED` leases, and LISTEN/NOTIFY wake-ups.

mod event_log;
mod fast;
mod rows;
mod wake;
mod work;
mod workflows;

pub use wake::REMOTE_WAKE_INTERVAL;

use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::Row;
use sqlx::postgres::{PgConnectOptions, PgListener, PgPool, PgPoolOptions, PgRow};
use uuid::Uuid;

use super::database::Database;
use super::decode::Columns;
use super::dialect::{Dialect, SqlStore};
use super::error::Error;
use super::prepare;
use super::schema::{
    APPLIED_SUCCESSFULLY_SQL, APPLIED_VERSION_SQL, MIGRATIONS_TABLE, POSTGRES_MIGRATOR,
    check_version, is_current,
};
use super::types::*;

/// The channel `NOTIFY` wakes idle nodes on (at most once per
/// `wake::REMOTE_WAKE_INTERVAL` per node, see wake.rs).
pub const WORK_CHANNEL: &str = "imx_work";

/// Prepared statements kept per connection: the append's shapes (up to 2 x
/// 64, rows.rs) and the store's other statements.
const STATEMENT_CACHE_CAPACITY: usize = 256;

/// Pause before the LISTEN connection reconnects after an error, in ms.
const LISTENER_RECONNECT_PAUSE_MS: u64 = 100;

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
            sqlx::query_scalar(APPLIED_VERSION_SQL)
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
                    Err(_) => {
                        tokio::time::sleep(Duration::from_millis(LISTENER_RECONNECT_PAUSE_MS)).await
                    }
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

impl Database for PostgresStore {
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

    async fn migrations_current(&self) -> Result<bool, Error> {
        let applied: Option<i64> = sqlx::query_scalar(APPLIED_SUCCESSFULLY_SQL)
            .fetch_one(&self.pool)
            .await?;
        Ok(is_current(&POSTGRES_MIGRATOR, applied))
    }
}

/// PostgreSQL keeps ids, times and 4-byte integers in their own types.
impl Columns for PgRow {
    fn text(&self, column: &str) -> Result<String, Error> {
        Ok(self.try_get(column)?)
    }

    fn optional_text(&self, column: &str) -> Result<Option<String>, Error> {
        Ok(self.try_get(column)?)
    }

    fn uuid(&self, column: &str) -> Result<Uuid, Error> {
        Ok(self.try_get(column)?)
    }

    fn optional_uuid(&self, column: &str) -> Result<Option<Uuid>, Error> {
        Ok(self.try_get(column)?)
    }

    fn time(&self, column: &str) -> Result<DateTime<Utc>, Error> {
        Ok(self.try_get(column)?)
    }

    fn optional_time(&self, column: &str) -> Result<Option<DateTime<Utc>>, Error> {
        Ok(self.try_get(column)?)
    }

    fn optional_int8(&self, column: &str) -> Result<Option<i64>, Error> {
        Ok(self.try_get(column)?)
    }

    fn int4(&self, column: &str) -> Result<i64, Error> {
        Ok(i64::from(self.try_get::<i32, _>(column)?))
    }
}

impl Dialect for sqlx::Postgres {
    type Id = Uuid;
    type Time = DateTime<Utc>;

    fn id(id: Uuid) -> Uuid {
        id
    }

    fn time(at: DateTime<Utc>) -> DateTime<Utc> {
        at
    }

    const EVENT_COLUMNS: &'static str = "run_id, seq, position, event_type, schema_version, \
         payload::text AS payload, recorded_at, prev_hash, hash, log_hash";
    const RUN_COLUMNS: &'static str = "r.run_id, r.workflow, r.version, r.status, r.input::text AS input, \
         r.output::text AS output, r.error, r.parent_run_id, r.forked_from, r.idempotency_key, r.created_at, \
         r.updated_at, (SELECT MAX(seq) FROM events e WHERE e.run_id = r.run_id) AS last_seq";
    const STEP_COLUMNS: &'static str =
        "run_id, step_id, status, attempts, output::text AS output, error, updated_at";
    const STEP_ORDER: &'static str = "step_id COLLATE \"C\"";
    const WORKFLOW_COLUMNS: &'static str =
        "name, version, source, model::text AS model, registered_at";
}

impl SqlStore for PostgresStore {
    type Db = sqlx::Postgres;

    fn pool(&self) -> &PgPool {
        &self.pool
    }

    fn limits(&self) -> &StoreConfig {
        &self.config
    }
}
