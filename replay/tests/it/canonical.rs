//! The writer verify uses (`engine::chain::canonical_event_into`) writes
//! exactly the bytes of the normative `engine::chain::canonical_event_bytes`
//! on every event the test histories and the example workflows produce
//! (tricky fixed values and random JSON are covered in the engine's own
//! tests, `engine/tests/it/store/canonical.rs`).

use chrono::{TimeZone, Utc};
use engine::chain::{self, RecordedEvent};
use serde_json::Value;
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
    let ours = chain::canonical_event_into(event, &mut fast);
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
