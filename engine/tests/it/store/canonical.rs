//! The fast canonical writer (`chain::canonical_json`,
//! `chain::write_canonical_event`, `chain::seal_canonical`) writes exactly the
//! normative bytes: `serde_json_canonicalizer` for payloads and
//! `chain::canonical_event_bytes` for events, on tricky fixed values and on
//! random JSON (control characters, non-BMP keys, floats, big integers).

use chrono::{TimeZone, Utc};
use engine::chain::{self, RecordedEvent};
use proptest::prelude::*;
use serde_json::{Map, Value, json};
use uuid::Uuid;

fn recorded(payload: Value, seq: u64) -> RecordedEvent {
    RecordedEvent {
        run_id: Uuid::from_u128(0x0196_0000_0000_7000_8000_0000_0000_0001),
        seq,
        position: seq.saturating_add(10),
        event_type: "step.\"succeeded\"\n".to_owned(),
        schema_version: 3,
        payload,
        recorded_at: Utc
            .with_ymd_and_hms(2026, 11, 24, 12, 0, 0)
            .single()
            .expect("a time")
            + chrono::Duration::microseconds(123_456),
        prev_hash: chain::GENESIS_HASH.to_owned(),
        hash: String::new(),
        log_hash: String::new(),
    }
}

/// The fast writer agrees with the normative one on `payload` (text or
/// error alike) and, as part of an event, on the hashed bytes and hashes.
fn same_bytes(payload: &Value, seq: u64) -> Result<(), String> {
    let normative = chain::check_canonical_numbers(payload)
        .map_err(|fault| fault.to_string())
        .and_then(|()| {
            serde_json_canonicalizer::to_string(payload).map_err(|error| error.to_string())
        });
    let fast = chain::canonical_json(payload).map_err(|fault| fault.to_string());
    let text = match (normative, fast) {
        (Ok(expected), Ok(text)) if expected == text => text,
        (Err(_), Err(_)) => return Ok(()),
        (expected, fast) => {
            return Err(format!("payload: normative {expected:?} vs fast {fast:?}"));
        }
    };
    let mut event = recorded(payload.clone(), seq);
    let mut bytes = Vec::new();
    let fast = chain::write_canonical_event(&event, &text, &mut bytes).map(|()| bytes);
    match (chain::canonical_event_bytes(&event), fast) {
        (Ok(expected), Ok(bytes)) if expected == bytes => {}
        (Err(_), Err(_)) => return Ok(()),
        (expected, fast) => {
            return Err(format!(
                "event: normative {:?} vs fast {:?}",
                expected.map(String::from_utf8),
                fast.map(String::from_utf8)
            ));
        }
    }
    let mut sealed = event.clone();
    chain::seal(&mut sealed, chain::GENESIS_HASH, chain::GENESIS_HASH)
        .map_err(|f| f.to_string())?;
    chain::seal_canonical(&mut event, &text, chain::GENESIS_HASH, chain::GENESIS_HASH)
        .map_err(|fault| fault.to_string())?;
    if sealed != event {
        return Err(format!("sealed: {sealed:?} vs {event:?}"));
    }
    Ok(())
}

#[test]
fn tricky_values_have_the_normative_bytes() {
    let cases = [
        json!({"tab\t": "a\u{0}b\u{1f}c\u{7f}\"\\/", "é": 1, "z": [1.5, -0.0, 1e21, 1e-7, 100.0]}),
        json!({"tab\t": "a\u{0}b\u{8}\u{c}\n\r\u{1f}c\u{7f}\"\\/", "é": "ü€😀", "Z": -3}),
        json!({"\u{10000}": 1, "\u{e000}": 2, "\u{ffff}": 3, "a": {"b": {"c": []}}}),
        json!({"big": 9007199254740991_u64, "negative": -9007199254740991_i64}),
        json!({"bigger": 9007199254740992_u64}),
        json!({"nested": [[{"x": null, "y": true, "w": false}]], "": ""}),
        json!("just a string \u{2028}"),
        json!(0.1),
        json!([]),
    ];
    for case in &cases {
        same_bytes(case, 1).unwrap_or_else(|error| panic!("{error}"));
    }
}

#[test]
fn seq_and_position_beyond_canonical_integers_are_refused_alike() {
    let event = recorded(json!({}), chain::CANONICAL_INTEGER_MAX + 1);
    let mut bytes = Vec::new();
    let fast = chain::write_canonical_event(&event, "{}", &mut bytes);
    assert_eq!(
        fast.map_err(|fault| fault.to_string()),
        chain::canonical_event_bytes(&event)
            .map(|_| ())
            .map_err(|fault| fault.to_string())
    );
}

fn json_value(floats: bool) -> impl Strategy<Value = Value> {
    let float = any::<f64>()
        .prop_filter("finite", |f| f.is_finite())
        .prop_map(Value::from);
    let float = if floats {
        float.boxed()
    } else {
        Just(Value::Null).boxed()
    };
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        (-1_000_000i64..1_000_000).prop_map(Value::from),
        float,
        any::<String>().prop_map(Value::String),
        "[\\x00-\\x1f\"\\\\a-z\\u{e000}-\\u{ffff}\\u{10000}-\\u{10010}]{0,8}"
            .prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec(
                (
                    "[a-z\\u{e000}-\\u{e002}\\u{10000}-\\u{10002}\\x00-\\x03]{0,4}",
                    inner
                ),
                0..6
            )
            .prop_map(|entries| Value::Object(entries.into_iter().collect::<Map<String, Value>>())),
        ]
    })
}

proptest! {
    #[test]
    fn random_json_has_the_normative_bytes(payload in json_value(true), seq in 1u64..1_000_000) {
        let result = same_bytes(&payload, seq);
        prop_assert!(result.is_ok(), "{:?}", result);
    }

    #[test]
    fn random_json_without_floats_has_the_normative_bytes(payload in json_value(false)) {
        let result = same_bytes(&json!({ "value": payload }), 7);
        prop_assert!(result.is_ok(), "{:?}", result);
    }
}
