//! The fast canonical writer writes exactly the bytes of the normative
//! `engine::chain::canonical_event_bytes`: on every event the test
//! histories produce, and on random JSON (control characters, non-BMP
//! keys, floats, big integers).

use chrono::{TimeZone, Utc};
use engine::chain::{self, RecordedEvent};
use proptest::prelude::*;
use serde_json::{Map, Value, json};
use uuid::Uuid;

use crate::driver::example_runs;
use crate::support::canned_runs;

fn recorded(payload: Value, seq: u64) -> RecordedEvent {
    RecordedEvent {
        run_id: Uuid::from_u128(0x0196_0000_0000_7000_8000_0000_0000_0001),
        seq,
        position: seq + 10,
        event_type: "step.succeeded".to_owned(),
        schema_version: 1,
        payload,
        recorded_at: Utc
            .with_ymd_and_hms(2026, 11, 24, 12, 0, 0)
            .single()
            .expect("a time"),
        prev_hash: chain::GENESIS_HASH.to_owned(),
        hash: String::new(),
        log_hash: String::new(),
    }
}

fn same_bytes(event: &RecordedEvent) -> Result<(), String> {
    let mut fast = Vec::new();
    let normative = chain::canonical_event_bytes(event);
    let ours = replay::canonical::canonical_event_bytes(event, &mut fast);
    match (normative, ours) {
        (Ok(expected), Ok(())) if expected == fast => Ok(()),
        (Err(_), Err(_)) => Ok(()),
        (expected, ours) => Err(format!(
            "normative {:?} vs fast {:?} ({ours:?})",
            expected.map(String::from_utf8),
            String::from_utf8(fast)
        )),
    }
}

#[test]
fn every_event_of_the_test_histories_has_the_normative_bytes() {
    let mut runs = canned_runs();
    runs.extend(example_runs());
    for run in &runs {
        for event in &run.events {
            let (_, _, payload) = event.event.to_payload();
            same_bytes(&recorded(payload, event.seq)).unwrap_or_else(|error| panic!("{error}"));
        }
    }
}

#[test]
fn tricky_values_have_the_normative_bytes() {
    let cases = [
        json!({"tab\t": "a\u{0}b\u{1f}c\u{7f}\"\\/", "é": 1, "z": [1.5, -0.0, 1e21, 1e-7, 100.0]}),
        // Without floats, so that the fast path itself writes the escapes.
        json!({"tab\t": "a\u{0}b\u{8}\u{c}\n\r\u{1f}c\u{7f}\"\\/", "é": "ü€😀", "Z": -3}),
        json!({"\u{10000}": 1, "\u{e000}": 2, "\u{ffff}": 3, "a": {"b": {"c": []}}}),
        json!({"big": 9007199254740991_u64, "bigger": 9007199254740992_u64, "negative": -9007199254740991_i64}),
        json!({"nested": [[{"x": null, "y": true, "w": false}]], "": ""}),
    ];
    for case in cases {
        same_bytes(&recorded(case, 1)).unwrap_or_else(|error| panic!("{error}"));
    }
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
        let event = recorded(json!({"value": payload}), seq);
        prop_assert!(same_bytes(&event).is_ok(), "{:?}", same_bytes(&event));
    }

    #[test]
    fn random_json_without_floats_has_the_normative_bytes(payload in json_value(false)) {
        let event = recorded(json!({"value": payload}), 7);
        prop_assert!(same_bytes(&event).is_ok(), "{:?}", same_bytes(&event));
    }
}
