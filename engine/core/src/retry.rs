//! Retrying a failed run (`run.retry_requested`): its failed, skipped and
//! cancelled steps go back to pending, with their counters, so that
//! `decide` schedules them again; succeeded steps keep their outputs.
//! A timed-out run is not retried (its deadline has passed for good).

use crate::state::{ExecStatus, RunState, RunStatus, StepState, StepStatus};

impl RunState {
    /// The `run.retry_requested` transition of a failed run.
    pub(crate) fn reopen_for_retry(&mut self) {
        let mut reopened = 0;
        for step in self.steps.values_mut() {
            if !matches!(
                step.status,
                StepStatus::Failed | StepStatus::Skipped | StepStatus::Cancelled
            ) {
                continue;
            }
            for status in 0..ExecStatus::COUNT {
                self.counts.0[status] = self.counts.0[status].saturating_sub(step.counts.0[status]);
            }
            *step = StepState::default();
            reopened += 1;
        }
        self.steps_terminal = self.steps_terminal.saturating_sub(reopened);
        self.status = RunStatus::Running;
        self.failure = None;
        self.finished_at = None;
        self.output = None;
    }
}
