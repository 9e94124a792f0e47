//! The [`Schedules`] trait: durable cron schedule state (docs/triggers-cron.md):
//! per (workflow, trigger) a cursor (the newest instant considered) and a
//! paused mark, and a ledger of every fire decided, keyed by (workflow,
//! trigger, scheduled instant) so that nodes deciding the same tick keep the
//! first decision. The SQL is the same on both databases: one
//! implementation for every [`SqlStore`].

use std::future::Future;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::{Encode, Executor, Type};

use super::decode::Columns;
use super::dialect::{Dialect, SqlStore};
use super::error::Error;

/// Most fire ledger rows one read returns.
pub const SCHEDULE_FIRES_LIST_MAX: u32 = 1_000;

/// One schedule's durable state, with what its ledger says.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScheduleRecord {
    pub workflow: String,
    pub trigger: String,
    /// The newest scheduled instant considered: later fires are due.
    pub cursor_at: DateTime<Utc>,
    /// `Some`: paused since then; nothing fires.
    pub paused_at: Option<DateTime<Utc>>,
    /// Who paused it (an API caller's id, a CLI user).
    pub paused_by: Option<String>,
    /// The newest fire that started a run.
    pub last_fire_at: Option<DateTime<Utc>>,
    /// The newest fire skipped (overlap).
    pub last_skipped_at: Option<DateTime<Utc>>,
    /// Fires skipped so far.
    pub skipped: u64,
}

/// What a fire did.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FireOutcome {
    /// A run was (or is being) started with the fire's idempotency key.
    Started,
    /// Skipped: the previous run of this schedule was still running.
    Skipped,
    /// Could not start (its input did not render or failed the schema).
    Failed,
}

impl FireOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            FireOutcome::Started => "started",
            FireOutcome::Skipped => "skipped",
            FireOutcome::Failed => "failed",
        }
    }

    fn parse(text: &str) -> Result<FireOutcome, Error> {
        match text {
            "started" => Ok(FireOutcome::Started),
            "skipped" => Ok(FireOutcome::Skipped),
            "failed" => Ok(FireOutcome::Failed),
            other => Err(Error::corrupt(format!("unknown fire outcome {other:?}"))),
        }
    }
}

/// One row of the fire ledger.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FireRecord {
    pub workflow: String,
    pub trigger: String,
    pub scheduled_at: DateTime<Utc>,
    pub outcome: FireOutcome,
    pub reason: Option<String>,
    pub idempotency_key: String,
    pub recorded_at: DateTime<Utc>,
}

const FIRE_COLUMNS: &str =
    "workflow, trigger_id, scheduled_at, outcome, reason, idempotency_key, recorded_at";

const SCHEDULE_SELECT: &str = "SELECT s.workflow, s.trigger_id, s.cursor_at, s.paused_at, s.paused_by, \
     (SELECT MAX(f.scheduled_at) FROM schedule_fires f WHERE f.workflow = s.workflow \
        AND f.trigger_id = s.trigger_id AND f.outcome = 'started') AS last_fire_at, \
     (SELECT MAX(f.scheduled_at) FROM schedule_fires f WHERE f.workflow = s.workflow \
        AND f.trigger_id = s.trigger_id AND f.outcome = 'skipped') AS last_skipped_at, \
     (SELECT COUNT(*) FROM schedule_fires f WHERE f.workflow = s.workflow \
        AND f.trigger_id = s.trigger_id AND f.outcome = 'skipped') AS skipped \
     FROM schedules s";

/// Durable schedule state and the fire ledger.
pub trait Schedules: Send + Sync {
    /// The schedule's state, creating it with `cursor_at` when it is new
    /// (a new schedule fires only after the moment it was first seen).
    fn ensure_schedule(
        &self,
        workflow: &str,
        trigger: &str,
        cursor_at: DateTime<Utc>,
    ) -> impl Future<Output = Result<ScheduleRecord, Error>> + Send;

    /// Every known schedule, by workflow and trigger.
    fn list_schedules(&self) -> impl Future<Output = Result<Vec<ScheduleRecord>, Error>> + Send;

    /// Moves the cursor forward to `cursor_at` (never back).
    fn advance_schedule(
        &self,
        workflow: &str,
        trigger: &str,
        cursor_at: DateTime<Utc>,
    ) -> impl Future<Output = Result<(), Error>> + Send;

    /// Pauses (`Some((at, by))`) or resumes (`None`) a schedule, creating
    /// it with cursor `now` if new. Pausing a paused schedule keeps the
    /// first pause. Resuming moves the cursor to `now`: the ticks of the
    /// pause are not caught up.
    fn set_schedule_paused(
        &self,
        workflow: &str,
        trigger: &str,
        paused: Option<(DateTime<Utc>, String)>,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<(), Error>> + Send;

    /// Records a fire unless one is recorded for the same (workflow,
    /// trigger, instant); returns the recorded one (this or the first).
    fn record_fire(
        &self,
        fire: &FireRecord,
    ) -> impl Future<Output = Result<FireRecord, Error>> + Send;

    /// The newest fire before `before` that started a run.
    fn latest_started_fire(
        &self,
        workflow: &str,
        trigger: &str,
        before: DateTime<Utc>,
    ) -> impl Future<Output = Result<Option<FireRecord>, Error>> + Send;

    /// The schedule's newest fires (at most [`SCHEDULE_FIRES_LIST_MAX`]),
    /// newest first.
    fn list_fires(
        &self,
        workflow: &str,
        trigger: &str,
        max: u32,
    ) -> impl Future<Output = Result<Vec<FireRecord>, Error>> + Send;
}

impl<S, D> Schedules for S
where
    S: SqlStore<Db = D>,
    D: Dialect,
    for<'c> &'c mut D::Connection: Executor<'c, Database = D>,
    for<'q> String: Encode<'q, D> + Type<D>,
    for<'q> i64: Encode<'q, D> + Type<D>,
{
    async fn ensure_schedule(
        &self,
        workflow: &str,
        trigger: &str,
        cursor_at: DateTime<Utc>,
    ) -> Result<ScheduleRecord, Error> {
        sqlx::query(
            "INSERT INTO schedules (workflow, trigger_id, cursor_at) VALUES ($1, $2, $3) \
             ON CONFLICT (workflow, trigger_id) DO NOTHING",
        )
        .bind(workflow.to_owned())
        .bind(trigger.to_owned())
        .bind(D::time(cursor_at))
        .execute(self.pool())
        .await?;
        let sql = format!("{SCHEDULE_SELECT} WHERE s.workflow = $1 AND s.trigger_id = $2");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(workflow.to_owned())
            .bind(trigger.to_owned())
            .fetch_one(self.pool())
            .await?;
        schedule(&row)
    }

    async fn list_schedules(&self) -> Result<Vec<ScheduleRecord>, Error> {
        let sql = format!("{SCHEDULE_SELECT} ORDER BY s.workflow, s.trigger_id");
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .fetch_all(self.pool())
            .await?;
        rows.iter().map(schedule).collect()
    }

    async fn advance_schedule(
        &self,
        workflow: &str,
        trigger: &str,
        cursor_at: DateTime<Utc>,
    ) -> Result<(), Error> {
        sqlx::query(
            "UPDATE schedules SET cursor_at = $3 \
             WHERE workflow = $1 AND trigger_id = $2 AND cursor_at < $3",
        )
        .bind(workflow.to_owned())
        .bind(trigger.to_owned())
        .bind(D::time(cursor_at))
        .execute(self.pool())
        .await?;
        Ok(())
    }

    async fn set_schedule_paused(
        &self,
        workflow: &str,
        trigger: &str,
        paused: Option<(DateTime<Utc>, String)>,
        now: DateTime<Utc>,
    ) -> Result<(), Error> {
        let query = match paused {
            Some((at, by)) => sqlx::query(
                "INSERT INTO schedules (workflow, trigger_id, cursor_at, paused_at, paused_by) \
                 VALUES ($1, $2, $3, $4, $5) ON CONFLICT (workflow, trigger_id) \
                 DO UPDATE SET paused_at = COALESCE(schedules.paused_at, excluded.paused_at), \
                 paused_by = COALESCE(schedules.paused_by, excluded.paused_by)",
            )
            .bind(workflow.to_owned())
            .bind(trigger.to_owned())
            .bind(D::time(now))
            .bind(D::time(at))
            .bind(by),
            None => sqlx::query(
                "INSERT INTO schedules (workflow, trigger_id, cursor_at) VALUES ($1, $2, $3) \
                 ON CONFLICT (workflow, trigger_id) DO UPDATE SET paused_at = NULL, paused_by = NULL, \
                 cursor_at = CASE WHEN schedules.cursor_at < excluded.cursor_at \
                 THEN excluded.cursor_at ELSE schedules.cursor_at END",
            )
            .bind(workflow.to_owned())
            .bind(trigger.to_owned())
            .bind(D::time(now)),
        };
        query.execute(self.pool()).await?;
        Ok(())
    }

    async fn record_fire(&self, fire: &FireRecord) -> Result<FireRecord, Error> {
        let reason = fire.reason.clone().unwrap_or_default();
        sqlx::query(
            "INSERT INTO schedule_fires (workflow, trigger_id, scheduled_at, outcome, reason, \
             idempotency_key, recorded_at) VALUES ($1, $2, $3, $4, NULLIF($5, ''), $6, $7) \
             ON CONFLICT (workflow, trigger_id, scheduled_at) DO NOTHING",
        )
        .bind(fire.workflow.clone())
        .bind(fire.trigger.clone())
        .bind(D::time(fire.scheduled_at))
        .bind(fire.outcome.as_str().to_owned())
        .bind(reason)
        .bind(fire.idempotency_key.clone())
        .bind(D::time(fire.recorded_at))
        .execute(self.pool())
        .await?;
        let sql = format!(
            "SELECT {FIRE_COLUMNS} FROM schedule_fires \
             WHERE workflow = $1 AND trigger_id = $2 AND scheduled_at = $3"
        );
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(fire.workflow.clone())
            .bind(fire.trigger.clone())
            .bind(D::time(fire.scheduled_at))
            .fetch_one(self.pool())
            .await?;
        fire_record(&row)
    }

    async fn latest_started_fire(
        &self,
        workflow: &str,
        trigger: &str,
        before: DateTime<Utc>,
    ) -> Result<Option<FireRecord>, Error> {
        let sql = format!(
            "SELECT {FIRE_COLUMNS} FROM schedule_fires WHERE workflow = $1 AND trigger_id = $2 \
             AND outcome = 'started' AND scheduled_at < $3 ORDER BY scheduled_at DESC LIMIT 1"
        );
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(workflow.to_owned())
            .bind(trigger.to_owned())
            .bind(D::time(before))
            .fetch_optional(self.pool())
            .await?;
        row.as_ref().map(fire_record).transpose()
    }

    async fn list_fires(
        &self,
        workflow: &str,
        trigger: &str,
        max: u32,
    ) -> Result<Vec<FireRecord>, Error> {
        let sql = format!(
            "SELECT {FIRE_COLUMNS} FROM schedule_fires WHERE workflow = $1 AND trigger_id = $2 \
             ORDER BY scheduled_at DESC LIMIT $3"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(workflow.to_owned())
            .bind(trigger.to_owned())
            .bind(i64::from(max.min(SCHEDULE_FIRES_LIST_MAX)))
            .fetch_all(self.pool())
            .await?;
        rows.iter().map(fire_record).collect()
    }
}

fn schedule(row: &impl Columns) -> Result<ScheduleRecord, Error> {
    Ok(ScheduleRecord {
        workflow: row.text("workflow")?,
        trigger: row.text("trigger_id")?,
        cursor_at: row.time("cursor_at")?,
        paused_at: row.optional_time("paused_at")?,
        paused_by: row.optional_text("paused_by")?,
        last_fire_at: row.optional_time("last_fire_at")?,
        last_skipped_at: row.optional_time("last_skipped_at")?,
        skipped: u64::try_from(row.int8("skipped")?).unwrap_or(0),
    })
}

fn fire_record(row: &impl Columns) -> Result<FireRecord, Error> {
    Ok(FireRecord {
        workflow: row.text("workflow")?,
        trigger: row.text("trigger_id")?,
        scheduled_at: row.time("scheduled_at")?,
        outcome: FireOutcome::parse(&row.text("outcome")?)?,
        reason: row.optional_text("reason")?,
        idempotency_key: row.text("idempotency_key")?,
        recorded_at: row.time("recorded_at")?,
    })
}
