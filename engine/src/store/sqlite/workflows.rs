//! SQLite side of the workflow registry: idempotent registration, lookup of a
//! version or of the latest one, listing.

use super::{SqliteStore, time_text};
use crate::store::decode;
use crate::store::dialect::Dialect;
use crate::store::error::Error;
use crate::store::registry::{self, NewWorkflow, WorkflowRecord, WorkflowRegistry};

const COLUMNS: &str = <sqlx::Sqlite as Dialect>::WORKFLOW_COLUMNS;

impl WorkflowRegistry for SqliteStore {
    async fn register_workflow(&self, workflow: NewWorkflow) -> Result<WorkflowRecord, Error> {
        workflow.check()?;
        let mut transaction = self.write_transaction().await?;
        let now = self.now();
        // Re-registering an existing version keeps its row and makes it the latest.
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "INSERT INTO workflows (name, version, source, model, registered_at, registration) \
             VALUES (?1, ?2, ?3, ?4, ?5, (SELECT COALESCE(MAX(registration), 0) + 1 FROM workflows)) \
             ON CONFLICT (name, version) DO UPDATE SET registered_at = excluded.registered_at, \
             registration = excluded.registration RETURNING {COLUMNS}"
        )))
        .bind(&workflow.name)
        .bind(&workflow.version)
        .bind(&workflow.source)
        .bind(workflow.model.to_string())
        .bind(time_text(now))
        .fetch_one(&mut *transaction)
        .await?;
        transaction.commit().await?;
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
