//! `imx schedules`: list cron schedules (state, last fire, next fire
//! times), pause and resume them, and backfill a window
//! (docs/triggers-cron.md).

use std::process::ExitCode;

use chrono::{DateTime, Utc};
use clap::{Args, Subcommand};
use engine::runtime::{Config, Error as RuntimeError};
use engine::triggers::cron as scheduler;

use crate::cli::ExecutorArgs;
use crate::run::{Refused, emit};
use crate::serve::open_runtime;

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct SchedulesArgs {
    #[command(subcommand)]
    pub command: Option<SchedulesCommand>,
    /// Print the schedules as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum SchedulesCommand {
    /// Stop a workflow's schedule (or all of its schedules) from firing.
    Pause(PauseArgs),
    /// Let a paused schedule fire again; the ticks of the pause are not caught up.
    Resume(PauseArgs),
    /// Start the runs a schedule would have started in [--from, --to]; running it twice starts nothing new.
    Backfill(BackfillArgs),
}

#[derive(Debug, Args)]
pub struct PauseArgs {
    pub workflow: String,
    /// The trigger id (default: every cron trigger of the workflow).
    pub trigger: Option<String>,
}

#[derive(Debug, Args)]
pub struct BackfillArgs {
    pub workflow: String,
    /// The trigger id (default: every cron trigger of the workflow).
    #[arg(long)]
    pub trigger: Option<String>,
    /// Start of the window (RFC 3339, inclusive).
    #[arg(long)]
    pub from: DateTime<Utc>,
    /// End of the window (RFC 3339, inclusive).
    #[arg(long)]
    pub to: DateTime<Utc>,
    /// Print what was started as JSON.
    #[arg(long)]
    pub json: bool,
}

pub async fn schedules(url: &str, args: &SchedulesArgs) -> anyhow::Result<ExitCode> {
    match &args.command {
        None => list(url, args.json).await,
        Some(SchedulesCommand::Pause(pause)) => set_paused(url, pause, true).await,
        Some(SchedulesCommand::Resume(resume)) => set_paused(url, resume, false).await,
        Some(SchedulesCommand::Backfill(backfill)) => run_backfill(url, backfill).await,
    }
}

async fn list(url: &str, json: bool) -> anyhow::Result<ExitCode> {
    let runtime = open_runtime(url, Config::default(), ExecutorArgs::default()).await?;
    let views = scheduler::list(&runtime).await?;
    if json {
        emit(&serde_json::to_string_pretty(&views)?);
        return Ok(ExitCode::SUCCESS);
    }
    if views.is_empty() {
        eprintln!("no schedules");
        return Ok(ExitCode::SUCCESS);
    }
    let time = |at: Option<DateTime<Utc>>| {
        at.map_or_else(|| "-".to_owned(), |at| at.format("%FT%TZ").to_string())
    };
    emit(&format!(
        "{:<24}  {:<10}  {:<20}  {:<16}  {:<6}  {:<20}  NEXT",
        "WORKFLOW", "TRIGGER", "CRON", "TIMEZONE", "STATE", "LAST FIRE"
    ));
    for view in &views {
        let next: Vec<String> = view.next_fires.iter().map(|at| time(Some(*at))).collect();
        emit(&format!(
            "{:<24}  {:<10}  {:<20}  {:<16}  {:<6}  {:<20}  {}",
            view.workflow,
            view.trigger,
            view.cron,
            view.timezone,
            view.state,
            time(view.last_fire_at),
            next.join(" ")
        ));
    }
    Ok(ExitCode::SUCCESS)
}

async fn set_paused(url: &str, args: &PauseArgs, paused: bool) -> anyhow::Result<ExitCode> {
    let runtime = open_runtime(url, Config::default(), ExecutorArgs::default()).await?;
    let by = std::env::var("USER").unwrap_or_else(|_| "cli".to_owned());
    let by = paused.then_some(by.as_str());
    let changed = scheduler::set_paused(&runtime, &args.workflow, args.trigger.as_deref(), by)
        .await
        .map_err(refused)?;
    let verb = if paused { "paused" } else { "resumed" };
    for trigger in changed {
        emit(&format!("{verb} {} {trigger}", args.workflow));
    }
    Ok(ExitCode::SUCCESS)
}

async fn run_backfill(url: &str, args: &BackfillArgs) -> anyhow::Result<ExitCode> {
    // Starting runs renders their input: templates go to the sandbox.
    let config = Config {
        evaluator: crate::serve::sandbox(&crate::cli::TemplateArgs::default())?,
        ..Config::default()
    };
    let runtime = open_runtime(url, config, ExecutorArgs::default()).await?;
    let report = scheduler::backfill(
        &runtime,
        &args.workflow,
        args.trigger.as_deref(),
        args.from,
        args.to,
    )
    .await
    .map_err(refused)?;
    if args.json {
        emit(&serde_json::to_string_pretty(&report)?);
    } else {
        emit(&format!(
            "{} fires in the window: {} runs started, {} existed already",
            report.fires, report.started, report.existing
        ));
    }
    Ok(ExitCode::SUCCESS)
}

/// Requests the engine refuses are exit 2 (as `imx run`); the rest exit 1.
fn refused(error: RuntimeError) -> anyhow::Error {
    use RuntimeError as E;
    match error {
        E::UnknownWorkflow { .. }
        | E::ScheduleNotFound { .. }
        | E::BackfillTooLarge { .. }
        | E::BackfillWindowInvalid { .. }
        | E::InvalidInput { .. } => Refused(error.to_string()).into(),
        other => other.into(),
    }
}
