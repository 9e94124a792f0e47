//! `imx replay export|verify|inspect|check`: the auditor's commands, a thin
//! layer over the `replay` crate (argument parsing, store, output, exit codes).

use std::fs::File;
use std::io::{BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Subcommand};
use engine::core::workflow::Workflow;
use engine::store::Store;
use uuid::Uuid;

#[derive(Debug, Args)]
pub struct ReplayArgs {
    #[command(subcommand)]
    pub command: ReplayCommand,
}

#[derive(Debug, Subcommand)]
pub enum ReplayCommand {
    /// Write the event log (or one run) as JSON Lines to stdout; the head to keep goes to stderr.
    Export {
        /// Only this run's events.
        #[arg(long)]
        run: Option<Uuid>,
        /// Only events after this global position.
        #[arg(long, default_value_t = 0)]
        since: u64,
    },
    /// Recompute every hash chain of an export FILE (offline) or of the store; exit 1 at the first problem.
    Verify {
        file: Option<PathBuf>,
        /// The head recorded at export time: detects a truncated or rewritten tail.
        #[arg(long)]
        expect_head: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// The state of a run as of a seq, rebuilt with the core's own replay, and its timeline.
    Inspect {
        run: Uuid,
        #[arg(long)]
        at: Option<u64>,
        /// Read an export instead of the store.
        #[arg(long)]
        file: Option<PathBuf>,
        #[arg(long)]
        json: bool,
    },
    /// List runs in flight on other versions and whether NEW.yaml could take them over; exit 1 if any is affected.
    Check {
        new: PathBuf,
        /// An old version's YAML, for runs whose version the registry lacks.
        #[arg(long)]
        old: Option<PathBuf>,
        #[arg(long)]
        json: bool,
    },
}

/// Runs `imx replay …` on the store at `url` (the global `--database-url`).
pub fn run(args: ReplayArgs, url: &str) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(dispatch(args, url))
}

async fn open(url: &str) -> anyhow::Result<Store> {
    engine::store::open(url).await.with_context(|| {
        format!(
            "cannot open the store {}",
            crate::serve::without_password(url)
        )
    })
}

async fn dispatch(args: ReplayArgs, url: &str) -> anyhow::Result<ExitCode> {
    match args.command {
        ReplayCommand::Export { run, since } => {
            let store = open(url).await?;
            let mut out = BufWriter::new(std::io::stdout().lock());
            let scope = replay::Scope { run, since };
            let trailer = replay::export(&store, scope, chrono::Utc::now(), &mut out).await?;
            out.flush()?;
            eprintln!(
                "exported {} events up to position {}; keep this head apart from the file:\n{}\n(check later with `imx replay verify FILE --expect-head {}`)",
                trailer.events, trailer.position, trailer.head, trailer.head
            );
            Ok(ExitCode::SUCCESS)
        }
        ReplayCommand::Verify {
            file,
            expect_head,
            json,
        } => {
            let options = replay::Options { expect_head };
            let outcome = match file {
                Some(path) => {
                    let reader = BufReader::new(
                        File::open(&path)
                            .with_context(|| format!("cannot open {}", path.display()))?,
                    );
                    replay::verify_reader(reader, options)
                }
                None => replay::online::verify_store(&open(url).await?, options).await?,
            };
            report_verification(outcome, json)
        }
        ReplayCommand::Inspect {
            run,
            at,
            file,
            json,
        } => {
            let inspection = match file {
                Some(path) => {
                    let reader = BufReader::new(
                        File::open(&path)
                            .with_context(|| format!("cannot open {}", path.display()))?,
                    );
                    replay::inspect::inspect_reader(reader, run, at)?
                }
                None => replay::inspect::inspect_store(&open(url).await?, run, at).await?,
            };
            if json {
                println!("{:#}", inspection.to_json());
            } else {
                print!("{}", inspection.render());
            }
            Ok(ExitCode::SUCCESS)
        }
        ReplayCommand::Check { new, old, json } => check(url, &new, old.as_deref(), json).await,
    }
}

fn report_verification(
    outcome: Result<replay::Summary, replay::Problem>,
    json: bool,
) -> anyhow::Result<ExitCode> {
    match outcome {
        Ok(summary) => {
            if json {
                println!(
                    "{:#}",
                    serde_json::json!({ "ok": true, "summary": summary })
                );
            } else {
                print!("{}", summary.render());
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(problem) => {
            if json {
                println!(
                    "{:#}",
                    serde_json::json!({ "ok": false, "problem": problem })
                );
            }
            // `verify failed: IMX05xx: run … seq … at line …: what`, then what to do.
            eprintln!("verify failed: {problem}\n  hint: {}", problem.fault.hint());
            Ok(ExitCode::FAILURE)
        }
    }
}

fn load_workflow(path: &Path) -> anyhow::Result<Option<Workflow>> {
    let source = crate::validate::read_workflow_source(path)
        .map_err(|message| anyhow::anyhow!("{}: {message}", path.display()))?;
    let parsed = engine::core::dsl::parse(&source);
    for diagnostic in &parsed.diagnostics {
        eprintln!("{}", diagnostic.render(&path.display().to_string()));
    }
    Ok(parsed.workflow)
}

async fn check(url: &str, new: &Path, old: Option<&Path>, json: bool) -> anyhow::Result<ExitCode> {
    let Some(new_workflow) = load_workflow(new)? else {
        return Ok(ExitCode::FAILURE);
    };
    let old_workflow = match old {
        Some(path) => match load_workflow(path)? {
            Some(workflow) => Some(workflow),
            None => return Ok(ExitCode::FAILURE),
        },
        None => None,
    };
    let store = open(url).await?;
    // Old models come from the registry; --old serves versions it lacks.
    let runs = replay::online::check_runs(&store, &new_workflow, old_workflow.as_ref()).await?;
    let version = engine::core::version::version_of(&new_workflow);
    if json {
        println!(
            "{:#}",
            serde_json::json!({ "workflow": new_workflow.name, "version": version, "runs": runs })
        );
    } else {
        print!(
            "{}",
            replay::check::render_report(&new_workflow.name, &version, &runs)
        );
    }
    let affected = runs.iter().any(|run| !run.is_safe());
    Ok(if affected {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}
