//! The durable store: the event log, the read models (runs, steps), the
//! work queue (tasks, timers, leases), the workflow registry, API keys,
//! the log relay's position, the Merkle tree's nodes and the checkpoints,
//! each behind a focused trait, with a SQLite backend (embedded default)
//! and a PostgreSQL backend (production) that implement each trait
//! directly. [`EventStore`] is all of them at once: the bound generic code
//! (the runtime, the contract suite) uses. [`Store`] picks a backend by URL
//! at run time and is the one place that dispatches (dispatch.rs).
//!
//! The store knows nothing of the core's event enum: it keeps events as
//! (type, schema version, JSON payload), and the caller computes the
//! projection rows. Architecture invariant: no code path updates or deletes a
//! row of `events`; database triggers reject it on both backends.

mod api_keys;
mod audit;
mod database;
mod decode;
mod dialect;
mod dispatch;
mod error;
mod event_log;
mod log_reader;
mod page;
mod postgres;
mod prepare;
mod read_models;
mod registry;
mod relay;
mod retry;
mod schedules;
mod schema;
mod sqlite;
mod types;
mod ui_sessions;
mod work_queue;

pub use api_keys::{ApiKeyRecord, ApiKeys};
pub use audit::{AUDIT_INSERT_ROWS_MAX, AuditTrail, CheckpointRecord, MerkleNode};
pub use database::Database;
pub use dispatch::{Store, open, open_with};
pub use error::{APPEND_ONLY_CODE, Error, ErrorKind};
pub use event_log::EventLog;
pub use log_reader::LogReader;
pub use postgres::{PostgresStore, REMOTE_WAKE_INTERVAL, WORK_CHANNEL};
pub use read_models::{NewerRunsQuery, ReadModels};
pub use registry::{
    NewWorkflow, WORKFLOW_SOURCE_BYTES_MAX, WORKFLOWS_LIST_MAX, WorkflowRecord, WorkflowRegistry,
};
pub use relay::{Relay, RelayLease};
pub use retry::{RetryPolicy, retry};
pub use schedules::{FireOutcome, FireRecord, SCHEDULE_FIRES_LIST_MAX, ScheduleRecord, Schedules};
pub use sqlite::SqliteStore;
pub use types::*;
pub use ui_sessions::{UiSessionRecord, UiSessions};
pub use work_queue::WorkQueue;

/// The store's traits, for callers that hold a concrete store (`Store`,
/// `SqliteStore`, `PostgresStore`) and call its methods:
/// `use engine::store::prelude::*;`.
pub mod prelude {
    pub use super::{
        ApiKeys, AuditTrail, Database, EventLog, EventStore, LogReader, ReadModels, Relay,
        Schedules, UiSessions, WorkQueue, WorkflowRegistry,
    };
}

/// The store used when no URL is configured.
pub const DEFAULT_DATABASE_URL: &str = "sqlite://./.imx/imx.db";

/// One durable store: every focused trait at once. Implemented for every
/// type that implements them all; generic code takes `S: EventStore`.
/// Every method is one short transaction (or none); errors that
/// [`Error::is_retryable`] may be retried with [`retry`].
pub trait EventStore:
    Database
    + EventLog
    + LogReader
    + ReadModels
    + WorkQueue
    + WorkflowRegistry
    + ApiKeys
    + UiSessions
    + Relay
    + Schedules
    + AuditTrail
{
}

impl<S> EventStore for S where
    S: Database
        + EventLog
        + LogReader
        + ReadModels
        + WorkQueue
        + WorkflowRegistry
        + ApiKeys
        + UiSessions
        + Relay
        + Schedules
        + AuditTrail
{
}

/// Wakes every worker of this node waiting in `wait_for_work` (after a
/// commit that created work, or another node's notification); one permit
/// is kept for a worker between a claim and its wait.
fn wake_workers(work: &tokio::sync::Notify) {
    work.notify_waiters();
    work.notify_one();
}
