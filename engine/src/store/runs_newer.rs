//! Backward keyset paging over runs (the API's `last`/`before`): the ids of
//! the runs just newer than a cursor, oldest first. The runs themselves are
//! read with `get_run`; a page is small (the API's page size limit).

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::Store;
use super::error::Error;
use super::types::{RunCursor, RunId};

/// Which runs, after which position.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct NewerRunsQuery {
    pub status: Option<String>,
    pub workflow: Option<String>,
    /// Only runs after this position (newer); `None`: from the oldest run.
    pub after: Option<RunCursor>,
    pub limit: u32,
}

impl Store {
    /// Up to `limit` run ids newer than `query.after`, oldest first.
    pub async fn run_ids_newer(&self, query: &NewerRunsQuery) -> Result<Vec<RunId>, Error> {
        let limit = i64::from(query.limit.min(self.config_page_max()));
        match self {
            Store::Sqlite(store) => {
                let mut builder =
                    sqlx::QueryBuilder::<sqlx::Sqlite>::new("SELECT run_id FROM runs WHERE 1 = 1");
                if let Some(status) = &query.status {
                    builder.push(" AND status = ").push_bind(status.clone());
                }
                if let Some(workflow) = &query.workflow {
                    builder.push(" AND workflow = ").push_bind(workflow.clone());
                }
                if let Some(after) = &query.after {
                    builder
                        .push(" AND (created_at, run_id) > (")
                        .push_bind(crate::chain::format_recorded_at(after.created_at))
                        .push(", ")
                        .push_bind(after.run_id.hyphenated().to_string())
                        .push(")");
                }
                builder
                    .push(" ORDER BY created_at ASC, run_id ASC LIMIT ")
                    .push_bind(limit);
                let ids: Vec<String> = builder.build_query_scalar().fetch_all(store.pool()).await?;
                ids.iter()
                    .map(|id| {
                        Uuid::parse_str(id)
                            .map_err(|error| Error::corrupt(format!("bad run id {id:?}: {error}")))
                    })
                    .collect()
            }
            Store::Postgres(store) => {
                let mut builder = sqlx::QueryBuilder::<sqlx::Postgres>::new(
                    "SELECT run_id FROM runs WHERE 1 = 1",
                );
                if let Some(status) = &query.status {
                    builder.push(" AND status = ").push_bind(status.clone());
                }
                if let Some(workflow) = &query.workflow {
                    builder.push(" AND workflow = ").push_bind(workflow.clone());
                }
                if let Some(after) = &query.after {
                    let at: DateTime<Utc> = after.created_at;
                    builder
                        .push(" AND (created_at, run_id) > (")
                        .push_bind(at)
                        .push(", ")
                        .push_bind(after.run_id)
                        .push(")");
                }
                builder
                    .push(" ORDER BY created_at ASC, run_id ASC LIMIT ")
                    .push_bind(limit);
                Ok(builder.build_query_scalar().fetch_all(store.pool()).await?)
            }
        }
    }

    fn config_page_max(&self) -> u32 {
        use super::EventStore;
        self.config().page_size_max
    }
}
