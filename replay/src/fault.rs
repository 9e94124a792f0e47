//! What `imx replay verify` reports: the [`Fault`] found (each with a
//! stable code `IMX05xx`, documented in `docs/errors.md`, and a hint) and the
//! [`Problem`] that places it at a run, seq, position and line.

use serde::Serialize;
use serde::ser::SerializeStruct;
use uuid::Uuid;

use crate::format::{FORMAT_NAME, FORMAT_VERSION};

/// What is wrong at the place a [`Problem`] names.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, thiserror::Error, strum::EnumDiscriminants)]
#[strum_discriminants(
    name(FaultKind),
    vis(pub),
    derive(strum::VariantArray, Hash, PartialOrd, Ord)
)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Fault {
    #[error("line {line} is not a valid line of the export format: {detail}")]
    Malformed { line: u64, detail: String },
    #[error("the file does not start with an `{FORMAT_NAME}` v{FORMAT_VERSION} header: {detail}")]
    BadHeader { detail: String },
    #[error(
        "seq {found} where {expected} was expected: event seq {expected} was deleted, or events were reordered"
    )]
    Missing { expected: u64, found: u64 },
    #[error("seq {seq} appears a second time: the event was duplicated")]
    Duplicated { seq: u64 },
    #[error("seq {seq} appears a second time with other content: an event was inserted")]
    Inserted { seq: u64 },
    #[error("seq {found} comes after seq {last}: events were reordered")]
    Reordered { last: u64, found: u64 },
    #[error("position {found} where {expected} was expected: {}", position_cause(*expected, *found))]
    PositionGap { expected: u64, found: u64 },
    #[error(
        "position {found} does not increase after {previous}: events were reordered or duplicated"
    )]
    PositionNotIncreasing { previous: u64, found: u64 },
    #[error(
        "prev_hash {found} does not link to the previous event's hash {expected}: the chain was cut or spliced"
    )]
    BrokenLink { expected: String, found: String },
    #[error(
        "hash {found} does not match the recomputed {expected}: the event was edited (payload or metadata)"
    )]
    Edited { expected: String, found: String },
    #[error(
        "log_hash {found} does not match the recomputed {expected}: the log chain was rewritten"
    )]
    LogHashMismatch { expected: String, found: String },
    #[error("{field} is not 64 lowercase hex digits")]
    BadHex { field: String },
    #[error("recorded_at {value:?} is not RFC 3339 UTC with 6 fractional digits and Z")]
    BadTime { value: String },
    #[error("the event cannot be canonicalized: {detail}")]
    NotCanonical { detail: String },
    #[error("payload does not match the `{event_type}` v{version} schema: {detail}")]
    Schema {
        event_type: String,
        version: u32,
        detail: String,
    },
    #[error(
        "event seq {seq} of a run first seen here: the run's earlier events are missing from a whole-log export"
    )]
    RunStartMissing { seq: u64 },
    #[error("the file ends without a trailer: it was truncated")]
    NoTrailer,
    #[error("a line follows the trailer")]
    AfterTrailer,
    #[error(
        "the trailer says {expected_events} events ending at position {expected_position} with head {expected_head}; the file has {events} ending at position {position} with head {head}: the tail was truncated or rewritten"
    )]
    TrailerMismatch {
        expected_events: u64,
        expected_position: u64,
        expected_head: String,
        events: u64,
        position: u64,
        head: String,
    },
    #[error(
        "the history ends with head {found}, expected {expected}: the tail was truncated or rewritten"
    )]
    HeadMismatch { expected: String, found: String },
    #[error(
        "the log hash at position {position} is {found}, but --expect says {expected}: the history up to this position is not the one recorded (rewritten, or the hash belongs to another log)"
    )]
    ExpectMismatch {
        position: u64,
        expected: String,
        found: String,
    },
    #[error(
        "this is the first event that may differ from what the trusted checkpoint of size {tree_size} (signed by {signers}) committed to: the log hash at position {tree_size} is {found}, the checkpoint says {expected}{}; the history was rewritten at this event or after it, up to position {tree_size}, and its hashes recomputed",
        proven_through.map(|at| format!(", and the checkpoint of size {at} still matches")).unwrap_or_default()
    )]
    CheckpointMismatch {
        tree_size: u64,
        signers: String,
        expected: String,
        found: String,
        /// The largest matched checkpoint before it, if any.
        proven_through: Option<u64>,
    },
    #[error(
        "the trusted checkpoint of size {tree_size} (signed by {signers}) has Merkle root {expected}, but the first {tree_size} events of this history have root {found} although the log hash matches: the checkpoint does not commit to these events"
    )]
    CheckpointRootMismatch {
        tree_size: u64,
        signers: String,
        expected: String,
        found: String,
    },
}

fn position_cause(expected: u64, found: u64) -> &'static str {
    if found > expected {
        "the event(s) in between were deleted, or events were reordered"
    } else {
        "events were reordered or duplicated"
    }
}

/// The first problem found, and where: the run and seq of the event at
/// which verification stopped (the last good event for a truncated tail).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct Problem {
    pub run_id: Option<Uuid>,
    pub seq: Option<u64>,
    pub position: Option<u64>,
    /// 1-based line of the export file; `None` when verifying the store.
    pub line: Option<u64>,
    pub fault: Box<Fault>,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: ", self.fault.code())?;
        match (self.run_id, self.seq) {
            (Some(run_id), Some(seq)) => write!(f, "run {run_id} seq {seq}")?,
            _ => f.write_str("history")?,
        }
        if let Some(position) = self.position {
            write!(f, " (position {position})")?;
        }
        if let Some(line) = self.line {
            write!(f, " at line {line}")?;
        }
        write!(f, ": {}", self.fault)
    }
}

impl FaultKind {
    /// The stable code of this kind of fault (`docs/errors.md`).
    pub const fn code(self) -> &'static str {
        match self {
            FaultKind::Malformed => "IMX0501",
            FaultKind::BadHeader => "IMX0502",
            FaultKind::Missing => "IMX0503",
            FaultKind::Duplicated => "IMX0504",
            FaultKind::Inserted => "IMX0505",
            FaultKind::Reordered => "IMX0506",
            FaultKind::PositionGap => "IMX0507",
            FaultKind::PositionNotIncreasing => "IMX0508",
            FaultKind::BrokenLink => "IMX0509",
            FaultKind::Edited => "IMX0510",
            FaultKind::LogHashMismatch => "IMX0511",
            FaultKind::BadHex => "IMX0512",
            FaultKind::BadTime => "IMX0513",
            FaultKind::NotCanonical => "IMX0514",
            FaultKind::Schema => "IMX0515",
            FaultKind::RunStartMissing => "IMX0516",
            FaultKind::NoTrailer => "IMX0517",
            FaultKind::AfterTrailer => "IMX0518",
            FaultKind::TrailerMismatch => "IMX0519",
            FaultKind::HeadMismatch => "IMX0520",
            FaultKind::ExpectMismatch => "IMX0521",
            FaultKind::CheckpointMismatch => "IMX0522",
            FaultKind::CheckpointRootMismatch => "IMX0523",
        }
    }
}

impl Fault {
    /// The stable code of this kind of fault (`docs/errors.md`).
    pub fn code(&self) -> &'static str {
        FaultKind::from(self).code()
    }

    /// What an auditor can do about it (one line, printed under the error).
    pub fn hint(&self) -> &'static str {
        match self {
            Fault::Malformed { .. } | Fault::BadHeader { .. } => {
                "the file is not an export as `imx replay export` writes it: export again, or check how the file was copied (line endings, encoding, truncation)"
            }
            Fault::Missing { .. }
            | Fault::Duplicated { .. }
            | Fault::Inserted { .. }
            | Fault::Reordered { .. }
            | Fault::PositionGap { .. }
            | Fault::PositionNotIncreasing { .. }
            | Fault::RunStartMissing { .. } => {
                "events were removed, added or moved at this place: compare with the store (`imx replay verify`) or an earlier export; do not trust anything after this line"
            }
            Fault::BrokenLink { .. } | Fault::Edited { .. } | Fault::LogHashMismatch { .. } => {
                "the history was changed at this event: compare it with the store (`imx replay inspect RUN --at SEQ`) or an earlier export; do not trust anything after this line"
            }
            Fault::BadHex { .. } | Fault::BadTime { .. } | Fault::NotCanonical { .. } => {
                "a field of this event is not spelled as the export format requires (docs/export-format.md): the line was edited or written by another tool"
            }
            Fault::Schema { .. } => {
                "the payload does not fit its event schema: the line was edited, or written by an imx with other event schemas (use the imx version that wrote the log)"
            }
            Fault::NoTrailer | Fault::AfterTrailer | Fault::TrailerMismatch { .. } => {
                "the end of the file is not the end of the export: the file was cut or extended; export again, and verify with the head kept at export time"
            }
            Fault::HeadMismatch { .. } => {
                "the history does not end where the head kept at export time says: its tail was cut or rewritten; check the head you passed to --expect-head"
            }
            Fault::ExpectMismatch { .. } => {
                "the log up to this position differs from the one whose hash you recorded: some event at or before it was changed and every hash recomputed; find it with a signed checkpoint (`--trusted-keys`) or an older export"
            }
            Fault::CheckpointRootMismatch { .. } => {
                "the signer signed a root that is not the tree of the events it names: its proofs cannot be trusted; report it to whoever runs the signing node"
            }
            Fault::CheckpointMismatch { .. } => {
                "a signed checkpoint kept outside the database contradicts this history: it was rewritten after the checkpoint was signed; compare this event (and those after it, up to the checkpoint's size) with an older export or a backup; checkpoints more often (--checkpoint-every-events) narrow the range"
            }
        }
    }
}

/// `{run_id, seq, position, line, code, fault: {kind, ...}}` (`--json`).
impl Serialize for Problem {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut problem = serializer.serialize_struct("Problem", 7)?;
        problem.serialize_field("run_id", &self.run_id)?;
        problem.serialize_field("seq", &self.seq)?;
        problem.serialize_field("position", &self.position)?;
        problem.serialize_field("line", &self.line)?;
        problem.serialize_field("code", self.fault.code())?;
        problem.serialize_field("hint", self.fault.hint())?;
        problem.serialize_field("fault", &self.fault)?;
        problem.end()
    }
}
