//! What benchmarks measure a store against: the raw commit rate of the same
//! database with the same driver (plain INSERTs of event-sized rows into a
//! copy of the events table: no projections, no queue, no hash chain).
//! Shared by `cargo bench --bench store` and `imx bench run`; scratch
//! databases come from [`crate::postgres`].

use chrono::Utc;
use serde_json::json;
use uuid::Uuid;

use engine::store::{Error, PostgresStore, SqliteStore, Store};

/// A fixed hash for the baseline rows (they are not a chain).
const HASH: &str = "5df1126bff2d9da46a508e55ca6d1dfd0c8c754b3e2b8d881310d116822bad98";
/// Positions of batched baseline rows start here, clear of single rows.
const BATCH_POSITION_FIRST: usize = 1_000_000_000;

/// Plain INSERTs into `bench_events`, a copy of the events table.
#[derive(Debug, Clone)]
pub enum Baseline {
    Sqlite(sqlx::SqlitePool),
    Postgres(sqlx::PgPool),
}

impl Baseline {
    /// The baseline on the store's own connection pool.
    pub fn of(store: &Store) -> Baseline {
        match store {
            Store::Sqlite(store) => Baseline::of_sqlite(store),
            Store::Postgres(store) => Baseline::of_postgres(store),
        }
    }

    pub fn of_sqlite(store: &SqliteStore) -> Baseline {
        Baseline::Sqlite(store.pool().clone())
    }

    pub fn of_postgres(store: &PostgresStore) -> Baseline {
        Baseline::Postgres(store.pool().clone())
    }

    /// Creates `bench_events` (once per database).
    pub async fn create_table(&self) -> Result<(), Error> {
        match self {
            Baseline::Sqlite(pool) => {
                let sql = "CREATE TABLE IF NOT EXISTS bench_events (position INTEGER PRIMARY KEY, run_id TEXT NOT NULL, seq INTEGER NOT NULL, \
                    event_type TEXT NOT NULL, schema_version INTEGER NOT NULL, payload TEXT NOT NULL, recorded_at TEXT NOT NULL, \
                    prev_hash TEXT NOT NULL, hash TEXT NOT NULL, log_hash TEXT NOT NULL, append_id TEXT NOT NULL, \
                    UNIQUE (run_id, seq)) STRICT";
                sqlx::query(sql).execute(pool).await?;
            }
            Baseline::Postgres(pool) => {
                // Same columns, types, keys and indexes; no triggers.
                sqlx::query("CREATE TABLE IF NOT EXISTS bench_events (LIKE events INCLUDING ALL)")
                    .execute(pool)
                    .await?;
            }
        }
        Ok(())
    }

    /// The server's WAL insert position in bytes (0 on SQLite).
    pub async fn wal_position(&self) -> Result<i64, Error> {
        match self {
            Baseline::Sqlite(_) => Ok(0),
            Baseline::Postgres(pool) => Ok(sqlx::query_scalar(
                "SELECT pg_wal_lsn_diff(pg_current_wal_insert_lsn(), '0/0')::int8",
            )
            .fetch_one(pool)
            .await?),
        }
    }

    /// WAL bytes written since `from` (by everyone: a bench should be the
    /// only writer).
    pub async fn wal_since(&self, from: i64) -> Result<f64, Error> {
        Ok((self.wal_position().await? - from) as f64)
    }

    /// `count` one-row transactions, positions from `first`.
    pub async fn insert_single(&self, first: usize, count: usize) -> Result<(), Error> {
        for position in first..first + count {
            self.insert(position, 1).await?;
        }
        Ok(())
    }

    /// `batches` transactions of `size` rows, batch numbers from `first`.
    pub async fn insert_batches(
        &self,
        first: usize,
        batches: usize,
        size: usize,
    ) -> Result<(), Error> {
        for batch in first..first + batches {
            self.insert(BATCH_POSITION_FIRST + batch * size, size)
                .await?;
        }
        Ok(())
    }

    /// Inserts `count` rows with positions from `first` in one transaction.
    async fn insert(&self, first: usize, count: usize) -> Result<(), Error> {
        let payload = payload();
        let now = Utc::now();
        let rows: Vec<(i64, Uuid)> = (0..count)
            .map(|offset| ((first + offset) as i64 + 1, Uuid::now_v7()))
            .collect();
        match self {
            Baseline::Sqlite(pool) => {
                let mut transaction = pool.begin_with("BEGIN IMMEDIATE").await?;
                for (position, run_id) in &rows {
                    sqlx::query(
                        "INSERT INTO bench_events (position, run_id, seq, event_type, schema_version, payload, recorded_at, \
                         prev_hash, hash, log_hash, append_id) VALUES (?1, ?2, 1, 'StepSucceeded', 1, ?3, ?4, ?5, ?5, ?5, ?6)",
                    )
                    .bind(position)
                    .bind(run_id.to_string())
                    .bind(&payload)
                    .bind(now.to_rfc3339())
                    .bind(HASH)
                    .bind(Uuid::now_v7().to_string())
                    .execute(&mut *transaction)
                    .await?;
                }
                transaction.commit().await?;
            }
            Baseline::Postgres(pool) => {
                let count = rows.len();
                sqlx::query(
                    "INSERT INTO bench_events (position, run_id, seq, event_type, schema_version, payload, recorded_at, \
                     prev_hash, hash, log_hash, append_id) SELECT p, r, 1, 'StepSucceeded', 1, $3::json, $4, $5, $5, $5, a \
                     FROM UNNEST($1::int8[], $2::uuid[], $6::uuid[]) AS t(p, r, a)",
                )
                .bind(rows.iter().map(|(position, _)| *position).collect::<Vec<_>>())
                .bind(rows.iter().map(|(_, run_id)| *run_id).collect::<Vec<_>>())
                .bind(&payload)
                .bind(now)
                .bind(HASH)
                .bind((0..count).map(|_| Uuid::now_v7()).collect::<Vec<_>>())
                .execute(pool)
                .await?;
            }
        }
        Ok(())
    }

    /// PostgreSQL's `synchronous_commit` (`None` on SQLite).
    pub async fn synchronous_commit(&self) -> Result<Option<String>, Error> {
        match self {
            Baseline::Sqlite(_) => Ok(None),
            Baseline::Postgres(pool) => Ok(Some(
                sqlx::query_scalar("SHOW synchronous_commit")
                    .fetch_one(pool)
                    .await?,
            )),
        }
    }
}

/// An event payload of the size a step result has.
fn payload() -> String {
    let payload = json!({ "step": "fetch", "attempt": 1, "output": { "status": 200, "body": "x".repeat(200) }, "at": Utc::now() });
    serde_json_canonicalizer::to_string(&payload).unwrap_or_else(|_| payload.to_string())
}
