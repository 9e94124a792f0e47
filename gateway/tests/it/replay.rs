//! `imx replay …` through the real binary on a real SQLite store: export,
//! verify (file and store), a tampered file, inspect, check.

use chrono::{TimeZone, Utc};
use engine::core::event::EventEnvelope;
use engine::core::version::version_of;
use engine::store::prelude::*;
use engine::store::{AppendRequest, NewEvent, ProjectionUpdate, RunRow, Store};
use expect_test::expect;
use serde_json::json;
use testkit::histories;
use uuid::Uuid;

use crate::imx;

const RUN: Uuid = Uuid::from_u128(0x0196_0000_0000_7000_8000_0000_0000_0042);

/// Appends `events` as one run (with its `runs` row) to the store at `url`.
pub(crate) fn append(url: &str, events: &[EventEnvelope]) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    runtime.block_on(async {
        let store = Store::connect(url, Default::default())
            .await
            .expect("open the store");
        let state = engine::core::replay(events).expect("the history folds");
        let run_id = events[0].run_id;
        let new_events = events
            .iter()
            .map(|event| {
                let (event_type, schema_version, payload) = event.event.to_payload();
                NewEvent {
                    event_type: event_type.to_owned(),
                    schema_version,
                    payload,
                }
            })
            .collect();
        let mut request = AppendRequest::new(run_id, 0, new_events);
        let at = Utc
            .with_ymd_and_hms(2026, 1, 1, 0, 0, 0)
            .single()
            .expect("a time");
        let row = RunRow {
            run_id,
            workflow: state.workflow.clone(),
            version: state.version.clone(),
            status: state.status.as_str().to_owned(),
            input: state.input.clone(),
            output: state.output.clone(),
            error: state.failure.clone(),
            parent_run_id: None,
            forked_from: None,
            idempotency_key: None,
            created_at: at,
            updated_at: at,
        };
        request.projection = ProjectionUpdate {
            run: Some(row),
            steps: Vec::new(),
        };
        store.append(request).await.expect("append");
    });
}

fn with_run(events: Vec<EventEnvelope>) -> Vec<EventEnvelope> {
    events
        .into_iter()
        .map(|event| EventEnvelope {
            run_id: RUN,
            ..event
        })
        .collect()
}

#[test]
fn export_verify_tamper_and_inspect_through_the_binary() {
    let folder = tempfile::tempdir().expect("a temp folder");
    let url = format!("sqlite://{}/imx.db", folder.path().display());
    append(&url, &with_run(histories::retry_then_ok().settled().events));

    let export = imx(&["replay", "export", "--database-url", &url]);
    assert_eq!(export.code, 0, "{}", export.stderr);
    let head = export
        .stderr
        .lines()
        .nth(1)
        .expect("the head on stderr")
        .to_owned();
    let file = folder.path().join("export.jsonl");
    std::fs::write(&file, &export.stdout).expect("write the export");
    let file = file.to_str().expect("a UTF-8 path");

    let verified = imx(&["replay", "verify", file, "--expect-head", &head]);
    assert_eq!(
        (verified.code, verified.stdout.lines().next()),
        (0, Some("ok: 12 events in 1 runs verified")),
        "{}",
        verified.stderr
    );
    let online = imx(&["replay", "verify", "--database-url", &url]);
    assert_eq!(online.code, 0, "{}", online.stderr);
    assert!(
        online.stdout.contains(&head),
        "the store's head is the export's"
    );

    let tampered = export
        .stdout
        .replace("connection reset", "connection rested");
    let tampered_file = folder.path().join("tampered.jsonl");
    std::fs::write(&tampered_file, tampered).expect("write");
    let broken = imx(&["replay", "verify", tampered_file.to_str().expect("UTF-8")]);
    assert_eq!(broken.code, 1);
    assert!(
        broken.stderr.starts_with(&format!(
            "verify failed: IMX0510: run {RUN} seq 4 (position 4) at line 5: hash "
        )),
        "{}",
        broken.stderr
    );

    let inspect = imx(&[
        "replay",
        "inspect",
        &RUN.to_string(),
        "--at",
        "6",
        "--database-url",
        &url,
    ]);
    assert_eq!(inspect.code, 0, "{}", inspect.stderr);
    expect![[r#"
        run 01960000-0000-7000-8000-000000000042 of retry (sha256:test)
        as of seq 6: running

        steps:
          fetch                running    attempts 1
          report               pending    attempts 0

          seq  at                           event                  step                  attempt  note
            1  2026-01-01T00:00:00.000000Z  run.started
            2  2026-01-01T00:00:00.000000Z  step.scheduled         fetch                       1
            3  2026-01-01T00:00:00.000000Z  step.started           fetch                       1  queued 0ms
            4  2026-01-01T00:00:00.200000Z  step.failed            fetch                       1  ran 200ms
            5  2026-01-01T00:00:00.200000Z  step.retry_scheduled   fetch                       2  retry in 1.0s
            6  2026-01-01T00:00:01.200000Z  timer.fired
    "#]]
    .assert_eq(&inspect.stdout);
    let from_file = imx(&[
        "replay",
        "inspect",
        &RUN.to_string(),
        "--file",
        file,
        "--json",
    ]);
    let document: serde_json::Value = serde_json::from_str(&from_file.stdout).expect("JSON");
    assert_eq!(document["document"]["status"], "succeeded");
    assert_eq!(document["seq"], 12);
}

#[test]
fn check_names_the_runs_a_new_version_cannot_take_over() {
    let folder = tempfile::tempdir().expect("a temp folder");
    let url = format!("sqlite://{}/imx.db", folder.path().display());
    let old_yaml = "name: orders\nsteps:\n  fetch:\n    uses: http\n    with: { method: GET, url: \"https://shop.example\" }\n  report:\n    needs: [fetch]\n    uses: noop\n";
    let new_yaml = old_yaml.replace("fetch", "load");
    let old = engine::core::dsl::parse(old_yaml)
        .workflow
        .expect("the old version parses");
    let (started, _) = engine::core::start_run(
        &old,
        &version_of(&old),
        RUN,
        engine::core::run::Start::with_input(json!({})),
        histories::t0(),
    );
    let mut state = engine::core::RunState::new();
    state.apply(&started).expect("apply");
    let settled = engine::core::settle(
        &old,
        &mut state,
        histories::t0(),
        engine::core::Host::none(),
    )
    .expect("settle");
    let mut events = vec![started];
    events.extend(settled.events);
    append(&url, &events);
    let (old_path, new_path) = (
        folder.path().join("old.yaml"),
        folder.path().join("new.yaml"),
    );
    std::fs::write(&old_path, old_yaml).expect("write");
    std::fs::write(&new_path, &new_yaml).expect("write");
    let (old_path, new_path) = (
        old_path.to_str().expect("UTF-8"),
        new_path.to_str().expect("UTF-8"),
    );

    let check = imx(&[
        "replay",
        "check",
        new_path,
        "--old",
        old_path,
        "--database-url",
        &url,
    ]);
    assert_eq!(check.code, 1, "{}", check.stderr);
    let report = check.stdout.replace(&version_of(&old), "OLD").replace(
        &version_of(
            &engine::core::dsl::parse(&new_yaml)
                .workflow
                .expect("parses"),
        ),
        "NEW",
    );
    expect![[r#"
        workflow orders, new version NEW
        1 run(s) in flight on other versions, 1 affected

        run 01960000-0000-7000-8000-000000000042 (OLD, running at seq 2): CANNOT take over
          - step `fetch` is running but the new version has no step `fetch` (removed or renamed): its result would have nowhere to go
    "#]]
    .assert_eq(&report);
    // `imx run` registers the version: check needs no --old any more.
    let started = imx(&["run", old_path, "--database-url", &url]);
    assert_eq!(started.code, 0, "{}", started.stderr);
    let run_id = started.stdout.trim().to_owned();
    let registered = imx(&["replay", "check", new_path, "--database-url", &url]);
    assert_eq!(registered.code, 1, "{}", registered.stderr);
    assert!(
        registered
            .stdout
            .contains("2 run(s) in flight on other versions, 2 affected"),
        "{}",
        registered.stdout
    );
    assert!(
        registered.stdout.contains(&format!("run {run_id} (")),
        "{}",
        registered.stdout
    );
    assert!(
        !registered.stdout.contains("not in the registry"),
        "{}",
        registered.stdout
    );
    let same = imx(&["replay", "check", old_path, "--database-url", &url]);
    assert_eq!(
        (same.code, same.stdout.lines().nth(1)),
        (0, Some("no run in flight on another version: safe"))
    );
}

/// Replaces every run of 64 hex digits (hashes differ with the store's clock).
fn mask_hashes(text: &str) -> String {
    let mut out = String::new();
    let mut run = String::new();
    for c in text.chars().chain(std::iter::once(' ')) {
        if c.is_ascii_hexdigit() {
            run.push(c);
            continue;
        }
        out.push_str(if run.len() == 64 { "HASH" } else { &run });
        run.clear();
        out.push(c);
    }
    out.pop();
    out
}

#[test]
fn every_verify_finding_and_replay_error_prints_its_code_and_a_hint() {
    let folder = tempfile::tempdir().expect("a temp folder");
    let url = format!("sqlite://{}/imx.db", folder.path().display());
    append(&url, &with_run(histories::retry_then_ok().settled().events));
    let export = imx(&["replay", "export", "--database-url", &url]);
    assert_eq!(export.code, 0, "{}", export.stderr);
    let lines: Vec<&str> = export.stdout.lines().collect();
    let without = |skip: usize| {
        let kept: Vec<&str> = (0..lines.len())
            .filter(|n| *n != skip)
            .map(|n| lines[n])
            .collect();
        kept.join("\n") + "\n"
    };
    let mut duplicated = lines.clone();
    duplicated.insert(5, lines[4]);
    let mut garbage = lines.clone();
    garbage[3] = "{\"run_id\": 42}";
    let files = [
        (
            "edited",
            export
                .stdout
                .replace("connection reset", "connection rested"),
        ),
        ("deleted", without(4)),
        ("duplicated", duplicated.join("\n") + "\n"),
        ("malformed", garbage.join("\n") + "\n"),
        ("no header", without(0)),
        ("no trailer", without(lines.len() - 1)),
    ];
    let mut report = String::new();
    for (name, text) in files {
        let path = folder.path().join(format!("{name}.jsonl"));
        std::fs::write(&path, text).expect("write");
        let verified = imx(&["replay", "verify", path.to_str().expect("UTF-8")]);
        report.push_str(&format!(
            "{name} (exit {}):\n{}",
            verified.code, verified.stderr
        ));
    }
    let file = folder.path().join("export.jsonl");
    std::fs::write(&file, &export.stdout).expect("write");
    let file = file.to_str().expect("UTF-8");
    let wrong_head = "a".repeat(64);
    let head = imx(&["replay", "verify", file, "--expect-head", &wrong_head]);
    report.push_str(&format!("head (exit {}):\n{}", head.code, head.stderr));
    let run = RUN.to_string();
    let unknown = Uuid::from_u128(7).to_string();
    for (name, args) in [
        (
            "inspect --at",
            vec!["replay", "inspect", &run, "--at", "99", "--file", file],
        ),
        (
            "inspect unknown run",
            vec!["replay", "inspect", &unknown, "--file", file],
        ),
        (
            "export --since",
            vec!["replay", "export", "--since", "99", "--database-url", &url],
        ),
    ] {
        let failed = imx(&args);
        report.push_str(&format!(
            "{name} (exit {}):\n{}",
            failed.code, failed.stderr
        ));
    }
    expect![[r#"
        edited (exit 1):
        verify failed: IMX0510: run 01960000-0000-7000-8000-000000000042 seq 4 (position 4) at line 5: hash HASH does not match the recomputed HASH: the event was edited (payload or metadata)
          hint: the history was changed at this event: compare it with the store (`imx replay inspect RUN --at SEQ`) or an earlier export; do not trust anything after this line
        deleted (exit 1):
        verify failed: IMX0503: run 01960000-0000-7000-8000-000000000042 seq 5 (position 5) at line 5: seq 5 where 4 was expected: event seq 4 was deleted, or events were reordered
          hint: events were removed, added or moved at this place: compare with the store (`imx replay verify`) or an earlier export; do not trust anything after this line
        duplicated (exit 1):
        verify failed: IMX0504: run 01960000-0000-7000-8000-000000000042 seq 4 (position 4) at line 6: seq 4 appears a second time: the event was duplicated
          hint: events were removed, added or moved at this place: compare with the store (`imx replay verify`) or an earlier export; do not trust anything after this line
        malformed (exit 1):
        verify failed: IMX0501: history at line 4: line 4 is not a valid line of the export format: invalid type: integer `42`, expected a formatted UUID string at line 1 column 13
          hint: the file is not an export as `imx replay export` writes it: export again, or check how the file was copied (line endings, encoding, truncation)
        no header (exit 1):
        verify failed: IMX0502: history at line 1: the file does not start with an `imx-event-log` v1 header: the first line is not a header
          hint: the file is not an export as `imx replay export` writes it: export again, or check how the file was copied (line endings, encoding, truncation)
        no trailer (exit 1):
        verify failed: IMX0517: run 01960000-0000-7000-8000-000000000042 seq 12 (position 12): the file ends without a trailer: it was truncated
          hint: the end of the file is not the end of the export: the file was cut or extended; export again, and verify with the head kept at export time
        head (exit 1):
        verify failed: IMX0520: run 01960000-0000-7000-8000-000000000042 seq 12 (position 12): the history ends with head HASH, expected HASH: the tail was truncated or rewritten
          hint: the history does not end where the head kept at export time says: its tail was cut or rewritten; check the head you passed to --expect-head
        inspect --at (exit 1):
        error: IMX0535: run 01960000-0000-7000-8000-000000000042: --at 99 is beyond the run's last seq 12; pass a seq from 1 to 12
        inspect unknown run (exit 1):
        error: IMX0531: run 00000000-0000-0000-0000-000000000007 has no events in this history; list runs with `imx runs` (or check the file's scope)
        export --since (exit 1):
        error: IMX0532: --since 99 is beyond the log's last position 12; pass a position the log has reached (the `position` of an earlier export's trailer)
    "#]]
    .assert_eq(&mask_hashes(&report));

    let json = imx(&[
        "replay",
        "verify",
        file,
        "--expect-head",
        &wrong_head,
        "--json",
    ]);
    let document: serde_json::Value = serde_json::from_str(&json.stdout).expect("JSON");
    assert_eq!(
        (
            &document["problem"]["code"],
            &document["problem"]["fault"]["kind"]
        ),
        (&json!("IMX0520"), &json!("head_mismatch"))
    );
}

#[test]
fn expect_position_hash_checks_a_since_export_through_the_binary() {
    let folder = tempfile::tempdir().expect("a temp folder");
    let url = format!("sqlite://{}/imx.db", folder.path().display());
    append(&url, &with_run(histories::retry_then_ok().settled().events));
    let whole = imx(&["replay", "export", "--database-url", &url]);
    assert_eq!(whole.code, 0, "{}", whole.stderr);
    let at_five: serde_json::Value = serde_json::from_str(
        whole
            .stdout
            .lines()
            .nth(5)
            .expect("the event at position 5"),
    )
    .expect("JSON");
    let log_hash = at_five["log_hash"].as_str().expect("a log hash").to_owned();
    let since = imx(&["replay", "export", "--since", "5", "--database-url", &url]);
    let file = folder.path().join("since.jsonl");
    std::fs::write(&file, &since.stdout).expect("write the export");
    let file = file.to_str().expect("a UTF-8 path");
    let ok = imx(&[
        "replay",
        "verify",
        file,
        "--expect",
        &format!("5:{log_hash}"),
        "--expect",
        &format!("1:{log_hash}"),
    ]);
    assert_eq!(ok.code, 0, "{}", ok.stderr);
    assert!(
        ok.stdout.contains("expect: position 5 matches"),
        "{}",
        ok.stdout
    );
    assert!(ok.stdout.contains("note: --expect 1:…"), "{}", ok.stdout);
    let wrong = format!("5:{}", "ab".repeat(32));
    let refused = imx(&["replay", "verify", file, "--expect", &wrong]);
    assert_eq!(refused.code, 1);
    assert!(
        refused
            .stderr
            .starts_with("verify failed: IMX0521: history (position 5) at line 1: "),
        "{}",
        refused.stderr
    );
    let bad = imx(&["replay", "verify", file, "--expect", "5"]);
    assert_eq!(
        bad.code, 2,
        "clap refuses a malformed --expect: {}",
        bad.stderr
    );
}

#[test]
fn prove_and_verify_proof_through_the_binary() {
    let folder = tempfile::tempdir().expect("a temp folder");
    let url = format!("sqlite://{}/imx.db", folder.path().display());
    append(&url, &with_run(histories::retry_then_ok().settled().events));
    let write = |name: &str, text: &str| {
        let path = folder.path().join(name);
        std::fs::write(&path, text).expect("write");
        path.to_str().expect("UTF-8").to_owned()
    };
    let inclusion = imx(&[
        "replay",
        "prove",
        "--run",
        &RUN.to_string(),
        "--seq",
        "5",
        "--tree-size",
        "9",
        "--database-url",
        &url,
    ]);
    assert_eq!(inclusion.code, 0, "{}", inclusion.stderr);
    let proof: serde_json::Value = serde_json::from_str(&inclusion.stdout).expect("JSON");
    assert_eq!(
        (proof["kind"].as_str(), proof["position"].as_u64()),
        (Some("inclusion"), Some(5))
    );
    let root9 = proof["root"].as_str().expect("a root").to_owned();
    let file = write("inclusion.json", &inclusion.stdout);
    let ok = imx(&["replay", "verify-proof", &file, "--root", &root9]);
    assert_eq!(ok.code, 0, "{}", ok.stderr);
    assert!(
        ok.stdout
            .starts_with(&format!("ok: run {RUN} seq 5 (position 5")),
        "{}",
        ok.stdout
    );

    let consistency = imx(&[
        "replay",
        "prove",
        "--consistency",
        "9",
        "12",
        "--database-url",
        &url,
    ]);
    assert_eq!(consistency.code, 0, "{}", consistency.stderr);
    let proof: serde_json::Value = serde_json::from_str(&consistency.stdout).expect("JSON");
    assert_eq!(proof["old_root"].as_str(), Some(root9.as_str()));
    let file = write("consistency.json", &consistency.stdout);
    assert_eq!(imx(&["replay", "verify-proof", &file]).code, 0);

    // An edited proof, a wrong trusted root, an impossible size.
    let edited = write(
        "edited.json",
        &consistency.stdout.replacen(&root9, &"ab".repeat(32), 1),
    );
    let refused = imx(&["replay", "verify-proof", &edited]);
    assert_eq!(refused.code, 1);
    assert!(
        refused.stderr.starts_with("verify-proof failed: IMX0540: "),
        "{}",
        refused.stderr
    );
    let wrong_root = imx(&["replay", "verify-proof", &file, "--root", &root9]);
    assert_eq!(wrong_root.code, 1, "the new root is not the old one");
    let too_big = imx(&[
        "replay",
        "prove",
        "--consistency",
        "9",
        "13",
        "--database-url",
        &url,
    ]);
    assert!(too_big.stderr.contains("IMX0537"), "{}", too_big.stderr);
}
