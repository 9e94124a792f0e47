//! `imx workflows register FILE|DIR…` and `imx workflows list`: put workflow
//! versions into the configured store without starting a run, and show what
//! it holds. Registration checks the files as `imx validate` does (and
//! resolves `uses: workflow` against the store too) and writes nothing
//! unless every file is valid.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand};
use engine::core::dsl;
use engine::runtime::Config;
use engine::store::{Store, WorkflowRecord, WorkflowRegistry};
use serde::Serialize;

use crate::cli::ExecutorArgs;
use crate::run::{Refused, emit};
use crate::serve::open_runtime;
use crate::validate::{judge, print_diagnostics};

#[derive(Debug, Args)]
pub struct WorkflowsArgs {
    #[command(subcommand)]
    pub command: WorkflowsCommand,
}

#[derive(Debug, Subcommand)]
pub enum WorkflowsCommand {
    /// Register workflow files (folders: every *.yaml/*.yml in them); nothing is written unless all are valid.
    Register(RegisterArgs),
    /// The registered workflows: each name's newest version and how many versions it has.
    List(ListArgs),
}

#[derive(Debug, Args)]
pub struct RegisterArgs {
    /// Workflow files or folders.
    #[arg(required = true)]
    pub paths: Vec<PathBuf>,
    /// Print what was registered as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    /// Print the list as JSON.
    #[arg(long)]
    pub json: bool,
}

/// What registering one file did.
#[derive(Debug, Serialize)]
struct Registration {
    file: String,
    name: String,
    version: String,
    /// `new` (first version of the name), `new_version`, or `unchanged`
    /// (this version was already the newest).
    change: &'static str,
}

/// One line of `imx workflows list`.
#[derive(Debug, Serialize)]
struct Listed {
    name: String,
    /// The newest version: what `imx run NAME` and the triggers use.
    version: String,
    registered_at: chrono::DateTime<chrono::Utc>,
    versions: usize,
}

pub async fn workflows(url: &str, args: &WorkflowsArgs) -> anyhow::Result<ExitCode> {
    match &args.command {
        WorkflowsCommand::Register(register_args) => register(url, register_args).await,
        WorkflowsCommand::List(list_args) => list(url, list_args).await,
    }
}

async fn register(url: &str, args: &RegisterArgs) -> anyhow::Result<ExitCode> {
    let runtime = open_runtime(url, Config::default(), ExecutorArgs::default()).await?;
    let store = runtime.store();
    let judged = judge(&args.paths, known(store).await?)?;
    let error_count = print_diagnostics(&judged);
    if error_count > 0 {
        return Err(Refused(format!(
            "{error_count} problem(s) in {} file(s); nothing was registered",
            judged.len()
        ))
        .into());
    }
    if judged.is_empty() {
        return Err(Refused("no workflow files (*.yaml, *.yml) found".to_owned()).into());
    }
    let mut done = Vec::with_capacity(judged.len());
    for file in &judged {
        let (Some(source), Some(workflow)) = (&file.source, &file.workflow) else {
            continue;
        };
        let newest = store.get_workflow(&workflow.name, None).await?;
        let registered = runtime.register_source(source).await?;
        let change = match newest {
            None => "new",
            Some(record) if record.version == registered.version => "unchanged",
            Some(_) => "new_version",
        };
        done.push(Registration {
            file: file.file.display().to_string(),
            name: registered.name,
            version: registered.version,
            change,
        });
    }
    if args.json {
        emit(&serde_json::to_string_pretty(&done)?);
    } else {
        for registration in &done {
            emit(&format!(
                "{}\t{}\t{}\t{}",
                registration.name, registration.version, registration.change, registration.file
            ));
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The store's newest version of every workflow, as a catalog for the checks
/// across workflows (a child registered earlier resolves).
async fn known(store: &Store) -> anyhow::Result<dsl::Catalog> {
    let mut catalog = dsl::Catalog::new();
    for record in newest(store.list_workflows().await?) {
        let schema = record.model.get("input").cloned().filter(|v| !v.is_null());
        catalog.insert(record.name, schema);
    }
    Ok(catalog)
}

/// The first record of each name (the list is latest first within a name).
fn newest(records: Vec<WorkflowRecord>) -> Vec<WorkflowRecord> {
    let mut seen: BTreeSet<String> = BTreeSet::new();
    records
        .into_iter()
        .filter(|record| seen.insert(record.name.clone()))
        .collect()
}

async fn list(url: &str, args: &ListArgs) -> anyhow::Result<ExitCode> {
    let runtime = open_runtime(url, Config::default(), ExecutorArgs::default()).await?;
    let records = runtime.store().list_workflows().await?;
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for record in &records {
        *counts.entry(record.name.clone()).or_default() += 1;
    }
    let listed: Vec<Listed> = newest(records)
        .into_iter()
        .map(|record| Listed {
            versions: counts.get(&record.name).copied().unwrap_or(1),
            name: record.name,
            version: record.version,
            registered_at: record.registered_at,
        })
        .collect();
    if args.json {
        emit(&serde_json::to_string_pretty(&listed)?);
        return Ok(ExitCode::SUCCESS);
    }
    if listed.is_empty() {
        eprintln!("no workflows registered");
        return Ok(ExitCode::SUCCESS);
    }
    emit("NAME\tVERSION\tVERSIONS\tREGISTERED");
    for entry in &listed {
        emit(&format!(
            "{}\t{}\t{}\t{}",
            entry.name,
            entry.version,
            entry.versions,
            entry
                .registered_at
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        ));
    }
    Ok(ExitCode::SUCCESS)
}
