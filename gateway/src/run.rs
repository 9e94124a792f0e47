//! `imx run FILE|NAME`: registers a workflow file (or picks a registered
//! name), validates the input, records the start durably and, with
//! `--wait`, carries the run out in this process with live progress.
//!
//! Exit codes: 0 started (or succeeded with `--wait`), 1 the run failed or
//! was cancelled, 2 refused before anything was written (bad file, bad
//! input, unknown workflow), 130 interrupted while waiting (the run goes on
//! in the store).

use std::io::IsTerminal;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use engine::core::dsl;
use engine::core::state::{RunState, RunStatus};
use engine::core::workflow::StepKind;
use engine::runtime::{Config, Runtime, StartRequest};
use engine::store::{RunId, Store};
use serde_json::Value;

use crate::cli::RunArgs;
use crate::progress::Progress;
use crate::serve::{open_runtime, shutdown_signal};

/// Largest `--input` (text or `@FILE`), in bytes: the input is stored in
/// the `run.started` event, whose payload cannot be larger, so a larger
/// input is refused before it is read further or parsed.
pub const INPUT_BYTES_MAX: u64 = engine::store::PAYLOAD_BYTES_MAX as u64;
/// The exit code of a run refused before anything was written.
pub const EXIT_REFUSED: u8 = 2;
/// How often `--wait` looks at the run when nothing in this process changed it.
const WAIT_POLL_MS: u64 = 500;

/// Why `imx run` refused to start: printed as is, exit code 2.
#[derive(Debug)]
pub struct Refused(pub String);

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Refused {}

pub async fn run(url: &str, args: &RunArgs) -> anyhow::Result<ExitCode> {
    let input = parse_input(args.input.as_deref())?;
    let source = read_source(&args.workflow)?;
    let config = Config {
        resume_on_start: false,
        evaluator: crate::serve::sandbox(&args.templates)?,
        ..Config::default()
    };
    let runtime = open_runtime(url, config, args.executors.clone()).await?;
    let (name, version) = match &source {
        Some((file, text)) => {
            check_source(file, text)?;
            let registered = runtime.register_source(text).await.map_err(refused)?;
            (registered.name, Some(registered.version))
        }
        None => (args.workflow.clone(), None),
    };
    // Workers first, so the first tasks are claimed as soon as they exist.
    let handle = match args.wait {
        true => Some(runtime.start().await.context("cannot start the runtime")?),
        false => None,
    };
    let request = StartRequest {
        workflow: name,
        version,
        input,
        idempotency_key: args.idempotency_key.clone(),
        trigger: None,
    };
    let started = runtime.start_run(request).await.map_err(refused)?;
    if started.existing {
        eprintln!(
            "imx run: the idempotency key already names run {}",
            started.run_id
        );
    }
    let Some(handle) = handle else {
        return print_started(&runtime, started.run_id, args.json).await;
    };
    warn_about_outside_work(&runtime, started.run_id).await;
    let outcome = wait(&runtime, started.run_id, args.json).await;
    handle.shutdown().await;
    outcome
}

async fn print_started(
    runtime: &Runtime<Store>,
    run_id: RunId,
    json: bool,
) -> anyhow::Result<ExitCode> {
    if json {
        let state = runtime.state(run_id).await?;
        emit(&serde_json::to_string_pretty(&state.document())?);
    } else {
        emit(&run_id.to_string());
    }
    Ok(ExitCode::SUCCESS)
}

/// Follows the run to its end, showing progress; Ctrl-C leaves it running.
async fn wait(
    runtime: &Arc<Runtime<Store>>,
    run_id: RunId,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let mut progress = Progress::new(std::io::stderr().is_terminal(), run_id);
    let mut changes = runtime.changes();
    let interrupted = shutdown_signal();
    tokio::pin!(interrupted);
    let state = loop {
        let state = runtime.state(run_id).await?;
        progress.update(&state);
        if state.is_finished() {
            break state;
        }
        tokio::select! {
            _ = changes.recv() => {}
            _ = tokio::time::sleep(Duration::from_millis(WAIT_POLL_MS)) => {}
            _ = &mut interrupted => {
                progress.finish();
                eprintln!("imx run: interrupted; run {run_id} goes on in the store (`imx serve` carries it out)");
                return Ok(ExitCode::from(130));
            }
        }
    };
    progress.finish();
    if json {
        emit(&serde_json::to_string_pretty(&state.document())?);
    } else {
        emit(&summary(&state));
    }
    Ok(match state.status {
        RunStatus::Succeeded => ExitCode::SUCCESS,
        _ => ExitCode::FAILURE,
    })
}

/// Steps this process cannot carry out itself: say who will, so that a
/// waiting `imx run --wait` does not look stuck.
async fn warn_about_outside_work(runtime: &Runtime<Store>, run_id: RunId) {
    let Ok(state) = runtime.state(run_id).await else {
        return;
    };
    let Ok((workflow, _)) = runtime
        .workflow(&state.workflow, Some(&state.version))
        .await
    else {
        return;
    };
    for step in workflow.steps.values() {
        match step.uses {
            StepKind::Agent => {
                let queue = step
                    .with
                    .get("queue")
                    .and_then(Value::as_str)
                    .unwrap_or("QUEUE");
                eprintln!(
                    "note: step `{}` waits for an agent: imx agent --queue {queue} -- COMMAND",
                    step.id
                );
            }
            kind if needs_executor(kind) && !runtime.executes(kind) => {
                eprintln!(
                    "note: step `{}` uses `{kind}`, which this process does not execute{}; an `imx serve` that does will carry it out",
                    step.id,
                    how_to_execute(kind)
                );
            }
            _ => {}
        }
    }
}

/// The switch that gives a process the executor of `kind`, as a note's tail.
fn how_to_execute(kind: StepKind) -> String {
    use engine::executor::exec::{ENABLE_EXEC_ENV, ENABLE_EXEC_FLAG};
    use engine::executor::kafka::{KAFKA_BROKERS_ENV, KAFKA_BROKERS_FLAG};
    match kind {
        StepKind::Exec => {
            format!(" (enable it with `{ENABLE_EXEC_FLAG}` or `{ENABLE_EXEC_ENV}=1`)")
        }
        StepKind::KafkaPublish => format!(
            " (no Kafka brokers configured: give `{KAFKA_BROKERS_FLAG} HOST:PORT` or set `{KAFKA_BROKERS_ENV}`)"
        ),
        _ => String::new(),
    }
}

/// Kinds carried out by an executor (the others are the core's or the runtime's).
fn needs_executor(kind: StepKind) -> bool {
    matches!(
        kind,
        StepKind::Http | StepKind::Exec | StepKind::KafkaPublish
    )
}

fn summary(state: &RunState) -> String {
    let id = state.run_id.map(|id| id.to_string()).unwrap_or_default();
    let took = match (state.started_at, state.finished_at) {
        (Some(start), Some(end)) => format!(" in {}", crate::progress::duration_text(end - start)),
        _ => String::new(),
    };
    match &state.failure {
        Some(reason) => format!("run {id} {}{took}: {reason}", state.status.as_str()),
        None => format!("run {id} {}{took}", state.status.as_str()),
    }
}

/// `--input JSON|@FILE`; `{}` when absent.
fn parse_input(input: Option<&str>) -> anyhow::Result<Value> {
    match input {
        Some(input) => parse_json_arg("--input", input),
        None => Ok(Value::Object(Default::default())),
    }
}

/// A JSON value given as `FLAG JSON` or `FLAG @FILE`, at most
/// [`INPUT_BYTES_MAX`] bytes (it is stored in an event); refusals (exit 2)
/// name the flag.
pub fn parse_json_arg(flag: &str, value: &str) -> anyhow::Result<Value> {
    let (text, origin) = match value.strip_prefix('@') {
        Some(file) => {
            use imx_gateway::bounded::{Error, read_file};
            let bytes =
                read_file(Path::new(file), INPUT_BYTES_MAX).map_err(|error| match error {
                    Error::TooLarge { limit } => Refused(format!(
                        "{flag} @{file}: the file is more than the limit of {limit} bytes (the value is stored in an event)"
                    )),
                    other => Refused(format!("{flag} @{file}: cannot read the file: {other}")),
                })?;
            let text = String::from_utf8(bytes)
                .map_err(|error| Refused(format!("{flag} @{file}: not UTF-8 text: {error}")))?;
            (text, format!("{flag} @{file}"))
        }
        None => {
            if value.len() as u64 > INPUT_BYTES_MAX {
                return Err(Refused(format!(
                    "{flag} is {} bytes, more than the limit of {INPUT_BYTES_MAX} bytes (the value is stored in an event)",
                    value.len()
                ))
                .into());
            }
            (value.to_owned(), flag.to_owned())
        }
    };
    serde_json::from_str(&text)
        .map_err(|error| Refused(format!("{origin} is not valid JSON: {error}")).into())
}

/// `Some((file, text))` when `workflow` names a file, `None` for a name.
fn read_source(workflow: &str) -> anyhow::Result<Option<(String, String)>> {
    let path = Path::new(workflow);
    let looks_like_file = workflow.ends_with(".yaml") || workflow.ends_with(".yml");
    if !path.is_file() {
        if looks_like_file || workflow.contains('/') {
            return Err(Refused(format!("{workflow}: no such workflow file")).into());
        }
        return Ok(None);
    }
    let text = crate::validate::read_workflow_source(path)
        .map_err(|message| Refused(format!("{workflow}: {message}")))?;
    Ok(Some((workflow.to_owned(), text)))
}

/// Every problem of the file as `FILE:LINE:COL: error[CODE]: message`.
fn check_source(file: &str, text: &str) -> anyhow::Result<()> {
    let parsed = dsl::parse(text);
    if !parsed.has_errors() {
        return Ok(());
    }
    let problems: Vec<String> = parsed
        .diagnostics
        .iter()
        .filter(|diagnostic| diagnostic.is_error())
        .map(|diagnostic| diagnostic.render(file))
        .collect();
    Err(Refused(format!(
        "{}\n{file}: invalid workflow, nothing was started",
        problems.join("\n")
    ))
    .into())
}

/// Runtime errors that mean "refused, nothing written" become [`Refused`].
fn refused(error: engine::runtime::Error) -> anyhow::Error {
    use engine::runtime::Error as E;
    match error {
        E::InvalidInput { .. }
        | E::UnknownWorkflow { .. }
        | E::InvalidWorkflow { .. }
        | E::InvalidIdempotencyKey { .. }
        | E::Store(engine::store::Error::PayloadTooLarge { .. }) => {
            Refused(error.to_string()).into()
        }
        other => other.into(),
    }
}

/// Writes a line to stdout; a closed pipe (`imx … | head`) is not an error.
pub fn emit(text: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stdout().lock(), "{text}");
}
