//! The one-round-trip append. A node remembers the log head and the heads
//! of the runs it appended to (only heads it saw commit); when a batch's
//! heads are all remembered, it seals the events against them and sends
//! everything as ONE statement that takes the log lock after its row writes
//! and then inserts the events. Under the lock, a committed head is final,
//! so UNIQUE (position) and UNIQUE (run_id, seq) are the whole head check:
//! when another writer got in between, the insert fails, nothing is
//! written, and the caller takes the four-round-trip path, which reads the
//! heads under the lock. With one writer per database (a node's group
//! committer) the fast path is the common case.

use std::collections::HashMap;

use uuid::Uuid;

use super::PostgresStore;
use super::rows;
use crate::chain::GENESIS_HASH;
use crate::store::error::Error;
use crate::store::prepare::{self, Checked};
use crate::store::types::*;

/// Bound on remembered run heads; past it the memory starts over.
const REMEMBERED_RUNS_MAX: usize = 10_000;

/// The heads this node last wrote.
#[derive(Debug, Default)]
pub(super) struct HeadCache {
    log: Option<LogHead>,
    runs: HashMap<Uuid, (u64, String)>,
}

impl HeadCache {
    /// Records the heads after a commit (an older log head never replaces a newer one).
    pub(super) fn remember<'a>(&mut self, appended: impl IntoIterator<Item = &'a Appended>) {
        if self.runs.len() > REMEMBERED_RUNS_MAX {
            self.runs.clear();
        }
        for appended in appended {
            let Some(last) = appended.events.last() else {
                continue;
            };
            self.runs
                .insert(appended.run_id, (last.seq, last.hash.clone()));
            if self
                .log
                .as_ref()
                .is_none_or(|log| log.position < last.position)
            {
                self.log = Some(LogHead {
                    position: last.position,
                    log_hash: last.log_hash.clone(),
                });
            }
        }
    }

    fn forget(&mut self, run_ids: impl IntoIterator<Item = Uuid>) {
        self.log = None;
        for run_id in run_ids {
            self.runs.remove(&run_id);
        }
    }

    /// The heads to seal `checked` against, if all are remembered.
    fn heads_for(&self, checked: &[Checked<'_>]) -> Option<RememberedHeads> {
        let log = self.log.clone()?;
        let mut runs = Vec::with_capacity(checked.len());
        for item in checked {
            let request = item.request;
            let hash = match self.runs.get(&request.run_id) {
                _ if request.expected_seq == 0 => GENESIS_HASH.to_owned(),
                Some((seq, hash)) if *seq == request.expected_seq => hash.clone(),
                _ => return None,
            };
            runs.push((request.run_id, request.expected_seq, hash));
        }
        Some(RememberedHeads { log, runs })
    }
}

/// The heads an append is sealed against; `runs` in request order
/// (run id, seq, hash).
#[derive(Debug)]
struct RememberedHeads {
    log: LogHead,
    runs: Vec<(Uuid, u64, String)>,
}

/// Appends `checked` in one statement, or returns `None` (nothing written)
/// when the heads are not remembered or turned out stale.
pub(super) async fn try_append_all(
    store: &PostgresStore,
    checked: &[Checked<'_>],
    notify: bool,
) -> Result<Option<Vec<Result<Appended, Error>>>, Error> {
    // Starts with an idempotency key need the key looked up first.
    let keyed_start = |item: &Checked<'_>| {
        item.request.expected_seq == 0
            && item
                .request
                .projection
                .run
                .as_ref()
                .is_some_and(|run| run.idempotency_key.is_some())
    };
    if checked.is_empty() || checked.iter().any(keyed_start) {
        return Ok(None);
    }
    let remembered = match store.heads.lock() {
        Ok(cache) => cache.heads_for(checked),
        Err(_) => None,
    };
    let Some(remembered) = remembered else {
        return Ok(None);
    };
    let now = store.now();
    let mut log_head = remembered.log.clone();
    let mut sealed = Vec::with_capacity(checked.len());
    for (item, (_, _, hash)) in checked.iter().zip(&remembered.runs) {
        sealed.push(prepare::seal(item, hash, &mut log_head, now)?);
    }
    let events: Vec<(&RecordedEvent, &String, Uuid)> = sealed
        .iter()
        .zip(checked)
        .flat_map(|(events, item)| {
            events
                .iter()
                .zip(&item.payloads)
                .map(move |(event, payload)| (event, payload, item.request.append_id))
        })
        .collect();
    let requests: Vec<&AppendRequest> = checked.iter().map(|item| item.request).collect();
    // One statement is its own transaction: a crash here is a crash before COMMIT.
    crate::failpoint::crash_point(crate::failpoint::APPEND_BEFORE_COMMIT);
    let result = rows::append_all(&store.pool, &requests, &events, now, notify).await;
    let run_ids = requests.iter().map(|request| request.run_id);
    match result {
        Ok(()) => {}
        Err(sqlx::Error::Database(database))
            if database.code().as_deref() == Some("IX001") || database.is_unique_violation() =>
        {
            forget(store, run_ids);
            return Ok(None);
        }
        Err(error) => {
            forget(store, run_ids);
            return Err(error.into());
        }
    }
    let appended: Vec<Appended> = sealed
        .into_iter()
        .zip(checked)
        .map(|(events, item)| Appended {
            run_id: item.request.run_id,
            events,
        })
        .collect();
    crate::failpoint::crash_point(crate::failpoint::APPEND_AFTER_COMMIT);
    if let Ok(mut cache) = store.heads.lock() {
        cache.remember(&appended);
    }
    Ok(Some(appended.into_iter().map(Ok).collect()))
}

fn forget(store: &PostgresStore, run_ids: impl IntoIterator<Item = Uuid>) {
    if let Ok(mut cache) = store.heads.lock() {
        cache.forget(run_ids);
    }
}
