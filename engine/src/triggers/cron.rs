//! The cron scheduler every `imx serve` runs: for the newest registered
//! version of every workflow, each `cron` trigger fires at its times
//! (docs/triggers-cron.md). Nodes need no leader: every node computes the
//! same due fires, the fire ledger keeps the first decision per (workflow,
//! trigger, instant), and the run's idempotency key
//! `cron:<workflow>:<trigger>:<instant>` makes the store start it once.
//! A node that dies between recording a fire and starting its run leaves
//! the cursor behind, so the next pass (on any node) starts it.

mod admin;

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::{Map, Value, json};
use tokio::sync::watch;

use crate::core::cron::{self as schedule, CronSchedule, FireDecision};
use crate::core::event::TriggerContext;
use crate::core::workflow::{CatchUp, Overlap, Trigger, Workflow};
use crate::runtime::{self, Runtime, StartRequest, input_problems};
use crate::store::{EventStore, FireOutcome, FireRecord, ScheduleRecord};

pub use admin::{BackfillReport, backfill, schedules_of, set_paused};

/// Longest sleep between passes, in ms, even when no fire is due sooner:
/// how long a newly registered workflow or a resumed schedule may wait.
pub const SCHEDULER_WAKE_MS_MAX: u64 = 5_000;
/// Pause after a pass that failed (the database went away), in ms.
pub const SCHEDULER_RETRY_MS: u64 = 1_000;

/// One cron trigger of the newest version of a workflow.
#[derive(Clone, Debug)]
pub struct CronTrigger {
    pub workflow: String,
    pub version: String,
    pub trigger: String,
    pub expression: String,
    pub timezone: String,
    pub schedule: CronSchedule,
    pub input: Value,
    pub catch_up: CatchUp,
    pub overlap: Overlap,
}

/// What a pass started or skipped.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PassReport {
    pub started: usize,
    pub skipped: usize,
    pub failed: usize,
    /// Schedules not advanced (a store error); retried next pass.
    pub errors: usize,
}

/// Every cron trigger of the newest registered version of every workflow,
/// by workflow and trigger id. A trigger whose schedule does not load (a
/// version registered by an older imx) is logged and left out.
pub async fn cron_triggers<S: EventStore>(
    runtime: &Runtime<S>,
) -> Result<Vec<CronTrigger>, runtime::Error> {
    let mut triggers = Vec::new();
    for (workflow, version) in super::newest_workflows(runtime).await? {
        triggers.extend(triggers_of(&workflow, &version));
    }
    Ok(triggers)
}

/// The cron triggers of one workflow version.
pub fn triggers_of(workflow: &Workflow, version: &str) -> Vec<CronTrigger> {
    let mut found = Vec::new();
    for (id, trigger) in workflow.triggers_with_ids() {
        let Trigger::Cron {
            schedule,
            timezone,
            input,
            catch_up,
            overlap,
            ..
        } = trigger
        else {
            continue;
        };
        match CronSchedule::parse(schedule, timezone.as_deref()) {
            Ok(parsed) => found.push(CronTrigger {
                workflow: workflow.name.clone(),
                version: version.to_owned(),
                trigger: id,
                expression: schedule.clone(),
                timezone: timezone.clone().unwrap_or_else(|| "UTC".to_owned()),
                schedule: parsed,
                input: input.clone(),
                catch_up: *catch_up,
                overlap: *overlap,
            }),
            Err(error) => tracing::warn!(
                workflow = %workflow.name, trigger = %id, code = error.code(), %error,
                "cron trigger not scheduled"
            ),
        }
    }
    found
}

/// A running scheduler: stop it with [`SchedulerHandle::shutdown`].
#[derive(Debug)]
pub struct SchedulerHandle {
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl SchedulerHandle {
    /// Stops after the pass in progress (a fire half done is finished by
    /// the next pass of any node: the cursor has not moved past it).
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

/// Starts this node's scheduler on the tokio runtime.
pub fn spawn_scheduler<S: EventStore + 'static>(runtime: Arc<Runtime<S>>) -> SchedulerHandle {
    let (stop, stopped) = watch::channel(false);
    let task = tokio::spawn(run_scheduler(runtime, stopped));
    SchedulerHandle { stop, task }
}

/// Runs the scheduler until `stop` turns true: a pass, then a sleep until
/// the next due fire (at most [`SCHEDULER_WAKE_MS_MAX`]).
pub async fn run_scheduler<S: EventStore>(
    runtime: Arc<Runtime<S>>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        let wait = match pass(&runtime).await {
            Ok((_, next)) => {
                let now = runtime.store().config().clock.now();
                // +1: milliseconds round down, and waking before the fire
                // would only make a pass that finds nothing due.
                let until = next.map_or(SCHEDULER_WAKE_MS_MAX, |at| {
                    u64::try_from((at - now).num_milliseconds() + 1).unwrap_or(0)
                });
                until.min(SCHEDULER_WAKE_MS_MAX)
            }
            Err(error) => {
                tracing::warn!(code = error.code(), %error, "cron pass failed; retrying");
                SCHEDULER_RETRY_MS
            }
        };
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(wait)) => {}
            _ = stop.changed() => {}
        }
        if *stop.borrow() {
            return;
        }
    }
}

/// One pass over every schedule: starts (or skips) every due fire. Returns
/// what it did and the next instant any active schedule fires.
pub async fn pass<S: EventStore>(
    runtime: &Runtime<S>,
) -> Result<(PassReport, Option<DateTime<Utc>>), runtime::Error> {
    let mut report = PassReport::default();
    let mut next: Option<DateTime<Utc>> = None;
    for trigger in cron_triggers(runtime).await? {
        // One schedule's failure (its fire cannot be recorded) must not hold
        // the others back; its cursor stays, so the next pass retries it.
        match pass_one(runtime, &trigger, &mut report).await {
            Ok(Some(at)) => next = Some(next.map_or(at, |earliest| earliest.min(at))),
            Ok(None) => {}
            Err(error) => {
                report.errors += 1;
                tracing::warn!(
                    workflow = %trigger.workflow, trigger = %trigger.trigger,
                    code = error.code(), %error, "cron schedule not advanced; retried next pass"
                );
            }
        }
    }
    Ok((report, next))
}

/// Carries out one schedule's due fires; returns its next fire time
/// (`None` when paused or when it never fires again).
async fn pass_one<S: EventStore>(
    runtime: &Runtime<S>,
    trigger: &CronTrigger,
    report: &mut PassReport,
) -> Result<Option<DateTime<Utc>>, runtime::Error> {
    let now = runtime.store().config().clock.now();
    let state = runtime
        .store()
        .ensure_schedule(&trigger.workflow, &trigger.trigger, now)
        .await?;
    if state.paused_at.is_some() {
        return Ok(None);
    }
    let (schedule, catch_up, since) = (trigger.schedule.clone(), trigger.catch_up, state.cursor_at);
    // Bounded (WALL_TIMES_SCANNED_MAX), but CPU work all the same: off the async workers.
    let (due, next) = off_workers(move || {
        let due = schedule::due_fires(&schedule, catch_up, since, now);
        (due, schedule.fires_after(now).next())
    })
    .await?;
    for at in due {
        match fire(runtime, trigger, at).await? {
            FireOutcome::Started => report.started += 1,
            FireOutcome::Skipped => report.skipped += 1,
            FireOutcome::Failed => report.failed += 1,
        }
    }
    // Missed fires catch-up passed over are behind the cursor too.
    runtime
        .store()
        .advance_schedule(&trigger.workflow, &trigger.trigger, now)
        .await?;
    Ok(next)
}

/// Runs fire-time calculations on the blocking pool.
pub(crate) async fn off_workers<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, runtime::Error> {
    runtime::off_workers("fire-time calculation", work).await
}

/// Decides, records and carries out one fire; the ledger keeps the first
/// decision, so every node carries out the same one. Then moves the cursor.
pub async fn fire<S: EventStore>(
    runtime: &Runtime<S>,
    trigger: &CronTrigger,
    at: DateTime<Utc>,
) -> Result<FireOutcome, runtime::Error> {
    let key = schedule::fire_key(&trigger.workflow, &trigger.trigger, at);
    let (workflow, _) = runtime
        .workflow(&trigger.workflow, Some(&trigger.version))
        .await?;
    let rendered = match runtime::check_idempotency_key(&key) {
        // `imx validate` caps names and trigger ids so that keys fit; a
        // model stored without that cap is refused here, not started (IMX0411).
        Err(error) => Err(error.to_string()),
        Ok(()) => render_input(runtime, trigger, &workflow, at).await,
    };
    let (outcome, reason, input) = match rendered {
        Err(reason) => (FireOutcome::Failed, Some(reason), Value::Null),
        Ok(input) => match overlap(runtime, trigger, at).await? {
            FireDecision::Start => (FireOutcome::Started, None, input),
            FireDecision::Skip => (
                FireOutcome::Skipped,
                Some("overlap: the previous run of this schedule is still running".to_owned()),
                input,
            ),
        },
    };
    let recorded = runtime
        .store()
        .record_fire(&FireRecord {
            workflow: trigger.workflow.clone(),
            trigger: trigger.trigger.clone(),
            scheduled_at: at,
            outcome,
            reason,
            idempotency_key: key.clone(),
            recorded_at: runtime.store().config().clock.now(),
        })
        .await?;
    match recorded.outcome {
        FireOutcome::Started => {
            start(runtime, trigger, at, key, input).await?;
        }
        FireOutcome::Skipped => {
            tracing::info!(workflow = %trigger.workflow, trigger = %trigger.trigger, %at, "cron fire skipped (overlap)");
        }
        FireOutcome::Failed => tracing::warn!(
            workflow = %trigger.workflow, trigger = %trigger.trigger, %at,
            reason = recorded.reason.as_deref().unwrap_or_default(),
            "cron fire could not start a run"
        ),
    }
    runtime
        .store()
        .advance_schedule(&trigger.workflow, &trigger.trigger, at)
        .await?;
    Ok(recorded.outcome)
}

/// Starts the fire's run; the key makes a second start (another node, a
/// backfill, a retry after a crash) return the first run.
async fn start<S: EventStore>(
    runtime: &Runtime<S>,
    trigger: &CronTrigger,
    at: DateTime<Utc>,
    key: String,
    input: Value,
) -> Result<runtime::Started, runtime::Error> {
    let started = runtime
        .start_run(StartRequest {
            workflow: trigger.workflow.clone(),
            version: Some(trigger.version.clone()),
            input,
            idempotency_key: Some(key),
            trigger: Some(TriggerContext::Cron {
                trigger: trigger.trigger.clone(),
                scheduled_at: at,
            }),
        })
        .await?;
    if !started.existing {
        tracing::info!(workflow = %trigger.workflow, trigger = %trigger.trigger, %at, run_id = %started.run_id, "cron fire started a run");
    }
    Ok(started)
}

/// The trigger's `input` rendered with `trigger.id` and
/// `trigger.scheduled_at` in scope, checked against the input schema; the
/// reason as text when it cannot start a run.
async fn render_input<S: EventStore>(
    runtime: &Runtime<S>,
    trigger: &CronTrigger,
    workflow: &Workflow,
    at: DateTime<Utc>,
) -> Result<Value, String> {
    let mut scope = Map::new();
    scope.insert(
        "trigger".to_owned(),
        json!({
            "id": trigger.trigger,
            "scheduled_at": at.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true),
        }),
    );
    let input = runtime
        .render_trigger_input(&trigger.workflow, &trigger.trigger, &trigger.input, scope)
        .await
        .map_err(|error| error.to_string())?;
    // The start fills the schema's defaults in before it checks; so does this.
    let input = crate::core::defaults::with_defaults(workflow.input.as_ref(), input);
    match input_problems(workflow, &input) {
        Ok(problems) if problems.is_empty() => Ok(input),
        Ok(problems) => Err(format!(
            "the rendered input does not match the workflow's `input` schema: {}",
            problems.join("; ")
        )),
        Err(reason) => Err(reason),
    }
}

/// [`schedule::overlap_decision`] against the run of the newest earlier
/// fire that started one (a fire recorded but not yet started counts as running).
async fn overlap<S: EventStore>(
    runtime: &Runtime<S>,
    trigger: &CronTrigger,
    at: DateTime<Utc>,
) -> Result<FireDecision, runtime::Error> {
    if trigger.overlap == Overlap::Allow {
        return Ok(FireDecision::Start);
    }
    let store = runtime.store();
    let unfinished = match store
        .latest_started_fire(&trigger.workflow, &trigger.trigger, at)
        .await?
    {
        None => false,
        Some(previous) => match store.find_run_by_key(&previous.idempotency_key).await? {
            None => true,
            Some(run) => !matches!(
                run.row.status.as_str(),
                "succeeded" | "failed" | "cancelled"
            ),
        },
    };
    Ok(schedule::overlap_decision(trigger.overlap, unfinished))
}

/// A schedule as `imx schedules` and the API show it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct ScheduleView {
    pub workflow: String,
    pub trigger: String,
    pub cron: String,
    pub timezone: String,
    /// `active` or `paused`.
    pub state: &'static str,
    pub paused_by: Option<String>,
    pub last_fire_at: Option<DateTime<Utc>>,
    pub last_skipped_at: Option<DateTime<Utc>>,
    pub skipped: u64,
    /// The next [`schedule::UPCOMING_FIRES`] fire times (none while paused).
    pub next_fires: Vec<DateTime<Utc>>,
}

/// Every schedule of the newest workflow versions with its state.
pub async fn list<S: EventStore>(
    runtime: &Runtime<S>,
) -> Result<Vec<ScheduleView>, runtime::Error> {
    let now = runtime.store().config().clock.now();
    let states = runtime.store().list_schedules().await?;
    let triggers = cron_triggers(runtime).await?;
    let calendars: Vec<CronSchedule> = triggers.iter().map(|t| t.schedule.clone()).collect();
    let upcoming = off_workers(move || {
        calendars
            .iter()
            .map(|calendar| {
                calendar
                    .fires_after(now)
                    .take(schedule::UPCOMING_FIRES)
                    .collect::<Vec<_>>()
            })
            .collect::<Vec<_>>()
    })
    .await?;
    let views = triggers
        .into_iter()
        .zip(upcoming)
        .map(|(trigger, next_fires)| {
            let state: Option<&ScheduleRecord> = states
                .iter()
                .find(|s| s.workflow == trigger.workflow && s.trigger == trigger.trigger);
            let paused = state.is_some_and(|s| s.paused_at.is_some());
            ScheduleView {
                next_fires: if paused { Vec::new() } else { next_fires },
                workflow: trigger.workflow,
                trigger: trigger.trigger,
                cron: trigger.expression,
                timezone: trigger.timezone,
                state: if paused { "paused" } else { "active" },
                paused_by: state.and_then(|s| s.paused_by.clone()),
                last_fire_at: state.and_then(|s| s.last_fire_at),
                last_skipped_at: state.and_then(|s| s.last_skipped_at),
                skipped: state.map_or(0, |s| s.skipped),
            }
        })
        .collect();
    Ok(views)
}
