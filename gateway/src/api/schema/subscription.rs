//! Live updates over WebSocket (graphql-transport-ws), fed by the global log
//! tail, so they see appends made by any node on the same database.
//!
//! `runEvents` is gap-free: it first reads the run's stream from the store
//! after `afterSeq`, then follows the tail, and reads the store again
//! whenever the tail skips (lag, or events older than the tail's start).
//! It completes after the run's terminal event.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_graphql::{Context, ID, InputObject, Subscription};
use engine::store::RecordedEvent;
use engine::store::Store;
use engine::store::prelude::*;
use futures_util::Stream;
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::{broadcast, watch};
use uuid::Uuid;

use super::types::{Run, RunEvent, RunStatus, RunUpdate};
use super::{authorize, parse_run_id};
use crate::api::auth::Permission;
use crate::api::error::{ApiError, Code};
use crate::api::metrics::Metrics;

#[derive(Debug)]
pub struct Subscription;

/// Events fetched per store read while catching up.
const CATCH_UP_BATCH: u32 = 200;

/// Which runs `runUpdates` reports on.
#[derive(InputObject, Default, Debug, Clone)]
pub struct RunUpdatesFilter {
    pub status: Option<RunStatus>,
    pub workflow: Option<String>,
    pub run_id: Option<ID>,
}

pub fn is_terminal(event_type: &str) -> bool {
    matches!(event_type, "run.succeeded" | "run.failed" | "run.cancelled")
}

/// Events that change what a run list shows.
fn is_update(event_type: &str) -> bool {
    event_type.starts_with("run.")
        || matches!(
            event_type,
            "step.succeeded"
                | "step.failed"
                | "step.skipped"
                | "step.cancelled"
                | "approval.requested"
        )
}

/// Open subscriptions per caller (principal id), so that one key cannot
/// hold every subscription the server allows.
#[derive(Debug, Default)]
pub struct Subscribers {
    by_caller: Mutex<HashMap<String, i64>>,
}

/// One caller's subscription slot, given back when the stream ends.
#[derive(Debug)]
struct CallerSlot {
    subscribers: Arc<Subscribers>,
    caller: String,
}

impl Drop for CallerSlot {
    fn drop(&mut self) {
        let Ok(mut by_caller) = self.subscribers.by_caller.lock() else {
            return;
        };
        if let Some(count) = by_caller.get_mut(&self.caller) {
            *count -= 1;
            if *count <= 0 {
                by_caller.remove(&self.caller);
            }
        }
    }
}

/// LIMIT when the server already holds `subscriptions_max` subscriptions
/// or the caller `subscriptions_per_caller_max`; else the caller's slot.
fn check_capacity(api: &super::ApiContext, caller: &str) -> Result<CallerSlot, ApiError> {
    let max = api.limits.subscriptions_max;
    if api.metrics.subscriptions.get() >= max {
        return Err(ApiError::limit(format!(
            "this server holds {max} subscriptions (subscriptions_max); retry later or use another node"
        )));
    }
    let per_caller = api.limits.subscriptions_per_caller_max;
    let mut by_caller = api
        .subscribers
        .by_caller
        .lock()
        .map_err(|poisoned| ApiError::internal(&poisoned, None))?;
    let count = by_caller.entry(caller.to_owned()).or_default();
    if *count >= per_caller {
        return Err(ApiError::limit(format!(
            "this caller holds {per_caller} subscriptions (subscriptions_per_caller_max); complete one before starting another"
        )));
    }
    *count += 1;
    Ok(CallerSlot {
        subscribers: Arc::clone(&api.subscribers),
        caller: caller.to_owned(),
    })
}

#[Subscription]
impl Subscription {
    /// Every event of one run with `seq > afterSeq`, in order, without gaps;
    /// resume after a reconnect by passing the last seq received.
    async fn run_events(
        &self,
        ctx: &Context<'_>,
        run_id: ID,
        #[graphql(default = 0)] after_seq: u64,
    ) -> async_graphql::Result<impl Stream<Item = async_graphql::Result<RunEvent>> + use<>> {
        let (api, principal) = authorize(ctx, Permission::Read, "subscribing to a run")?;
        let slot = check_capacity(api, &principal.id)?;
        let run_id = parse_run_id(&run_id)?;
        let run = api.store.get_run(run_id).await.map_err(ApiError::from)?;
        let run = run.ok_or_else(|| super::run_not_found(run_id))?;
        let finished_before = matches!(
            run.row.status.as_str(),
            "succeeded" | "failed" | "cancelled"
        ) && run.last_seq <= after_seq;
        let follow = Follow {
            store: api.store.clone(),
            events: api.tail.subscribe(),
            shutdown: api.tail.shutdown(),
            metrics: api.metrics.clone(),
            _slot: slot,
        };
        Ok(follow_run(follow, run_id, after_seq, finished_before))
    }

    /// Changes to runs (run lifecycle, step endings, approvals requested)
    /// matching the filter, from now on. Under heavy load updates may be
    /// skipped (never reordered): re-query `runs` after a LIMIT error.
    async fn run_updates(
        &self,
        ctx: &Context<'_>,
        filter: Option<RunUpdatesFilter>,
    ) -> async_graphql::Result<impl Stream<Item = async_graphql::Result<RunUpdate>> + use<>> {
        let (api, principal) = authorize(ctx, Permission::Read, "subscribing to run updates")?;
        let slot = check_capacity(api, &principal.id)?;
        let filter = filter.unwrap_or_default();
        let only_run = filter.run_id.as_ref().map(parse_run_id).transpose()?;
        let store = api.store.clone();
        let mut events = api.tail.subscribe();
        let mut shutdown = api.tail.shutdown();
        let metrics = api.metrics.clone();
        Ok(async_stream::stream! {
            let _gauge = metrics.subscription_guard();
            let _slot = slot;
            loop {
                let received = tokio::select! {
                    _ = shutdown.changed() => None,
                    received = events.recv() => Some(received),
                };
                let event = match received {
                    None | Some(Err(RecvError::Closed)) => break,
                    Some(Err(RecvError::Lagged(skipped))) => {
                        yield Err(ApiError::new(Code::Limit, format!("{skipped} updates were skipped: this subscriber fell behind; re-query runs")).into());
                        continue;
                    }
                    Some(Ok(event)) => event,
                };
                if !is_update(&event.event_type) || only_run.is_some_and(|id| id != event.run_id) {
                    continue;
                }
                let run = match store.get_run(event.run_id).await {
                    Ok(Some(run)) => run,
                    Ok(None) => continue,
                    Err(error) => {
                        yield Err(ApiError::from(error).into());
                        continue;
                    }
                };
                let status_matches = filter.status.is_none_or(|status| status.as_str() == run.row.status);
                let workflow_matches = filter.workflow.as_ref().is_none_or(|name| *name == run.row.workflow);
                if status_matches && workflow_matches {
                    yield Ok(RunUpdate { event: RunEvent((*event).clone()), run: Run(run) });
                }
            }
        })
    }
}

/// What one `runEvents` stream reads from.
struct Follow {
    store: Arc<Store>,
    events: broadcast::Receiver<Arc<RecordedEvent>>,
    shutdown: watch::Receiver<bool>,
    metrics: Arc<Metrics>,
    /// Held for as long as the stream lives.
    _slot: CallerSlot,
}

/// Catch up from the store (the source of truth), then follow the tail
/// until it skips (lag, or a seq gap), then catch up again.
fn follow_run(
    mut follow: Follow,
    run_id: Uuid,
    after_seq: u64,
    finished_before: bool,
) -> impl Stream<Item = async_graphql::Result<RunEvent>> {
    async_stream::stream! {
        let _gauge = follow.metrics.subscription_guard();
        let mut last = after_seq;
        if finished_before {
            return;
        }
        'outer: loop {
            loop {
                let batch = match follow.store.read_stream(run_id, last, CATCH_UP_BATCH).await {
                    Ok(batch) => batch,
                    Err(error) => {
                        yield Err(ApiError::from(error).into());
                        break 'outer;
                    }
                };
                if batch.is_empty() {
                    break;
                }
                for event in batch {
                    last = event.seq;
                    let terminal = is_terminal(&event.event_type);
                    yield Ok(RunEvent(event));
                    if terminal {
                        break 'outer;
                    }
                }
            }
            loop {
                let received = tokio::select! {
                    _ = follow.shutdown.changed() => None,
                    received = follow.events.recv() => Some(received),
                };
                let event: Arc<RecordedEvent> = match received {
                    None | Some(Err(RecvError::Closed)) => break 'outer,
                    Some(Err(RecvError::Lagged(_))) => continue 'outer,
                    Some(Ok(event)) => event,
                };
                if event.run_id != run_id || event.seq <= last {
                    continue;
                }
                if event.seq != last + 1 {
                    continue 'outer;
                }
                last = event.seq;
                let terminal = is_terminal(&event.event_type);
                yield Ok(RunEvent((*event).clone()));
                if terminal {
                    break 'outer;
                }
            }
        }
    }
}
