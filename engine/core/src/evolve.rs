//! `evolve(state, &event) -> state`: folds one event into a run's state. The
//! same function serves the runtime, recovery and the auditor's replay.
//!
//! Each lifecycle is one `match (state, event)`: the run's here in
//! [`RunState::run_transition`], the step's in [`RunState::step_transition`],
//! an execution's in [`crate::execution`]. An unlisted pair is a typed
//! [`Error::InvalidTransition`]; the state is left untouched on any error
//! (every arm checks before it changes anything), so a runtime can use
//! [`RunState::apply`] to reject duplicate and late results.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::event::{Event, EventEnvelope, MainOutcome};
use crate::execution::{self, Input};
use crate::state::{ExecCounts, ExecStatus, RunState, RunStatus, StepState, StepStatus, TimerKind};

/// Why an event cannot be applied to a state.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error("run {run_id}: event seq {seq} ({event}) is not allowed: {from}")]
    InvalidTransition {
        run_id: Uuid,
        seq: u64,
        /// The state the event met, in words.
        from: String,
        event: &'static str,
    },
    #[error(
        "run {run_id}: expected event seq {expected}, got {got} (the log has a gap or a duplicate)"
    )]
    SeqGap {
        run_id: Uuid,
        expected: u64,
        got: u64,
    },
    #[error("event of run {got} applied to the state of run {expected}")]
    WrongRun { expected: Uuid, got: Uuid },
}

/// Folds one event into the state.
pub fn evolve(mut state: RunState, envelope: &EventEnvelope) -> Result<RunState, Error> {
    state.apply(envelope)?;
    Ok(state)
}

/// Folds a whole log, from the empty state.
pub fn replay<'a>(events: impl IntoIterator<Item = &'a EventEnvelope>) -> Result<RunState, Error> {
    let mut state = RunState::new();
    for envelope in events {
        state.apply(envelope)?;
    }
    Ok(state)
}

impl RunState {
    /// Applies one event in place; on error the state is unchanged.
    pub fn apply(&mut self, envelope: &EventEnvelope) -> Result<(), Error> {
        let expected = self.seq + 1;
        if envelope.seq != expected {
            return Err(Error::SeqGap {
                run_id: envelope.run_id,
                expected,
                got: envelope.seq,
            });
        }
        if let Some(run_id) = self.run_id
            && run_id != envelope.run_id
        {
            return Err(Error::WrongRun {
                expected: run_id,
                got: envelope.run_id,
            });
        }
        let event = &envelope.event;
        let result = match event {
            Event::RunStarted(_)
            | Event::RunCancelRequested(_)
            | Event::RunRetryRequested(_)
            | Event::RunFinalizing(_)
            | Event::RunSucceeded(_)
            | Event::RunFailed(_)
            | Event::RunCancelled(_)
            | Event::RunTimedOut(_)
            | Event::RunRewound(_)
            | Event::RunPaused(_)
            | Event::RunResumed(_)
            | Event::StepBypassed(_) => self.run_transition(envelope.run_id, event),
            Event::TimerFired(fired) => self.timer_fired(&fired.timer_id, event),
            _ => self.step_event(event),
        };
        result.map_err(|from| Error::InvalidTransition {
            run_id: envelope.run_id,
            seq: envelope.seq,
            from,
            event: event.event_type(),
        })?;
        self.seq = envelope.seq;
        Ok(())
    }

    fn all_steps_terminal(&self) -> bool {
        self.steps_terminal as usize == self.steps.len()
    }

    /// The run's lifecycle.
    fn run_transition(&mut self, run_id: Uuid, event: &Event) -> Result<(), String> {
        use RunStatus::{Cancelled, Failed, Paused, Pending, Running, Succeeded, Waiting};
        let done = self.all_steps_terminal();
        let ending = self.cancel_requested.is_some() || self.timed_out;
        match (self.status, event) {
            (Pending, Event::RunStarted(started)) => {
                self.run_id = Some(run_id);
                self.status = Running;
                self.workflow = started.workflow.clone();
                self.version = started.version.clone();
                self.input = started.input.clone();
                self.idempotency_key = started.idempotency_key.clone();
                self.parent = started.parent.clone();
                self.trigger = started.trigger.clone();
                self.fork = started.fork.as_deref().cloned();
                self.vars = started.vars.clone();
                self.finally = started.finally.iter().cloned().collect();
                self.started_at = Some(started.at);
                self.deadline = started.deadline;
                self.steps = started
                    .steps
                    .iter()
                    .map(|id| (id.clone(), StepState::default()))
                    .collect();
                if let Some(deadline) = started.deadline {
                    self.timers.insert(
                        crate::keys::RUN_TIMEOUT_TIMER_ID.to_owned(),
                        crate::state::Timer {
                            fire_at: deadline,
                            kind: TimerKind::RunTimeout,
                        },
                    );
                }
            }
            // While `finally:` steps run, a cancel stops them; the run
            // keeps the outcome its main part reached.
            (Running | Waiting | Paused, Event::RunCancelRequested(request))
                if self.finalizing.is_some() && self.finally_stopped.is_none() =>
            {
                self.finally_stopped = Some(cancel_reason(request));
            }
            (Running | Waiting | Paused, Event::RunCancelRequested(request))
                if !ending && self.finalizing.is_none() =>
            {
                self.cancel_requested = Some(cancel_reason(request));
            }
            (Running | Waiting | Paused, Event::RunFinalizing(finalizing))
                if self.finalizing.is_none()
                    && !self.finally.is_empty()
                    && self.main_part_done()
                    && self.outcome_fits(finalizing.outcome) =>
            {
                self.finalizing = Some(crate::state::Finalizing {
                    outcome: finalizing.outcome,
                    reason: finalizing.reason.clone(),
                    output: finalizing.output.clone(),
                });
            }
            (Failed, Event::RunRetryRequested(_)) if !self.timed_out => {
                self.reopen_for_retry();
            }
            // Paused: only when a cancel or the run timeout stopped the `finally:` steps.
            (Running | Waiting | Paused, Event::RunSucceeded(succeeded))
                if done
                    && !ending
                    && self.finale_allows(MainOutcome::Succeeded)
                    && (self.status != Paused || self.finally_stopped.is_some()) =>
            {
                self.output = Some(succeeded.output.clone());
                self.finish(Succeeded, succeeded.at);
            }
            // Paused: only when a cancel or the run timeout stopped the `finally:` steps.
            (Running | Waiting | Paused, Event::RunFailed(failed))
                if done
                    && !ending
                    && self.finale_allows(MainOutcome::Failed)
                    && (self.status != Paused || self.finally_stopped.is_some()) =>
            {
                self.failure = Some(failed.reason.clone());
                self.finish(Failed, failed.at);
            }
            (Running | Waiting | Paused, Event::RunCancelled(cancelled))
                if done
                    && self.cancel_requested.is_some()
                    && self.finale_allows(MainOutcome::Cancelled) =>
            {
                self.failure = Some(cancelled.reason.clone());
                self.finish(Cancelled, cancelled.at);
            }
            (Running | Waiting | Paused, Event::RunTimedOut(timed_out))
                if done && self.timed_out && self.finale_allows(MainOutcome::TimedOut) =>
            {
                self.failure = Some("the run timed out".to_owned());
                self.finish(Failed, timed_out.at);
            }
            (Running | Waiting, Event::RunPaused(paused)) if !ending => {
                self.paused = Some(crate::surgery::attribution(&paused.by, &paused.reason));
                self.status = Paused;
            }
            (Paused, Event::RunResumed(_)) => {
                self.paused = None;
                self.status = derive_run_status(Running, &self.counts);
            }
            (Succeeded | Failed | Cancelled, Event::RunRewound(rewound))
                if self.can_reset(&rewound.steps)
                    && rewound.steps.first() == Some(&rewound.step) =>
            {
                self.rewind(rewound);
            }
            (
                Running | Waiting | Paused | Succeeded | Failed | Cancelled,
                Event::StepBypassed(bypassed),
            ) if !ending || self.status.is_terminal() => {
                self.bypass(bypassed)?;
            }
            (status, _) => {
                return Err(format!(
                    "the run is {}{}{}",
                    status.as_str(),
                    if done { "" } else { " with unfinished steps" },
                    if ending { " and ending" } else { "" }
                ));
            }
        }
        Ok(())
    }

    /// Whether `run.finalizing` may record `outcome`: the one the state reached.
    fn outcome_fits(&self, outcome: MainOutcome) -> bool {
        match outcome {
            MainOutcome::TimedOut => self.timed_out,
            MainOutcome::Cancelled => self.cancel_requested.is_some() && !self.timed_out,
            MainOutcome::Succeeded | MainOutcome::Failed => {
                self.cancel_requested.is_none() && !self.timed_out
            }
        }
    }

    /// A run with `finally:` steps ends only as `run.finalizing` said.
    fn finale_allows(&self, outcome: MainOutcome) -> bool {
        match &self.finalizing {
            Some(finalizing) => finalizing.outcome == outcome,
            None => self.finally.is_empty(),
        }
    }

    fn finish(&mut self, status: RunStatus, at: DateTime<Utc>) {
        self.status = status;
        self.finished_at = Some(at);
        self.paused = None;
        // Every timer left is stale now; firing one is rejected.
        self.timers.clear();
    }

    fn timer_fired(&mut self, timer_id: &str, event: &Event) -> Result<(), String> {
        if !self.status.is_active() {
            return Err(format!("the run is {}", self.status.as_str()));
        }
        let Some(timer) = self.timers.get(timer_id) else {
            return Err(format!("no pending timer `{timer_id}`"));
        };
        match timer.kind.clone() {
            // The run's deadline also bounds `finally:` steps that started
            // before it: they are stopped, the outcome stays.
            TimerKind::RunTimeout if self.finalizing.is_some() => {
                self.finally_stopped
                    .get_or_insert_with(|| "the run timed out".to_owned());
            }
            // A cancellation already in progress wins over the timeout.
            TimerKind::RunTimeout => self.timed_out = self.cancel_requested.is_none(),
            TimerKind::StepTimeout {
                step,
                index,
                attempt,
            } => self.timer_for_execution(&step, index, Input::TimeoutTimer(attempt), event)?,
            TimerKind::Retry {
                step,
                index,
                attempt,
            } => self.timer_for_execution(&step, index, Input::RetryTimer(attempt), event)?,
        }
        self.timers.remove(timer_id);
        Ok(())
    }

    fn timer_for_execution(
        &mut self,
        step_id: &str,
        index: Option<u32>,
        input: Input<'_>,
        event: &Event,
    ) -> Result<(), String> {
        let was_terminal = self.step_status(step_id).is_terminal();
        self.execution_event(step_id, index, input)?;
        self.after_step_change(step_id, was_terminal, event.at());
        Ok(())
    }

    fn step_event(&mut self, event: &Event) -> Result<(), String> {
        if !self.status.is_active() {
            return Err(format!("the run is {}", self.status.as_str()));
        }
        let Some(step_id) = step_of(event) else {
            return Err("not a step event".to_owned());
        };
        let Some(step) = self.steps.get(step_id) else {
            return Err(format!("the workflow has no step `{step_id}`"));
        };
        if self.finalizing.is_none() && self.finally.contains(step_id) {
            return Err(format!(
                "step `{step_id}` is a `finally:` step and the main part has not ended"
            ));
        }
        let was_terminal = step.status.is_terminal();
        self.step_transition(step_id, event)?;
        self.after_step_change(step_id, was_terminal, event.at());
        Ok(())
    }

    /// The step's lifecycle. Events about one execution go to [`execution`].
    fn step_transition(&mut self, step_id: &str, event: &Event) -> Result<(), String> {
        use StepStatus::{Pending, Running, Waiting};
        let status = self.step_status(step_id);
        match (status, event) {
            (Pending, Event::StepScheduled(scheduled))
                if scheduled.index.is_none()
                    && scheduled.attempt == self.attempt_base(step_id) + 1 =>
            {
                let step = self.step_mut(step_id);
                let execution = step.new_execution();
                step.executions.push(execution);
                step.counts.add(ExecStatus::Pending);
                self.counts.add(ExecStatus::Pending);
                if let Err(from) = self.execution_event(step_id, None, Input::Event(event)) {
                    self.drop_fresh_execution(step_id);
                    return Err(from);
                }
                self.step_mut(step_id).started_at = Some(scheduled.at);
            }
            (Pending, Event::ForEachExpanded(expanded))
                if expanded.count as usize == expanded.items.len() =>
            {
                let count = expanded.count;
                let step = self.step_mut(step_id);
                step.items = Some(expanded.items.clone());
                step.fail_fast = expanded.fail_fast;
                step.executions = vec![step.new_execution(); count as usize];
                step.counts.0[ExecStatus::Pending as usize] += count;
                step.status = StepStatus::Running;
                step.started_at = Some(expanded.at);
                self.counts.0[ExecStatus::Pending as usize] += count;
            }
            (Pending, Event::StepSkipped(skipped)) => {
                let ending = match self.finalizing {
                    Some(_) => self.finally_stopped.is_some(),
                    None => self.cancel_requested.is_some() || self.timed_out,
                };
                let step = self.step_mut(step_id);
                step.wound_down = ending;
                step.status = StepStatus::Skipped;
                step.reason = Some(skipped.reason.clone());
                step.finished_at = Some(skipped.at);
            }
            (Pending, Event::StepFailed(failed))
                if failed.index.is_none()
                    && failed.attempt == self.attempt_base(step_id)
                    && !failed.retryable =>
            {
                let step = self.step_mut(step_id);
                step.status = StepStatus::Failed;
                step.reason = Some(failed.error.clone());
                step.finished_at = Some(failed.at);
            }
            (Pending, Event::StepAdopted(adopted))
                if self.fork.as_ref().map(|fork| fork.run_id) == Some(adopted.from_run) =>
            {
                let step = self.step_mut(step_id);
                step.status = StepStatus::Succeeded;
                step.output = Some(adopted.output.clone());
                step.adopted_from = Some(adopted.from_run);
                step.started_at = Some(adopted.at);
                step.finished_at = Some(adopted.at);
            }
            (Running | Waiting, Event::StepCancelled(cancelled)) => {
                self.cancel_executions(step_id, cancelled.at);
                let step = self.step_mut(step_id);
                step.wound_down = true;
                step.status = StepStatus::Cancelled;
                step.reason = Some(cancelled.reason.clone());
                step.finished_at = Some(cancelled.at);
            }
            (Running | Waiting, Event::ForEachStopped(_)) if self.fails_fast(step_id) => {
                self.cancel_executions(step_id, event.at());
            }
            (Running | Waiting, _) if is_execution_event(event) => {
                let index = index_of(event).flatten();
                self.execution_event(step_id, index, Input::Event(event))?;
            }
            (status, _) => return Err(format!("step `{step_id}` is {}", status.as_str())),
        }
        Ok(())
    }

    /// A `fail_fast: true` fan-out with an item failed for good and others unfinished.
    fn fails_fast(&self, step_id: &str) -> bool {
        self.steps.get(step_id).is_some_and(|step| {
            step.items.is_some()
                && step.fail_fast == Some(true)
                && step.counts.get(ExecStatus::Failed) > 0
                && step.counts.open() > 0
        })
    }

    fn drop_fresh_execution(&mut self, step_id: &str) {
        let step = self.step_mut(step_id);
        step.executions.pop();
        step.counts.0[ExecStatus::Pending as usize] -= 1;
        self.counts.0[ExecStatus::Pending as usize] -= 1;
    }

    /// Runs one execution's transition and keeps counters and timers in step.
    fn execution_event(
        &mut self,
        step_id: &str,
        index: Option<u32>,
        input: Input<'_>,
    ) -> Result<(), String> {
        let position = index.unwrap_or(0) as usize;
        let Some(step) = self.steps.get_mut(step_id) else {
            return Err(format!("the workflow has no step `{step_id}`"));
        };
        if step.items.is_some() != index.is_some() {
            return Err(match index {
                Some(_) => format!("step `{step_id}` has no for_each items"),
                None => format!("step `{step_id}` is a for_each step: name the item index"),
            });
        }
        let Some(exec) = step.executions.get_mut(position) else {
            return Err(format!(
                "step `{step_id}` has no execution {}",
                crate::keys::execution_name(step_id, index)
            ));
        };
        let before = exec.status;
        execution::transition(exec, step_id, index, input, &mut self.timers)?;
        let after = exec.status;
        if before != after {
            step.counts.moved(before, after);
            self.counts.moved(before, after);
        }
        // `fail_fast: false` runs every item; otherwise none starts after a failure.
        if after == ExecStatus::Failed && step.items.is_some() && step.fail_fast != Some(false) {
            self.skip_pending_items(step_id);
        }
        Ok(())
    }

    /// One item of a `for_each` failed for good: items not started never will.
    fn skip_pending_items(&mut self, step_id: &str) {
        let Some(step) = self.steps.get_mut(step_id) else {
            return;
        };
        for exec in &mut step.executions {
            if exec.status == ExecStatus::Pending {
                exec.status = ExecStatus::Skipped;
                step.counts.moved(ExecStatus::Pending, ExecStatus::Skipped);
                self.counts.moved(ExecStatus::Pending, ExecStatus::Skipped);
            }
        }
    }

    /// Cancels the executions of a step that have not ended, with their timers.
    pub(crate) fn cancel_executions(&mut self, step_id: &str, at: DateTime<Utc>) {
        let Some(step) = self.steps.get_mut(step_id) else {
            return;
        };
        for (position, exec) in step.executions.iter_mut().enumerate() {
            if exec.status.is_terminal() {
                continue;
            }
            let index = step.items.as_ref().map(|_| position as u32);
            execution::drop_timers(exec, step_id, index, &mut self.timers);
            step.counts.moved(exec.status, ExecStatus::Cancelled);
            self.counts.moved(exec.status, ExecStatus::Cancelled);
            exec.status = ExecStatus::Cancelled;
            exec.finished_at = Some(at);
        }
    }

    /// Derives the step's status from its executions' counters, then the run's.
    fn after_step_change(&mut self, step_id: &str, was_terminal: bool, at: DateTime<Utc>) {
        if let Some(step) = self.steps.get_mut(step_id) {
            if !step.status.is_terminal() {
                derive_step_status(step, at);
            }
            if step.status.is_terminal() && !was_terminal {
                self.steps_terminal += 1;
            }
        }
        self.status = derive_run_status(self.status, &self.counts);
    }

    fn step_mut(&mut self, step_id: &str) -> &mut StepState {
        self.steps.entry(step_id.to_owned()).or_default()
    }

    fn attempt_base(&self, step_id: &str) -> u32 {
        self.steps.get(step_id).map_or(0, |step| step.attempt_base)
    }
}

fn cancel_reason(request: &crate::event::RunCancelRequested) -> String {
    let reason = request
        .reason
        .clone()
        .unwrap_or_else(|| "cancelled on request".to_owned());
    match &request.by {
        Some(by) => format!("{reason} (by {by})"),
        None => reason,
    }
}

fn derive_step_status(step: &mut StepState, at: DateTime<Utc>) {
    let counts = step.counts;
    let started = !step.executions.is_empty() || step.items.is_some();
    if !started {
        return;
    }
    if counts.open() > 0 {
        step.status = if counts.get(ExecStatus::Scheduled) + counts.get(ExecStatus::Running) > 0 {
            StepStatus::Running
        } else if counts.get(ExecStatus::Waiting) + counts.get(ExecStatus::RetryWaiting) > 0 {
            StepStatus::Waiting
        } else {
            StepStatus::Running
        };
        return;
    }
    step.finished_at = Some(at);
    if counts.get(ExecStatus::Failed) > 0 {
        step.status = StepStatus::Failed;
        step.reason = first_error(step);
    } else if counts.get(ExecStatus::Cancelled) > 0 {
        step.status = StepStatus::Cancelled;
    } else {
        step.status = StepStatus::Succeeded;
        step.output = Some(match step.items {
            Some(_) => serde_json::Value::Array(
                step.executions
                    .iter()
                    .map(|exec| exec.output.clone().unwrap_or_default())
                    .collect(),
            ),
            None => step
                .executions
                .first()
                .and_then(|exec| exec.output.clone())
                .unwrap_or_default(),
        });
    }
}

fn first_error(step: &StepState) -> Option<String> {
    let for_each = step.items.is_some();
    step.executions
        .iter()
        .enumerate()
        .find(|(_, exec)| exec.status == ExecStatus::Failed)
        .map(|(position, exec)| {
            let error = exec.error.clone().unwrap_or_default();
            if for_each {
                format!("item {position}: {error}")
            } else {
                error
            }
        })
}

pub(crate) fn derive_run_status(status: RunStatus, counts: &ExecCounts) -> RunStatus {
    if status.is_terminal() || matches!(status, RunStatus::Pending | RunStatus::Paused) {
        return status;
    }
    let busy = counts.get(ExecStatus::Scheduled)
        + counts.get(ExecStatus::Running)
        + counts.get(ExecStatus::Pending)
        + counts.get(ExecStatus::RetryPending);
    let waiting = counts.get(ExecStatus::Waiting) + counts.get(ExecStatus::RetryWaiting);
    if busy == 0 && waiting > 0 {
        RunStatus::Waiting
    } else {
        RunStatus::Running
    }
}

fn step_of(event: &Event) -> Option<&str> {
    Some(match event {
        Event::StepScheduled(e) => &e.step,
        Event::StepStarted(e) => &e.step,
        Event::StepSucceeded(e) => &e.step,
        Event::StepFailed(e) => &e.step,
        Event::StepSkipped(e) => &e.step,
        Event::StepCancelled(e) => &e.step,
        Event::RetryScheduled(e) => &e.step,
        Event::ApprovalRequested(e) => &e.step,
        Event::ApprovalGranted(e) => &e.step,
        Event::ApprovalRejected(e) => &e.step,
        Event::ChildRunStarted(e) => &e.step,
        Event::ChildRunFinished(e) => &e.step,
        Event::ForEachExpanded(e) => &e.step,
        Event::ForEachStopped(e) => &e.step,
        Event::StepAdopted(e) => &e.step,
        _ => return None,
    })
}

/// The execution an event is about: `Some(index)` for execution events.
fn index_of(event: &Event) -> Option<Option<u32>> {
    Some(match event {
        Event::StepScheduled(e) => e.index,
        Event::StepStarted(e) => e.index,
        Event::StepSucceeded(e) => e.index,
        Event::StepFailed(e) => e.index,
        Event::RetryScheduled(e) => e.index,
        Event::ApprovalRequested(e) => e.index,
        Event::ApprovalGranted(e) => e.index,
        Event::ApprovalRejected(e) => e.index,
        Event::ChildRunStarted(e) => e.index,
        Event::ChildRunFinished(e) => e.index,
        _ => return None,
    })
}

fn is_execution_event(event: &Event) -> bool {
    index_of(event).is_some()
}
