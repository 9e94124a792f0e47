//! The workflow registry: the [`WorkflowRegistry`] trait and its values, a
//! registered (name, version) with the YAML source it came from and its
//! typed model as JSON. Runs are pinned to a version, so every node can load
//! exactly the definition a run started with.

use std::future::Future;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::error::Error;

/// The registered workflow versions.
pub trait WorkflowRegistry: Send + Sync {
    /// Registers a workflow version; registering it again writes no second
    /// row and makes it the latest version of its name.
    fn register_workflow(
        &self,
        workflow: NewWorkflow,
    ) -> impl Future<Output = Result<WorkflowRecord, Error>> + Send;

    /// One version of a workflow, or (`None`) the version registered last.
    fn get_workflow(
        &self,
        name: &str,
        version: Option<&str>,
    ) -> impl Future<Output = Result<Option<WorkflowRecord>, Error>> + Send;

    /// Every registered version, by name, latest first (at most
    /// [`WORKFLOWS_LIST_MAX`]).
    fn list_workflows(&self) -> impl Future<Output = Result<Vec<WorkflowRecord>, Error>> + Send;
}

/// Most rows `list_workflows` returns (every version of every workflow).
pub const WORKFLOWS_LIST_MAX: u32 = 10_000;
/// Largest source text the registry keeps, in bytes (the DSL's own limit).
pub const WORKFLOW_SOURCE_BYTES_MAX: usize = crate::core::dsl::SOURCE_BYTES_MAX;

/// A workflow version to register.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NewWorkflow {
    pub name: String,
    /// `sha256:…` of the canonical form.
    pub version: String,
    /// The YAML the author wrote.
    pub source: String,
    /// The typed `Workflow` model as JSON (its canonical serde form).
    pub model: Value,
}

/// A registered workflow version.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WorkflowRecord {
    pub name: String,
    pub version: String,
    pub source: String,
    pub model: Value,
    /// When this version was (last) registered.
    pub registered_at: DateTime<Utc>,
}

impl NewWorkflow {
    pub(crate) fn check(&self) -> Result<(), Error> {
        if self.name.is_empty() || self.version.is_empty() {
            return Err(Error::invalid(
                "a workflow needs a non-empty name and version",
            ));
        }
        if self.source.len() > WORKFLOW_SOURCE_BYTES_MAX {
            return Err(Error::limit(
                format!("the source of workflow `{}`", self.name),
                self.source.len(),
                WORKFLOW_SOURCE_BYTES_MAX,
                "WORKFLOW_SOURCE_BYTES_MAX",
            ));
        }
        Ok(())
    }
}
