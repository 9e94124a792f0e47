//! The worked example of `docs/export-format.md`: a one-step run exported
//! from a real store at fixed times. The test pins the file and the
//! canonical bytes, and fails when the document no longer shows them.

use engine::chain;
use engine::core::workflow::StepKind;
use engine::core::{Host, RunState, settle, start_run};
use expect_test::expect;
use replay::format::{LINE_BYTES_MAX, Line};
use replay::{Options, Scope, verify_reader};
use serde_json::json;
use sha2::{Digest, Sha256};
use testkit::histories::{step, t0, workflow};

use crate::support::{RunLog, append_runs, block_on, export_text, run_id, sqlite};

/// `hello`: one `noop` step `greet` with `with: {text: hi}`, run at t0.
fn hello_run() -> RunLog {
    let flow = workflow(
        "hello",
        vec![step("greet", StepKind::Noop).with(json!({"text": "hi"}))],
    );
    let (started, _) = start_run(
        &flow,
        "sha256:example",
        run_id(1),
        engine::core::run::Start::with_input(json!({})),
        t0(),
    );
    let mut state = RunState::new();
    state.apply(&started).expect("run.started applies");
    let settled = settle(&flow, &mut state, t0(), Host::none()).expect("settle");
    let mut events = vec![started];
    events.extend(settled.events);
    RunLog {
        events,
        live: state,
    }
}

fn example_export() -> String {
    block_on(async {
        let fixture = sqlite().await;
        append_runs(&fixture, &[hello_run()], 1).await;
        export_text(&fixture, Scope::default()).await
    })
}

fn doc() -> String {
    let path = format!("{}/../docs/export-format.md", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(path).expect("docs/export-format.md")
}

#[test]
fn the_worked_example_is_what_the_code_writes() {
    let export = example_export();
    expect![[r#"
        {"header":{"chain":{"canonicalization":"rfc8785","event_fields":["event_type","payload","position","recorded_at","run_id","schema_version","seq"],"event_hash":"sha256(unhex(prev_hash) || jcs(event_fields))","genesis":"0000000000000000000000000000000000000000000000000000000000000000","hash":"sha-256","log_hash":"sha256(unhex(prev_log_hash) || unhex(hash))","recorded_at":"rfc3339, UTC, 6 fractional digits, Z"},"exported_at":"2026-11-24T12:00:00Z","format":"imx-event-log","format_version":1,"scope":{"run":null,"since":0},"start":{"log_hash":"0000000000000000000000000000000000000000000000000000000000000000","position":0}}}
        {"run_id":"01960000-0000-7000-8000-000000000001","seq":1,"position":1,"event_type":"run.started","schema_version":1,"payload":{"at":"2026-01-01T00:00:00Z","deadline":null,"idempotency_key":null,"input":{},"parent":null,"steps":["greet"],"version":"sha256:example","workflow":"hello"},"recorded_at":"2026-11-24T12:00:00.000000Z","prev_hash":"0000000000000000000000000000000000000000000000000000000000000000","hash":"487f9f40d10794a17aa6850873cde6788b19ef77f4ba7f6d0c9cb631afa55eb0","log_hash":"84cc9277ffc34f676c4a6e43fb9fd364cb845e6c97f784a06f4bed91825b0a37"}
        {"run_id":"01960000-0000-7000-8000-000000000001","seq":2,"position":2,"event_type":"step.scheduled","schema_version":1,"payload":{"at":"2026-01-01T00:00:00Z","attempt":1,"deadline":null,"idempotency_key":"01960000-0000-7000-8000-000000000001/greet","index":null,"input":{"text":"hi"},"max_attempts":1,"step":"greet"},"recorded_at":"2026-11-24T12:00:00.001000Z","prev_hash":"487f9f40d10794a17aa6850873cde6788b19ef77f4ba7f6d0c9cb631afa55eb0","hash":"aa36813d0951e6621ff2d33f4f7291f50f441c5c85bd9caa8409e3bab16a3f8d","log_hash":"7c44e0bf03dab4d4a402e3e0a7fc2062a0f5eea3b90453a1fa99cc2c316d107f"}
        {"run_id":"01960000-0000-7000-8000-000000000001","seq":3,"position":3,"event_type":"step.succeeded","schema_version":1,"payload":{"at":"2026-01-01T00:00:00Z","attempt":1,"index":null,"output":{"text":"hi"},"step":"greet"},"recorded_at":"2026-11-24T12:00:00.002000Z","prev_hash":"aa36813d0951e6621ff2d33f4f7291f50f441c5c85bd9caa8409e3bab16a3f8d","hash":"73ab055748cc48c975b4d3f0fb5fe96b67519caf4bc199023809523ee300740a","log_hash":"7cdc86aaf4b5dab62edbd3aceebf89606ae071fa4ac9627e5bce1b815752d062"}
        {"run_id":"01960000-0000-7000-8000-000000000001","seq":4,"position":4,"event_type":"run.succeeded","schema_version":1,"payload":{"at":"2026-01-01T00:00:00Z","output":null},"recorded_at":"2026-11-24T12:00:00.003000Z","prev_hash":"73ab055748cc48c975b4d3f0fb5fe96b67519caf4bc199023809523ee300740a","hash":"3f33a5298041758610b7d1ca3d18e8a81d610bed60649d397bf232ba706dda91","log_hash":"f7c287c8b82cc5583c90f7e2e60e82192aa313fcf785890c2b54fd4204bd3f40"}
        {"trailer":{"events":4,"head":"f7c287c8b82cc5583c90f7e2e60e82192aa313fcf785890c2b54fd4204bd3f40","position":4}}
    "#]].assert_eq(&export);
    assert!(export.lines().all(|line| line.len() < LINE_BYTES_MAX));
    let summary =
        verify_reader(export.as_bytes(), Options::default()).expect("the example verifies");
    assert_eq!(summary.events, 4);
    assert!(
        doc().contains(&export),
        "docs/export-format.md must show the export above verbatim"
    );
}

#[test]
fn the_worked_example_shows_the_real_canonical_bytes_and_hashes() {
    let export = example_export();
    let first = export.lines().nth(1).expect("the first event");
    let Ok(Line::Event(event)) = Line::parse(first) else {
        panic!("not an event: {first}")
    };
    let recorded = event.into_recorded().expect("canonical time");
    let canonical = String::from_utf8(chain::canonical_event_bytes(&recorded).expect("canonical"))
        .expect("UTF-8");
    let hash = chain::event_hash(&recorded).expect("hash");
    // The recipe of the document, with nothing but SHA-256 and hex.
    let mut hasher = Sha256::new();
    hasher.update(hex::decode(&recorded.prev_hash).expect("hex"));
    hasher.update(canonical.as_bytes());
    assert_eq!(hex::encode(hasher.finalize()), hash);
    let log_hash = chain::log_hash(chain::GENESIS_HASH, &hash).expect("log hash");
    let text = format!("canonical: {canonical}\nhash: {hash}\nlog_hash: {log_hash}\n");
    expect![[r#"
        canonical: {"event_type":"run.started","payload":{"at":"2026-01-01T00:00:00Z","deadline":null,"idempotency_key":null,"input":{},"parent":null,"steps":["greet"],"version":"sha256:example","workflow":"hello"},"position":1,"recorded_at":"2026-11-24T12:00:00.000000Z","run_id":"01960000-0000-7000-8000-000000000001","schema_version":1,"seq":1}
        hash: 487f9f40d10794a17aa6850873cde6788b19ef77f4ba7f6d0c9cb631afa55eb0
        log_hash: 84cc9277ffc34f676c4a6e43fb9fd364cb845e6c97f784a06f4bed91825b0a37
    "#]].assert_eq(&text);
    let doc = doc();
    for piece in [&canonical, &hash, &log_hash] {
        assert!(
            doc.contains(piece.as_str()),
            "docs/export-format.md must show {piece}"
        );
    }
}
