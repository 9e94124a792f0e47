//! `imx runs skip|rewind|fork|pause|resume` through the real binary on a
//! SQLite store: each operation is recorded with who asked and why, and a
//! refusal exits 2 with its code and writes nothing.

use serde_json::{Value, json};

use super::imx;
use super::run::Store;

/// `charge` fails once and for all; `ship` uses its output.
const BROKEN: &str = r#"
name: order
steps:
  fetch: { uses: noop, with: { sku: abc } }
  charge: { needs: [fetch], uses: fail, with: { message: card declined }, retry: { max_attempts: 1 } }
  ship: { needs: [charge], uses: noop, with: { receipt: "{{ steps.charge.output.receipt }}" } }
"#;

const GATED: &str = r#"
name: gated
steps:
  prepare: { uses: noop }
  approve: { needs: [prepare], uses: approval }
  ship: { needs: [approve], uses: noop }
"#;

#[test]
fn runs_skip_rewind_and_fork_repair_a_failed_run_with_their_reasons_recorded() {
    let store = Store::new();
    let file = store.file("order.yaml", BROKEN);
    let started = store.imx(&["run", &file]);
    assert_eq!(started.code, 0, "{started:?}");
    let run_id = started.stdout.trim().to_owned();
    assert_eq!(store.document(&run_id)["status"], "failed");

    let skipped = store.imx(&[
        "runs",
        "skip",
        &run_id,
        "--step",
        "charge",
        "--output",
        r#"{"receipt": "R-1"}"#,
        "--reason",
        "charged by hand",
        "--by",
        "ops-alice",
    ]);
    assert_eq!(skipped.code, 0, "{skipped:?}");
    assert!(
        skipped.stdout.contains("the run is succeeded"),
        "{skipped:?}"
    );
    let document = store.document(&run_id);
    assert_eq!(
        document["steps"]["charge"]["skipped_by"],
        "by ops-alice: charged by hand"
    );
    assert_eq!(
        document["steps"]["ship"]["output"],
        json!({"receipt": "R-1"})
    );

    let rewound = store.imx(&[
        "runs",
        "rewind",
        &run_id,
        "--step",
        "ship",
        "--reason",
        "resend the parcel",
        "--json",
    ]);
    assert_eq!(rewound.code, 0, "{rewound:?}");
    let document: Value = serde_json::from_str(&rewound.stdout).expect("the run document");
    assert_eq!(document["status"], "succeeded", "{document}");
    assert_eq!(document["steps"]["ship"]["generation"], 1, "{document}");
    assert!(
        document["steps"]["fetch"].get("generation").is_none(),
        "{document}"
    );

    let exported = store.imx(&["replay", "export", "--run", &run_id]);
    for recorded in [
        "step.bypassed",
        "charged by hand",
        "run.rewound",
        "resend the parcel",
    ] {
        assert!(
            exported.stdout.contains(recorded),
            "{recorded} missing: {exported:?}"
        );
    }

    // Fork at `charge` onto a version where it works: `fetch` is taken over.
    let fixed = store.file(
        "order-fixed.yaml",
        &BROKEN.replace(
            "uses: fail, with: { message: card declined }",
            "uses: noop, with: { receipt: R-2 }",
        ),
    );
    let fixed_run = store.imx(&["run", &fixed]);
    assert_eq!(fixed_run.code, 0, "{fixed_run:?}");
    let version = store.document(fixed_run.stdout.trim())["version"]
        .as_str()
        .expect("a version")
        .to_owned();
    let forked = store.imx(&[
        "runs",
        "fork",
        &run_id,
        "--step",
        "charge",
        "--version",
        &version,
        "--reason",
        "charge fixed",
        "--json",
    ]);
    assert_eq!(forked.code, 0, "{forked:?}");
    let fork: Value = serde_json::from_str(&forked.stdout).expect("the fork's document");
    assert_ne!(fork["id"], run_id.as_str());
    assert_eq!(fork["version"], version.as_str());
    assert_eq!(fork["forked_from"]["run_id"], run_id.as_str(), "{fork}");
    assert_eq!(fork["forked_from"]["reason"], "charge fixed", "{fork}");
    assert_eq!(
        fork["steps"]["fetch"]["adopted_from"],
        run_id.as_str(),
        "{fork}"
    );
    assert_eq!(fork["status"], "succeeded", "{fork}");
    assert_eq!(
        fork["steps"]["ship"]["output"],
        json!({"receipt": "R-2"}),
        "{fork}"
    );

    // Refusals: exit 2, the code, nothing written.
    let before = events_of(&store, &run_id);
    let refusals: [(&[&str], &str); 4] = [
        (
            &["runs", "pause", &run_id, "--reason", "too late"],
            "IMX0414",
        ),
        (
            &["runs", "rewind", &run_id, "--step", "nope", "--reason", "r"],
            "IMX0415",
        ),
        (
            &["runs", "rewind", &run_id, "--step", "ship", "--reason", " "],
            "IMX0417",
        ),
        (
            &[
                "runs", "skip", &run_id, "--step", "ship", "--output", "{", "--reason", "r",
            ],
            "--output",
        ),
    ];
    for (args, expected) in refusals {
        let refused = store.imx(args);
        assert_eq!(refused.code, 2, "{args:?}: {refused:?}");
        assert!(refused.stderr.contains(expected), "{args:?}: {refused:?}");
    }
    let after = events_of(&store, &run_id);
    assert_eq!(before, after, "a refusal records nothing");

    // The auditor's tools read the surgery like any other history.
    let inspected = store.imx(&["replay", "inspect", &run_id]);
    assert_eq!(inspected.code, 0, "{inspected:?}");
    let bypassed = timeline_line(&inspected.stdout, "step.bypassed");
    assert!(
        bypassed.contains("charge") && bypassed.ends_with("by ops-alice: charged by hand"),
        "{bypassed}"
    );
    let rewound = timeline_line(&inspected.stdout, "run.rewound");
    assert!(
        rewound.contains("ship") && rewound.ends_with(": resend the parcel"),
        "{rewound}"
    );
    let fork_id = fork["id"].as_str().expect("the fork's id");
    let inspected = store.imx(&["replay", "inspect", fork_id]);
    let started = timeline_line(&inspected.stdout, "run.started");
    assert!(
        started.contains(&format!("fork of {run_id} at charge, by ")),
        "{started}"
    );
    let adopted = timeline_line(&inspected.stdout, "step.adopted");
    assert!(
        adopted.ends_with(&format!("taken over from {run_id}")),
        "{adopted}"
    );
    let export = store.folder.path().join("all.jsonl");
    let exported = store.imx(&["replay", "export"]);
    assert_eq!(exported.code, 0, "{exported:?}");
    std::fs::write(&export, &exported.stdout).expect("write the export");
    let verified = imx(&["replay", "verify", export.to_str().expect("UTF-8")]);
    assert_eq!(verified.code, 0, "{verified:?}");
}

#[test]
fn runs_pause_holds_a_waiting_run_and_resume_lets_it_go_on() {
    let store = Store::new();
    let file = store.file("gated.yaml", GATED);
    let started = store.imx(&["run", &file]);
    assert_eq!(started.code, 0, "{started:?}");
    let run_id = started.stdout.trim().to_owned();
    assert_eq!(store.document(&run_id)["status"], "waiting");

    let paused = store.imx(&[
        "runs",
        "pause",
        &run_id,
        "--reason",
        "audit first",
        "--by",
        "bob",
    ]);
    assert_eq!(paused.code, 0, "{paused:?}");
    let document = store.document(&run_id);
    assert_eq!(document["status"], "paused", "{document}");
    assert_eq!(document["paused"], "by bob: audit first", "{document}");
    let listed = store.imx(&["runs", "--status", "paused"]);
    assert!(listed.stdout.contains(&run_id), "{listed:?}");

    let again = store.imx(&["runs", "pause", &run_id, "--reason", "twice"]);
    assert_eq!(again.code, 2, "{again:?}");
    assert!(again.stderr.contains("IMX0414"), "{again:?}");

    let resumed = store.imx(&["runs", "resume", &run_id, "--reason", "audit done"]);
    assert_eq!(resumed.code, 0, "{resumed:?}");
    assert_eq!(store.document(&run_id)["status"], "waiting");
    let approved = store.imx(&["approve", &run_id, "approve"]);
    assert_eq!(approved.code, 0, "{approved:?}");
    assert_eq!(store.document(&run_id)["status"], "succeeded");
}

/// The line of `imx replay inspect`'s timeline for the first `event_type`.
fn timeline_line<'a>(stdout: &'a str, event_type: &str) -> &'a str {
    stdout
        .lines()
        .find(|line| line.split_whitespace().nth(2) == Some(event_type))
        .unwrap_or_else(|| panic!("no {event_type} in the timeline:\n{stdout}"))
        .trim_end()
}

/// The run's exported events (the export without its header, which holds
/// the time of the export).
fn events_of(store: &Store, run_id: &str) -> Vec<String> {
    let exported = store.imx(&["replay", "export", "--run", run_id]);
    assert_eq!(exported.code, 0, "{exported:?}");
    exported.stdout.lines().skip(1).map(str::to_owned).collect()
}
