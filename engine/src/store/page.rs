//! Keyset paging over runs, once for both backends: the filtered query with
//! its cursor condition, and the cut of one page (one row more than asked
//! tells whether another page follows). A backend converts the cursor to
//! its column types and runs the query.

use sqlx::{Database, Encode, QueryBuilder, Type};

use super::types::{Page, RunCursor, RunRecord};

/// Which way a page goes from its cursor.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Direction {
    /// Newest first, runs older than the cursor (`list_runs`).
    Older,
    /// Oldest first, runs newer than the cursor (`run_ids_newer`).
    Newer,
}

/// The filters of a page of runs.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Filter<'a> {
    pub status: Option<&'a str>,
    pub workflow: Option<&'a str>,
    pub direction: Direction,
    pub limit: i64,
}

/// `SELECT {columns} FROM runs r WHERE …` filtered, past the cursor
/// `(created_at, run_id)` (given in the backend's column types), in keyset
/// order, at most `filter.limit` rows.
pub(crate) fn runs_query<DB, At, Id>(
    columns: &str,
    filter: Filter<'_>,
    cursor: Option<(At, Id)>,
) -> QueryBuilder<DB>
where
    DB: Database,
    for<'t> String: Encode<'t, DB> + Type<DB>,
    for<'t> i64: Encode<'t, DB> + Type<DB>,
    for<'t> At: Encode<'t, DB> + Type<DB>,
    for<'t> Id: Encode<'t, DB> + Type<DB>,
{
    let mut builder = QueryBuilder::new(format!("SELECT {columns} FROM runs r WHERE 1 = 1"));
    if let Some(status) = filter.status {
        builder
            .push(" AND r.status = ")
            .push_bind(status.to_owned());
    }
    if let Some(workflow) = filter.workflow {
        builder
            .push(" AND r.workflow = ")
            .push_bind(workflow.to_owned());
    }
    let (past, order) = match filter.direction {
        Direction::Older => ("<", "DESC"),
        Direction::Newer => (">", "ASC"),
    };
    if let Some((created_at, run_id)) = cursor {
        builder
            .push(format!(" AND (r.created_at, r.run_id) {past} ("))
            .push_bind(created_at)
            .push(", ")
            .push_bind(run_id)
            .push(")");
    }
    builder
        .push(format!(
            " ORDER BY r.created_at {order}, r.run_id {order} LIMIT "
        ))
        .push_bind(filter.limit);
    builder
}

/// The page of `limit` runs from rows fetched with a limit of `limit + 1`.
pub(crate) fn cut(mut items: Vec<RunRecord>, limit: i64) -> Page<RunRecord, RunCursor> {
    let limit = usize::try_from(limit).unwrap_or(usize::MAX);
    let next = if items.len() > limit {
        items.truncate(limit);
        items.last().map(|last| RunCursor {
            created_at: last.row.created_at,
            run_id: last.row.run_id,
        })
    } else {
        None
    };
    Page { items, next }
}
