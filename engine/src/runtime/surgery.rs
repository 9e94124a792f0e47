//! Repairing runs: retry a failed run, and the operator's surgery — rewind,
//! pause, resume, skip a step, fork. Each is one event the core decides is
//! allowed (`core::surgery`), recorded with who asked and why, after which
//! the run settles as after any other event.

use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::core::event::{Event, RunRetryRequested};
use crate::core::state::{RunState, RunStatus};
use crate::core::surgery::{self, Refusal};
use crate::store::{EventStore, RunId};

use super::advance::Advanced;
use super::{Error, OUTPUT_BYTES_MAX, Runtime, Started};

/// Who asks for an operation, and why; both are recorded in its event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Operator {
    pub by: String,
    pub reason: String,
}

/// How to fork a run.
#[derive(Clone, Debug, PartialEq)]
pub struct ForkRequest {
    /// The source run.
    pub run_id: RunId,
    /// The step that runs again in the fork, with everything downstream of it.
    pub step: String,
    /// A version of the source's workflow; `None`: the source run's version.
    pub version: Option<String>,
    /// The fork's input; `None`: the source run's input.
    pub input: Option<Value>,
    pub operator: Operator,
}

impl<S: EventStore> Runtime<S> {
    /// Records `run.retry_requested` on a failed run and settles it.
    pub async fn retry_run(&self, run_id: RunId, by: Option<String>) -> Result<RunState, Error> {
        let facts = move |state: &RunState, now: DateTime<Utc>| {
            if state.status != RunStatus::Failed || state.timed_out {
                return Err(Error::NotRetryable {
                    run_id,
                    status: if state.timed_out {
                        "timed out".to_owned()
                    } else {
                        state.status.as_str().to_owned()
                    },
                });
            }
            Ok(vec![Event::RunRetryRequested(RunRetryRequested {
                at: now,
                by: by.clone(),
            })])
        };
        self.operate(run_id, facts).await
    }

    /// `run.rewound`: an ended run runs `step` and everything downstream of
    /// it again, as a new generation (new idempotency keys).
    pub async fn rewind_run(
        &self,
        run_id: RunId,
        step: &str,
        operator: &Operator,
    ) -> Result<RunState, Error> {
        let (workflow, _) = self.load(run_id).await?;
        let facts = move |state: &RunState, now: DateTime<Utc>| {
            surgery::rewind(&workflow, state, step, &operator.by, &operator.reason, now)
                .map(|event| vec![Event::RunRewound(event)])
                .map_err(|refusal| refused(run_id, refusal))
        };
        self.operate(run_id, facts).await
    }

    /// `run.paused`: no new attempt starts until [`Runtime::resume_run`].
    pub async fn pause_run(&self, run_id: RunId, operator: &Operator) -> Result<RunState, Error> {
        let facts = move |state: &RunState, now: DateTime<Utc>| {
            surgery::pause(state, &operator.by, &operator.reason, now)
                .map(|event| vec![Event::RunPaused(event)])
                .map_err(|refusal| refused(run_id, refusal))
        };
        self.operate(run_id, facts).await
    }

    /// `run.resumed`: a paused run goes on where it stood.
    pub async fn resume_run(&self, run_id: RunId, operator: &Operator) -> Result<RunState, Error> {
        let facts = move |state: &RunState, now: DateTime<Utc>| {
            surgery::resume(state, &operator.by, &operator.reason, now)
                .map(|event| vec![Event::RunResumed(event)])
                .map_err(|refusal| refused(run_id, refusal))
        };
        self.operate(run_id, facts).await
    }

    /// `step.bypassed`: a failed or waiting step counts as succeeded with
    /// `output` (at most [`OUTPUT_BYTES_MAX`] bytes of JSON, like any step's
    /// output), and its dependents proceed.
    pub async fn skip_step(
        &self,
        run_id: RunId,
        step: &str,
        output: Value,
        operator: &Operator,
    ) -> Result<RunState, Error> {
        let bytes = serde_json::to_vec(&output).map_or(usize::MAX, |json| json.len());
        if bytes > OUTPUT_BYTES_MAX {
            return Err(Error::SurgeryInput {
                run_id,
                problem: format!(
                    "the output is {bytes} bytes of JSON; a step's output holds at most {OUTPUT_BYTES_MAX}"
                ),
            });
        }
        let (workflow, _) = self.load(run_id).await?;
        let facts = move |state: &RunState, now: DateTime<Utc>| {
            let (by, reason) = (&operator.by, &operator.reason);
            surgery::skip(&workflow, state, step, output.clone(), by, reason, now)
                .map(|event| vec![Event::StepBypassed(event)])
                .map_err(|refusal| refused(run_id, refusal))
        };
        self.operate(run_id, facts).await
    }

    /// Starts a fork of a run: a new run (`run.started` names the source)
    /// that takes over the outputs of the source's succeeded steps not
    /// downstream of `request.step`, then runs the rest, on the source's
    /// version or `request.version` when that version can take them over.
    pub async fn fork_run(&self, request: ForkRequest) -> Result<Started, Error> {
        let (source_workflow, source) = self.load(request.run_id).await?;
        let version = request.version.as_deref().unwrap_or(&source.version);
        let (target, version) = self.workflow(&source.workflow, Some(version)).await?;
        let input = request.input.unwrap_or_else(|| source.input.clone());
        let input = super::input::prepare(&target, input)?;
        let operator = &request.operator;
        let plan = surgery::fork(
            &source_workflow,
            &source,
            &target,
            &version,
            &request.step,
            &operator.by,
            &operator.reason,
        )
        .map_err(|refusal| refused(request.run_id, refusal))?;
        let run_id = crate::store::new_id();
        let now = self.now();
        let start = crate::core::run::Start::with_input(input);
        let start = self.with_vars(&target, run_id, start, now).await?;
        let (first, effects) = surgery::start_fork(
            &target,
            &version,
            run_id,
            (start.input, start.vars),
            plan,
            now,
        );
        let (started, effects) = self.begin(run_id, target, first, effects, now).await?;
        self.follow(run_id, effects).await;
        Ok(started)
    }

    /// Records what `facts` decides on the run, whatever its status (the
    /// core refuses what the status does not allow), and settles it.
    async fn operate<F>(&self, run_id: RunId, facts: F) -> Result<RunState, Error>
    where
        F: FnMut(&RunState, DateTime<Utc>) -> Result<Vec<Event>, Error> + Send,
    {
        match self.advance(run_id, facts, None).await? {
            Advanced::Appended(state) => Ok(*state),
            Advanced::Stale(error) => Err(Error::corrupt(error)),
        }
    }
}

/// The runtime error for a refusal of the core.
fn refused(run_id: RunId, refusal: Refusal) -> Error {
    match refusal {
        Refusal::UnknownStep { .. } => Error::UnknownStep {
            run_id,
            detail: refusal.to_string(),
        },
        Refusal::Incompatible { .. } => Error::ForkIncompatible {
            run_id,
            detail: refusal.to_string(),
        },
        Refusal::ReasonMissing | Refusal::ReasonTooLong { .. } => Error::SurgeryInput {
            run_id,
            problem: refusal.to_string(),
        },
        _ => Error::SurgeryRefused {
            run_id,
            detail: refusal.to_string(),
        },
    }
}
