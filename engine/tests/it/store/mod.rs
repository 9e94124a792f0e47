//! Store tests: the generic contract suite instantiated for SQLite and for a
//! real PostgreSQL (from `scripts/test-postgres`), chain tamper tests, the
//! Postgres restart test and backend-specific checks.

mod canonical;
mod chain;
mod contract;
mod contract_guards;
mod contract_operations;
mod contract_registry;
mod contract_work;
mod fixtures;
mod outage;
mod plans;
mod sqlite;
mod wake;

use chrono::{DateTime, TimeZone, Utc};
use engine::store::prelude::*;
use engine::store::{ManualClock, StoreConfig};
use std::sync::Arc;

/// A fresh store on a fresh database, its manual clock, and a side door for
/// raw SQL (to prove the database itself rejects what the code never does).
pub struct Fixture<S> {
    pub store: Arc<S>,
    pub clock: ManualClock,
    pub url: String,
    pub raw: Raw,
    _folder: Option<tempfile::TempDir>,
    _dropper: Option<DropDatabase>,
    _cluster: Option<std::fs::File>,
}

impl<S: EventStore> Fixture<S> {
    /// Opens a store with `config` (its clock replaced by the fixture's).
    pub async fn open(database: Database, mut config: StoreConfig) -> Self {
        let clock = ManualClock::new(start_time());
        config.clock = Arc::new(clock.clone());
        let store = S::connect(&database.url, config)
            .await
            .expect("open the store");
        let raw = Raw::connect(&database.url).await;
        Fixture {
            store: Arc::new(store),
            clock,
            url: database.url,
            raw,
            _folder: database.folder,
            _dropper: database.dropper,
            _cluster: database.cluster,
        }
    }
}

/// A fixed start for manual clocks: tests read the same times every run.
pub fn start_time() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 24, 12, 0, 0)
        .single()
        .expect("valid time")
}

/// Where a fixture's database lives.
pub struct Database {
    pub url: String,
    pub folder: Option<tempfile::TempDir>,
    /// Drops the PostgreSQL database when the test is done (declared before
    /// `cluster`, so it runs while the cluster lock is still held).
    pub dropper: Option<DropDatabase>,
    /// A lock on the shared test cluster (see [`ClusterUse`]).
    pub cluster: Option<std::fs::File>,
}

/// Drops a per-test PostgreSQL database on drop, so that test runs do not
/// fill a developer's cluster (sessions still open are ended: `FORCE`).
pub struct DropDatabase {
    admin_url: String,
    name: String,
}

impl Drop for DropDatabase {
    fn drop(&mut self) {
        let (admin_url, name) = (self.admin_url.clone(), self.name.clone());
        // Drop cannot await: a thread of its own with a small runtime, joined
        // so that the database is gone when the test returns.
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|error| error.to_string())?;
            runtime
                .block_on(async {
                    let admin = sqlx::PgPool::connect(&admin_url).await?;
                    let sql = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
                    sqlx::query(sqlx::AssertSqlSafe(sql))
                        .execute(&admin)
                        .await?;
                    admin.close().await;
                    Ok::<_, sqlx::Error>(())
                })
                .map_err(|error| error.to_string())
        })
        .join();
        if let Ok(Err(error)) | Err(error) = dropped.map_err(|_| "panicked".to_owned()) {
            eprintln!(
                "warning: could not drop test database {}: {error}",
                self.name
            );
        }
    }
}

/// Test databases older than this are left over from runs that were killed
/// (a finished test drops its own); the suite drops them when it starts.
const STALE_DATABASE_AGE_MS: u64 = 60 * 60 * 1000;

/// Drops `imx_test_*` databases created more than [`STALE_DATABASE_AGE_MS`]
/// ago (the name holds a UUID v7, whose first 48 bits are the creation time
/// in ms). A database still in use is left alone (no `FORCE`).
async fn drop_stale_databases(admin: &sqlx::PgPool) {
    let names: Vec<String> =
        sqlx::query_scalar("SELECT datname FROM pg_database WHERE datname LIKE 'imx\\_test\\_%'")
            .fetch_all(admin)
            .await
            .unwrap_or_default();
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| since.as_millis() as u64);
    for name in names {
        let created_ms = name
            .strip_prefix("imx_test_")
            .and_then(|id| uuid::Uuid::parse_str(id).ok())
            .and_then(|id| id.get_timestamp())
            .map(|at| {
                let (seconds, nanos) = at.to_unix();
                seconds * 1000 + u64::from(nanos) / 1_000_000
            });
        if created_ms.is_some_and(|created| created + STALE_DATABASE_AGE_MS < now_ms) {
            let sql = format!("DROP DATABASE IF EXISTS {name}");
            if let Err(error) = sqlx::query(sqlx::AssertSqlSafe(sql)).execute(admin).await {
                eprintln!("note: stale test database {name} not dropped: {error}");
            }
        }
    }
}

/// How a test uses the shared PostgreSQL cluster: most share it; the one
/// that restarts it must be alone. A file lock, so that it holds across
/// threads (`cargo test`) and processes (`cargo nextest`).
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum ClusterUse {
    Shared,
    Exclusive,
}

async fn lock_cluster(how: ClusterUse) -> std::fs::File {
    let folder = std::env::var("IMX_TEST_POSTGRES_DATA")
        .map(std::path::PathBuf::from)
        .ok()
        .and_then(|data| data.parent().map(std::path::Path::to_path_buf))
        .unwrap_or_else(std::env::temp_dir);
    let path = folder.join("imx-tests.lock");
    tokio::task::spawn_blocking(move || {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .expect("open the cluster lock file");
        match how {
            ClusterUse::Shared => file.lock_shared(),
            ClusterUse::Exclusive => file.lock(),
        }
        .expect("lock the test cluster");
        file
    })
    .await
    .expect("lock task")
}

/// A new SQLite file in a temporary folder (nested, to prove the folder is created).
pub fn sqlite_database() -> Database {
    let folder = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite://{}/nested/imx.db", folder.path().display());
    Database {
        url,
        folder: Some(folder),
        dropper: None,
        cluster: None,
    }
}

/// A new database in the test cluster, or `None` (after a loud notice)
/// when no cluster is configured outside CI. In CI a missing cluster fails.
pub async fn postgres_database() -> Option<Database> {
    postgres_database_for(ClusterUse::Shared).await
}

pub async fn postgres_database_for(how: ClusterUse) -> Option<Database> {
    let admin_url = postgres_admin_url()?;
    let cluster = lock_cluster(how).await;
    let name = format!("imx_test_{}", uuid::Uuid::now_v7().simple());
    let admin = sqlx::PgPool::connect(&admin_url)
        .await
        .expect("connect to the test cluster");
    static STALE_DROPPED: tokio::sync::OnceCell<()> = tokio::sync::OnceCell::const_new();
    STALE_DROPPED
        .get_or_init(|| drop_stale_databases(&admin))
        .await;
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&admin)
        .await
        .expect("create a test database");
    admin.close().await;
    let (base, _) = admin_url
        .rsplit_once('/')
        .expect("URL with a database name");
    Some(Database {
        url: format!("{base}/{name}"),
        folder: None,
        dropper: Some(DropDatabase { admin_url, name }),
        cluster: Some(cluster),
    })
}

pub fn postgres_admin_url() -> Option<String> {
    match std::env::var("IMX_TEST_POSTGRES_URL") {
        Ok(url) if !url.is_empty() => Some(url),
        _ if std::env::var("CI").is_ok_and(|ci| ci == "true") => {
            panic!(
                "IMX_TEST_POSTGRES_URL is unset: run `eval \"$(scripts/test-postgres)\"` before the tests"
            );
        }
        _ => {
            eprintln!(
                "\n!!!!!! SKIPPED: a PostgreSQL store test did NOT run: IMX_TEST_POSTGRES_URL is unset.\n\
                 !!!!!! Run `eval \"$(scripts/test-postgres)\"` first (CI=true turns this into a failure).\n"
            );
            None
        }
    }
}

/// Raw SQL access to a fixture's database, bypassing the store.
pub enum Raw {
    Sqlite(sqlx::SqlitePool),
    Postgres(sqlx::PgPool),
}

impl Raw {
    async fn connect(url: &str) -> Self {
        if url.starts_with("sqlite:") {
            Raw::Sqlite(
                sqlx::SqlitePool::connect(url)
                    .await
                    .expect("raw SQLite connection"),
            )
        } else {
            Raw::Postgres(
                sqlx::PgPool::connect(url)
                    .await
                    .expect("raw Postgres connection"),
            )
        }
    }

    pub async fn execute(&self, sql: &'static str) -> Result<u64, sqlx::Error> {
        match self {
            Raw::Sqlite(pool) => sqlx::query(sql)
                .execute(pool)
                .await
                .map(|done| done.rows_affected()),
            Raw::Postgres(pool) => sqlx::query(sql)
                .execute(pool)
                .await
                .map(|done| done.rows_affected()),
        }
    }

    /// Records a migration newer than any this build knows, as a newer imx would.
    pub async fn add_future_migration(&self) {
        let result = match self {
            Raw::Sqlite(_) => {
                self.execute(
                    "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
                     VALUES (99990101000000, 'from a newer imx', TRUE, X'00', 0)",
                )
                .await
            }
            Raw::Postgres(_) => {
                self.execute(
                    "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
                     VALUES (99990101000000, 'from a newer imx', TRUE, '\\x00'::bytea, 0)",
                )
                .await
            }
        };
        result.expect("insert a future migration");
    }
}

/// Instantiates every contract case as its own test for one backend.
macro_rules! contract_tests {
    ($backend:ident, $store:ty, $database:expr) => {
        mod $backend {
            use super::contract;
            #[allow(unused_imports)]
            use super::*;

            macro_rules! case {
                ($name:ident) => {
                    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                    async fn $name() {
                        if let Some(database) = $database {
                            contract::$name::<$store>(database).await;
                        }
                    }
                };
            }

            case!(append_and_read);
            case!(list_runs_filters_and_pages);
            case!(stale_expected_seq_conflicts);
            case!(racing_appenders_get_gap_free_seqs);
            case!(batch_settles_each_run);
            case!(retried_append_is_idempotent);
            case!(two_nodes_interleave_appends);
            case!(four_workers_share_tasks_through_leases);
            case!(expired_or_taken_lease_is_fenced);
            case!(timers_fire_in_order_once);
            case!(every_shape_of_append_writes_its_rows);
            case!(idempotent_start_returns_existing_run);
            case!(rebuilt_projections_equal_incremental);
            case!(database_rejects_update_and_delete_of_events);
            case!(payload_limit_rejects_before_writing);
            case!(schema_newer_than_known_is_refused);
            case!(wait_for_work_wakes_on_enqueue);
            case!(registry_keeps_versions);
            case!(api_keys_are_found_by_hash_listed_and_revoked_once);
            case!(a_migrated_store_is_ready_and_counts_its_queue);
            case!(run_ids_newer_page_oldest_first_after_a_cursor);
        }
    };
}

contract_tests!(
    sqlite_contract,
    engine::store::SqliteStore,
    Some(super::sqlite_database())
);
contract_tests!(
    postgres_contract,
    engine::store::PostgresStore,
    super::postgres_database().await
);
