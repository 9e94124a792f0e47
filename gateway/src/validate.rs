//! `imx validate` and `imx graph`: read workflow files, run the DSL validator,
//! and print diagnostics or the DAG.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use engine::core::dsl;
use engine::core::graph;
use engine::core::workflow::Workflow;

use crate::cli::{GraphArgs, GraphFormat, ValidateArgs};

/// Largest workflow file `imx` reads (the DSL's own source limit); larger
/// files are reported, not parsed.
pub const WORKFLOW_FILE_BYTES_MAX: u64 = dsl::SOURCE_BYTES_MAX as u64;

pub fn validate(args: &ValidateArgs) -> anyhow::Result<ExitCode> {
    let judged = judge(&args.paths, dsl::Catalog::new())?;
    let error_count = print_diagnostics(&judged);
    if error_count == 0 {
        eprintln!(
            "imx validate: {} file(s) checked, no problems",
            judged.len()
        );
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!(
            "imx validate: {} file(s) checked, {error_count} problem(s)",
            judged.len()
        );
        Ok(ExitCode::FAILURE)
    }
}

/// One workflow file as `imx validate` judges it.
#[derive(Debug)]
pub(crate) struct Judged {
    pub file: PathBuf,
    /// The source text, when the file could be read.
    pub source: Option<String>,
    /// The workflow, when the file has no problem of its own.
    pub workflow: Option<Workflow>,
    /// Its own problems, then those across files.
    pub diagnostics: Vec<dsl::Diagnostic>,
}

/// Reads and checks every workflow file under `paths`, each alone and then
/// across files: unique names, and `uses: workflow` steps against the
/// workflows found, those beside a file named alone, then `known` (what a
/// store already has).
pub(crate) fn judge(paths: &[PathBuf], known: dsl::Catalog) -> anyhow::Result<Vec<Judged>> {
    let files = collect_workflow_files(paths)?;
    let mut judged: Vec<Judged> = files
        .iter()
        .map(|file| match read_workflow_source(file) {
            Ok(source) => {
                let parsed = dsl::parse(&source);
                Judged {
                    file: file.clone(),
                    source: Some(source),
                    workflow: parsed.workflow,
                    diagnostics: parsed.diagnostics,
                }
            }
            Err(message) => Judged {
                file: file.clone(),
                source: None,
                workflow: None,
                diagnostics: vec![file_error(dsl::Code::Unreadable, message, None)],
            },
        })
        .collect();
    let mut catalog = catalog(paths, &files, &judged);
    for (name, schema) in known {
        catalog.entry(name).or_insert(schema);
    }
    let mut names: BTreeMap<String, PathBuf> = BTreeMap::new();
    for judged in &mut judged {
        let (Some(workflow), Some(source)) = (&judged.workflow, &judged.source) else {
            continue;
        };
        let calls = dsl::check_calls(source, &catalog);
        judged.diagnostics.extend(calls);
        if let Some(first) = names.insert(workflow.name.clone(), judged.file.clone()) {
            let message = format!(
                "workflow name `{}` is already used by {}",
                workflow.name,
                first.display()
            );
            let hint = Some("workflow names are unique: rename one of them".to_owned());
            let diagnostic = file_error(dsl::Code::DuplicateWorkflowName, message, hint);
            judged.diagnostics.push(diagnostic);
        }
    }
    Ok(judged)
}

/// Prints every diagnostic as `FILE:LINE:COL: …`; returns how many are errors.
pub(crate) fn print_diagnostics(judged: &[Judged]) -> usize {
    let mut error_count = 0;
    for judged in judged {
        let display = judged.file.display().to_string();
        for diagnostic in &judged.diagnostics {
            println!("{}", diagnostic.render(&display));
        }
        error_count += judged.diagnostics.iter().filter(|d| d.is_error()).count();
    }
    error_count
}

/// What `uses: workflow` steps may name: the valid workflows checked, then
/// those in the folder of each file named alone (`imx validate a.yaml`
/// resolves `a`'s children beside it); the first file with a name wins.
fn catalog(paths: &[PathBuf], files: &[PathBuf], judged: &[Judged]) -> dsl::Catalog {
    let mut catalog = dsl::Catalog::new();
    let mut add = |workflow: &Workflow| {
        catalog
            .entry(workflow.name.clone())
            .or_insert_with(|| workflow.input.clone());
    };
    judged
        .iter()
        .filter_map(|judged| judged.workflow.as_ref())
        .for_each(&mut add);
    let folders: BTreeSet<&Path> = paths
        .iter()
        .filter(|path| path.is_file())
        .filter_map(|path| path.parent())
        .map(|parent| {
            if parent.as_os_str().is_empty() {
                Path::new(".")
            } else {
                parent
            }
        })
        .collect();
    for folder in folders {
        let mut beside = Vec::new();
        if collect_from_dir(folder, &mut beside).is_err() {
            continue;
        }
        for file in beside.iter().filter(|file| !files.contains(file)) {
            if let Ok(source) = read_workflow_source(file)
                && let Some(workflow) = dsl::parse(&source).workflow
            {
                add(&workflow);
            }
        }
    }
    catalog
}

pub fn graph(args: &GraphArgs) -> anyhow::Result<ExitCode> {
    let workflow = load_valid_workflow(&args.file)?;
    let text = match args.format {
        GraphFormat::Mermaid => graph::mermaid(&workflow),
        GraphFormat::Dot => graph::dot(&workflow),
    };
    if text.ends_with('\n') {
        print!("{text}");
    } else {
        println!("{text}");
    }
    Ok(ExitCode::SUCCESS)
}

/// Reads and validates one workflow file; every diagnostic is part of the error.
pub fn load_valid_workflow(file: &Path) -> anyhow::Result<Workflow> {
    let display = file.display().to_string();
    let source =
        read_workflow_source(file).map_err(|message| anyhow::anyhow!("{display}: {message}"))?;
    let parsed = dsl::parse(&source);
    match parsed.workflow {
        Some(workflow) => Ok(workflow),
        _ => {
            let rendered: Vec<String> = parsed
                .diagnostics
                .iter()
                .map(|diagnostic| diagnostic.render(&display))
                .collect();
            anyhow::bail!(
                "{display} is not a valid workflow (run `imx validate {display}`):\n{}",
                rendered.join("\n")
            )
        }
    }
}

/// A diagnostic about a whole file, placed at its start.
fn file_error(code: dsl::Code, message: String, hint: Option<String>) -> dsl::Diagnostic {
    dsl::Diagnostic {
        code,
        severity: dsl::Severity::Error,
        message,
        hint,
        line: 1,
        column: 1,
    }
}

/// Reads a workflow file within [`WORKFLOW_FILE_BYTES_MAX`], as UTF-8; the
/// error says what is wrong with the file (the caller names it). The read
/// is bounded whatever the file's metadata says (`/dev/zero` reports 0).
pub(crate) fn read_workflow_source(file: &Path) -> Result<String, String> {
    use imx_gateway::bounded::{Error, read_file};
    let bytes = read_file(file, WORKFLOW_FILE_BYTES_MAX).map_err(|error| match error {
        Error::TooLarge { limit } => {
            format!("file is more than the limit of {limit} bytes; split the workflow")
        }
        other => format!("cannot read file: {other}"),
    })?;
    String::from_utf8(bytes).map_err(|err| {
        format!(
            "file is not UTF-8 (byte {})",
            err.utf8_error().valid_up_to()
        )
    })
}

/// Expands folders into their `*.yaml`/`*.yml` files, sorted, recursively.
pub(crate) fn collect_workflow_files(paths: &[PathBuf]) -> anyhow::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for path in paths {
        if path.is_dir() {
            collect_from_dir(path, &mut files)
                .with_context(|| format!("cannot list {}", path.display()))?;
        } else if path.exists() {
            files.push(path.clone());
        } else {
            anyhow::bail!("{}: no such file or folder", path.display());
        }
    }
    Ok(files)
}

fn collect_from_dir(dir: &Path, files: &mut Vec<PathBuf>) -> std::io::Result<()> {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)?
        .map(|entry| entry.map(|entry| entry.path()))
        .collect::<Result<_, _>>()?;
    entries.sort();
    for entry in entries {
        if entry.is_dir() {
            collect_from_dir(&entry, files)?;
        } else if matches!(
            entry.extension().and_then(|ext| ext.to_str()),
            Some("yaml" | "yml")
        ) {
            files.push(entry);
        }
    }
    Ok(())
}
