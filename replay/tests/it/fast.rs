//! The verifier's fast path (`replay::fast`, `replay::tape`,
//! `replay::compiled`) may only ever say "fine" where the normative checks
//! say so too: it takes every line a real export has; its canonical bytes
//! are the normative ones on random JSON; its compiled schemas and formats
//! accept nothing that `jsonschema` rejects.

use chrono::{TimeZone, Utc};
use engine::chain::{self, LogHead, RecordedEvent};
use engine::core::event::Event;
use proptest::prelude::*;
use replay::format::{ChainParams, EventLine, Header, Line};
use replay::schemas::Schemas;
use replay::tape::Tape;
use serde::de::DeserializeSeed;
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::driver::example_runs;
use crate::support::{append_runs, block_on, canned_runs, export_text, sqlite};

/// A correctly hashed event line (seq 1, genesis) with this payload.
fn sealed_line(event_type: &str, payload: Value) -> String {
    let mut event = RecordedEvent {
        run_id: Uuid::from_u128(0x0196_0000_0000_7000_8000_0000_0000_0001),
        seq: 1,
        position: 1,
        event_type: event_type.to_owned(),
        schema_version: 1,
        payload,
        recorded_at: Utc
            .with_ymd_and_hms(2026, 11, 24, 12, 0, 0)
            .single()
            .expect("a time"),
        prev_hash: chain::GENESIS_HASH.to_owned(),
        hash: String::new(),
        log_hash: String::new(),
    };
    event.hash = chain::event_hash(&event).expect("canonical");
    event.log_hash = chain::log_hash(chain::GENESIS_HASH, &event.hash).expect("hex");
    Line::Event(Box::new(EventLine::from_recorded(&event))).to_text()
}

/// An event line whose `hash` covers the canonical fields around
/// `payload` exactly as written here, canonical or not.
fn line_hashed_as_written(payload: &str) -> String {
    let (run_id, recorded_at) = (
        "01960000-0000-7000-8000-000000000001",
        "2026-11-24T12:00:00.000000Z",
    );
    let hashed = format!(
        "{{\"event_type\":\"run.succeeded\",\"payload\":{payload},\"position\":1,\"recorded_at\":\"{recorded_at}\",\"run_id\":\"{run_id}\",\"schema_version\":1,\"seq\":1}}"
    );
    let mut bytes = vec![0u8; 32];
    bytes.extend_from_slice(hashed.as_bytes());
    let hash = hex::encode(Sha256::digest(&bytes));
    let log_hash = chain::log_hash(chain::GENESIS_HASH, &hash).expect("hex");
    format!(
        "{{\"run_id\":\"{run_id}\",\"seq\":1,\"position\":1,\"event_type\":\"run.succeeded\",\"schema_version\":1,\"payload\":{payload},\"recorded_at\":\"{recorded_at}\",\"prev_hash\":\"{}\",\"hash\":\"{hash}\",\"log_hash\":\"{log_hash}\"}}",
        chain::GENESIS_HASH
    )
}

/// The header of a whole-log export.
fn genesis_header() -> String {
    Line::Header(Box::new(Header {
        format: replay::format::FORMAT_NAME.to_owned(),
        format_version: replay::format::FORMAT_VERSION,
        chain: ChainParams::v1(),
        scope: replay::Scope::default(),
        start: LogHead {
            position: 0,
            log_hash: chain::GENESIS_HASH.to_owned(),
        },
        exported_at: Utc::now(),
    }))
    .to_text()
}

fn parse_onto_tape<'a>(text: &'a str, tape: &mut Tape<'a>) -> bool {
    let mut deserializer = serde_json::Deserializer::from_str(text);
    tape.seed().deserialize(&mut deserializer).is_ok() && deserializer.end().is_ok()
}

#[test]
fn the_fast_path_takes_every_line_of_a_real_export() {
    let lines = block_on(async {
        let fixture = sqlite().await;
        let mut runs = canned_runs();
        runs.extend(example_runs());
        append_runs(&fixture, &runs, 2).await;
        export_text(&fixture, replay::Scope::default()).await
    });
    let events: Vec<&str> = lines
        .lines()
        .filter(|line| line.starts_with("{\"run_id\""))
        .collect();
    assert!(events.len() > 100, "{} events", events.len());
    let refused: Vec<&&str> = events
        .iter()
        .filter(|line| !replay::fast::accepts_line(line))
        .collect();
    assert!(refused.is_empty(), "the fast path refuses {refused:#?}");
    assert_eq!(
        Schemas::get().compiled_types(),
        Event::TYPES.len(),
        "every event schema compiles for the fast path"
    );
}

#[test]
fn the_fast_path_refuses_what_it_cannot_vouch_for() {
    let line = sealed_line(
        "run.succeeded",
        json!({"at": "2026-01-01T00:00:00Z", "output": {"b": 1, "a": [true, null, "x\ny"]}}),
    );
    assert!(replay::fast::accepts_line(&line), "{line}");
    // Other valid spellings of the same line are taken too (the generic parse).
    let spaced = line.replace("\"seq\":1", "\"seq\": 1");
    assert!(replay::fast::accepts_line(&spaced), "{spaced}");
    let refused = [
        // Edited payload (hash no longer matches).
        line.replace("x\\ny", "x\\nz"),
        // Same content, keys not in canonical order (still a valid v1 line).
        line.replace(
            "\"a\":[true,null,\"x\\ny\"],\"b\":1",
            "\"b\":1,\"a\":[true,null,\"x\\ny\"]",
        ),
        // A leading zero (not JSON), an escaped field name, a float, an unknown field.
        line.replace("\"seq\":1,", "\"seq\":01,"),
        line.replace("\"seq\":1", "\"s\\u0065q\":1"),
        sealed_line(
            "run.succeeded",
            json!({"at": "2026-01-01T00:00:00Z", "output": 1.5}),
        ),
        line.replacen('{', "{\"extra\":1,", 1),
        // A run id in the simple form, another time spelling.
        line.replace(
            "01960000-0000-7000-8000-000000000001",
            "01960000000070008000000000000001",
        ),
        line.replace("12:00:00.000000Z", "12:00:00.000Z"),
        // Not valid against the schema (`at` is required).
        sealed_line("run.succeeded", json!({"output": 1})),
        sealed_line(
            "run.succeeded",
            json!({"at": "2026-02-30T00:00:00Z", "output": 1}),
        ),
    ];
    for text in refused {
        assert!(!replay::fast::accepts_line(&text), "accepted {text}");
    }
}

#[test]
fn a_payload_is_hashed_where_it_stands_only_when_it_is_canonical() {
    // The canonical spelling, hashed as written: a sound line, taken.
    let canonical = r#"{"at":"2026-01-01T00:00:00Z","output":{"a":[1,-2,"x y"],"b":null}}"#;
    assert!(replay::fast::accepts_line(&line_hashed_as_written(
        canonical
    )));
    // Other spellings of the same value, hashed as written: the normative
    // hash covers the canonical bytes instead, so these are edited events,
    // and hashing the text where it stands must not vouch for them.
    let other_spellings = [
        r#"{"at":"2026-01-01T00:00:00Z", "output":{"a":[1,-2,"x y"],"b":null}}"#,
        r#"{"at":"2026-01-01T00:00:00Z","output":{"a":[1,-2,"x y"],"b":null} }"#,
        r#"{"at":"2026-01-01T00:00:00Z","output":{"a":[1,-2,"x\u0020y"],"b":null}}"#,
        r#"{"at":"2026-01-01T00:00:00Z","output":{"a":[1,-2,"x y"],"b":null},"x":-0}"#,
        r#"{"at":"2026-01-01T00:00:00Z","output":{"a":[1.0,-2,"x y"],"b":null}}"#,
        r#"{"at":"2026-01-01T00:00:00Z","output":{"a":[1e0,-2,"x y"],"b":null}}"#,
        r#"{"at":"2026-01-01T00:00:00Z","output":{"b":null,"a":[1,-2,"x y"]}}"#,
        r#"{"at":"2026\/01\/01","output":null}"#,
    ];
    for payload in other_spellings {
        let line = line_hashed_as_written(payload);
        assert!(!replay::fast::accepts_line(&line), "accepted {line}");
        let verdict = replay::verify_reader(
            format!("{}\n{line}\n", genesis_header()).as_bytes(),
            replay::Options::default(),
        );
        assert!(verdict.is_err(), "verify accepted {line}");
    }
}

/// Payload values: no floats; integers up to ±(2^53-1);
/// strings and keys with escapes and characters beyond the BMP.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        // The store refuses integers beyond ±(2^53-1): no line has them.
        (-(1i64 << 53) + 1..1i64 << 53).prop_map(Value::from),
        any::<i32>().prop_map(Value::from),
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

/// Whether the exporter's key order (bytes) is also the canonical one
/// (UTF-16) everywhere and every integer is within ±(2^53-1): then the
/// fast path must take the line.
fn fast_path_applies(value: &Value) -> bool {
    match value {
        Value::Number(number) => number
            .as_i64()
            .is_some_and(|n| n.unsigned_abs() <= chain::CANONICAL_INTEGER_MAX),
        Value::Array(items) => items.iter().all(fast_path_applies),
        Value::Object(map) => {
            let keys: Vec<&String> = map.keys().collect();
            keys.windows(2).all(|pair| {
                engine::chain::utf16_order(pair[0], pair[1]) == std::cmp::Ordering::Less
            }) && map.values().all(fast_path_applies)
        }
        _ => true,
    }
}

/// Values to put in place of a payload's fields.
fn replacements() -> Vec<Value> {
    vec![
        Value::Null,
        json!(true),
        json!(0),
        json!(-1),
        json!(4_294_967_296_u64),
        json!(""),
        json!("x"),
        json!("2026-01-01T00:00:00Z"),
        json!("2026-01-01T00:00:00.5Z"),
        json!("2026-02-29T00:00:00Z"),
        json!("2028-02-29T23:59:59Z"),
        json!("2026-01-01t00:00:00z"),
        json!("2026-01-01T00:00:60Z"),
        json!("2026-01-01T00:00:00+01:00"),
        json!("01960000-0000-7000-8000-000000000001"),
        json!("01960000-0000-7000-8000-00000000000G"),
        json!([]),
        json!(["a", 1]),
        json!({}),
        json!({"run_id": "01960000-0000-7000-8000-000000000001", "step_key": "k"}),
        json!({"run_id": "nope", "step_key": "k"}),
        json!({"kind": "succeeded"}),
    ]
}

#[test]
fn compiled_schemas_accept_nothing_jsonschema_rejects() {
    let schemas = Schemas::get();
    let (mut agreed, mut unsure) = (0, 0);
    let mut runs = canned_runs();
    runs.extend(example_runs());
    for run in &runs {
        for envelope in &run.events {
            let (event_type, version, payload) = envelope.event.to_payload();
            let mut variants = vec![payload.clone()];
            for key in payload
                .as_object()
                .map(|map| map.keys())
                .into_iter()
                .flatten()
            {
                let mut removed = payload.clone();
                removed.as_object_mut().map(|map| map.remove(key));
                variants.push(removed);
                for replacement in replacements() {
                    let mut replaced = payload.clone();
                    replaced[key.as_str()] = replacement;
                    variants.push(replaced);
                }
            }
            for variant in variants {
                let text = variant.to_string();
                let mut tape = Tape::default();
                assert!(parse_onto_tape(&text, &mut tape), "{text}");
                let fast = schemas.accepts(event_type, version, &tape);
                let normative = schemas.check(event_type, version, &variant).is_ok();
                assert!(
                    !fast || normative,
                    "{event_type}: compiled accepts, jsonschema rejects {text}"
                );
                if fast == normative {
                    agreed += 1;
                } else {
                    unsure += 1;
                }
            }
        }
    }
    // Unsure verdicts only cost time; some are expected (offsets, leap
    // seconds, lowercase `t`), but not many.
    assert!(unsure * 20 < agreed, "{unsure} unsure of {agreed}");
}

fn format_validator(format: &str) -> jsonschema::Validator {
    jsonschema::options()
        .should_validate_formats(true)
        .build(&json!({"type": "string", "format": format}))
        .expect("a format schema")
}

/// Whether `text` is taken by `Tape::parse_canonical`, and if so, that the
/// general parse gives the same tape and the text is its canonical bytes.
fn canonical_parse_agrees(text: &str) -> Result<bool, TestCaseError> {
    let mut fast = Tape::default();
    if fast.parse_canonical(text).is_none() {
        return Ok(false);
    }
    let mut general = Tape::default();
    prop_assert!(
        parse_onto_tape(text, &mut general),
        "general parse refused {}",
        text
    );
    prop_assert_eq!(&fast.nodes, &general.nodes, "{}", text);
    prop_assert!(fast.is_canonical_text(text), "{}", text);
    let mut written = Vec::new();
    fast.write_canonical(0, &mut written);
    prop_assert_eq!(String::from_utf8_lossy(&written), text);
    Ok(true)
}

#[test]
fn the_canonical_parse_takes_only_canonical_spellings() {
    let taken = [
        "0",
        "-9007199254740991",
        "[]",
        "{}",
        "[[],{}]",
        r#"{"a":[1,-2,"x y",true,false,null],"b":{"c":{}}}"#,
        "\"\u{e9}\u{1f600}\"",
    ];
    for text in taken {
        assert!(
            canonical_parse_agrees(text).expect("agrees"),
            "refused {text}"
        );
    }
    let refused = [
        "-0",
        "01",
        "1.0",
        "1e5",
        "9007199254740992",
        " 1",
        "1 ",
        "[1,]",
        "[1 ]",
        "truex",
        "[truex]",
        r#"{"a":1,"a":2}"#,
        r#"{"b":1,"a":2}"#,
        r#"{"a" :1}"#,
        r#""a\"b""#,
        r#""a\u0020b""#,
        "\"a\u{1}b\"",
        "[1",
        r#"{"a":1"#,
        "",
    ];
    for text in refused {
        assert!(
            !canonical_parse_agrees(text).expect("agrees"),
            "took {text:?}"
        );
    }
}

proptest! {
    #[test]
    fn the_canonical_parse_agrees_with_the_general_one(
        output in json_value(),
        at in any::<prop::sample::Index>(),
        byte in prop::sample::select(b" ,:[]{}\"\\0-1.e".to_vec()),
    ) {
        let compact = output.to_string();
        let mut general = Tape::default();
        // serde_json orders keys by bytes: where UTF-16 orders them
        // otherwise, the tape refuses the text and there is no canonical
        // spelling to make from it here.
        let canonical = if parse_onto_tape(&compact, &mut general) {
            let mut canonical = Vec::new();
            general.write_canonical(0, &mut canonical);
            String::from_utf8(canonical).expect("UTF-8")
        } else {
            prop_assert!(!fast_path_applies(&output));
            compact.clone()
        };
        // The canonical spelling is taken whenever the tape can hold it
        // and no string needs an escape.
        let taken = canonical_parse_agrees(&canonical)?;
        prop_assert!(taken || !fast_path_applies(&output) || canonical.contains('\\'), "refused {}", canonical);
        // Other spellings and damaged copies: taken only if sound.
        let mut damaged = canonical.clone().into_bytes();
        if !damaged.is_empty() {
            let at = at.index(damaged.len());
            damaged[at] = byte;
        }
        let damaged = String::from_utf8(damaged).unwrap_or_default();
        let pretty = serde_json::to_string_pretty(&output).unwrap_or_default();
        for text in [compact, pretty, damaged] {
            canonical_parse_agrees(&text)?;
        }
    }

    #[test]
    fn tape_canonical_bytes_are_the_normative_ones(output in json_value()) {
        let applies = fast_path_applies(&output);
        let line = sealed_line("run.succeeded", json!({"at": "2026-01-01T00:00:00Z", "output": output}));
        let accepted = replay::fast::accepts_line(&line);
        // A text the tape calls canonical is its canonical bytes.
        for text in [output.to_string(), serde_json::to_string_pretty(&output).unwrap_or_default()] {
            let mut tape = Tape::default();
            if parse_onto_tape(&text, &mut tape) && tape.is_canonical_text(&text) {
                let mut written = Vec::new();
                tape.write_canonical(0, &mut written);
                prop_assert_eq!(String::from_utf8_lossy(&written), text.as_str());
            }
        }
        // Accepted means the fast canonical bytes hash to the normative hash.
        prop_assert!(accepted || !applies, "refused {}", line);
    }

    #[test]
    fn date_times_the_fast_path_accepts_are_rfc3339(
        text in "[0-9]{4}-[0-1][0-9]-[0-3][0-9][Tt ][0-2][0-9]:[0-6][0-9]:[0-6][0-9](\\.[0-9]{0,7})?(Z|z|[+-][0-2][0-9]:[0-6][0-9])?"
    ) {
        if replay::compiled::is_date_time(&text) {
            prop_assert!(format_validator("date-time").is_valid(&json!(text)), "{}", text);
        }
    }

    #[test]
    fn uuids_the_fast_path_accepts_are_uuids(text in "[0-9a-f]{8}-[0-9a-fA-F]{4}-[0-9a-f]{4}-[0-9a-f-]{4}-[0-9a-fg]{11,13}") {
        if replay::compiled::is_uuid(&text) {
            prop_assert!(format_validator("uuid").is_valid(&json!(text)), "{}", text);
        }
    }
}

/// `run.started` names what fired as a tagged `oneOf`; the compiled check
/// reads it as `anyOf` (the `kind` constants cannot match together) and must
/// still agree with `jsonschema` on every kind and on broken ones.
#[test]
fn compiled_trigger_contexts_agree_with_jsonschema() {
    let schemas = Schemas::get();
    let started = |trigger: Value| {
        json!({
            "at": "2026-01-01T00:00:00Z", "workflow": "w", "version": "sha256:v",
            "input": {}, "steps": ["a"], "idempotency_key": null, "parent": null,
            "deadline": null, "trigger": trigger,
        })
    };
    let cases = [
        (
            json!({"kind": "cron", "trigger": "cron", "scheduled_at": "2027-03-28T01:30:00Z"}),
            true,
        ),
        (
            json!({"kind": "webhook", "trigger": "github", "delivery": "d-1"}),
            true,
        ),
        (json!({"kind": "webhook", "trigger": "github"}), true),
        (
            json!({"kind": "kafka", "trigger": "kafka", "topic": "orders", "partition": 2, "offset": 41}),
            true,
        ),
        (json!({"kind": "cron", "trigger": "cron"}), false),
        (json!({"kind": "ftp", "trigger": "x"}), false),
        (
            json!({"kind": "kafka", "trigger": "kafka", "topic": "orders", "partition": "2", "offset": 41}),
            false,
        ),
    ];
    for (trigger, valid) in cases {
        let payload = started(trigger);
        let text = payload.to_string();
        let mut tape = Tape::default();
        assert!(parse_onto_tape(&text, &mut tape), "{text}");
        let normative = schemas.check("run.started", 1, &payload).is_ok();
        assert_eq!(normative, valid, "jsonschema on {text}");
        assert_eq!(
            schemas.accepts("run.started", 1, &tape),
            valid,
            "compiled on {text}"
        );
    }
}
