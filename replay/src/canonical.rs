//! A fast writer of the chain's canonical event bytes (RFC 8785 / JCS of
//! the seven hashed fields) for verification at volume. The normative
//! function is `engine::chain::canonical_event_bytes`; this one writes the
//! same bytes without building a JSON tree per event, and hands anything it
//! is not sure about (floats, integers beyond ±2^53-1) back to it. Tests
//! compare the two on every event they produce and on random JSON.

use std::io::Write;

use engine::chain::{self, CANONICAL_INTEGER_MAX, RecordedEvent};
use serde_json::Value;

/// Writes the canonical bytes of `event` into `out` (cleared first).
pub fn canonical_event_bytes(
    event: &RecordedEvent,
    out: &mut Vec<u8>,
) -> Result<(), chain::ChainFault> {
    out.clear();
    if fast(event, out).is_none() {
        out.clear();
        out.extend(chain::canonical_event_bytes(event)?);
    }
    Ok(())
}

/// `None`: a value this writer leaves to the normative function.
fn fast(event: &RecordedEvent, out: &mut Vec<u8>) -> Option<()> {
    if event.position > CANONICAL_INTEGER_MAX || event.seq > CANONICAL_INTEGER_MAX {
        return None;
    }
    // The seven keys, already in UTF-16 order (all ASCII).
    out.extend_from_slice(b"{\"event_type\":");
    write_string(&event.event_type, out);
    out.extend_from_slice(b",\"payload\":");
    value(&event.payload, out)?;
    write!(out, ",\"position\":{},\"recorded_at\":", event.position).ok()?;
    write_string(&chain::format_recorded_at(event.recorded_at), out);
    write!(
        out,
        ",\"run_id\":\"{}\",\"schema_version\":{},\"seq\":{}}}",
        event.run_id.hyphenated(),
        event.schema_version,
        event.seq
    )
    .ok()
}

fn value(value: &Value, out: &mut Vec<u8>) -> Option<()> {
    match value {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(true) => out.extend_from_slice(b"true"),
        Value::Bool(false) => out.extend_from_slice(b"false"),
        Value::Number(number) => {
            // Integers within ±(2^53-1) print the same in JCS and in Rust.
            let fits = match (number.as_u64(), number.as_i64()) {
                (Some(unsigned), _) => unsigned <= CANONICAL_INTEGER_MAX,
                (None, Some(signed)) => signed.unsigned_abs() <= CANONICAL_INTEGER_MAX,
                (None, None) => false,
            };
            if !fits {
                return None;
            }
            write!(out, "{number}").ok()?;
        }
        Value::String(text) => write_string(text, out),
        Value::Array(items) => {
            out.push(b'[');
            for (n, item) in items.iter().enumerate() {
                if n > 0 {
                    out.push(b',');
                }
                self::value(item, out)?;
            }
            out.push(b']');
        }
        Value::Object(map) => {
            out.push(b'{');
            // serde_json's map iterates in byte order (unless a crate turns
            // on `preserve_order`, hence the check), which is UTF-16 order
            // for ASCII keys: then no sort and no allocation.
            let ascending = map.keys().zip(map.keys().skip(1)).all(|(a, b)| a < b);
            if ascending && map.keys().all(|key| key.is_ascii()) {
                for (n, (key, item)) in map.iter().enumerate() {
                    entry(n, key, item, out)?;
                }
            } else {
                let mut entries: Vec<(&String, &Value)> = map.iter().collect();
                entries.sort_by(|a, b| crate::tape::utf16_order(a.0, b.0));
                for (n, (key, item)) in entries.into_iter().enumerate() {
                    entry(n, key, item, out)?;
                }
            }
            out.push(b'}');
        }
    }
    Some(())
}

fn entry(n: usize, key: &str, item: &Value, out: &mut Vec<u8>) -> Option<()> {
    if n > 0 {
        out.push(b',');
    }
    write_string(key, out);
    out.push(b':');
    value(item, out)
}

/// JCS string escaping: `"`, `\`, `\b \f \n \r \t`, other controls as
/// `\u00xx` (lowercase), everything else as UTF-8.
pub(crate) fn write_string(text: &str, out: &mut Vec<u8>) {
    out.push(b'"');
    let bytes = text.as_bytes();
    let mut start = 0;
    for (index, &byte) in bytes.iter().enumerate() {
        let escape: &[u8] = match byte {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            0x08 => b"\\b",
            0x0c => b"\\f",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0x00..=0x1f => b"",
            _ => continue,
        };
        out.extend_from_slice(&bytes[start..index]);
        if escape.is_empty() {
            const HEX: &[u8; 16] = b"0123456789abcdef";
            out.extend_from_slice(b"\\u00");
            out.push(HEX[usize::from(byte >> 4)]);
            out.push(HEX[usize::from(byte & 0xf)]);
        } else {
            out.extend_from_slice(escape);
        }
        start = index + 1;
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}
