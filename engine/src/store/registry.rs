//! The workflow registry: the [`WorkflowRegistry`] trait and its values, a
//! registered (name, version) with the YAML source it came from and its
//! typed model as JSON. Runs are pinned to a version, so every node can load
//! exactly the definition a run started with.

use std::future::Future;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use sqlx::{Encode, Executor, Row, Type};

use super::decode;
use super::dialect::{Dialect, SqlStore};
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

    /// The version registered last of every workflow, as (name, version),
    /// by name (at most [`WORKFLOWS_LIST_MAX`]): what triggers follow. No
    /// sources, so nodes can poll it cheaply.
    fn newest_workflow_versions(
        &self,
    ) -> impl Future<Output = Result<Vec<(String, String)>, Error>> + Send;
}

/// [`WorkflowRegistry::get_workflow`] for every backend (registration
/// differs per backend: a sequence or `MAX + 1` under the write lock).
pub(super) async fn get_workflow<S, D>(
    store: &S,
    name: &str,
    version: Option<&str>,
) -> Result<Option<WorkflowRecord>, Error>
where
    S: SqlStore<Db = D>,
    D: Dialect,
    for<'c> &'c mut D::Connection: Executor<'c, Database = D>,
    for<'q> String: Encode<'q, D> + Type<D>,
{
    let columns = D::WORKFLOW_COLUMNS;
    let query = match version {
        Some(version) => sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {columns} FROM workflows WHERE name = $1 AND version = $2"
        )))
        .bind(name.to_owned())
        .bind(version.to_owned()),
        None => sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {columns} FROM workflows WHERE name = $1 ORDER BY registration DESC LIMIT 1"
        )))
        .bind(name.to_owned()),
    };
    let row = query.fetch_optional(store.pool()).await?;
    row.as_ref().map(decode::workflow).transpose()
}

/// [`WorkflowRegistry::list_workflows`] for every backend.
pub(super) async fn list_workflows<S, D>(store: &S) -> Result<Vec<WorkflowRecord>, Error>
where
    S: SqlStore<Db = D>,
    D: Dialect,
    for<'c> &'c mut D::Connection: Executor<'c, Database = D>,
    for<'q> i64: Encode<'q, D> + Type<D>,
{
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {} FROM workflows ORDER BY name, registration DESC LIMIT $1",
        D::WORKFLOW_COLUMNS
    )))
    .bind(i64::from(WORKFLOWS_LIST_MAX))
    .fetch_all(store.pool())
    .await?;
    rows.iter().map(decode::workflow).collect()
}

/// [`WorkflowRegistry::newest_workflow_versions`] for every backend.
pub(super) async fn newest_workflow_versions<S, D>(
    store: &S,
) -> Result<Vec<(String, String)>, Error>
where
    S: SqlStore<Db = D>,
    D: Dialect,
    for<'c> &'c mut D::Connection: Executor<'c, Database = D>,
    for<'q> i64: Encode<'q, D> + Type<D>,
    for<'r> String: sqlx::Decode<'r, D> + Type<D>,
    usize: sqlx::ColumnIndex<D::Row>,
{
    let rows = sqlx::query(
        "SELECT name, version FROM workflows w WHERE registration = \
         (SELECT MAX(registration) FROM workflows n WHERE n.name = w.name) \
         ORDER BY name LIMIT $1",
    )
    .bind(i64::from(WORKFLOWS_LIST_MAX))
    .fetch_all(store.pool())
    .await?;
    rows.iter()
        .map(|row| Ok((row.try_get(0)?, row.try_get(1)?)))
        .collect()
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
