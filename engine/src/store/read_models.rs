//! The [`ReadModels`] trait: the run and step projections that appends keep
//! up to date, read by id, by idempotency key, and in keyset pages either
//! way (newest first, or the runs just newer than a cursor). The SQL is the
//! same on both databases: one implementation for every [`SqlStore`].

use std::future::Future;

use sqlx::{Encode, Executor, Type};

use super::decode::{self, Columns};
use super::dialect::{Dialect, SqlStore};
use super::error::Error;
use super::page::{self, Direction, Filter};
use super::prepare;
use super::types::*;

/// Which runs, after which position: backward keyset paging (the API's
/// `last`/`before`).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct NewerRunsQuery {
    pub status: Option<String>,
    pub workflow: Option<String>,
    /// Only runs after this position (newer); `None`: from the oldest run.
    pub after: Option<RunCursor>,
    /// At most this many ids (capped at `page_size_max`).
    pub limit: u32,
}

/// The runs and steps read models.
pub trait ReadModels: Send + Sync {
    fn get_run(
        &self,
        run_id: RunId,
    ) -> impl Future<Output = Result<Option<RunRecord>, Error>> + Send;

    fn find_run_by_key(
        &self,
        key: &str,
    ) -> impl Future<Output = Result<Option<RunRecord>, Error>> + Send;

    /// A run's step rows, by step id.
    fn get_steps(&self, run_id: RunId) -> impl Future<Output = Result<Vec<StepRow>, Error>> + Send;

    /// Runs, newest first, filtered, keyset-paginated.
    fn list_runs(
        &self,
        query: &RunQuery,
    ) -> impl Future<Output = Result<Page<RunRecord, RunCursor>, Error>> + Send;

    /// The runs forked from `run_id` (`forkRun`), oldest first, at most
    /// `limit` (capped at `page_size_max`).
    fn list_forks(
        &self,
        run_id: RunId,
        limit: u32,
    ) -> impl Future<Output = Result<Vec<RunRecord>, Error>> + Send;

    /// Up to `query.limit` run ids newer than `query.after`, oldest first.
    /// The runs themselves are read with `get_run`; a page is small (the
    /// API's page size limit).
    fn run_ids_newer(
        &self,
        query: &NewerRunsQuery,
    ) -> impl Future<Output = Result<Vec<RunId>, Error>> + Send;
}

impl<S, D> ReadModels for S
where
    S: SqlStore<Db = D>,
    D: Dialect,
    for<'c> &'c mut D::Connection: Executor<'c, Database = D>,
    for<'q> i64: Encode<'q, D> + Type<D>,
    for<'q> String: Encode<'q, D> + Type<D>,
{
    async fn get_run(&self, run_id: RunId) -> Result<Option<RunRecord>, Error> {
        let sql = format!("SELECT {} FROM runs r WHERE r.run_id = $1", D::RUN_COLUMNS);
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(D::id(run_id))
            .fetch_optional(self.pool())
            .await?;
        row.as_ref().map(decode::run).transpose()
    }

    async fn find_run_by_key(&self, key: &str) -> Result<Option<RunRecord>, Error> {
        let sql = format!(
            "SELECT {} FROM runs r WHERE r.idempotency_key = $1",
            D::RUN_COLUMNS
        );
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(key.to_owned())
            .fetch_optional(self.pool())
            .await?;
        row.as_ref().map(decode::run).transpose()
    }

    async fn get_steps(&self, run_id: RunId) -> Result<Vec<StepRow>, Error> {
        let sql = format!(
            "SELECT {} FROM steps WHERE run_id = $1 ORDER BY {}",
            D::STEP_COLUMNS,
            D::STEP_ORDER
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(D::id(run_id))
            .fetch_all(self.pool())
            .await?;
        rows.iter().map(decode::step).collect()
    }

    async fn list_runs(&self, query: &RunQuery) -> Result<Page<RunRecord, RunCursor>, Error> {
        let limit = prepare::page(self.limits(), query.limit)?;
        let filter = Filter {
            status: query.status.as_deref(),
            workflow: query.workflow.as_deref(),
            direction: Direction::Older,
            limit: limit + 1,
        };
        let rows = page::runs_query::<D, _, _>(D::RUN_COLUMNS, filter, cursor::<D>(&query.after))
            .build()
            .fetch_all(self.pool())
            .await?;
        let items = rows.iter().map(decode::run).collect::<Result<_, _>>()?;
        Ok(page::cut(items, limit))
    }

    async fn list_forks(&self, run_id: RunId, limit: u32) -> Result<Vec<RunRecord>, Error> {
        let sql = format!(
            "SELECT {} FROM runs r WHERE r.forked_from = $1 \
             ORDER BY r.created_at, r.run_id LIMIT $2",
            D::RUN_COLUMNS
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(D::id(run_id))
            .bind(i64::from(limit.min(self.limits().page_size_max)))
            .fetch_all(self.pool())
            .await?;
        rows.iter().map(decode::run).collect()
    }

    async fn run_ids_newer(&self, query: &NewerRunsQuery) -> Result<Vec<RunId>, Error> {
        let filter = Filter {
            status: query.status.as_deref(),
            workflow: query.workflow.as_deref(),
            direction: Direction::Newer,
            limit: i64::from(query.limit.min(self.limits().page_size_max)),
        };
        let rows = page::runs_query::<D, _, _>("r.run_id", filter, cursor::<D>(&query.after))
            .build()
            .fetch_all(self.pool())
            .await?;
        rows.iter().map(|row| row.uuid("run_id")).collect()
    }
}

/// A keyset cursor in the database's column types.
fn cursor<D: Dialect>(after: &Option<RunCursor>) -> Option<(D::Time, D::Id)> {
    after
        .as_ref()
        .map(|after| (D::time(after.created_at), D::id(after.run_id)))
}
