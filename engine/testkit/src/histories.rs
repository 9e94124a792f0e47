//! Canned histories: small workflows and event logs for tests of the core,
//! the runtime and the replay crate (like sdk-core's `canned_histories`).
//!
//! A history is written as the external facts (an executor result, a timer,
//! a human decision); the core's own reactions between them come from
//! [`settle`], so a history is always one the core could have produced. A
//! history ends right after its last external fact: deciding on it shows
//! the core's reaction to that fact.

use chrono::{DateTime, TimeDelta, TimeZone, Utc};
use serde_json::{Value, json};
use uuid::Uuid;

use imx_core::event::{
    ApprovalGranted, ChildOutcome, ChildRunFinished, Event, EventEnvelope, RunCancelRequested,
    StepFailed, StepStarted, StepSucceeded, TimerFired,
};
use imx_core::run::{settle, start_run};
use imx_core::scope::{Host, Secrets};
use imx_core::state::RunState;
use imx_core::workflow::{RetryPolicy, Step, StepKind, TriggerRule, Workflow};

/// The run id of every canned history.
pub const RUN_ID: Uuid = Uuid::from_u128(0x0000_0000_0000_4000_8000_0000_0000_0001);

/// The time every canned history starts at: 2026-01-01T00:00:00Z.
pub fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0)
        .single()
        .unwrap_or(DateTime::<Utc>::MIN_UTC)
}

/// A step with no needs, no retry, no timeout ([`Step::new`]).
pub fn step(id: &str, uses: StepKind) -> Step {
    Step::new(id, uses)
}

/// A workflow made of `steps`, without input schema, triggers or output.
pub fn workflow(name: &str, steps: Vec<Step>) -> Workflow {
    Workflow {
        name: name.to_owned(),
        description: None,
        input: None,
        timeout_ms: None,
        vars: Default::default(),
        triggers: Vec::new(),
        steps: steps.into_iter().map(|s| (s.id.clone(), s)).collect(),
        output: None,
    }
}

/// A workflow and the log of one run of it.
#[derive(Debug, Clone, PartialEq)]
pub struct History {
    pub workflow: Workflow,
    pub events: Vec<EventEnvelope>,
}

impl History {
    /// The state after the whole log.
    pub fn state(&self) -> Result<RunState, imx_core::evolve::Error> {
        imx_core::evolve::replay(&self.events)
    }

    /// The history with the core's reaction to its last fact appended.
    pub fn settled(mut self) -> History {
        let now = self.events.last().map_or_else(t0, |e| e.event.at());
        if let Ok(mut state) = self.state()
            && let Ok(settled) = settle(&self.workflow, &mut state, now, Host::none())
        {
            self.events.extend(settled.events);
        }
        self
    }
}

/// Writes a history: external facts, with the core's reactions settled in between.
#[derive(Debug)]
pub struct HistoryBuilder {
    workflow: Workflow,
    state: RunState,
    events: Vec<EventEnvelope>,
    now: DateTime<Utc>,
    secrets: Secrets,
    unsettled: bool,
}

impl HistoryBuilder {
    /// Starts a run of `workflow` with `input` at [`t0`].
    pub fn start(workflow: Workflow, input: Value) -> HistoryBuilder {
        let (started, _) = start_run(
            &workflow,
            "sha256:test",
            RUN_ID,
            imx_core::run::Start::with_input(input),
            t0(),
        );
        let mut state = RunState::new();
        // A fresh state always accepts `run.started` with seq 1.
        let _ = state.apply(&started);
        HistoryBuilder {
            workflow,
            state,
            events: vec![started],
            now: t0(),
            secrets: Secrets::none(),
            unsettled: true,
        }
    }

    /// Moves the clock forward.
    pub fn after_ms(mut self, ms: u64) -> HistoryBuilder {
        self.now += TimeDelta::milliseconds(ms as i64);
        self
    }

    /// Appends an external fact (stamped with the builder's clock) after
    /// settling the core's reaction to the previous one. An event the state
    /// rejects is a bug in the history and is left out (tests then see it).
    pub fn then(mut self, event: impl FnOnce(DateTime<Utc>) -> Event) -> HistoryBuilder {
        self.settle_now();
        let envelope = EventEnvelope::new(RUN_ID, self.state.seq + 1, event(self.now));
        if self.state.apply(&envelope).is_ok() {
            self.events.push(envelope);
            self.unsettled = true;
        }
        self
    }

    pub fn started(self, step: &str, index: Option<u32>, attempt: u32) -> HistoryBuilder {
        let step = step.to_owned();
        self.then(move |at| {
            StepStarted {
                at,
                step,
                index,
                attempt,
            }
            .into()
        })
    }

    pub fn succeeded(
        self,
        step: &str,
        index: Option<u32>,
        attempt: u32,
        output: Value,
    ) -> HistoryBuilder {
        let step = step.to_owned();
        self.then(move |at| {
            StepSucceeded {
                at,
                step,
                index,
                attempt,
                output,
            }
            .into()
        })
    }

    pub fn failed(self, step: &str, attempt: u32, error: &str, retryable: bool) -> HistoryBuilder {
        let (step, error) = (step.to_owned(), error.to_owned());
        self.then(move |at| {
            StepFailed {
                at,
                step,
                index: None,
                attempt,
                error,
                retryable,
            }
            .into()
        })
    }

    /// Fires the timer `id` at its own time.
    pub fn fire(mut self, id: &str) -> HistoryBuilder {
        self.settle_now();
        if let Some(timer) = self.state.timers.get(id) {
            self.now = self.now.max(timer.fire_at);
        }
        let timer_id = id.to_owned();
        self.then(move |at| TimerFired { at, timer_id }.into())
    }

    pub fn approve(self, step: &str, by: &str) -> HistoryBuilder {
        let (step, by) = (step.to_owned(), by.to_owned());
        self.then(move |at| {
            ApprovalGranted {
                at,
                step,
                index: None,
                by,
                comment: Some("ok".to_owned()),
            }
            .into()
        })
    }

    pub fn child_finished(self, step: &str, child_run_id: Uuid, output: Value) -> HistoryBuilder {
        let step = step.to_owned();
        self.then(move |at| {
            ChildRunFinished {
                at,
                step,
                index: None,
                child_run_id,
                outcome: ChildOutcome::Succeeded,
                output,
                error: None,
            }
            .into()
        })
    }

    pub fn cancel(self, by: &str) -> HistoryBuilder {
        let by = by.to_owned();
        self.then(move |at| {
            RunCancelRequested {
                at,
                by: Some(by),
                reason: None,
            }
            .into()
        })
    }

    /// The history so far, without the core's reaction to the last fact.
    pub fn build(self) -> History {
        History {
            workflow: self.workflow,
            events: self.events,
        }
    }

    /// The history with the core's reaction to the last fact settled too.
    pub fn settled(mut self) -> History {
        self.settle_now();
        self.build()
    }

    fn settle_now(&mut self) {
        if !self.unsettled {
            return;
        }
        self.unsettled = false;
        if let Ok(settled) = settle(
            &self.workflow,
            &mut self.state,
            self.now,
            Host::in_process(&self.secrets),
        ) {
            self.events.extend(settled.events);
        }
    }
}

fn http(id: &str, max_attempts: u32) -> Step {
    step(id, StepKind::Http)
        .with(json!({"method": "GET", "url": "https://shop.example/{{ input.order }}"}))
        .retry(RetryPolicy {
            max_attempts,
            backoff: imx_core::workflow::Backoff::Fixed,
            ..RetryPolicy::default()
        })
}

/// `fetch` (http, 3 attempts, fixed 1 s backoff) fails once, then succeeds;
/// `report` (noop) needs it. Events: `run.started`, `step.scheduled`
/// fetch #1, `step.started`, `step.failed` (retryable), `step.retry_scheduled`
/// #2, `timer.fired` retry/fetch/2, `step.scheduled` #2, `step.started`,
/// `step.succeeded`. Next: `report` runs inline, then `run.succeeded`.
pub fn retry_then_ok() -> History {
    let report = step("report", StepKind::Noop)
        .needs(&["fetch"])
        .with(json!({"status": "{{ steps.fetch.output.status }}"}));
    HistoryBuilder::start(
        workflow("retry", vec![http("fetch", 3), report]),
        json!({"order": 7}),
    )
    .started("fetch", None, 1)
    .after_ms(200)
    .failed("fetch", 1, "connection reset", true)
    .fire("retry/fetch/2")
    .started("fetch", None, 2)
    .after_ms(100)
    .succeeded("fetch", None, 2, json!({"status": 200}))
    .build()
}

/// `fetch` (http, 2 attempts) fails twice; `report` needs it. Events:
/// `run.started`, `step.scheduled` #1, `step.failed`, `step.retry_scheduled`
/// #2, `timer.fired`, `step.scheduled` #2, `step.failed`. Next: `report` is
/// skipped, then `run.failed`.
pub fn retry_exhausted() -> History {
    let report = step("report", StepKind::Noop).needs(&["fetch"]);
    HistoryBuilder::start(
        workflow("exhausted", vec![http("fetch", 2), report]),
        json!({"order": 7}),
    )
    .failed("fetch", 1, "HTTP 503", true)
    .fire("retry/fetch/2")
    .failed("fetch", 2, "HTTP 503", true)
    .build()
}

/// `fetch` (http, 5 s timeout, 2 attempts) starts and hangs. Events:
/// `run.started`, `step.scheduled` #1 (deadline +5 s), `step.started`,
/// `timer.fired` timeout/fetch/1. Next: the attempt fails as timed out, is
/// cancelled, and a retry is scheduled.
pub fn step_timed_out() -> History {
    HistoryBuilder::start(
        workflow("timeout", vec![http("fetch", 2).timeout_ms(5_000)]),
        json!({"order": 7}),
    )
    .started("fetch", None, 1)
    .fire("timeout/fetch/1")
    .build()
}

/// `approve` (approval) waits and is granted; `ship` (noop) needs it.
/// Events: `run.started`, `step.scheduled` approve #1, `approval.requested`,
/// `approval.granted`. Next: `ship` runs inline, then `run.succeeded`.
pub fn approval_granted() -> History {
    let approve = step("approve", StepKind::Approval)
        .with(json!({"role": "finance", "message": "Ship order {{ input.order }}?"}));
    let ship = step("ship", StepKind::Noop)
        .needs(&["approve"])
        .with(json!({"by": "{{ steps.approve.output.by }}"}));
    HistoryBuilder::start(
        workflow("approval", vec![approve, ship]),
        json!({"order": 7}),
    )
    .after_ms(60_000)
    .approve("approve", "ada")
    .build()
}

/// `ship` (workflow) starts child run `shipping`, which succeeds. Events:
/// `run.started`, `step.scheduled` ship #1, `child_run.started`,
/// `child_run.finished` (succeeded). Next: `run.succeeded` with the output.
pub fn child_run_succeeded() -> History {
    let ship = step("ship", StepKind::Workflow)
        .with(json!({"name": "shipping", "input": {"order": "{{ input.order }}"}}));
    let mut workflow = workflow("parent", vec![ship]);
    workflow.output = Some(json!({"tracking": "{{ steps.ship.output.tracking }}"}));
    let child =
        imx_core::keys::child_run_id(&imx_core::keys::idempotency_key(RUN_ID, "ship", None), 1);
    HistoryBuilder::start(workflow, json!({"order": 7}))
        .after_ms(1_000)
        .child_finished("ship", child, json!({"tracking": "Z-1"}))
        .build()
}

/// `fetch` (http) is running and `report` waits for it when cancellation is
/// requested. Events: `run.started`, `step.scheduled` fetch #1,
/// `step.started`, `run.cancel_requested`. Next: `fetch` cancelled (with a
/// cancel effect), `report` skipped, then `run.cancelled`.
pub fn cancel_while_running() -> History {
    let report = step("report", StepKind::Noop).needs(&["fetch"]);
    HistoryBuilder::start(
        workflow("cancel", vec![http("fetch", 1), report]),
        json!({"order": 7}),
    )
    .started("fetch", None, 1)
    .cancel("ops")
    .build()
}

/// A workflow with a 1 minute run timeout whose `fetch` never answers.
/// Events: `run.started` (deadline +60 s), `step.scheduled` fetch #1,
/// `timer.fired` run/timeout. Next: `fetch` cancelled, then `run.timed_out`.
pub fn run_timed_out() -> History {
    let mut workflow = workflow("slow", vec![http("fetch", 1)]);
    workflow.timeout_ms = Some(60_000);
    HistoryBuilder::start(workflow, json!({"order": 7}))
        .fire(imx_core::keys::RUN_TIMEOUT_TIMER_ID)
        .build()
}

/// `pack` (agent, `for_each` over 3 items, at most 2 in parallel): item 0
/// succeeds. Events: `run.started`, `for_each.expanded` (3), `step.scheduled`
/// pack/0 and pack/1, `step.succeeded` pack/0. Next: pack/2 is scheduled.
pub fn fan_out_item_done() -> History {
    let pack = step("pack", StepKind::Agent)
        .for_each("{{ input.items }}", 2)
        .with(json!({"queue": "warehouse", "payload": "{{ item }}", "n": "{{ index }}"}));
    HistoryBuilder::start(
        workflow("fan-out", vec![pack]),
        json!({"items": ["a", "b", "c"]}),
    )
    .succeeded("pack", Some(0), 1, json!("packed a"))
    .build()
}

/// `charge` (http, no retry) fails for good; five steps need it, one per
/// trigger rule, and `audit` covers a failure with `continue_on_error`.
/// Events: `run.started`, `step.scheduled` audit and charge, `step.failed`
/// audit (not retryable), `step.scheduled` + `step.succeeded` after_audit
/// (audit is covered), `step.failed` charge (not retryable). Next:
/// all_success and none_failed are skipped, all_done and one_failed run.
pub fn failed_dependency() -> History {
    let rules = [
        ("on_success", TriggerRule::AllSuccess),
        ("on_done", TriggerRule::AllDone),
        ("on_failure", TriggerRule::OneFailed),
        ("on_no_failure", TriggerRule::NoneFailed),
    ];
    let mut steps: Vec<Step> = rules
        .iter()
        .map(|(id, rule)| step(id, StepKind::Noop).needs(&["charge"]).rule(*rule))
        .collect();
    steps.push(http("charge", 1));
    steps.push(http("audit", 1).continue_on_error());
    steps.push(step("after_audit", StepKind::Noop).needs(&["audit"]));
    HistoryBuilder::start(workflow("rules", steps), json!({"order": 7}))
        .failed("audit", 1, "HTTP 500", false)
        .failed("charge", 1, "card declined", false)
        .build()
}

/// The run a fork in [`forked_at_charge`] comes from.
pub const FORK_SOURCE_RUN_ID: Uuid = Uuid::from_u128(0x0000_0000_0000_4000_8000_0000_0000_00f0);

/// A fork of a run of `fetch` (http) → `charge` (http) → `receipt` (noop)
/// that failed at `charge`: the fork takes over `fetch` and runs `charge`
/// again. Events: `run.started` (with `fork`: the source, `charge`, who and
/// why), `step.adopted` fetch, `step.scheduled` charge. Next: charge's result.
pub fn forked_at_charge() -> History {
    let flow = workflow(
        "order",
        vec![
            http("fetch", 1),
            http("charge", 1).needs(&["fetch"]),
            step("receipt", StepKind::Noop).needs(&["charge"]),
        ],
    );
    let source = HistoryBuilder::start(flow.clone(), json!({"order": 7}))
        .succeeded("fetch", None, 1, json!({"status": 200}))
        .failed("charge", 1, "card declined", false)
        .settled();
    let mut state = source.state().unwrap_or_default();
    state.run_id = Some(FORK_SOURCE_RUN_ID);
    let plan = imx_core::surgery::fork(
        &flow,
        &state,
        &flow,
        "sha256:test",
        "charge",
        "key:ops",
        "card limit raised",
    );
    let Ok(plan) = plan else {
        return source;
    };
    let (events, _) = imx_core::surgery::start_fork(
        &flow,
        "sha256:test",
        RUN_ID,
        (json!({"order": 7}), None),
        plan,
        t0(),
    );
    History {
        workflow: flow,
        events,
    }
    .settled()
}
