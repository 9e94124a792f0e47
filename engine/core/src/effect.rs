//! The core's vocabulary towards the runtime: a [`Decision`] is the events
//! the core records and the [`Effect`]s the runtime carries out once those
//! events are appended. Effects are data (never stored); `decide` and the
//! schedule helpers produce them, the runtime consumes them.

use chrono::{DateTime, Utc};
use serde_json::Value;
use uuid::Uuid;

use crate::event::{Event, ParentRun};
use crate::state::RunStatus;
use crate::workflow::StepKind;

/// Work for the runtime. Effects are never stored; the events that pair with
/// them are, so recovery can rebuild them with [`crate::run::outstanding`].
/// `Debug` leaves out the executor's copies of inputs, which hold secrets.
#[derive(Clone, PartialEq)]
pub enum Effect {
    /// Hand one attempt to the executor of `kind`. `input` is the executor's
    /// copy, with secrets resolved: never log or store it.
    ScheduleStep {
        key: String,
        step: String,
        kind: StepKind,
        index: Option<u32>,
        attempt: u32,
        input: Value,
        deadline: Option<DateTime<Utc>>,
    },
    /// Stop an attempt that is no longer wanted (timed out, run cancelled);
    /// for an approval, withdraw the request.
    CancelStep {
        key: String,
        step: String,
        index: Option<u32>,
        attempt: u32,
    },
    /// Set a durable timer; when it fires, append `timer.fired` with this id.
    StartTimer {
        id: String,
        fire_at: DateTime<Utc>,
    },
    /// Start (or find, the id is deterministic) a child run.
    StartChildRun {
        child_run_id: Uuid,
        workflow: String,
        input: Value,
        parent: ParentRun,
    },
    CancelChildRun {
        child_run_id: Uuid,
    },
    /// Ask a human; the answer comes back as `approval.granted|rejected`.
    RequestApproval {
        key: String,
        step: String,
        index: Option<u32>,
        request: Value,
    },
    /// The run ended: wake waiters and tell the parent run, if any.
    CompleteRun {
        status: RunStatus,
        output: Option<Value>,
        reason: Option<String>,
        parent: Option<ParentRun>,
    },
}

impl std::fmt::Debug for Effect {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        const HIDDEN: &str = "<executor copy, not shown>";
        match self {
            Effect::ScheduleStep {
                key,
                kind,
                attempt,
                deadline,
                ..
            } => f
                .debug_struct("ScheduleStep")
                .field("key", key)
                .field("kind", kind)
                .field("attempt", attempt)
                .field("input", &HIDDEN)
                .field("deadline", deadline)
                .finish(),
            Effect::CancelStep { key, attempt, .. } => f
                .debug_struct("CancelStep")
                .field("key", key)
                .field("attempt", attempt)
                .finish(),
            Effect::StartTimer { id, fire_at } => f
                .debug_struct("StartTimer")
                .field("id", id)
                .field("fire_at", fire_at)
                .finish(),
            Effect::StartChildRun {
                child_run_id,
                workflow,
                parent,
                ..
            } => f
                .debug_struct("StartChildRun")
                .field("child_run_id", child_run_id)
                .field("workflow", workflow)
                .field("input", &HIDDEN)
                .field("parent", &parent.step_key)
                .finish(),
            Effect::CancelChildRun { child_run_id } => f
                .debug_struct("CancelChildRun")
                .field("child_run_id", child_run_id)
                .finish(),
            Effect::RequestApproval { key, .. } => f
                .debug_struct("RequestApproval")
                .field("key", key)
                .field("request", &HIDDEN)
                .finish(),
            Effect::CompleteRun {
                status,
                output,
                reason,
                parent,
            } => f
                .debug_struct("CompleteRun")
                .field("status", status)
                .field("output", output)
                .field("reason", reason)
                .field("parent", parent)
                .finish(),
        }
    }
}

/// Events to append (in order), then effects to carry out.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Decision {
    pub events: Vec<Event>,
    pub effects: Vec<Effect>,
}

impl Decision {
    pub fn is_empty(&self) -> bool {
        self.events.is_empty() && self.effects.is_empty()
    }
}
