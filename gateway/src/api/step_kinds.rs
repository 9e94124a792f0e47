//! The kind (`noop`, `http`, `sleep`…) of the step an event names, for the
//! step duration histogram: events name the step, not its kind, so the kind
//! is looked up in the run's pinned workflow version (cached per version).

use std::collections::HashMap;
use std::sync::Arc;

use engine::core::workflow::Workflow;
use engine::store::prelude::*;
use engine::store::{RecordedEvent, RunId, Store};

/// Runs whose workflow version is remembered; the map is cleared when full.
pub const RUNS_REMEMBERED_MAX: usize = 10_000;
/// Workflow versions whose model is cached; the map is cleared when full.
pub const VERSIONS_CACHED_MAX: usize = 1_000;
/// The label when the kind cannot be found (unknown run, unreadable model).
pub const KIND_UNKNOWN: &str = "step";

/// Looks up step kinds; used by the single log tail task only.
#[derive(Debug)]
pub struct StepKinds {
    store: Arc<Store>,
    /// run -> (workflow name, version).
    runs: HashMap<RunId, (String, String)>,
    /// version -> model.
    versions: HashMap<String, Arc<Workflow>>,
}

impl StepKinds {
    pub fn new(store: Arc<Store>) -> StepKinds {
        StepKinds {
            store,
            runs: HashMap::new(),
            versions: HashMap::new(),
        }
    }

    /// Remembers the workflow version a `run.started` event pins, so that
    /// the run's step results need no store read (one per run, serial in
    /// the tail, was what made the tail fall behind under load).
    pub fn learn(&mut self, started: &RecordedEvent) {
        let field = |name: &str| started.payload.get(name).and_then(|v| v.as_str());
        if let (Some(name), Some(version)) = (field("workflow"), field("version")) {
            if self.runs.len() >= RUNS_REMEMBERED_MAX {
                self.runs.clear();
            }
            self.runs
                .insert(started.run_id, (name.to_owned(), version.to_owned()));
        }
    }

    /// The kind of the step `event` names, or [`KIND_UNKNOWN`].
    pub async fn kind(&mut self, event: &RecordedEvent) -> &'static str {
        let Some(step) = event.payload.get("step").and_then(|v| v.as_str()) else {
            return KIND_UNKNOWN;
        };
        match self.workflow(event.run_id).await {
            Some(workflow) => workflow
                .steps
                .get(step)
                .map_or(KIND_UNKNOWN, |step| step.uses.as_str()),
            None => KIND_UNKNOWN,
        }
    }

    async fn workflow(&mut self, run_id: RunId) -> Option<Arc<Workflow>> {
        if !self.runs.contains_key(&run_id) {
            let record = self.store.get_run(run_id).await.ok().flatten()?;
            if self.runs.len() >= RUNS_REMEMBERED_MAX {
                self.runs.clear();
            }
            self.runs
                .insert(run_id, (record.row.workflow, record.row.version));
        }
        let (name, version) = self.runs.get(&run_id)?.clone();
        if let Some(workflow) = self.versions.get(&version) {
            return Some(Arc::clone(workflow));
        }
        let record = self
            .store
            .get_workflow(&name, Some(&version))
            .await
            .ok()
            .flatten()?;
        let workflow: Workflow = match serde_json::from_value(record.model) {
            Ok(workflow) => workflow,
            Err(error) => {
                tracing::warn!(%error, %name, %version, "workflow model does not load");
                return None;
            }
        };
        if self.versions.len() >= VERSIONS_CACHED_MAX {
            self.versions.clear();
        }
        let workflow = Arc::new(workflow);
        self.versions.insert(version, Arc::clone(&workflow));
        Some(workflow)
    }
}
