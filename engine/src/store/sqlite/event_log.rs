//! The SQLite event log: appends (single and batched, one transaction),
//! reads of streams and of the global log, and the projection rebuild.
//! Under `BEGIN IMMEDIATE` an append is the only writer, so every check (expected seq, lease, idempotency key) is made before writing:
//! the heads, leases and key owners of the whole batch are read with one
//! statement each, each request is decided in order (as if its predecessors
//! were already written), and the accepted ones are written with one
//! statement per kind of row (`rows.rs`).

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use sqlx::{Row, SqliteConnection};
use uuid::Uuid;

use super::{SqliteStore, parse_uuid, rows, time_text, uuid_text};
use crate::chain::GENESIS_HASH;
use crate::store::decode;
use crate::store::dialect::Dialect;
use crate::store::error::Error;
use crate::store::event_log::EventLog;
use crate::store::prepare::{self, Checked};
use crate::store::types::*;

const EVENT_COLUMNS: &str = <sqlx::Sqlite as Dialect>::EVENT_COLUMNS;

impl EventLog for SqliteStore {
    async fn append_batch(
        &self,
        requests: Vec<AppendRequest>,
    ) -> Result<Vec<Result<Appended, Error>>, Error> {
        let checked = prepare::check_batch(&self.config, &requests)?;
        let mut transaction = self.write_transaction().await?;
        let now = self.now();
        let mut known = Known::read(&mut transaction, &checked, now).await?;
        let mut results = Vec::with_capacity(checked.len());
        let mut accepted: Vec<(&Checked<'_>, Vec<RecordedEvent>)> = Vec::new();
        for item in &checked {
            match known.decide(&mut transaction, item, now).await? {
                Decision::Write(events) => {
                    results.push(Ok(Appended {
                        run_id: item.request.run_id,
                        events: events.clone(),
                    }));
                    accepted.push((item, events));
                }
                Decision::Settled(result) => results.push(result),
            }
        }
        rows::insert_events(&mut transaction, &accepted).await?;
        let written: Vec<&AppendRequest> = accepted.iter().map(|(item, _)| item.request).collect();
        let projections: Vec<&ProjectionUpdate> =
            written.iter().map(|request| &request.projection).collect();
        rows::write_projections(&mut transaction, &projections).await?;
        rows::write_work(&mut transaction, &written, now).await?;
        crate::failpoint::crash_point(crate::failpoint::APPEND_BEFORE_COMMIT);
        transaction.commit().await?;
        crate::failpoint::crash_point(crate::failpoint::APPEND_AFTER_COMMIT);
        // Tasks leased at append time are their node's already: no wake-up.
        if written
            .iter()
            .any(|request| request.enqueue.iter().any(|task| task.lease.is_none()))
        {
            self.wake_workers();
        }
        Ok(results)
    }

    async fn rebuild_projections<F>(&self, mut fold: F) -> Result<RebuildStats, Error>
    where
        F: FnMut(&[RecordedEvent]) -> ProjectionUpdate + Send,
    {
        let mut transaction = self.write_transaction().await?;
        sqlx::query("DELETE FROM steps")
            .execute(&mut *transaction)
            .await?;
        sqlx::query("DELETE FROM runs")
            .execute(&mut *transaction)
            .await?;
        let run_ids: Vec<String> =
            sqlx::query_scalar("SELECT run_id FROM events WHERE seq = 1 ORDER BY position")
                .fetch_all(&mut *transaction)
                .await?;
        let mut stats = RebuildStats { runs: 0, events: 0 };
        for run_id in run_ids {
            let sql = format!("SELECT {EVENT_COLUMNS} FROM events WHERE run_id = ?1 ORDER BY seq");
            let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(&run_id)
                .fetch_all(&mut *transaction)
                .await?;
            let events = rows
                .iter()
                .map(decode::event)
                .collect::<Result<Vec<_>, _>>()?;
            let update = fold(&events);
            rows::write_projections(&mut transaction, &[&update]).await?;
            stats.runs += 1;
            stats.events += events.len() as u64;
        }
        transaction.commit().await?;
        Ok(stats)
    }
}

enum Decision {
    /// Sealed events to write.
    Write(Vec<RecordedEvent>),
    /// Not written: an earlier attempt's events (a retry), or why not.
    Settled(Result<Appended, Error>),
}

/// What the database holds for a batch, kept up to date as requests are
/// accepted, so each request is decided as if the ones before it were written.
struct Known {
    log_head: LogHead,
    run_heads: HashMap<String, (u64, String)>,
    /// (task, token) of the leases still held.
    leases: HashSet<(String, String)>,
    /// Idempotency key to the run that holds it.
    owners: HashMap<String, Uuid>,
}

impl Known {
    async fn read(
        connection: &mut SqliteConnection,
        checked: &[Checked<'_>],
        now: DateTime<Utc>,
    ) -> Result<Known, Error> {
        let run_ids: Vec<String> = checked
            .iter()
            .map(|item| uuid_text(item.request.run_id))
            .collect();
        let (log_head, run_heads) = heads(connection, &run_ids).await?;
        let completing: Vec<(String, String)> = checked
            .iter()
            .filter_map(|item| item.request.complete)
            .map(|(task_id, token)| (uuid_text(task_id), uuid_text(token.0)))
            .collect();
        let keys: Vec<&str> = checked
            .iter()
            .filter_map(|item| {
                item.request
                    .projection
                    .run
                    .as_ref()?
                    .idempotency_key
                    .as_deref()
            })
            .collect();
        Ok(Known {
            log_head,
            run_heads,
            leases: held_leases(connection, &completing, now).await?,
            owners: key_owners(connection, &keys).await?,
        })
    }

    async fn decide(
        &mut self,
        connection: &mut SqliteConnection,
        item: &Checked<'_>,
        now: DateTime<Utc>,
    ) -> Result<Decision, Error> {
        let request = item.request;
        let run_id = request.run_id;
        let (last_seq, last_hash) = self
            .run_heads
            .get(&uuid_text(run_id))
            .cloned()
            .unwrap_or((0, GENESIS_HASH.to_owned()));
        if last_seq != request.expected_seq {
            if let Some(events) = already_appended(connection, request).await? {
                return Ok(Decision::Settled(Ok(Appended { run_id, events })));
            }
            return Ok(Decision::Settled(Err(Error::Conflict {
                run_id,
                expected_seq: request.expected_seq,
                actual_seq: Some(last_seq),
            })));
        }
        let lease = request
            .complete
            .map(|(task_id, token)| (task_id, (uuid_text(task_id), uuid_text(token.0))));
        if let Some((task_id, lease)) = &lease
            && !self.leases.contains(lease)
        {
            return Ok(Decision::Settled(Err(Error::LeaseLost {
                task_id: *task_id,
            })));
        }
        let key = request
            .projection
            .run
            .as_ref()
            .and_then(|run| run.idempotency_key.as_deref());
        if let Some(key) = key
            && let Some(&owner) = self.owners.get(key)
            && owner != run_id
        {
            return Ok(Decision::Settled(Err(Error::IdempotencyKeyTaken {
                key: key.to_owned(),
                run_id: owner,
            })));
        }
        // Accepted: what the database will hold once it is written.
        if let Some((_, lease)) = lease {
            self.leases.remove(&lease);
        }
        if let Some(key) = key {
            self.owners.insert(key.to_owned(), run_id);
        }
        let events = prepare::seal(item, &last_hash, &mut self.log_head, now)?;
        if let Some(last) = events.last() {
            self.run_heads
                .insert(uuid_text(run_id), (last.seq, last.hash.clone()));
        }
        Ok(Decision::Write(events))
    }
}

/// The log head and the heads of `run_ids`, in one statement.
async fn heads(
    connection: &mut SqliteConnection,
    run_ids: &[String],
) -> Result<(LogHead, HashMap<String, (u64, String)>), Error> {
    let json = serde_json::to_string(run_ids)
        .map_err(|error| Error::invalid(format!("encoding run ids: {error}")))?;
    let rows = sqlx::query(
        "SELECT NULL AS run_id, position AS seq, log_hash AS hash FROM          (SELECT position, log_hash FROM events ORDER BY position DESC LIMIT 1)          UNION ALL SELECT e.run_id, e.seq, e.hash FROM json_each(?1) AS j JOIN events e          ON e.run_id = j.value AND e.seq = (SELECT MAX(seq) FROM events m WHERE m.run_id = j.value)",
    )
    .bind(json)
    .fetch_all(&mut *connection)
    .await?;
    let rows = rows
        .iter()
        .map(|row| {
            let seq = prepare::to_u64(row.try_get("seq")?, "seq")?;
            Ok((row.try_get("run_id")?, seq, row.try_get("hash")?))
        })
        .collect::<Result<Vec<_>, Error>>()?;
    Ok(prepare::split_heads(rows))
}

/// Which of the (task, token) leases are still held at `now`.
async fn held_leases(
    connection: &mut SqliteConnection,
    completing: &[(String, String)],
    now: DateTime<Utc>,
) -> Result<HashSet<(String, String)>, Error> {
    if completing.is_empty() {
        return Ok(HashSet::new());
    }
    let json = serde_json::to_string(completing)
        .map_err(|error| Error::invalid(format!("encoding leases: {error}")))?;
    let held: Vec<(String, String)> = sqlx::query_as(
        "SELECT t.task_id, t.lease_token FROM json_each(?1) AS j JOIN tasks t          ON t.task_id = j.value ->> 0 AND t.lease_token = j.value ->> 1 WHERE t.lease_expires_at > ?2",
    )
    .bind(json)
    .bind(time_text(now))
    .fetch_all(&mut *connection)
    .await?;
    Ok(held.into_iter().collect())
}

/// The runs that hold any of `keys`.
async fn key_owners(
    connection: &mut SqliteConnection,
    keys: &[&str],
) -> Result<HashMap<String, Uuid>, Error> {
    if keys.is_empty() {
        return Ok(HashMap::new());
    }
    let json = serde_json::to_string(keys)
        .map_err(|error| Error::invalid(format!("encoding keys: {error}")))?;
    let owners: Vec<(String, String)> = sqlx::query_as(
        "SELECT idempotency_key, run_id FROM runs WHERE idempotency_key IN (SELECT value FROM json_each(?1))",
    )
    .bind(json)
    .fetch_all(&mut *connection)
    .await?;
    owners
        .into_iter()
        .map(|(key, run_id)| Ok((key, parse_uuid(&run_id)?)))
        .collect()
}

/// The events this very request wrote in an earlier attempt whose outcome
/// the caller did not learn (the connection dropped during commit).
async fn already_appended(
    connection: &mut SqliteConnection,
    request: &AppendRequest,
) -> Result<Option<Vec<RecordedEvent>>, Error> {
    let sql = format!(
        "SELECT {EVENT_COLUMNS} FROM events WHERE run_id = ?1 AND seq > ?2 AND append_id = ?3 ORDER BY seq"
    );
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(uuid_text(request.run_id))
        .bind(prepare::to_i64(request.expected_seq)?)
        .bind(uuid_text(request.append_id))
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
