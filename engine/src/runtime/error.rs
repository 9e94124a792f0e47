//! The runtime's one error type and its stable codes (`IMX04xx`).

use super::{CONFLICT_RETRIES_MAX, IDEMPOTENCY_KEY_BYTES_MAX};
use crate::core::run;
use crate::store::{self, RunId};

/// Why the runtime could not do what was asked. Codes `IMX04xx` are stable:
/// [`Error::code`], one per [`ErrorKind`] (a store error keeps its own
/// `IMX03xx`), each with an entry in `docs/errors.md`.
#[derive(Debug, thiserror::Error, strum::EnumDiscriminants)]
#[strum_discriminants(
    name(ErrorKind),
    vis(pub),
    derive(strum::VariantArray, Hash, PartialOrd, Ord)
)]
#[non_exhaustive]
pub enum Error {
    #[error(transparent)]
    Store(#[from] store::Error),
    #[error("IMX0401: the core could not advance the run: {0}")]
    Core(#[from] run::Error),
    #[error(
        "IMX0402: no workflow named `{name}`{} is registered; run `imx run FILE` or register it first",
        version.as_ref().map(|v| format!(" with version {v}")).unwrap_or_default()
    )]
    UnknownWorkflow {
        name: String,
        version: Option<String>,
    },
    #[error("IMX0403: the workflow is invalid:\n{diagnostics}")]
    InvalidWorkflow { diagnostics: String },
    #[error("IMX0404: the input of workflow `{workflow}` does not match its `input` schema:\n{}", problems.join("\n"))]
    InvalidInput {
        workflow: String,
        problems: Vec<String>,
    },
    #[error("IMX0405: run {run_id} not found")]
    RunNotFound { run_id: RunId },
    #[error("IMX0406: run {run_id} already ended ({status}); nothing to {action}")]
    RunFinished {
        run_id: RunId,
        status: String,
        action: &'static str,
    },
    #[error(
        "IMX0407: step `{step}` of run {run_id} is not waiting for an approval (it is {status})"
    )]
    NotWaiting {
        run_id: RunId,
        step: String,
        status: String,
    },
    #[error(
        "IMX0410: run {run_id} is {status}; only a failed run (not one that timed out) can be retried"
    )]
    NotRetryable { run_id: RunId, status: String },
    #[error("IMX0414: run {run_id}: {detail}")]
    SurgeryRefused { run_id: RunId, detail: String },
    #[error("IMX0415: run {run_id}: {detail}")]
    UnknownStep { run_id: RunId, detail: String },
    #[error("IMX0416: cannot fork run {run_id}: {detail}")]
    ForkIncompatible { run_id: RunId, detail: String },
    #[error("IMX0417: run {run_id}: {problem}")]
    SurgeryInput { run_id: RunId, problem: String },
    #[error("IMX0408: the store holds a run the engine cannot read: {what}")]
    Corrupt { what: String },
    #[error(
        "IMX0409: run {run_id}: gave up after {CONFLICT_RETRIES_MAX} appends lost the race to other writers"
    )]
    Contended { run_id: RunId },
    #[error("IMX0412: deciding run {run_id} stopped inside the engine: {detail}")]
    Decide { run_id: RunId, detail: String },
    #[error(
        "IMX0411: the idempotency key {problem}; use 1 to {IDEMPOTENCY_KEY_BYTES_MAX} bytes of printable text (a UUID, a request id, `order-42`)"
    )]
    InvalidIdempotencyKey { problem: String },
    #[error(
        "IMX0413: trigger `{trigger}` of workflow `{workflow}`: its `input` cannot be rendered: {detail}; fix the trigger's `input` in the workflow file"
    )]
    TriggerInput {
        workflow: String,
        trigger: String,
        detail: String,
    },
    #[error(
        "IMX0418: the `vars` of workflow `{workflow}` cannot be rendered for this run: {detail}; nothing was started"
    )]
    Vars { workflow: String, detail: String },
    #[error(
        "IMX0420: workflow `{workflow}` has no cron schedule{}; `imx schedules` lists them",
        trigger.as_ref().map(|id| format!(" with trigger id `{id}`")).unwrap_or_default()
    )]
    ScheduleNotFound {
        workflow: String,
        trigger: Option<String>,
    },
    #[error(
        "IMX0421: the backfill window holds more than {max} fires of `{workflow}` trigger `{trigger}`; backfill a shorter window (several in turn)"
    )]
    BackfillTooLarge {
        workflow: String,
        trigger: String,
        max: usize,
    },
    #[error("IMX0422: the backfill window is empty: `--from` ({from}) is after `--to` ({to})")]
    BackfillWindowInvalid {
        from: chrono::DateTime<chrono::Utc>,
        to: chrono::DateTime<chrono::Utc>,
    },
}

impl ErrorKind {
    /// The stable code of errors of this kind, also the prefix of their
    /// message; `None` for [`ErrorKind::Store`], whose errors keep the
    /// store's own code ([`store::ErrorKind::code`]).
    pub const fn code(self) -> Option<&'static str> {
        Some(match self {
            ErrorKind::Store => return None,
            ErrorKind::Core => "IMX0401",
            ErrorKind::UnknownWorkflow => "IMX0402",
            ErrorKind::InvalidWorkflow => "IMX0403",
            ErrorKind::InvalidInput => "IMX0404",
            ErrorKind::RunNotFound => "IMX0405",
            ErrorKind::RunFinished => "IMX0406",
            ErrorKind::NotWaiting => "IMX0407",
            ErrorKind::Corrupt => "IMX0408",
            ErrorKind::Contended => "IMX0409",
            ErrorKind::NotRetryable => "IMX0410",
            ErrorKind::InvalidIdempotencyKey => "IMX0411",
            ErrorKind::Decide => "IMX0412",
            ErrorKind::TriggerInput => "IMX0413",
            ErrorKind::SurgeryRefused => "IMX0414",
            ErrorKind::UnknownStep => "IMX0415",
            ErrorKind::ForkIncompatible => "IMX0416",
            ErrorKind::SurgeryInput => "IMX0417",
            ErrorKind::Vars => "IMX0418",
            ErrorKind::ScheduleNotFound => "IMX0420",
            ErrorKind::BackfillTooLarge => "IMX0421",
            ErrorKind::BackfillWindowInvalid => "IMX0422",
        })
    }
}

impl Error {
    /// The stable code (`docs/errors.md`) as data: `IMX04xx`, or the store's
    /// `IMX03xx` for a store error. What the API returns as `extensions.imxCode`.
    pub fn code(&self) -> &'static str {
        match (self, ErrorKind::from(self).code()) {
            (Error::Store(error), _) => error.code(),
            (_, Some(code)) => code,
            // ErrorKind::code is `None` for `Store` only, matched above.
            (_, None) => store::ErrorKind::Database.code(),
        }
    }

    pub(super) fn corrupt(what: impl std::fmt::Display) -> Error {
        Error::Corrupt {
            what: what.to_string(),
        }
    }
}
