//! `imx replay check`: can a new version of a workflow take over the runs in
//! flight on another version? A pure comparison of the two models and the
//! run's folded state, and the report the CLI prints.

use serde::Serialize;
use uuid::Uuid;

pub use engine::core::compat::{Incompatibility, compatibility, removed_steps};

/// One run in flight and what the check found.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RunCheck {
    pub run_id: Uuid,
    pub version: String,
    pub status: String,
    pub seq: u64,
    /// False when the run's version is not in the registry: only removed
    /// steps could be checked.
    pub old_model_known: bool,
    pub incompatibilities: Vec<Incompatibility>,
}

impl RunCheck {
    pub fn is_safe(&self) -> bool {
        self.incompatibilities.is_empty()
    }
}

/// The text `imx replay check` prints.
pub fn render_report(name: &str, new_version: &str, runs: &[RunCheck]) -> String {
    let mut text = format!("workflow {name}, new version {new_version}\n");
    if runs.is_empty() {
        text.push_str("no run in flight on another version: safe\n");
        return text;
    }
    let affected = runs.iter().filter(|run| !run.is_safe()).count();
    text.push_str(&format!(
        "{} run(s) in flight on other versions, {affected} affected\n",
        runs.len()
    ));
    for run in runs {
        let verdict = if run.is_safe() {
            "can take over"
        } else {
            "CANNOT take over"
        };
        text.push_str(&format!(
            "\nrun {} ({}, {} at seq {}): {verdict}\n",
            run.run_id, run.version, run.status, run.seq
        ));
        if !run.old_model_known {
            text.push_str("  note: the run's version is not in the registry; only removed steps were checked\n");
        }
        for incompatibility in &run.incompatibilities {
            text.push_str(&format!("  - {incompatibility}\n"));
        }
    }
    text
}
