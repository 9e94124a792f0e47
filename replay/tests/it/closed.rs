//! The export format closed (issue #17): every rule of
//! `docs/export-format.md` that the tools used not to check — extra keys,
//! `start` against the scope, duplicate keys, non-integers, integer formats,
//! `exported_at`'s spelling, the log link inside a one-run file — and
//! `--expect POSITION:HASH`, which catches a rewritten log where only the
//! head of the time was kept.

use replay::format::Line;
use replay::verify::{Expectation, Fault};
use replay::{Options, Scope, Summary, verify_reader};
use serde_json::Value;

use crate::support::{append_runs, block_on, canned_runs, export_text, run_id, sqlite};
use crate::tamper::{event, fault_kind, python_verify, rewrite_chain};

/// A whole-log export and one run's export of the same store, as lines.
fn exports() -> (Vec<String>, Vec<String>) {
    block_on(async {
        let fixture = sqlite().await;
        // One event per append: a run's events are interleaved with others'.
        append_runs(&fixture, &canned_runs(), 1).await;
        let whole = export_text(&fixture, Scope::default()).await;
        let run = Scope {
            run: Some(run_id(1)),
            since: 0,
        };
        let one = export_text(&fixture, run).await;
        (lines(&whole), lines(&one))
    })
}

fn lines(text: &str) -> Vec<String> {
    text.lines().map(str::to_owned).collect()
}

/// Verifies with both verifiers; panics when they disagree (the Python one
/// checks no schemas, so `schema_only` files pass it).
fn verify(lines: &[String], expect: &[(u64, &str)]) -> Result<Summary, replay::Problem> {
    let outcome = verify_rust(lines, expect);
    let schema_only = matches!(&outcome, Err(problem) if fault_kind(&problem.fault) == "schema");
    let args: Vec<String> = expect
        .iter()
        .flat_map(|(position, hash)| ["--expect".to_owned(), format!("{position}:{hash}")])
        .collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    if let Some(python_ok) = python_verify(&(lines.join("\n") + "\n"), &args) {
        assert_eq!(
            python_ok,
            outcome.is_ok() || schema_only,
            "docs/verify-export.py disagrees with imx about {outcome:?}"
        );
    }
    outcome
}

fn verify_rust(lines: &[String], expect: &[(u64, &str)]) -> Result<Summary, replay::Problem> {
    let options = Options {
        expect: expect
            .iter()
            .map(|(position, hash)| Expectation {
                position: *position,
                log_hash: (*hash).to_owned(),
                checkpoint: None,
                checkpoint_root: None,
            })
            .collect(),
        ..Options::default()
    };
    verify_reader((lines.join("\n") + "\n").as_bytes(), options)
}

/// The fault kind and line of the problem `lines` must have.
fn refused(lines: &[String]) -> (String, Option<u64>) {
    let problem = verify(lines, &[]).expect_err("the file is refused");
    (fault_kind(&problem.fault), problem.line)
}

/// Edits the JSON of line `at` with `edit`.
fn edit_json(lines: &mut [String], at: usize, edit: impl FnOnce(&mut Value)) {
    let mut value: Value = serde_json::from_str(&lines[at]).expect("a JSON line");
    edit(&mut value);
    lines[at] = value.to_string();
}

#[test]
fn an_extra_key_in_the_header_trailer_chain_scope_or_start_is_refused() {
    let (whole, _) = exports();
    let last = whole.len() - 1;
    for path in ["/header", "/header/chain", "/header/scope", "/header/start"] {
        let mut lines = whole.clone();
        edit_json(&mut lines, 0, |value| {
            value.pointer_mut(path).expect("the member")["extra"] = Value::from(1);
        });
        assert_eq!(
            refused(&lines),
            ("bad_header".to_owned(), Some(1)),
            "{path}"
        );
    }
    let mut lines = whole.clone();
    edit_json(&mut lines, last, |value| {
        value["trailer"]["extra"] = Value::from(1)
    });
    assert_eq!(
        refused(&lines),
        ("malformed".to_owned(), Some(last as u64 + 1))
    );
}

#[test]
fn a_start_that_disagrees_with_the_scope_is_refused() {
    let (whole, one) = exports();
    for file in [&whole, &one] {
        let mut lines = file.clone();
        edit_json(&mut lines, 0, |value| {
            value["header"]["start"]["position"] = Value::from(3)
        });
        assert_eq!(refused(&lines), ("bad_header".to_owned(), Some(1)));
        let mut lines = file.clone();
        edit_json(&mut lines, 0, |value| {
            value["header"]["start"]["log_hash"] = Value::from("1".repeat(64));
        });
        assert_eq!(refused(&lines), ("bad_header".to_owned(), Some(1)));
    }
}

#[test]
fn exported_at_must_be_an_rfc3339_utc_time() {
    let (whole, _) = exports();
    for spelling in [
        "2026-11-24 12:00:00Z",
        "2026-11-24T12:00:00+00:00",
        "yesterday",
    ] {
        let mut lines = whole.clone();
        edit_json(&mut lines, 0, |value| {
            value["header"]["exported_at"] = Value::from(spelling)
        });
        assert_eq!(
            refused(&lines),
            ("bad_header".to_owned(), Some(1)),
            "{spelling}"
        );
    }
}

#[test]
fn duplicate_keys_anywhere_in_an_event_line_are_refused() {
    let (whole, _) = exports();
    let original = whole[1].clone();
    // The payload's first member twice (serde_json alone keeps the last).
    let payload_at = original.find("\"payload\":{").expect("a payload") + "\"payload\":{".len();
    let first_member_end = original[payload_at..].find(',').expect("a member") + payload_at;
    let member = original[payload_at..first_member_end].to_owned();
    let mut lines = whole.clone();
    lines[1] = format!(
        "{}{member},{}",
        &original[..payload_at],
        &original[payload_at..]
    );
    assert_eq!(refused(&lines), ("malformed".to_owned(), Some(2)));
    let mut lines = whole.clone();
    lines[1] = original.replacen("{\"run_id\"", "{\"seq\":1,\"run_id\"", 1);
    assert_eq!(refused(&lines), ("malformed".to_owned(), Some(2)));
}

#[test]
fn integers_written_as_floats_are_refused() {
    let (whole, _) = exports();
    let mut lines = whole.clone();
    lines[1] = lines[1].replacen("\"seq\":1,", "\"seq\":1.0,", 1);
    assert_eq!(refused(&lines), ("malformed".to_owned(), Some(2)));
}

#[test]
fn an_attempt_beyond_uint32_is_refused_even_in_a_rechained_file() {
    let (mut lines, _) = exports();
    let at = (1..lines.len() - 1)
        .find(|&n| {
            event(&lines[n])
                .payload
                .get("attempt")
                .is_some_and(Value::is_u64)
        })
        .expect("an event with an attempt");
    edit_json(&mut lines, at, |value| {
        value["payload"]["attempt"] = Value::from(1u64 << 32)
    });
    rewrite_chain(&mut lines, at);
    let problem = verify(&lines, &[]).expect_err("attempt 2^32 refused");
    assert_eq!(
        (fault_kind(&problem.fault), problem.line),
        ("schema".to_owned(), Some(at as u64 + 1))
    );
}

#[test]
fn a_one_run_file_checks_the_log_link_where_positions_follow_each_other() {
    let (_, one) = exports();
    // The run starts the log: its seq 1 is position 1, linked to genesis.
    assert_eq!(event(&one[1]).position, 1);
    let mut lines = one.clone();
    edit_json(&mut lines, 1, |value| {
        value["log_hash"] = Value::from("ab".repeat(32))
    });
    assert_eq!(refused(&lines), ("log_hash_mismatch".to_owned(), Some(2)));
    // Elsewhere its log_hash is not provable from the file: not checked.
    let unlinked = (2..lines.len() - 1)
        .find(|&n| event(&one[n]).position != event(&one[n - 1]).position + 1)
        .expect("an event not next to the run's previous one");
    let mut lines = one.clone();
    edit_json(&mut lines, unlinked, |value| {
        value["log_hash"] = Value::from("ab".repeat(32))
    });
    assert!(verify(&lines, &[]).is_ok());
}

/// A `since` export of `lines` (a whole-log file) after position `since`.
fn since_export(lines: &[String], since: u64) -> Vec<String> {
    let start = event(&lines[since as usize]).log_hash;
    let mut out = lines.to_vec();
    edit_json(&mut out, 0, |value| {
        value["header"]["scope"]["since"] = Value::from(since);
        value["header"]["start"] = serde_json::json!({"position": since, "log_hash": start});
    });
    let trailer = out.pop().expect("a trailer");
    out.drain(1..=since as usize);
    let events = out.len() as u64 - 1;
    let mut trailer: Value = serde_json::from_str(&trailer).expect("JSON");
    trailer["trailer"]["events"] = Value::from(events);
    out.push(trailer.to_string());
    out
}

#[test]
fn expect_catches_a_since_export_of_a_rewritten_log_at_its_start() {
    let (whole, _) = exports();
    let since = 20;
    let honest_start = event(&whole[since as usize]).log_hash;
    let honest = since_export(&whole, since);
    let summary = verify(&honest, &[(since, &honest_start)]).expect("the honest file verifies");
    assert_eq!(summary.expect_checked, vec![since]);
    // A payload before `since` edited, every hash after it recomputed.
    let mut rewritten = whole.clone();
    edit_json(&mut rewritten, 5, |value| {
        value["payload"]["at"] = Value::from("2020-01-01T00:00:00Z")
    });
    rewrite_chain(&mut rewritten, 5);
    let file = since_export(&rewritten, since);
    assert!(
        verify(&file, &[]).is_ok(),
        "alone, the rewritten file verifies"
    );
    let problem = verify(&file, &[(since, &honest_start)]).expect_err("caught");
    assert_eq!(
        (fault_kind(&problem.fault), problem.line, problem.position),
        ("expect_mismatch".to_owned(), Some(1), Some(since))
    );
}

#[test]
fn expect_checks_an_intermediate_position_after_the_log_has_grown() {
    let (whole, _) = exports();
    let at = 30;
    let recorded = event(&whole[at]).log_hash;
    let summary = verify(&whole, &[(at as u64, &recorded)]).expect("the grown log verifies");
    assert_eq!(summary.expect_checked, vec![at as u64]);
    let mut rewritten = whole.clone();
    edit_json(&mut rewritten, 10, |value| {
        value["payload"]["at"] = Value::from("2020-01-01T00:00:00Z")
    });
    rewrite_chain(&mut rewritten, 10);
    let problem = verify(&rewritten, &[(at as u64, &recorded)]).expect_err("caught");
    assert_eq!(
        (fault_kind(&problem.fault), problem.line),
        ("expect_mismatch".to_owned(), Some(at as u64 + 1))
    );
    assert!(
        matches!(*problem.fault, Fault::ExpectMismatch { position, .. } if position == at as u64)
    );
}

#[test]
fn expect_beyond_the_file_is_reported_as_not_checked() {
    let (whole, _) = exports();
    let beyond = whole.len() as u64 + 10;
    let summary = verify(&whole, &[(beyond, &"0".repeat(64))]).expect("verifies");
    assert_eq!(
        (
            summary.expect_checked.clone(),
            summary.expect_not_covered.clone()
        ),
        (Vec::new(), vec![beyond])
    );
    assert!(summary.render().contains("NOT checked"));
}

#[test]
fn expect_parses_position_colon_hash_and_refuses_anything_else() {
    let hash = "AB".repeat(32);
    let parsed: Expectation = format!("7:{hash}").parse().expect("parses");
    assert_eq!(
        parsed,
        Expectation {
            position: 7,
            log_hash: hash.to_ascii_lowercase(),
            checkpoint: None,
            checkpoint_root: None,
        }
    );
    for bad in [
        "7",
        "x:00",
        &format!("-1:{hash}"),
        &format!("7:{}", &hash[1..]),
    ] {
        assert!(bad.parse::<Expectation>().is_err(), "{bad}");
    }
}

#[test]
fn a_one_run_export_from_the_start_has_the_genesis_start() {
    let (_, one) = exports();
    let header = match Line::parse(&one[0]) {
        Ok(Line::Header(header)) => header,
        other => panic!("not a header: {other:?}"),
    };
    assert_eq!(header.start, engine::chain::LogHead::genesis());
}
