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

/// A file and its source and parse result, or why it could not be read.
type Checked<'a> = (&'a PathBuf, Result<(String, dsl::Parsed), String>);

pub fn validate(args: &ValidateArgs) -> anyhow::Result<ExitCode> {
    let files = collect_workflow_files(&args.paths)?;
    let checked: Vec<Checked<'_>> = files
        .iter()
        .map(|file| {
            let parsed = read_workflow_source(file).map(|source| {
                let parsed = dsl::parse(&source);
                (source, parsed)
            });
            (file, parsed)
        })
        .collect();
    let catalog = catalog(&args.paths, &files, &checked);
    let mut error_count = 0usize;
    let mut names: BTreeMap<String, PathBuf> = BTreeMap::new();
    for (file, result) in &checked {
        let display = file.display().to_string();
        let (source, parsed) = match result {
            Ok(checked) => checked,
            Err(message) => {
                println!(
                    "{}",
                    file_error(dsl::Code::Unreadable, message.clone(), None).render(&display)
                );
                error_count += 1;
                continue;
            }
        };
        let mut diagnostics = parsed.diagnostics.clone();
        if let Some(workflow) = &parsed.workflow {
            diagnostics.extend(dsl::check_calls(source, &catalog));
            if let Some(first) = names.insert(workflow.name.clone(), (*file).clone()) {
                let message = format!(
                    "workflow name `{}` is already used by {}",
                    workflow.name,
                    first.display()
                );
                let hint = Some("workflow names are unique: rename one of them".to_owned());
                diagnostics.push(file_error(dsl::Code::DuplicateWorkflowName, message, hint));
            }
        }
        for diagnostic in &diagnostics {
            println!("{}", diagnostic.render(&display));
        }
        error_count += diagnostics.iter().filter(|d| d.is_error()).count();
    }
    if error_count == 0 {
        eprintln!("imx validate: {} file(s) checked, no problems", files.len());
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!(
            "imx validate: {} file(s) checked, {error_count} problem(s)",
            files.len()
        );
        Ok(ExitCode::FAILURE)
    }
}

/// What `uses: workflow` steps may name: the valid workflows checked, then
/// those in the folder of each file named alone (`imx validate a.yaml`
/// resolves `a`'s children beside it); the first file with a name wins.
fn catalog(paths: &[PathBuf], files: &[PathBuf], checked: &[Checked<'_>]) -> dsl::Catalog {
    let mut catalog = dsl::Catalog::new();
    let mut add = |parsed: &dsl::Parsed| {
        if let Some(workflow) = &parsed.workflow {
            catalog
                .entry(workflow.name.clone())
                .or_insert_with(|| workflow.input.clone());
        }
    };
    for (_, result) in checked {
        if let Ok((_, parsed)) = result {
            add(parsed);
        }
    }
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
            if let Ok(source) = read_workflow_source(file) {
                add(&dsl::parse(&source));
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
fn collect_workflow_files(paths: &[PathBuf]) -> anyhow::Result<Vec<PathBuf>> {
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
