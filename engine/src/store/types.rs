//! The values that cross the store boundary: append requests, projection rows,
//! tasks, timers, leases, pages, configuration and limits.

use std::fmt;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

pub use crate::chain::{Head, LogHead, RecordedEvent};

/// Identifies a workflow run (a stream in the log). UUID v7, made by the
/// runtime or the store ([`new_id`]), never by the pure core.
pub type RunId = Uuid;
/// Identifies a ready task in the work queue.
pub type TaskId = Uuid;
/// Identifies a durable timer.
pub type TimerId = Uuid;

/// A fresh time-ordered id (UUID v7) for runs, tasks, timers and appends.
pub fn new_id() -> Uuid {
    Uuid::now_v7()
}

/// Default largest canonical JSON payload of one event, in bytes (1 MiB).
pub const PAYLOAD_BYTES_MAX: usize = 1024 * 1024;
/// Default most events in one run's append.
pub const EVENTS_PER_APPEND_MAX: usize = 1_000;
/// Room in one event's payload for everything besides the one large value
/// it may carry (ids, keys, times, a clipped error message).
pub const EVENT_FIELDS_BYTES_MAX: usize = 64 * 1024;

// A rendered value (a step's input, `for_each` items, the run output) and an
// executor's output each fit in one event; redaction never makes them longer
// (secrets shorter than the `***` they become are not matched).
const _: () = assert!(
    crate::core::template::TEMPLATE_OUTPUT_BYTES_MAX + EVENT_FIELDS_BYTES_MAX <= PAYLOAD_BYTES_MAX
);
const _: () =
    assert!(crate::executor::OUTPUT_BYTES_MAX + EVENT_FIELDS_BYTES_MAX <= PAYLOAD_BYTES_MAX);
/// Default most run appends in one `append_batch` transaction.
pub const BATCH_RUNS_MAX: usize = 1_000;
/// Default largest page a read may ask for (events, runs, tasks, timers).
pub const PAGE_SIZE_MAX: u32 = 1_000;
/// Default longest lease a worker may take or renew, in ms (1 hour).
pub const LEASE_MS_MAX: u64 = 60 * 60 * 1000;
/// Default most pooled connections per node.
pub const POOL_CONNECTIONS_MAX: u32 = 10;
/// Default wait for a pooled connection (and for SQLite's write lock), in ms.
pub const ACQUIRE_TIMEOUT_MS: u64 = 5_000;

/// Tunables and limits of a store, all with documented defaults.
#[derive(Clone, Debug)]
pub struct StoreConfig {
    /// Largest canonical JSON payload of one event, in bytes.
    pub payload_bytes_max: usize,
    pub events_per_append_max: usize,
    pub batch_runs_max: usize,
    pub page_size_max: u32,
    pub lease_ms_max: u64,
    pub pool_connections_max: u32,
    /// Pool acquire timeout; also SQLite's busy timeout.
    pub acquire_timeout_ms: u64,
    /// Source of "now" for leases, task availability and `recorded_at`.
    pub clock: Arc<dyn Clock>,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            payload_bytes_max: PAYLOAD_BYTES_MAX,
            events_per_append_max: EVENTS_PER_APPEND_MAX,
            batch_runs_max: BATCH_RUNS_MAX,
            page_size_max: PAGE_SIZE_MAX,
            lease_ms_max: LEASE_MS_MAX,
            pool_connections_max: POOL_CONNECTIONS_MAX,
            acquire_timeout_ms: ACQUIRE_TIMEOUT_MS,
            clock: Arc::new(SystemClock),
        }
    }
}

/// Where the store reads the time. Leases use the node's clock, so nodes
/// sharing a database need clocks synchronised well within `lease_ms`.
pub trait Clock: Send + Sync + fmt::Debug {
    fn now(&self) -> DateTime<Utc>;
}

/// The machine's clock.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// A clock that moves only when told to: lease and timer tests without sleeps.
#[derive(Clone, Debug)]
pub struct ManualClock(Arc<Mutex<DateTime<Utc>>>);

impl ManualClock {
    pub fn new(start: DateTime<Utc>) -> Self {
        ManualClock(Arc::new(Mutex::new(start)))
    }

    pub fn advance_ms(&self, ms: i64) {
        let mut now = self
            .0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        *now += chrono::Duration::milliseconds(ms);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        *self
            .0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// An event to append; the store adds run id, seq, position, time and hashes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NewEvent {
    pub event_type: String,
    pub schema_version: u32,
    pub payload: Value,
}

/// The `runs` read model row, computed by the caller from the run's events.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunRow {
    pub run_id: RunId,
    pub workflow: String,
    /// Workflow version the run is pinned to (`sha256:…`).
    pub version: String,
    pub status: String,
    pub input: Value,
    pub output: Option<Value>,
    pub error: Option<String>,
    pub parent_run_id: Option<RunId>,
    /// The source run of a fork (`forkRun`).
    pub forked_from: Option<RunId>,
    /// Unique over all runs: starting twice with one key yields one run.
    pub idempotency_key: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A run row as read back, with the seq of its last event.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunRecord {
    pub row: RunRow,
    /// 0 when the run has no event yet.
    pub last_seq: u64,
}

/// The `steps` read model row (one per step, or per `for_each` item when the
/// caller chooses step ids like `pack/3`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StepRow {
    pub run_id: RunId,
    pub step_id: String,
    pub status: String,
    pub attempts: u32,
    pub output: Option<Value>,
    pub error: Option<String>,
    pub updated_at: DateTime<Utc>,
}

/// Read-model rows to upsert in the append's transaction.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ProjectionUpdate {
    pub run: Option<RunRow>,
    pub steps: Vec<StepRow>,
}

/// A task to enqueue for a worker on `queue`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NewTask {
    pub task_id: TaskId,
    pub queue: String,
    pub payload: Value,
    /// Not claimable before this time; `None`: at once.
    pub available_at: Option<DateTime<Utc>>,
    /// Leased at once to the appending node (see [`TaskLease`]); `None`:
    /// ready for any worker's claim.
    #[serde(default)]
    pub lease: Option<TaskLease>,
}

/// A lease taken on a task in the transaction that enqueues it: the
/// appending node runs the task at once, without a claim transaction. It is
/// the same lease a claim gives (the task's first claim, `claims = 1`,
/// fenced by `token`, ready again for anyone when it expires).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TaskLease {
    pub owner: String,
    pub token: LeaseToken,
    /// From the append's commit time; checked against `lease_ms_max`.
    pub lease_ms: u64,
}

/// A durable timer: at `fire_at` it becomes a task on `queue`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NewTimer {
    pub timer_id: TimerId,
    pub queue: String,
    pub fire_at: DateTime<Utc>,
    pub payload: Value,
}

/// Proof of holding a task's lease (fencing token).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct LeaseToken(pub Uuid);

/// One run's transition: events, read models, new work, and the task whose
/// lease produced it, all committed in one transaction or not at all.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AppendRequest {
    /// Makes a retried append idempotent: if the events after `expected_seq`
    /// were written by this very request, the retry returns them.
    pub append_id: Uuid,
    pub run_id: RunId,
    /// The seq of the run's last event as the caller saw it (0: new run).
    pub expected_seq: u64,
    pub events: Vec<NewEvent>,
    pub projection: ProjectionUpdate,
    pub enqueue: Vec<NewTask>,
    pub timers: Vec<NewTimer>,
    pub cancel_timers: Vec<TimerId>,
    /// Completes (removes) this leased task; fails with `LeaseLost` unless
    /// the token still holds an unexpired lease.
    pub complete: Option<(TaskId, LeaseToken)>,
}

impl AppendRequest {
    /// An append of `events` after `expected_seq`, with a fresh `append_id`.
    pub fn new(run_id: RunId, expected_seq: u64, events: Vec<NewEvent>) -> Self {
        AppendRequest {
            append_id: new_id(),
            run_id,
            expected_seq,
            events,
            projection: ProjectionUpdate::default(),
            enqueue: Vec::new(),
            timers: Vec::new(),
            cancel_timers: Vec::new(),
            complete: None,
        }
    }
}

/// What an append wrote.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Appended {
    pub run_id: RunId,
    pub events: Vec<RecordedEvent>,
}

impl Appended {
    /// The run's seq after this append (the caller's next `expected_seq`).
    pub fn last_seq(&self, expected_seq: u64) -> u64 {
        self.events.last().map_or(expected_seq, |event| event.seq)
    }
}

/// Result of [`super::EventStore::start_run`].
#[derive(Clone, Debug, PartialEq)]
pub enum StartOutcome {
    Started(Appended),
    /// The idempotency key already named this run; nothing was written.
    Existing(Box<RunRecord>),
}

/// A task a worker holds a lease on.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ClaimedTask {
    pub task_id: TaskId,
    pub run_id: RunId,
    pub queue: String,
    pub payload: Value,
    /// How many times the task has been claimed, this claim included.
    pub claims: u32,
    pub lease: Lease,
}

/// A lease on a task: valid while `expires_at` is in the future and nobody
/// claimed the task since.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Lease {
    pub owner: String,
    pub token: LeaseToken,
    pub expires_at: DateTime<Utc>,
}

/// A timer that fired: it is now a task (with `task_id == timer_id`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FiredTimer {
    pub timer_id: TimerId,
    pub run_id: RunId,
    pub queue: String,
    pub fire_at: DateTime<Utc>,
    pub payload: Value,
}

/// Filter and keyset position for listing runs, newest first.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct RunQuery {
    pub status: Option<String>,
    pub workflow: Option<String>,
    /// Continue after this cursor (from the previous page's `next`).
    pub after: Option<RunCursor>,
    pub limit: u32,
}

/// Keyset cursor: runs are ordered by (`created_at`, `run_id`) descending.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunCursor {
    pub created_at: DateTime<Utc>,
    pub run_id: RunId,
}

/// One page of a keyset-paginated listing.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Page<T, C> {
    pub items: Vec<T>,
    /// `None` on the last page.
    pub next: Option<C>,
}

/// What a projection rebuild did.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RebuildStats {
    pub runs: u64,
    pub events: u64,
}
