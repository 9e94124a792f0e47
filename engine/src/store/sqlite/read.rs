//! The SQLite read models: runs and steps by id or idempotency key, and
//! keyset pages of runs (the query and the page cut are shared, page.rs).

use super::{SqliteStore, time_text, uuid_text};
use crate::store::decode;
use crate::store::error::Error;
use crate::store::page::{self, Direction, Filter};
use crate::store::prepare;
use crate::store::read_models::{NewerRunsQuery, ReadModels};
use crate::store::types::*;

const RUN_COLUMNS: &str = "r.run_id, r.workflow, r.version, r.status, r.input, r.output, r.error, \
     r.parent_run_id, r.idempotency_key, r.created_at, r.updated_at, \
     (SELECT MAX(seq) FROM events e WHERE e.run_id = r.run_id) AS last_seq";

/// A cursor in SQLite's column types.
fn cursor(after: Option<&RunCursor>) -> Option<(String, String)> {
    after.map(|after| (time_text(after.created_at), uuid_text(after.run_id)))
}

impl ReadModels for SqliteStore {
    async fn get_run(&self, run_id: RunId) -> Result<Option<RunRecord>, Error> {
        let sql = format!("SELECT {RUN_COLUMNS} FROM runs r WHERE r.run_id = ?1");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(uuid_text(run_id))
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(decode::run).transpose()
    }

    async fn find_run_by_key(&self, key: &str) -> Result<Option<RunRecord>, Error> {
        let sql = format!("SELECT {RUN_COLUMNS} FROM runs r WHERE r.idempotency_key = ?1");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(key)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(decode::run).transpose()
    }

    async fn get_steps(&self, run_id: RunId) -> Result<Vec<StepRow>, Error> {
        let rows = sqlx::query(
            "SELECT run_id, step_id, status, attempts, output, error, updated_at FROM steps \
             WHERE run_id = ?1 ORDER BY step_id",
        )
        .bind(uuid_text(run_id))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(decode::step).collect()
    }

    async fn list_runs(&self, query: &RunQuery) -> Result<Page<RunRecord, RunCursor>, Error> {
        let limit = prepare::page(&self.config, query.limit)?;
        let filter = Filter {
            status: query.status.as_deref(),
            workflow: query.workflow.as_deref(),
            direction: Direction::Older,
            limit: limit + 1,
        };
        let rows = page::runs_query::<sqlx::Sqlite, _, _>(
            RUN_COLUMNS,
            filter,
            cursor(query.after.as_ref()),
        )
        .build()
        .fetch_all(&self.pool)
        .await?;
        let items = rows.iter().map(decode::run).collect::<Result<_, _>>()?;
        Ok(page::cut(items, limit))
    }

    async fn run_ids_newer(&self, query: &NewerRunsQuery) -> Result<Vec<RunId>, Error> {
        let filter = Filter {
            status: query.status.as_deref(),
            workflow: query.workflow.as_deref(),
            direction: Direction::Newer,
            limit: i64::from(query.limit.min(self.config.page_size_max)),
        };
        let rows = page::runs_query::<sqlx::Sqlite, _, _>(
            "r.run_id",
            filter,
            cursor(query.after.as_ref()),
        )
        .build()
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| decode::Columns::uuid(row, "run_id"))
            .collect()
    }
}
