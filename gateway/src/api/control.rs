//! What the API asks of the runtime: the workflow registry and the commands
//! that change runs. A trait, so the API is built and tested on its own and
//! the runtime (engine::runtime) plugs in through one adapter.

use chrono::{DateTime, Utc};
use futures_util::future::BoxFuture;
use serde_json::Value;
use uuid::Uuid;

/// A registered workflow version.
#[derive(Clone, Debug, PartialEq)]
pub struct WorkflowRecord {
    pub name: String,
    /// `sha256:…` of the canonical form.
    pub version: String,
    pub source: String,
    pub registered_at: DateTime<Utc>,
}

/// Why the runtime refused a command.
#[derive(Clone, Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ControlError {
    #[error("{0}")]
    NotFound(String),
    /// Bad input: run input against the workflow's schema, unknown step, …
    #[error("{0}")]
    Invalid(String),
    /// The run is not in a state that allows it (already finished, not waiting …).
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Unavailable(String),
    #[error("{0}")]
    Limit(String),
    /// A bug or corrupt data; details go to the log.
    #[error("{0}")]
    Internal(String),
}

/// Result of starting a run.
#[derive(Clone, Debug, PartialEq)]
pub struct Started {
    pub run_id: Uuid,
    /// False when the idempotency key named an existing run.
    pub created: bool,
}

/// An approval decision on one waiting step.
#[derive(Clone, Debug, PartialEq)]
pub struct Decision {
    pub run_id: Uuid,
    pub step: String,
    pub index: Option<u32>,
    pub by: String,
    pub comment: Option<String>,
}

/// The runtime as seen by the API. Callers are already authorised.
pub trait Control: Send + Sync + 'static {
    fn list_workflows(&self) -> BoxFuture<'_, Result<Vec<WorkflowRecord>, ControlError>>;
    /// The newest version when `version` is `None`.
    fn get_workflow<'a>(
        &'a self,
        name: &'a str,
        version: Option<&'a str>,
    ) -> BoxFuture<'a, Result<Option<WorkflowRecord>, ControlError>>;
    /// Registers a source that already passed `dsl::parse` without errors.
    fn register_workflow<'a>(
        &'a self,
        source: &'a str,
    ) -> BoxFuture<'a, Result<WorkflowRecord, ControlError>>;
    fn start_run<'a>(
        &'a self,
        workflow: &'a str,
        version: Option<&'a str>,
        input: Value,
        idempotency_key: Option<String>,
    ) -> BoxFuture<'a, Result<Started, ControlError>>;
    fn cancel_run<'a>(
        &'a self,
        run_id: Uuid,
        by: &'a str,
        reason: Option<String>,
    ) -> BoxFuture<'a, Result<(), ControlError>>;
    /// Re-runs the failed and skipped steps of a failed run.
    fn retry_run<'a>(
        &'a self,
        run_id: Uuid,
        by: &'a str,
    ) -> BoxFuture<'a, Result<(), ControlError>>;
    fn approve(&self, decision: Decision) -> BoxFuture<'_, Result<(), ControlError>>;
    fn reject(&self, decision: Decision) -> BoxFuture<'_, Result<(), ControlError>>;
    /// The durations of the runtime's store appends, for `imx_append_seconds`;
    /// `None` when there is no runtime to time.
    fn append_timings(&self) -> Option<tokio::sync::broadcast::Receiver<std::time::Duration>> {
        None
    }
}

impl From<ControlError> for super::error::ApiError {
    fn from(error: ControlError) -> Self {
        use super::error::{ApiError, Code};
        let code = match &error {
            ControlError::NotFound(_) => Code::NotFound,
            ControlError::Invalid(_) => Code::Validation,
            ControlError::Conflict(_) => Code::Conflict,
            ControlError::Unavailable(_) => Code::Unavailable,
            ControlError::Limit(_) => Code::Limit,
            ControlError::Internal(_) => Code::Internal,
        };
        ApiError::new(code, error.to_string())
    }
}
