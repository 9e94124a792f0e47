//! The verifier's fast path for one event line of an export: parse the
//! line once, borrowing its strings (payload onto a [`Tape`]), hash the
//! canonical bytes (the payload's own text when the tape proves it
//! canonical, as exports write it; else bytes written from the tape) and
//! check the payload with the compiled schema. It only ever says "this line is fine": any doubt (a
//! field spelled otherwise than the exporter writes it, a float, keys out
//! of order, a hash or schema mismatch) returns `None`, and the caller
//! checks the line the normative way (`verify::local_checks`), which also
//! words the fault. So the fast path can make verify faster, never change
//! its verdict: a line it accepts is one the normative checks accept with
//! the same hashes.

use std::fmt;

use engine::chain::{CANONICAL_INTEGER_MAX, HASH_HEX_CHARS};
use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, Visitor};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::compiled::{is_date_time, is_uuid};
use crate::schemas::Schemas;
use crate::tape::Tape;
use crate::verify::{Checked, Digest32, Local, decode, sha256};

/// The fields of an event line, borrowed from it (the payload's value is
/// on the tape).
#[derive(Clone, Debug)]
pub struct Fields<'a> {
    /// The payload's text as it stands in the line, when the parse knows it.
    pub payload: Option<&'a str>,
    /// Whether that text was read by [`Tape::parse_canonical`], which
    /// proves it canonical.
    pub payload_canonical: bool,
    pub run_id: &'a str,
    pub seq: u64,
    pub position: u64,
    pub event_type: &'a str,
    pub schema_version: u32,
    pub recorded_at: &'a str,
    pub prev_hash: &'a str,
    pub hash: &'a str,
    pub log_hash: &'a str,
}

/// Checks the event line `text` on its own. `previous_log_hash`: the
/// `log_hash` the previous line claims, if known; then this line's log
/// link is checked here too and the chain follower need not hash it again.
/// `None`: not sure, check the line the normative way.
pub(crate) fn fast_checks<'a>(
    text: &'a str,
    tape: &mut Tape<'a>,
    canonical: &mut Vec<u8>,
    previous_log_hash: Option<&Digest32>,
) -> Option<Checked> {
    let fields = parse_line(text, tape)?;
    if !is_uuid(fields.run_id)
        || fields.seq > CANONICAL_INTEGER_MAX
        || fields.position > CANONICAL_INTEGER_MAX
        || !is_recorded_at(fields.recorded_at)
    {
        return None;
    }
    let run_id = Uuid::try_parse(fields.run_id).ok()?;
    let prev_hash = decode(fields.prev_hash)?;
    let hash = decode(fields.hash)?;
    let log_hash = decode(fields.log_hash)?;
    if event_hash(&fields, tape, &prev_hash, canonical)? != hash
        || !Schemas::get().accepts(fields.event_type, fields.schema_version, tape)
    {
        return None;
    }
    let log_checked_from = previous_log_hash
        .filter(|previous| sha256(previous.as_slice(), &hash) == log_hash)
        .copied();
    Some(Checked {
        run_id,
        seq: fields.seq,
        position: fields.position,
        local: Ok(Local {
            prev_hash,
            hash,
            log_hash,
            edited: None,
            schema: None,
            log_checked_from,
            leaf: None,
        }),
    })
}

/// Whether the fast path alone accepts the event line `text` (its own
/// checks: hash and schema; not the chain links). For tests and benchmarks:
/// a `false` costs verify time, never a verdict.
#[cfg(feature = "internals")]
pub fn accepts_line(text: &str) -> bool {
    let mut tape = Tape::default();
    let mut canonical = Vec::with_capacity(text.len());
    fast_checks(text, &mut tape, &mut canonical, None).is_some()
}

/// Parses an event line: the fields, and the payload onto `tape` (cleared
/// first). `None` unless it is exactly the ten fields, once each, strings
/// without escapes, a payload the tape takes.
pub fn parse_line<'a>(text: &'a str, tape: &mut Tape<'a>) -> Option<Fields<'a>> {
    parse_exported(text, tape).or_else(|| parse_any_order(text, tape))
}

/// Bytes after the payload of a line as the exporter writes it:
/// `,"recorded_at":"…27…","prev_hash":"…64…","hash":"…64…","log_hash":"…64…"}`.
const EXPORTED_TAIL_BYTES: usize =
    16 + 27 + 15 + HASH_HEX_CHARS + 10 + HASH_HEX_CHARS + 14 + HASH_HEX_CHARS + 2;

/// The exporter's own spelling of an event line, matched byte for byte
/// around the payload (which serde_json parses onto the tape): it skips
/// the generic parse of the ten fields, a third of the parsing time.
/// Every string it takes is checked afterwards (hex, UUID, time) by
/// [`fast_checks`], so a quote or escape in them is refused there.
fn parse_exported<'a>(text: &'a str, tape: &mut Tape<'a>) -> Option<Fields<'a>> {
    tape.nodes.clear();
    let tail_start = text.len().checked_sub(EXPORTED_TAIL_BYTES)?;
    let mut head = Cursor { text, at: 0 };
    head.literal("{\"run_id\":\"")?;
    let run_id = head.take(36)?;
    head.literal("\",\"seq\":")?;
    let seq = head.integer()?;
    head.literal(",\"position\":")?;
    let position = head.integer()?;
    head.literal(",\"event_type\":\"")?;
    let event_type = head.plain_string()?;
    head.literal("\",\"schema_version\":")?;
    let schema_version = u32::try_from(head.integer()?).ok()?;
    head.literal(",\"payload\":")?;
    let payload = text.get(head.at..tail_start)?;
    let payload_canonical = tape.parse_canonical(payload).is_some();
    if !payload_canonical {
        tape.nodes.clear();
        let mut deserializer = serde_json::Deserializer::from_str(payload);
        tape.seed().deserialize(&mut deserializer).ok()?;
        deserializer.end().ok()?;
    }
    let payload = Some(payload);
    let mut tail = Cursor {
        text,
        at: tail_start,
    };
    tail.literal(",\"recorded_at\":\"")?;
    let recorded_at = tail.take(27)?;
    tail.literal("\",\"prev_hash\":\"")?;
    let prev_hash = tail.take(HASH_HEX_CHARS)?;
    tail.literal("\",\"hash\":\"")?;
    let hash = tail.take(HASH_HEX_CHARS)?;
    tail.literal("\",\"log_hash\":\"")?;
    let log_hash = tail.take(HASH_HEX_CHARS)?;
    tail.literal("\"}")?;
    Some(Fields {
        payload,
        payload_canonical,
        run_id,
        seq,
        position,
        event_type,
        schema_version,
        recorded_at,
        prev_hash,
        hash,
        log_hash,
    })
}

/// A read position in a line.
struct Cursor<'a> {
    text: &'a str,
    at: usize,
}

impl<'a> Cursor<'a> {
    // Inlined, the comparison with a constant is a few loads, not a call.
    #[inline(always)]
    fn literal(&mut self, expected: &str) -> Option<()> {
        let end = self.at + expected.len();
        (self.text.get(self.at..end)? == expected).then(|| self.at = end)
    }

    fn take(&mut self, bytes: usize) -> Option<&'a str> {
        let taken = self.text.get(self.at..self.at + bytes)?;
        self.at += bytes;
        Some(taken)
    }

    /// A JSON integer as the exporter writes it: digits, no leading zero.
    fn integer(&mut self) -> Option<u64> {
        let rest = self.text.get(self.at..)?.as_bytes();
        let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
        if digits == 0 || (digits > 1 && rest[0] == b'0') {
            return None;
        }
        let value = self.take(digits)?.parse().ok()?;
        Some(value)
    }

    /// String content up to the closing quote: printable ASCII without
    /// escapes (so the JSON string is exactly these bytes).
    fn plain_string(&mut self) -> Option<&'a str> {
        let rest = self.text.get(self.at..)?.as_bytes();
        let length = rest.iter().position(|b| *b == b'"')?;
        let plain = rest[..length]
            .iter()
            .all(|b| (0x20..0x7f).contains(b) && *b != b'\\');
        if !plain {
            return None;
        }
        self.take(length)
    }
}

/// Any valid spelling of an event line: the ten fields in any order, with
/// any whitespace (only strings with escapes are left to the normative path).
fn parse_any_order<'a>(text: &'a str, tape: &mut Tape<'a>) -> Option<Fields<'a>> {
    tape.nodes.clear();
    let mut deserializer = serde_json::Deserializer::from_str(text);
    let fields = deserializer
        .deserialize_map(LineVisitor { tape: &mut *tape })
        .ok()?;
    deserializer.end().ok()?;
    Some(fields)
}

/// The recorded_at spelling the chain hashes: `YYYY-MM-DDTHH:MM:SS.ffffffZ`
/// (then parsing and formatting it again gives the same text).
fn is_recorded_at(text: &str) -> bool {
    text.len() == 27 && text.as_bytes()[19] == b'.' && is_date_time(text)
}

/// `hash(e)` of the event: SHA-256 of `prev_hash` and the canonical bytes.
/// When the payload's text in the line is already canonical (as every
/// export writes it), those bytes are hashed where they stand, between the
/// hashed fields written around them; else the canonical bytes are written
/// from the tape into `scratch` first. `None`: the tape is not well formed.
fn event_hash(
    fields: &Fields,
    tape: &Tape,
    prev_hash: &Digest32,
    scratch: &mut Vec<u8>,
) -> Option<Digest32> {
    let canonical = |text: &&str| fields.payload_canonical || tape.is_canonical_text(text);
    let Some(payload) = fields.payload.filter(canonical) else {
        write_canonical(fields, tape, scratch)?;
        return Some(sha256(prev_hash, scratch));
    };
    let mut hasher = Sha256::new();
    hasher.update(prev_hash);
    scratch.clear();
    write_head(fields, scratch);
    hasher.update(&scratch[..]);
    hasher.update(payload.as_bytes());
    scratch.clear();
    write_tail(fields, scratch);
    hasher.update(&scratch[..]);
    Some(hasher.finalize().into())
}

/// Writes the canonical bytes of the seven hashed fields into `out`
/// (cleared first), keys in UTF-16 order, the payload from the tape.
pub fn write_canonical(fields: &Fields, tape: &Tape, out: &mut Vec<u8>) -> Option<()> {
    out.clear();
    write_head(fields, out);
    if tape.write_canonical(0, out)? != tape.nodes.len() {
        return None;
    }
    write_tail(fields, out);
    Some(())
}

/// The canonical bytes before the payload's value.
fn write_head(fields: &Fields, out: &mut Vec<u8>) {
    out.extend_from_slice(b"{\"event_type\":");
    engine::chain::write_json_string(fields.event_type, out);
    out.extend_from_slice(b",\"payload\":");
}

/// The canonical bytes after the payload's value (`recorded_at` and
/// `run_id` were checked to need no escaping).
fn write_tail(fields: &Fields, out: &mut Vec<u8>) {
    let mut digits = itoa::Buffer::new();
    out.extend_from_slice(b",\"position\":");
    out.extend_from_slice(digits.format(fields.position).as_bytes());
    out.extend_from_slice(b",\"recorded_at\":\"");
    out.extend_from_slice(fields.recorded_at.as_bytes());
    out.extend_from_slice(b"\",\"run_id\":\"");
    out.extend_from_slice(fields.run_id.as_bytes());
    out.extend_from_slice(b"\",\"schema_version\":");
    out.extend_from_slice(digits.format(fields.schema_version).as_bytes());
    out.extend_from_slice(b",\"seq\":");
    out.extend_from_slice(digits.format(fields.seq).as_bytes());
    out.push(b'}');
}

/// Reads the top-level object of an event line: exactly the ten fields,
/// once each, strings without escapes; the payload onto the tape.
struct LineVisitor<'t, 'a> {
    tape: &'t mut Tape<'a>,
}

fn set<T, E: de::Error>(slot: &mut Option<T>, value: T) -> Result<(), E> {
    if slot.replace(value).is_some() {
        return Err(E::custom("duplicate field"));
    }
    Ok(())
}

impl<'de> Visitor<'de> for LineVisitor<'_, 'de> {
    type Value = Fields<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an event line")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Fields<'de>, A::Error> {
        let (mut run_id, mut seq, mut position, mut event_type) = (None, None, None, None);
        let (mut schema_version, mut recorded_at, mut payload) = (None, None, None);
        let (mut prev_hash, mut hash, mut log_hash) = (None, None, None);
        while let Some(key) = map.next_key::<&str>()? {
            match key {
                "run_id" => set(&mut run_id, map.next_value::<&str>()?)?,
                "seq" => set(&mut seq, map.next_value::<u64>()?)?,
                "position" => set(&mut position, map.next_value::<u64>()?)?,
                "event_type" => set(&mut event_type, map.next_value::<&str>()?)?,
                "schema_version" => set(&mut schema_version, map.next_value::<u32>()?)?,
                "payload" => {
                    set(&mut payload, ())?;
                    map.next_value_seed(self.tape.seed())?;
                }
                "recorded_at" => set(&mut recorded_at, map.next_value::<&str>()?)?,
                "prev_hash" => set(&mut prev_hash, map.next_value::<&str>()?)?,
                "hash" => set(&mut hash, map.next_value::<&str>()?)?,
                "log_hash" => set(&mut log_hash, map.next_value::<&str>()?)?,
                _ => return Err(de::Error::custom("unknown field")),
            }
        }
        let missing = || de::Error::custom("missing field");
        payload.ok_or_else(missing)?;
        Ok(Fields {
            payload: None,
            payload_canonical: false,
            run_id: run_id.ok_or_else(missing)?,
            seq: seq.ok_or_else(missing)?,
            position: position.ok_or_else(missing)?,
            event_type: event_type.ok_or_else(missing)?,
            schema_version: schema_version.ok_or_else(missing)?,
            recorded_at: recorded_at.ok_or_else(missing)?,
            prev_hash: prev_hash.ok_or_else(missing)?,
            hash: hash.ok_or_else(missing)?,
            log_hash: log_hash.ok_or_else(missing)?,
        })
    }
}
