//! `verify_reader`: verification of an export file as a pipeline. One
//! thread reads the file in batches of whole lines (big reads, lines found
//! with a SIMD search, no copy per line), workers parse them and make each event's
//! own checks (canonical bytes, hash, schema, and the log link to the line
//! before in the batch) in parallel, first by the fast path
//! (`crate::fast`), else the normative way, and the calling
//! thread follows the chains in file order, so the first problem reported
//! is the same as with one thread. Memory is bounded by the queues:
//! at most `2 * QUEUE_BATCHES_MAX` batches of about `BATCH_BYTES` (or one
//! line, up to `LINE_BYTES_MAX`) in flight.

use std::collections::BTreeMap;
use std::io::BufRead;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::sync::{Arc, Mutex};

use engine::chain::GENESIS_HASH;
use uuid::Uuid;

use crate::fast::fast_checks;
use crate::format::{
    ChainParams, FORMAT_NAME, FORMAT_VERSION, Header, LINE_BYTES_MAX, Line, Trailer,
};
use crate::tape::Tape;
use crate::verify::{
    Checked, Digest32, Fault, Options, Problem, Summary, Verifier, is_hex_hash, local_checks,
};

/// Bytes of whole lines per batch handed to a worker (a batch holds at
/// least one line, however long).
pub const BATCH_BYTES: usize = 256 * 1024;
/// Batches waiting in each queue (read → workers, workers → chain follower).
pub const QUEUE_BATCHES_MAX: usize = 8;
/// Most worker threads, whatever the machine has.
pub const WORKERS_MAX: usize = 8;
/// The least room a read into a batch's buffer asks for: more than a
/// `BufReader`'s own buffer (8 KiB by default), so it reads straight into
/// the batch.
const READ_BYTES: usize = 64 * 1024;
/// Buffers waiting to be filled again: every batch that can be in flight.
const RECYCLED_MAX: usize = 2 * QUEUE_BATCHES_MAX + WORKERS_MAX + 2;

/// One line, examined by a worker.
enum Item {
    Event {
        number: u64,
        checked: Checked,
    },
    BadTime {
        number: u64,
        run_id: Uuid,
        seq: u64,
        position: u64,
        value: String,
    },
    Trailer {
        number: u64,
        trailer: Trailer,
    },
    Malformed {
        number: u64,
        detail: String,
    },
}

/// Whole lines read, in one buffer: `(line number, start, end)` of each
/// (the end excludes the line break). Not yet checked to be UTF-8. The
/// buffer may hold more bytes after the last line (it is reused).
#[derive(Default)]
struct Batch {
    text: Vec<u8>,
    lines: Vec<(u64, usize, usize)>,
}

type Lines = (u64, Batch, Option<Problem>);
type Examined = (u64, Vec<Item>, Option<Problem>);

/// How the pipeline runs (the verdict never depends on it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tuning {
    /// Worker threads (at least 1).
    pub workers: usize,
    /// Try `crate::fast` on each event line before the normative checks.
    pub fast_path: bool,
    /// Bytes of whole lines per batch (at least one line per batch).
    pub batch_bytes: usize,
}

impl Default for Tuning {
    /// A worker per core (up to `WORKERS_MAX`), fast path on.
    fn default() -> Self {
        Tuning {
            workers: std::thread::available_parallelism()
                .map_or(1, |n| n.get())
                .clamp(1, WORKERS_MAX),
            fast_path: true,
            batch_bytes: BATCH_BYTES,
        }
    }
}

/// Verifies an export read from `reader`; see the module comment.
pub fn verify_reader(reader: impl BufRead + Send, options: Options) -> Result<Summary, Problem> {
    verify_reader_tuned(reader, options, Tuning::default())
}

/// [`verify_reader`] with the pipeline's tuning given (benchmarks, tests).
pub fn verify_reader_tuned(
    reader: impl BufRead + Send,
    options: Options,
    tuning: Tuning,
) -> Result<Summary, Problem> {
    let mut reader = reader;
    let header = parse_header(&read_header(&mut reader)?)?;
    let mut verifier = Verifier::new(header.scope, header.start, options);
    verifier.check_start()?;
    std::thread::scope(|scope| {
        let (to_workers, from_reader) = sync_channel::<Lines>(QUEUE_BATCHES_MAX);
        let (to_follower, from_workers) = sync_channel::<Examined>(QUEUE_BATCHES_MAX);
        let (to_reader, recycled) = sync_channel::<Vec<u8>>(RECYCLED_MAX);
        let batch_bytes = tuning.batch_bytes.max(1);
        scope.spawn(move || read_batches(reader, batch_bytes, &to_workers, &recycled));
        let from_reader = Arc::new(Mutex::new(from_reader));
        for _ in 0..tuning.workers.max(1) {
            let (from_reader, to_follower) = (Arc::clone(&from_reader), to_follower.clone());
            let to_reader = to_reader.clone();
            let work = Work {
                fast_path: tuning.fast_path,
                leaves: verifier.wants_leaves(),
            };
            scope.spawn(move || examine_batches(&from_reader, &to_follower, &to_reader, work));
        }
        drop(to_follower);
        follow(&mut verifier, &from_workers)
    })?;
    verifier.finish()
}

/// The first line, the header (at most `LINE_BYTES_MAX` bytes before its
/// line break, which it must have).
fn read_header(reader: &mut impl BufRead) -> Result<String, Problem> {
    let mut line = Vec::new();
    // The longest line, its line break, and one byte to tell "longer".
    let limit = u64::try_from(LINE_BYTES_MAX).unwrap_or(u64::MAX) + 2;
    std::io::Read::take(&mut *reader, limit)
        .read_until(b'\n', &mut line)
        .map_err(|error| header_problem(&error.to_string()))?;
    if line.is_empty() {
        return Err(header_problem("the file is empty"));
    }
    let Some(text) = line.strip_suffix(b"\n") else {
        return Err(header_problem(&if line.len() > LINE_BYTES_MAX {
            format!("longer than {LINE_BYTES_MAX} bytes")
        } else {
            "the line does not end with a line break".to_owned()
        }));
    };
    if let Some(detail) = line_fault(text) {
        return Err(header_problem(&detail));
    }
    let text = std::str::from_utf8(text).map_err(|_| header_problem("not UTF-8"))?;
    Ok(text.to_owned())
}

/// What is wrong with a line's bytes (its line break taken off) before
/// any parsing: too long, or a carriage return (only `\n` ends a line,
/// and JSON allows no raw 0x0D inside a string).
fn line_fault(line: &[u8]) -> Option<String> {
    if line.len() > LINE_BYTES_MAX {
        return Some(format!("longer than {LINE_BYTES_MAX} bytes"));
    }
    memchr::memchr(b'\r', line).map(|at| {
        format!("a carriage return (0x0D) at byte {}: lines end with \\n alone (Windows line breaks are not the format)", at + 1)
    })
}

/// Reads the lines after the header in batches of whole lines, numbered
/// from 2, until the end of the file, a read error or a line longer than
/// `LINE_BYTES_MAX` (the batch that reached it carries the problem).
/// Bytes are read straight into the batch's buffer (a `BufReader` hands
/// reads this large to the file without copying them through its own
/// buffer), and buffers come back from the workers to be filled again, so
/// a batch costs no allocation and no page faults once the pipeline runs.
fn read_batches(
    mut reader: impl BufRead,
    batch_bytes: usize,
    to_workers: &SyncSender<Lines>,
    recycled: &Receiver<Vec<u8>>,
) {
    let mut number = 1;
    // The start of a line whose end is not read yet.
    let mut carried: Vec<u8> = Vec::new();
    for index in 0.. {
        // A buffer that grew for a long line is not kept.
        let mut text = recycled
            .try_recv()
            .ok()
            .filter(|text| text.len() <= 4 * batch_bytes + READ_BYTES)
            .unwrap_or_default();
        // The buffer is kept at its full length (initialized once, grown
        // by the reads below); `filled` says how much of it holds bytes of
        // the file.
        if text.len() < carried.len() {
            text.resize(carried.len(), 0);
        }
        text[..carried.len()].copy_from_slice(&carried);
        let mut filled = carried.len();
        carried.clear();
        let mut error = None;
        let mut at_end = false;
        // Read until the batch holds a line break past batch_bytes, or the
        // end. What was carried over holds no break (it followed the last).
        let mut has_break = false;
        while filled < batch_bytes || !has_break {
            // At most a batch and a read: batches stay about batch_bytes.
            let room = (batch_bytes + READ_BYTES).saturating_sub(filled).max(READ_BYTES);
            if text.len() < filled + room {
                text.resize(filled + room, 0);
            }
            let read = match reader.read(&mut text[filled..filled + room]) {
                Ok(read) => read,
                Err(error) if error.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(read_error) => {
                    error = Some(read_error.to_string());
                    break;
                }
            };
            if read == 0 {
                at_end = true;
                break;
            }
            has_break |= memchr::memchr(b'\n', &text[filled..filled + read]).is_some();
            filled += read;
            if filled > LINE_BYTES_MAX && !has_break {
                break;
            }
        }
        // Lines end at a line break; an unfinished last one waits for the
        // next batch, unless the file ends (or reading failed) here.
        let complete = match memchr::memrchr(b'\n', &text[..filled]) {
            _ if at_end || error.is_some() => filled,
            Some(last_break) => last_break + 1,
            None => 0,
        };
        carried.extend_from_slice(&text[complete..filled]);
        let data = &text[..complete];
        let mut lines = Vec::with_capacity(data.len() / 256 + 1);
        let mut start = 0;
        let breaks = memchr::memchr_iter(b'\n', data)
            .chain((start_of_last(data) < data.len()).then_some(data.len()));
        let mut problem = None;
        for end in breaks {
            number += 1;
            if let Some(detail) = line_fault(&data[start..end]) {
                problem = Some(malformed(number, detail));
                break;
            }
            lines.push((number, start, end));
            start = end + 1;
        }
        // The file's last line has no line break: checked after the line
        // itself (a trailer is compared first), then refused.
        if problem.is_none() && at_end && error.is_none() && !data.is_empty() && !data.ends_with(b"\n") {
            problem = Some(malformed(
                number,
                "the file's last line does not end with a line break (\\n): it was cut, or edited by hand".to_owned(),
            ));
        }
        if problem.is_none() && carried.len() > LINE_BYTES_MAX {
            problem = Some(malformed(
                number + 1,
                format!("longer than {LINE_BYTES_MAX} bytes"),
            ));
        }
        if problem.is_none()
            && let Some(detail) = error
        {
            problem = Some(malformed(number + 1, detail));
        }
        let batch = Batch { text, lines };
        let last = at_end || problem.is_some();
        // A closed queue means the follower stopped at a problem: stop too.
        if to_workers.send((index, batch, problem)).is_err() || last {
            return;
        }
    }
}

/// Where the last line of `text` starts (after its last line break).
fn start_of_last(text: &[u8]) -> usize {
    memchr::memrchr(b'\n', text).map_or(0, |last_break| last_break + 1)
}

fn malformed(number: u64, detail: String) -> Problem {
    Problem {
        run_id: None,
        seq: None,
        position: None,
        line: Some(number),
        fault: Box::new(Fault::Malformed {
            line: number,
            detail,
        }),
    }
}

/// What a worker does with each event line besides its own checks.
#[derive(Clone, Copy)]
struct Work {
    /// Try `crate::fast` first.
    fast_path: bool,
    /// Make the event's Merkle leaf hash (checkpoints' roots are checked).
    leaves: bool,
}

fn examine_batches(
    from_reader: &Mutex<Receiver<Lines>>,
    to_follower: &SyncSender<Examined>,
    to_reader: &SyncSender<Vec<u8>>,
    work: Work,
) {
    let mut canonical = Vec::with_capacity(1024);
    loop {
        let next = from_reader.lock().map(|receiver| receiver.recv());
        let Ok(Ok((index, batch, error))) = next else {
            return;
        };
        let items = examine_batch(&batch, &mut canonical, work);
        // The buffer goes back to be filled again (or is freed when the
        // reader has enough, or has stopped).
        let _ = to_reader.try_send(batch.text);
        if to_follower.send((index, items, error)).is_err() {
            return;
        }
    }
}

fn examine_batch(batch: &Batch, canonical: &mut Vec<u8>, work: Work) -> Vec<Item> {
    let mut tape = Tape::default();
    // The log hash the line before claims, to check this line's log link here.
    let mut previous_log_hash: Option<Digest32> = None;
    let mut items = Vec::with_capacity(batch.lines.len());
    for &(number, start, end) in &batch.lines {
        let Ok(text) = simdutf8::basic::from_utf8(batch.text.get(start..end).unwrap_or_default())
        else {
            items.push(Item::Malformed {
                number,
                detail: "not UTF-8".to_owned(),
            });
            previous_log_hash = None;
            continue;
        };
        let fast = work
            .fast_path
            .then(|| fast_checks(text, &mut tape, canonical, previous_log_hash.as_ref()))
            .flatten();
        let mut item = match fast {
            Some(checked) => Item::Event { number, checked },
            None => examine(number, text, canonical),
        };
        if work.leaves
            && let Item::Event { checked, .. } = &mut item
            && let Ok(local) = &mut checked.local
        {
            local.leaf = Some(engine::merkle::leaf_hash(&local.hash));
        }
        previous_log_hash = match &item {
            Item::Event { checked, .. } => checked.local.as_ref().ok().map(|local| local.log_hash),
            _ => None,
        };
        items.push(item);
    }
    items
}

fn examine(number: u64, text: &str, canonical: &mut Vec<u8>) -> Item {
    match Line::parse(text) {
        Ok(Line::Event(line)) => {
            let (run_id, seq, position) = (line.run_id, line.seq, line.position);
            match line.into_recorded() {
                Ok(event) => Item::Event {
                    number,
                    checked: Checked::of(&event, local_checks(&event, canonical)),
                },
                Err(value) => Item::BadTime {
                    number,
                    run_id,
                    seq,
                    position,
                    value,
                },
            }
        }
        Ok(Line::Trailer(trailer)) => Item::Trailer { number, trailer },
        Ok(Line::Header(_)) => Item::Malformed {
            number,
            detail: "a second header".to_owned(),
        },
        Err(error) => Item::Malformed {
            number,
            detail: error.to_string(),
        },
    }
}

/// Follows the chains over the examined batches in file order.
fn follow(verifier: &mut Verifier, from_workers: &Receiver<Examined>) -> Result<(), Problem> {
    let mut waiting: BTreeMap<u64, (Vec<Item>, Option<Problem>)> = BTreeMap::new();
    let mut next = 0;
    let mut trailer_seen = false;
    for (index, items, error) in from_workers {
        waiting.insert(index, (items, error));
        while let Some((items, error)) = waiting.remove(&next) {
            for item in items {
                follow_item(verifier, item, &mut trailer_seen)?;
            }
            if let Some(problem) = error {
                return Err(problem);
            }
            next += 1;
        }
    }
    if !trailer_seen {
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
    Ok(())
}

fn follow_item(
    verifier: &mut Verifier,
    item: Item,
    trailer_seen: &mut bool,
) -> Result<(), Problem> {
    let at_line = |number: u64, fault| Problem {
        run_id: None,
        seq: None,
        position: None,
        line: Some(number),
        fault: Box::new(fault),
    };
    let number = match &item {
        Item::Event { number, .. }
        | Item::BadTime { number, .. }
        | Item::Trailer { number, .. }
        | Item::Malformed { number, .. } => *number,
    };
    if *trailer_seen {
        return Err(at_line(number, Fault::AfterTrailer));
    }
    match item {
        Item::Event { number, checked } => {
            verifier.line = Some(number);
            verifier.sequence(&checked).map_err(|fault| {
                verifier.relocate(Problem {
                    run_id: Some(checked.run_id),
                    seq: Some(checked.seq),
                    position: Some(checked.position),
                    line: Some(number),
                    fault: Box::new(fault),
                })
            })
        }
        Item::BadTime {
            number,
            run_id,
            seq,
            position,
            value,
        } => Err(Problem {
            run_id: Some(run_id),
            seq: Some(seq),
            position: Some(position),
            line: Some(number),
            fault: Box::new(Fault::BadTime { value }),
        }),
        Item::Trailer { number, trailer } => {
            verifier
                .check_trailer(&trailer)
                .map_err(|problem| Problem {
                    line: Some(number),
                    ..problem
                })?;
            *trailer_seen = true;
            Ok(())
        }
        Item::Malformed { number, detail } => Err(at_line(
            number,
            Fault::Malformed {
                line: number,
                detail,
            },
        )),
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
    if header.start.position != header.scope.since {
        return Err(header_problem(&format!(
            "start.position {} is not scope.since {}",
            header.start.position, header.scope.since
        )));
    }
    if header.start.position == 0 && header.start.log_hash != GENESIS_HASH {
        return Err(header_problem("start at position 0 is not the genesis hash"));
    }
    Ok(header)
}
