//! The one loop every fact goes through: load the run (cached, caught up
//! from the log), apply the fact, settle, append events + projections +
//! tasks + timers in one transaction fenced by the expected seq (and the
//! task's lease), retry on a lost seq race, then carry out the effects that
//! reach other runs.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use hashlink::LruCache;

use crate::core::effect::Effect;
use crate::core::event::{Event, EventEnvelope, RunCancelRequested};
use crate::core::evolve;
use crate::core::run::{self, Settled};
use crate::core::scope::Host;
use crate::core::state::RunState;
use crate::core::workflow::Workflow;
use crate::store::{self, AppendRequest, EventStore, LeaseToken, NewEvent, NewTask, RunId, TaskId};

use super::queues::{TIMER_QUEUE, TimerTask, timer_uuid};
use super::{
    CONFLICT_RETRIES_MAX, Error, RUN_CACHE_EVENTS_MAX, RUN_CACHE_MAX, Runtime, is_stale, projection,
};

/// Most events read from a stream per page.
const STREAM_PAGE_MAX: u32 = 1_000;
/// Who `run.cancel_requested` names when the engine itself stops a run.
pub const ENGINE_ACTOR: &str = "imx (engine)";
/// Most facts one advance records before settling (each caller records one or two).
const FACTS_MAX: usize = 16;

/// Most events one [`settle_all`] records: two settle rounds' worth.
const SETTLED_EVENTS_MAX: usize =
    2 * (run::SETTLE_EVENTS_MAX + crate::core::decide::DECISION_OVERSHOOT_MAX);

// One advance appends its facts and at most what `settle_all` records:
// always within the store's limit per append.
const _: () = assert!(SETTLED_EVENTS_MAX + FACTS_MAX <= store::EVENTS_PER_APPEND_MAX);
// A fork's first append (its start and one adopted step per other step)
// fits an append even when it cannot be settled in the same one.
const _: () = assert!(crate::core::dsl::STEPS_MAX <= store::EVENTS_PER_APPEND_MAX);

/// Folded states and workflow definitions this node has seen. Runs are
/// kept least recently used first, within `RUN_CACHE_MAX` runs and
/// `RUN_CACHE_EVENTS_MAX` folded events (a state grows with its events):
/// a run that ends on another node is never reported to this one, so its
/// state ages out instead of staying until a count is reached (the soak
/// showed every node and agent growing ~1–3 MiB a minute that way).
pub(super) struct Cache {
    runs: LruCache<RunId, (Arc<Workflow>, RunState)>,
    /// The sum of the cached states' `seq`.
    events: u64,
    pub workflows: HashMap<(String, String), Arc<Workflow>>,
}

impl Default for Cache {
    fn default() -> Self {
        Cache {
            runs: LruCache::new_unbounded(),
            events: 0,
            workflows: HashMap::new(),
        }
    }
}

impl std::fmt::Debug for Cache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cache")
            .field("runs", &self.runs.len())
            .field("events", &self.events)
            .field("workflows", &self.workflows.len())
            .finish()
    }
}

impl Cache {
    /// A run's cached workflow and state, now the most recently used.
    pub fn run(&mut self, run_id: RunId) -> Option<(Arc<Workflow>, RunState)> {
        self.runs.get(&run_id).cloned()
    }

    /// Keeps a run's state, evicting the least recently used runs past
    /// either limit.
    pub fn keep(&mut self, run_id: RunId, workflow: &Arc<Workflow>, state: &RunState) {
        self.forget(run_id);
        self.events += state.seq;
        self.runs
            .insert(run_id, (Arc::clone(workflow), state.clone()));
        while self.runs.len() > RUN_CACHE_MAX || self.events > RUN_CACHE_EVENTS_MAX {
            match self.runs.remove_lru() {
                Some((_, (_, evicted))) => self.events -= evicted.seq,
                None => break,
            }
        }
    }

    pub fn forget(&mut self, run_id: RunId) {
        if let Some((_, state)) = self.runs.remove(&run_id) {
            self.events -= state.seq;
        }
    }

    #[cfg(test)]
    fn len(&self) -> (usize, u64) {
        (self.runs.len(), self.events)
    }
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
            .and_then(|mut cache| cache.run(run_id));
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

    /// The cached workflow and state of a run, as this node last saw them
    /// (not caught up with the log).
    fn cached(&self, run_id: RunId) -> Option<(Arc<Workflow>, RunState)> {
        self.cache.lock().ok()?.runs.get(&run_id).cloned()
    }

    fn remember(&self, run_id: RunId, workflow: &Arc<Workflow>, state: &RunState) {
        if let Ok(mut cache) = self.cache.lock() {
            if state.is_finished() {
                cache.forget(run_id);
            } else {
                cache.keep(run_id, workflow, state);
            }
        }
    }

    fn forget(&self, run_id: RunId) {
        if let Ok(mut cache) = self.cache.lock() {
            cache.forget(run_id);
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
        // A task's result starts from the cached state without reading the
        // log: the append is fenced by the expected seq, so a state another
        // writer moved on conflicts and is read again. Anything else a
        // cached state decides (stale, an error, nothing to record) is
        // decided again from the log before it counts.
        let mut trust_cache = complete.is_some();
        'attempts: for _ in 0..CONFLICT_RETRIES_MAX {
            let cached = trust_cache.then(|| self.cached(run_id)).flatten();
            let unread = cached.is_some();
            let (workflow, mut state) = match cached {
                Some(hit) => hit,
                None => self.load(run_id).await?,
            };
            trust_cache = false;
            let expected_seq = state.seq;
            let timers_before: BTreeSet<String> = state.timers.keys().cloned().collect();
            let now = self.now();
            let mut events = Vec::new();
            let facts = match facts(&state, now) {
                Ok(facts) => facts,
                Err(_) if unread => continue 'attempts,
                Err(error) => return Err(error),
            };
            debug_assert!(
                facts.len() <= FACTS_MAX,
                "{} facts in one advance",
                facts.len()
            );
            for fact in facts {
                let envelope = EventEnvelope::new(run_id, state.seq + 1, fact);
                match state.apply(&envelope) {
                    Ok(()) => events.push(envelope),
                    Err(_) if unread => continue 'attempts,
                    Err(error) if is_stale(&error) => {
                        return Ok((Advanced::Stale(error), Vec::new()));
                    }
                    Err(error) => return Err(Error::corrupt(error)),
                }
            }
            let (state, settled, request) = self
                .settle_off_thread(&workflow, state, events, expected_seq, now)
                .await?;
            if request.is_none() && unread {
                continue 'attempts;
            }
            let Some(mut request) = request else {
                // Nothing to record. A task that asked for this (a
                // `Continue` someone else already carried out) is done.
                if let Some((task_id, token)) = complete {
                    match self.store.complete_task(task_id, token).await {
                        Ok(()) | Err(store::Error::LeaseLost { .. }) => {}
                        Err(error) => return Err(error.into()),
                    }
                }
                return Ok((Advanced::Appended(Box::new(state)), settled.effects));
            };
            request.complete = complete;
            let reserved = self.add_work(&mut request, run_id, &settled.effects, now);
            if settled.more {
                request.enqueue.push(continue_task(now));
            }
            request.cancel_timers = timers_before
                .iter()
                .filter(|name| !state.timers.contains_key(*name))
                .map(|name| timer_uuid(run_id, name))
                .collect();
            match self.append_retrying(&request).await {
                Ok(_) => {
                    self.remember(run_id, &workflow, &state);
                    self.dispatch(run_id, reserved);
                    self.announce(run_id, &state);
                    return Ok((Advanced::Appended(Box::new(state)), settled.effects));
                }
                Err(store::Error::Conflict { .. }) => self.forget(run_id),
                Err(
                    refused @ (store::Error::PayloadTooLarge { .. }
                    | store::Error::LimitExceeded { .. }),
                ) if state.cancel_requested.is_none() => {
                    self.forget(run_id);
                    return Box::pin(self.stop_refused(run_id, refused, complete)).await;
                }
                Err(error) => {
                    self.forget(run_id);
                    return Err(error.into());
                }
            }
        }
        Err(Error::Contended { run_id })
    }

    /// The store refused what the run decided next (a limit the core's own
    /// checks did not foresee, or a store configured tighter than the
    /// defaults). Retrying would be refused again and wedge the run, so it
    /// is stopped instead: `run.cancel_requested` naming the refusal, then
    /// the usual wind-down (small events) to `cancelled`.
    async fn stop_refused(
        &self,
        run_id: RunId,
        refused: store::Error,
        complete: Option<(TaskId, LeaseToken)>,
    ) -> Result<(Advanced, Vec<Effect>), Error> {
        tracing::error!(run_id = %run_id, error = %refused, "the store refused the run's next events; stopping the run");
        let reason = format!(
            "stopped by the engine: the store refused to record the run's next events ({refused})"
        );
        let facts = move |state: &RunState, now: DateTime<Utc>| {
            if state.cancel_requested.is_some() {
                return Ok(Vec::new());
            }
            Ok(vec![Event::RunCancelRequested(RunCancelRequested {
                at: now,
                by: Some(ENGINE_ACTOR.to_owned()),
                reason: Some(reason.clone()),
            })])
        };
        self.advance_inner(run_id, facts, complete).await
    }

    /// Settles `state` after `events` (the facts, already applied) and builds
    /// the append, on a blocking thread: templates and serialisation are CPU
    /// work that must not hold up the async workers. `None` when there is
    /// nothing to append.
    async fn settle_off_thread(
        &self,
        workflow: &Arc<Workflow>,
        mut state: RunState,
        mut events: Vec<EventEnvelope>,
        expected_seq: u64,
        now: DateTime<Utc>,
    ) -> Result<(RunState, Settled, Option<AppendRequest>), Error> {
        let run_id = state.run_id.unwrap_or_default();
        let workflow = Arc::clone(workflow);
        let secrets = self.config.secrets.clone();
        let evaluator = Arc::clone(&self.config.evaluator);
        tokio::task::spawn_blocking(move || {
            let host = Host {
                secrets: &secrets,
                evaluator: &*evaluator,
            };
            let mut settled = settle_all(&workflow, &mut state, now, host)?;
            events.append(&mut settled.events);
            let request =
                (!events.is_empty()).then(|| request(run_id, expected_seq, &events, &state, now));
            Ok((state, settled, request))
        })
        .await
        .map_err(|join| Error::Decide {
            run_id,
            detail: join.to_string(),
        })?
    }

    /// Records a run's first events; `Existing` when the idempotency key (or
    /// the deterministic child id) already names a run. Then carries out the
    /// effects on other runs.
    pub(super) async fn start_pinned(
        &self,
        run_id: RunId,
        workflow: Arc<Workflow>,
        version: &str,
        start: run::Start,
    ) -> Result<super::Started, Error> {
        let (started, effects) = self.start_inner(run_id, workflow, version, start).await?;
        self.follow(run_id, effects).await;
        Ok(started)
    }

    /// [`Runtime::start_pinned`] without the follow-ups: returns the effects.
    pub(super) async fn start_inner(
        &self,
        run_id: RunId,
        workflow: Arc<Workflow>,
        version: &str,
        start: run::Start,
    ) -> Result<(super::Started, Vec<Effect>), Error> {
        let now = self.now();
        let start = self.with_vars(&workflow, run_id, start, now).await?;
        let (started, effects) = run::start_run(&workflow, version, run_id, start, now);
        self.begin(run_id, workflow, vec![started], effects, now)
            .await
    }

    /// `start` with the workflow's `vars` rendered (off the async workers,
    /// with the node's evaluator, no secrets): what `run.started` records.
    pub(super) async fn with_vars(
        &self,
        workflow: &Arc<Workflow>,
        run_id: RunId,
        mut start: run::Start,
        now: DateTime<Utc>,
    ) -> Result<run::Start, Error> {
        if workflow.vars.is_empty() {
            return Ok(start);
        }
        let evaluator = Arc::clone(&self.config.evaluator);
        let (definition, input) = (Arc::clone(workflow), start.input.clone());
        let (trigger, parent) = (start.trigger.clone(), start.parent.clone());
        let rendered = super::off_workers("vars rendering", move || {
            let host = Host {
                secrets: &crate::core::scope::NO_SECRETS,
                evaluator: evaluator.as_ref(),
            };
            let run = crate::core::scope::RunContext {
                id: Some(run_id),
                workflow: &definition.name,
                attempt: 1,
                started_at: Some(now),
                trigger: trigger.as_ref(),
                parent: parent.as_ref(),
                status: crate::core::state::RunStatus::Running.as_str(),
                error: None,
            };
            run::render_vars(&definition, run, &input, host)
        })
        .await?;
        start.vars = rendered.map_err(|error| Error::Vars {
            workflow: workflow.name.clone(),
            detail: error.to_string(),
        })?;
        Ok(start)
    }

    /// Appends the first events of a new run (`run.started`, and for a fork
    /// the adopted steps) with everything the core settles after them.
    pub(super) async fn begin(
        &self,
        run_id: RunId,
        workflow: Arc<Workflow>,
        first: Vec<EventEnvelope>,
        effects: Vec<Effect>,
        now: DateTime<Utc>,
    ) -> Result<(super::Started, Vec<Effect>), Error> {
        let mut state = RunState::new();
        for event in &first {
            state.apply(event).map_err(Error::corrupt)?;
        }
        let (state, mut settled, request) =
            if first.len() + SETTLED_EVENTS_MAX <= store::EVENTS_PER_APPEND_MAX {
                self.settle_off_thread(&workflow, state, first, 0, now)
                    .await?
            } else {
                // A fork that takes over many steps: its first append holds
                // them only, and a continue task settles the rest.
                let append = request(run_id, 0, &first, &state, now);
                let settled = Settled {
                    more: true,
                    ..Settled::default()
                };
                (state, settled, Some(append))
            };
        let mut request = request.ok_or_else(|| Error::corrupt("a start without events"))?;
        let mut all_effects: Vec<Effect> = effects;
        all_effects.append(&mut settled.effects);
        let reserved = self.add_work(&mut request, run_id, &all_effects, now);
        if settled.more {
            request.enqueue.push(continue_task(now));
        }
        match self.append_retrying(&request).await {
            Ok(_) => {
                self.remember(run_id, &workflow, &state);
                self.dispatch(run_id, reserved);
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

/// `settle`, then fail inline the attempts whose effect cannot be carried
/// out (a `sleep` without a valid duration, an `agent` without a queue)
/// and settle again, until nothing more changes or the settle budget is
/// used up ([`Settled::more`]). At most `2 * (SETTLE_EVENTS_MAX +
/// DECISION_OVERSHOOT_MAX)` events: each failure answers a scheduled attempt
/// of the last round.
pub(super) fn settle_all(
    workflow: &Workflow,
    state: &mut RunState,
    now: DateTime<Utc>,
    host: Host<'_>,
) -> Result<Settled, Error> {
    let mut all = Settled::default();
    loop {
        let room = run::SETTLE_EVENTS_MAX.saturating_sub(all.events.len());
        if room == 0 {
            all.more = true;
            return Ok(all);
        }
        let settled = run::settle_within(workflow, state, now, host, room)?;
        let mut failures = Vec::new();
        for effect in settled.effects {
            match super::follow::unworkable(&effect, now) {
                Some(failure) => failures.push(failure),
                None => all.effects.push(effect),
            }
        }
        all.events.extend(settled.events);
        all.more = settled.more;
        let quiet = failures.is_empty();
        for failure in failures {
            let envelope =
                EventEnvelope::new(state.run_id.unwrap_or_default(), state.seq + 1, failure);
            state.apply(&envelope).map_err(Error::corrupt)?;
            all.events.push(envelope);
        }
        if quiet || all.more {
            return Ok(all);
        }
    }
}

/// The append of `events` with the projection rows they touch.
pub(super) fn request(
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

/// The durable note that a run stopped at the settle budget: any node that
/// claims it settles the run again ([`TimerTask::Continue`]).
fn continue_task(now: DateTime<Utc>) -> NewTask {
    NewTask {
        task_id: store::new_id(),
        queue: TIMER_QUEUE.to_owned(),
        payload: serde_json::to_value(TimerTask::Continue).unwrap_or_default(),
        available_at: Some(now),
        lease: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(seq: u64) -> RunState {
        RunState {
            seq,
            ..RunState::new()
        }
    }

    #[test]
    fn the_run_cache_evicts_the_least_recently_used_past_its_event_budget() {
        let workflow = Arc::new(
            crate::core::dsl::parse("name: w\nsteps:\n  a: { uses: noop }\n")
                .workflow
                .expect("a workflow"),
        );
        let mut cache = Cache::default();
        let per_run = RUN_CACHE_EVENTS_MAX / 4;
        let runs: Vec<RunId> = (0..5u128).map(uuid::Uuid::from_u128).collect();
        for run in &runs[..4] {
            cache.keep(*run, &workflow, &state(per_run));
        }
        assert_eq!(cache.len(), (4, RUN_CACHE_EVENTS_MAX));
        // Used again: the first run is now the most recent.
        assert!(cache.run(runs[0]).is_some());
        cache.keep(runs[4], &workflow, &state(per_run));
        assert_eq!(cache.len(), (4, RUN_CACHE_EVENTS_MAX));
        assert!(cache.run(runs[1]).is_none(), "the least recently used went");
        assert!(cache.run(runs[0]).is_some());
        // Keeping a run again replaces its weight; forgetting frees it.
        cache.keep(runs[0], &workflow, &state(1));
        cache.forget(runs[2]);
        assert_eq!(cache.len(), (3, 2 * per_run + 1));
    }
}
