//! A fast writer of RFC 8785 (JCS) text: the same bytes as the normative
//! `serde_json_canonicalizer` (and [`super::canonical_event_bytes`]) without
//! building a JSON tree per event or sorting keys that are already in order.
//! Floats, whose JCS form follows ECMAScript's number printing, are handed to
//! the normative crate one number at a time. The integration tests compare
//! the two byte for byte on fixed tricky values and on random JSON.

use std::cmp::Ordering;
use std::io::Write;

use serde_json::{Number, Value};

use super::{CANONICAL_INTEGER_MAX, ChainFault, RecordedEvent, check_canonical_numbers};

/// The RFC 8785 text of `value`; integers beyond ±(2^53-1) are refused with
/// the error [`check_canonical_numbers`] gives.
pub fn canonical_json(value: &Value) -> Result<String, ChainFault> {
    let mut out = Vec::with_capacity(256);
    write_value(value, &mut out)?;
    String::from_utf8(out).map_err(|error| ChainFault::NotCanonical {
        message: error.to_string(),
    })
}

/// Writes the bytes [`super::canonical_event_bytes`] returns for `event`
/// into `out` (cleared first), taking the payload's part from
/// `canonical_payload`, which must be `canonical_json(&event.payload)`: an
/// append has it already (it is what the store keeps), and JCS writes a
/// nested value exactly as it writes that value alone.
pub fn write_canonical_event(
    event: &RecordedEvent,
    canonical_payload: &str,
    out: &mut Vec<u8>,
) -> Result<(), ChainFault> {
    out.clear();
    check_integer(event.position)?;
    check_integer(event.seq)?;
    // The seven keys, written in UTF-16 order (all ASCII).
    out.extend_from_slice(b"{\"event_type\":");
    write_string(&event.event_type, out);
    out.extend_from_slice(b",\"payload\":");
    out.extend_from_slice(canonical_payload.as_bytes());
    out.extend_from_slice(b",\"position\":");
    write_display(event.position, out);
    out.extend_from_slice(b",\"recorded_at\":\"");
    out.extend_from_slice(super::format_recorded_at(event.recorded_at).as_bytes());
    out.extend_from_slice(b"\",\"run_id\":\"");
    let mut run_id = [0u8; uuid::fmt::Hyphenated::LENGTH];
    out.extend_from_slice(
        event
            .run_id
            .hyphenated()
            .encode_lower(&mut run_id)
            .as_bytes(),
    );
    out.extend_from_slice(b"\",\"schema_version\":");
    write_display(event.schema_version, out);
    out.extend_from_slice(b",\"seq\":");
    write_display(event.seq, out);
    out.push(b'}');
    Ok(())
}

fn check_integer(value: u64) -> Result<(), ChainFault> {
    if value > CANONICAL_INTEGER_MAX {
        return check_canonical_numbers(&Value::from(value));
    }
    Ok(())
}

fn write_display(value: impl std::fmt::Display, out: &mut Vec<u8>) {
    // Writing into a Vec cannot fail.
    let _ = write!(out, "{value}");
}

/// Appends the RFC 8785 text of `value` to `out`.
pub fn write_value(value: &Value, out: &mut Vec<u8>) -> Result<(), ChainFault> {
    match value {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(true) => out.extend_from_slice(b"true"),
        Value::Bool(false) => out.extend_from_slice(b"false"),
        Value::Number(number) => write_number(number, out)?,
        Value::String(text) => write_string(text, out),
        Value::Array(items) => {
            out.push(b'[');
            for (index, item) in items.iter().enumerate() {
                if index > 0 {
                    out.push(b',');
                }
                write_value(item, out)?;
            }
            out.push(b']');
        }
        Value::Object(map) => {
            out.push(b'{');
            // serde_json's map iterates in byte order (unless some crate
            // turns on `preserve_order`, hence the check), which is UTF-16
            // order for ASCII keys: then no sort and no allocation.
            let ascending = map.keys().zip(map.keys().skip(1)).all(|(a, b)| a < b);
            if ascending && map.keys().all(|key| key.is_ascii()) {
                for (index, (key, item)) in map.iter().enumerate() {
                    write_entry(index, key, item, out)?;
                }
            } else {
                let mut entries: Vec<(&String, &Value)> = map.iter().collect();
                entries.sort_by(|a, b| utf16_order(a.0, b.0));
                for (index, (key, item)) in entries.into_iter().enumerate() {
                    write_entry(index, key, item, out)?;
                }
            }
            out.push(b'}');
        }
    }
    Ok(())
}

fn write_entry(index: usize, key: &str, item: &Value, out: &mut Vec<u8>) -> Result<(), ChainFault> {
    if index > 0 {
        out.push(b',');
    }
    write_string(key, out);
    out.push(b':');
    write_value(item, out)
}

fn write_number(number: &Number, out: &mut Vec<u8>) -> Result<(), ChainFault> {
    match (number.as_u64(), number.as_i64()) {
        // Integers within ±(2^53-1) print the same in JCS and in Rust.
        (Some(unsigned), _) if unsigned <= CANONICAL_INTEGER_MAX => write_display(unsigned, out),
        (None, Some(signed)) if signed.unsigned_abs() <= CANONICAL_INTEGER_MAX => {
            write_display(signed, out);
        }
        (Some(_), _) | (None, Some(_)) => {
            return check_canonical_numbers(&Value::Number(number.clone()));
        }
        (None, None) => {
            let text = serde_json_canonicalizer::to_vec(&Value::Number(number.clone())).map_err(
                |error| ChainFault::NotCanonical {
                    message: error.to_string(),
                },
            )?;
            out.extend_from_slice(&text);
        }
    }
    Ok(())
}

/// JCS orders keys by UTF-16 code units; UTF-8 byte order agrees except
/// when characters beyond U+FFFF meet U+E000..U+FFFF.
fn utf16_order(a: &str, b: &str) -> Ordering {
    if a.is_ascii() && b.is_ascii() {
        return a.cmp(b);
    }
    a.encode_utf16().cmp(b.encode_utf16())
}

/// JCS string escaping: `"`, `\`, `\b \f \n \r \t`, other controls as
/// `\u00xx` (lowercase), everything else as UTF-8.
fn write_string(text: &str, out: &mut Vec<u8>) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
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
