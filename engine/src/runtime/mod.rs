//! The runtime: carries the pure core's effects out against a durable store.
//!
//! Every external fact (an executor's result, a fired timer, a human's
//! decision, a child run's end) goes through one loop ([`advance`]): load the
//! run's state, apply the fact (a fact the core rejects is stale and dropped),
//! `settle`, and append the events together with the projection rows, the
//! tasks and the timers the effects ask for, in ONE store transaction fenced
//! by the expected seq and the task's lease. Only the effects that reach other
//! runs (child runs, the parent's `child_run.finished`, cancellation) are
//! carried out after the append; recovery re-derives them from the log with
//! `core::outstanding`. See `docs/runtime.md`.

mod advance;
mod attempt;
mod commit;
mod error;
mod follow;
mod input;
mod local;
mod projection;
mod queues;
mod surgery;
mod worker;
mod workflows;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use serde_json::Value;
use tokio::sync::broadcast;

use crate::core::event::{ApprovalGranted, ApprovalRejected, Event, RunCancelRequested};
use crate::core::evolve;
use crate::core::scope::Secrets;
use crate::core::state::{ExecStatus, RunState};
use crate::core::template::{Evaluator, InProcess};
use crate::executor::Executor;
use crate::store::{self, EventStore, RunId};

pub use commit::{COMMIT_BATCH_MAX, COMMIT_QUEUE_MAX, CommitCounts};
pub use error::{Error, ErrorKind};
pub use input::input_problems;
pub use queues::{STEP_QUEUE_PREFIX, TIMER_QUEUE, agent_queue, step_queue};
pub use surgery::{ForkRequest, Operator};
pub use worker::RuntimeHandle;
pub use workflows::{Registered, parse_source};

pub use crate::executor::OUTPUT_BYTES_MAX;
/// Default lease on a claimed task, in ms; renewed at a third of it.
pub const LEASE_MS_DEFAULT: u64 = 30_000;
const _: () = assert!(LEASE_MS_DEFAULT <= crate::store::LEASE_MS_MAX);
/// Default concurrent attempts per node.
pub const WORKERS_DEFAULT: usize = 8;
/// Default longest idle wait between looks for work and due timers, in ms.
pub const POLL_MS_DEFAULT: u64 = 200;
/// Default time running attempts get to finish on shutdown, in ms.
pub const SHUTDOWN_GRACE_MS_DEFAULT: u64 = 10_000;
/// Most times one task is handed out (its lease expiring each time) before
/// the attempt is recorded as failed ("abandoned") instead of run again.
pub const TASK_CLAIMS_MAX: u32 = 5;
/// Most times one fact is retried after losing a seq race.
pub const CONFLICT_RETRIES_MAX: usize = 1_000;
/// Append timings buffered per [`Runtime::append_timings`] receiver.
pub const APPEND_TIMINGS_BUFFER: usize = 4_096;
/// Run ends buffered per [`Runtime::ends`] receiver.
pub const RUN_ENDS_BUFFER: usize = 4_096;
/// Run changes buffered per [`Runtime::changes`] receiver; a receiver that
/// falls further behind skips ahead (changes are wake-ups, not data).
pub const RUN_CHANGES_BUFFER: usize = 1_024;
/// Most runs whose folded state is cached in memory.
pub const RUN_CACHE_MAX: usize = 10_000;
/// Most events folded into the cached states, in all (memory grows with
/// them: the soak's mixed workflow held ~40 KiB a run of ~17 events).
pub const RUN_CACHE_EVENTS_MAX: u64 = 20_000;
pub use crate::secrets::SECRET_ENV_PREFIX;

/// Tunables of a runtime node.
#[derive(Clone, Debug)]
pub struct Config {
    /// Concurrent attempts this node runs.
    pub workers: usize,
    pub lease_ms: u64,
    pub poll_ms: u64,
    pub shutdown_grace_ms: u64,
    pub output_bytes_max: usize,
    /// Names this node in leases.
    pub node: String,
    /// `secrets.NAME` for the steps this node renders and executes.
    pub secrets: Secrets,
    /// Where this node evaluates templates (a sandbox process on `imx` nodes).
    pub evaluator: Arc<dyn Evaluator>,
    /// [`Runtime::start`] resumes every unfinished run first.
    pub resume_on_start: bool,
    /// Most appends committed in one transaction (1 turns group commit off).
    pub commit_batch_max: usize,
    /// An append leases the attempts it makes ready to this node's started
    /// workers (free slots permitting), which run them without a claim
    /// (`runtime/local.rs`); false: every task waits for a claim.
    pub local_dispatch: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            workers: WORKERS_DEFAULT,
            lease_ms: LEASE_MS_DEFAULT,
            poll_ms: POLL_MS_DEFAULT,
            shutdown_grace_ms: SHUTDOWN_GRACE_MS_DEFAULT,
            output_bytes_max: OUTPUT_BYTES_MAX,
            node: format!("imx-{}", store::new_id().simple()),
            secrets: secrets_from_env(),
            evaluator: Arc::new(InProcess),
            resume_on_start: true,
            commit_batch_max: COMMIT_BATCH_MAX,
            local_dispatch: true,
        }
    }
}

/// `IMX_SECRET_<NAME>=value` of this node, as `secrets.NAME`: one source,
/// [`crate::secrets::node_secrets`] (taken out of the environment at start-up).
pub fn secrets_from_env() -> Secrets {
    crate::secrets::node_secrets()
}

/// Longest idempotency key a run start accepts, in bytes (UTF-8): a key
/// names a request, and is stored and indexed with the run.
pub const IDEMPOTENCY_KEY_BYTES_MAX: usize = 255;
// The key rides in `run.started` beside the input: within the room an event
// keeps for its own fields.
const _: () = assert!(IDEMPOTENCY_KEY_BYTES_MAX <= crate::store::EVENT_FIELDS_BYTES_MAX);

/// A key is 1 to [`IDEMPOTENCY_KEY_BYTES_MAX`] bytes without control
/// characters: NUL cannot be stored in PostgreSQL text, and the others
/// would make keys that look alike in logs and terminals differ.
pub fn check_idempotency_key(key: &str) -> Result<(), Error> {
    let problem = if key.is_empty() {
        "is empty".to_owned()
    } else if key.len() > IDEMPOTENCY_KEY_BYTES_MAX {
        format!(
            "is {} bytes, more than {IDEMPOTENCY_KEY_BYTES_MAX}",
            key.len()
        )
    } else if let Some((at, found)) = key.char_indices().find(|(_, c)| c.is_control()) {
        format!(
            "holds the control character U+{:04X} at byte {at}",
            u32::from(found)
        )
    } else {
        return Ok(());
    };
    Err(Error::InvalidIdempotencyKey { problem })
}

/// How to start a run.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct StartRequest {
    pub workflow: String,
    /// `None`: the version registered last.
    pub version: Option<String>,
    pub input: Value,
    /// The same key returns the run it started first.
    pub idempotency_key: Option<String>,
    /// What started the run (cron, webhook, Kafka); recorded in `run.started`.
    pub trigger: Option<crate::core::event::TriggerContext>,
}

/// What `start_run` did.
#[derive(Clone, Debug, PartialEq)]
pub struct Started {
    pub run_id: RunId,
    /// True when the idempotency key named an existing run: nothing was written.
    pub existing: bool,
}

/// Runs CPU-bound `work` (validation, template rendering, hashing, fire-time
/// calculation) on the blocking pool, off the async workers. A panic in it
/// resumes here; a task cancelled because the tokio runtime shuts down
/// (nobody waits then) is `Corrupt` naming `what`.
pub async fn off_workers<T: Send + 'static>(
    what: &str,
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, Error> {
    match tokio::task::spawn_blocking(work).await {
        Ok(value) => Ok(value),
        Err(failed) if failed.is_panic() => std::panic::resume_unwind(failed.into_panic()),
        Err(cancelled) => Err(Error::corrupt(format!("{what} stopped: {cancelled}"))),
    }
}

/// A runtime node on one store. Cheap to share (`Arc`).
#[derive(Debug)]
pub struct Runtime<S: EventStore> {
    store: Arc<S>,
    executors: HashMap<String, Arc<dyn Executor>>,
    config: Config,
    cache: Mutex<advance::Cache>,
    changes: broadcast::Sender<RunId>,
    ends: broadcast::Sender<RunId>,
    /// How long each store append took; see [`Runtime::append_timings`].
    append_timings: broadcast::Sender<std::time::Duration>,
    cancels: Mutex<HashMap<String, Arc<tokio::sync::Notify>>>,
    /// Batches every append of this node into shared transactions.
    committer: commit::Committer,
    /// Follow-up jobs (child starts, parents told) that failed, to try again.
    follow_retries: Mutex<Vec<follow::FollowRetry>>,
    /// The started work loops' workers, which appends lease attempts to.
    local: Mutex<Vec<Arc<local::LocalWorkers>>>,
    /// This node, for the attempts its appends start.
    me: std::sync::Weak<Runtime<S>>,
}

impl<S: EventStore> Runtime<S> {
    /// A node that executes the kinds of `executors` (one per kind; the last
    /// one given wins). Nothing runs until [`Runtime::start`].
    pub fn new(store: Arc<S>, executors: Vec<Arc<dyn Executor>>, config: Config) -> Arc<Self> {
        let executors = executors
            .into_iter()
            .map(|executor| (step_queue(executor.kind()), executor))
            .collect();
        let (changes, _) = broadcast::channel(RUN_CHANGES_BUFFER);
        let (ends, _) = broadcast::channel(RUN_ENDS_BUFFER);
        let (append_timings, _) = broadcast::channel(APPEND_TIMINGS_BUFFER);
        Arc::new_cyclic(|me| Runtime {
            store,
            executors,
            config,
            cache: Mutex::new(advance::Cache::default()),
            changes,
            ends,
            append_timings,
            cancels: Mutex::new(HashMap::new()),
            committer: commit::Committer::default(),
            follow_retries: Mutex::new(Vec::new()),
            local: Mutex::new(Vec::new()),
            me: me.clone(),
        })
    }

    pub fn store(&self) -> &Arc<S> {
        &self.store
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// True when this node has an executor for `kind`.
    pub fn executes(&self, kind: crate::core::workflow::StepKind) -> bool {
        self.executors.contains_key(&step_queue(kind))
    }

    /// Run ids as their runs change in this process (a hint: read the run).
    pub fn changes(&self) -> broadcast::Receiver<RunId> {
        self.changes.subscribe()
    }

    /// Run ids as their runs end (succeeded, failed, cancelled) through
    /// this process's appends. A receiver that falls behind by
    /// [`RUN_ENDS_BUFFER`] loses the oldest (read the runs then).
    pub fn ends(&self) -> broadcast::Receiver<RunId> {
        self.ends.subscribe()
    }

    /// The duration of every store append this node makes from now on, so
    /// that a host can export it (the runtime stays free of any metrics
    /// crate). A receiver that falls behind by [`APPEND_TIMINGS_BUFFER`]
    /// loses the oldest timings; nothing waits for receivers.
    pub fn append_timings(&self) -> broadcast::Receiver<std::time::Duration> {
        self.append_timings.subscribe()
    }

    /// Tells [`Runtime::changes`] (and [`Runtime::ends`] when it ended)
    /// that an append changed the run.
    fn announce(&self, run_id: RunId, state: &RunState) {
        // No receiver is fine: nobody listens.
        let _ = self.changes.send(run_id);
        if state.is_finished() {
            let _ = self.ends.send(run_id);
        }
    }

    fn now(&self) -> DateTime<Utc> {
        self.store.config().clock.now()
    }

    /// The folded state of a run, read from the log.
    pub async fn state(&self, run_id: RunId) -> Result<RunState, Error> {
        Ok(self.load(run_id).await?.1)
    }

    /// Validates the input, then records `run.started` and everything the
    /// core settles at once (pure steps, first tasks and timers) in one
    /// append. With an idempotency key already used, returns that run.
    pub async fn start_run(&self, request: StartRequest) -> Result<Started, Error> {
        if let Some(key) = &request.idempotency_key {
            check_idempotency_key(key)?;
        }
        let (workflow, version) = self
            .workflow(&request.workflow, request.version.as_deref())
            .await?;
        let input = input::prepare(&workflow, request.input)?;
        if let Some(key) = &request.idempotency_key
            && let Some(existing) = self.store.find_run_by_key(key).await?
        {
            return Ok(Started {
                run_id: existing.row.run_id,
                existing: true,
            });
        }
        let run_id = store::new_id();
        let outcome = self
            .start_pinned(
                run_id,
                workflow,
                &version,
                crate::core::run::Start {
                    input,
                    idempotency_key: request.idempotency_key,
                    parent: None,
                    trigger: request.trigger,
                    fork: None,
                    vars: None,
                },
            )
            .await?;
        Ok(outcome)
    }

    /// Renders a trigger's `input` tree against `scope` (`trigger`, and
    /// `body`/`headers` or `message`) with the node's template evaluator (the
    /// sandbox on a serving node), off the async workers. No secrets are in
    /// scope: the result becomes the run's input, which the log keeps.
    /// `start_run` then checks it against the workflow's input schema.
    pub async fn render_trigger_input(
        &self,
        workflow: &str,
        trigger: &str,
        input: &Value,
        scope: serde_json::Map<String, Value>,
    ) -> Result<Value, Error> {
        let evaluator = Arc::clone(&self.config.evaluator);
        let (template, scope) = (input.clone(), Value::Object(scope));
        let rendered = off_workers("trigger input rendering", move || {
            let host = crate::core::Host {
                secrets: &crate::core::scope::NO_SECRETS,
                evaluator: evaluator.as_ref(),
            };
            host.render(&template, &scope)
        })
        .await?;
        rendered
            .map(|rendered| rendered.value)
            .map_err(|error| Error::TriggerInput {
                workflow: workflow.to_owned(),
                trigger: trigger.to_owned(),
                detail: error.to_string(),
            })
    }

    /// `approval.granted` on a waiting `approval` step (`step` or `step/INDEX`).
    pub async fn approve(
        &self,
        run_id: RunId,
        step: &str,
        by: &str,
        comment: Option<String>,
    ) -> Result<RunState, Error> {
        self.decide_approval(run_id, step, by, comment, true).await
    }

    /// `approval.rejected`: the step fails without retry.
    pub async fn reject(
        &self,
        run_id: RunId,
        step: &str,
        by: &str,
        comment: Option<String>,
    ) -> Result<RunState, Error> {
        self.decide_approval(run_id, step, by, comment, false).await
    }

    async fn decide_approval(
        &self,
        run_id: RunId,
        step: &str,
        by: &str,
        comment: Option<String>,
        granted: bool,
    ) -> Result<RunState, Error> {
        let (step_id, index) = split_execution(step);
        let by = by.to_owned();
        let facts = move |state: &RunState, now: DateTime<Utc>| {
            let waiting = state
                .step(&step_id)
                .and_then(|s| s.execution(index))
                .is_some_and(|exec| exec.status == ExecStatus::Waiting);
            if !waiting {
                let status = state
                    .step(&step_id)
                    .map_or("not a step of this run", |s| s.status.as_str());
                return Err(Error::NotWaiting {
                    run_id,
                    step: step_id.clone(),
                    status: status.to_owned(),
                });
            }
            let (step, by, comment) = (step_id.clone(), by.clone(), comment.clone());
            Ok(vec![match granted {
                true => Event::ApprovalGranted(ApprovalGranted {
                    at: now,
                    step,
                    index,
                    by,
                    comment,
                }),
                false => Event::ApprovalRejected(ApprovalRejected {
                    at: now,
                    step,
                    index,
                    by,
                    comment,
                }),
            }])
        };
        self.advance_api(run_id, "decide", facts).await
    }

    /// `run.cancel_requested`: pending steps are skipped, running ones cancelled.
    pub async fn cancel_run(
        &self,
        run_id: RunId,
        by: Option<String>,
        reason: Option<String>,
    ) -> Result<RunState, Error> {
        let facts = move |_: &RunState, now: DateTime<Utc>| {
            Ok(vec![Event::RunCancelRequested(RunCancelRequested {
                at: now,
                by: by.clone(),
                reason: reason.clone(),
            })])
        };
        self.advance_api(run_id, "cancel", facts).await
    }

    /// A human or API fact: errors for an unknown or finished run.
    async fn advance_api<F>(
        &self,
        run_id: RunId,
        action: &'static str,
        mut facts: F,
    ) -> Result<RunState, Error>
    where
        F: FnMut(&RunState, DateTime<Utc>) -> Result<Vec<Event>, Error> + Send,
    {
        let checked = move |state: &RunState, now: DateTime<Utc>| {
            if state.is_finished() {
                return Err(Error::RunFinished {
                    run_id,
                    status: state.status.as_str().to_owned(),
                    action,
                });
            }
            facts(state, now)
        };
        match self.advance(run_id, checked, None).await? {
            advance::Advanced::Appended(state) => Ok(*state),
            advance::Advanced::Stale(error) => Err(Error::corrupt(error)),
        }
    }
}

/// `step` or `step/INDEX` (one `for_each` item).
fn split_execution(name: &str) -> (String, Option<u32>) {
    match name.rsplit_once('/') {
        Some((step, index)) => match index.parse() {
            Ok(index) => (step.to_owned(), Some(index)),
            Err(_) => (name.to_owned(), None),
        },
        None => (name.to_owned(), None),
    }
}

/// True when the core rejected a fact as a duplicate or late arrival.
fn is_stale(error: &evolve::Error) -> bool {
    matches!(error, evolve::Error::InvalidTransition { .. })
}
