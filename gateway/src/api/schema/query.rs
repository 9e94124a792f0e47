//! Read operations: workflows, runs (Relay connection), one run, and a
//! run's state as of any seq.

use async_graphql::{Context, ID, InputObject, Object};
use chrono::{DateTime, Utc};
use engine::store::prelude::*;
use engine::store::{NewerRunsQuery, RunCursor, RunQuery};
use tracing::Instrument;

use super::types::{PageInfo, Run, RunConnection, RunEdge, RunSnapshot, RunStatus, Workflow};
use super::{authorize, cursor, history, parse_run_id};
use crate::api::auth::Permission;
use crate::api::error::ApiError;

#[derive(Debug)]
pub struct Query;

/// Which runs to list; every field narrows the list.
#[derive(InputObject, Default, Debug)]
pub struct RunFilter {
    pub status: Option<RunStatus>,
    pub workflow: Option<String>,
    /// Only runs created strictly after this time.
    pub started_after: Option<DateTime<Utc>>,
    /// Only runs created strictly before this time.
    pub started_before: Option<DateTime<Utc>>,
}

/// The caller of this operation, as the server authenticated it.
#[derive(async_graphql::SimpleObject, Debug)]
pub struct Caller {
    /// `jwt:<sub>`, `key:<key id>` or `anonymous` (`--insecure-no-auth`).
    pub id: String,
    /// Every role name the caller holds, built-in or not (`finance`).
    pub roles: Vec<String>,
    /// May start, cancel, retry and repair runs (`operator` or `admin`).
    pub may_operate: bool,
    /// May approve and reject (`approver` or `admin`; an approval step's
    /// `with.role`, when set, must be among `roles` as well unless `admin`).
    pub may_approve: bool,
}

#[Object]
impl Query {
    /// Who is calling and what the roles allow: lets a client show only
    /// the actions the server would accept.
    async fn me(&self, ctx: &Context<'_>) -> async_graphql::Result<Caller> {
        let (_, principal) = authorize(ctx, Permission::Read, "reading who you are")?;
        Ok(Caller {
            id: principal.id.clone(),
            roles: principal.roles.clone(),
            may_operate: principal.may(Permission::Operate),
            may_approve: principal.may(Permission::Approve),
        })
    }

    /// Every registered workflow version.
    async fn workflows(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<Workflow>> {
        let (api, _) = authorize(ctx, Permission::Read, "listing workflows")?;
        let records = api.store.list_workflows().await.map_err(ApiError::from)?;
        Ok(records.into_iter().map(Workflow::from).collect())
    }

    /// One workflow version (the newest when `version` is omitted).
    async fn workflow(
        &self,
        ctx: &Context<'_>,
        name: String,
        version: Option<String>,
    ) -> async_graphql::Result<Workflow> {
        let (api, _) = authorize(ctx, Permission::Read, "reading a workflow")?;
        let record = api
            .store
            .get_workflow(&name, version.as_deref())
            .await
            .map_err(ApiError::from)?;
        let record = record.ok_or_else(|| {
            ApiError::not_found(format!(
                "workflow {name:?}{} is not registered",
                version.map(|v| format!(" version {v}")).unwrap_or_default()
            ))
        })?;
        Ok(record.into())
    }

    /// Runs, newest first. Cursors are stable while new runs arrive. Page
    /// forward (older) with `first`/`after`, backward (newer) with `last`/`before`.
    #[graphql(complexity = "first.or(last).unwrap_or(20).max(0) as usize * child_complexity")]
    async fn runs(
        &self,
        ctx: &Context<'_>,
        filter: Option<RunFilter>,
        first: Option<i32>,
        after: Option<String>,
        last: Option<i32>,
        before: Option<String>,
    ) -> async_graphql::Result<RunConnection> {
        let (api, _) = authorize(ctx, Permission::Read, "listing runs")?;
        let filter = filter.unwrap_or_default();
        if last.is_some() || before.is_some() {
            if first.is_some() || after.is_some() {
                return Err(ApiError::validation(
                    "page with `first`/`after` or with `last`/`before`, not both",
                )
                .into());
            }
            return backward(api, &filter, last, before).await;
        }
        let first = api.page_size(first)?;
        let after = after.as_deref().map(cursor::decode_run).transpose()?;
        let start = start_position(after.clone(), filter.started_before);
        let query = RunQuery {
            status: filter.status.map(|status| status.as_str().to_owned()),
            workflow: filter.workflow.clone(),
            after: start,
            limit: first,
        };
        let page = api.store.list_runs(&query).await.map_err(ApiError::from)?;
        let mut items = page.items;
        let mut has_next_page = page.next.is_some();
        if let Some(started_after) = filter.started_after {
            let full = items.len();
            items.retain(|run| run.row.created_at > started_after);
            has_next_page &= items.len() == full;
        }
        let edges: Vec<RunEdge> = items
            .into_iter()
            .map(|record| RunEdge {
                cursor: cursor::encode_run(&RunCursor {
                    created_at: record.row.created_at,
                    run_id: record.row.run_id,
                }),
                node: Run(record),
            })
            .collect();
        Ok(RunConnection {
            page_info: PageInfo {
                has_next_page,
                has_previous_page: after.is_some(),
                start_cursor: edges.first().map(|edge| edge.cursor.clone()),
                end_cursor: edges.last().map(|edge| edge.cursor.clone()),
            },
            edges,
        })
    }

    /// One run; NOT_FOUND when no run has this id.
    async fn run(&self, ctx: &Context<'_>, id: ID) -> async_graphql::Result<Run> {
        let (api, _) = authorize(ctx, Permission::Read, "reading a run")?;
        let run_id = parse_run_id(&id)?;
        let record = api
            .store
            .get_run(run_id)
            .instrument(tracing::info_span!("run", run_id = %run_id))
            .await
            .map_err(ApiError::from)?;
        Ok(Run(record.ok_or_else(|| super::run_not_found(run_id))?))
    }

    /// Checks the run's hash chain on the server (every event links to the
    /// one before it and hashes to its `hash`) and names its head hash.
    async fn verify_run(
        &self,
        ctx: &Context<'_>,
        id: ID,
    ) -> async_graphql::Result<history::RunVerification> {
        let (api, _) = authorize(ctx, Permission::Read, "verifying a run")?;
        let run_id = parse_run_id(&id)?;
        Ok(history::verify(&api.store, run_id, api.limits.history_events_max).await?)
    }

    /// The run's state after its first `seq` events, folded with the core's `evolve`.
    async fn run_at(
        &self,
        ctx: &Context<'_>,
        id: ID,
        seq: u64,
    ) -> async_graphql::Result<RunSnapshot> {
        let (api, _) = authorize(ctx, Permission::Read, "reading a run")?;
        let run_id = parse_run_id(&id)?;
        if seq == 0 {
            return Err(ApiError::validation("seq starts at 1 (the run.started event)").into());
        }
        if api
            .store
            .get_run(run_id)
            .await
            .map_err(ApiError::from)?
            .is_none()
        {
            return Err(super::run_not_found(run_id).into());
        }
        let state = history::state_at(&api.store, run_id, seq, api.limits.history_events_max)
            .instrument(tracing::info_span!("run", run_id = %run_id))
            .await?;
        Ok(RunSnapshot::of(&std::sync::Arc::new(state)))
    }

    /// Every cron schedule of the newest workflow versions: state, last
    /// fire, next five fire times (docs/triggers-cron.md).
    async fn schedules(
        &self,
        ctx: &Context<'_>,
    ) -> async_graphql::Result<Vec<super::schedules::Schedule>> {
        super::schedules::list(ctx).await
    }
}

/// Where a page starts: after the cursor, or before `started_before`
/// (`(t, nil uuid)` sorts after every run created at t, newest first),
/// whichever lies further down the list.
fn start_position(
    after: Option<RunCursor>,
    started_before: Option<DateTime<Utc>>,
) -> Option<RunCursor> {
    let bound = started_before.map(|created_at| RunCursor {
        created_at,
        run_id: uuid::Uuid::nil(),
    });
    match (after, bound) {
        (Some(a), Some(b)) => Some(if (a.created_at, a.run_id) < (b.created_at, b.run_id) {
            a
        } else {
            b
        }),
        (a, b) => a.or(b),
    }
}

/// `last`/`before`: the runs just newer than `before` (or the oldest runs),
/// still listed newest first.
async fn backward(
    api: &super::ApiContext,
    filter: &RunFilter,
    last: Option<i32>,
    before: Option<String>,
) -> async_graphql::Result<RunConnection> {
    let last = api.page_size(last)?;
    let before = before.as_deref().map(cursor::decode_run).transpose()?;
    let query = NewerRunsQuery {
        status: filter.status.map(|status| status.as_str().to_owned()),
        workflow: filter.workflow.clone(),
        after: before.clone(),
        limit: last + 1,
    };
    let mut ids = api
        .store
        .run_ids_newer(&query)
        .await
        .map_err(ApiError::from)?;
    let has_previous_page = ids.len() > last as usize;
    ids.truncate(last as usize);
    let mut records = Vec::with_capacity(ids.len());
    for id in ids {
        if let Some(record) = api.store.get_run(id).await.map_err(ApiError::from)? {
            records.push(record);
        }
    }
    records.retain(|run| {
        filter.started_after.is_none_or(|t| run.row.created_at > t)
            && filter.started_before.is_none_or(|t| run.row.created_at < t)
    });
    records.reverse();
    let edges: Vec<RunEdge> = records
        .into_iter()
        .map(|record| RunEdge {
            cursor: cursor::encode_run(&RunCursor {
                created_at: record.row.created_at,
                run_id: record.row.run_id,
            }),
            node: Run(record),
        })
        .collect();
    Ok(RunConnection {
        page_info: PageInfo {
            has_next_page: before.is_some(),
            has_previous_page,
            start_cursor: edges.first().map(|edge| edge.cursor.clone()),
            end_cursor: edges.last().map(|edge| edge.cursor.clone()),
        },
        edges,
    })
}
