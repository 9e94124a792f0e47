//! What operators do to schedules: pause, resume and backfill (the CLI's
//! `imx schedules …` and the GraphQL mutations call these).

use chrono::{DateTime, Utc};

use crate::core::cron::{self as schedule, BACKFILL_FIRES_MAX};
use crate::runtime::{Error, Runtime};
use crate::store::{EventStore, FireOutcome, FireRecord};

use super::{CronTrigger, cron_triggers, start};

/// What a backfill did.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct BackfillReport {
    /// Fires in the window.
    pub fires: usize,
    /// Runs started now.
    pub started: usize,
    /// Fires whose run existed already (a live fire, an earlier backfill).
    pub existing: usize,
}

/// The workflow's cron triggers (newest version): the one named, or all.
pub async fn schedules_of<S: EventStore>(
    runtime: &Runtime<S>,
    workflow: &str,
    trigger: Option<&str>,
) -> Result<Vec<CronTrigger>, Error> {
    // An unknown workflow is IMX0402, a workflow without that schedule IMX0420.
    runtime.workflow(workflow, None).await?;
    let found: Vec<CronTrigger> = cron_triggers(runtime)
        .await?
        .into_iter()
        .filter(|found| found.workflow == workflow)
        .filter(|found| trigger.is_none_or(|id| found.trigger == id))
        .collect();
    if found.is_empty() {
        return Err(Error::ScheduleNotFound {
            workflow: workflow.to_owned(),
            trigger: trigger.map(str::to_owned),
        });
    }
    Ok(found)
}

/// Pauses (`Some(by)`: who pauses) or resumes (`None`) the named schedule,
/// or every schedule of the workflow; returns the trigger ids changed.
/// Resuming does not catch up the ticks of the pause.
pub async fn set_paused<S: EventStore>(
    runtime: &Runtime<S>,
    workflow: &str,
    trigger: Option<&str>,
    paused_by: Option<&str>,
) -> Result<Vec<String>, Error> {
    let now = runtime.store().config().clock.now();
    let mut changed = Vec::new();
    for found in schedules_of(runtime, workflow, trigger).await? {
        runtime
            .store()
            .set_schedule_paused(
                workflow,
                &found.trigger,
                paused_by.map(|by| (now, by.to_owned())),
                now,
            )
            .await?;
        changed.push(found.trigger);
    }
    Ok(changed)
}

/// Starts the runs the schedule would have started in `[from, to]`, with
/// the live fires' keys: a fire whose run exists starts nothing. Overlap
/// does not apply: every fire of the window starts. Refused above
/// [`BACKFILL_FIRES_MAX`] fires per schedule, before anything starts.
pub async fn backfill<S: EventStore>(
    runtime: &Runtime<S>,
    workflow: &str,
    trigger: Option<&str>,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<BackfillReport, Error> {
    if from > to {
        return Err(Error::BackfillWindowInvalid { from, to });
    }
    let mut plan = Vec::new();
    for found in schedules_of(runtime, workflow, trigger).await? {
        let calendar = found.schedule.clone();
        let fires = super::off_workers(move || {
            schedule::fires_between(&calendar, from, to, BACKFILL_FIRES_MAX)
        })
        .await?
        .map_err(|_| Error::BackfillTooLarge {
            workflow: workflow.to_owned(),
            trigger: found.trigger.clone(),
            max: BACKFILL_FIRES_MAX,
        })?;
        plan.push((found, fires));
    }
    let mut report = BackfillReport::default();
    for (found, fires) in plan {
        for at in fires {
            let key = schedule::fire_key(&found.workflow, &found.trigger, at);
            let (workflow_model, _) = runtime
                .workflow(&found.workflow, Some(&found.version))
                .await?;
            let input = match super::render_input(runtime, &found, &workflow_model, at).await {
                Ok(input) => input,
                Err(reason) => {
                    return Err(Error::InvalidInput {
                        workflow: found.workflow.clone(),
                        problems: vec![reason],
                    });
                }
            };
            runtime
                .store()
                .record_fire(&FireRecord {
                    workflow: found.workflow.clone(),
                    trigger: found.trigger.clone(),
                    scheduled_at: at,
                    outcome: FireOutcome::Started,
                    reason: Some("backfill".to_owned()),
                    idempotency_key: key.clone(),
                    recorded_at: runtime.store().config().clock.now(),
                })
                .await?;
            let started = start(runtime, &found, at, key, input).await?;
            report.fires += 1;
            if started.existing {
                report.existing += 1;
            } else {
                report.started += 1;
            }
        }
    }
    Ok(report)
}
