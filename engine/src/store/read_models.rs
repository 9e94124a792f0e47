//! The [`ReadModels`] trait: the run and step projections that appends keep
//! up to date, read by id, by idempotency key, and in keyset pages either
//! way (newest first, or the runs just newer than a cursor).

use std::future::Future;

use super::error::Error;
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

    /// Up to `query.limit` run ids newer than `query.after`, oldest first.
    /// The runs themselves are read with `get_run`; a page is small (the
    /// API's page size limit).
    fn run_ids_newer(
        &self,
        query: &NewerRunsQuery,
    ) -> impl Future<Output = Result<Vec<RunId>, Error>> + Send;
}
