//! The state side of surgery and of `run.retry_requested`: putting steps
//! back to pending. A reset step keeps its generation count and the highest
//! attempt number it used, so attempt numbers never repeat (a late result
//! of an earlier attempt stays rejected) and, for a new generation, the
//! idempotency keys change (see `keys::execution_key`).

use crate::event::{RunRewound, StepBypassed};
use crate::evolve::derive_run_status;
use crate::execution;
use crate::state::{ExecStatus, RunState, RunStatus, StepState, StepStatus};
use crate::workflow::StepId;

impl RunState {
    /// The `run.retry_requested` transition of a failed run: its failed,
    /// skipped and cancelled steps run again in the same generation (same
    /// idempotency keys); succeeded steps keep their outputs. A timed-out
    /// run is not retried (its deadline has passed for good).
    pub(crate) fn reopen_for_retry(&mut self) {
        let reopened: Vec<StepId> = self
            .steps
            .iter()
            .filter(|(id, step)| {
                matches!(
                    step.status,
                    StepStatus::Failed | StepStatus::Skipped | StepStatus::Cancelled
                ) && !self.finally.contains(*id)
            })
            .map(|(id, _)| id.clone())
            .collect();
        for id in &reopened {
            self.reset_step(id, false);
        }
        self.reopen();
    }

    /// Whether `steps` is a non-empty list of this run's steps.
    pub(crate) fn can_reset(&self, steps: &[StepId]) -> bool {
        !steps.is_empty() && steps.iter().all(|id| self.steps.contains_key(id))
    }

    /// `run.rewound` on an ended run: the listed steps run again as a new generation.
    pub(crate) fn rewind(&mut self, rewound: &RunRewound) {
        for id in &rewound.steps {
            self.reset_step(id, true);
        }
        self.reopen();
    }

    /// `step.bypassed`: the step counts as succeeded with the operator's
    /// output, its unfinished executions are dropped, the listed dependents
    /// become pending again, and an ended run runs again.
    pub(crate) fn bypass(&mut self, bypassed: &StepBypassed) -> Result<(), String> {
        let Some(step) = self.steps.get(&bypassed.step) else {
            return Err(format!("the workflow has no step `{}`", bypassed.step));
        };
        if !matches!(step.status, StepStatus::Failed | StepStatus::Waiting) {
            return Err(format!(
                "step `{}` is {}, not failed or waiting",
                bypassed.step,
                step.status.as_str()
            ));
        }
        if self.main_outcome_fixed() && !self.finally.contains(&bypassed.step) {
            return Err("the main part ended and its `finally:` steps are running".to_owned());
        }
        if !self.can_reset(&bypassed.reset) && !bypassed.reset.is_empty() {
            return Err("`reset` names a step the run does not have".to_owned());
        }
        let was_terminal = step.status.is_terminal();
        self.cancel_executions(&bypassed.step, bypassed.at);
        let step = self.step_entry(&bypassed.step);
        step.status = StepStatus::Succeeded;
        step.output = Some(bypassed.output.clone());
        step.reason = None;
        step.bypassed = Some(super::attribution(&bypassed.by, &bypassed.reason));
        step.finished_at = Some(bypassed.at);
        if !was_terminal {
            self.steps_terminal += 1;
        }
        for id in &bypassed.reset {
            self.reset_step(id, true);
        }
        if self.status.is_terminal() {
            self.reopen();
        } else {
            self.status = derive_run_status(self.status, &self.counts);
        }
        Ok(())
    }

    /// Puts one step back to pending, with its counters and timers. With
    /// `new_generation`, a step that had run gets the next generation.
    fn reset_step(&mut self, step_id: &str, new_generation: bool) {
        let Some(step) = self.steps.get_mut(step_id) else {
            return;
        };
        for status in 0..ExecStatus::COUNT {
            self.counts.0[status] = self.counts.0[status].saturating_sub(step.counts.0[status]);
        }
        if step.status.is_terminal() {
            self.steps_terminal = self.steps_terminal.saturating_sub(1);
        }
        for (position, exec) in step.executions.iter().enumerate() {
            let index = step.items.as_ref().map(|_| position as u32);
            execution::drop_timers(exec, step_id, index, &mut self.timers);
        }
        let ran = !step.executions.is_empty();
        let attempt_base = step
            .executions
            .iter()
            .map(|exec| exec.attempt)
            .max()
            .unwrap_or(0)
            .max(step.attempt_base);
        *step = StepState {
            generation: step.generation + u32::from(new_generation && ran),
            attempt_base,
            ..StepState::default()
        };
    }

    fn step_entry(&mut self, step_id: &str) -> &mut StepState {
        self.steps.entry(step_id.to_owned()).or_default()
    }

    /// An ended run runs again: no failure, output, end, pending cancel or
    /// timeout, and no whole-run deadline (it belonged to the first run-through).
    /// Its `finally:` steps run again, as a new generation, once the main
    /// part has ended again.
    fn reopen(&mut self) {
        self.finalizing = None;
        self.finally_stopped = None;
        let finally: Vec<StepId> = self.finally.iter().cloned().collect();
        for id in &finally {
            self.reset_step(id, true);
        }
        self.status = RunStatus::Running;
        self.failure = None;
        self.finished_at = None;
        self.output = None;
        self.cancel_requested = None;
        self.timed_out = false;
        self.deadline = None;
        self.paused = None;
        self.timers.remove(crate::keys::RUN_TIMEOUT_TIMER_ID);
        self.status = derive_run_status(self.status, &self.counts);
    }
}
