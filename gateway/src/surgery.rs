//! `imx runs rewind|fork|pause|resume|skip`: run surgery from the command
//! line, through the engine's own operations (the ones GraphQL uses) on the
//! configured store. Who operates (`--by`, default `$USER`) and why
//! (`--reason`, required) are recorded in the run's history. A refusal (an
//! unknown run or step, a state that does not allow it, an incompatible
//! version) exits 2 and writes nothing.

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use engine::core::state::RunState;
use engine::runtime::{Config, Error as RuntimeError, ForkRequest, Operator, Runtime};
use engine::store::{RunId, Store};

use crate::cli::{ExecutorArgs, ForkArgs, SkipArgs, StepSurgeryArgs, SurgeryArgs, TemplateArgs};
use crate::run::{Refused, emit, parse_json_arg};
use crate::serve::{open_runtime, sandbox};

pub async fn rewind(url: &str, args: &StepSurgeryArgs) -> anyhow::Result<ExitCode> {
    let (runtime, run_id, operator) = prepare(url, &args.surgery).await?;
    let state = refusing(runtime.rewind_run(run_id, &args.step, &operator).await)?;
    report(
        &args.surgery,
        &state,
        &format!("rewound run {run_id} to {}", args.step),
    )
}

pub async fn pause(url: &str, args: &SurgeryArgs, pause: bool) -> anyhow::Result<ExitCode> {
    let (runtime, run_id, operator) = prepare(url, args).await?;
    let (state, verb) = match pause {
        true => (runtime.pause_run(run_id, &operator).await, "paused"),
        false => (runtime.resume_run(run_id, &operator).await, "resumed"),
    };
    report(args, &refusing(state)?, &format!("{verb} run {run_id}"))
}

pub async fn skip(url: &str, args: &SkipArgs) -> anyhow::Result<ExitCode> {
    let output = match &args.output {
        Some(output) => parse_json_arg("--output", output)?,
        None => serde_json::Value::Null,
    };
    let (runtime, run_id, operator) = prepare(url, &args.surgery).await?;
    let state = refusing(
        runtime
            .skip_step(run_id, &args.step, output, &operator)
            .await,
    )?;
    report(
        &args.surgery,
        &state,
        &format!("skipped {} of run {run_id}", args.step),
    )
}

pub async fn fork(url: &str, args: &ForkArgs) -> anyhow::Result<ExitCode> {
    let input = args
        .input
        .as_deref()
        .map(|input| parse_json_arg("--input", input))
        .transpose()?;
    let (runtime, run_id, operator) = prepare(url, &args.surgery).await?;
    let request = ForkRequest {
        run_id,
        step: args.step.clone(),
        version: args.version.clone(),
        input,
        operator,
    };
    let started = refusing(runtime.fork_run(request).await)?;
    let state = runtime.state(started.run_id).await?;
    report(
        &args.surgery,
        &state,
        &format!(
            "forked run {run_id} at {} into {}",
            args.step, started.run_id
        ),
    )
}

/// The runtime (surgery settles the run: templates render in the sandbox),
/// the run id and the operator.
async fn prepare(
    url: &str,
    args: &SurgeryArgs,
) -> anyhow::Result<(Arc<Runtime<Store>>, RunId, Operator)> {
    let run_id: RunId = args
        .run_id
        .parse()
        .with_context(|| format!("`{}` is not a run id (a UUID like 019a…)", args.run_id))
        .map_err(|error| Refused(format!("{error:#}")))?;
    let by = args
        .by
        .clone()
        .or_else(|| std::env::var("USER").ok())
        .unwrap_or_else(|| "cli".to_owned());
    let config = Config {
        evaluator: sandbox(&TemplateArgs::default())?,
        ..Config::default()
    };
    let runtime = open_runtime(url, config, ExecutorArgs::default()).await?;
    let operator = Operator {
        by,
        reason: args.reason.clone(),
    };
    Ok((runtime, run_id, operator))
}

/// Refusals exit 2 with their message; other errors are failures.
fn refusing<T>(result: Result<T, RuntimeError>) -> anyhow::Result<T> {
    use RuntimeError as E;
    result.map_err(|error| match error {
        E::RunNotFound { .. }
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

fn report(args: &SurgeryArgs, state: &RunState, done: &str) -> anyhow::Result<ExitCode> {
    if args.json {
        emit(&serde_json::to_string_pretty(&state.document())?);
    } else {
        emit(&format!("{done}; the run is {}", state.status.as_str()));
    }
    Ok(ExitCode::SUCCESS)
}
