//! The state of one run, as folded from its events by `evolve`: the run's
//! status, each step's status and executions (one per attempt sequence, one per
//! `for_each` item), pending timers, approvals and child runs.
//!
//! Counters of executions per status are kept up to date on every transition
//! so that deriving a step's or the run's status is O(1) and replay stays linear.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use crate::event::ParentRun;
use crate::workflow::StepId;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    #[default]
    Pending,
    Running,
    Waiting,
    /// An operator paused it: no new attempt starts until it is resumed.
    Paused,
    Succeeded,
    Failed,
    Cancelled,
}

impl RunStatus {
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            RunStatus::Succeeded | RunStatus::Failed | RunStatus::Cancelled
        )
    }

    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Pending => "pending",
            RunStatus::Running => "running",
            RunStatus::Waiting => "waiting",
            RunStatus::Paused => "paused",
            RunStatus::Succeeded => "succeeded",
            RunStatus::Failed => "failed",
            RunStatus::Cancelled => "cancelled",
        }
    }

    /// Running, waiting or paused: the run has not ended and events about
    /// its steps are still recorded.
    pub fn is_active(self) -> bool {
        matches!(
            self,
            RunStatus::Running | RunStatus::Waiting | RunStatus::Paused
        )
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepStatus {
    #[default]
    Pending,
    Running,
    Waiting,
    Succeeded,
    Failed,
    Skipped,
    Cancelled,
}

impl StepStatus {
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            StepStatus::Succeeded
                | StepStatus::Failed
                | StepStatus::Skipped
                | StepStatus::Cancelled
        )
    }

    pub fn as_str(self) -> &'static str {
        match self {
            StepStatus::Pending => "pending",
            StepStatus::Running => "running",
            StepStatus::Waiting => "waiting",
            StepStatus::Succeeded => "succeeded",
            StepStatus::Failed => "failed",
            StepStatus::Skipped => "skipped",
            StepStatus::Cancelled => "cancelled",
        }
    }
}

/// The lifecycle of one execution (a plain step, or one `for_each` item)
/// across its attempts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExecStatus {
    /// Next attempt (`attempt + 1`) not handed out yet.
    #[default]
    Pending,
    /// Handed to an executor, not picked up yet.
    Scheduled,
    /// An executor (or a child run) is working on it.
    Running,
    /// Waiting for a human decision.
    Waiting,
    /// The attempt failed and may be retried; the retry timer is not set yet.
    RetryPending,
    /// The retry timer is set.
    RetryWaiting,
    Succeeded,
    Failed,
    Cancelled,
    /// Never ran: another item of the same `for_each` failed for good.
    Skipped,
}

impl ExecStatus {
    pub const COUNT: usize = 10;

    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            ExecStatus::Succeeded
                | ExecStatus::Failed
                | ExecStatus::Cancelled
                | ExecStatus::Skipped
        )
    }

    /// An executor, a human or a child run may still be working on it.
    pub fn is_in_flight(self) -> bool {
        matches!(
            self,
            ExecStatus::Scheduled | ExecStatus::Running | ExecStatus::Waiting
        )
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ExecStatus::Pending => "pending",
            ExecStatus::Scheduled => "scheduled",
            ExecStatus::Running => "running",
            ExecStatus::Waiting => "waiting",
            ExecStatus::RetryPending => "retry_pending",
            ExecStatus::RetryWaiting => "retry_waiting",
            ExecStatus::Succeeded => "succeeded",
            ExecStatus::Failed => "failed",
            ExecStatus::Cancelled => "cancelled",
            ExecStatus::Skipped => "skipped",
        }
    }
}

/// How many executions are in each [`ExecStatus`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecCounts(pub [u32; ExecStatus::COUNT]);

impl ExecCounts {
    pub fn get(&self, status: ExecStatus) -> u32 {
        self.0[status as usize]
    }

    pub fn open(&self) -> u32 {
        self.total() - self.terminal()
    }

    pub fn in_flight(&self) -> u32 {
        self.get(ExecStatus::Scheduled)
            + self.get(ExecStatus::Running)
            + self.get(ExecStatus::Waiting)
    }

    fn terminal(&self) -> u32 {
        self.get(ExecStatus::Succeeded)
            + self.get(ExecStatus::Failed)
            + self.get(ExecStatus::Cancelled)
            + self.get(ExecStatus::Skipped)
    }

    fn total(&self) -> u32 {
        self.0.iter().sum()
    }

    pub(crate) fn add(&mut self, status: ExecStatus) {
        self.0[status as usize] += 1;
    }

    pub(crate) fn moved(&mut self, from: ExecStatus, to: ExecStatus) {
        self.0[from as usize] = self.0[from as usize].saturating_sub(1);
        self.0[to as usize] += 1;
    }
}

/// A human decision on an approval.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApprovalDecision {
    pub granted: bool,
    pub by: String,
    pub comment: Option<String>,
    pub at: DateTime<Utc>,
}

/// One execution: a plain step, or one item of a `for_each` step.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Execution {
    pub status: ExecStatus,
    /// The current (or last) attempt; `attempt_base` before the first one is
    /// scheduled. Attempt numbers never repeat within a step: a reset
    /// (rewind, skip, retry of the run) continues after the last one, so a
    /// late result of an earlier attempt is always told apart.
    pub attempt: u32,
    /// Attempts made by earlier resets of the step: `attempt - attempt_base`
    /// is the attempt within this generation (`run.attempt`, the retry policy).
    #[serde(default)]
    pub attempt_base: u32,
    pub max_attempts: u32,
    pub idempotency_key: Option<String>,
    /// The current attempt's input, redacted.
    pub input: Value,
    pub output: Option<Value>,
    pub error: Option<String>,
    pub scheduled_at: Option<DateTime<Utc>>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    pub deadline: Option<DateTime<Utc>>,
    pub retry_at: Option<DateTime<Utc>>,
    /// The attempt's timeout timer fired; `decide` fails the attempt.
    pub timed_out: bool,
    pub approval_request: Option<Value>,
    pub approval: Option<ApprovalDecision>,
    pub child_run_id: Option<Uuid>,
}

/// One step of the run.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StepState {
    pub status: StepStatus,
    /// Why it was skipped, failed or cancelled.
    pub reason: Option<String>,
    /// Plain step: empty until scheduled, then one. `for_each`: one per item.
    pub executions: Vec<Execution>,
    /// `Some` once a `for_each` step expanded: the rendered items.
    pub items: Option<Vec<Value>>,
    /// The fan-out's `fail_fast`, as `for_each.expanded` recorded it.
    #[serde(default)]
    pub fail_fast: Option<bool>,
    pub counts: ExecCounts,
    /// Plain step: the execution's output; `for_each`: item outputs in item order.
    pub output: Option<Value>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    /// How many times surgery reset this step after it had run (rewind,
    /// skip); part of its idempotency keys (see `keys::execution_key`).
    #[serde(default)]
    pub generation: u32,
    /// The highest attempt number used before the last reset.
    #[serde(default)]
    pub attempt_base: u32,
    /// `Some("by …: reason")` when an operator skipped the step (`step.bypassed`).
    #[serde(default)]
    pub bypassed: Option<String>,
    /// The source run whose output a fork took over (`step.adopted`).
    #[serde(default)]
    pub adopted_from: Option<Uuid>,
    /// Skipped or cancelled because the run was ending (cancel, run
    /// timeout), not by its own rule: a rewind runs it again.
    #[serde(default)]
    pub wound_down: bool,
}

impl StepState {
    /// Attempts made over all executions in this generation.
    pub fn attempts(&self) -> u32 {
        self.executions
            .iter()
            .map(|exec| exec.attempt.saturating_sub(exec.attempt_base))
            .sum()
    }

    /// A fresh execution of this generation, before its first attempt.
    pub fn new_execution(&self) -> Execution {
        Execution {
            attempt: self.attempt_base,
            attempt_base: self.attempt_base,
            ..Execution::default()
        }
    }

    pub fn execution(&self, index: Option<u32>) -> Option<&Execution> {
        self.executions.get(index.unwrap_or(0) as usize)
    }
}

/// What a pending timer does when it fires.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum TimerKind {
    RunTimeout,
    StepTimeout {
        step: StepId,
        index: Option<u32>,
        attempt: u32,
    },
    Retry {
        step: StepId,
        index: Option<u32>,
        attempt: u32,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Timer {
    pub fire_at: DateTime<Utc>,
    pub kind: TimerKind,
}

/// The folded state of one run.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RunState {
    /// `None` until `run.started`.
    pub run_id: Option<Uuid>,
    /// The seq of the last applied event; 0 for an empty log.
    pub seq: u64,
    pub status: RunStatus,
    pub workflow: String,
    pub version: String,
    pub input: Value,
    pub idempotency_key: Option<String>,
    pub parent: Option<ParentRun>,
    /// What started the run (cron, webhook, Kafka); `None` for explicit starts.
    pub trigger: Option<crate::event::TriggerContext>,
    /// The run this one was forked from.
    pub fork: Option<crate::event::ForkOrigin>,
    /// The rendered `vars` recorded in `run.started`.
    pub vars: Option<Value>,
    /// `Some("by …: reason")` while an operator has the run paused.
    pub paused: Option<String>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    pub deadline: Option<DateTime<Utc>>,
    /// Every step of the pinned workflow, by id.
    pub steps: BTreeMap<StepId, StepState>,
    /// Timers set and not fired yet (nor made stale), by id.
    pub timers: BTreeMap<String, Timer>,
    /// `Some(reason)` once cancellation was requested.
    pub cancel_requested: Option<String>,
    /// The run timeout fired.
    pub timed_out: bool,
    pub output: Option<Value>,
    pub failure: Option<String>,
    /// Executions per status over all steps.
    pub counts: ExecCounts,
    /// How many steps are terminal, to know in O(1) when every step finished.
    pub steps_terminal: u32,
    /// The `finally:` steps (from `run.started`): they start once every
    /// other step has ended.
    #[serde(default)]
    pub finally: BTreeSet<StepId>,
    /// `Some` once `run.finalizing` fixed the run's outcome and the
    /// `finally:` steps may run.
    #[serde(default)]
    pub finalizing: Option<Finalizing>,
    /// Why the `finally:` steps were stopped (a cancel or the run timeout
    /// while they ran): pending ones are skipped, running ones cancelled.
    #[serde(default)]
    pub finally_stopped: Option<String>,
}

/// The main part's ending, as `run.finalizing` recorded it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Finalizing {
    pub outcome: crate::event::MainOutcome,
    pub reason: Option<String>,
    /// The rendered output when it succeeded, else null.
    pub output: Value,
}

impl RunState {
    /// The state before any event.
    pub fn new() -> RunState {
        RunState::default()
    }

    pub fn step(&self, id: &str) -> Option<&StepState> {
        self.steps.get(id)
    }

    /// The status of a step, `pending` for a step without events yet.
    pub fn step_status(&self, id: &str) -> StepStatus {
        self.steps
            .get(id)
            .map_or(StepStatus::Pending, |step| step.status)
    }

    /// True once the run reached succeeded, failed or cancelled.
    pub fn is_finished(&self) -> bool {
        self.status.is_terminal()
    }

    /// Every step not under `finally:` has ended.
    pub fn main_part_done(&self) -> bool {
        let finally_terminal = self
            .finally
            .iter()
            .filter(|id| self.step_status(id).is_terminal())
            .count();
        (self.steps_terminal as usize).saturating_sub(finally_terminal)
            == self.steps.len().saturating_sub(self.finally.len())
    }

    /// `run.finalizing` fixed the outcome and the run has not ended: its
    /// `finally:` steps are running, its main part can no longer change.
    pub fn main_outcome_fixed(&self) -> bool {
        self.finalizing.is_some() && !self.status.is_terminal()
    }

    /// The `finally:` steps that failed (or were cancelled): the run keeps
    /// the status its main part reached, and the run document lists them.
    pub fn finally_failed(&self) -> Vec<&str> {
        self.finally
            .iter()
            .filter(|id| {
                matches!(
                    self.step_status(id),
                    StepStatus::Failed | StepStatus::Cancelled
                )
            })
            .map(String::as_str)
            .collect()
    }

    /// The run document of the CLI (`--json`) and the API: id, workflow,
    /// version, status, input, output, error, and per step status, attempts,
    /// output and error.
    pub fn document(&self) -> Value {
        let steps: serde_json::Map<String, Value> = self
            .steps
            .iter()
            .map(|(id, step)| {
                let mut document = serde_json::json!({
                    "status": step.status.as_str(),
                    "attempts": step.attempts(),
                    "output": step.output,
                    "error": step.reason,
                });
                if step.generation > 0 {
                    document["generation"] = step.generation.into();
                }
                if let Some(bypassed) = &step.bypassed {
                    document["skipped_by"] = Value::String(bypassed.clone());
                }
                if let Some(source) = step.adopted_from {
                    document["adopted_from"] = Value::String(source.to_string());
                }
                (id.clone(), document)
            })
            .collect();
        let mut document = serde_json::json!({
            "id": self.run_id,
            "workflow": self.workflow,
            "version": self.version,
            "status": self.status.as_str(),
            "input": self.input,
            "output": self.output,
            "error": self.failure,
            "steps": steps,
        });
        if let Some(trigger) = &self.trigger {
            document["trigger"] = serde_json::to_value(trigger).unwrap_or(Value::Null);
        }
        if let Some(fork) = &self.fork {
            document["forked_from"] = serde_json::to_value(fork).unwrap_or(Value::Null);
        }
        if let Some(paused) = &self.paused {
            document["paused"] = Value::String(paused.clone());
        }
        let finally_failed = self.finally_failed();
        if !finally_failed.is_empty() {
            document["finally_failed"] = serde_json::json!(finally_failed);
        }
        document
    }
}
