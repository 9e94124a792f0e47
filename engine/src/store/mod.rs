//! The durable store: the event log, the read models (runs, steps) and the
//! work queue (tasks, timers, leases) behind one [`EventStore`] trait, with a
//! SQLite backend (embedded default) and a PostgreSQL backend (production).
//!
//! The store knows nothing of the core's event enum: it keeps events as
//! (type, schema version, JSON payload), and the caller computes the
//! projection rows. Architecture invariant: no code path updates or deletes a
//! row of `events`; database triggers reject it on both backends.

mod api_keys;
mod error;
mod postgres;
mod prepare;
mod registry;
mod retry;
mod runs_newer;
mod schema;
mod sqlite;
mod types;

use std::future::Future;
use std::time::Duration;

pub use api_keys::ApiKeyRecord;
pub use error::{APPEND_ONLY_CODE, Error, ErrorKind};
pub use postgres::{PostgresStore, REMOTE_WAKE_INTERVAL, WORK_CHANNEL};
pub use registry::{NewWorkflow, WORKFLOW_SOURCE_BYTES_MAX, WORKFLOWS_LIST_MAX, WorkflowRecord};
pub use retry::{RetryPolicy, retry};
pub use runs_newer::NewerRunsQuery;
pub use sqlite::SqliteStore;
pub use types::*;

use chrono::{DateTime, Utc};

/// The store used when no URL is configured.
pub const DEFAULT_DATABASE_URL: &str = "sqlite://./.imx/imx.db";

/// One durable store. Every method is one short transaction (or none);
/// errors that [`Error::is_retryable`] may be retried with [`retry`].
pub trait EventStore: Send + Sync + Sized + std::fmt::Debug + 'static {
    /// Connects, refuses a schema newer than this build knows, and applies
    /// pending migrations.
    fn connect(url: &str, config: StoreConfig) -> impl Future<Output = Result<Self, Error>> + Send;

    fn config(&self) -> &StoreConfig;

    /// Applies pending migrations (also done by `connect`).
    fn migrate(&self) -> impl Future<Output = Result<(), Error>> + Send;

    /// Readiness: the database answers a trivial query.
    fn ping(&self) -> impl Future<Output = Result<(), Error>> + Send;

    /// Appends many runs' transitions in ONE transaction (group commit).
    /// The outer error fails the whole batch (nothing written); the inner
    /// results are per request: a request that conflicts, lost its lease or
    /// reuses a taken idempotency key is left out, the others are written.
    fn append_batch(
        &self,
        requests: Vec<AppendRequest>,
    ) -> impl Future<Output = Result<Vec<Result<Appended, Error>>, Error>> + Send;

    /// Appends one run's transition; see [`AppendRequest`].
    fn append(
        &self,
        request: AppendRequest,
    ) -> impl Future<Output = Result<Appended, Error>> + Send {
        async move {
            let mut results = self.append_batch(vec![request]).await?;
            results
                .pop()
                .unwrap_or_else(|| Err(Error::corrupt("an append produced no result")))
        }
    }

    /// Starts a run (`expected_seq` 0). When the run row's idempotency key
    /// already names a run, returns that run and writes nothing.
    fn start_run(
        &self,
        request: AppendRequest,
    ) -> impl Future<Output = Result<StartOutcome, Error>> + Send {
        async move {
            if request.expected_seq != 0 {
                return Err(Error::invalid("a run starts at expected_seq 0"));
            }
            match self.append(request).await {
                Ok(appended) => Ok(StartOutcome::Started(appended)),
                Err(Error::IdempotencyKeyTaken { run_id, .. }) => match self.get_run(run_id).await?
                {
                    Some(existing) => Ok(StartOutcome::Existing(Box::new(existing))),
                    None => Err(Error::RunNotFound { run_id }),
                },
                Err(error) => Err(error),
            }
        }
    }

    /// A run's events with `seq > after_seq`, in seq order, at most `max`.
    fn read_stream(
        &self,
        run_id: RunId,
        after_seq: u64,
        max: u32,
    ) -> impl Future<Output = Result<Vec<RecordedEvent>, Error>> + Send;

    /// The global log from `position > after_position`, at most `max`.
    /// Positions are gap-free and commit-ordered: a reader never skips an
    /// event that commits later.
    fn read_log(
        &self,
        after_position: u64,
        max: u32,
    ) -> impl Future<Output = Result<Vec<RecordedEvent>, Error>> + Send;

    /// The last event's position and log hash (genesis when empty).
    fn log_head(&self) -> impl Future<Output = Result<LogHead, Error>> + Send;

    fn get_run(
        &self,
        run_id: RunId,
    ) -> impl Future<Output = Result<Option<RunRecord>, Error>> + Send;

    fn find_run_by_key(
        &self,
        key: &str,
    ) -> impl Future<Output = Result<Option<RunRecord>, Error>> + Send;

    /// A run's step rows, by step id.
    fn get_steps(&self, run_id: RunId) -> impl Future<Output = Result<Vec<StepRow>, Error>> + Send;

    /// Runs, newest first, filtered, keyset-paginated.
    fn list_runs(
        &self,
        query: &RunQuery,
    ) -> impl Future<Output = Result<Page<RunRecord, RunCursor>, Error>> + Send;

    /// Leases up to `max` ready tasks of `queue` to `worker` for `lease_ms`.
    /// A task whose lease expired is ready again.
    fn claim_tasks(
        &self,
        worker: &str,
        queue: &str,
        max: u32,
        lease_ms: u64,
    ) -> impl Future<Output = Result<Vec<ClaimedTask>, Error>> + Send;

    /// Extends a lease still held; `LeaseLost` otherwise.
    fn renew_lease(
        &self,
        task_id: TaskId,
        token: LeaseToken,
        lease_ms: u64,
    ) -> impl Future<Output = Result<Lease, Error>> + Send;

    /// Removes a task whose lease is still held, without appending events.
    fn complete_task(
        &self,
        task_id: TaskId,
        token: LeaseToken,
    ) -> impl Future<Output = Result<(), Error>> + Send;

    /// Fires up to `max` timers due at `now`, earliest first: each becomes a
    /// task (`task_id == timer_id`) exactly once, in the same transaction.
    fn due_timers(
        &self,
        now: DateTime<Utc>,
        max: u32,
    ) -> impl Future<Output = Result<Vec<FiredTimer>, Error>> + Send;

    /// Waits until new work may be ready (tasks enqueued or timers fired by
    /// any node sharing the database) or `timeout` passes. True when woken.
    /// Wake-ups are hints: always claim to find out.
    fn wait_for_work(&self, timeout: Duration) -> impl Future<Output = Result<bool, Error>> + Send;

    /// Replaces the runs and steps read models with what `fold` computes
    /// from each run's full stream, in one transaction that holds off appends.
    fn rebuild_projections<F>(
        &self,
        fold: F,
    ) -> impl Future<Output = Result<RebuildStats, Error>> + Send
    where
        F: FnMut(&[RecordedEvent]) -> ProjectionUpdate + Send;

    /// Registers a workflow version; registering it again writes no second
    /// row and makes it the latest version of its name.
    fn register_workflow(
        &self,
        workflow: NewWorkflow,
    ) -> impl Future<Output = Result<WorkflowRecord, Error>> + Send;

    /// One version of a workflow, or (`None`) the version registered last.
    fn get_workflow(
        &self,
        name: &str,
        version: Option<&str>,
    ) -> impl Future<Output = Result<Option<WorkflowRecord>, Error>> + Send;

    /// Every registered version, by name, latest first (at most
    /// [`WORKFLOWS_LIST_MAX`]).
    fn list_workflows(&self) -> impl Future<Output = Result<Vec<WorkflowRecord>, Error>> + Send;
}

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

macro_rules! delegate {
    ($self:ident, $store:ident => $call:expr) => {
        match $self {
            Store::Sqlite($store) => $call,
            Store::Postgres($store) => $call,
        }
    };
}

impl EventStore for Store {
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
        delegate!(self, store => store.config())
    }

    async fn migrate(&self) -> Result<(), Error> {
        delegate!(self, store => store.migrate().await)
    }

    async fn ping(&self) -> Result<(), Error> {
        delegate!(self, store => store.ping().await)
    }

    async fn append_batch(
        &self,
        requests: Vec<AppendRequest>,
    ) -> Result<Vec<Result<Appended, Error>>, Error> {
        delegate!(self, store => store.append_batch(requests).await)
    }

    async fn read_stream(
        &self,
        run_id: RunId,
        after_seq: u64,
        max: u32,
    ) -> Result<Vec<RecordedEvent>, Error> {
        delegate!(self, store => store.read_stream(run_id, after_seq, max).await)
    }

    async fn read_log(&self, after_position: u64, max: u32) -> Result<Vec<RecordedEvent>, Error> {
        delegate!(self, store => store.read_log(after_position, max).await)
    }

    async fn log_head(&self) -> Result<LogHead, Error> {
        delegate!(self, store => store.log_head().await)
    }

    async fn get_run(&self, run_id: RunId) -> Result<Option<RunRecord>, Error> {
        delegate!(self, store => store.get_run(run_id).await)
    }

    async fn find_run_by_key(&self, key: &str) -> Result<Option<RunRecord>, Error> {
        delegate!(self, store => store.find_run_by_key(key).await)
    }

    async fn get_steps(&self, run_id: RunId) -> Result<Vec<StepRow>, Error> {
        delegate!(self, store => store.get_steps(run_id).await)
    }

    async fn list_runs(&self, query: &RunQuery) -> Result<Page<RunRecord, RunCursor>, Error> {
        delegate!(self, store => store.list_runs(query).await)
    }

    async fn claim_tasks(
        &self,
        worker: &str,
        queue: &str,
        max: u32,
        lease_ms: u64,
    ) -> Result<Vec<ClaimedTask>, Error> {
        delegate!(self, store => store.claim_tasks(worker, queue, max, lease_ms).await)
    }

    async fn renew_lease(
        &self,
        task_id: TaskId,
        token: LeaseToken,
        lease_ms: u64,
    ) -> Result<Lease, Error> {
        delegate!(self, store => store.renew_lease(task_id, token, lease_ms).await)
    }

    async fn complete_task(&self, task_id: TaskId, token: LeaseToken) -> Result<(), Error> {
        delegate!(self, store => store.complete_task(task_id, token).await)
    }

    async fn due_timers(&self, now: DateTime<Utc>, max: u32) -> Result<Vec<FiredTimer>, Error> {
        delegate!(self, store => store.due_timers(now, max).await)
    }

    async fn wait_for_work(&self, timeout: Duration) -> Result<bool, Error> {
        delegate!(self, store => store.wait_for_work(timeout).await)
    }

    async fn rebuild_projections<F>(&self, fold: F) -> Result<RebuildStats, Error>
    where
        F: FnMut(&[RecordedEvent]) -> ProjectionUpdate + Send,
    {
        delegate!(self, store => store.rebuild_projections(fold).await)
    }

    async fn register_workflow(&self, workflow: NewWorkflow) -> Result<WorkflowRecord, Error> {
        delegate!(self, store => store.register_workflow(workflow).await)
    }

    async fn get_workflow(
        &self,
        name: &str,
        version: Option<&str>,
    ) -> Result<Option<WorkflowRecord>, Error> {
        delegate!(self, store => store.get_workflow(name, version).await)
    }

    async fn list_workflows(&self) -> Result<Vec<WorkflowRecord>, Error> {
        delegate!(self, store => store.list_workflows().await)
    }
}

/// Wakes every worker of this node waiting in `wait_for_work` (after a
/// commit that created work, or another node's notification); one permit
/// is kept for a worker between a claim and its wait.
fn wake_workers(work: &tokio::sync::Notify) {
    work.notify_waiters();
    work.notify_one();
}
