//! The hash chain spec (docs/event-log.md) pinned by snapshots, and proof
//! that edits, deletions, reorderings and truncation are detected.

use chrono::{TimeZone, Utc};
use engine::chain::{self, ChainFault, GENESIS_HASH, LogHead, RecordedEvent};
use expect_test::expect;
use serde_json::json;
use uuid::Uuid;

const RUN_A: Uuid = Uuid::from_u128(0x0193_5e1a_7c00_7000_8000_0000_0000_000a);
const RUN_B: Uuid = Uuid::from_u128(0x0193_5e1a_7c00_7000_8000_0000_0000_000b);

fn unsealed(run_id: Uuid, seq: u64, position: u64, payload: serde_json::Value) -> RecordedEvent {
    RecordedEvent {
        run_id,
        seq,
        position,
        event_type: "StepCompleted".to_owned(),
        schema_version: 1,
        payload,
        recorded_at: Utc
            .with_ymd_and_hms(2026, 11, 24, 12, 0, 0)
            .single()
            .expect("time"),
        prev_hash: String::new(),
        hash: String::new(),
        log_hash: String::new(),
    }
}

/// A log of two interleaved runs: A1 B1 A2 B2 A3.
fn sealed_log() -> Vec<RecordedEvent> {
    let order = [(RUN_A, 1), (RUN_B, 1), (RUN_A, 2), (RUN_B, 2), (RUN_A, 3)];
    let mut log: Vec<RecordedEvent> = Vec::new();
    for (index, (run_id, seq)) in order.into_iter().enumerate() {
        let mut event = unsealed(
            run_id,
            seq,
            index as u64 + 1,
            json!({ "n": index, "b": "ü" }),
        );
        let run_prev = log
            .iter()
            .rev()
            .find(|e| e.run_id == run_id)
            .map_or(GENESIS_HASH, |e| e.hash.as_str());
        let log_prev = log.last().map_or(GENESIS_HASH, |e| e.log_hash.as_str());
        chain::seal(&mut event, run_prev, log_prev).expect("seal");
        log.push(event);
    }
    log
}

fn run(log: &[RecordedEvent], run_id: Uuid) -> Vec<RecordedEvent> {
    log.iter()
        .filter(|event| event.run_id == run_id)
        .cloned()
        .collect()
}

#[test]
fn canonical_bytes_and_hashes_follow_the_spec() {
    let event = unsealed(
        RUN_A,
        1,
        1,
        json!({ "z": 1.0, "a": [true, null, "é\n"], "big": 9007199254740991_u64 }),
    );
    let bytes = chain::canonical_event_bytes(&event).expect("canonical");
    expect![[r#"{"event_type":"StepCompleted","payload":{"a":[true,null,"é\n"],"big":9007199254740991,"z":1},"position":1,"recorded_at":"2026-11-24T12:00:00.000000Z","run_id":"01935e1a-7c00-7000-8000-00000000000a","schema_version":1,"seq":1}"#]]
    .assert_eq(&String::from_utf8(bytes).expect("utf-8"));
    let log = sealed_log();
    expect![[r#"
        [
            "5df1126bff2d9da46a508e55ca6d1dfd0c8c754b3e2b8d881310d116822bad98",
            "b00377021417b7681ec15af70f3e4b71d3e63fa243ae1e22a1872b2a26b779cf",
        ]
    "#]]
    .assert_debug_eq(&[&log[0].hash, &log[0].log_hash]);
}

#[test]
fn untouched_chains_verify() {
    let log = sealed_log();
    let head = chain::verify_log(&LogHead::genesis(), &log).expect("log verifies");
    assert_eq!(
        (head.position, head.log_hash.as_str()),
        (5, log[4].log_hash.as_str())
    );
    let a = chain::verify_run(&run(&log, RUN_A)).expect("run A verifies");
    assert_eq!(
        (a.run_id, a.seq, a.hash.as_str()),
        (RUN_A, 3, log[4].hash.as_str())
    );
    // Verifying from a recorded head covers only what follows it.
    let from = LogHead {
        position: 2,
        log_hash: log[1].log_hash.clone(),
    };
    assert_eq!(
        chain::verify_log(&from, &log[2..]).expect("tail verifies"),
        head
    );
    assert_eq!(
        chain::verify_run(&[]).expect("empty run").hash,
        GENESIS_HASH
    );
}

#[test]
fn an_edited_payload_is_detected() {
    let mut log = sealed_log();
    log[2].payload = json!({ "n": 99 });
    let error = chain::verify_run(&run(&log, RUN_A)).expect_err("edit detected");
    assert_eq!((error.run_id, error.seq), (RUN_A, 2));
    assert!(
        matches!(error.what, ChainFault::HashMismatch { .. }),
        "{error}"
    );
    assert!(chain::verify_log(&LogHead::genesis(), &log).is_err());
}

#[test]
fn an_edit_with_rehashed_run_chain_breaks_the_log_chain() {
    let mut log = sealed_log();
    // A forger edits B1 and recomputes run B's chain, but not the log chain.
    log[1].payload = json!({ "forged": true });
    let b1_hash = chain::event_hash(&log[1]).expect("hash");
    log[1].hash = b1_hash.clone();
    log[3].prev_hash = b1_hash;
    log[3].hash = chain::event_hash(&log[3]).expect("hash");
    chain::verify_run(&run(&log, RUN_B)).expect("run B alone looks fine");
    let error = chain::verify_log(&LogHead::genesis(), &log).expect_err("the log chain catches it");
    assert!(
        matches!(error.what, ChainFault::LogHashMismatch { .. }),
        "{error}"
    );
}

#[test]
fn a_deleted_event_is_detected() {
    let log = sealed_log();
    let mut a = run(&log, RUN_A);
    a.remove(1);
    let error = chain::verify_run(&a).expect_err("gap detected");
    assert_eq!(
        error.what,
        ChainFault::SeqGap {
            expected: 2,
            found: 3
        }
    );
    let mut without_run_b = log.clone();
    without_run_b.retain(|event| event.run_id != RUN_B);
    let error =
        chain::verify_log(&LogHead::genesis(), &without_run_b).expect_err("a whole run deleted");
    assert_eq!(
        error.what,
        ChainFault::PositionGap {
            expected: 2,
            found: 3
        }
    );
}

#[test]
fn reordering_and_renumbering_are_detected() {
    let log = sealed_log();
    let mut swapped = run(&log, RUN_A);
    swapped.swap(0, 1);
    assert!(chain::verify_run(&swapped).is_err());
    let mut renumbered = log.clone();
    renumbered[4].position = 6;
    assert!(matches!(
        chain::verify_log(&LogHead::genesis(), &renumbered).map_err(|error| error.what),
        Err(ChainFault::PositionGap { .. })
    ));
    let mut moved = run(&log, RUN_A);
    moved[2].position = 9; // positions are hashed
    assert!(matches!(
        chain::verify_run(&moved).map_err(|error| error.what),
        Err(ChainFault::HashMismatch { .. })
    ));
}

#[test]
fn truncation_shows_against_a_recorded_head() {
    let log = sealed_log();
    let recorded = chain::verify_log(&LogHead::genesis(), &log).expect("full log");
    let truncated = chain::verify_log(&LogHead::genesis(), &log[..3]).expect("a prefix verifies");
    assert_ne!(
        truncated, recorded,
        "an auditor holding the head sees the missing tail"
    );
}

#[test]
fn hashes_must_be_lowercase_hex() {
    let mut event = sealed_log().remove(2);
    event.prev_hash = event.prev_hash.to_uppercase();
    let fault = chain::event_hash(&event).expect_err("uppercase hex is not the canonical spelling");
    assert!(
        matches!(
            fault,
            ChainFault::BadHex {
                field: "prev_hash",
                ..
            }
        ),
        "{fault}"
    );
}
