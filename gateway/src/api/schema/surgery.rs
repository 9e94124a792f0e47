//! Run surgery over GraphQL (role operator): rewind, fork, pause, resume and
//! skip. The caller's id and the required `reason` are recorded in the
//! event each one appends; every refusal carries its `IMX041x` code.

use async_graphql::{Context, ID, Json};
use engine::runtime::{ForkRequest, Operator};
use engine::store::RunId;
use engine::store::prelude::*;
use serde_json::Value;
use tracing::Instrument;

use super::types::Run;
use super::{ApiContext, authorize, parse_run_id};
use crate::api::auth::Permission;
use crate::api::error::ApiError;

/// One operation on one run, as the resolvers receive it.
pub struct Surgery<'a> {
    pub ctx: &'a Context<'a>,
    pub id: ID,
    pub reason: String,
}

/// An authorised operation: the API, the run, and the caller as operator.
struct Authorised<'a> {
    api: &'a ApiContext,
    run_id: RunId,
    operator: Operator,
    span: tracing::Span,
}

impl<'a> Surgery<'a> {
    fn authorise(self, action: &'static str) -> Result<Authorised<'a>, ApiError> {
        let (api, principal) = authorize(self.ctx, Permission::Operate, action)?;
        let run_id = parse_run_id(&self.id)?;
        Ok(Authorised {
            api,
            run_id,
            operator: Operator {
                by: principal.id.clone(),
                reason: self.reason,
            },
            span: tracing::info_span!("run", run_id = %run_id, action),
        })
    }
}

impl Authorised<'_> {
    /// The run `run_id` as it is now.
    async fn show(&self, run_id: RunId) -> async_graphql::Result<Run> {
        let record = self
            .api
            .store
            .get_run(run_id)
            .await
            .map_err(ApiError::from)?;
        Ok(Run(record.ok_or_else(|| super::run_not_found(run_id))?))
    }
}

pub async fn rewind(surgery: Surgery<'_>, step: String) -> async_graphql::Result<Run> {
    let op = surgery.authorise("rewinding a run")?;
    op.api
        .runtime()?
        .rewind_run(op.run_id, &step, &op.operator)
        .instrument(op.span.clone())
        .await
        .map_err(ApiError::from)?;
    op.show(op.run_id).await
}

pub async fn pause(surgery: Surgery<'_>, pause: bool) -> async_graphql::Result<Run> {
    let action = if pause {
        "pausing a run"
    } else {
        "resuming a run"
    };
    let op = surgery.authorise(action)?;
    let runtime = op.api.runtime()?;
    match pause {
        true => {
            runtime
                .pause_run(op.run_id, &op.operator)
                .instrument(op.span.clone())
                .await
        }
        false => {
            runtime
                .resume_run(op.run_id, &op.operator)
                .instrument(op.span.clone())
                .await
        }
    }
    .map_err(ApiError::from)?;
    op.show(op.run_id).await
}

pub async fn skip(
    surgery: Surgery<'_>,
    step: String,
    output: Option<Json<Value>>,
) -> async_graphql::Result<Run> {
    let op = surgery.authorise("skipping a step")?;
    let output = output.map_or(Value::Null, |json| json.0);
    op.api
        .runtime()?
        .skip_step(op.run_id, &step, output, &op.operator)
        .instrument(op.span.clone())
        .await
        .map_err(ApiError::from)?;
    op.show(op.run_id).await
}

/// Returns the fork (its `forkedFrom` is the source).
pub async fn fork(
    surgery: Surgery<'_>,
    step: String,
    version: Option<String>,
    input: Option<Json<Value>>,
) -> async_graphql::Result<Run> {
    let op = surgery.authorise("forking a run")?;
    let request = ForkRequest {
        run_id: op.run_id,
        step,
        version,
        input: input.map(|json| json.0),
        operator: op.operator.clone(),
    };
    let started = op
        .api
        .runtime()?
        .fork_run(request)
        .instrument(op.span.clone())
        .await
        .map_err(ApiError::from)?;
    op.show(started.run_id).await
}
