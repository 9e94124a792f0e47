//! `imx runs rewind|fork|pause|resume|skip`: run surgery from the command
//! line, through the engine's own operations (the ones GraphQL uses) on the
//! configured store. Who operates (`--by`, default `$USER`) and why
//! (`--reason`, required) are recorded in the run's history. A refusal (an
//! unknown run or step, a state that does not allow it, an incompatible
//! version) exits 2 and writes nothing.

use std::process::ExitCode;
use std::sync::Arc;

use engine::core::state::RunState;
use engine::runtime::{ForkRequest, Operator, Runtime};
use engine::store::{RunId, Store};

use crate::cli::{ForkArgs, SkipArgs, StepSurgeryArgs, SurgeryArgs};
use crate::run::{Refused, emit, parse_json_arg};
use crate::runs::{operator_name, parse_run_id, refusing, settling_runtime};

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

/// The runtime (surgery settles the run), the run id and the operator.
async fn prepare(
    url: &str,
    args: &SurgeryArgs,
) -> anyhow::Result<(Arc<Runtime<Store>>, RunId, Operator)> {
    let run_id = parse_run_id(&args.run_id).map_err(|error| Refused(format!("{error:#}")))?;
    let runtime = settling_runtime(url).await?;
    let operator = Operator {
        by: operator_name(args.by.as_deref()),
        reason: args.reason.clone(),
    };
    Ok((runtime, run_id, operator))
}

fn report(args: &SurgeryArgs, state: &RunState, done: &str) -> anyhow::Result<ExitCode> {
    if args.json {
        emit(&serde_json::to_string_pretty(&state.document())?);
    } else {
        emit(&format!("{done}; the run is {}", state.status.as_str()));
    }
    Ok(ExitCode::SUCCESS)
}
