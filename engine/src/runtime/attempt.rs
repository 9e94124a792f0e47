//! One claimed task carried out: an attempt handed to its executor (lease
//! renewed while it runs, deadline and cancellation enforced, output size
//! capped) or a fired timer; the result is recorded through the core,
//! fenced by the task's lease.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::json;
use tokio::sync::{Notify, watch};

use crate::core::effect::Effect;
use crate::core::event::{Event, StepFailed, StepSucceeded, TimerFired};
use crate::core::scope::Host;
use crate::core::state::RunState;
use crate::core::workflow::Workflow;
use crate::executor::{Attempt, Executor, Outcome};
use crate::store::{self, ClaimedTask, EventStore};

use super::advance::Advanced;
use super::queues::{AttemptTask, TimerTask};
use super::{Error, Runtime, TASK_CLAIMS_MAX};

impl<S: EventStore> Runtime<S> {
    /// A fired timer: `timer.fired`, or `step.succeeded` for a `sleep`.
    pub(super) async fn fire_timer(&self, task: &ClaimedTask) -> Result<(), Error> {
        let Ok(timer) = serde_json::from_value::<TimerTask>(task.payload.clone()) else {
            tracing::warn!("dropping a timer task with an unknown payload");
            return self.drop_task(task).await;
        };
        tracing::debug!("timer fired");
        let facts =
            move |_: &RunState, now: DateTime<Utc>| Ok(fact(&timer, now).into_iter().collect());
        self.record(task, facts).await
    }

    /// Runs one attempt on `executor` and records its outcome.
    pub(super) async fn execute_task(
        &self,
        task: &ClaimedTask,
        executor: Arc<dyn Executor>,
        _stop: watch::Receiver<bool>,
    ) -> Result<(), Error> {
        let Ok(wanted) = serde_json::from_value::<AttemptTask>(task.payload.clone()) else {
            tracing::warn!("dropping a task with an unknown payload");
            return self.drop_task(task).await;
        };
        let (workflow, state) = match self.load(task.run_id).await {
            Ok(loaded) => loaded,
            Err(Error::RunNotFound { .. }) => return self.drop_task(task).await,
            Err(error) => return Err(error),
        };
        let current = state
            .step(&wanted.step)
            .and_then(|step| step.execution(wanted.index))
            .is_some_and(|exec| exec.attempt == wanted.attempt && exec.status.is_in_flight());
        if !current {
            // Cancelled, timed out or already recorded while it waited.
            tracing::debug!("the attempt is no longer current; dropping its task");
            return self.drop_task(task).await;
        }
        let effects = self.outstanding_off_thread(workflow, state).await?;
        let attempt = rendered_attempt(effects, task, &wanted);
        self.attempt_and_record(task, executor.as_ref(), wanted, attempt)
            .await
    }

    /// An attempt leased to this node by the append that made it ready
    /// (`local.rs`): its input was rendered by that append's settle, and it
    /// is current (nothing was appended in between), so it starts at once.
    pub(super) async fn run_leased(
        &self,
        task: &ClaimedTask,
        executor: Arc<dyn Executor>,
        wanted: AttemptTask,
        attempt: Attempt,
    ) {
        let result = self
            .attempt_and_record(task, executor.as_ref(), wanted, Some(attempt))
            .await;
        if let Err(error) = result {
            // The task stays; its lease expires and it is tried again.
            tracing::warn!(%error, "the task failed; it is tried again when its lease expires");
        }
    }

    /// Runs a current attempt (`None`: its input could not be rendered)
    /// and records its outcome, fenced by the task's lease.
    async fn attempt_and_record(
        &self,
        task: &ClaimedTask,
        executor: &dyn Executor,
        wanted: AttemptTask,
        attempt: Option<Attempt>,
    ) -> Result<(), Error> {
        tracing::debug!(kind = executor.kind().as_str(), "attempt started");
        let outcome = match attempt {
            _ if task.claims > TASK_CLAIMS_MAX => abandoned(task.claims - 1),
            Some(attempt) => match self.run_attempt(task, executor, &attempt).await {
                Some(outcome) => outcome,
                // Lease lost or attempt cancelled: the result is not ours to record.
                None => {
                    tracing::info!("attempt stopped: cancelled, timed out or lease lost");
                    return Ok(());
                }
            },
            None => Outcome::failed("the step's input cannot be rendered on this node", false),
        };
        // Logged after redaction: secrets never reach a log line.
        let outcome = self.checked(outcome);
        crate::failpoint::crash_point(crate::failpoint::AFTER_EFFECT_BEFORE_RECORD);
        match &outcome {
            Outcome::Succeeded { .. } => tracing::info!("attempt succeeded"),
            Outcome::Failed { error, retryable } => {
                tracing::warn!(%error, retryable, "attempt failed");
            }
        }
        let facts =
            move |_: &RunState, now: DateTime<Utc>| Ok(vec![result_event(&wanted, &outcome, now)]);
        self.record(task, facts).await
    }

    /// The core's outstanding effects (the attempts' inputs rendered again
    /// from the log with this node's secrets), on a blocking thread: the
    /// evaluator may wait for a sandbox process.
    pub(super) async fn outstanding_off_thread(
        &self,
        workflow: Arc<Workflow>,
        state: RunState,
    ) -> Result<Vec<Effect>, Error> {
        let secrets = self.config.secrets.clone();
        let evaluator = Arc::clone(&self.config.evaluator);
        let run_id = state.run_id.unwrap_or_default();
        tokio::task::spawn_blocking(move || {
            let host = Host {
                secrets: &secrets,
                evaluator: &*evaluator,
            };
            crate::core::outstanding(&workflow, &state, host)
        })
        .await
        .map_err(|join| Error::Decide {
            run_id,
            detail: join.to_string(),
        })
    }

    /// Redacts secrets and enforces the output size limit.
    fn checked(&self, outcome: Outcome) -> Outcome {
        let secrets = &self.config.secrets;
        match outcome {
            Outcome::Succeeded { output } => {
                let bytes = serde_json::to_vec(&output).map_or(usize::MAX, |text| text.len());
                if bytes > self.config.output_bytes_max {
                    return Outcome::failed(
                        format!(
                            "the step's output is {bytes} bytes, more than the limit of {} bytes (OUTPUT_BYTES_MAX): return a reference to large data instead",
                            self.config.output_bytes_max
                        ),
                        false,
                    );
                }
                Outcome::Succeeded {
                    output: secrets.redact(output),
                }
            }
            Outcome::Failed { error, retryable } => Outcome::Failed {
                error: secrets.redact_text(&error),
                retryable,
            },
        }
    }

    /// The executor's outcome, or `None` when the lease was lost or the
    /// attempt cancelled. Renews the lease at a third of its length and
    /// drops the executor's future at the attempt's deadline.
    async fn run_attempt(
        &self,
        task: &ClaimedTask,
        executor: &dyn Executor,
        attempt: &Attempt,
    ) -> Option<Outcome> {
        let cancel_key = format!("{}#{}", attempt.idempotency_key, attempt.attempt);
        let cancelled = Arc::new(Notify::new());
        if let Ok(mut cancels) = self.cancels.lock() {
            cancels.insert(cancel_key.clone(), Arc::clone(&cancelled));
        }
        let renew_every = Duration::from_millis((self.config.lease_ms / 3).max(1));
        let until_deadline = attempt
            .deadline
            .map(|deadline| (deadline - self.now()).to_std().unwrap_or(Duration::ZERO));
        let execution = executor.execute(attempt);
        tokio::pin!(execution);
        let deadline = async {
            match until_deadline {
                Some(wait) => tokio::time::sleep(wait).await,
                None => std::future::pending().await,
            }
        };
        tokio::pin!(deadline);
        // The first renewal two thirds of a lease before the lease expires
        // (at once if that passed: a lease taken at append time started at
        // the append, before its commit), then every third of a lease.
        let first_renewal = (task.lease.expires_at - self.now())
            .to_std()
            .unwrap_or(Duration::ZERO)
            .saturating_sub(2 * renew_every);
        let mut renew =
            tokio::time::interval_at(tokio::time::Instant::now() + first_renewal, renew_every);
        let outcome = loop {
            tokio::select! {
                outcome = &mut execution => break Some(outcome),
                () = &mut deadline => break Some(Outcome::failed(
                    format!("attempt {} passed its deadline and was stopped", attempt.attempt),
                    true,
                )),
                () = cancelled.notified() => break None,
                _ = renew.tick() => {
                    match self.store.renew_lease(task.task_id, task.lease.token, self.config.lease_ms).await {
                        Ok(_) => {}
                        Err(store::Error::LeaseLost { .. }) => break None,
                        Err(error) => tracing::warn!(%error, "renewing the task's lease failed; retrying"),
                    }
                    // Cancelled or timed out by another node: stop working.
                    if !self.still_current(task, attempt).await {
                        break None;
                    }
                }
            }
        };
        if let Ok(mut cancels) = self.cancels.lock() {
            cancels.remove(&cancel_key);
        }
        outcome
    }

    /// False once the log says the attempt is over (cancelled, timed out,
    /// recorded by someone else); true when unsure.
    async fn still_current(&self, task: &ClaimedTask, attempt: &Attempt) -> bool {
        match self.load(task.run_id).await {
            Ok((_, state)) => state
                .step(&attempt.step)
                .and_then(|step| step.execution(attempt.index))
                .is_some_and(|exec| exec.attempt == attempt.attempt && exec.status.is_in_flight()),
            Err(_) => true,
        }
    }

    /// Stops an attempt running in this process (run cancelled, timed out).
    pub(super) fn cancel_local(&self, key: &str, attempt: u32) {
        let notify = self
            .cancels
            .lock()
            .ok()
            .and_then(|cancels| cancels.get(&format!("{key}#{attempt}")).cloned());
        if let Some(notify) = notify {
            notify.notify_one();
        }
    }

    /// Appends `facts` fenced by the task's lease; a stale fact drops the task.
    async fn record<F>(&self, task: &ClaimedTask, facts: F) -> Result<(), Error>
    where
        F: FnMut(&RunState, DateTime<Utc>) -> Result<Vec<Event>, Error> + Send,
    {
        let complete = Some((task.task_id, task.lease.token));
        match self.advance(task.run_id, facts, complete).await {
            Ok(Advanced::Appended(_)) => Ok(()),
            Ok(Advanced::Stale(reason)) => {
                tracing::debug!(%reason, "dropping a stale fact");
                self.reconcile(task.run_id).await;
                self.drop_task(task).await
            }
            Err(Error::Store(store::Error::LeaseLost { .. })) => {
                // Fencing at work (a stalled or partitioned node): said in
                // the log so that an operator (and the fault battery) sees it.
                tracing::info!(
                    "result refused: this task's lease was lost (another worker took the task over)"
                );
                Ok(())
            }
            Err(Error::RunNotFound { .. }) => self.drop_task(task).await,
            Err(error) => Err(error),
        }
    }

    /// Removes a task without recording anything (stale, unknown, its run gone).
    async fn drop_task(&self, task: &ClaimedTask) -> Result<(), Error> {
        match self
            .store
            .complete_task(task.task_id, task.lease.token)
            .await
        {
            Ok(()) | Err(store::Error::LeaseLost { .. }) => Ok(()),
            Err(error) => Err(error.into()),
        }
    }
}

/// The dead letter: an attempt whose task was claimed more than
/// [`TASK_CLAIMS_MAX`] times without a result (each holder crashed or hung
/// until its lease ran out) fails instead of being handed out forever. It
/// is retryable, so the step's retry policy decides what happens next.
fn abandoned(expired: u32) -> Outcome {
    Outcome::failed(
        format!(
            "abandoned: this attempt was handed to a worker {expired} times and each time its lease \
             expired without a result (a node running it crashed or hung); look for crashes in \
             the node logs, or give the step a shorter `timeout`"
        ),
        true,
    )
}

/// `step.succeeded` or `step.failed` for the attempt's outcome.
fn result_event(wanted: &AttemptTask, outcome: &Outcome, now: DateTime<Utc>) -> Event {
    let (step, index, attempt) = (wanted.step.clone(), wanted.index, wanted.attempt);
    match outcome {
        Outcome::Succeeded { output } => Event::StepSucceeded(StepSucceeded {
            at: now,
            step,
            index,
            attempt,
            output: output.clone(),
        }),
        Outcome::Failed { error, retryable } => Event::StepFailed(StepFailed {
            at: now,
            step,
            index,
            attempt,
            error: error.clone(),
            retryable: *retryable,
        }),
    }
}

/// The event a fired core or `sleep` timer records; none for `Continue`
/// (nothing happened: the core has more to decide).
fn fact(timer: &TimerTask, now: DateTime<Utc>) -> Option<Event> {
    Some(match timer {
        TimerTask::Core { timer } => Event::TimerFired(TimerFired {
            at: now,
            timer_id: timer.clone(),
        }),
        TimerTask::Sleep {
            step,
            index,
            attempt,
            duration_ms,
        } => Event::StepSucceeded(StepSucceeded {
            at: now,
            step: step.clone(),
            index: *index,
            attempt: *attempt,
            output: json!({ "slept_ms": duration_ms }),
        }),
        TimerTask::Continue => return None,
    })
}

/// The attempt as the executor sees it, from the outstanding effects.
fn rendered_attempt(
    effects: Vec<Effect>,
    task: &ClaimedTask,
    wanted: &AttemptTask,
) -> Option<Attempt> {
    effects.into_iter().find_map(|effect| match effect {
        Effect::ScheduleStep {
            key,
            kind,
            attempt,
            input,
            deadline,
            ..
        } if key == wanted.key && attempt == wanted.attempt => Some(Attempt {
            run_id: task.run_id,
            step: wanted.step.clone(),
            index: wanted.index,
            attempt,
            idempotency_key: key,
            kind,
            input,
            deadline,
        }),
        _ => None,
    })
}
