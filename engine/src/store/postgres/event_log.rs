//! The PostgreSQL event log: reads of streams and of the global log, the
//! projection rebuild, and appends: the one-statement fast path (fast.rs),
//! else one transaction per batch. Rows are written in a fixed
//! order (tasks, runs, steps, then the log lock) with each kind sorted by
//! key, so concurrent batches cannot deadlock; the log lock is taken last to
//! keep it short. A request that cannot be written (conflict, lost lease,
//! taken idempotency key) is settled on its own and the rest tried again.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use sqlx::postgres::PgRow;
use sqlx::{PgConnection, Row};
use uuid::Uuid;

use super::{PostgresStore, fast, rows};
use crate::chain::GENESIS_HASH;
use crate::store::decode;
use crate::store::dialect::Dialect;
use crate::store::error::Error;
use crate::store::event_log::EventLog;
use crate::store::prepare::{self, Checked};
use crate::store::types::*;

/// Transaction-scoped advisory lock serialising position assignment ("imx_log").
pub(super) const LOG_LOCK_KEY: i64 = 0x0069_6d78_5f6c_6f67;

const EVENT_COLUMNS: &str = <sqlx::Postgres as Dialect>::EVENT_COLUMNS;

impl EventLog for PostgresStore {
    async fn append_batch(
        &self,
        requests: Vec<AppendRequest>,
    ) -> Result<Vec<Result<Appended, Error>>, Error> {
        let checked = prepare::check_batch(&self.config, &requests)?;
        // Tasks leased at append time are their node's already: no NOTIFY.
        let creates_work = requests.iter().any(unleased_work);
        let notify = creates_work && self.wakes.notify_now();
        let results = append_checked(self, &checked, notify).await;
        // What committed: a request's tasks, and the NOTIFY with them.
        let created_work = results.as_ref().is_ok_and(|results| {
            results
                .iter()
                .zip(&requests)
                .any(|(result, request)| result.is_ok() && unleased_work(request))
        });
        self.wakes.appended(&self.pool, notify, created_work);
        results
    }

    async fn rebuild_projections<F>(&self, mut fold: F) -> Result<RebuildStats, Error>
    where
        F: FnMut(&[RecordedEvent]) -> ProjectionUpdate + Send,
    {
        let mut transaction = self.pool.begin().await?;
        // Same order as appends (read models, then the log lock): appends wait,
        // nothing deadlocks, and the log cannot move while it is folded.
        sqlx::query("LOCK TABLE runs, steps IN EXCLUSIVE MODE")
            .execute(&mut *transaction)
            .await?;
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(LOG_LOCK_KEY)
            .execute(&mut *transaction)
            .await?;
        sqlx::query("DELETE FROM steps")
            .execute(&mut *transaction)
            .await?;
        sqlx::query("DELETE FROM runs")
            .execute(&mut *transaction)
            .await?;
        let run_ids: Vec<Uuid> =
            sqlx::query_scalar("SELECT run_id FROM events WHERE seq = 1 ORDER BY position")
                .fetch_all(&mut *transaction)
                .await?;
        let mut stats = RebuildStats { runs: 0, events: 0 };
        for run_id in run_ids {
            let sql = format!("SELECT {EVENT_COLUMNS} FROM events WHERE run_id = $1 ORDER BY seq");
            let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(run_id)
                .fetch_all(&mut *transaction)
                .await?;
            let events = rows
                .iter()
                .map(decode::event)
                .collect::<Result<Vec<_>, _>>()?;
            let update = fold(&events);
            let rows = AppendRequest {
                projection: update,
                ..AppendRequest::new(run_id, 0, Vec::new())
            };
            rows::write_rows_and_lock(&mut transaction, &[&rows], self.now(), false).await?;
            stats.runs += 1;
            stats.events += events.len() as u64;
        }
        transaction.commit().await?;
        Ok(stats)
    }
}

enum Attempt {
    Committed(Vec<(usize, Appended)>),
    /// One request settled without being written; try the others again.
    Settled(usize, Result<Appended, Error>),
    /// A race the next round resolves (a concurrent start took the key).
    Again,
}

async fn append_checked(
    store: &PostgresStore,
    checked: &[Checked<'_>],
    notify: bool,
) -> Result<Vec<Result<Appended, Error>>, Error> {
    if let Some(results) = fast::try_append_all(store, checked, notify).await? {
        return Ok(results);
    }
    let mut order: Vec<usize> = (0..checked.len()).collect();
    order.sort_by_key(|&index| checked[index].request.run_id);
    let mut results: Vec<Option<Result<Appended, Error>>> =
        (0..checked.len()).map(|_| None).collect();
    // Each round settles a request or commits, so this bound is generous.
    let mut raced = false;
    for _round in 0..=2 * checked.len() + 2 {
        let pending: Vec<usize> = order
            .iter()
            .copied()
            .filter(|&index| results[index].is_none())
            .collect();
        if pending.is_empty() {
            break;
        }
        match attempt(store, checked, &pending, raced, notify).await? {
            Attempt::Committed(done) => {
                for (index, appended) in done {
                    results[index] = Some(Ok(appended));
                }
                break;
            }
            Attempt::Settled(index, result) => results[index] = Some(result),
            Attempt::Again => raced = true,
        }
    }
    crate::failpoint::crash_point(crate::failpoint::APPEND_AFTER_COMMIT);
    if let Ok(mut cache) = store.heads.lock() {
        cache.remember(results.iter().flatten().flatten());
    }
    Ok(results
        .into_iter()
        .zip(checked)
        .map(|(result, item)| {
            result.unwrap_or_else(|| {
                let request = item.request;
                Err(Error::Conflict {
                    run_id: request.run_id,
                    expected_seq: request.expected_seq,
                    actual_seq: None,
                })
            })
        })
        .collect())
}

async fn attempt(
    store: &PostgresStore,
    checked: &[Checked<'_>],
    pending: &[usize],
    raced: bool,
    notify: bool,
) -> Result<Attempt, Error> {
    let now = store.now();
    let mut transaction = store.pool.begin().await?;
    let requests: Vec<&AppendRequest> = pending
        .iter()
        .map(|&index| checked[index].request)
        .collect();
    if let Some((position, error)) = taken_key(&mut transaction, &requests, raced).await? {
        return Ok(Attempt::Settled(pending[position], Err(error)));
    }
    if let Some((position, error)) = complete_tasks(&mut transaction, &requests, now).await? {
        return Ok(Attempt::Settled(pending[position], Err(error)));
    }
    let heads = match rows::write_rows_and_lock(&mut transaction, &requests, now, notify).await {
        Err(error) if is_key_violation(&error) => return Ok(Attempt::Again),
        result => result?,
    };
    let (mut log_head, run_heads) = parse_heads(&heads)?;
    for (position, request) in requests.iter().enumerate() {
        let (last_seq, _) = run_heads
            .get(&request.run_id)
            .cloned()
            .unwrap_or((0, GENESIS_HASH.to_owned()));
        if last_seq != request.expected_seq {
            let result = match already_appended(&mut transaction, request).await? {
                Some(events) => Ok(Appended {
                    run_id: request.run_id,
                    events,
                }),
                None => Err(Error::Conflict {
                    run_id: request.run_id,
                    expected_seq: request.expected_seq,
                    actual_seq: Some(last_seq),
                }),
            };
            return Ok(Attempt::Settled(pending[position], result));
        }
    }
    let mut sealed = Vec::with_capacity(pending.len());
    for &index in pending {
        let item = &checked[index];
        let last_hash = run_heads
            .get(&item.request.run_id)
            .map_or(GENESIS_HASH, |(_, hash)| hash.as_str());
        sealed.push((index, prepare::seal(item, last_hash, &mut log_head, now)?));
    }
    match insert_events(&mut transaction, checked, &sealed).await {
        // Only a writer bypassing the log lock can get here; look again.
        Err(sqlx::Error::Database(database)) if database.is_unique_violation() => {
            return Ok(Attempt::Again);
        }
        result => result?,
    }
    crate::failpoint::crash_point(crate::failpoint::APPEND_BEFORE_COMMIT);
    transaction.commit().await?;
    Ok(Attempt::Committed(
        sealed
            .into_iter()
            .map(|(index, events)| {
                (
                    index,
                    Appended {
                        run_id: checked[index].request.run_id,
                        events,
                    },
                )
            })
            .collect(),
    ))
}

/// The first request whose run row claims an idempotency key another run
/// holds, or an earlier request of the batch claims. Only starts are checked (later appends repeat their own run's
/// key), unless a unique violation showed a race: then all keyed requests.
async fn taken_key(
    connection: &mut PgConnection,
    requests: &[&AppendRequest],
    raced: bool,
) -> Result<Option<(usize, Error)>, Error> {
    let keyed: Vec<(usize, &str, Uuid)> = requests
        .iter()
        .enumerate()
        .filter(|(_, request)| raced || request.expected_seq == 0)
        .filter_map(|(position, request)| {
            let run = request.projection.run.as_ref()?;
            Some((position, run.idempotency_key.as_deref()?, run.run_id))
        })
        .collect();
    if keyed.is_empty() {
        return Ok(None);
    }
    let keys: Vec<String> = keyed.iter().map(|(_, key, _)| (*key).to_owned()).collect();
    let owners: Vec<(String, Uuid)> =
        sqlx::query_as("SELECT idempotency_key, run_id FROM runs WHERE idempotency_key = ANY($1)")
            .bind(&keys)
            .fetch_all(&mut *connection)
            .await?;
    // A key an earlier request of this batch claims counts as taken too
    // (two starts with one key in one group commit).
    let mut owners: HashMap<String, Uuid> = owners.into_iter().collect();
    for (position, key, run_id) in keyed {
        match owners.get(key) {
            Some(&owner) if owner != run_id => {
                let key = key.to_owned();
                return Ok(Some((
                    position,
                    Error::IdempotencyKeyTaken { key, run_id: owner },
                )));
            }
            Some(_) => {}
            None => {
                owners.insert(key.to_owned(), run_id);
            }
        }
    }
    Ok(None)
}

fn is_key_violation(error: &Error) -> bool {
    match error {
        Error::Database {
            source: sqlx::Error::Database(database),
        } => database.constraint() == Some("runs_idempotency_key_unique"),
        _ => false,
    }
}

/// Removes the tasks whose leases produced these transitions; a request
/// whose lease is no longer held is settled with `LeaseLost`.
async fn complete_tasks(
    connection: &mut PgConnection,
    requests: &[&AppendRequest],
    now: DateTime<Utc>,
) -> Result<Option<(usize, Error)>, Error> {
    let mut completing: Vec<(usize, TaskId, Uuid)> = requests
        .iter()
        .enumerate()
        .filter_map(|(position, request)| {
            request
                .complete
                .map(|(task_id, token)| (position, task_id, token.0))
        })
        .collect();
    if completing.is_empty() {
        return Ok(None);
    }
    completing.sort_by_key(|(_, task_id, _)| *task_id);
    let task_ids: Vec<Uuid> = completing.iter().map(|(_, task_id, _)| *task_id).collect();
    let tokens: Vec<Uuid> = completing.iter().map(|(_, _, token)| *token).collect();
    let done: Vec<Uuid> = sqlx::query_scalar(
        // `= ANY` lets the planner use the primary key (a join with UNNEST
        // was planned as a scan of all tasks); `enable_seqscan = off` (mod.rs)
        // keeps a generic plan made on a small queue from scanning a big one.
        "DELETE FROM tasks t WHERE t.task_id = ANY($1::uuid[]) \
         AND (t.task_id, t.lease_token) IN (SELECT * FROM UNNEST($1::uuid[], $2::uuid[])) \
         AND t.lease_expires_at > $3 RETURNING t.task_id",
    )
    .bind(&task_ids)
    .bind(&tokens)
    .bind(now)
    .fetch_all(&mut *connection)
    .await?;
    Ok(completing
        .into_iter()
        .find(|(_, task_id, _)| !done.contains(task_id))
        .map(|(position, task_id, _)| (position, Error::LeaseLost { task_id })))
}

type RunHeads = HashMap<Uuid, (u64, String)>;

/// The log head and each run's head from `imx_lock_log_heads` rows (the row
/// without a run id is the log head).
fn parse_heads(rows: &[PgRow]) -> Result<(LogHead, RunHeads), Error> {
    let rows = rows
        .iter()
        .map(|row| {
            let seq = prepare::to_u64(row.try_get("head_seq")?, "seq")?;
            Ok((row.try_get("head_run_id")?, seq, row.try_get("head_hash")?))
        })
        .collect::<Result<Vec<_>, Error>>()?;
    Ok(prepare::split_heads(rows))
}

/// The events this very request wrote in an earlier attempt whose outcome
/// the caller did not learn (the connection dropped during commit).
async fn already_appended(
    connection: &mut PgConnection,
    request: &AppendRequest,
) -> Result<Option<Vec<RecordedEvent>>, Error> {
    let sql = format!(
        "SELECT {EVENT_COLUMNS} FROM events WHERE run_id = $1 AND seq > $2 AND append_id = $3 ORDER BY seq"
    );
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(request.run_id)
        .bind(prepare::to_i64(request.expected_seq)?)
        .bind(request.append_id)
        .fetch_all(&mut *connection)
        .await?;
    let events = rows
        .iter()
        .map(decode::event)
        .collect::<Result<Vec<_>, _>>()?;
    let complete = events.len() == request.events.len()
        && events
            .first()
            .is_some_and(|event| event.seq == request.expected_seq + 1);
    Ok(complete.then_some(events))
}

async fn insert_events(
    connection: &mut PgConnection,
    checked: &[Checked<'_>],
    sealed: &[(usize, Vec<RecordedEvent>)],
) -> Result<(), sqlx::Error> {
    let rows: Vec<(&RecordedEvent, &String, Uuid)> = sealed
        .iter()
        .flat_map(|(index, events)| {
            let item = &checked[*index];
            events
                .iter()
                .zip(&item.payloads)
                .map(move |(event, payload)| (event, payload, item.request.append_id))
        })
        .collect();
    if rows.is_empty() {
        return Ok(());
    }
    sqlx::query(
        "INSERT INTO events (position, run_id, seq, event_type, schema_version, payload, recorded_at, prev_hash, \
         hash, log_hash, append_id) SELECT e.position, e.run_id, e.seq, e.event_type, e.schema_version, \
         e.payload::json, e.recorded_at, e.prev_hash, e.hash, e.log_hash, e.append_id \
         FROM UNNEST($1::int8[], $2::uuid[], $3::int8[], $4::text[], $5::int4[], $6::text[], $7::timestamptz[], \
         $8::text[], $9::text[], $10::text[], $11::uuid[]) AS e(position, run_id, seq, event_type, schema_version, \
         payload, recorded_at, prev_hash, hash, log_hash, append_id)",
    )
    .bind(rows.iter().map(|(event, _, _)| event.position as i64).collect::<Vec<_>>())
    .bind(rows.iter().map(|(event, _, _)| event.run_id).collect::<Vec<_>>())
    .bind(rows.iter().map(|(event, _, _)| event.seq as i64).collect::<Vec<_>>())
    .bind(rows.iter().map(|(event, _, _)| event.event_type.clone()).collect::<Vec<_>>())
    .bind(rows.iter().map(|(event, _, _)| event.schema_version as i32).collect::<Vec<_>>())
    .bind(rows.iter().map(|(_, payload, _)| (*payload).clone()).collect::<Vec<_>>())
    .bind(rows.iter().map(|(event, _, _)| event.recorded_at).collect::<Vec<_>>())
    .bind(rows.iter().map(|(event, _, _)| event.prev_hash.clone()).collect::<Vec<_>>())
    .bind(rows.iter().map(|(event, _, _)| event.hash.clone()).collect::<Vec<_>>())
    .bind(rows.iter().map(|(event, _, _)| event.log_hash.clone()).collect::<Vec<_>>())
    .bind(rows.iter().map(|(_, _, append_id)| *append_id).collect::<Vec<_>>())
    .execute(&mut *connection)
    .await?;
    Ok(())
}

/// True when the append enqueues a task any node may claim (not leased to
/// the appending node): what other nodes are woken for.
fn unleased_work(request: &AppendRequest) -> bool {
    request.enqueue.iter().any(|task| task.lease.is_none())
}
