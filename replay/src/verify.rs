//! `imx replay verify`: recomputes every run's hash chain and the log chain
//! from an export file or from the store, one event at a time, and reports
//! the first place where the history is not the one the engine wrote.
//!
//! Memory is one small head per run seen (run id, seq, hash), never per
//! event: the caller feeds lines or pages and drops them.

use std::collections::HashMap;
use std::io::BufRead;

use engine::chain::{GENESIS_HASH, LogHead, RecordedEvent};
use serde::Serialize;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::format::{
    ChainParams, EventLine, FORMAT_NAME, FORMAT_VERSION, Header, LINE_BYTES_MAX, Line, Scope,
    Trailer,
};
use crate::schemas::Schemas;

/// Most run heads listed in the text summary (all of them are in `--json`).
pub const SUMMARY_RUN_HEADS_MAX: usize = 20;

/// What is wrong at the place a [`Problem`] names.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, thiserror::Error)]
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
#[derive(Clone, Debug, PartialEq, Eq, Serialize, thiserror::Error)]
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

/// Where one run's chain ends.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RunHead {
    pub run_id: Uuid,
    pub seq: u64,
    pub events: u64,
    pub hash: String,
}

/// A verified history.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Summary {
    pub scope: Scope,
    pub events: u64,
    pub runs: u64,
    /// The head to compare with a recorded one (`--expect-head`): the log
    /// hash (whole log or since) or the run's hash (one run).
    pub head: String,
    pub log_head: LogHead,
    /// Sorted by run id.
    pub run_heads: Vec<RunHead>,
    /// False when the file has no log chain (a one-run export) or starts
    /// mid-log: what came before is vouched for only by `start`.
    pub from_genesis: bool,
}

impl Summary {
    /// The text `imx replay verify` prints on success.
    pub fn render(&self) -> String {
        let mut text = format!(
            "ok: {} events in {} runs verified\nhead: {}\nlog head: position {} log_hash {}\n",
            self.events, self.runs, self.head, self.log_head.position, self.log_head.log_hash
        );
        if !self.from_genesis {
            text.push_str("note: the history does not start at genesis; earlier events are vouched for only by the header's start head\n");
        }
        for head in self.run_heads.iter().take(SUMMARY_RUN_HEADS_MAX) {
            text.push_str(&format!(
                "run {} seq {} hash {}\n",
                head.run_id, head.seq, head.hash
            ));
        }
        if self.run_heads.len() > SUMMARY_RUN_HEADS_MAX {
            text.push_str(&format!(
                "… {} more runs (see --json)\n",
                self.run_heads.len() - SUMMARY_RUN_HEADS_MAX
            ));
        }
        text
    }
}

/// Options of a verification.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// The head recorded at export time, kept apart from the file.
    pub expect_head: Option<String>,
}

/// A SHA-256 digest; kept as bytes so that following a chain allocates nothing.
type Digest32 = [u8; 32];

const GENESIS: Digest32 = [0; 32];

#[derive(Clone, Debug)]
struct RunChain {
    seq: u64,
    events: u64,
    hash: Digest32,
}

/// The streaming verifier: feed it events in log order (or one run in seq
/// order), then [`Verifier::finish`].
#[derive(Debug)]
pub struct Verifier {
    options: Options,
    scope: Scope,
    log_chain: bool,
    log_position: u64,
    log_hash: Digest32,
    last_position: u64,
    runs: HashMap<Uuid, RunChain>,
    events: u64,
    last_event: Option<(Uuid, u64, u64)>,
    schemas: &'static Schemas,
    /// Reused for every event's canonical bytes.
    canonical: Vec<u8>,
}

impl Verifier {
    /// A verifier for a history that starts at `start` (genesis for the whole
    /// log). A `start.log_hash` that is not hex is taken as genesis; the
    /// file reader refuses such a header before.
    pub fn new(scope: Scope, start: LogHead, options: Options) -> Self {
        Verifier {
            log_chain: scope.run.is_none(),
            last_position: start.position,
            log_position: start.position,
            log_hash: decode(&start.log_hash).unwrap_or(GENESIS),
            scope,
            options,
            runs: HashMap::new(),
            events: 0,
            last_event: None,
            schemas: Schemas::get(),
            canonical: Vec::with_capacity(1024),
        }
    }

    /// Checks the next event.
    pub fn event(&mut self, event: &RecordedEvent) -> Result<(), Problem> {
        self.check(event).map_err(|fault| Problem {
            run_id: Some(event.run_id),
            seq: Some(event.seq),
            position: Some(event.position),
            line: None,
            fault: Box::new(fault),
        })
    }

    fn check(&mut self, event: &RecordedEvent) -> Result<(), Fault> {
        let bad_hex = |field: &str| Fault::BadHex {
            field: field.to_owned(),
        };
        let prev_hash = decode(&event.prev_hash).ok_or_else(|| bad_hex("prev_hash"))?;
        let hash = decode(&event.hash).ok_or_else(|| bad_hex("hash"))?;
        let log_hash = decode(&event.log_hash).ok_or_else(|| bad_hex("log_hash"))?;
        let expected_prev = self.check_seq(event, &prev_hash, &hash)?;
        self.check_position(event)?;
        if prev_hash != expected_prev {
            return Err(Fault::BrokenLink {
                expected: hex::encode(expected_prev),
                found: event.prev_hash.clone(),
            });
        }
        crate::canonical::canonical_event_bytes(event, &mut self.canonical).map_err(|fault| {
            Fault::NotCanonical {
                detail: fault.to_string(),
            }
        })?;
        let recomputed = sha256(&prev_hash, &self.canonical);
        if recomputed != hash {
            return Err(Fault::Edited {
                expected: hex::encode(recomputed),
                found: event.hash.clone(),
            });
        }
        if self.log_chain {
            let recomputed = sha256(&self.log_hash, &hash);
            if recomputed != log_hash {
                return Err(Fault::LogHashMismatch {
                    expected: hex::encode(recomputed),
                    found: event.log_hash.clone(),
                });
            }
        }
        self.schemas
            .check(&event.event_type, event.schema_version, &event.payload)?;
        self.advance(event, hash, log_hash);
        Ok(())
    }

    /// Seq continuity within the run; returns the `prev_hash` the event must carry.
    fn check_seq(
        &self,
        event: &RecordedEvent,
        prev_hash: &Digest32,
        hash: &Digest32,
    ) -> Result<Digest32, Fault> {
        match self.runs.get(&event.run_id) {
            Some(run) if event.seq == run.seq + 1 => Ok(run.hash),
            Some(run) if event.seq == run.seq => Err(if *hash == run.hash {
                Fault::Duplicated { seq: event.seq }
            } else {
                Fault::Inserted { seq: event.seq }
            }),
            Some(run) if event.seq < run.seq => Err(Fault::Reordered {
                last: run.seq,
                found: event.seq,
            }),
            Some(run) => Err(Fault::Missing {
                expected: run.seq + 1,
                found: event.seq,
            }),
            None if event.seq == 1 => Ok(GENESIS),
            // Mid-log or mid-run starts: earlier events are outside the file;
            // the log chain (or the header's start) vouches for them.
            None if self.scope.since > 0 => Ok(*prev_hash),
            None if self.scope.run.is_some() => Err(Fault::Missing {
                expected: 1,
                found: event.seq,
            }),
            None => Err(Fault::RunStartMissing { seq: event.seq }),
        }
    }

    fn check_position(&self, event: &RecordedEvent) -> Result<(), Fault> {
        if self.log_chain {
            let expected = self.log_position + 1;
            if event.position != expected {
                return Err(Fault::PositionGap {
                    expected,
                    found: event.position,
                });
            }
        } else if event.position <= self.last_position {
            return Err(Fault::PositionNotIncreasing {
                previous: self.last_position,
                found: event.position,
            });
        }
        Ok(())
    }

    fn advance(&mut self, event: &RecordedEvent, hash: Digest32, log_hash: Digest32) {
        let run = self.runs.entry(event.run_id).or_insert(RunChain {
            seq: 0,
            events: 0,
            hash: GENESIS,
        });
        run.seq = event.seq;
        run.events += 1;
        run.hash = hash;
        self.events += 1;
        self.last_position = event.position;
        self.log_position = event.position;
        self.log_hash = log_hash;
        self.last_event = Some((event.run_id, event.seq, event.position));
    }

    /// The head the file's trailer and `--expect-head` are compared with.
    fn head(&self) -> String {
        match self.scope.run.and_then(|run_id| self.runs.get(&run_id)) {
            Some(run) => hex::encode(run.hash),
            None if self.scope.run.is_some() => GENESIS_HASH.to_owned(),
            None => hex::encode(self.log_hash),
        }
    }

    fn problem_at_end(&self, fault: Fault) -> Problem {
        Problem {
            run_id: self.last_event.map(|(run_id, _, _)| run_id),
            seq: self.last_event.map(|(_, seq, _)| seq),
            position: self.last_event.map(|(_, _, position)| position),
            line: None,
            fault: Box::new(fault),
        }
    }

    fn check_trailer(&self, trailer: &Trailer) -> Result<(), Problem> {
        let head = self.head();
        if trailer.events != self.events
            || trailer.head != head
            || trailer.position != self.last_position
        {
            return Err(self.problem_at_end(Fault::TrailerMismatch {
                expected_events: trailer.events,
                expected_position: trailer.position,
                expected_head: trailer.head.clone(),
                events: self.events,
                position: self.last_position,
                head,
            }));
        }
        Ok(())
    }

    /// Ends the verification: compares the head with `--expect-head`.
    pub fn finish(self) -> Result<Summary, Problem> {
        let head = self.head();
        if let Some(expected) = &self.options.expect_head
            && !expected.eq_ignore_ascii_case(&head)
        {
            return Err(self.problem_at_end(Fault::HeadMismatch {
                expected: expected.clone(),
                found: head,
            }));
        }
        let mut run_heads: Vec<RunHead> = self
            .runs
            .into_iter()
            .map(|(run_id, run)| RunHead {
                run_id,
                seq: run.seq,
                events: run.events,
                hash: hex::encode(run.hash),
            })
            .collect();
        run_heads.sort_by_key(|head| head.run_id);
        Ok(Summary {
            from_genesis: self.scope.run.is_none() && self.scope.since == 0,
            scope: self.scope,
            events: self.events,
            runs: run_heads.len() as u64,
            head,
            log_head: LogHead {
                position: self.log_position,
                log_hash: hex::encode(self.log_hash),
            },
            run_heads,
        })
    }
}

/// The 32 bytes of a hash written as 64 lowercase hex digits.
fn decode(value: &str) -> Option<Digest32> {
    let mut bytes = GENESIS;
    if value.bytes().any(|b| b.is_ascii_uppercase()) {
        return None;
    }
    hex::decode_to_slice(value, &mut bytes).ok()?;
    Some(bytes)
}

fn sha256(first: &[u8], second: &[u8]) -> Digest32 {
    let mut hasher = Sha256::new();
    hasher.update(first);
    hasher.update(second);
    hasher.finalize().into()
}

fn is_hex_hash(value: &str) -> bool {
    value.len() == 64
        && value
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Verifies an export read from `reader`, line by line.
pub fn verify_reader(reader: impl BufRead, options: Options) -> Result<Summary, Problem> {
    let mut lines = LineReader {
        reader,
        number: 0,
        buffer: String::new(),
    };
    if !lines.next_line()? {
        return Err(header_problem("the file is empty"));
    }
    let header = parse_header(lines.text())?;
    let mut verifier = Verifier::new(header.scope, header.start, options);
    let mut trailer = None;
    while lines.next_line()? {
        let number = lines.number;
        let at_line = |fault| Problem {
            run_id: None,
            seq: None,
            position: None,
            line: Some(number),
            fault: Box::new(fault),
        };
        if trailer.is_some() {
            return Err(at_line(Fault::AfterTrailer));
        }
        match Line::parse(lines.text()) {
            Ok(Line::Event(event)) => verifier.event_line(*event, number)?,
            Ok(Line::Trailer(found)) => {
                verifier.check_trailer(&found).map_err(|problem| Problem {
                    line: Some(number),
                    ..problem
                })?;
                trailer = Some(found);
            }
            Ok(Line::Header(_)) => {
                return Err(at_line(Fault::Malformed {
                    line: number,
                    detail: "a second header".to_owned(),
                }));
            }
            Err(error) => {
                return Err(at_line(Fault::Malformed {
                    line: number,
                    detail: error.to_string(),
                }));
            }
        }
    }
    if trailer.is_none() {
        // Report --expect-head first: it names what the tail should have been.
        let fault = match &verifier.options.expect_head {
            Some(expected) if !expected.eq_ignore_ascii_case(&verifier.head()) => {
                Fault::HeadMismatch {
                    expected: expected.clone(),
                    found: verifier.head(),
                }
            }
            _ => Fault::NoTrailer,
        };
        return Err(verifier.problem_at_end(fault));
    }
    verifier.finish()
}

impl Verifier {
    fn event_line(&mut self, line: EventLine, number: u64) -> Result<(), Problem> {
        let (run_id, seq, position) = (line.run_id, line.seq, line.position);
        let with_line = |fault| Problem {
            run_id: Some(run_id),
            seq: Some(seq),
            position: Some(position),
            line: Some(number),
            fault: Box::new(fault),
        };
        let event = line
            .into_recorded()
            .map_err(|value| with_line(Fault::BadTime { value }))?;
        self.event(&event).map_err(|problem| Problem {
            line: Some(number),
            ..problem
        })
    }
}

fn header_problem(detail: &str) -> Problem {
    Problem {
        run_id: None,
        seq: None,
        position: None,
        line: Some(1),
        fault: Box::new(Fault::BadHeader {
            detail: detail.to_owned(),
        }),
    }
}

fn parse_header(text: &str) -> Result<Header, Problem> {
    let header = match Line::parse(text) {
        Ok(Line::Header(header)) => *header,
        Ok(_) => return Err(header_problem("the first line is not a header")),
        Err(error) => return Err(header_problem(&error.to_string())),
    };
    if header.format != FORMAT_NAME || header.format_version != FORMAT_VERSION {
        return Err(header_problem(&format!(
            "format {} v{}",
            header.format, header.format_version
        )));
    }
    if header.chain != ChainParams::v1() {
        return Err(header_problem("unknown chain parameters"));
    }
    if !is_hex_hash(&header.start.log_hash) {
        return Err(header_problem(
            "start.log_hash is not 64 lowercase hex digits",
        ));
    }
    Ok(header)
}

/// Reads lines with a length bound, reusing one buffer.
struct LineReader<R> {
    reader: R,
    number: u64,
    buffer: String,
}

impl<R: BufRead> LineReader<R> {
    /// Reads the next line into the buffer; false at the end of the file.
    fn next_line(&mut self) -> Result<bool, Problem> {
        self.buffer.clear();
        self.number += 1;
        let limit = u64::try_from(LINE_BYTES_MAX).unwrap_or(u64::MAX) + 1;
        let read = std::io::Read::take(&mut self.reader, limit).read_line(&mut self.buffer);
        let number = self.number;
        let malformed = |detail: String| Problem {
            run_id: None,
            seq: None,
            position: None,
            line: Some(number),
            fault: Box::new(Fault::Malformed {
                line: number,
                detail,
            }),
        };
        match read {
            Ok(0) => Ok(false),
            Ok(_) if self.buffer.len() > LINE_BYTES_MAX => {
                Err(malformed(format!("longer than {LINE_BYTES_MAX} bytes")))
            }
            Ok(_) => Ok(true),
            Err(error) => Err(malformed(error.to_string())),
        }
    }

    fn text(&self) -> &str {
        self.buffer.trim_end_matches(['\n', '\r'])
    }
}
