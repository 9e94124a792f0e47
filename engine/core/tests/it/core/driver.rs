//! A simulated runtime around the pure core: a clock, a queue of future
//! facts (executor results, timers, human decisions, child runs), and the
//! runtime loop `settle → append → carry out effects`. Behaviour (outcomes,
//! latencies, chaos) comes from a [`World`], scripted or seeded.

use std::collections::BTreeMap;

use chrono::{DateTime, TimeDelta, Utc};
use imx_core::event::{
    ApprovalGranted, ApprovalRejected, ChildOutcome, ChildRunFinished, Event, EventEnvelope,
    RunCancelRequested, StepFailed, StepStarted, StepSucceeded, TimerFired,
};
use imx_core::state::StepStatus;
use imx_core::surgery;
use imx_core::workflow::{StepKind, Workflow};
use imx_core::{Effect, Host, RunState, Secrets, decide, outstanding, replay, settle, start_run};
use serde_json::Value;
use testkit::histories::{RUN_ID, t0};
use uuid::Uuid;

/// Most events one simulated run may append before it counts as stuck.
pub const RUN_EVENTS_MAX: usize = 20_000;

/// What an executor does with one attempt.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Succeed(Value),
    Fail {
        error: String,
        retryable: bool,
    },
    /// Never answers (only a timeout or cancellation ends it).
    Hang,
}

/// The outside world as the core sees it.
pub trait World {
    fn outcome(&mut self, step: &str, index: Option<u32>, attempt: u32, input: &Value) -> Outcome;
    fn latency_ms(&mut self) -> u64 {
        10
    }
    /// How long the executor works on one attempt.
    fn work_ms(&mut self, _step: &str, _index: Option<u32>, _attempt: u32) -> u64 {
        self.latency_ms()
    }
    fn approve(&mut self, _step: &str) -> bool {
        true
    }
    fn child_outcome(&mut self, _workflow: &str, input: &Value) -> (ChildOutcome, Value) {
        (ChildOutcome::Succeeded, input.clone())
    }
    /// Deliver this executor result twice.
    fn duplicate(&mut self) -> bool {
        false
    }
    /// Crash after appending, before carrying out the effects.
    fn crash(&mut self) -> bool {
        false
    }
    /// Request cancellation at this many ms after the start.
    fn cancel_at_ms(&mut self) -> Option<u64> {
        None
    }
    /// Operator surgery while the run is under way: (ms after the start, what).
    fn surgery(&mut self) -> Vec<(u64, Surgery)> {
        Vec::new()
    }
    /// The run ended: the step to rewind it to, if the operator does.
    fn rewind(&mut self, _state: &RunState) -> Option<String> {
        None
    }
}

/// An operation an operator makes on a run in flight.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Surgery {
    Pause,
    Resume,
    /// Skip the failed or waiting step number `pick` (modulo their count).
    Skip {
        pick: u64,
    },
}

/// A fact that will reach the runtime at some time.
#[derive(Debug, Clone)]
enum Fact {
    Started {
        step: String,
        index: Option<u32>,
        attempt: u32,
    },
    Result {
        step: String,
        index: Option<u32>,
        attempt: u32,
        outcome: Outcome,
    },
    Timer {
        id: String,
    },
    Decision {
        step: String,
        index: Option<u32>,
        granted: bool,
    },
    Child {
        step: String,
        index: Option<u32>,
        child: Uuid,
        outcome: ChildOutcome,
        output: Value,
    },
    Cancel,
    Operator(Surgery),
}

impl Fact {
    fn event(self, at: DateTime<Utc>, workflow: &Workflow, state: &RunState) -> Option<Event> {
        Some(match self {
            Fact::Started {
                step,
                index,
                attempt,
            } => StepStarted {
                at,
                step,
                index,
                attempt,
            }
            .into(),
            Fact::Result {
                step,
                index,
                attempt,
                outcome,
            } => match outcome {
                Outcome::Succeed(output) => StepSucceeded {
                    at,
                    step,
                    index,
                    attempt,
                    output,
                }
                .into(),
                Outcome::Fail { error, retryable } => StepFailed {
                    at,
                    step,
                    index,
                    attempt,
                    error,
                    retryable,
                }
                .into(),
                Outcome::Hang => return None,
            },
            Fact::Timer { id } => TimerFired { at, timer_id: id }.into(),
            Fact::Decision {
                step,
                index,
                granted: true,
            } => ApprovalGranted {
                at,
                step,
                index,
                by: "sim".into(),
                comment: None,
            }
            .into(),
            Fact::Decision {
                step,
                index,
                granted: false,
            } => ApprovalRejected {
                at,
                step,
                index,
                by: "sim".into(),
                comment: None,
            }
            .into(),
            Fact::Child {
                step,
                index,
                child,
                outcome,
                output,
            } => ChildRunFinished {
                at,
                step,
                index,
                child_run_id: child,
                outcome,
                output,
                error: None,
            }
            .into(),
            Fact::Cancel => RunCancelRequested {
                at,
                by: Some("sim".into()),
                reason: None,
            }
            .into(),
            Fact::Operator(operation) => return operate(operation, at, workflow, state),
        })
    }
}

/// The event of an operation, as the core plans it on the current state;
/// `None` when the core refuses it.
fn operate(
    operation: Surgery,
    at: DateTime<Utc>,
    workflow: &Workflow,
    state: &RunState,
) -> Option<Event> {
    let (by, reason) = ("sim", "simulated operator");
    match operation {
        Surgery::Pause => surgery::pause(state, by, reason, at).ok().map(Event::from),
        Surgery::Resume => surgery::resume(state, by, reason, at).ok().map(Event::from),
        Surgery::Skip { pick } => {
            let eligible: Vec<&String> = state
                .steps
                .iter()
                .filter(|(_, step)| matches!(step.status, StepStatus::Failed | StepStatus::Waiting))
                .map(|(id, _)| id)
                .collect();
            let step = eligible.get((pick % eligible.len().max(1) as u64) as usize)?;
            let output = serde_json::json!({"skipped": step});
            surgery::skip(workflow, state, step, output, by, reason, at)
                .ok()
                .map(Event::from)
        }
    }
}

/// One simulated run.
#[derive(Debug)]
pub struct Driver<'w> {
    pub workflow: &'w Workflow,
    pub secrets: Secrets,
    pub state: RunState,
    pub log: Vec<EventEnvelope>,
    pub now: DateTime<Utc>,
    /// Facts by (due time in ms since t0, arrival order).
    queue: BTreeMap<(i64, u64), Fact>,
    arrivals: u64,
    /// Facts the state rejected (duplicates, late results, stale timers).
    pub rejected: usize,
    pub crashes: usize,
    pub effects: Vec<Effect>,
}

impl<'w> Driver<'w> {
    pub fn new(workflow: &'w Workflow, secrets: Secrets) -> Driver<'w> {
        Driver {
            workflow,
            secrets,
            state: RunState::new(),
            log: Vec::new(),
            now: t0(),
            queue: BTreeMap::new(),
            arrivals: 0,
            rejected: 0,
            crashes: 0,
            effects: Vec::new(),
        }
    }

    /// Runs the workflow with `input` until the run ends or the queue is empty.
    pub fn run(&mut self, input: Value, world: &mut dyn World) -> Result<(), String> {
        let (started, effects) = start_run(
            self.workflow,
            "sha256:sim",
            RUN_ID,
            imx_core::run::Start::with_input(input),
            self.now,
        );
        self.state.apply(&started).map_err(|err| err.to_string())?;
        self.log.push(started);
        self.carry_out(effects, world);
        if let Some(ms) = world.cancel_at_ms() {
            self.enqueue(ms as i64, Fact::Cancel);
        }
        for (ms, operation) in world.surgery() {
            self.enqueue(ms as i64, Fact::Operator(operation));
        }
        self.settle_and_carry_out(world)?;
        loop {
            if self.state.is_finished() && !self.rewound(world)? {
                break;
            }
            if self.queue.is_empty() && self.state.status == imx_core::RunStatus::Paused {
                // The operator's resume came before their pause took (a
                // crash delayed it): they resume again.
                self.enqueue_in(1, Fact::Operator(Surgery::Resume));
            }
            let Some(((due, _), fact)) = self.queue.pop_first() else {
                break;
            };
            self.now = self.now.max(t0() + TimeDelta::milliseconds(due));
            self.deliver(fact, world)?;
            if self.log.len() > RUN_EVENTS_MAX {
                return Err(format!(
                    "more than {RUN_EVENTS_MAX} events: the run does not end"
                ));
            }
        }
        Ok(())
    }

    /// The run ended: rewinds it when the world's operator does.
    fn rewound(&mut self, world: &mut dyn World) -> Result<bool, String> {
        let Some(step) = world.rewind(&self.state) else {
            return Ok(false);
        };
        let (by, reason) = ("sim", "simulated rewind");
        let event = surgery::rewind(self.workflow, &self.state, &step, by, reason, self.now)
            .map_err(|refusal| format!("rewinding the ended run to `{step}`: {refusal}"))?;
        let envelope = EventEnvelope::new(RUN_ID, self.state.seq + 1, event);
        self.state
            .apply(&envelope)
            .map_err(|err| format!("the state refused a planned rewind: {err}"))?;
        self.log.push(envelope);
        self.settle_and_carry_out(world)?;
        Ok(true)
    }

    fn deliver(&mut self, fact: Fact, world: &mut dyn World) -> Result<(), String> {
        let retry = fact.clone();
        let Some(event) = fact.event(self.now, self.workflow, &self.state) else {
            if matches!(retry, Fact::Operator(_)) {
                self.rejected += 1;
            }
            return Ok(());
        };
        let envelope = EventEnvelope::new(RUN_ID, self.state.seq + 1, event);
        let before = self.state.clone();
        if self.state.apply(&envelope).is_err() {
            self.rejected += 1;
            return Ok(());
        }
        let settled = settle(
            self.workflow,
            &mut self.state,
            self.now,
            Host::in_process(&self.secrets),
        )
        .map_err(|err| err.to_string())?;
        if world.crash() {
            // Crash before the append: nothing of it is durable; the sender
            // delivers the fact again later.
            self.crashes += 1;
            self.state = before;
            self.enqueue_in(world.latency_ms() + 1, retry);
            return Ok(());
        }
        self.log.push(envelope);
        self.log.extend(settled.events);
        self.check_quiet()?;
        if world.crash() {
            // Crash after the append, before the effects: recover from the log.
            self.crashes += 1;
            return self.recover(world);
        }
        self.carry_out(settled.effects, world);
        Ok(())
    }

    /// Drops the in-memory state, rebuilds it from the log and re-issues
    /// every effect still owed.
    pub fn recover(&mut self, world: &mut dyn World) -> Result<(), String> {
        self.state = replay(&self.log).map_err(|err| err.to_string())?;
        let effects = outstanding(self.workflow, &self.state, Host::in_process(&self.secrets));
        self.carry_out(effects, world);
        self.settle_and_carry_out(world)
    }

    fn settle_and_carry_out(&mut self, world: &mut dyn World) -> Result<(), String> {
        let settled = settle(
            self.workflow,
            &mut self.state,
            self.now,
            Host::in_process(&self.secrets),
        )
        .map_err(|err| err.to_string())?;
        self.log.extend(settled.events);
        self.check_quiet()?;
        self.carry_out(settled.effects, world);
        Ok(())
    }

    /// Idempotence: deciding again on a settled state yields nothing.
    fn check_quiet(&self) -> Result<(), String> {
        let again = decide(
            self.workflow,
            &self.state,
            self.now,
            Host::in_process(&self.secrets),
        );
        match again.is_empty() {
            true => Ok(()),
            false => Err(format!("deciding twice duplicated work: {again:?}")),
        }
    }

    fn carry_out(&mut self, effects: Vec<Effect>, world: &mut dyn World) {
        for effect in effects {
            self.carry_out_one(&effect, world);
            self.effects.push(effect);
        }
    }

    fn carry_out_one(&mut self, effect: &Effect, world: &mut dyn World) {
        match effect {
            Effect::ScheduleStep {
                step,
                index,
                attempt,
                input,
                kind,
                ..
            } => {
                let (step, index, attempt) = (step.clone(), *index, *attempt);
                let start = world.latency_ms();
                let outcome = match kind {
                    StepKind::Sleep => Outcome::Succeed(Value::Null),
                    _ => world.outcome(&step, index, attempt, input),
                };
                let finish = start + world.work_ms(&step, index, attempt);
                self.enqueue_in(
                    start,
                    Fact::Started {
                        step: step.clone(),
                        index,
                        attempt,
                    },
                );
                let result = Fact::Result {
                    step,
                    index,
                    attempt,
                    outcome,
                };
                if world.duplicate() {
                    self.enqueue_in(finish + world.latency_ms(), result.clone());
                }
                self.enqueue_in(finish, result);
            }
            Effect::StartTimer { id, fire_at } => {
                let due = (*fire_at - t0()).num_milliseconds();
                self.enqueue(due, Fact::Timer { id: id.clone() });
            }
            Effect::RequestApproval { step, index, .. } => {
                let granted = world.approve(step);
                let fact = Fact::Decision {
                    step: step.clone(),
                    index: *index,
                    granted,
                };
                self.enqueue_in(world.latency_ms(), fact);
            }
            Effect::StartChildRun {
                child_run_id,
                workflow,
                input,
                parent,
            } => {
                let (outcome, output) = world.child_outcome(workflow, input);
                let (step, index) = split_key(&parent.step_key);
                let fact = Fact::Child {
                    step,
                    index,
                    child: *child_run_id,
                    outcome,
                    output,
                };
                self.enqueue_in(world.latency_ms(), fact);
            }
            Effect::CancelStep { .. }
            | Effect::CancelChildRun { .. }
            | Effect::CompleteRun { .. } => {}
        }
    }

    fn enqueue_in(&mut self, delay_ms: u64, fact: Fact) {
        let due = (self.now - t0()).num_milliseconds() + delay_ms as i64;
        self.enqueue(due, fact);
    }

    fn enqueue(&mut self, due_ms: i64, fact: Fact) {
        self.arrivals += 1;
        self.queue.insert((due_ms, self.arrivals), fact);
    }
}

/// `<run>/<step>[/<index>][@<generation>]` back into step and index.
fn split_key(key: &str) -> (String, Option<u32>) {
    let key = key.split_once('@').map_or(key, |(key, _)| key);
    let mut parts = key.splitn(3, '/').skip(1);
    let step = parts.next().unwrap_or_default().to_owned();
    (step, parts.next().and_then(|index| index.parse().ok()))
}

/// A world where every attempt succeeds with its input, after 10 ms.
#[derive(Debug, Default)]
pub struct Obedient;

impl World for Obedient {
    fn outcome(&mut self, _: &str, _: Option<u32>, _: u32, input: &Value) -> Outcome {
        Outcome::Succeed(input.clone())
    }
}

/// A world that follows a script: `(step, attempt) -> outcome`, success otherwise.
pub struct Scripted<F: FnMut(&str, Option<u32>, u32) -> Option<Outcome>> {
    pub script: F,
    pub approve: bool,
    pub cancel_at_ms: Option<u64>,
}

impl<F: FnMut(&str, Option<u32>, u32) -> Option<Outcome>> std::fmt::Debug for Scripted<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Scripted")
    }
}

impl<F: FnMut(&str, Option<u32>, u32) -> Option<Outcome>> World for Scripted<F> {
    fn outcome(&mut self, step: &str, index: Option<u32>, attempt: u32, input: &Value) -> Outcome {
        (self.script)(step, index, attempt).unwrap_or_else(|| Outcome::Succeed(input.clone()))
    }
    fn approve(&mut self, _: &str) -> bool {
        self.approve
    }
    fn cancel_at_ms(&mut self) -> Option<u64> {
        self.cancel_at_ms
    }
}
