//! `imx schedules` through the real binary: the list (state, last fire,
//! next five fire times), pause and resume, and a backfill that starts
//! nothing new the second time; refusals exit 2 with their IMX code.

use serde_json::Value;

use super::run::Store;

const NIGHTLY: &str = r#"
name: nightly
triggers:
  - { id: nightly, cron: "0 30 2 * * *", timezone: Europe/Berlin }
steps:
  a: { uses: noop }
"#;

fn schedules(store: &Store) -> Value {
    let listed = store.imx(&["schedules", "--json"]);
    assert_eq!(listed.code, 0, "{listed:?}");
    serde_json::from_str(&listed.stdout).expect("JSON")
}

#[test]
fn schedules_lists_pauses_resumes_and_backfills_once() {
    let store = Store::new();
    let file = store.folder.path().join("nightly.yaml");
    std::fs::write(&file, NIGHTLY).expect("write the workflow");
    // `imx run` registers the workflow (and starts one run by hand).
    let started = store.imx(&["run", &file.display().to_string()]);
    assert_eq!(started.code, 0, "{started:?}");

    let listed = schedules(&store);
    let schedule = &listed[0];
    assert_eq!(
        (
            &schedule["workflow"],
            &schedule["trigger"],
            &schedule["timezone"],
            &schedule["state"]
        ),
        (
            &"nightly".into(),
            &"nightly".into(),
            &"Europe/Berlin".into(),
            &"active".into()
        )
    );
    let next = schedule["next_fires"].as_array().expect("next fires");
    assert_eq!(next.len(), 5);
    let table = store.imx(&["schedules"]);
    assert!(
        table.stdout.contains("0 30 2 * * *") && table.stdout.contains("active"),
        "{table:?}"
    );

    let paused = store.imx(&["schedules", "pause", "nightly"]);
    assert_eq!(paused.code, 0, "{paused:?}");
    assert_eq!(paused.stdout.trim(), "paused nightly nightly");
    assert_eq!(schedules(&store)[0]["state"], "paused");
    let resumed = store.imx(&["schedules", "resume", "nightly", "nightly"]);
    assert_eq!(resumed.code, 0, "{resumed:?}");
    assert_eq!(schedules(&store)[0]["state"], "active");

    let window = [
        "schedules",
        "backfill",
        "nightly",
        "--from",
        "2027-01-01T00:00:00Z",
        "--to",
        "2027-01-02T23:59:59Z",
        "--json",
    ];
    let first = store.imx(&window);
    assert_eq!(first.code, 0, "{first:?}");
    let first: Value = serde_json::from_str(&first.stdout).expect("JSON");
    assert_eq!(
        (first["fires"].as_u64(), first["started"].as_u64()),
        (Some(2), Some(2))
    );
    let second = store.imx(&window);
    let second: Value = serde_json::from_str(&second.stdout).expect("JSON");
    assert_eq!(
        (second["started"].as_u64(), second["existing"].as_u64()),
        (Some(0), Some(2))
    );
    assert_eq!(
        schedules(&store)[0]["last_fire_at"],
        "2027-01-02T01:30:00Z",
        "a backfilled fire is a fire"
    );

    for (args, code) in [
        (vec!["schedules", "pause", "unknown"], "IMX0402"),
        (vec!["schedules", "resume", "nightly", "other"], "IMX0420"),
        (
            vec![
                "schedules",
                "backfill",
                "nightly",
                "--from",
                "2020-01-01T00:00:00Z",
                "--to",
                "2027-01-01T00:00:00Z",
            ],
            "IMX0421",
        ),
        (
            vec![
                "schedules",
                "backfill",
                "nightly",
                "--from",
                "2027-01-02T00:00:00Z",
                "--to",
                "2027-01-01T00:00:00Z",
            ],
            "IMX0422",
        ),
    ] {
        let refused = store.imx(&args);
        assert_eq!(refused.code, 2, "{args:?}: {refused:?}");
        assert!(refused.stderr.contains(code), "{args:?}: {refused:?}");
    }
}
