//! Events: the versioned facts of a run's life. They are appended to the log,
//! folded by `evolve`, and stored by the store as (type, schema version, JSON).
//!
//! Every payload carries `at`, the time the fact was decided, so that replaying
//! the log gives the same state (timings, deadlines, retry timers) whatever
//! time the store recorded.

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use crate::workflow::StepId;

/// Version of every event payload schema; bump it with a migration note when a
/// payload changes incompatibly.
pub const EVENT_SCHEMA_VERSION: u32 = 1;

/// Why an event could not be read back from its stored form.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error("unknown event type `{event_type}`; known types: {}", Event::TYPES.join(", "))]
    UnknownType { event_type: String },
    #[error(
        "event `{event_type}` has schema version {version}, this engine reads version {EVENT_SCHEMA_VERSION}"
    )]
    UnsupportedVersion { event_type: String, version: u32 },
    #[error("payload of event `{event_type}` does not match its schema: {detail}")]
    Payload { event_type: String, detail: String },
}

/// The run and step that started a child run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ParentRun {
    pub run_id: Uuid,
    /// Idempotency key of the parent's step execution (`<run-id>/<step-id>[/<index>]`).
    pub step_key: String,
}

/// What started a run other than an explicit start (API, CLI, a parent's
/// `workflow` step): recorded in `run.started` so an auditor sees why every
/// run exists.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum TriggerContext {
    /// A cron trigger's tick at `scheduled_at`.
    Cron {
        trigger: String,
        scheduled_at: DateTime<Utc>,
    },
    /// A signed webhook request, with its delivery id when it had one.
    Webhook {
        trigger: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        delivery: Option<String>,
    },
    /// A Kafka message.
    Kafka {
        trigger: String,
        topic: String,
        partition: i32,
        offset: i64,
    },
}

/// How a child run ended, as reported to its parent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ChildOutcome {
    Succeeded,
    Failed,
    Cancelled,
}

/// A run began: the first event of every run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct RunStarted {
    pub at: DateTime<Utc>,
    pub workflow: String,
    /// Version (content hash) of the workflow the run is pinned to.
    pub version: String,
    pub input: Value,
    /// Every step id of the pinned workflow, so that the state lists pending steps.
    pub steps: Vec<StepId>,
    pub idempotency_key: Option<String>,
    pub parent: Option<ParentRun>,
    /// When the whole run times out (`at` + workflow timeout).
    pub deadline: Option<DateTime<Utc>>,
    /// What started the run; absent for explicit starts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trigger: Option<TriggerContext>,
    /// The run this one was forked from (`forkRun`); absent otherwise.
    // Boxed: rare, and it keeps `Event` small (clippy's `large_enum_variant`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fork: Option<Box<ForkOrigin>>,
    /// The workflow's `vars`, rendered once at the start (`vars.NAME` in
    /// templates); absent when the workflow has none (and in logs written
    /// before `vars` existed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vars: Option<Value>,
    /// The ids of the workflow's `finally:` steps (also in `steps`): they
    /// run after every other step ended. Absent when there are none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub finally: Vec<StepId>,
}

/// Where a forked run came from, who forked it and why: the fork's first
/// event says so, so its history explains the outputs it did not compute.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ForkOrigin {
    /// The source run.
    pub run_id: Uuid,
    /// The step the fork runs again, with everything downstream of it.
    pub step: StepId,
    pub by: String,
    pub reason: String,
}

/// An attempt of a step (or of one `for_each` item) was handed out.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct StepScheduled {
    pub at: DateTime<Utc>,
    pub step: StepId,
    pub index: Option<u32>,
    /// 1 for the first attempt.
    pub attempt: u32,
    pub max_attempts: u32,
    pub idempotency_key: String,
    /// The rendered input with secret values replaced by `***`.
    pub input: Value,
    /// When this attempt times out.
    pub deadline: Option<DateTime<Utc>>,
}

/// An executor picked the attempt up.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct StepStarted {
    pub at: DateTime<Utc>,
    pub step: StepId,
    pub index: Option<u32>,
    pub attempt: u32,
}

/// The attempt succeeded with `output`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct StepSucceeded {
    pub at: DateTime<Utc>,
    pub step: StepId,
    pub index: Option<u32>,
    pub attempt: u32,
    pub output: Value,
}

/// The attempt failed (attempt 0: the step failed before it could run, e.g. a
/// template error). It is retried when `retryable` and attempts remain.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct StepFailed {
    pub at: DateTime<Utc>,
    pub step: StepId,
    pub index: Option<u32>,
    pub attempt: u32,
    pub error: String,
    pub retryable: bool,
}

/// The step will not run (its `if` was false, its trigger rule cannot be met,
/// or the run is ending).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct StepSkipped {
    pub at: DateTime<Utc>,
    pub step: StepId,
    pub reason: String,
}

/// The step's unfinished executions were cancelled.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct StepCancelled {
    pub at: DateTime<Utc>,
    pub step: StepId,
    pub reason: String,
}

/// A failed attempt will be retried as `attempt` when the timer fires at `fire_at`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct RetryScheduled {
    pub at: DateTime<Utc>,
    pub step: StepId,
    pub index: Option<u32>,
    /// The attempt that will run next.
    pub attempt: u32,
    pub timer_id: String,
    pub fire_at: DateTime<Utc>,
}

/// A durable timer (retry, step timeout, run timeout) fired.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct TimerFired {
    pub at: DateTime<Utc>,
    pub timer_id: String,
}

/// An `approval` step now waits for a human decision.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ApprovalRequested {
    pub at: DateTime<Utc>,
    pub step: StepId,
    pub index: Option<u32>,
    pub attempt: u32,
    /// The rendered `with` (role, message, ...), redacted.
    pub request: Value,
}

/// A human approved; the step succeeds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ApprovalGranted {
    pub at: DateTime<Utc>,
    pub step: StepId,
    pub index: Option<u32>,
    pub by: String,
    pub comment: Option<String>,
}

/// A human rejected; the step fails without retry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ApprovalRejected {
    pub at: DateTime<Utc>,
    pub step: StepId,
    pub index: Option<u32>,
    pub by: String,
    pub comment: Option<String>,
}

/// A `workflow` step started a child run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ChildRunStarted {
    pub at: DateTime<Utc>,
    pub step: StepId,
    pub index: Option<u32>,
    pub attempt: u32,
    pub child_run_id: Uuid,
    pub workflow: String,
    /// The child's input, redacted.
    pub input: Value,
}

/// A child run ended; its outcome decides the parent's step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ChildRunFinished {
    pub at: DateTime<Utc>,
    pub step: StepId,
    pub index: Option<u32>,
    pub child_run_id: Uuid,
    pub outcome: ChildOutcome,
    pub output: Value,
    pub error: Option<String>,
}

/// Someone asked to cancel the run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct RunCancelRequested {
    pub at: DateTime<Utc>,
    pub by: Option<String>,
    pub reason: Option<String>,
}

/// Someone asked to run a failed run's failed, skipped and cancelled steps
/// again; steps that succeeded keep their outputs. The run is running again.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct RunRetryRequested {
    pub at: DateTime<Utc>,
    pub by: Option<String>,
}

/// An operator rewound an ended run to `step`: `steps` (that step and every
/// step downstream of it) run again as a new generation, with new
/// idempotency keys; every other step keeps its outcome. The run is running
/// again, without a whole-run timeout.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct RunRewound {
    pub at: DateTime<Utc>,
    pub step: StepId,
    /// The steps reset, `step` first, then its dependents in workflow order.
    pub steps: Vec<StepId>,
    pub by: String,
    pub reason: String,
}

/// An operator paused the run: no new attempt starts until `run.resumed`;
/// attempts already running finish and are recorded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct RunPaused {
    pub at: DateTime<Utc>,
    pub by: String,
    pub reason: String,
}

/// An operator resumed a paused run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct RunResumed {
    pub at: DateTime<Utc>,
    pub by: String,
    pub reason: String,
}

/// An operator skipped a failed or waiting step (`skipStep`): it counts as
/// succeeded with `output`; its unfinished executions are dropped, and the
/// steps in `reset` (dependents that were skipped, failed or cancelled
/// because of it) become pending again. An ended run is running again.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct StepBypassed {
    pub at: DateTime<Utc>,
    pub step: StepId,
    pub output: Value,
    pub reset: Vec<StepId>,
    pub by: String,
    pub reason: String,
}

/// A forked run took over the output a step recorded in the source run
/// (`run.started` names the source): the step counts as succeeded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct StepAdopted {
    pub at: DateTime<Utc>,
    pub step: StepId,
    pub output: Value,
    pub from_run: Uuid,
}

/// How the main part of a run (every step not under `finally:`) ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum MainOutcome {
    Succeeded,
    Failed,
    Cancelled,
    /// The whole-run timeout fired; the run ends `failed`.
    TimedOut,
}

impl MainOutcome {
    /// The status the run ends with, and `run.status` for `finally:` steps.
    pub fn run_status(self) -> crate::state::RunStatus {
        use crate::state::RunStatus;
        match self {
            MainOutcome::Succeeded => RunStatus::Succeeded,
            MainOutcome::Failed | MainOutcome::TimedOut => RunStatus::Failed,
            MainOutcome::Cancelled => RunStatus::Cancelled,
        }
    }
}

/// Every step not under `finally:` has ended: the run's outcome is fixed
/// (`finally:` steps cannot change it) and the `finally:` steps start.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct RunFinalizing {
    pub at: DateTime<Utc>,
    pub outcome: MainOutcome,
    /// Why the main part failed or was cancelled; absent when it succeeded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The rendered (redacted) run `output` when it succeeded (else null):
    /// rendered now, from the main part's steps, and recorded again by
    /// `run.succeeded`.
    #[serde(default, skip_serializing_if = "Value::is_null")]
    pub output: Value,
}

/// Every step finished and none failed uncovered; `output` is the rendered `output`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct RunSucceeded {
    pub at: DateTime<Utc>,
    pub output: Value,
}

/// The run failed: a step failed for good without `continue_on_error`, or the
/// output could not be rendered.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct RunFailed {
    pub at: DateTime<Utc>,
    pub reason: String,
}

/// The run was cancelled on request; every step is skipped or cancelled.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct RunCancelled {
    pub at: DateTime<Utc>,
    pub reason: String,
}

/// The whole-run timeout fired; the run ends `failed`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct RunTimedOut {
    pub at: DateTime<Utc>,
}

/// A `for_each` step rendered its item list; one execution per item follows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ForEachExpanded {
    pub at: DateTime<Utc>,
    pub step: StepId,
    pub count: u32,
    /// The rendered items (redacted), kept so that replay sees the same items.
    /// Of a `matrix`, each item is one combination (a mapping).
    pub items: Vec<Value>,
    /// The step's `fail_fast` (absent: not set): what an item that failed
    /// for good does to the others.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fail_fast: Option<bool>,
}

/// `fail_fast: true`: an item failed for good, so the fan-out's unfinished
/// items are cancelled (running ones stopped, pending ones never start);
/// the step fails.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ForEachStopped {
    pub at: DateTime<Utc>,
    pub step: StepId,
    pub reason: String,
}

macro_rules! events {
    ($($variant:ident => $name:literal),* $(,)?) => {
        /// Every fact of a run's life. The variant names the payload type.
        #[derive(Debug, Clone, PartialEq)]
        pub enum Event {
            $($variant($variant),)*
        }

        impl Event {
            /// Every event type name, in declaration order.
            pub const TYPES: &'static [&'static str] = &[$($name),*];

            /// The stored type name, e.g. `step.succeeded`.
            pub fn event_type(&self) -> &'static str {
                match self {
                    $(Event::$variant(_) => $name,)*
                }
            }

            /// When the fact was decided.
            pub fn at(&self) -> DateTime<Utc> {
                match self {
                    $(Event::$variant(event) => event.at,)*
                }
            }

            /// The stored form: type name, schema version, JSON payload.
            pub fn to_payload(&self) -> (&'static str, u32, Value) {
                let payload = match self {
                    // Cannot fail: every payload field serializes to JSON with string keys.
                    $(Event::$variant(event) => serde_json::to_value(event).unwrap_or(Value::Null),)*
                };
                (self.event_type(), EVENT_SCHEMA_VERSION, payload)
            }

            /// Reads an event back from its stored form.
            pub fn from_payload(event_type: &str, version: u32, payload: &Value) -> Result<Event, Error> {
                if version != EVENT_SCHEMA_VERSION {
                    return Err(Error::UnsupportedVersion { event_type: event_type.to_owned(), version });
                }
                let detail = |err: serde_json::Error| Error::Payload {
                    event_type: event_type.to_owned(),
                    detail: err.to_string(),
                };
                match event_type {
                    $($name => $variant::deserialize(payload).map(Event::$variant).map_err(detail),)*
                    other => Err(Error::UnknownType { event_type: other.to_owned() }),
                }
            }

            /// The JSON Schema of each event type's payload, generated from the Rust types.
            pub fn schemas() -> Vec<(&'static str, schemars::Schema)> {
                vec![$(($name, schemars::schema_for!($variant)),)*]
            }
        }

        $(impl From<$variant> for Event {
            fn from(event: $variant) -> Event {
                Event::$variant(event)
            }
        })*
    };
}

events! {
    RunStarted => "run.started",
    StepScheduled => "step.scheduled",
    StepStarted => "step.started",
    StepSucceeded => "step.succeeded",
    StepFailed => "step.failed",
    StepSkipped => "step.skipped",
    StepCancelled => "step.cancelled",
    RetryScheduled => "step.retry_scheduled",
    TimerFired => "timer.fired",
    ApprovalRequested => "approval.requested",
    ApprovalGranted => "approval.granted",
    ApprovalRejected => "approval.rejected",
    ChildRunStarted => "child_run.started",
    ChildRunFinished => "child_run.finished",
    ForEachExpanded => "for_each.expanded",
    ForEachStopped => "for_each.stopped",
    RunCancelRequested => "run.cancel_requested",
    RunRetryRequested => "run.retry_requested",
    RunRewound => "run.rewound",
    RunPaused => "run.paused",
    RunResumed => "run.resumed",
    StepBypassed => "step.bypassed",
    StepAdopted => "step.adopted",
    RunFinalizing => "run.finalizing",
    RunSucceeded => "run.succeeded",
    RunFailed => "run.failed",
    RunCancelled => "run.cancelled",
    RunTimedOut => "run.timed_out",
}

/// An event in its run's stream: `seq` is gap-free from 1 within `run_id`.
#[derive(Debug, Clone, PartialEq)]
pub struct EventEnvelope {
    pub run_id: Uuid,
    pub seq: u64,
    pub event: Event,
}

/// The JSON form of an envelope (exports, hashing, debugging).
#[derive(Serialize, Deserialize)]
struct StoredEnvelope {
    run_id: Uuid,
    seq: u64,
    #[serde(rename = "type")]
    event_type: String,
    version: u32,
    payload: Value,
}

impl EventEnvelope {
    pub fn new(run_id: Uuid, seq: u64, event: impl Into<Event>) -> EventEnvelope {
        EventEnvelope {
            run_id,
            seq,
            event: event.into(),
        }
    }

    pub fn event_type(&self) -> &'static str {
        self.event.event_type()
    }

    pub fn schema_version(&self) -> u32 {
        EVENT_SCHEMA_VERSION
    }

    /// The event serialized to JSON, as the store keeps it.
    pub fn payload(&self) -> Value {
        self.event.to_payload().2
    }

    /// Rebuilds an envelope from the columns the store keeps.
    pub fn from_stored(
        run_id: Uuid,
        seq: u64,
        event_type: &str,
        version: u32,
        payload: &Value,
    ) -> Result<EventEnvelope, Error> {
        let event = Event::from_payload(event_type, version, payload)?;
        Ok(EventEnvelope { run_id, seq, event })
    }

    /// `{"run_id", "seq", "type", "version", "payload"}`.
    pub fn to_json(&self) -> Value {
        let (event_type, version, payload) = self.event.to_payload();
        let stored = StoredEnvelope {
            run_id: self.run_id,
            seq: self.seq,
            event_type: event_type.to_owned(),
            version,
            payload,
        };
        serde_json::to_value(stored).unwrap_or(Value::Null)
    }

    /// Reads the form written by [`EventEnvelope::to_json`].
    pub fn from_json(value: &Value) -> Result<EventEnvelope, Error> {
        let stored = StoredEnvelope::deserialize(value).map_err(|err| Error::Payload {
            event_type: "envelope".to_owned(),
            detail: err.to_string(),
        })?;
        EventEnvelope::from_stored(
            stored.run_id,
            stored.seq,
            &stored.event_type,
            stored.version,
            &stored.payload,
        )
    }
}
