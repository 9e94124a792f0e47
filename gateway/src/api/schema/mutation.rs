//! Commands: register workflows, start, cancel and retry runs, decide
//! approvals. Each checks the caller's role first, then the run's state,
//! then asks the runtime.

use async_graphql::{Context, ID, Json, Object};
use engine::core::state::{ExecStatus, RunState};
use engine::runtime::StartRequest;
use engine::store::prelude::*;
use serde_json::Value;
use tracing::Instrument;
use uuid::Uuid;

use super::types::{
    Diagnostic, RegisterWorkflowResult, Run, StartRunPayload, Workflow, WorkflowRejected,
};
use super::{ApiContext, authorize, parse_run_id};
use crate::api::auth::{Permission, Principal};
use crate::api::error::{ApiError, Code};

#[derive(Debug)]
pub struct Mutation;

/// Largest workflow source accepted, in bytes (the DSL's own limit).
pub const SOURCE_BYTES_MAX: usize = engine::core::dsl::SOURCE_BYTES_MAX;

#[Object]
impl Mutation {
    /// Validates and registers a workflow; returns the workflow, or every
    /// problem the validator found (nothing registered then).
    async fn register_workflow(
        &self,
        ctx: &Context<'_>,
        source: String,
    ) -> async_graphql::Result<RegisterWorkflowResult> {
        let (api, _) = authorize(ctx, Permission::Operate, "registering a workflow")?;
        if source.len() > SOURCE_BYTES_MAX {
            return Err(ApiError::limit(format!(
                "the source is {} bytes; the limit is {SOURCE_BYTES_MAX}",
                source.len()
            ))
            .into());
        }
        let parsed = parse_off_workers(source.clone()).await?;
        if parsed.has_errors() {
            return Ok(RegisterWorkflowResult::WorkflowRejected(WorkflowRejected {
                diagnostics: parsed.diagnostics.iter().map(Diagnostic::from).collect(),
            }));
        }
        let registered = api
            .runtime()?
            .register_source(&source)
            .await
            .map_err(ApiError::from)?;
        let record = api
            .store
            .get_workflow(&registered.name, Some(&registered.version))
            .await
            .map_err(ApiError::from)?
            .ok_or_else(|| {
                ApiError::internal(
                    &format!(
                        "workflow {} {} vanished after it was registered",
                        registered.name, registered.version
                    ),
                    None,
                )
            })?;
        Ok(RegisterWorkflowResult::Workflow(Workflow::from(record)))
    }

    /// Starts a run of a registered workflow (newest version unless given).
    /// The same idempotency key returns the same run (`created: false`).
    async fn start_run(
        &self,
        ctx: &Context<'_>,
        workflow: String,
        version: Option<String>,
        input: Option<Json<Value>>,
        idempotency_key: Option<String>,
    ) -> async_graphql::Result<StartRunPayload> {
        let (api, _) = authorize(ctx, Permission::Operate, "starting a run")?;
        let input = input.map_or_else(|| Value::Object(Default::default()), |json| json.0);
        let started = api
            .runtime()?
            .start_run(StartRequest {
                workflow,
                version,
                input,
                idempotency_key,
                trigger: None,
            })
            .await
            .map_err(ApiError::from)?;
        let run = load_run(api, started.run_id).await?;
        Ok(StartRunPayload {
            run,
            created: !started.existing,
        })
    }

    /// Asks the run to stop; running steps are cancelled.
    async fn cancel_run(
        &self,
        ctx: &Context<'_>,
        id: ID,
        reason: Option<String>,
    ) -> async_graphql::Result<Run> {
        let (api, principal) = authorize(ctx, Permission::Operate, "cancelling a run")?;
        let run_id = parse_run_id(&id)?;
        let run = load_run(api, run_id).await?;
        if is_finished(&run.0.row.status) {
            return Err(conflict(format!(
                "run {run_id} already ended ({})",
                run.0.row.status
            )));
        }
        api.runtime()?
            .cancel_run(run_id, Some(principal.id.clone()), reason)
            .instrument(tracing::info_span!("run", run_id = %run_id, action = "cancel"))
            .await
            .map_err(ApiError::from)?;
        Ok(load_run(api, run_id).await?)
    }

    /// Re-runs the failed and skipped steps of a failed run, keeping the
    /// outputs of the steps that succeeded; same run id.
    async fn retry_run(&self, ctx: &Context<'_>, id: ID) -> async_graphql::Result<Run> {
        let (api, principal) = authorize(ctx, Permission::Operate, "retrying a run")?;
        let run_id = parse_run_id(&id)?;
        let run = load_run(api, run_id).await?;
        if run.0.row.status != "failed" {
            return Err(conflict(format!(
                "only failed runs can be retried; run {run_id} is {}",
                run.0.row.status
            )));
        }
        api.runtime()?
            .retry_run(run_id, Some(principal.id.clone()))
            .instrument(tracing::info_span!("run", run_id = %run_id, action = "retry"))
            .await
            .map_err(ApiError::from)?;
        Ok(load_run(api, run_id).await?)
    }

    /// Rewinds an ended run (succeeded, failed or cancelled) to `step`:
    /// that step and everything downstream of it run again in the same run,
    /// as a new generation with new idempotency keys (`<key>@<generation>`);
    /// other steps keep their outcome. Records `run.rewound` with the
    /// caller and `reason`. Role operator.
    async fn rewind_run(
        &self,
        ctx: &Context<'_>,
        id: ID,
        step: String,
        reason: String,
    ) -> async_graphql::Result<Run> {
        super::surgery::rewind(super::surgery::Surgery { ctx, id, reason }, step).await
    }

    /// Starts a new run that takes over the outputs of the source run's
    /// succeeded steps not downstream of `step` and runs the rest, on
    /// `version` (default: the source's version) with `input` (default: the
    /// source's input). Refused with every reason when that version changed
    /// a step it would take over. Returns the fork. Role operator.
    async fn fork_run(
        &self,
        ctx: &Context<'_>,
        id: ID,
        step: String,
        version: Option<String>,
        input: Option<Json<Value>>,
        reason: String,
    ) -> async_graphql::Result<Run> {
        let surgery = super::surgery::Surgery { ctx, id, reason };
        super::surgery::fork(surgery, step, version, input).await
    }

    /// Pauses a running or waiting run: no new attempt starts; attempts
    /// already running finish and are recorded; the whole-run timeout keeps
    /// counting. Role operator.
    async fn pause_run(
        &self,
        ctx: &Context<'_>,
        id: ID,
        reason: String,
    ) -> async_graphql::Result<Run> {
        super::surgery::pause(super::surgery::Surgery { ctx, id, reason }, true).await
    }

    /// Resumes a paused run. Role operator.
    async fn resume_run(
        &self,
        ctx: &Context<'_>,
        id: ID,
        reason: String,
    ) -> async_graphql::Result<Run> {
        super::surgery::pause(super::surgery::Surgery { ctx, id, reason }, false).await
    }

    /// Marks a failed or waiting step succeeded with `output` (default
    /// null; at most 256 KiB of JSON); its dependents proceed, and a failed
    /// run runs again. Records `step.bypassed`. Role operator.
    async fn skip_step(
        &self,
        ctx: &Context<'_>,
        run_id: ID,
        step: String,
        output: Option<Json<Value>>,
        reason: String,
    ) -> async_graphql::Result<Run> {
        let surgery = super::surgery::Surgery {
            ctx,
            id: run_id,
            reason,
        };
        super::surgery::skip(surgery, step, output).await
    }

    /// Approves a waiting `approval` step.
    async fn approve_step(
        &self,
        ctx: &Context<'_>,
        run_id: ID,
        step: String,
        index: Option<u32>,
        comment: Option<String>,
    ) -> async_graphql::Result<Run> {
        decide(ctx, run_id, step, index, comment, true).await
    }

    /// Rejects a waiting `approval` step; the step fails without retry.
    async fn reject_step(
        &self,
        ctx: &Context<'_>,
        run_id: ID,
        step: String,
        index: Option<u32>,
        comment: Option<String>,
    ) -> async_graphql::Result<Run> {
        decide(ctx, run_id, step, index, comment, false).await
    }

    /// Stops a workflow's cron schedule (every one when `trigger` is
    /// omitted) from firing; returns the schedules changed. Role operator.
    async fn pause_schedule(
        &self,
        ctx: &Context<'_>,
        workflow: String,
        trigger: Option<String>,
    ) -> async_graphql::Result<Vec<super::schedules::Schedule>> {
        super::schedules::set_paused(ctx, workflow, trigger, true).await
    }

    /// Lets a paused schedule fire again; the ticks of the pause are not
    /// caught up. Role operator.
    async fn resume_schedule(
        &self,
        ctx: &Context<'_>,
        workflow: String,
        trigger: Option<String>,
    ) -> async_graphql::Result<Vec<super::schedules::Schedule>> {
        super::schedules::set_paused(ctx, workflow, trigger, false).await
    }

    /// Starts the runs the schedule would have started in `[from, to]`
    /// (inclusive), with the live fires' idempotency keys: a second call
    /// starts nothing new. At most `BACKFILL_FIRES_MAX` (1000) fires per
    /// schedule. Role operator.
    async fn backfill_schedule(
        &self,
        ctx: &Context<'_>,
        workflow: String,
        trigger: Option<String>,
        from: chrono::DateTime<chrono::Utc>,
        to: chrono::DateTime<chrono::Utc>,
    ) -> async_graphql::Result<super::schedules::BackfillResult> {
        super::schedules::backfill(ctx, workflow, trigger, from, to).await
    }
}

/// Most characters in an approval comment.
pub const COMMENT_CHARS_MAX: usize = 2_000;

async fn decide(
    ctx: &Context<'_>,
    run_id: ID,
    step: String,
    index: Option<u32>,
    comment: Option<String>,
    granted: bool,
) -> async_graphql::Result<Run> {
    let (api, principal) = authorize(ctx, Permission::Approve, "deciding an approval")?;
    let run_id = parse_run_id(&run_id)?;
    if comment
        .as_ref()
        .is_some_and(|c| c.chars().count() > COMMENT_CHARS_MAX)
    {
        return Err(ApiError::limit(format!(
            "comments hold at most {COMMENT_CHARS_MAX} characters"
        ))
        .into());
    }
    load_run(api, run_id).await?;
    let state = api
        .states
        .current(&api.store, run_id, api.limits.history_events_max)
        .await?;
    let role = waiting_approval_role(&state, &step, index)?;
    principal.require_approval_role(role.as_deref())?;
    let span = tracing::info_span!(
        "run",
        run_id = %run_id,
        step = %step,
        index = ?index,
        action = if granted { "approve" } else { "reject" },
    );
    // `step` or `step/INDEX`, as the runtime names one execution.
    let execution = match index {
        Some(index) => format!("{step}/{index}"),
        None => step,
    };
    let by = principal_name(principal);
    let runtime = api.runtime()?;
    let result = if granted {
        runtime
            .approve(run_id, &execution, &by, comment)
            .instrument(span)
            .await
    } else {
        runtime
            .reject(run_id, &execution, &by, comment)
            .instrument(span)
            .await
    };
    result.map_err(ApiError::from)?;
    Ok(load_run(api, run_id).await?)
}

/// The `with.role` of the approval waiting at `step`/`index`; CONFLICT when
/// nothing waits there, NOT_FOUND for an unknown step.
fn waiting_approval_role(
    state: &RunState,
    step: &str,
    index: Option<u32>,
) -> Result<Option<String>, ApiError> {
    let step_state = state
        .step(step)
        .ok_or_else(|| ApiError::not_found(format!("the run has no step {step:?}")))?;
    let execution = step_state
        .execution(index)
        .filter(|exec| exec.status == ExecStatus::Waiting && exec.approval_request.is_some())
        .ok_or_else(|| {
            ApiError::new(
                Code::Conflict,
                format!(
                    "step {step:?} is not waiting for an approval ({})",
                    step_state.status.as_str()
                ),
            )
        })?;
    Ok(execution
        .approval_request
        .as_ref()
        .and_then(|request| request.get("role"))
        .and_then(Value::as_str)
        .map(str::to_owned))
}

fn principal_name(principal: &Principal) -> String {
    principal.id.clone()
}

fn is_finished(status: &str) -> bool {
    matches!(status, "succeeded" | "failed" | "cancelled")
}

fn conflict(message: String) -> async_graphql::Error {
    ApiError::new(Code::Conflict, message).into()
}

async fn load_run(api: &ApiContext, run_id: Uuid) -> Result<Run, ApiError> {
    api.store
        .get_run(run_id)
        .await?
        .map(Run)
        .ok_or_else(|| super::run_not_found(run_id))
}

/// Validation is CPU work (bounded by the DSL's limits): off the async workers.
pub(super) async fn parse_off_workers(
    source: String,
) -> async_graphql::Result<engine::core::dsl::Parsed> {
    tokio::task::spawn_blocking(move || engine::core::dsl::parse(&source))
        .await
        .map_err(|stopped| ApiError::internal(&stopped, None).into())
}
