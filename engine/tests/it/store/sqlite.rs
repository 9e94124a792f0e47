//! Opening stores by URL, and what only the SQLite backend promises (its
//! file, folder, WAL mode and durability settings).

use engine::store::{self, EventStore, SqliteStore, Store, StoreConfig};

use super::{contract, sqlite_database};

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
