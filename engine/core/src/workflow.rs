//! The typed, immutable workflow model that the DSL parser produces.
//!
//! Everything the engine needs to run a workflow is resolved here: step
//! defaults are already merged into each step, durations are milliseconds.
//! Templates (`{{ expr }}` strings inside `with`, `for_each`, `output`) stay
//! as JSON values holding their source text and are rendered by
//! [`crate::template`] when a step is scheduled.
//!
//! The serde form of [`Workflow`] is its canonical form: the version hash is
//! SHA-256 over its RFC 8785 canonical JSON.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Default bound on concurrently running items of one `for_each` step.
pub const FOR_EACH_MAX_PARALLEL_DEFAULT: u32 = 16;

/// A parsed, validated workflow definition.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Workflow {
    /// Unique name, `[a-z0-9][a-z0-9_.-]*`.
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// JSON Schema (2020-12) that the run input must satisfy; `None` accepts any input.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input: Option<Value>,
    /// Timeout of the whole run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    /// Named template trees rendered once when a run starts (`vars.NAME`).
    /// Left out when empty, so versions of workflows without `vars` stay as they were.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub vars: BTreeMap<String, Value>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub triggers: Vec<Trigger>,
    /// Steps by id. Ids are unique by construction; the map order is the id order.
    pub steps: BTreeMap<StepId, Step>,
    /// Template tree rendered into the run's output when the run succeeds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<Value>,
}

/// A step id: the key of the step in the `steps` map.
pub type StepId = String;

/// One node of the DAG.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Step {
    pub id: StepId,
    pub uses: StepKind,
    /// The step's parameters as a template tree (`Value::Null` when absent).
    #[serde(default, skip_serializing_if = "Value::is_null")]
    pub with: Value,
    /// Steps that must be finished before this one can start.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub needs: Vec<StepId>,
    /// Bare expression (no braces); `false` skips the step.
    #[serde(default, rename = "if", skip_serializing_if = "Option::is_none")]
    pub condition: Option<String>,
    /// Fan-out: a template that must yield a list; one execution per item.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub for_each: Option<ForEach>,
    /// Fan-out over the combinations of axes (never with `for_each`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub matrix: Option<Matrix>,
    /// Of a fan-out, after an item failed for good: `Some(true)` cancels the
    /// running items and starts no more, `Some(false)` runs every item (the
    /// step fails at the end), `None` starts no more and lets running ones finish.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fail_fast: Option<bool>,
    #[serde(default, skip_serializing_if = "TriggerRule::is_default")]
    pub trigger_rule: TriggerRule,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub continue_on_error: bool,
    /// Per-attempt timeout, defaults already applied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    /// Retry policy, defaults already applied.
    pub retry: RetryPolicy,
    /// Declared under `finally:`: runs once every other step has ended,
    /// whatever the ending (see `docs/workflow-language.md#finally`). Left
    /// out when false, so versions of workflows without `finally` stay as they were.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub finally: bool,
}

/// `for_each` of a step: the items template and the parallelism bound.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ForEach {
    /// Template that yields the list of items, e.g. `"{{ steps.fetch.output.items }}"`.
    pub items: Value,
    pub max_parallel: u32,
}

/// `matrix` of a step: one execution per combination of the axes' values
/// (the first axis varies slowest), minus `exclude`, plus `include` (as
/// GitHub Actions' `strategy.matrix`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Matrix {
    /// In the order written: each a list or a template yielding one.
    pub axes: Vec<MatrixAxis>,
    /// Mappings merged into the combinations whose axis values they match,
    /// or added as combinations of their own.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub include: Vec<Value>,
    /// Partial combinations: every combination matching one is left out.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exclude: Vec<Value>,
    pub max_parallel: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MatrixAxis {
    pub name: String,
    pub values: Value,
}

/// The kind of a step (`uses`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum StepKind {
    #[serde(rename = "noop")]
    Noop,
    #[serde(rename = "fail")]
    Fail,
    #[serde(rename = "sleep")]
    Sleep,
    #[serde(rename = "http")]
    Http,
    #[serde(rename = "exec")]
    Exec,
    #[serde(rename = "approval")]
    Approval,
    #[serde(rename = "workflow")]
    Workflow,
    #[serde(rename = "agent")]
    Agent,
    #[serde(rename = "kafka.publish")]
    KafkaPublish,
}

impl StepKind {
    pub const ALL: [StepKind; 9] = [
        StepKind::Noop,
        StepKind::Fail,
        StepKind::Sleep,
        StepKind::Http,
        StepKind::Exec,
        StepKind::Approval,
        StepKind::Workflow,
        StepKind::Agent,
        StepKind::KafkaPublish,
    ];

    /// The name authors write after `uses:`.
    pub fn as_str(self) -> &'static str {
        match self {
            StepKind::Noop => "noop",
            StepKind::Fail => "fail",
            StepKind::Sleep => "sleep",
            StepKind::Http => "http",
            StepKind::Exec => "exec",
            StepKind::Approval => "approval",
            StepKind::Workflow => "workflow",
            StepKind::Agent => "agent",
            StepKind::KafkaPublish => "kafka.publish",
        }
    }

    pub fn from_name(name: &str) -> Option<StepKind> {
        StepKind::ALL.into_iter().find(|kind| kind.as_str() == name)
    }

    /// Pure kinds need no executor round trip: the core can decide their result.
    pub fn is_pure(self) -> bool {
        matches!(self, StepKind::Noop | StepKind::Fail)
    }
}

impl std::fmt::Display for StepKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// When a step becomes ready, given the final statuses of its `needs`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TriggerRule {
    /// Every dependency succeeded (a failed or skipped one skips this step).
    #[default]
    AllSuccess,
    /// Every dependency finished, whatever its status.
    AllDone,
    /// At least one dependency failed (runs once all are finished).
    OneFailed,
    /// No dependency failed; skipped ones are fine.
    NoneFailed,
}

impl TriggerRule {
    pub const ALL: [TriggerRule; 4] = [
        TriggerRule::AllSuccess,
        TriggerRule::AllDone,
        TriggerRule::OneFailed,
        TriggerRule::NoneFailed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            TriggerRule::AllSuccess => "all_success",
            TriggerRule::AllDone => "all_done",
            TriggerRule::OneFailed => "one_failed",
            TriggerRule::NoneFailed => "none_failed",
        }
    }

    pub fn from_name(name: &str) -> Option<TriggerRule> {
        TriggerRule::ALL
            .into_iter()
            .find(|rule| rule.as_str() == name)
    }

    pub fn is_default(&self) -> bool {
        *self == TriggerRule::AllSuccess
    }
}

/// How a failed attempt is retried. Every retry is a durable timer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RetryPolicy {
    /// Total attempts including the first; 1 means no retry.
    pub max_attempts: u32,
    pub backoff: Backoff,
    pub initial_interval_ms: u64,
    pub max_interval_ms: u64,
    /// Growth factor of `exponential` backoff.
    pub multiplier: f64,
    /// Fraction (0.0..=1.0) of each delay that is randomised, deterministically
    /// from the idempotency key and the attempt so that replay yields the same timer.
    pub jitter: f64,
}

impl Default for RetryPolicy {
    /// No retry: a failed attempt fails the step.
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 1,
            backoff: Backoff::Exponential,
            initial_interval_ms: 1_000,
            max_interval_ms: 60_000,
            multiplier: 2.0,
            jitter: 0.0,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Backoff {
    Fixed,
    Exponential,
}

/// What starts runs besides an explicit start. Every kind may name itself
/// with `id` (see [`Workflow::triggers_with_ids`] for the default).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Trigger {
    /// `sec min hour day month weekday [year]`, evaluated in `timezone` (IANA, default UTC).
    Cron {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<String>,
        schedule: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        timezone: Option<String>,
        /// The run input; templates see `trigger` (`id`, `scheduled_at`).
        #[serde(default, skip_serializing_if = "Value::is_null")]
        input: Value,
        #[serde(default, skip_serializing_if = "CatchUp::is_default")]
        catch_up: CatchUp,
        #[serde(default, skip_serializing_if = "Overlap::is_default")]
        overlap: Overlap,
    },
    /// HTTP webhook, HMAC-signed with the secret read from `secret_env`.
    Webhook {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<String>,
        secret_env: String,
        /// Maps the request to the run input; templates see `body`,
        /// `headers` and `trigger`. Null: the JSON body is the input.
        #[serde(default, skip_serializing_if = "Value::is_null")]
        input: Value,
    },
    /// One run per message on `topic`.
    Kafka {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<String>,
        topic: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        group: Option<String>,
        /// Maps a message to the run input; templates see `message` and
        /// `trigger`. Null: the message value (JSON) is the input.
        #[serde(default, skip_serializing_if = "Value::is_null")]
        input: Value,
        /// Where messages that cannot start a run go (default `<topic>.dlq`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        dead_letter_topic: Option<String>,
    },
}

impl Trigger {
    /// `cron`, `webhook` or `kafka`.
    pub fn kind(&self) -> &'static str {
        match self {
            Trigger::Cron { .. } => "cron",
            Trigger::Webhook { .. } => "webhook",
            Trigger::Kafka { .. } => "kafka",
        }
    }

    /// The `id` the author gave, if any.
    pub fn explicit_id(&self) -> Option<&str> {
        match self {
            Trigger::Cron { id, .. } | Trigger::Webhook { id, .. } | Trigger::Kafka { id, .. } => {
                id.as_deref()
            }
        }
    }

    /// The trigger's `input` (a template tree, or Null).
    pub fn input(&self) -> &Value {
        match self {
            Trigger::Cron { input, .. }
            | Trigger::Webhook { input, .. }
            | Trigger::Kafka { input, .. } => input,
        }
    }
}

/// The ids of `triggers`, in order: the `id` the author gave, else the
/// kind (`cron`, `webhook`, `kafka`) when it is the only trigger of that
/// kind, else `<kind>-<n>` (n from 1, in file order among that kind).
/// Validation keeps them unique.
pub fn trigger_ids(triggers: &[Trigger]) -> Vec<String> {
    let count = |kind: &str| {
        triggers
            .iter()
            .filter(|trigger| trigger.kind() == kind)
            .count()
    };
    let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
    triggers
        .iter()
        .map(|trigger| {
            let kind = trigger.kind();
            let n = seen.entry(kind).or_default();
            *n += 1;
            match trigger.explicit_id() {
                Some(id) => id.to_owned(),
                None if count(kind) == 1 => kind.to_owned(),
                None => format!("{kind}-{n}"),
            }
        })
        .collect()
}

/// Which missed cron ticks fire when a schedule is due again after downtime.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CatchUp {
    /// None: the next tick after now fires, missed ones are skipped.
    None,
    /// The latest missed tick fires once (Kubernetes CronJob's behaviour).
    #[default]
    Latest,
    /// Every missed tick fires, oldest first, up to a named limit.
    All,
}

impl CatchUp {
    pub const ALL: [CatchUp; 3] = [CatchUp::None, CatchUp::Latest, CatchUp::All];

    pub fn name(self) -> &'static str {
        match self {
            CatchUp::None => "none",
            CatchUp::Latest => "latest",
            CatchUp::All => "all",
        }
    }

    pub fn from_name(name: &str) -> Option<CatchUp> {
        CatchUp::ALL.into_iter().find(|value| value.name() == name)
    }

    pub fn is_default(&self) -> bool {
        *self == CatchUp::default()
    }
}

/// What a cron tick does while the schedule's previous run still runs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Overlap {
    /// Start another run.
    #[default]
    Allow,
    /// Start nothing and record the tick as skipped.
    Skip,
}

impl Overlap {
    pub const ALL: [Overlap; 2] = [Overlap::Allow, Overlap::Skip];

    pub fn name(self) -> &'static str {
        match self {
            Overlap::Allow => "allow",
            Overlap::Skip => "skip",
        }
    }

    pub fn from_name(name: &str) -> Option<Overlap> {
        Overlap::ALL.into_iter().find(|value| value.name() == name)
    }

    pub fn is_default(&self) -> bool {
        *self == Overlap::default()
    }
}

impl Workflow {
    pub fn step(&self, id: &str) -> Option<&Step> {
        self.steps.get(id)
    }

    /// The ids of the `finally:` steps, in id order.
    pub fn finally_steps(&self) -> impl Iterator<Item = &str> {
        self.steps
            .values()
            .filter(|step| step.finally)
            .map(|step| step.id.as_str())
    }

    /// Every trigger with its id (see [`trigger_ids`]).
    pub fn triggers_with_ids(&self) -> Vec<(String, &Trigger)> {
        trigger_ids(&self.triggers)
            .into_iter()
            .zip(&self.triggers)
            .collect()
    }

    /// The trigger with id `id`.
    pub fn trigger(&self, id: &str) -> Option<&Trigger> {
        self.triggers_with_ids()
            .into_iter()
            .find(|(trigger_id, _)| trigger_id == id)
            .map(|(_, trigger)| trigger)
    }

    /// Step ids in a topological order of `needs` (ties broken by id), so that
    /// every step comes after all of its dependencies. Validation guarantees
    /// the graph is acyclic.
    pub fn topological_order(&self) -> Vec<&str> {
        let mut remaining: BTreeMap<&str, usize> = self
            .steps
            .values()
            .map(|step| (step.id.as_str(), step.needs.len()))
            .collect();
        let mut order = Vec::with_capacity(self.steps.len());
        while !remaining.is_empty() {
            let ready: Vec<&str> = remaining
                .iter()
                .filter(|(_, pending)| **pending == 0)
                .map(|(id, _)| *id)
                .collect();
            if ready.is_empty() {
                break; // a cycle: validation reports it; never loop forever here
            }
            for id in ready {
                remaining.remove(id);
                order.push(id);
                for step in self.steps.values() {
                    if step.needs.iter().any(|need| need == id)
                        && let Some(pending) = remaining.get_mut(step.id.as_str())
                    {
                        *pending -= 1;
                    }
                }
            }
        }
        order
    }
}

/// Building a [`Step`] in code (tests, programmatic workflows).
impl Step {
    /// A step with no needs, no retry, no timeout.
    pub fn new(id: &str, uses: StepKind) -> Step {
        Step {
            id: id.to_owned(),
            uses,
            with: Value::Null,
            needs: Vec::new(),
            condition: None,
            for_each: None,
            trigger_rule: TriggerRule::AllSuccess,
            continue_on_error: false,
            timeout_ms: None,
            retry: RetryPolicy::default(),
            finally: false,
            matrix: None,
            fail_fast: None,
        }
    }

    /// The parallelism bound of a fan-out step (`for_each` or `matrix`).
    pub fn max_parallel(&self) -> Option<u32> {
        match (&self.for_each, &self.matrix) {
            (Some(for_each), _) => Some(for_each.max_parallel),
            (None, Some(matrix)) => Some(matrix.max_parallel),
            (None, None) => None,
        }
    }

    /// One execution per item (`for_each` or `matrix`).
    pub fn fans_out(&self) -> bool {
        self.for_each.is_some() || self.matrix.is_some()
    }

    /// Makes it a `finally:` step.
    pub fn in_finally(mut self) -> Step {
        self.finally = true;
        self
    }

    pub fn needs(mut self, needs: &[&str]) -> Step {
        self.needs = needs.iter().map(|id| (*id).to_owned()).collect();
        self
    }

    pub fn with(mut self, with: Value) -> Step {
        self.with = with;
        self
    }

    pub fn when(mut self, condition: &str) -> Step {
        self.condition = Some(condition.to_owned());
        self
    }

    pub fn for_each(mut self, items: &str, max_parallel: u32) -> Step {
        self.for_each = Some(ForEach {
            items: Value::String(items.to_owned()),
            max_parallel,
        });
        self
    }

    pub fn rule(mut self, rule: TriggerRule) -> Step {
        self.trigger_rule = rule;
        self
    }

    pub fn continue_on_error(mut self) -> Step {
        self.continue_on_error = true;
        self
    }

    pub fn timeout_ms(mut self, timeout_ms: u64) -> Step {
        self.timeout_ms = Some(timeout_ms);
        self
    }

    pub fn retry(mut self, retry: RetryPolicy) -> Step {
        self.retry = retry;
        self
    }
}
