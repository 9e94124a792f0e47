//! Driving a run with the pure functions: the first event of a run, the
//! decide → evolve loop the runtime runs after every external event
//! ([`settle`]), and the effects still owed after a crash ([`outstanding`]).

use chrono::{DateTime, Utc};
use serde_json::Value;
use uuid::Uuid;

use crate::decide::decide_within;
use crate::effect::Effect;
use crate::event::{EventEnvelope, ForkOrigin, ParentRun, RunStarted, TriggerContext};
use crate::evolve;
use crate::keys;
use crate::schedule::{self, Context, add_ms};
use crate::scope::Host;
use crate::state::{ExecStatus, RunState};
use crate::workflow::{StepKind, Workflow};

/// Most decide rounds one [`settle`] runs; each round records at least one
/// event, so only a bug could reach it.
pub const SETTLE_ROUNDS_MAX: usize = 100_000;
/// Events one [`settle`] records before it stops with [`Settled::more`] set
/// (plus at most [`crate::decide::DECISION_OVERSHOOT_MAX`]): one append
/// stays far below the store's event limit however wide a fan-out is.
pub const SETTLE_EVENTS_MAX: usize = 400;

/// Why the core could not advance a run.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error(transparent)]
    Evolve(#[from] evolve::Error),
    #[error("run {run_id}: decide did not settle within {SETTLE_ROUNDS_MAX} rounds")]
    NoProgress { run_id: Uuid },
    #[error("the run has not started: `run.started` must come first")]
    NotStarted,
}

/// What one [`settle`] produced: events to append in one transaction (seq
/// already assigned), then effects to carry out once they are durable.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Settled {
    pub events: Vec<EventEnvelope>,
    pub effects: Vec<Effect>,
    /// Stopped at [`SETTLE_EVENTS_MAX`]: append these, then settle again.
    pub more: bool,
}

/// What a run starts with, besides its workflow, version, id and time.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Start {
    pub input: Value,
    pub idempotency_key: Option<String>,
    pub parent: Option<ParentRun>,
    pub trigger: Option<TriggerContext>,
    /// The source run of a fork ([`crate::surgery::start_fork`]).
    pub fork: Option<ForkOrigin>,
    /// The rendered `vars` ([`render_vars`]); `None` when the workflow has none.
    pub vars: Option<Value>,
}

impl Start {
    /// A start with `input` only.
    pub fn with_input(input: Value) -> Start {
        Start {
            input,
            ..Start::default()
        }
    }
}

/// The `run.started` event of a new run (seq 1) and the run-timeout timer.
pub fn start_run(
    workflow: &Workflow,
    version: &str,
    run_id: Uuid,
    start: Start,
    now: DateTime<Utc>,
) -> (EventEnvelope, Vec<Effect>) {
    let deadline = workflow.timeout_ms.map(|ms| add_ms(now, ms));
    let started = RunStarted {
        at: now,
        workflow: workflow.name.clone(),
        version: version.to_owned(),
        input: start.input,
        steps: workflow.steps.keys().cloned().collect(),
        idempotency_key: start.idempotency_key,
        parent: start.parent,
        deadline,
        trigger: start.trigger,
        fork: start.fork.map(Box::new),
        vars: start.vars,
        finally: workflow.finally_steps().map(str::to_owned).collect(),
    };
    let effects = deadline
        .map(|fire_at| Effect::StartTimer {
            id: keys::RUN_TIMEOUT_TIMER_ID.to_owned(),
            fire_at,
        })
        .into_iter()
        .collect();
    (EventEnvelope::new(run_id, 1, started), effects)
}

/// The workflow's `vars` rendered for a run about to start: once, before
/// `run.started`, which records them (a replay never renders them again).
/// In scope: `input` (with its defaults) and `run` (no steps, no secrets:
/// the result enters the log). `None` when the workflow has no `vars`.
pub fn render_vars(
    workflow: &Workflow,
    run: crate::scope::RunContext<'_>,
    input: &Value,
    host: Host<'_>,
) -> Result<Option<Value>, crate::template::Error> {
    if workflow.vars.is_empty() {
        return Ok(None);
    }
    let scope = serde_json::json!({"input": input, "run": run.to_json()});
    let template = Value::Object(
        workflow
            .vars
            .iter()
            .map(|(name, value)| (name.clone(), value.clone()))
            .collect(),
    );
    let none = Host {
        secrets: &crate::scope::NO_SECRETS,
        ..host
    };
    none.render(&template, &scope)
        .map(|rendered| Some(rendered.value))
}

/// Decides and evolves until nothing is left to decide at `now`, or until
/// [`SETTLE_EVENTS_MAX`] events (then [`Settled::more`] is set). On error the
/// state may be part-way: drop it and rebuild from the stored log.
pub fn settle(
    workflow: &Workflow,
    state: &mut RunState,
    now: DateTime<Utc>,
    host: Host<'_>,
) -> Result<Settled, Error> {
    settle_within(workflow, state, now, host, SETTLE_EVENTS_MAX)
}

/// [`settle`] with a smaller budget than [`SETTLE_EVENTS_MAX`].
pub fn settle_within(
    workflow: &Workflow,
    state: &mut RunState,
    now: DateTime<Utc>,
    host: Host<'_>,
    events_max: usize,
) -> Result<Settled, Error> {
    let run_id = state.run_id.ok_or(Error::NotStarted)?;
    let mut settled = Settled::default();
    for _ in 0..SETTLE_ROUNDS_MAX {
        let room = events_max.saturating_sub(settled.events.len());
        if room == 0 {
            settled.more = true;
            return Ok(settled);
        }
        let decision = decide_within(workflow, state, now, host, room);
        if decision.events.is_empty() {
            settled.effects.extend(decision.effects);
            return Ok(settled);
        }
        for event in decision.events {
            let envelope = EventEnvelope::new(run_id, state.seq + 1, event);
            state.apply(&envelope)?;
            settled.events.push(envelope);
        }
        settled.effects.extend(decision.effects);
    }
    Err(Error::NoProgress { run_id })
}

/// The effects a run still waits on, for recovery after a crash: every
/// pending timer, every attempt handed out and not finished, every open
/// approval and child run. Executors deduplicate by idempotency key, and the
/// child run id is deterministic, so issuing them again is safe.
pub fn outstanding(workflow: &Workflow, state: &RunState, host: Host<'_>) -> Vec<Effect> {
    let Some(run_id) = state.run_id else {
        return Vec::new();
    };
    if state.is_finished() {
        return Vec::new();
    }
    let mut effects: Vec<Effect> = state
        .timers
        .iter()
        .map(|(id, timer)| Effect::StartTimer {
            id: id.clone(),
            fire_at: timer.fire_at,
        })
        .collect();
    let context = Context {
        workflow,
        state,
        now: state.started_at.unwrap_or(DateTime::<Utc>::MIN_UTC),
        host,
        run_id,
        events_max: usize::MAX,
    };
    for (id, step_state) in &state.steps {
        let Some(step) = workflow.step(id) else {
            continue;
        };
        for (position, exec) in step_state.executions.iter().enumerate() {
            if !exec.status.is_in_flight() || step.uses.is_pure() {
                continue;
            }
            let index = step_state.items.as_ref().map(|_| position as u32);
            let item = index.and_then(|i| Some((i, step_state.items.as_ref()?.get(i as usize)?)));
            let Ok(rendered) = schedule::render_input(&context, step, item, exec.attempt) else {
                continue;
            };
            let input = rendered.value;
            let key = keys::execution_key(run_id, id, index, step_state.generation);
            effects.push(match (step.uses, exec.status, exec.child_run_id) {
                (_, _, Some(child_run_id)) => Effect::StartChildRun {
                    child_run_id,
                    workflow: input
                        .get("name")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_owned(),
                    input: input.get("input").cloned().unwrap_or(Value::Null),
                    parent: ParentRun {
                        run_id,
                        step_key: key,
                    },
                },
                (StepKind::Approval, ExecStatus::Waiting, _) => Effect::RequestApproval {
                    key,
                    step: id.clone(),
                    index,
                    request: input,
                },
                (kind, _, _) => Effect::ScheduleStep {
                    key,
                    step: id.clone(),
                    kind,
                    index,
                    attempt: exec.attempt,
                    input,
                    deadline: exec.deadline,
                },
            });
        }
    }
    effects
}
