//! SQLite side of the workflow registry: idempotent registration, lookup of a
//! version or of the latest one, listing.

use sqlx::Row;
use sqlx::sqlite::SqliteRow;

use super::read::{parse_json, parse_time};
use super::{SqliteStore, time_text};
use crate::store::error::Error;
use crate::store::registry::{NewWorkflow, WORKFLOWS_LIST_MAX, WorkflowRecord};

const COLUMNS: &str = "name, version, source, model, registered_at";

pub(super) async fn register(
    store: &SqliteStore,
    workflow: &NewWorkflow,
) -> Result<WorkflowRecord, Error> {
    workflow.check()?;
    let mut transaction = store.write_transaction().await?;
    let now = store.now();
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
    record(&row)
}

pub(super) async fn get(
    store: &SqliteStore,
    name: &str,
    version: Option<&str>,
) -> Result<Option<WorkflowRecord>, Error> {
    let row =
        match version {
            Some(version) => {
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "SELECT {COLUMNS} FROM workflows WHERE name = ?1 AND version = ?2"
                )))
                .bind(name)
                .bind(version)
                .fetch_optional(store.pool())
                .await?
            }
            None => sqlx::query(sqlx::AssertSqlSafe(format!(
                "SELECT {COLUMNS} FROM workflows WHERE name = ?1 ORDER BY registration DESC LIMIT 1"
            )))
            .bind(name)
            .fetch_optional(store.pool())
            .await?,
        };
    row.as_ref().map(record).transpose()
}

pub(super) async fn list(store: &SqliteStore) -> Result<Vec<WorkflowRecord>, Error> {
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM workflows ORDER BY name, registration DESC LIMIT ?1"
    )))
    .bind(i64::from(WORKFLOWS_LIST_MAX))
    .fetch_all(store.pool())
    .await?;
    rows.iter().map(record).collect()
}

fn record(row: &SqliteRow) -> Result<WorkflowRecord, Error> {
    Ok(WorkflowRecord {
        name: row.try_get("name")?,
        version: row.try_get("version")?,
        source: row.try_get("source")?,
        model: parse_json(&row.try_get::<String, _>("model")?)?,
        registered_at: parse_time(&row.try_get::<String, _>("registered_at")?)?,
    })
}
