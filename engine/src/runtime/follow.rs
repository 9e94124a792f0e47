//! Carrying effects out. Work for this run (tasks, timers) rides in the same
//! append as the events that ask for it ([`Runtime::add_work`]); effects that
//! reach other runs (start or cancel a child, tell a parent its child ended)
//! follow the append ([`Runtime::follow`]) and are re-derived by recovery.

use std::collections::VecDeque;

use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::core::add_ms;
use crate::core::dsl::duration::parse_duration_ms;
use crate::core::effect::Effect;
use crate::core::event::{
    ChildOutcome, ChildRunFinished, Event, ParentRun, RunCancelRequested, StepFailed,
};
use crate::core::state::{RunState, RunStatus};
use crate::core::workflow::StepKind;
use crate::executor::Attempt;
use crate::store::{AppendRequest, EventStore, NewTask, NewTimer, RunId, new_id};

use super::local::Reserved;
use super::queues::{
    AttemptTask, TIMER_QUEUE, TimerTask, agent_queue, sleep_timer_name, step_queue, timer_uuid,
};
use super::{Error, Runtime};

/// Work that reaches another run.
#[derive(Clone, Debug)]
pub(super) enum Job {
    StartChild {
        child_run_id: RunId,
        workflow: String,
        input: Value,
        parent: ParentRun,
    },
    Cancel {
        run_id: RunId,
    },
    TellParent {
        child: RunId,
        parent: ParentRun,
    },
}

/// Most jobs one chain of follow-ups carries out (parent, grandparent, …).
const FOLLOW_JOBS_MAX: usize = 10_000;
/// First wait before a failed follow-up job is tried again, in ms; it
/// doubles up to [`FOLLOW_RETRY_MS_MAX`].
const FOLLOW_RETRY_MS_MIN: u64 = 250;
const FOLLOW_RETRY_MS_MAX: u64 = 15_000;
/// Most failed jobs a node keeps for retrying; beyond that, the recovery
/// of the next node start carries them out.
const FOLLOW_RETRIES_MAX: usize = 10_000;

/// A follow-up job that failed (the database was unreachable, a
/// transaction was cut): a running node tries it again from its timer loop
/// instead of leaving a parent waiting until some node restarts.
#[derive(Debug)]
pub(super) struct FollowRetry {
    run_id: RunId,
    job: Job,
    failures: u32,
    due: tokio::time::Instant,
}

/// `step.failed` (not retryable) for an effect no executor can take: a
/// `sleep` without a valid `with.duration`, an `agent` without `with.queue`.
pub(super) fn unworkable(effect: &Effect, now: DateTime<Utc>) -> Option<Event> {
    let Effect::ScheduleStep {
        step,
        kind,
        index,
        attempt,
        input,
        ..
    } = effect
    else {
        return None;
    };
    let error = match kind {
        StepKind::Sleep => sleep_duration_ms(input).err()?,
        StepKind::Agent => match input.get("queue") {
            Some(Value::String(queue)) if !queue.is_empty() => return None,
            _ => "`uses: agent` needs `with.queue`, the name of the agents' queue".to_owned(),
        },
        _ => return None,
    };
    Some(Event::StepFailed(StepFailed {
        at: now,
        step: step.clone(),
        index: *index,
        attempt: *attempt,
        error,
        retryable: false,
    }))
}

/// `with.duration` of a `sleep` step: `"1m30s"` or a number of ms.
fn sleep_duration_ms(input: &Value) -> Result<u64, String> {
    match input.get("duration") {
        Some(Value::String(text)) => parse_duration_ms(text)
            .map_err(|error| format!("`with.duration` of `uses: sleep`: {error}")),
        Some(Value::Number(ms)) => ms
            .as_u64()
            .ok_or_else(|| "`with.duration` must be a whole number of ms".to_owned()),
        _ => Err("`uses: sleep` needs `with.duration` (like `30s`)".to_owned()),
    }
}

impl<S: EventStore> Runtime<S> {
    /// Adds the tasks and timers `effects` ask for to the append.
    pub(super) fn add_work(
        &self,
        request: &mut AppendRequest,
        run_id: RunId,
        effects: &[Effect],
        now: DateTime<Utc>,
    ) -> Vec<Reserved> {
        let mut reserved = Vec::new();
        for effect in effects {
            match effect {
                Effect::StartTimer { id, fire_at } => request.timers.push(NewTimer {
                    timer_id: timer_uuid(run_id, id),
                    queue: TIMER_QUEUE.to_owned(),
                    fire_at: *fire_at,
                    payload: to_json(&TimerTask::Core { timer: id.clone() }),
                }),
                Effect::ScheduleStep {
                    key,
                    step,
                    kind,
                    index,
                    attempt,
                    input,
                    deadline,
                } => {
                    if *kind == StepKind::Sleep {
                        let duration_ms = sleep_duration_ms(input).unwrap_or_default();
                        let name = sleep_timer_name(step, *index, *attempt);
                        request.timers.push(NewTimer {
                            timer_id: timer_uuid(run_id, &name),
                            queue: TIMER_QUEUE.to_owned(),
                            fire_at: add_ms(now, duration_ms),
                            payload: to_json(&TimerTask::Sleep {
                                step: step.clone(),
                                index: *index,
                                attempt: *attempt,
                                duration_ms,
                            }),
                        });
                        continue;
                    }
                    let queue = match kind {
                        StepKind::Agent => {
                            agent_queue(input.get("queue").and_then(Value::as_str).unwrap_or(""))
                        }
                        kind => step_queue(*kind),
                    };
                    let wanted = AttemptTask {
                        step: step.clone(),
                        index: *index,
                        attempt: *attempt,
                        key: key.clone(),
                    };
                    let mut task = NewTask {
                        task_id: new_id(),
                        queue,
                        payload: to_json(&wanted),
                        available_at: None,
                        lease: None,
                    };
                    let rendered = Attempt {
                        run_id,
                        step: step.clone(),
                        index: *index,
                        attempt: *attempt,
                        idempotency_key: key.clone(),
                        kind: *kind,
                        input: input.clone(),
                        deadline: *deadline,
                    };
                    reserved.extend(self.reserve(&mut task, &wanted, rendered));
                    request.enqueue.push(task);
                }
                _ => {}
            }
        }
        reserved
    }

    /// Carries out the effects of an append that reach beyond its run, and
    /// what those lead to. A job that fails is tried again later by the
    /// timer loop ([`Runtime::retry_follow_ups`]); recovery at start re-derives
    /// whatever a node that stopped had left.
    pub(super) async fn follow(&self, run_id: RunId, effects: Vec<Effect>) {
        let mut jobs = VecDeque::new();
        self.queue_jobs(run_id, effects, &mut jobs);
        self.carry_out_all(run_id, jobs, 0).await;
    }

    /// After a result the log had moved past (a stale fact): an earlier
    /// append of this run may have committed while its answer was lost and
    /// every retry failed, so its effects beyond the run were never
    /// carried out, and no node restarts to recover them. Re-derives them as
    /// recovery does: an ended run with a parent tells the parent; an
    /// unfinished one starts (or reports) its children. Both are no-ops when
    /// already done.
    pub(super) async fn reconcile(&self, run_id: RunId) {
        let result = async {
            let (workflow, state) = self.load(run_id).await?;
            if state.is_finished() {
                if let Some(parent) = state.parent.clone() {
                    let tell = VecDeque::from([Job::TellParent {
                        child: run_id,
                        parent,
                    }]);
                    self.carry_out_all(run_id, tell, 0).await;
                }
                return Ok(());
            }
            let children = self
                .outstanding_off_thread(workflow, state)
                .await?
                .into_iter()
                .filter(|effect| matches!(effect, Effect::StartChildRun { .. }))
                .collect();
            self.follow(run_id, children).await;
            Ok::<(), Error>(())
        }
        .await;
        if let Err(error) = result {
            tracing::warn!(run_id = %run_id, %error, "cannot reconcile the run's follow-ups");
        }
    }

    /// Carries out the failed follow-up jobs that are due again.
    pub(super) async fn retry_follow_ups(&self) {
        let now = tokio::time::Instant::now();
        let due: Vec<FollowRetry> = match self.follow_retries.lock() {
            Ok(mut retries) => retries.extract_if(.., |retry| retry.due <= now).collect(),
            Err(_) => Vec::new(),
        };
        for retry in due {
            let jobs = VecDeque::from([retry.job]);
            self.carry_out_all(retry.run_id, jobs, retry.failures).await;
        }
    }

    /// `jobs` and the jobs they lead to; `failures`: how often the first
    /// one failed before.
    async fn carry_out_all(&self, run_id: RunId, mut jobs: VecDeque<Job>, failures: u32) {
        let mut done = 0;
        while let Some(job) = jobs.pop_front() {
            done += 1;
            if done > FOLLOW_JOBS_MAX {
                tracing::warn!(run_id = %run_id, "too many follow-up jobs; recovery continues");
                return;
            }
            let again = job.clone();
            if let Err(error) = self.carry_out(job, &mut jobs).await {
                tracing::warn!(run_id = %run_id, %error, "a follow-up job failed; trying it again");
                self.retry_later(run_id, again, failures + 1);
            }
        }
    }

    fn retry_later(&self, run_id: RunId, job: Job, failures: u32) {
        let doubled = FOLLOW_RETRY_MS_MIN.saturating_mul(1 << failures.saturating_sub(1).min(16));
        let due = tokio::time::Instant::now()
            + std::time::Duration::from_millis(doubled.min(FOLLOW_RETRY_MS_MAX));
        let Ok(mut retries) = self.follow_retries.lock() else {
            return;
        };
        if retries.len() >= FOLLOW_RETRIES_MAX {
            tracing::warn!(run_id = %run_id, "too many failed follow-up jobs; recovery at the next start carries this one out");
            return;
        }
        retries.push(FollowRetry {
            run_id,
            job,
            failures,
            due,
        });
    }

    fn queue_jobs(&self, run_id: RunId, effects: Vec<Effect>, jobs: &mut VecDeque<Job>) {
        for effect in effects {
            match effect {
                Effect::StartChildRun {
                    child_run_id,
                    workflow,
                    input,
                    parent,
                } => jobs.push_back(Job::StartChild {
                    child_run_id,
                    workflow,
                    input,
                    parent,
                }),
                Effect::CancelChildRun { child_run_id } => jobs.push_back(Job::Cancel {
                    run_id: child_run_id,
                }),
                Effect::CompleteRun {
                    parent: Some(parent),
                    ..
                } => jobs.push_back(Job::TellParent {
                    child: run_id,
                    parent,
                }),
                Effect::CancelStep { key, attempt, .. } => self.cancel_local(&key, attempt),
                _ => {}
            }
        }
    }

    async fn carry_out(&self, job: Job, jobs: &mut VecDeque<Job>) -> Result<(), Error> {
        match job {
            Job::StartChild {
                child_run_id,
                workflow,
                input,
                parent,
            } => {
                if let Some(child) = self.store.get_run(child_run_id).await? {
                    // Started before (recovery): if it already ended, the
                    // parent may not have heard.
                    if is_terminal(&child.row.status) {
                        jobs.push_back(Job::TellParent {
                            child: child_run_id,
                            parent,
                        });
                    }
                    return Ok(());
                }
                let started = match self.workflow(&workflow, None).await {
                    Ok((definition, version)) => match super::input::prepare(&definition, input) {
                        Ok(input) => {
                            self.start_child(child_run_id, definition, &version, input, &parent)
                                .await
                        }
                        Err(error) => Err(error),
                    },
                    Err(error) => Err(error),
                };
                match started {
                    Ok(effects) => {
                        self.queue_jobs(child_run_id, effects, jobs);
                        Ok(())
                    }
                    Err(Error::Store(error)) => Err(Error::Store(error)),
                    Err(error) => {
                        self.tell_parent_failed(child_run_id, &parent, error.to_string(), jobs)
                            .await
                    }
                }
            }
            Job::Cancel { run_id } => match self.state(run_id).await {
                Ok(state) if state.is_finished() || state.cancel_requested.is_some() => Ok(()),
                Ok(_) => {
                    let facts = |state: &RunState, now: DateTime<Utc>| {
                        if state.is_finished() || state.cancel_requested.is_some() {
                            return Ok(Vec::new());
                        }
                        Ok(vec![Event::RunCancelRequested(RunCancelRequested {
                            at: now,
                            by: None,
                            reason: Some("the parent run is ending".to_owned()),
                        })])
                    };
                    let (_, effects) = self.advance_inner(run_id, facts, None).await?;
                    self.queue_jobs(run_id, effects, jobs);
                    Ok(())
                }
                Err(Error::RunNotFound { .. }) => Ok(()),
                Err(error) => Err(error),
            },
            Job::TellParent { child, parent } => {
                let state = self.state(child).await?;
                let (outcome, error) = match state.status {
                    RunStatus::Succeeded => (ChildOutcome::Succeeded, None),
                    RunStatus::Cancelled => (ChildOutcome::Cancelled, state.failure.clone()),
                    RunStatus::Failed => (ChildOutcome::Failed, state.failure.clone()),
                    _ => return Ok(()),
                };
                let output = state.output.clone().unwrap_or(Value::Null);
                self.record_child_end(child, &parent, outcome, output, error, jobs)
                    .await
            }
        }
    }

    async fn start_child(
        &self,
        child_run_id: RunId,
        workflow: std::sync::Arc<crate::core::workflow::Workflow>,
        version: &str,
        input: Value,
        parent: &ParentRun,
    ) -> Result<Vec<Effect>, Error> {
        let (_, effects) = self
            .start_inner(
                child_run_id,
                workflow,
                version,
                crate::core::run::Start {
                    parent: Some(parent.clone()),
                    ..crate::core::run::Start::with_input(input)
                },
            )
            .await?;
        Ok(effects)
    }

    async fn tell_parent_failed(
        &self,
        child: RunId,
        parent: &ParentRun,
        error: String,
        jobs: &mut VecDeque<Job>,
    ) -> Result<(), Error> {
        let error = format!("the child run could not start: {error}");
        self.record_child_end(
            child,
            parent,
            ChildOutcome::Failed,
            Value::Null,
            Some(error),
            jobs,
        )
        .await
    }

    /// `child_run.finished` in the parent, for the execution that started `child`.
    async fn record_child_end(
        &self,
        child: RunId,
        parent: &ParentRun,
        outcome: ChildOutcome,
        output: Value,
        error: Option<String>,
        jobs: &mut VecDeque<Job>,
    ) -> Result<(), Error> {
        let facts = |state: &RunState, now: DateTime<Utc>| {
            let Some((step, index)) = execution_of_child(state, child) else {
                return Ok(Vec::new());
            };
            Ok(vec![Event::ChildRunFinished(ChildRunFinished {
                at: now,
                step,
                index,
                child_run_id: child,
                outcome,
                output: output.clone(),
                error: error.clone(),
            })])
        };
        let parent_id = parent.run_id;
        if self.state(parent_id).await?.is_finished() {
            return Ok(());
        }
        let (_, effects) = self.advance_inner(parent_id, facts, None).await?;
        self.queue_jobs(parent_id, effects, jobs);
        Ok(())
    }
}

/// The (step, index) of the execution whose child run is `child`.
fn execution_of_child(state: &RunState, child: RunId) -> Option<(String, Option<u32>)> {
    state.steps.iter().find_map(|(id, step)| {
        step.executions
            .iter()
            .position(|exec| exec.child_run_id == Some(child) && exec.status.is_in_flight())
            .map(|position| {
                let index = step.items.as_ref().map(|_| position as u32);
                (id.clone(), index)
            })
    })
}

fn is_terminal(status: &str) -> bool {
    matches!(status, "succeeded" | "failed" | "cancelled")
}

fn to_json<T: serde::Serialize>(value: &T) -> Value {
    serde_json::to_value(value).unwrap_or(Value::Null)
}
