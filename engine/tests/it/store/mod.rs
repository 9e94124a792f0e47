//! Store tests: the generic contract suite instantiated for SQLite and for a
//! real PostgreSQL (from `scripts/test-postgres`), chain tamper tests, the
//! Postgres restart test and backend-specific checks.

mod canonical;
mod chain;
mod contract;
mod contract_append_leases;
mod contract_audit;
mod contract_checkpoints;
mod contract_guards;
mod contract_operations;
mod contract_registry;
mod contract_relay;
mod contract_schedules;
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
use testkit::postgres::{ClusterUse, ScratchDatabase};

/// A fresh store on a fresh database, its manual clock, and a side door for
/// raw SQL (to prove the database itself rejects what the code never does).
pub struct Fixture<S> {
    pub store: Arc<S>,
    pub clock: ManualClock,
    pub url: String,
    pub raw: Raw,
    _folder: Option<tempfile::TempDir>,
    _scratch: Option<ScratchDatabase>,
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
            _scratch: database.scratch,
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
    /// A PostgreSQL database of its own, dropped when the test is done.
    pub scratch: Option<ScratchDatabase>,
}

/// A new SQLite file in a temporary folder (nested, to prove the folder is created).
pub fn sqlite_database() -> Database {
    let folder = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite://{}/nested/imx.db", folder.path().display());
    Database {
        url,
        folder: Some(folder),
        scratch: None,
    }
}

/// A new database in the test cluster, or `None` (after a loud notice)
/// when no cluster is configured outside CI. In CI a missing cluster fails.
pub async fn postgres_database() -> Option<Database> {
    postgres_database_for(ClusterUse::Shared).await
}

pub async fn postgres_database_for(how: ClusterUse) -> Option<Database> {
    let scratch = ScratchDatabase::create("a store test", "imx_test", how).await?;
    Some(Database {
        url: scratch.url.clone(),
        folder: None,
        scratch: Some(scratch),
    })
}

/// Raw SQL access to a fixture's database, bypassing the store.
pub enum Raw {
    Sqlite(sqlx::SqlitePool),
    Postgres(sqlx::PgPool),
}

impl Raw {
    pub async fn connect(url: &str) -> Self {
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
            case!(forks_are_listed_oldest_first_by_their_source);
            case!(stale_expected_seq_conflicts);
            case!(racing_appenders_get_gap_free_seqs);
            case!(batch_settles_each_run);
            case!(retried_append_is_idempotent);
            case!(two_nodes_interleave_appends);
            case!(four_workers_share_tasks_through_leases);
            case!(expired_or_taken_lease_is_fenced);
            case!(a_lease_taken_at_append_is_held_renewed_and_completed);
            case!(an_expired_lease_taken_at_append_passes_to_another_node_and_fences_the_first);
            case!(a_lease_at_append_beyond_the_limit_is_refused);
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
            case!(ui_sessions_are_found_until_they_end_idle_out_or_are_deleted);
            case!(a_migrated_store_is_ready_and_counts_its_queue);
            case!(run_ids_newer_page_oldest_first_after_a_cursor);
            case!(relay_lease_is_held_by_one_node_and_fences_a_taken_over_holder);
            case!(schedules_keep_a_forward_cursor_and_the_first_decision_per_fire);
            case!(schedules_pause_and_resume_without_catching_up);
            case!(merkle_roots_and_proofs_from_stored_nodes_match_the_reference);
            case!(audit_tables_are_append_only_and_checkpoints_are_stored_once);
            case!(checkpoints_sign_the_log_head_and_reach_the_witness_file);
            case!(the_checkpoint_writer_signs_every_n_events_and_every_t_ms);
            case!(checkpoints_are_posted_to_a_witness_url_before_the_database);
            case!(checkpoints_are_published_to_a_witness_topic_before_the_database);
            case!(one_node_signs_at_a_time_and_another_takes_over);
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
