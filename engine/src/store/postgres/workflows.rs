//! PostgreSQL side of the workflow registry: idempotent registration, lookup
//! of a version or of the latest one, listing.

use chrono::{DateTime, Utc};
use sqlx::Row;
use sqlx::postgres::PgRow;

use super::PostgresStore;
use super::read::parse_json;
use crate::store::error::Error;
use crate::store::registry::{NewWorkflow, WORKFLOWS_LIST_MAX, WorkflowRecord};

const COLUMNS: &str = "name, version, source, model::text AS model, registered_at";

pub(super) async fn register(
    store: &PostgresStore,
    workflow: &NewWorkflow,
) -> Result<WorkflowRecord, Error> {
    workflow.check()?;
    let now = store.now();
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
    .fetch_one(store.pool())
    .await?;
    record(&row)
}

pub(super) async fn get(
    store: &PostgresStore,
    name: &str,
    version: Option<&str>,
) -> Result<Option<WorkflowRecord>, Error> {
    let row =
        match version {
            Some(version) => {
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "SELECT {COLUMNS} FROM workflows WHERE name = $1 AND version = $2"
                )))
                .bind(name)
                .bind(version)
                .fetch_optional(store.pool())
                .await?
            }
            None => sqlx::query(sqlx::AssertSqlSafe(format!(
                "SELECT {COLUMNS} FROM workflows WHERE name = $1 ORDER BY registration DESC LIMIT 1"
            )))
            .bind(name)
            .fetch_optional(store.pool())
            .await?,
        };
    row.as_ref().map(record).transpose()
}

pub(super) async fn list(store: &PostgresStore) -> Result<Vec<WorkflowRecord>, Error> {
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM workflows ORDER BY name, registration DESC LIMIT $1"
    )))
    .bind(i64::from(WORKFLOWS_LIST_MAX))
    .fetch_all(store.pool())
    .await?;
    rows.iter().map(record).collect()
}

fn record(row: &PgRow) -> Result<WorkflowRecord, Error> {
    Ok(WorkflowRecord {
        name: row.try_get("name")?,
        version: row.try_get("version")?,
        source: row.try_get("source")?,
        model: parse_json(&row.try_get::<String, _>("model")?)?,
        registered_at: row.try_get::<DateTime<Utc>, _>("registered_at")?,
    })
}
