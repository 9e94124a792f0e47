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

const EVERY_SECOND: &str = r#"
name: every-second
triggers:
  - cron: "* * * * * *"
    catch_up: all    # a loaded machine that lags a tick still fires it
steps:
  a: { uses: noop }
"#;

/// The real `imx serve` runs the scheduler: a per-second schedule fires
/// consecutive ticks, each run keyed by its instant, and SIGTERM stops
/// the scheduler with the rest.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn imx_serve_fires_cron_schedules_and_stops_cleanly() {
    use engine::store::prelude::*;
    let folder = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite://{}/imx.db", folder.path().display());
    let file = folder.path().join("every-second.yaml");
    std::fs::write(&file, EVERY_SECOND).expect("write the workflow");
    let registered = crate::imx(&["--database-url", &url, "run", &file.display().to_string()]);
    assert_eq!(registered.code, 0, "{registered:?}");
    let mut serve = tokio::process::Command::new(env!("CARGO_BIN_EXE_imx"))
        .args([
            "--database-url",
            &url,
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--insecure-no-auth",
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("imx serve starts");
    let store = engine::store::open(&url).await.expect("the store");
    let deadline = tokio::time::Instant::now() + crate::api::WAIT;
    let keys = loop {
        let page = store
            .list_runs(&engine::store::RunQuery {
                workflow: Some("every-second".to_owned()),
                limit: 100,
                ..engine::store::RunQuery::default()
            })
            .await
            .expect("list runs");
        let mut keys: Vec<String> = page
            .items
            .iter()
            .filter_map(|run| run.row.idempotency_key.clone())
            .filter(|key| key.starts_with("cron:every-second:cron:"))
            .collect();
        if keys.len() >= 3 {
            keys.sort();
            break keys;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no 3 cron runs in time: {keys:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    let instants: Vec<chrono::DateTime<chrono::Utc>> = keys
        .iter()
        .map(|key| {
            let at = key.trim_start_matches("cron:every-second:cron:");
            chrono::DateTime::parse_from_rfc3339(at)
                .expect("an RFC 3339 instant")
                .to_utc()
        })
        .collect();
    for pair in instants.windows(2) {
        assert_eq!((pair[1] - pair[0]).num_seconds(), 1, "{keys:?}");
    }
    let pid = serve.id().expect("a pid").to_string();
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill runs");
    assert!(killed.success());
    let status = tokio::time::timeout(crate::api::WAIT, serve.wait())
        .await
        .expect("stops in time")
        .expect("exit status");
    assert_eq!(status.code(), Some(0));
}
