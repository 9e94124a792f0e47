//! `imx replay verify`: recomputes every run's hash chain and the log chain
//! from an export file or from the store, one event at a time, and reports
//! the first place where the history is not the one the engine wrote.
//!
//! Memory is one small head per run seen (run id, seq, hash), never per
//! event: the caller feeds lines or pages and drops them.

use std::collections::{BTreeMap, HashMap};

use engine::chain::{GENESIS_HASH, HASH_HEX_CHARS, LogHead, RecordedEvent};
use serde::Serialize;
use sha2::{Digest, Sha256};
use uuid::Uuid;

pub use crate::fault::{Fault, Problem};
use crate::format::{Scope, Trailer};
use crate::schemas::Schemas;

/// Most run heads listed in the text summary (all of them are in `--json`).
pub const SUMMARY_RUN_HEADS_MAX: usize = 20;

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
    /// Positions of `--expect POSITION:HASH` that matched the history.
    pub expect_checked: Vec<u64>,
    /// Positions of `--expect` the history does not cover (not checked).
    pub expect_not_covered: Vec<u64>,
    /// With trusted checkpoints: how much of the history they prove.
    pub coverage: Option<Coverage>,
}

/// What trusted checkpoints prove of a history (`--trusted-keys`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Coverage {
    /// Sizes of the trusted checkpoints the history matched.
    pub checkpoints_matched: Vec<u64>,
    /// Every event up to this position is the one a trusted checkpoint
    /// committed to; `None` when no checkpoint falls within the history.
    pub proven_through: Option<u64>,
    /// The first and last position of the history no trusted checkpoint
    /// covers: unprovable (changed or not, nothing here can tell).
    pub unprovable: Option<(u64, u64)>,
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
        for position in &self.expect_checked {
            text.push_str(&format!("expect: position {position} matches\n"));
        }
        for position in &self.expect_not_covered {
            text.push_str(&format!(
                "note: --expect {position}:…: this history does not prove the log hash at position {position}; NOT checked\n"
            ));
        }
        if let Some(coverage) = &self.coverage {
            match coverage.proven_through {
                Some(position) => text.push_str(&format!(
                    "checkpoints: {} trusted checkpoints match; the history is proven through position {position}\n",
                    coverage.checkpoints_matched.len()
                )),
                None => text.push_str("checkpoints: no trusted checkpoint falls within this history\n"),
            }
            if let Some((first, last)) = coverage.unprovable {
                text.push_str(&format!(
                    "UNPROVABLE: positions {first} to {last} are covered by no trusted checkpoint: their chains verify, but a rewrite there would not show (verify again after the next checkpoint)\n"
                ));
            }
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
    /// `--expect POSITION:HASH`: the log hash at a position, kept apart
    /// from the file; checked wherever the history proves that position's
    /// log hash (the header's `start`, or an event whose log link holds).
    pub expect: Vec<Expectation>,
    /// Report which part of the history the checkpoints among `expect`
    /// prove ([`Summary::coverage`]); set by `--trusted-keys`.
    pub checkpoints: bool,
}

/// One `--expect POSITION:HASH`: the log hash recorded for a position.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Expectation {
    pub position: u64,
    /// 64 lowercase hex digits.
    pub log_hash: String,
    /// `Some(signers)` when a trusted checkpoint of size `position` is
    /// what recorded it (`name+keyid` of its signers).
    pub checkpoint: Option<String>,
    /// The checkpoint's Merkle root (64 hex digits), checked against the
    /// history's own tree when the history starts at genesis.
    pub checkpoint_root: Option<String>,
}

impl std::str::FromStr for Expectation {
    type Err = String;

    /// `POSITION:HASH`, the hash in hex of either case.
    fn from_str(text: &str) -> Result<Self, String> {
        let usage = || {
            format!(
                "{text:?} is not POSITION:HASH (a log position, a colon, 64 hex digits), e.g. 42:{}",
                GENESIS_HASH
            )
        };
        let (position, hash) = text.split_once(':').ok_or_else(usage)?;
        let position = position.parse::<u64>().map_err(|_| usage())?;
        let log_hash = hash.to_ascii_lowercase();
        if !is_hex_hash(&log_hash) {
            return Err(usage());
        }
        Ok(Expectation {
            position,
            log_hash,
            checkpoint: None,
            checkpoint_root: None,
        })
    }
}

/// A SHA-256 digest; kept as bytes so that following a chain allocates nothing.
pub(crate) type Digest32 = [u8; 32];

const GENESIS: Digest32 = [0; 32];

#[derive(Clone, Debug)]
struct RunChain {
    seq: u64,
    events: u64,
    hash: Digest32,
}

/// A checkpoint's signers (`name+keyid`, space-separated) and its root.
type Signed = (String, Option<Digest32>);

/// Where an event is (for a checkpoint mismatch, which blames the first
/// event no earlier checkpoint vouches for).
#[derive(Clone, Copy, Debug)]
struct EventAt {
    run_id: Uuid,
    seq: u64,
    position: u64,
    line: Option<u64>,
}

/// The streaming verifier: feed it events in log order (or one run in seq
/// order), then [`Verifier::finish`].
#[derive(Debug)]
pub struct Verifier {
    pub(crate) options: Options,
    scope: Scope,
    log_chain: bool,
    log_position: u64,
    log_hash: Digest32,
    last_position: u64,
    /// Keyed by a fast hasher with a random seed (files may be hostile).
    runs: HashMap<Uuid, RunChain, foldhash::fast::RandomState>,
    events: u64,
    last_event: Option<(Uuid, u64, u64)>,
    /// Reused for every event's canonical bytes.
    canonical: Vec<u8>,
    /// `--expect` not met yet, by position: the hash and, for a
    /// checkpoint, its signers.
    expect: BTreeMap<u64, (Digest32, Option<Signed>)>,
    expect_checked: Vec<u64>,
    start: LogHead,
    /// Sizes of the checkpoints matched so far.
    checkpoints_matched: Vec<u64>,
    /// The first event after the last matched checkpoint.
    first_unproven: Option<EventAt>,
    /// The file line of the event being checked (set by the file reader).
    pub(crate) line: Option<u64>,
    /// The Merkle tree of the history, kept when checkpoints are checked
    /// and the history starts at genesis (their roots are compared).
    tree: Option<engine::merkle::CompactRange>,
}

impl Verifier {
    /// A verifier for a history that starts at `start` (genesis for the whole
    /// log). A `start.log_hash` that is not hex is taken as genesis; the
    /// file reader refuses such a header before.
    pub fn new(scope: Scope, start: LogHead, options: Options) -> Self {
        let expect = options
            .expect
            .iter()
            .map(|expected| {
                (
                    expected.position,
                    (
                        decode(&expected.log_hash).unwrap_or(GENESIS),
                        expected.checkpoint.clone().map(|signers| {
                            let root = expected.checkpoint_root.as_deref().and_then(decode);
                            (signers, root)
                        }),
                    ),
                )
            })
            .collect();
        Verifier {
            expect,
            expect_checked: Vec::new(),
            checkpoints_matched: Vec::new(),
            first_unproven: None,
            line: None,
            tree: (options.checkpoints && scope.run.is_none() && scope.since == 0)
                .then(engine::merkle::CompactRange::default),
            start: start.clone(),
            log_chain: scope.run.is_none(),
            last_position: start.position,
            log_position: start.position,
            log_hash: decode(&start.log_hash).unwrap_or(GENESIS),
            scope,
            options,
            runs: HashMap::default(),
            events: 0,
            last_event: None,
            canonical: Vec::with_capacity(1024),
        }
    }

    /// Whether events' Merkle leaves are needed (checkpoints' roots are
    /// compared): the file pipeline's workers then make them.
    pub(crate) fn wants_leaves(&self) -> bool {
        self.tree.is_some()
    }

    /// Compares the start head with `--expect` at its position; call it
    /// before the first event.
    pub fn check_start(&mut self) -> Result<(), Problem> {
        let position = self.start.position;
        let found = self.log_hash;
        self.expectation(position, &found).map_err(|fault| Problem {
            run_id: None,
            seq: None,
            position: Some(position),
            line: Some(1),
            fault: Box::new(fault),
        })
    }

    /// Compares `found`, the proven log hash at `position`, with `--expect`.
    fn expectation(&mut self, position: u64, found: &Digest32) -> Result<(), Fault> {
        match self.expect.remove(&position) {
            Some((expected, Some((signers, _)))) if expected != *found => {
                Err(Fault::CheckpointMismatch {
                    tree_size: position,
                    signers,
                    expected: hex::encode(expected),
                    found: hex::encode(found),
                    proven_through: self.checkpoints_matched.last().copied(),
                })
            }
            Some((expected, None)) if expected != *found => Err(Fault::ExpectMismatch {
                position,
                expected: hex::encode(expected),
                found: hex::encode(found),
            }),
            Some((_, checkpoint)) => {
                self.expect_checked.push(position);
                if let Some((signers, root)) = checkpoint {
                    if let (Some(tree), Some(root)) = (&self.tree, root)
                        && tree.root() != root
                    {
                        return Err(Fault::CheckpointRootMismatch {
                            tree_size: position,
                            signers,
                            expected: hex::encode(root),
                            found: hex::encode(tree.root()),
                        });
                    }
                    self.checkpoints_matched.push(position);
                    self.first_unproven = None;
                }
                Ok(())
            }
            None => Ok(()),
        }
    }

    /// A checkpoint mismatch blames the first event no earlier checkpoint
    /// vouches for: the first that may differ from what was committed to.
    pub(crate) fn relocate(&self, problem: Problem) -> Problem {
        match (&*problem.fault, self.first_unproven) {
            (Fault::CheckpointMismatch { .. }, Some(first)) => Problem {
                run_id: Some(first.run_id),
                seq: Some(first.seq),
                position: Some(first.position),
                line: first.line,
                ..problem
            },
            _ => problem,
        }
    }

    /// Checks the next event.
    pub fn event(&mut self, event: &RecordedEvent) -> Result<(), Problem> {
        self.check(event).map_err(|fault| {
            self.relocate(Problem {
                run_id: Some(event.run_id),
                seq: Some(event.seq),
                position: Some(event.position),
                line: None,
                fault: Box::new(fault),
            })
        })
    }

    fn check(&mut self, event: &RecordedEvent) -> Result<(), Fault> {
        let local = local_checks(event, &mut self.canonical);
        self.sequence(&Checked::of(event, local))
    }

    /// The checks that need the chain state, in the documented order, given
    /// the event's [`local_checks`] (made here or on another thread).
    pub(crate) fn sequence(&mut self, event: &Checked) -> Result<(), Fault> {
        let local = event.local.as_ref().map_err(|fault| (**fault).clone())?;
        let expected_prev = self.check_seq(event, local)?;
        self.check_position(event)?;
        if local.prev_hash != expected_prev {
            return Err(Fault::BrokenLink {
                expected: hex::encode(expected_prev),
                found: hex::encode(local.prev_hash),
            });
        }
        if let Some(edited) = &local.edited {
            return Err((**edited).clone());
        }
        // A one-run file proves the log link wherever its positions are
        // consecutive (the first event's with `start`); the whole log, always.
        let linked = self.log_chain || event.position == self.log_position + 1;
        // A worker may have checked the log link from the same log hash already.
        if linked && local.log_checked_from != Some(self.log_hash) {
            let recomputed = sha256(&self.log_hash, &local.hash);
            if recomputed != local.log_hash {
                return Err(Fault::LogHashMismatch {
                    expected: hex::encode(recomputed),
                    found: hex::encode(local.log_hash),
                });
            }
        }
        if let Some(schema) = &local.schema {
            return Err((**schema).clone());
        }
        if let Some(tree) = &mut self.tree {
            tree.append(
                local
                    .leaf
                    .unwrap_or_else(|| engine::merkle::leaf_hash(&local.hash)),
            );
        }
        if linked {
            self.expectation(event.position, &local.log_hash)?;
        }
        self.advance(event, local);
        if self.first_unproven.is_none() && self.checkpoints_matched.last() != Some(&event.position)
        {
            self.first_unproven = Some(EventAt {
                run_id: event.run_id,
                seq: event.seq,
                position: event.position,
                line: self.line,
            });
        }
        Ok(())
    }

    /// Seq continuity within the run; returns the `prev_hash` the event must carry.
    fn check_seq(&self, event: &Checked, local: &Local) -> Result<Digest32, Fault> {
        let (prev_hash, hash) = (&local.prev_hash, &local.hash);
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

    fn check_position(&self, event: &Checked) -> Result<(), Fault> {
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

    fn advance(&mut self, event: &Checked, local: &Local) {
        let (hash, log_hash) = (local.hash, local.log_hash);
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
    pub(crate) fn head(&self) -> String {
        match self.scope.run.and_then(|run_id| self.runs.get(&run_id)) {
            Some(run) => hex::encode(run.hash),
            None if self.scope.run.is_some() => GENESIS_HASH.to_owned(),
            None => hex::encode(self.log_hash),
        }
    }

    pub(crate) fn problem_at_end(&self, fault: Fault) -> Problem {
        Problem {
            run_id: self.last_event.map(|(run_id, _, _)| run_id),
            seq: self.last_event.map(|(_, seq, _)| seq),
            position: self.last_event.map(|(_, _, position)| position),
            line: None,
            fault: Box::new(fault),
        }
    }

    pub(crate) fn check_trailer(&self, trailer: &Trailer) -> Result<(), Problem> {
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
        let mut expect_checked = self.expect_checked;
        expect_checked.sort_unstable();
        let coverage = self.options.checkpoints.then(|| Coverage {
            proven_through: self.checkpoints_matched.last().copied(),
            unprovable: self
                .first_unproven
                .map(|first| (first.position, self.last_position)),
            checkpoints_matched: self.checkpoints_matched.clone(),
        });
        Ok(Summary {
            expect_checked,
            // Checkpoints outside the history are not news: only --expect.
            expect_not_covered: self
                .expect
                .into_iter()
                .filter(|(_, (_, checkpoint))| checkpoint.is_none())
                .map(|(position, _)| position)
                .collect(),
            coverage,
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

/// What one event says about itself: its decoded hashes, and whether its
/// own hash and schema hold. Needs no chain state, so it can be computed on
/// any thread.
#[derive(Clone, Debug)]
pub(crate) struct Local {
    pub prev_hash: Digest32,
    pub hash: Digest32,
    pub log_hash: Digest32,
    /// Faults are rare: boxed, they keep a checked event small.
    pub edited: Option<Box<Fault>>,
    pub schema: Option<Box<Fault>>,
    /// `Some(h)`: `log_hash` is known to be `SHA-256(h || hash)`.
    pub log_checked_from: Option<Digest32>,
    /// The event's Merkle leaf hash, when a worker made it already.
    pub leaf: Option<Digest32>,
}

/// An event reduced to what [`Verifier::sequence`] needs.
#[derive(Clone, Debug)]
pub(crate) struct Checked {
    pub run_id: Uuid,
    pub seq: u64,
    pub position: u64,
    pub local: Result<Local, Box<Fault>>,
}

impl Checked {
    pub(crate) fn of(event: &RecordedEvent, local: Result<Local, Box<Fault>>) -> Checked {
        Checked {
            run_id: event.run_id,
            seq: event.seq,
            position: event.position,
            local,
        }
    }
}

/// Decodes the hashes, recomputes `hash` from the event's own `prev_hash`
/// and checks the payload's schema. `Err`: the event cannot be checked at all.
pub(crate) fn local_checks(
    event: &RecordedEvent,
    canonical: &mut Vec<u8>,
) -> Result<Local, Box<Fault>> {
    let bad_hex = |field: &str| {
        Box::new(Fault::BadHex {
            field: field.to_owned(),
        })
    };
    let prev_hash = decode(&event.prev_hash).ok_or_else(|| bad_hex("prev_hash"))?;
    let hash = decode(&event.hash).ok_or_else(|| bad_hex("hash"))?;
    let log_hash = decode(&event.log_hash).ok_or_else(|| bad_hex("log_hash"))?;
    engine::chain::canonical_event_into(event, canonical).map_err(|fault| {
        Box::new(Fault::NotCanonical {
            detail: fault.to_string(),
        })
    })?;
    let recomputed = sha256(&prev_hash, canonical);
    let edited = (recomputed != hash).then(|| {
        Box::new(Fault::Edited {
            expected: hex::encode(recomputed),
            found: event.hash.clone(),
        })
    });
    let schema = Schemas::get()
        .check(&event.event_type, event.schema_version, &event.payload)
        .err()
        .map(Box::new);
    Ok(Local {
        prev_hash,
        hash,
        log_hash,
        edited,
        schema,
        log_checked_from: None,
        leaf: None,
    })
}

/// The 32 bytes of a hash written as 64 lowercase hex digits. By table:
/// three per event, `hex::decode_to_slice` plus a case check cost more
/// than hashing the event.
pub(crate) fn decode(value: &str) -> Option<Digest32> {
    /// Digit value of each byte; `INVALID` for all but `0-9a-f`.
    const INVALID: u8 = 0xff;
    const DIGITS: [u8; 256] = {
        let mut table = [INVALID; 256];
        let mut n = 0;
        while n < 10 {
            table[b'0' as usize + n] = n as u8;
            n += 1;
        }
        let mut n = 0;
        while n < 6 {
            table[b'a' as usize + n] = 10 + n as u8;
            n += 1;
        }
        table
    };
    let text: &[u8; HASH_HEX_CHARS] = value.as_bytes().try_into().ok()?;
    let mut bytes = GENESIS;
    let mut invalid = 0u8;
    for (byte, pair) in bytes.iter_mut().zip(text.chunks_exact(2)) {
        let (high, low) = (DIGITS[usize::from(pair[0])], DIGITS[usize::from(pair[1])]);
        // Every valid digit is < 16, so any INVALID sets the high bits.
        invalid |= high | low;
        *byte = (high << 4) | (low & 0x0f);
    }
    (invalid < 16).then_some(bytes)
}

pub(crate) fn sha256(first: &[u8], second: &[u8]) -> Digest32 {
    let mut hasher = Sha256::new();
    hasher.update(first);
    hasher.update(second);
    hasher.finalize().into()
}

pub(crate) fn is_hex_hash(value: &str) -> bool {
    value.len() == HASH_HEX_CHARS
        && value
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}
