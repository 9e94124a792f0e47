//! `imx runs cancel RUN_ID [--reason TEXT]` through the real binary: the
//! way out of a poison run without the API. Unknown or finished runs are
//! refused with exit 2 and nothing is written.

use serde_json::Value;

use super::run::Store;

const WAITING: &str = r#"
name: gated
steps:
  prepare: { uses: noop }
  approve: { needs: [prepare], uses: approval, with: { role: finance } }
  ship: { needs: [approve], uses: noop }
"#;

#[test]
fn runs_cancel_cancels_a_waiting_run_and_refuses_unknown_or_finished_ones() {
    let store = Store::new();
    let file = store.folder.path().join("gated.yaml");
    std::fs::write(&file, WAITING).expect("write the workflow");
    let started = store.imx(&["run", &file.display().to_string()]);
    assert_eq!(started.code, 0, "{started:?}");
    let run_id = started.stdout.trim().to_owned();

    let cancelled = store.imx(&["runs", "cancel", &run_id, "--reason", "poison input"]);
    assert_eq!(cancelled.code, 0, "{cancelled:?}");
    assert!(
        cancelled
            .stdout
            .contains(&format!("cancel requested for run {run_id}")),
        "{cancelled:?}"
    );
    let shown = store.imx(&["runs", "show", &run_id, "--json"]);
    let document: Value = serde_json::from_str(&shown.stdout).expect("the run document");
    assert_eq!(document["status"], "cancelled", "{document}");
    let exported = store.imx(&["replay", "export", "--run", &run_id]);
    assert!(
        exported.stdout.contains("poison input"),
        "the reason is recorded: {exported:?}"
    );

    let again = store.imx(&["runs", "cancel", &run_id]);
    assert_eq!(again.code, 2, "{again:?}");
    assert!(
        again.stderr.contains("IMX0406") && again.stderr.contains("already ended (cancelled)"),
        "{again:?}"
    );

    let unknown = uuid::Uuid::now_v7().to_string();
    let missing = store.imx(&["runs", "cancel", &unknown]);
    assert_eq!(missing.code, 2, "{missing:?}");
    assert!(missing.stderr.contains("not found"), "{missing:?}");

    let malformed = store.imx(&["runs", "cancel", "not-a-run"]);
    assert_eq!(malformed.code, 2, "{malformed:?}");
    assert!(
        malformed.stderr.contains("is not a run id"),
        "{malformed:?}"
    );
}
