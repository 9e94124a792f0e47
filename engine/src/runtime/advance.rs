//! The one loop every fact goes through: load the run (cached, caught up
//! from the log), apply the fact, settle, append events + projections +
//! tasks + timers in one transaction fenced by the expected seq (and the
//! task's lease), retry on a lost seq race, then carry out the effects that
//! reach other runs.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use chrono::{DateTime, Utc};

use crate::core::decide::Effect;
use crate::core::event::{Event, EventEnvelope};
use crate::core::evolve;
use crate::core::run::{self, Settled};
use crate::core::state::RunState;
use crate::core::workflow::Workflow;
use crate::store::{self, AppendRequest, EventStore, LeaseToken, NewEvent, RunId, TaskId};

use super::queues::timer_uuid;
use super::{CONFLICT_RETRIES_MAX, Error, RUN_CACHE_MAX, Runtime, is_stale, projection};

/// Most events read from a stream per page.
const STREAM_PAGE_MAX: u32 = 1_000;

/// Folded states and workflow definitions this node has seen.
#[derive(Debug, Default)]
pub(super) struct Cache {
    pub runs: HashMap<RunId, (Arc<Workflow>, RunState)>,
    pub workflows: HashMap<(String, String), Arc<Workflow>>,
}

/// What became of a fact.
#[derive(Debug)]
pub(super) enum Advanced {
    /// Appended; the state after it.
    Appended(Box<RunState>),
    /// The core rejected the fact (a duplicate, a late result): dropped.
    Stale(evolve::Error),
}

impl<S: EventStore> Runtime<S> {
    /// The run's workflow and state, caught up with the log.
    pub(super) async fn load(&self, run_id: RunId) -> Result<(Arc<Workflow>, RunState), Error> {
        let cached = self
            .cache
            .lock()
            .ok()
            .and_then(|cache| cache.runs.get(&run_id).cloned());
        let (mut workflow, mut state) = match cached {
            Some((workflow, state)) => (Some(workflow), state),
            None => (None, RunState::new()),
        };
        loop {
            let page = self
                .store
                .read_stream(run_id, state.seq, STREAM_PAGE_MAX)
                .await?;
            for recorded in &page {
                let envelope = EventEnvelope::from_stored(
                    recorded.run_id,
                    recorded.seq,
                    &recorded.event_type,
                    recorded.schema_version,
                    &recorded.payload,
                )
                .map_err(|error| Error::corrupt(format!("run {run_id}: {error}")))?;
                state
                    .apply(&envelope)
                    .map_err(|error| Error::corrupt(format!("run {run_id}: {error}")))?;
            }
            if page.len() < STREAM_PAGE_MAX as usize {
                break;
            }
        }
        if state.run_id.is_none() {
            return Err(Error::RunNotFound { run_id });
        }
        let workflow = match workflow.take() {
            Some(workflow) => workflow,
            None => {
                self.workflow(&state.workflow, Some(&state.version))
                    .await?
                    .0
            }
        };
        self.remember(run_id, &workflow, &state);
        Ok((workflow, state))
    }

    fn remember(&self, run_id: RunId, workflow: &Arc<Workflow>, state: &RunState) {
        if let Ok(mut cache) = self.cache.lock() {
            if state.is_finished() {
                cache.runs.remove(&run_id);
                return;
            }
            if cache.runs.len() >= RUN_CACHE_MAX {
                cache.runs.clear();
            }
            cache
                .runs
                .insert(run_id, (Arc::clone(workflow), state.clone()));
        }
    }

    fn forget(&self, run_id: RunId) {
        if let Ok(mut cache) = self.cache.lock() {
            cache.runs.remove(&run_id);
        }
    }

    /// Applies the facts `facts` builds from the current state, settles and
    /// appends; `complete` fences the append by a task's lease and removes
    /// the task with it. Then carries out the effects on other runs.
    pub(super) async fn advance<F>(
        &self,
        run_id: RunId,
        facts: F,
        complete: Option<(TaskId, LeaseToken)>,
    ) -> Result<Advanced, Error>
    where
        F: FnMut(&RunState, DateTime<Utc>) -> Result<Vec<Event>, Error> + Send,
    {
        let (advanced, effects) = self.advance_inner(run_id, facts, complete).await?;
        self.follow(run_id, effects).await;
        Ok(advanced)
    }

    /// [`Runtime::advance`] without the follow-ups: returns the effects.
    pub(super) async fn advance_inner<F>(
        &self,
        run_id: RunId,
        mut facts: F,
        complete: Option<(TaskId, LeaseToken)>,
    ) -> Result<(Advanced, Vec<Effect>), Error>
    where
        F: FnMut(&RunState, DateTime<Utc>) -> Result<Vec<Event>, Error> + Send,
    {
        for _ in 0..CONFLICT_RETRIES_MAX {
            let (workflow, mut state) = self.load(run_id).await?;
            let expected_seq = state.seq;
            let timers_before: BTreeSet<String> = state.timers.keys().cloned().collect();
            let now = self.now();
            let mut events = Vec::new();
            for fact in facts(&state, now)? {
                let envelope = EventEnvelope::new(run_id, state.seq + 1, fact);
                match state.apply(&envelope) {
                    Ok(()) => events.push(envelope),
                    Err(error) if is_stale(&error) => {
                        return Ok((Advanced::Stale(error), Vec::new()));
                    }
                    Err(error) => return Err(Error::corrupt(error)),
                }
            }
            let settled = self.settle_all(&workflow, &mut state, now)?;
            events.extend(settled.events);
            if events.is_empty() {
                return Ok((Advanced::Appended(Box::new(state)), settled.effects));
            }
            let mut request = self.request(run_id, expected_seq, &events, &state, now);
            request.complete = complete;
            self.add_work(&mut request, run_id, &settled.effects, now);
            request.cancel_timers = timers_before
                .iter()
                .filter(|name| !state.timers.contains_key(*name))
                .map(|name| timer_uuid(run_id, name))
                .collect();
            match self.append_retrying(&request).await {
                Ok(_) => {
                    self.remember(run_id, &workflow, &state);
                    self.announce(run_id, &state);
                    return Ok((Advanced::Appended(Box::new(state)), settled.effects));
                }
                Err(store::Error::Conflict { .. }) => self.forget(run_id),
                Err(error) => {
                    self.forget(run_id);
                    return Err(error.into());
                }
            }
        }
        Err(Error::Contended { run_id })
    }

    /// `settle`, then fail inline the attempts whose effect cannot be carried
    /// out (a `sleep` without a valid duration, an `agent` without a queue)
    /// and settle again, until nothing more changes.
    pub(super) fn settle_all(
        &self,
        workflow: &Workflow,
        state: &mut RunState,
        now: DateTime<Utc>,
    ) -> Result<Settled, Error> {
        let mut all = Settled::default();
        loop {
            let settled = run::settle(workflow, state, now, &self.config.secrets)?;
            let mut failures = Vec::new();
            let mut effects = Vec::new();
            for effect in settled.effects {
                match super::follow::unworkable(&effect, now) {
                    Some(failure) => failures.push(failure),
                    None => effects.push(effect),
                }
            }
            all.events.extend(settled.events);
            all.effects.extend(effects);
            if failures.is_empty() {
                return Ok(all);
            }
            for failure in failures {
                let envelope =
                    EventEnvelope::new(state.run_id.unwrap_or_default(), state.seq + 1, failure);
                state.apply(&envelope).map_err(Error::corrupt)?;
                all.events.push(envelope);
            }
        }
    }

    /// The append of `events` with the projection rows they touch.
    pub(super) fn request(
        &self,
        run_id: RunId,
        expected_seq: u64,
        events: &[EventEnvelope],
        state: &RunState,
        now: DateTime<Utc>,
    ) -> AppendRequest {
        let new_events = events
            .iter()
            .map(|envelope| {
                let (event_type, schema_version, payload) = envelope.event.to_payload();
                NewEvent {
                    event_type: event_type.to_owned(),
                    schema_version,
                    payload,
                }
            })
            .collect();
        let mut request = AppendRequest::new(run_id, expected_seq, new_events);
        request.projection = projection::update(state, events, now);
        request
    }

    /// Records a run's first events; `Existing` when the idempotency key (or
    /// the deterministic child id) already names a run. Then carries out the
    /// effects on other runs.
    pub(super) async fn start_pinned(
        &self,
        run_id: RunId,
        workflow: Arc<Workflow>,
        version: &str,
        input: serde_json::Value,
        idempotency_key: Option<String>,
    ) -> Result<super::Started, Error> {
        let (started, effects) = self
            .start_inner(run_id, workflow, version, input, idempotency_key, None)
            .await?;
        self.follow(run_id, effects).await;
        Ok(started)
    }

    /// [`Runtime::start_pinned`] without the follow-ups: returns the effects.
    pub(super) async fn start_inner(
        &self,
        run_id: RunId,
        workflow: Arc<Workflow>,
        version: &str,
        input: serde_json::Value,
        idempotency_key: Option<String>,
        parent: Option<crate::core::event::ParentRun>,
    ) -> Result<(super::Started, Vec<Effect>), Error> {
        let now = self.now();
        let (started, effects) = run::start_run(
            &workflow,
            version,
            run_id,
            input,
            idempotency_key,
            parent,
            now,
        );
        let mut state = RunState::new();
        state.apply(&started).map_err(Error::corrupt)?;
        let mut settled = self.settle_all(&workflow, &mut state, now)?;
        let mut events = vec![started];
        events.append(&mut settled.events);
        let mut all_effects: Vec<Effect> = effects;
        all_effects.append(&mut settled.effects);
        let mut request = self.request(run_id, 0, &events, &state, now);
        self.add_work(&mut request, run_id, &all_effects, now);
        match self.append_retrying(&request).await {
            Ok(_) => {
                self.remember(run_id, &workflow, &state);
                self.announce(run_id, &state);
                let started = super::Started {
                    run_id,
                    existing: false,
                };
                Ok((started, all_effects))
            }
            // As the store's `start_run`: the key names a run already.
            Err(store::Error::IdempotencyKeyTaken { run_id: owner, .. }) => {
                match self.store.get_run(owner).await? {
                    Some(existing) => {
                        let started = super::Started {
                            run_id: existing.row.run_id,
                            existing: true,
                        };
                        Ok((started, Vec::new()))
                    }
                    None => Err(store::Error::RunNotFound { run_id: owner }.into()),
                }
            }
            // Someone started this very run id first (a child run started by
            // two nodes recovering the same parent).
            Err(store::Error::Conflict { .. }) => {
                let started = super::Started {
                    run_id,
                    existing: true,
                };
                Ok((started, Vec::new()))
            }
            Err(error) => Err(error.into()),
        }
    }
}
