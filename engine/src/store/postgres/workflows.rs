//! PostgreSQL side of the workflow registry: idempotent registration, lookup
//! of a version or of the latest one, listing.

use super::PostgresStore;
use crate::store::decode;
use crate::store::error::Error;
use crate::store::registry::{NewWorkflow, WORKFLOWS_LIST_MAX, WorkflowRecord, WorkflowRegistry};

const COLUMNS: &str = "name, version, source, model::text AS model, registered_at";

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
        let query = match version {
            Some(version) => sqlx::query(sqlx::AssertSqlSafe(format!(
                "SELECT {COLUMNS} FROM workflows WHERE name = $1 AND version = $2"
            )))
            .bind(name)
            .bind(version),
            None => sqlx::query(sqlx::AssertSqlSafe(format!(
                "SELECT {COLUMNS} FROM workflows WHERE name = $1 ORDER BY registration DESC LIMIT 1"
            )))
            .bind(name),
        };
        let row = query.fetch_optional(&self.pool).await?;
        row.as_ref().map(decode::workflow).transpose()
    }

    async fn list_workflows(&self) -> Result<Vec<WorkflowRecord>, Error> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM workflows ORDER BY name, registration DESC LIMIT $1"
        )))
        .bind(i64::from(WORKFLOWS_LIST_MAX))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(decode::workflow).collect()
    }
}
