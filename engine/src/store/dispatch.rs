//! [`Store`], the backend picked by URL at run time, and the ONE place that
//! dispatches to a backend: every store trait is implemented for it by the
//! `dispatch!` macro, which matches on the variant and calls the same
//! method of the backend. (The gateway holds `Arc<Store>` rather than being
//! generic over the store, which would compile it once per backend; trait
//! objects are ruled out by the traits' `impl Future` methods.)

use std::time::Duration;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::api_keys::{ApiKeyRecord, ApiKeys};
use super::audit::{AuditTrail, CheckpointRecord, MerkleNode};
use super::database::Database;
use super::error::Error;
use super::event_log::EventLog;
use super::log_reader::LogReader;
use super::read_models::{NewerRunsQuery, ReadModels};
use super::registry::{NewWorkflow, WorkflowRecord, WorkflowRegistry};
use super::relay::{Relay, RelayLease};
use super::schedules::{FireRecord, ScheduleRecord, Schedules};
use super::types::*;
use super::ui_sessions::{UiSessionRecord, UiSessions};
use super::work_queue::WorkQueue;
use super::{PostgresStore, SqliteStore};

/// A store picked by URL scheme at run time.
#[derive(Debug)]
pub enum Store {
    Sqlite(SqliteStore),
    Postgres(PostgresStore),
}

/// Opens the store at `url` (`sqlite://PATH` or `postgres://…`) with default
/// limits, creating the SQLite folder and file if needed, and migrating.
pub async fn open(url: &str) -> Result<Store, Error> {
    Store::connect(url, StoreConfig::default()).await
}

/// Like [`open`], with explicit limits and clock.
pub async fn open_with(url: &str, config: StoreConfig) -> Result<Store, Error> {
    Store::connect(url, config).await
}

/// `impl $trait for Store`: each listed `async fn` calls the same method of
/// the variant's backend; what follows `;;` is written out by hand.
macro_rules! dispatch {
    (impl $trait:ident {
        $(async fn $name:ident(&self $(, $arg:ident: $type:ty)*) -> $output:ty;)*
        $(;; $($written:tt)*)?
    }) => {
        impl $trait for Store {
            $(async fn $name(&self $(, $arg: $type)*) -> $output {
                match self {
                    Store::Sqlite(store) => store.$name($($arg),*).await,
                    Store::Postgres(store) => store.$name($($arg),*).await,
                }
            })*
            $($($written)*)?
        }
    };
}

dispatch! { impl Database {
    async fn migrate(&self) -> Result<(), Error>;
    async fn ping(&self) -> Result<(), Error>;
    async fn migrations_current(&self) -> Result<bool, Error>;
    ;;
    async fn connect(url: &str, config: StoreConfig) -> Result<Self, Error> {
        let scheme = url.split(':').next().unwrap_or_default();
        match scheme {
            "sqlite" => Ok(Store::Sqlite(SqliteStore::connect(url, config).await?)),
            "postgres" | "postgresql" => {
                Ok(Store::Postgres(PostgresStore::connect(url, config).await?))
            }
            _ => Err(Error::UnsupportedUrl {
                scheme: scheme.to_owned(),
            }),
        }
    }

    fn config(&self) -> &StoreConfig {
        match self {
            Store::Sqlite(store) => store.config(),
            Store::Postgres(store) => store.config(),
        }
    }
}}

dispatch! { impl EventLog {
    async fn append_batch(&self, requests: Vec<AppendRequest>) -> Result<Vec<Result<Appended, Error>>, Error>;
    ;;
    async fn rebuild_projections<F>(&self, fold: F) -> Result<RebuildStats, Error>
    where
        F: FnMut(&[RecordedEvent]) -> ProjectionUpdate + Send,
    {
        match self {
            Store::Sqlite(store) => store.rebuild_projections(fold).await,
            Store::Postgres(store) => store.rebuild_projections(fold).await,
        }
    }
}}

dispatch! { impl LogReader {
    async fn read_stream(&self, run_id: RunId, after_seq: u64, max: u32) -> Result<Vec<RecordedEvent>, Error>;
    async fn read_log(&self, after_position: u64, max: u32) -> Result<Vec<RecordedEvent>, Error>;
    async fn log_head(&self) -> Result<LogHead, Error>;
}}

dispatch! { impl ReadModels {
    async fn get_run(&self, run_id: RunId) -> Result<Option<RunRecord>, Error>;
    async fn find_run_by_key(&self, key: &str) -> Result<Option<RunRecord>, Error>;
    async fn get_steps(&self, run_id: RunId) -> Result<Vec<StepRow>, Error>;
    async fn list_runs(&self, query: &RunQuery) -> Result<Page<RunRecord, RunCursor>, Error>;
    async fn list_forks(&self, run_id: RunId, limit: u32) -> Result<Vec<RunRecord>, Error>;
    async fn run_ids_newer(&self, query: &NewerRunsQuery) -> Result<Vec<RunId>, Error>;
}}

dispatch! { impl WorkQueue {
    async fn claim_tasks(&self, worker: &str, queue: &str, max: u32, lease_ms: u64) -> Result<Vec<ClaimedTask>, Error>;
    async fn renew_lease(&self, task_id: TaskId, token: LeaseToken, lease_ms: u64) -> Result<Lease, Error>;
    async fn complete_task(&self, task_id: TaskId, token: LeaseToken) -> Result<(), Error>;
    async fn due_timers(&self, now: DateTime<Utc>, max: u32) -> Result<Vec<FiredTimer>, Error>;
    async fn wait_for_work(&self, timeout: Duration) -> Result<bool, Error>;
    async fn queue_depth(&self) -> Result<u64, Error>;
    async fn expired_leases(&self, now: DateTime<Utc>) -> Result<u64, Error>;
}}

dispatch! { impl WorkflowRegistry {
    async fn register_workflow(&self, workflow: NewWorkflow) -> Result<WorkflowRecord, Error>;
    async fn get_workflow(&self, name: &str, version: Option<&str>) -> Result<Option<WorkflowRecord>, Error>;
    async fn list_workflows(&self) -> Result<Vec<WorkflowRecord>, Error>;
    async fn newest_workflow_versions(&self) -> Result<Vec<(String, String)>, Error>;
}}

dispatch! { impl ApiKeys {
    async fn create_api_key(&self, key: &ApiKeyRecord) -> Result<(), Error>;
    async fn find_api_key(&self, key_hash: &str) -> Result<Option<ApiKeyRecord>, Error>;
    async fn list_api_keys(&self) -> Result<Vec<ApiKeyRecord>, Error>;
    async fn revoke_api_key(&self, key_id: Uuid, at: DateTime<Utc>) -> Result<bool, Error>;
}}

dispatch! { impl UiSessions {
    async fn create_ui_session(&self, session: &UiSessionRecord, sessions_max: u32) -> Result<(), Error>;
    async fn find_ui_session(&self, session_hash: &str, now: DateTime<Utc>) -> Result<Option<UiSessionRecord>, Error>;
    async fn touch_ui_session(&self, session_hash: &str, idle_expires_at: DateTime<Utc>) -> Result<(), Error>;
    async fn end_ui_session(&self, session_hash: &str) -> Result<bool, Error>;
}}

dispatch! { impl Relay {
    async fn acquire_relay(&self, name: &str, holder: &str, token: &str, lease_ms: u64) -> Result<Option<RelayLease>, Error>;
    async fn advance_relay(&self, name: &str, token: &str, position: u64, lease_ms: u64) -> Result<bool, Error>;
    async fn release_relay(&self, name: &str, token: &str) -> Result<bool, Error>;
    async fn relay_lease(&self, name: &str) -> Result<Option<RelayLease>, Error>;
}}

dispatch! { impl Schedules {
    async fn ensure_schedule(&self, workflow: &str, trigger: &str, cursor_at: DateTime<Utc>) -> Result<ScheduleRecord, Error>;
    async fn list_schedules(&self) -> Result<Vec<ScheduleRecord>, Error>;
    async fn advance_schedule(&self, workflow: &str, trigger: &str, cursor_at: DateTime<Utc>) -> Result<(), Error>;
    async fn set_schedule_paused(&self, workflow: &str, trigger: &str, paused: Option<(DateTime<Utc>, String)>, now: DateTime<Utc>) -> Result<(), Error>;
    async fn record_fire(&self, fire: &FireRecord) -> Result<FireRecord, Error>;
    async fn latest_started_fire(&self, workflow: &str, trigger: &str, before: DateTime<Utc>) -> Result<Option<FireRecord>, Error>;
    async fn list_fires(&self, workflow: &str, trigger: &str, max: u32) -> Result<Vec<FireRecord>, Error>;
}}

dispatch! { impl AuditTrail {
    async fn leaf_hashes(&self, after: u64, max: u32) -> Result<Vec<String>, Error>;
    async fn merkle_nodes(&self, level: u32, first: u64, last: u64) -> Result<Vec<(u64, String)>, Error>;
    async fn merkle_width(&self, level: u32) -> Result<u64, Error>;
    async fn append_merkle_nodes(&self, nodes: &[MerkleNode]) -> Result<(), Error>;
    async fn append_checkpoint(&self, checkpoint: &CheckpointRecord) -> Result<bool, Error>;
    async fn checkpoints(&self, after_size: u64, max: u32) -> Result<Vec<CheckpointRecord>, Error>;
    async fn latest_checkpoint(&self) -> Result<Option<CheckpointRecord>, Error>;
}}
