//! Executors carry out one attempt of a step kind that talks to the outside
//! world (`http`, `exec`, …). The runtime hands them an [`Attempt`] built from
//! the core's `Effect::ScheduleStep` and records the [`Outcome`] as
//! `step.succeeded` / `step.failed` through the core.
//!
//! Kinds the core or the runtime handle without an executor: `noop` and
//! `fail` (decided inline by the core), `sleep` (a durable timer),
//! `approval` (waits for a decision through the API), `workflow` (a child
//! run) and `agent` (a task on a named queue, run by `imx agent`).
//!
//! Contract for every executor:
//! * it never panics on any input; bad input is `Outcome::Failed` with
//!   `retryable: false` and a message naming the field;
//! * it sends the attempt's idempotency key to the outside world so that a
//!   retried or recovered attempt can be deduplicated there;
//! * it may be dropped at any await point (deadline reached, run cancelled):
//!   it must not leave work running behind (child processes are killed);
//! * its output is JSON; the runtime enforces the output size limit.

use std::fmt::Debug;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::Value;
use uuid::Uuid;

use crate::core::workflow::StepKind;

pub mod command;
pub mod egress;
pub mod exec;
pub mod http;
mod input;
pub mod kafka;

/// Largest JSON output an executor may return for one attempt, in bytes;
/// a larger one fails the attempt without retry (the runtime checks it).
pub const OUTPUT_BYTES_MAX: usize = 256 * 1024;

pub use command::{CommandSpec, StdoutFormat, run_command};
pub use egress::EgressPolicy;
pub use exec::{ExecConfig, ExecExecutor};
pub use http::{HttpConfig, HttpExecutor};
pub use kafka::{KafkaConfig, KafkaExecutor};

/// One attempt of one step (or of one `for_each` item).
#[derive(Debug, Clone, PartialEq)]
pub struct Attempt {
    pub run_id: Uuid,
    pub step: String,
    pub index: Option<u32>,
    /// 1 for the first attempt.
    pub attempt: u32,
    /// `<run-id>/<step-id>[/<index>]`, the same for every attempt.
    pub idempotency_key: String,
    pub kind: StepKind,
    /// The rendered `with`, secrets resolved: never log or store it.
    pub input: Value,
    /// When the attempt times out; the runtime drops the future then.
    pub deadline: Option<DateTime<Utc>>,
}

/// How an attempt ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Succeeded {
        output: Value,
    },
    /// `retryable: false` fails the step at once, whatever its retry policy
    /// (invalid input, a 4xx answer that will not change).
    Failed {
        error: String,
        retryable: bool,
    },
}

impl Outcome {
    pub fn failed(error: impl Into<String>, retryable: bool) -> Outcome {
        Outcome::Failed {
            error: error.into(),
            retryable,
        }
    }
}

/// A boxed future, so that executors of different kinds can sit in one table.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Carries out attempts of one step kind.
pub trait Executor: Send + Sync + Debug {
    fn kind(&self) -> StepKind;

    fn execute<'a>(&'a self, attempt: &'a Attempt) -> BoxFuture<'a, Outcome>;
}

/// Time left until `deadline` (zero once it has passed); `None` without one.
pub fn time_left(deadline: Option<DateTime<Utc>>) -> Option<Duration> {
    deadline.map(|deadline| (deadline - Utc::now()).to_std().unwrap_or(Duration::ZERO))
}

/// The outcome of an attempt whose deadline passed before it could start
/// (the runtime was late, not the outside world): retryable.
pub fn deadline_passed(attempt: &Attempt) -> Option<Outcome> {
    (time_left(attempt.deadline) == Some(Duration::ZERO)).then(|| {
        Outcome::failed(
            "the attempt's deadline passed before it started; nothing was done",
            true,
        )
    })
}

/// The executors this crate provides, for the runtime's table: `http` and
/// `exec` (which refuses every attempt unless `exec.enabled`).
pub fn standard_executors(
    http: HttpConfig,
    exec: ExecConfig,
) -> Result<Vec<Arc<dyn Executor>>, http::Error> {
    Ok(vec![
        Arc::new(HttpExecutor::new(http)?),
        Arc::new(ExecExecutor::new(exec)),
    ])
}
