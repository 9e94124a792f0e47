//! Opening stores by URL, and what only the SQLite backend promises (its
//! file, folder, WAL mode and durability settings).

use std::sync::Arc;

use engine::store::prelude::*;
use engine::store::{self, SqliteStore, Store, StoreConfig};

use super::{contract, fixtures, sqlite_database, start_time};

#[tokio::test]
async fn open_picks_the_backend_and_creates_the_sqlite_folder() {
    let folder = tempfile::tempdir().expect("temp dir");
    let path = folder.path().join("a/b/imx.db");
    let store = store::open(&format!("sqlite://{}", path.display()))
        .await
        .expect("open");
    assert!(matches!(store, Store::Sqlite(_)));
    assert!(path.exists(), "folder and file created");
    store.ping().await.expect("ping");
    let error = store::open("mysql://localhost/imx")
        .await
        .expect_err("unsupported scheme");
    assert!(error.to_string().contains("IMX0308"), "{error}");
    assert_eq!(store::DEFAULT_DATABASE_URL, "sqlite://./.imx/imx.db");
}

#[tokio::test]
async fn sqlite_runs_in_wal_mode_with_full_sync_and_a_busy_timeout() {
    let database = sqlite_database();
    let store = SqliteStore::connect(&database.url, StoreConfig::default())
        .await
        .expect("open");
    let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
        .fetch_one(store.pool())
        .await
        .expect("mode");
    let sync: i64 = sqlx::query_scalar("PRAGMA synchronous")
        .fetch_one(store.pool())
        .await
        .expect("sync");
    let busy: i64 = sqlx::query_scalar("PRAGMA busy_timeout")
        .fetch_one(store.pool())
        .await
        .expect("busy");
    assert_eq!((mode.as_str(), sync, busy), ("wal", 2, 5_000));
    store.migrate().await.expect("migrating twice is a no-op");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_url_picked_store_passes_the_contract_too() {
    contract::append_and_read::<Store>(sqlite_database()).await;
    contract::idempotent_start_returns_existing_run::<Store>(sqlite_database()).await;
}

/// Regression: `imx serve` and `imx run` started together on an empty
/// `./.imx/` both migrated the fresh file and one failed ("table events
/// already exists", or SQLITE_BUSY). Every open of a fresh file must succeed
/// and leave one complete schema.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_opens_of_a_fresh_file_all_migrate_safely() {
    const OPENERS: usize = 8;
    for _attempt in 0..3 {
        let database = sqlite_database();
        let start = Arc::new(tokio::sync::Barrier::new(OPENERS));
        let openers: Vec<_> = (0..OPENERS)
            .map(|_| {
                let (url, start) = (database.url.clone(), Arc::clone(&start));
                tokio::spawn(async move {
                    start.wait().await;
                    SqliteStore::connect(&url, StoreConfig::default()).await
                })
            })
            .collect();
        let mut stores = Vec::new();
        for opener in openers {
            stores.push(
                opener
                    .await
                    .expect("opener task")
                    .expect("open the fresh file"),
            );
        }
        for store in &stores {
            let run_id = store::new_id();
            let request = fixtures::start_request(run_id, "race", start_time(), None);
            store.append(request).await.expect("append on every store");
        }
        let applied: i64 = sqlx::query_scalar("SELECT count(*) FROM _sqlx_migrations")
            .fetch_one(stores[0].pool())
            .await
            .expect("count migrations");
        let runs: i64 = sqlx::query_scalar("SELECT count(*) FROM runs")
            .fetch_one(stores[0].pool())
            .await
            .expect("count runs");
        assert_eq!((applied, runs), (migration_files(), OPENERS as i64));
    }
}

/// How many migrations the SQLite schema has (one file each).
fn migration_files() -> i64 {
    let folder = concat!(env!("CARGO_MANIFEST_DIR"), "/../migrations/sqlite");
    let files = std::fs::read_dir(folder).expect("the migrations folder");
    files
        .filter(|entry| {
            entry
                .as_ref()
                .is_ok_and(|entry| entry.path().extension().is_some_and(|ext| ext == "sql"))
        })
        .count() as i64
}

/// Two processes on one file (here two stores, each with its own
/// doorbell): an append that enqueues work in one wakes the other's idle
/// workers through the doorbell, long before its poll would.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_enqueue_rings_the_doorbell_of_the_other_processes_on_the_file() {
    let database = sqlite_database();
    let writer = SqliteStore::connect(&database.url, StoreConfig::default())
        .await
        .expect("the writing process");
    let other = Arc::new(
        SqliteStore::connect(&database.url, StoreConfig::default())
            .await
            .expect("another process"),
    );
    // Nothing rings it: the wait times out.
    assert!(
        !other
            .wait_for_work(std::time::Duration::from_millis(100))
            .await
            .expect("idle wait"),
        "no work, no wake"
    );
    let waiter = {
        let other = Arc::clone(&other);
        tokio::spawn(async move {
            other
                .wait_for_work(std::time::Duration::from_secs(60))
                .await
                .expect("wait")
        })
    };
    fixtures::start_with_tasks(&writer, vec![fixtures::task("jobs", 1)], vec![]).await;
    assert!(
        waiter.await.expect("waiter"),
        "woken by the other store's enqueue, not by the 60 s timeout"
    );
}

/// A claim that finds nothing ready, and a timer poll that finds nothing
/// due, take no write lock: while another process holds SQLite's write
/// lock, both answer at once (an empty batch) instead of waiting for the
/// lock until the busy timeout and failing, and so never make the
/// committer's appends wait behind them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_claims_and_timer_polls_take_no_write_lock() {
    use sqlx::{Connection, SqliteConnection};
    let database = sqlite_database();
    let config = StoreConfig {
        acquire_timeout_ms: 300,
        ..StoreConfig::default()
    };
    let store = SqliteStore::connect(&database.url, config)
        .await
        .expect("open");
    let mut writer = SqliteConnection::connect(&database.url)
        .await
        .expect("another process's connection");
    sqlx::query("BEGIN IMMEDIATE")
        .execute(&mut writer)
        .await
        .expect("the write lock");
    let claimed = store.claim_tasks("node", "jobs", 8, 30_000).await;
    assert!(
        matches!(&claimed, Ok(tasks) if tasks.is_empty()),
        "an idle claim while another writer holds the lock: {claimed:?}"
    );
    let fired = store.due_timers(chrono::Utc::now(), 8).await;
    assert!(
        matches!(&fired, Ok(timers) if timers.is_empty()),
        "a timer poll with nothing due while another writer holds the lock: {fired:?}"
    );
    sqlx::query("ROLLBACK")
        .execute(&mut writer)
        .await
        .expect("release");
}
