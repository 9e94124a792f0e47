//! The verifier's fast path for one event line of an export: parse the
//! line once, borrowing its strings (payload onto a [`Tape`]), write the
//! canonical bytes from that, hash them and check the payload with the
//! compiled schema. It only ever says "this line is fine": any doubt (a
//! field spelled otherwise than the exporter writes it, a float, keys out
//! of order, a hash or schema mismatch) returns `None`, and the caller
//! checks the line the normative way (`verify::local_checks`), which also
//! words the fault. So the fast path can make verify faster, never change
//! its verdict: a line it accepts is one the normative checks accept with
//! the same hashes.

use std::fmt;
use std::io::Write;

use engine::chain::CANONICAL_INTEGER_MAX;
use serde::de::{self, Deserializer, MapAccess, Visitor};
use uuid::Uuid;

use crate::compiled::{is_date_time, is_uuid};
use crate::schemas::Schemas;
use crate::tape::Tape;
use crate::verify::{Checked, Digest32, Local, decode, sha256};

/// The fields of an event line but the payload, borrowed from it.
#[derive(Clone, Debug)]
pub struct Fields<'a> {
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
    write_canonical(&fields, tape, canonical)?;
    if sha256(&prev_hash, canonical) != hash
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
        }),
    })
}

/// Whether the fast path alone accepts the event line `text` (its own
/// checks: hash and schema; not the chain links). For tests and benchmarks:
/// a `false` costs verify time, never a verdict.
pub fn accepts_line(text: &str) -> bool {
    let mut tape = Tape::default();
    let mut canonical = Vec::with_capacity(text.len());
    fast_checks(text, &mut tape, &mut canonical, None).is_some()
}

/// Parses an event line: the fields, and the payload onto `tape` (cleared
/// first). `None` unless it is exactly the ten fields, once each, strings
/// without escapes, a payload the tape takes.
pub fn parse_line<'a>(text: &'a str, tape: &mut Tape<'a>) -> Option<Fields<'a>> {
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

/// Writes the canonical bytes of the seven hashed fields into `out`
/// (cleared first), keys in UTF-16 order, the payload from the tape.
pub fn write_canonical(fields: &Fields, tape: &Tape, out: &mut Vec<u8>) -> Option<()> {
    out.clear();
    out.extend_from_slice(b"{\"event_type\":");
    crate::canonical::write_string(fields.event_type, out);
    out.extend_from_slice(b",\"payload\":");
    if tape.write_canonical(0, out)? != tape.nodes.len() {
        return None;
    }
    write!(
        out,
        ",\"position\":{},\"recorded_at\":\"{}\",\"run_id\":\"{}\",\"schema_version\":{},\"seq\":{}}}",
        fields.position, fields.recorded_at, fields.run_id, fields.schema_version, fields.seq
    )
    .ok()
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
