//! Audit tools over the event log: verify the hash chain offline, inspect the
//! state of a run at any event (with the core's own `evolve`), export, and
//! check that a new workflow version can take over runs in flight.

pub mod canonical;
pub mod check;
pub mod export;
pub mod format;
pub mod inspect;
pub mod online;
pub mod schemas;
pub mod verify;

pub use check::{Incompatibility, compatibility};
pub use export::export;
pub use format::Scope;
pub use verify::{Options, Problem, Summary, Verifier, verify_reader};

use uuid::Uuid;

/// Why an audit command could not do its work (a history that fails
/// verification is a [`verify::Problem`], not an error).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error(transparent)]
    Store(#[from] engine::store::Error),
    #[error("cannot read or write the export: {0}")]
    Io(#[from] std::io::Error),
    #[error("run {run_id} has no events in this history; list runs with `imx runs`")]
    RunNotFound { run_id: Uuid },
    #[error("--since {since} is beyond the log's last position {head}")]
    SinceBeyondHead { since: u64, head: u64 },
    #[error("run {run_id} seq {seq}: the event cannot be read: {source}")]
    Event {
        run_id: Uuid,
        seq: u64,
        source: engine::core::event::Error,
    },
    #[error("the core rejects the history: {0}")]
    Evolve(#[from] engine::core::evolve::Error),
    #[error("run {run_id}: --at {at} is beyond the run's last seq {last}")]
    AtBeyondEnd { run_id: Uuid, at: u64, last: u64 },
    #[error("the export is not readable: {0}")]
    Export(#[from] verify::Problem),
}
