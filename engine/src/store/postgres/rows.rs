//! The non-event rows of a PostgreSQL append, written in ONE statement (one
//! round trip): run and step upserts, new tasks and timers, cancelled
//! timers, completed tasks, the wake-up NOTIFY when one is due (wake.rs),
//! then the log lock, then either the events (the one-statement append) or
//! the heads read under the lock (the slow path). Round trips, not rows,
//! are what a single-event transition pays for, so this statement carries
//! it all.
//!
//! The statement is built for the append's shape: only the parts that have
//! rows get a CTE and parameters, and a part with one row reads it from a
//! one-row VALUES instead of UNNEST over arrays. A part with nothing to
//! write still costs the server its executor nodes, index opens and array
//! decoding, and a one-event transition pays that on every commit
//! (measured in docs/bench-store.md). One text per shape, so each is
//! prepared once per connection and planned generically (`plan_cache_mode`).

use chrono::{DateTime, Utc};
use sqlx::error::BoxDynError;
use sqlx::postgres::{PgArguments, PgHasArrayType, PgRow};
use sqlx::{Arguments, AssertSqlSafe, Encode, PgConnection, Postgres, Type};
use uuid::Uuid;

use super::WORK_CHANNEL;
use super::event_log::LOG_LOCK_KEY;
use crate::store::error::Error;
use crate::store::types::*;

/// Writes the rows of `requests` (each request's projection and work), takes
/// the log lock and returns the heads (`imx_lock_log_heads` rows), in one
/// round trip. Completions were done before.
pub(super) async fn write_rows_and_lock(
    connection: &mut PgConnection,
    requests: &[&AppendRequest],
    now: DateTime<Utc>,
    notify: bool,
) -> Result<Vec<PgRow>, Error> {
    let mut statement = Statement::default();
    let done = statement.rows(&Rows::of(requests, now, false), notify)?;
    let lock = statement.bind(LOG_LOCK_KEY)?;
    let run_ids = statement.bind(col(requests, |request| request.run_id))?;
    let after_rows = done.sum();
    statement.push(&format!(
        " SELECT h.head_run_id, h.head_seq, h.head_hash FROM {from}\
         imx_lock_log_heads({lock}, {run_ids}::uuid[], {after_rows}) AS h",
        from = done.lateral_prefix(),
    ));
    let (sql, arguments) = statement.finish();
    Ok(sqlx::query_with(AssertSqlSafe(sql), arguments)
        .fetch_all(&mut *connection)
        .await?)
}

/// The whole append as one statement (an implicit transaction): rows,
/// completions, the log lock (taken after every row lock, the order all
/// transactions follow), then the events, sealed against the heads this
/// node committed. A stale head makes the events INSERT fail on UNIQUE
/// (position) or (run_id, seq); a lost lease fails the statement through
/// `imx_fail` (IX001, migration 0006). Either way nothing was written.
pub(super) async fn append_all(
    pool: &sqlx::PgPool,
    requests: &[&AppendRequest],
    events: &[(&RecordedEvent, &String, Uuid)],
    now: DateTime<Utc>,
    notify: bool,
) -> Result<(), sqlx::Error> {
    let mut statement = Statement::default();
    let rows = Rows::of(requests, now, true);
    let done = statement.rows(&rows, notify)?;
    let lock = statement.bind(LOG_LOCK_KEY)?;
    statement.cte("lk AS MATERIALIZED");
    statement.push(&format!(
        "SELECT pg_advisory_xact_lock({lock}){})",
        done.sql_from()
    ));
    let mut join = ", lk".to_owned();
    if !rows.completions.is_empty() {
        let expected = statement.bind(rows.completions.len() as i64)?;
        statement.push(&format!(
            ", chk AS MATERIALIZED (SELECT CASE WHEN done.completed <> {expected} \
             THEN imx_fail('IX001', 'imx: a completed task''s lease is no longer held') \
             ELSE true END AS ok FROM done, lk)"
        ));
        join = ", lk, chk WHERE chk.ok".to_owned();
    }
    let mut e = Source::of(events.len());
    statement.column(&mut e, events, "int8", |(event, _, _)| {
        event.position as i64
    })?;
    statement.column(&mut e, events, "uuid", |(event, _, _)| event.run_id)?;
    statement.column(&mut e, events, "int8", |(event, _, _)| event.seq as i64)?;
    statement.column(&mut e, events, "text", |(event, _, _)| {
        event.event_type.clone()
    })?;
    statement.column(&mut e, events, "int4", |(event, _, _)| {
        event.schema_version as i32
    })?;
    statement.column(&mut e, events, "text", |(_, payload, _)| (*payload).clone())?;
    statement.column(&mut e, events, "timestamptz", |(event, _, _)| {
        event.recorded_at
    })?;
    statement.column(&mut e, events, "text", |(event, _, _)| {
        event.prev_hash.clone()
    })?;
    statement.column(&mut e, events, "text", |(event, _, _)| event.hash.clone())?;
    statement.column(&mut e, events, "text", |(event, _, _)| {
        event.log_hash.clone()
    })?;
    statement.column(&mut e, events, "uuid", |(_, _, append_id)| *append_id)?;
    statement.push(&format!(
        " INSERT INTO events (position, run_id, seq, event_type, schema_version, payload, recorded_at, \
         prev_hash, hash, log_hash, append_id) SELECT e.position, e.run_id, e.seq, e.event_type, \
         e.schema_version, e.payload::json, e.recorded_at, e.prev_hash, e.hash, e.log_hash, e.append_id \
         FROM {}{join}",
        e.sql(
            "e(position, run_id, seq, event_type, schema_version, payload, recorded_at, prev_hash, hash, \
             log_hash, append_id)"
        )
    ));
    let (sql, arguments) = statement.finish();
    sqlx::query_with(AssertSqlSafe(sql), arguments)
        .execute(pool)
        .await?;
    Ok(())
}

/// The rows of an append, each kind sorted by key so that concurrent
/// transactions lock them in the same order.
struct Rows<'a> {
    runs: Vec<&'a RunRow>,
    steps: Vec<&'a StepRow>,
    tasks: Vec<(Uuid, &'a NewTask)>,
    timers: Vec<(Uuid, &'a NewTimer)>,
    /// (timer id, run id)
    cancelled: Vec<(Uuid, Uuid)>,
    /// (task id, lease token)
    completions: Vec<(Uuid, Uuid)>,
    now: DateTime<Utc>,
}

impl<'a> Rows<'a> {
    fn of(requests: &[&'a AppendRequest], now: DateTime<Utc>, with_completions: bool) -> Self {
        let mut runs: Vec<&RunRow> = requests
            .iter()
            .filter_map(|request| request.projection.run.as_ref())
            .collect();
        runs.sort_by_key(|run| run.run_id);
        let mut steps: Vec<&StepRow> = requests
            .iter()
            .flat_map(|request| &request.projection.steps)
            .collect();
        steps.sort_by(|a, b| (a.run_id, &a.step_id).cmp(&(b.run_id, &b.step_id)));
        // ON CONFLICT cannot touch one row twice in a statement: last one wins.
        steps.reverse();
        steps.dedup_by(|a, b| a.run_id == b.run_id && a.step_id == b.step_id);
        steps.reverse();
        let mut completions: Vec<(Uuid, Uuid)> = requests
            .iter()
            .filter(|_| with_completions)
            .filter_map(|request| request.complete.map(|(task_id, token)| (task_id, token.0)))
            .collect();
        completions.sort();
        Rows {
            runs,
            steps,
            tasks: requests
                .iter()
                .flat_map(|request| request.enqueue.iter().map(|task| (request.run_id, task)))
                .collect(),
            timers: requests
                .iter()
                .flat_map(|request| request.timers.iter().map(|timer| (request.run_id, timer)))
                .collect(),
            cancelled: requests
                .iter()
                .flat_map(|request| request.cancel_timers.iter().map(|id| (*id, request.run_id)))
                .collect(),
            completions,
            now,
        }
    }
}

/// The CTEs a statement wrote for its rows: what the log lock must follow.
#[derive(Default)]
struct Done {
    /// `done` (counts) and `notified` were written.
    ctes: Vec<&'static str>,
}

impl Done {
    /// ` FROM done, notified` (what was written), or nothing.
    fn sql_from(&self) -> String {
        if self.ctes.is_empty() {
            String::new()
        } else {
            format!(" FROM {}", self.ctes.join(", "))
        }
    }

    /// `done, notified, LATERAL ` (what was written), or nothing.
    fn lateral_prefix(&self) -> String {
        if self.ctes.is_empty() {
            String::new()
        } else {
            format!("{}, LATERAL ", self.ctes.join(", "))
        }
    }

    /// Every count, as an expression that makes its reader wait for the writes.
    fn sum(&self) -> &'static str {
        if self.ctes.is_empty() {
            "0"
        } else {
            "done.completed + done.rows + done.tasks"
        }
    }
}

/// SQL text and its arguments, built together so that they always agree.
#[derive(Default)]
struct Statement {
    sql: String,
    arguments: PgArguments,
}

impl Statement {
    /// Adds an argument; returns its placeholder (`$n`).
    fn bind<'q, T: Encode<'q, Postgres> + Type<Postgres> + 'q>(
        &mut self,
        value: T,
    ) -> Result<String, sqlx::Error> {
        self.arguments
            .add(value)
            .map_err(|error: BoxDynError| sqlx::Error::Encode(error))?;
        Ok(format!("${}", self.arguments.len()))
    }

    fn push(&mut self, sql: &str) {
        self.sql.push_str(sql);
    }

    /// Opens a CTE (`head` is `name AS` or `name AS MATERIALIZED`),
    /// with `WITH` when it is the first.
    fn cte(&mut self, head: &str) {
        let lead = if self.sql.is_empty() { "WITH " } else { ", " };
        self.sql.push_str(lead);
        self.sql.push_str(head);
        self.sql.push_str(" (");
    }

    fn finish(self) -> (String, PgArguments) {
        (self.sql, self.arguments)
    }

    /// Writes a CTE per kind of row that `rows` has, then `done` (their
    /// counts) and `notified` (the NOTIFY, when `notify` and tasks were
    /// enqueued), which the log lock reads so that it is taken after every
    /// row lock.
    fn rows(&mut self, rows: &Rows, notify: bool) -> Result<Done, sqlx::Error> {
        let mut counted: [Vec<&str>; 3] = Default::default();
        let [written, enqueued, completed] = &mut counted;
        let mut now = None;
        if !rows.runs.is_empty() {
            self.runs(&rows.runs)?;
            written.push("r");
        }
        if !rows.steps.is_empty() {
            self.steps(&rows.steps)?;
            written.push("s");
        }
        if !rows.tasks.is_empty() {
            let at = self.now(&mut now, rows.now)?;
            let tasks = &rows.tasks;
            let mut u = Source::of(tasks.len());
            self.column(&mut u, tasks, "uuid", |(_, task)| task.task_id)?;
            self.column(&mut u, tasks, "uuid", |(run_id, _)| *run_id)?;
            self.column(&mut u, tasks, "text", |(_, task)| task.queue.clone())?;
            self.column(&mut u, tasks, "text", |(_, task)| task.payload.to_string())?;
            // A task leased at append time is claimed once already: ready
            // again (for anyone) when its lease expires, as after a claim.
            let expires = |task: &NewTask| {
                let lease = task.lease.as_ref()?;
                Some(rows.now + chrono::Duration::milliseconds(lease.lease_ms as i64))
            };
            self.column(&mut u, tasks, "timestamptz", |(_, task)| {
                expires(task).unwrap_or(task.available_at.unwrap_or(rows.now))
            })?;
            self.column(&mut u, tasks, "text", |(_, task)| {
                task.lease.as_ref().map(|lease| lease.owner.clone())
            })?;
            self.column(&mut u, tasks, "uuid", |(_, task)| {
                task.lease.as_ref().map(|lease| lease.token.0)
            })?;
            self.column(&mut u, tasks, "timestamptz", |(_, task)| expires(task))?;
            self.cte("t AS");
            self.push(&format!(
                "INSERT INTO tasks (task_id, run_id, queue, payload, available_at, created_at, \
                 lease_owner, lease_token, lease_expires_at, claims) \
                 SELECT u.task_id, u.run_id, u.queue, u.payload::json, u.available_at, {at}, \
                 u.lease_owner, u.lease_token, u.lease_expires_at, \
                 CASE WHEN u.lease_token IS NULL THEN 0 ELSE 1 END \
                 FROM {} RETURNING 1)",
                u.sql("u(task_id, run_id, queue, payload, available_at, lease_owner, lease_token, lease_expires_at)")
            ));
            enqueued.push("t");
        }
        if !rows.timers.is_empty() {
            let at = self.now(&mut now, rows.now)?;
            let timers = &rows.timers;
            let mut u = Source::of(timers.len());
            self.column(&mut u, timers, "uuid", |(_, timer)| timer.timer_id)?;
            self.column(&mut u, timers, "uuid", |(run_id, _)| *run_id)?;
            self.column(&mut u, timers, "text", |(_, timer)| timer.queue.clone())?;
            self.column(&mut u, timers, "text", |(_, timer)| {
                timer.payload.to_string()
            })?;
            self.column(&mut u, timers, "timestamptz", |(_, timer)| timer.fire_at)?;
            self.cte("tm AS");
            self.push(&format!(
                "INSERT INTO timers (timer_id, run_id, queue, payload, fire_at, created_at) \
                 SELECT u.timer_id, u.run_id, u.queue, u.payload::json, u.fire_at, {at} \
                 FROM {} RETURNING 1)",
                u.sql("u(timer_id, run_id, queue, payload, fire_at)")
            ));
            written.push("tm");
        }
        if !rows.cancelled.is_empty() {
            let timer_ids = self.bind(col(&rows.cancelled, |(timer_id, _)| *timer_id))?;
            let run_ids = self.bind(col(&rows.cancelled, |(_, run_id)| *run_id))?;
            self.cte("ct AS");
            self.push(&format!(
                "DELETE FROM timers d WHERE d.timer_id = ANY({timer_ids}::uuid[]) \
                 AND (d.timer_id, d.run_id) IN (SELECT * FROM UNNEST({timer_ids}::uuid[], {run_ids}::uuid[])) \
                 RETURNING 1)"
            ));
            written.push("ct");
        }
        if !rows.completions.is_empty() {
            let at = self.now(&mut now, rows.now)?;
            let task_ids = self.bind(col(&rows.completions, |(task_id, _)| *task_id))?;
            let tokens = self.bind(col(&rows.completions, |(_, token)| *token))?;
            self.cte("cp AS");
            self.push(&format!(
                "DELETE FROM tasks d WHERE d.task_id = ANY({task_ids}::uuid[]) \
                 AND (d.task_id, d.lease_token) IN (SELECT * FROM UNNEST({task_ids}::uuid[], {tokens}::uuid[])) \
                 AND d.lease_expires_at > {at} RETURNING 1)"
            ));
            completed.push("cp");
        }
        if self.sql.is_empty() {
            return Ok(Done::default());
        }
        let count = |names: &[&str]| {
            if names.is_empty() {
                "0::int8".to_owned()
            } else {
                names
                    .iter()
                    .map(|name| format!("(SELECT count(*) FROM {name})"))
                    .collect::<Vec<_>>()
                    .join(" + ")
            }
        };
        self.push(&format!(
            ", done AS MATERIALIZED (SELECT {} AS completed, {} AS rows, {} AS tasks)",
            count(completed),
            count(written),
            count(enqueued)
        ));
        let mut done = Done { ctes: vec!["done"] };
        // Other nodes' idle workers (wake.rs decides when).
        if notify && !rows.tasks.is_empty() {
            let channel = self.bind(WORK_CHANNEL)?;
            self.push(&format!(
                ", notified AS MATERIALIZED (SELECT pg_notify({channel}, '') FROM done)"
            ));
            done.ctes.push("notified");
        }
        Ok(done)
    }

    /// The placeholder of the append's time, bound on first use.
    fn now(
        &mut self,
        slot: &mut Option<String>,
        now: DateTime<Utc>,
    ) -> Result<String, sqlx::Error> {
        if let Some(placeholder) = slot {
            return Ok(placeholder.clone());
        }
        let placeholder = self.bind(now)?;
        *slot = Some(placeholder.clone());
        Ok(placeholder)
    }

    fn runs(&mut self, runs: &[&RunRow]) -> Result<(), sqlx::Error> {
        let mut u = Source::of(runs.len());
        self.column(&mut u, runs, "uuid", |run| run.run_id)?;
        self.column(&mut u, runs, "text", |run| run.workflow.clone())?;
        self.column(&mut u, runs, "text", |run| run.version.clone())?;
        self.column(&mut u, runs, "text", |run| run.status.clone())?;
        self.column(&mut u, runs, "text", |run| run.input.to_string())?;
        self.column(&mut u, runs, "text", |run| {
            run.output.as_ref().map(ToString::to_string)
        })?;
        self.column(&mut u, runs, "text", |run| run.error.clone())?;
        self.column(&mut u, runs, "uuid", |run| run.parent_run_id)?;
        self.column(&mut u, runs, "text", |run| run.idempotency_key.clone())?;
        self.column(&mut u, runs, "timestamptz", |run| run.created_at)?;
        self.column(&mut u, runs, "timestamptz", |run| run.updated_at)?;
        self.column(&mut u, runs, "uuid", |run| run.forked_from)?;
        self.cte("r AS");
        self.push(&format!(
            "INSERT INTO runs (run_id, workflow, version, status, input, output, error, parent_run_id, \
             idempotency_key, created_at, updated_at, forked_from) \
             SELECT u.run_id, u.workflow, u.version, u.status, u.input::json, u.output::json, u.error, \
             u.parent_run_id, u.idempotency_key, u.created_at, u.updated_at, u.forked_from FROM {} \
             ON CONFLICT (run_id) DO UPDATE SET workflow = EXCLUDED.workflow, version = EXCLUDED.version, \
             status = EXCLUDED.status, input = EXCLUDED.input, output = EXCLUDED.output, error = EXCLUDED.error, \
             parent_run_id = EXCLUDED.parent_run_id, idempotency_key = EXCLUDED.idempotency_key, \
             created_at = EXCLUDED.created_at, updated_at = EXCLUDED.updated_at, \
             forked_from = EXCLUDED.forked_from RETURNING 1)",
            u.sql(
                "u(run_id, workflow, version, status, input, output, error, parent_run_id, \
                 idempotency_key, created_at, updated_at, forked_from)"
            )
        ));
        Ok(())
    }

    fn steps(&mut self, steps: &[&StepRow]) -> Result<(), sqlx::Error> {
        let mut u = Source::of(steps.len());
        self.column(&mut u, steps, "uuid", |step| step.run_id)?;
        self.column(&mut u, steps, "text", |step| step.step_id.clone())?;
        self.column(&mut u, steps, "text", |step| step.status.clone())?;
        self.column(&mut u, steps, "int4", |step| {
            i32::try_from(step.attempts).unwrap_or(i32::MAX)
        })?;
        self.column(&mut u, steps, "text", |step| {
            step.output.as_ref().map(ToString::to_string)
        })?;
        self.column(&mut u, steps, "text", |step| step.error.clone())?;
        self.column(&mut u, steps, "timestamptz", |step| step.updated_at)?;
        self.cte("s AS");
        self.push(&format!(
            "INSERT INTO steps (run_id, step_id, status, attempts, output, error, updated_at) \
             SELECT u.run_id, u.step_id, u.status, u.attempts, u.output::json, u.error, u.updated_at \
             FROM {} ON CONFLICT (run_id, step_id) DO UPDATE SET status = EXCLUDED.status, \
             attempts = EXCLUDED.attempts, output = EXCLUDED.output, error = EXCLUDED.error, \
             updated_at = EXCLUDED.updated_at RETURNING 1)",
            u.sql("u(run_id, step_id, status, attempts, output, error, updated_at)")
        ));
        Ok(())
    }

    /// Binds one column of `items` into `source`: the value itself when
    /// there is one item, else an array of them.
    fn column<T, U>(
        &mut self,
        source: &mut Source,
        items: &[T],
        sql_type: &'static str,
        field: impl Fn(&T) -> U,
    ) -> Result<(), sqlx::Error>
    where
        U: for<'q> Encode<'q, Postgres> + Type<Postgres> + PgHasArrayType,
    {
        let placeholder = match items {
            [item] => self.bind(field(item))?,
            _ => self.bind(col(items, field))?,
        };
        source.columns.push((placeholder, sql_type));
        Ok(())
    }
}

/// What a CTE reads its rows from: a one-row `VALUES` of scalars when
/// there is one row (nothing to decode as arrays, no function scan to
/// materialize: the common one-run transition), else `UNNEST` of arrays.
struct Source {
    single: bool,
    /// (placeholder, SQL type of one value)
    columns: Vec<(String, &'static str)>,
}

impl Source {
    fn of(rows: usize) -> Self {
        Source {
            single: rows == 1,
            columns: Vec::new(),
        }
    }

    /// `(VALUES (...)) AS alias(names)` or `UNNEST(...) AS alias(names)`.
    fn sql(&self, alias_and_names: &str) -> String {
        let (brackets, open, close) = if self.single {
            ("", "(VALUES (", "))")
        } else {
            ("[]", "UNNEST(", ")")
        };
        let columns: Vec<String> = self
            .columns
            .iter()
            .map(|(placeholder, sql_type)| format!("{placeholder}::{sql_type}{brackets}"))
            .collect();
        format!("{open}{}{close} AS {alias_and_names}", columns.join(", "))
    }
}

/// One column of a multi-row statement: `field` of every item.
fn col<T, U>(items: &[T], field: impl Fn(&T) -> U) -> Vec<U> {
    items.iter().map(field).collect()
}
