//! Cron schedules over GraphQL: the `schedules` query and the
//! `pauseSchedule`, `resumeSchedule` and `backfillSchedule` mutations
//! (role operator), as `imx schedules` does (docs/triggers-cron.md).

use async_graphql::{Context, Enum, SimpleObject};
use chrono::{DateTime, Utc};
use engine::triggers::cron::{self as scheduler, BackfillReport, ScheduleView};

use super::authorize;
use crate::api::auth::Permission;
use crate::api::error::ApiError;

#[derive(Enum, Copy, Clone, Debug, Eq, PartialEq)]
pub enum ScheduleState {
    Active,
    Paused,
}

/// One cron trigger of the newest version of a workflow.
#[derive(SimpleObject, Clone, Debug)]
pub struct Schedule {
    pub workflow: String,
    /// The trigger id (its `id:`, or `cron`, or `cron-<n>`).
    pub trigger: String,
    pub cron: String,
    /// IANA timezone the schedule is read in.
    pub timezone: String,
    pub state: ScheduleState,
    /// Who paused it (the API caller's id, or the CLI user).
    pub paused_by: Option<String>,
    /// The newest fire that started a run.
    pub last_fire_at: Option<DateTime<Utc>>,
    /// The newest fire skipped because the previous run still ran (`overlap: skip`).
    pub last_skipped_at: Option<DateTime<Utc>>,
    /// Fires skipped so far.
    pub skipped: u64,
    /// The next five fire times (none while paused).
    pub next_fires: Vec<DateTime<Utc>>,
}

impl From<ScheduleView> for Schedule {
    fn from(view: ScheduleView) -> Self {
        Schedule {
            state: if view.state == "paused" {
                ScheduleState::Paused
            } else {
                ScheduleState::Active
            },
            paused_by: view.paused_by,
            workflow: view.workflow,
            trigger: view.trigger,
            cron: view.cron,
            timezone: view.timezone,
            last_fire_at: view.last_fire_at,
            last_skipped_at: view.last_skipped_at,
            skipped: view.skipped,
            next_fires: view.next_fires,
        }
    }
}

/// What `backfillSchedule` did.
#[derive(SimpleObject, Clone, Debug)]
pub struct BackfillResult {
    /// Fires in the window.
    pub fires: u64,
    /// Runs started by this call.
    pub started: u64,
    /// Fires whose run existed already (a live fire, an earlier backfill).
    pub existing: u64,
}

impl From<BackfillReport> for BackfillResult {
    fn from(report: BackfillReport) -> Self {
        BackfillResult {
            fires: report.fires as u64,
            started: report.started as u64,
            existing: report.existing as u64,
        }
    }
}

pub async fn list(ctx: &Context<'_>) -> async_graphql::Result<Vec<Schedule>> {
    let (api, _) = authorize(ctx, Permission::Read, "listing schedules")?;
    let views = scheduler::list(api.runtime()?)
        .await
        .map_err(ApiError::from)?;
    Ok(views.into_iter().map(Schedule::from).collect())
}

/// Pauses or resumes; returns the schedules of the workflow afterwards.
pub async fn set_paused(
    ctx: &Context<'_>,
    workflow: String,
    trigger: Option<String>,
    paused: bool,
) -> async_graphql::Result<Vec<Schedule>> {
    let what = if paused {
        "pausing a schedule"
    } else {
        "resuming a schedule"
    };
    let (api, principal) = authorize(ctx, Permission::Operate, what)?;
    let runtime = api.runtime()?;
    let by = paused.then_some(principal.id.as_str());
    let changed = scheduler::set_paused(runtime, &workflow, trigger.as_deref(), by)
        .await
        .map_err(ApiError::from)?;
    tracing::info!(by = %principal.id, %workflow, triggers = ?changed, paused, "schedule state changed");
    let views = scheduler::list(runtime).await.map_err(ApiError::from)?;
    Ok(views
        .into_iter()
        .filter(|view| view.workflow == workflow && changed.contains(&view.trigger))
        .map(Schedule::from)
        .collect())
}

pub async fn backfill(
    ctx: &Context<'_>,
    workflow: String,
    trigger: Option<String>,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> async_graphql::Result<BackfillResult> {
    let (api, principal) = authorize(ctx, Permission::Operate, "backfilling a schedule")?;
    let report = scheduler::backfill(api.runtime()?, &workflow, trigger.as_deref(), from, to)
        .await
        .map_err(ApiError::from)?;
    tracing::info!(by = %principal.id, %workflow, %from, %to, started = report.started, "schedule backfilled");
    Ok(report.into())
}
