//! Scratch PostgreSQL databases in the test cluster that
//! `scripts/test-postgres` starts (`IMX_TEST_POSTGRES_URL`): one fresh
//! database per test, dropped when the test is done, and a file lock that
//! lets the one test that restarts the cluster run alone.

use std::path::PathBuf;

use uuid::Uuid;

/// Names the test cluster's admin URL (`scripts/test-postgres` exports it).
pub const ADMIN_URL_ENV: &str = "IMX_TEST_POSTGRES_URL";
/// Names the test cluster's data folder; its parent holds the lock file.
pub const DATA_ENV: &str = "IMX_TEST_POSTGRES_DATA";
/// Test databases older than this are left over from runs that were killed
/// (a finished test drops its own); [`drop_stale_databases`] drops them.
pub const STALE_DATABASE_AGE_MS: u64 = 60 * 60 * 1000;

/// The cluster's admin URL, or `None` after a loud notice that `what` did
/// not run. With `CI=true` a missing cluster is a failure, never a skip.
pub fn admin_url(what: &str) -> Option<String> {
    match std::env::var(ADMIN_URL_ENV) {
        Ok(url) if !url.is_empty() => Some(url),
        _ if std::env::var("CI").is_ok_and(|ci| ci == "true") => panic!(
            "{ADMIN_URL_ENV} is unset: run `eval \"$(scripts/test-postgres)\"` before the tests"
        ),
        _ => {
            eprintln!(
                "\n!!!!!! SKIPPED: {what} did NOT run on PostgreSQL: {ADMIN_URL_ENV} is unset.\n\
                 !!!!!! Run `eval \"$(scripts/test-postgres)\"` first (CI=true turns this into a failure).\n"
            );
            None
        }
    }
}

/// How a test uses the shared cluster: most share it; the one that
/// restarts it must be alone. A file lock, so that it holds across threads
/// (`cargo test`) and processes (`cargo nextest`, several test binaries).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClusterUse {
    Shared,
    Exclusive,
}

/// Takes the cluster lock (blocking; call it off async workers).
pub fn lock_cluster(how: ClusterUse) -> std::fs::File {
    let folder = std::env::var(DATA_ENV)
        .ok()
        .and_then(|data| PathBuf::from(data).parent().map(PathBuf::from))
        .unwrap_or_else(std::env::temp_dir);
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(folder.join("imx-tests.lock"))
        .expect("open the cluster lock file");
    match how {
        ClusterUse::Shared => file.lock_shared(),
        ClusterUse::Exclusive => file.lock(),
    }
    .expect("lock the test cluster");
    file
}

/// Creates a fresh database `<prefix>_<uuid v7>` in the cluster of
/// `admin_url`; returns its URL.
pub async fn create_database(admin_url: &str, prefix: &str) -> Result<String, sqlx::Error> {
    let name = format!("{prefix}_{}", Uuid::now_v7().simple());
    let admin = sqlx::PgPool::connect(admin_url).await?;
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&admin)
        .await?;
    admin.close().await;
    let (base, _) = admin_url.rsplit_once('/').ok_or_else(|| {
        sqlx::Error::Configuration(format!("{admin_url} names no database").into())
    })?;
    Ok(format!("{base}/{name}"))
}

/// Drops a database [`create_database`] made; sessions still open are
/// ended (`FORCE`).
pub async fn drop_database(admin_url: &str, url: &str) -> Result<(), sqlx::Error> {
    let Some((_, name)) = url.rsplit_once('/') else {
        return Ok(());
    };
    let admin = sqlx::PgPool::connect(admin_url).await?;
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
    )))
    .execute(&admin)
    .await?;
    admin.close().await;
    Ok(())
}

/// A database of its own for one test, holding the cluster lock; dropping
/// it drops the database (before the lock is released), so test runs do not
/// fill a developer's cluster.
#[derive(Debug)]
pub struct ScratchDatabase {
    pub url: String,
    admin_url: String,
    // Declared last: released after the database is gone.
    _cluster: std::fs::File,
}

impl ScratchDatabase {
    /// A fresh database named `<prefix>_…`, with the cluster lock taken as
    /// `how`; `None` (loudly, or a failure in CI) without a cluster. The
    /// first call of a process drops what killed runs left behind
    /// ([`drop_stale_databases`]).
    pub async fn create(what: &str, prefix: &str, how: ClusterUse) -> Option<ScratchDatabase> {
        let admin_url = admin_url(what)?;
        let cluster = tokio::task::spawn_blocking(move || lock_cluster(how))
            .await
            .expect("lock task");
        static STALE_DROPPED: std::sync::Once = std::sync::Once::new();
        if !STALE_DROPPED.is_completed() {
            let admin = sqlx::PgPool::connect(&admin_url)
                .await
                .expect("connect to the test cluster");
            drop_stale_databases(&admin, prefix).await;
            admin.close().await;
            STALE_DROPPED.call_once(|| {});
        }
        let url = create_database(&admin_url, prefix)
            .await
            .expect("create a scratch database");
        Some(ScratchDatabase {
            url,
            admin_url,
            _cluster: cluster,
        })
    }

    /// [`ScratchDatabase::create`] for synchronous tests (a runtime of its own).
    pub fn create_blocking(what: &str, prefix: &str, how: ClusterUse) -> Option<ScratchDatabase> {
        let (what, prefix) = (what.to_owned(), prefix.to_owned());
        std::thread::spawn(move || {
            current_thread_runtime().block_on(ScratchDatabase::create(&what, &prefix, how))
        })
        .join()
        .expect("create thread")
    }
}

impl Drop for ScratchDatabase {
    fn drop(&mut self) {
        let (admin_url, url) = (self.admin_url.clone(), self.url.clone());
        // Drop cannot await: a thread of its own with a small runtime, joined
        // so that the database is gone when the test returns.
        let dropped = std::thread::spawn(move || {
            current_thread_runtime().block_on(drop_database(&admin_url, &url))
        })
        .join();
        match dropped {
            Ok(Ok(())) => {}
            Ok(Err(error)) => eprintln!("warning: test database {} not dropped: {error}", self.url),
            Err(_) => eprintln!("warning: dropping test database {} panicked", self.url),
        }
    }
}

/// Drops databases named `<prefix>_<uuid v7>` created more than
/// [`STALE_DATABASE_AGE_MS`] ago (a UUID v7's first 48 bits are its creation
/// time in ms). A database still in use is left alone (no `FORCE`).
pub async fn drop_stale_databases(admin: &sqlx::PgPool, prefix: &str) {
    let pattern = format!("{}\\_%", prefix.replace('_', "\\_"));
    let names: Vec<String> =
        sqlx::query_scalar("SELECT datname FROM pg_database WHERE datname LIKE $1")
            .bind(pattern)
            .fetch_all(admin)
            .await
            .unwrap_or_default();
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| since.as_millis() as u64);
    for name in names {
        let created_ms = name
            .strip_prefix(prefix)
            .and_then(|rest| rest.strip_prefix('_'))
            .and_then(|id| Uuid::parse_str(id).ok())
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

fn current_thread_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime")
}
