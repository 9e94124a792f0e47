//! `imx runs`, `imx runs show RUN_ID`, `imx runs cancel RUN_ID`, `imx
//! approve` and `imx reject`: read and steer runs in the configured store.

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use engine::runtime::{Config, Error as RuntimeError, Runtime};
use engine::store::prelude::*;
use engine::store::{RunId, RunQuery, Store};
use serde_json::json;

use crate::cli::ExecutorArgs;
use crate::cli::{CancelArgs, DecisionArgs, RunsArgs, ShowArgs};
use crate::run::{Refused, emit};
use crate::serve::open_runtime;

/// The run statuses `--status` accepts.
const RUN_STATUSES: [&str; 7] = [
    "pending",
    "running",
    "waiting",
    "paused",
    "succeeded",
    "failed",
    "cancelled",
];

pub async fn list(url: &str, args: &RunsArgs) -> anyhow::Result<ExitCode> {
    if let Some(status) = &args.status
        && !RUN_STATUSES.contains(&status.as_str())
    {
        anyhow::bail!(
            "unknown run status `{status}`: use one of {}",
            RUN_STATUSES.join(", ")
        );
    }
    let runtime = open_runtime(url, Config::default(), ExecutorArgs::default()).await?;
    let query = RunQuery {
        status: args.status.clone(),
        workflow: args.workflow.clone(),
        after: None,
        limit: args.limit,
    };
    let page = runtime.store().list_runs(&query).await?;
    if args.json {
        let runs: Vec<_> = page
            .items
            .iter()
            .map(|run| {
                json!({
                    "id": run.row.run_id,
                    "workflow": run.row.workflow,
                    "version": run.row.version,
                    "status": run.row.status,
                    "error": run.row.error,
                    "parent": run.row.parent_run_id,
                    "created_at": run.row.created_at,
                    "updated_at": run.row.updated_at,
                })
            })
            .collect();
        emit(&serde_json::to_string_pretty(&runs)?);
        return Ok(ExitCode::SUCCESS);
    }
    if page.items.is_empty() {
        eprintln!("no runs");
        return Ok(ExitCode::SUCCESS);
    }
    emit(&format!(
        "{:<36}  {:<9}  {:<24}  CREATED",
        "ID", "STATUS", "WORKFLOW"
    ));
    for run in &page.items {
        emit(&format!(
            "{:<36}  {:<9}  {:<24}  {}",
            run.row.run_id,
            run.row.status,
            run.row.workflow,
            run.row.created_at.format("%Y-%m-%d %H:%M:%S")
        ));
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn show(url: &str, args: &ShowArgs) -> anyhow::Result<ExitCode> {
    let run_id = parse_run_id(&args.run_id)?;
    let runtime = open_runtime(url, Config::default(), ExecutorArgs::default()).await?;
    let state = runtime.state(run_id).await?;
    let document = state.document();
    if args.json {
        emit(&serde_json::to_string_pretty(&document)?);
        return Ok(ExitCode::SUCCESS);
    }
    emit(&format!("run       {run_id}"));
    emit(&format!("workflow  {} ({})", state.workflow, state.version));
    emit(&format!("status    {}", state.status.as_str()));
    if let Some(error) = &state.failure {
        emit(&format!("error     {error}"));
    }
    emit(&format!("input     {}", state.input));
    if let Some(output) = &state.output {
        emit(&format!("output    {output}"));
    }
    let width = state.steps.keys().map(String::len).max().unwrap_or(4);
    for (id, step) in &state.steps {
        let reason = step.reason.as_deref().unwrap_or_default();
        emit(&format!(
            "  {id:<width$}  {:<9}  attempts {}  {reason}",
            step.status.as_str(),
            step.attempts()
        ));
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn decide(url: &str, args: &DecisionArgs, granted: bool) -> anyhow::Result<ExitCode> {
    let run_id = parse_run_id(&args.run_id)?;
    let by = operator_name(args.by.as_deref());
    // Deciding settles the run: the next steps' inputs are rendered here.
    let runtime = settling_runtime(url).await?;
    let comment = args.comment.clone();
    let state = match granted {
        true => runtime.approve(run_id, &args.step, &by, comment).await?,
        false => runtime.reject(run_id, &args.step, &by, comment).await?,
    };
    let verb = if granted { "approved" } else { "rejected" };
    emit(&format!(
        "{verb} {} of run {run_id}; the run is {}",
        args.step,
        state.status.as_str()
    ));
    Ok(ExitCode::SUCCESS)
}

/// `run.cancel_requested` through the engine's own cancel (the one GraphQL
/// `cancelRun` uses), so that an operator can stop a poison run without
/// the API. An unknown or finished run is refused (exit 2): nothing is written.
pub async fn cancel(url: &str, args: &CancelArgs) -> anyhow::Result<ExitCode> {
    let run_id = parse_run_id(&args.run_id).map_err(|error| Refused(format!("{error:#}")))?;
    let by = operator_name(args.by.as_deref());
    let runtime = open_runtime(url, Config::default(), ExecutorArgs::default()).await?;
    let state = refusing(
        runtime
            .cancel_run(run_id, Some(by), args.reason.clone())
            .await,
    )?;
    emit(&format!(
        "cancel requested for run {run_id}; the run is {}",
        state.status.as_str()
    ));
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn parse_run_id(text: &str) -> anyhow::Result<RunId> {
    text.parse()
        .with_context(|| format!("`{text}` is not a run id (a UUID like 019a…)"))
}

/// Who operates from the command line: `--by`, else `$USER`, else `cli`.
pub(crate) fn operator_name(by: Option<&str>) -> String {
    by.map(str::to_owned)
        .or_else(|| std::env::var("USER").ok())
        .unwrap_or_else(|| "cli".to_owned())
}

/// A runtime for commands that settle a run (approve, reject, surgery): the
/// next steps' inputs are rendered here, in the template sandbox.
pub(crate) async fn settling_runtime(url: &str) -> anyhow::Result<Arc<Runtime<Store>>> {
    let config = Config {
        evaluator: crate::serve::sandbox(&crate::cli::TemplateArgs::default())?,
        ..Config::default()
    };
    open_runtime(url, config, ExecutorArgs::default()).await
}

/// The engine's refusals (an unknown run or step, a state that does not
/// allow the operation, bad input) exit 2 with their message: nothing was
/// written. Other errors are failures.
pub(crate) fn refusing<T>(result: Result<T, RuntimeError>) -> anyhow::Result<T> {
    use RuntimeError as E;
    result.map_err(|error| match error {
        E::RunNotFound { .. }
        | E::RunFinished { .. }
        | E::Store(engine::store::Error::RunNotFound { .. })
        | E::UnknownWorkflow { .. }
        | E::InvalidInput { .. }
        | E::SurgeryRefused { .. }
        | E::UnknownStep { .. }
        | E::ForkIncompatible { .. }
        | E::SurgeryInput { .. }
        | E::NotRetryable { .. } => Refused(error.to_string()).into(),
        other => other.into(),
    })
}
