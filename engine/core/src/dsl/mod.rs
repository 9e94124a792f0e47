//! The workflow DSL: YAML source text to a validated [`Workflow`], with every
//! problem reported at once, each with a stable code and a position.
//!
//! Stages: `yaml` (text to a positioned tree, bounded), `parse`/`step`/
//! `trigger`/`with` (tree to model, checking keys, types and values), then
//! `validate` (graph and templates). Pure: no I/O.

mod calls;
mod dag;
mod diagnostic;
pub mod duration;
mod fields;
mod habits;
mod matrix;
mod parse;
mod step;
mod trigger;
mod validate;
mod with;
pub mod yaml;

pub use calls::{Catalog, check_calls};
pub use dag::{CYCLES_REPORTED_MAX, HINTED_DIAGNOSTICS_MAX, STEP_IDS_IN_HINT_MAX};
pub use diagnostic::{Code, Diagnostic, Severity};
pub use matrix::MATRIX_AXES_MAX;
pub use parse::{
    NAME_BYTES_MAX, RETRY_MAX_ATTEMPTS_MAX, RETRY_MULTIPLIER_MAX, TRIGGERS_MAX, VARS_MAX,
};
pub use step::{EDGES_MAX, FOR_EACH_MAX_PARALLEL_MAX, NEEDS_MAX, STEP_ID_BYTES_MAX, STEPS_MAX};
pub use trigger::{
    CRON_INPUT_ROOTS, KAFKA_INPUT_ROOTS, TOPIC_CHARS_MAX, TRIGGER_ID_BYTES_MAX, WEBHOOK_INPUT_ROOTS,
};
pub use validate::{RUN_FIELDS, SCOPE_ROOTS, STEP_FIELDS};
pub use with::HTTP_METHODS;
pub use yaml::{
    SOURCE_BYTES_MAX, YAML_ALIAS_REPLAYED_EVENTS_MAX, YAML_ALIASES_MAX, YAML_DEPTH_MAX,
    YAML_EVENTS_MAX, YAML_NODES_MAX,
};

use crate::workflow::Workflow;

/// The result of [`parse`]: the workflow when there is no error, and every diagnostic.
#[derive(Debug, Clone)]
pub struct Parsed {
    /// `Some` iff no diagnostic has error severity.
    pub workflow: Option<Workflow>,
    /// Sorted by position; warnings included.
    pub diagnostics: Vec<Diagnostic>,
}

impl Parsed {
    pub fn has_errors(&self) -> bool {
        self.diagnostics.iter().any(Diagnostic::is_error)
    }
}

/// Most diagnostics returned for one source; the last slot says how many more there were.
pub const DIAGNOSTICS_MAX: usize = 200;

/// Keeps the first [`DIAGNOSTICS_MAX`] - 1 diagnostics and a note about the rest,
/// so a pathological file cannot flood a terminal or an API response.
fn truncate(diagnostics: &mut Vec<Diagnostic>) {
    if diagnostics.len() <= DIAGNOSTICS_MAX {
        return;
    }
    let hidden = diagnostics.len() - (DIAGNOSTICS_MAX - 1);
    let first_hidden = diagnostics[DIAGNOSTICS_MAX - 1].clone();
    let any_error_hidden = diagnostics[DIAGNOSTICS_MAX - 1..]
        .iter()
        .any(Diagnostic::is_error);
    diagnostics.truncate(DIAGNOSTICS_MAX - 1);
    diagnostics.push(Diagnostic {
        code: Code::LimitExceeded,
        severity: if any_error_hidden {
            Severity::Error
        } else {
            Severity::Warning
        },
        message: format!(
            "{hidden} more problems not shown (at most {DIAGNOSTICS_MAX} are reported)"
        ),
        hint: Some("fix the ones above and validate again".to_owned()),
        line: first_hidden.line,
        column: first_hidden.column,
    });
}

/// Parses and validates a workflow source.
pub fn parse(source: &str) -> Parsed {
    let mut sink = fields::Sink::default();
    let workflow = match yaml::parse(source) {
        Ok(root) => {
            let (workflow, sources) = parse::document(&root, &mut sink);
            validate::validate(&mut sink, &sources);
            Some(workflow)
        }
        Err(yaml::Error::Syntax { message, pos }) => {
            sink.error(Code::YamlSyntax, pos, message, None);
            None
        }
        Err(yaml::Error::Limit { message, pos }) => {
            let hint = Some(
                "workflows are small documents; remove deep nesting and alias chains".to_owned(),
            );
            sink.error(Code::YamlLimit, pos, message, hint);
            None
        }
    };
    let mut diagnostics = sink.diagnostics;
    diagnostics.sort_by_key(|d| (d.line, d.column, d.code));
    diagnostics.dedup();
    truncate(&mut diagnostics);
    let has_errors = diagnostics.iter().any(Diagnostic::is_error);
    Parsed {
        workflow: workflow.filter(|_| !has_errors),
        diagnostics,
    }
}
