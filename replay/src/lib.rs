//! Audit tools over the event log: verify the hash chain offline, inspect the
//! state of a run at any event (with the core's own `evolve`), export, and
//! check that a new workflow version can take over runs in flight.

pub mod check;
pub mod export;
pub mod fault;
pub mod format;
pub mod inspect;
pub mod online;
pub mod proof;
pub mod trusted;
mod unique;
pub mod verify;

// The verifier's stages (the fast path per line, its tape and compiled
// checks, the batched reader, the payload schemas) are internal; feature
// `internals`, which only this crate's own tests and benchmarks turn on
// (a dev-dependency on itself), lets them reach the stages one by one.
macro_rules! internal_modules {
    ($($name:ident),*) => {$(
        #[cfg(feature = "internals")]
        pub mod $name;
        #[cfg(not(feature = "internals"))]
        mod $name;
    )*};
}
internal_modules!(compiled, fast, pipeline, schemas, tape);

pub use check::{Incompatibility, compatibility};
pub use export::export;
pub use format::Scope;
pub use pipeline::{Tuning, verify_reader, verify_reader_tuned};
pub use verify::{Options, Problem, Summary, Verifier};

use uuid::Uuid;

/// Why an audit command could not do its work (a history that fails
/// verification is a [`verify::Problem`], not an error). Codes `IMX053x` are
/// stable (`docs/errors.md`); store errors keep their own `IMX03xx`, and an
/// unreadable export its problem's `IMX05xx`: [`Error::code`], one per
/// [`ErrorKind`].
#[derive(Debug, thiserror::Error, strum::EnumDiscriminants)]
#[strum_discriminants(
    name(ErrorKind),
    vis(pub),
    derive(strum::VariantArray, Hash, PartialOrd, Ord)
)]
#[non_exhaustive]
pub enum Error {
    #[error(transparent)]
    Store(#[from] engine::store::Error),
    #[error("IMX0530: cannot read or write the export: {0}")]
    Io(#[from] std::io::Error),
    #[error(
        "IMX0531: run {run_id} has no events in this history; list runs with `imx runs` (or check the file's scope)"
    )]
    RunNotFound { run_id: Uuid },
    #[error(
        "IMX0532: --since {since} is beyond the log's last position {head}; pass a position the log has reached (the `position` of an earlier export's trailer)"
    )]
    SinceBeyondHead { since: u64, head: u64 },
    #[error(
        "IMX0533: run {run_id} seq {seq}: the event cannot be read by this imx: {source}; run `imx replay verify`, or use the imx version that wrote it"
    )]
    Event {
        run_id: Uuid,
        seq: u64,
        source: engine::core::event::Error,
    },
    #[error(
        "IMX0534: the core rejects the history: {0}; run `imx replay verify` on it (a verified history that the core rejects is a bug: report it)"
    )]
    Evolve(#[from] engine::core::evolve::Error),
    #[error(
        "IMX0535: run {run_id}: --at {at} is beyond the run's last seq {last}; pass a seq from 1 to {last}"
    )]
    AtBeyondEnd { run_id: Uuid, at: u64, last: u64 },
    #[error(
        "IMX0536: workflow {name} {version} in the registry does not load: {detail}; it was registered by another imx version: check with that version"
    )]
    Registry {
        name: String,
        version: String,
        detail: String,
    },
    #[error("the export is not readable: {0}")]
    Export(#[from] verify::Problem),
    #[error(
        "IMX0537: tree size {size} is not a size to prove in: it must be at least {at_least} and at most the log's length {head}; pass --tree-size within that range (a checkpoint's size)"
    )]
    TreeSize { size: u64, at_least: u64, head: u64 },
    #[error(
        "IMX0538: run {run_id} has no event seq {seq}; list its events with `imx replay inspect {run_id}`"
    )]
    SeqNotFound { run_id: Uuid, seq: u64 },
    #[error(
        "IMX0539: not an imx-merkle-proof v1 file: {detail}; pass a file `imx replay prove` wrote (docs/merkle.md)"
    )]
    ProofFile { detail: String },
    #[error(
        "IMX0540: the proof does not verify: {detail}; the log it comes from is not the one it claims (or the file was edited)"
    )]
    ProofInvalid { detail: String },
}

impl ErrorKind {
    /// The stable code of errors of this kind, also the prefix of their
    /// message; `None` for `Store` and `Export`, which keep the code of what
    /// they carry (`IMX03xx`, the problem's `IMX05xx`).
    pub const fn code(self) -> Option<&'static str> {
        Some(match self {
            ErrorKind::Store | ErrorKind::Export => return None,
            ErrorKind::Io => "IMX0530",
            ErrorKind::RunNotFound => "IMX0531",
            ErrorKind::SinceBeyondHead => "IMX0532",
            ErrorKind::Event => "IMX0533",
            ErrorKind::Evolve => "IMX0534",
            ErrorKind::AtBeyondEnd => "IMX0535",
            ErrorKind::Registry => "IMX0536",
            ErrorKind::TreeSize => "IMX0537",
            ErrorKind::SeqNotFound => "IMX0538",
            ErrorKind::ProofFile => "IMX0539",
            ErrorKind::ProofInvalid => "IMX0540",
        })
    }
}

impl Error {
    /// The stable code (`docs/errors.md`) as data.
    pub fn code(&self) -> &'static str {
        match (self, ErrorKind::from(self).code()) {
            (Error::Store(error), _) => error.code(),
            (Error::Export(problem), _) => problem.fault.code(),
            (_, Some(code)) => code,
            // ErrorKind::code is `None` for `Store` and `Export` only, matched above.
            (_, None) => engine::store::ErrorKind::Database.code(),
        }
    }
}
