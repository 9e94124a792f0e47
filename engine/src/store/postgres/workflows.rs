//! PostgreSQL side of the workflow registry: idempotent registration, lookup
//! of a version or of the latest one, listing.

use super::PostgresStore;
use crate::store::decode;
use crate::store::dialect::Dialect;
use crate::store::error::Error;
use crate::store::registry::{self, NewWorkflow, WorkflowRecord, WorkflowRegistry};

const COLUMNS: &str = <sqlx::Postgres as Dialect>::WORKFLOW_COLUMNS;

impl WorkflowRegistry for PostgresStore {
    async fn register_workflow(&self, workflow: NewWorkflow) -> Result<WorkflowRecord, Error> {
        workflow.check()?;
        let now = self.now();
        // Re-registering an existing version keeps its row and makes it the latest.
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "INSERT INTO workflows (name, version, source, model, registered_at, registration) \
             VALUES ($1, $2, $3, $4::json, $5, nextval('workflows_registration')) \
             ON CONFLICT (name, version) DO UPDATE SET registered_at = EXCLUDED.registered_at, \
             registration = EXCLUDED.registration RETURNING {COLUMNS}"
        )))
        .bind(&workflow.name)
        .bind(&workflow.version)
        .bind(&workflow.source)
        .bind(workflow.model.to_string())
        .bind(now)
        .fetch_one(&self.pool)
        .await?;
        decode::workflow(&row)
    }

    async fn get_workflow(
        &self,
        name: &str,
        version: Option<&str>,
    ) -> Result<Option<WorkflowRecord>, Error> {
        registry::get_workflow(self, name, version).await
    }

    async fn list_workflows(&self) -> Result<Vec<WorkflowRecord>, Error> {
        registry::list_workflows(self).await
    }

    async fn newest_workflow_versions(&self) -> Result<Vec<(String, String)>, Error> {
        registry::newest_workflow_versions(self).await
    }
}
