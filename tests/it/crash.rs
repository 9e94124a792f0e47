//! Crash anywhere, restart, and every run finishes with each step's success
//! recorded exactly once: `imx serve` is SIGKILLed at random moments while
//! 50 runs of a 20-step workflow (durable sleeps and noops) are in flight,
//! restarted each time; in the end every run succeeded, each step has one
//! `step.succeeded` event, and the hash chain of the whole log verifies.
//! The same with two nodes on PostgreSQL. A failure prints the seed;
//! `IMX_E2E_SEED=N` (or the older `IMX_CRASH_SEED=N`) replays the same kill
//! times. (Moved here from the gateway's tests; the scenarios of the
//! battery check more with the shared checker.)

use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::time::Duration;

use e2e::random::Random;
use engine::store::RecordedEvent;
use engine::store::prelude::*;
use testkit::postgres::{ClusterUse, ScratchDatabase};

/// Runs in flight.
const RUNS: usize = 50;
/// Steps per run (alternating `sleep` and `noop`).
const STEPS: usize = 20;
/// SIGKILLs of the serving process.
const KILLS: usize = 30;
/// A kill comes after a random time in `[KILL_AFTER_MS_MIN, KILL_AFTER_MS_MAX)`.
const KILL_AFTER_MS_MIN: u64 = 20;
const KILL_AFTER_MS_MAX: u64 = 400;
/// How long the final, uninterrupted server gets to finish every run.
const FINISH_MS_MAX: u64 = 120_000;

fn workflow() -> String {
    let mut text = String::from("name: crashy\ninput: { type: object, required: [nap] }\nsteps:\n");
    for i in 0..STEPS {
        let needs = match i {
            0 => String::new(),
            _ => format!("needs: [s{:02}], ", i - 1),
        };
        let body = match i % 2 {
            0 => r#"uses: sleep, with: { duration: "{{ input.nap }}" }"#.to_owned(),
            _ => format!("uses: noop, with: {{ i: {i} }}"),
        };
        text.push_str(&format!("  s{i:02}: {{ {needs}{body} }}\n"));
    }
    text
}

fn serve(url: &str) -> std::process::Child {
    Command::new(e2e::binary::imx())
        .args([
            "--database-url",
            url,
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--lease-ms",
            "500",
            "--workers",
            "16",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn imx serve")
}

#[test]
fn serve_survives_sigkill_at_random_moments() {
    let folder = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite://{}/imx.db", folder.path().display());
    crash_test(&url, folder.path(), 1);
}

/// The same on PostgreSQL with two `imx serve` nodes sharing the database,
/// one of them killed at each moment.
#[test]
fn two_postgres_nodes_survive_sigkill_at_random_moments() {
    let Some(database) =
        ScratchDatabase::create_blocking("the crash test", "imx_crash", ClusterUse::Shared)
    else {
        return;
    };
    let folder = tempfile::tempdir().expect("temp dir");
    crash_test(&database.url, folder.path(), 2);
}

fn crash_test(url: &str, folder: &std::path::Path, nodes: usize) {
    let _alone = e2e::one_at_a_time_blocking();
    let mut random = Random::from_env("crash test", Some("IMX_CRASH_SEED"));
    let seed = random.seed();
    let file = folder.join("crashy.yaml");
    std::fs::write(&file, workflow()).expect("write the workflow");
    let file = file.display().to_string();
    for i in 0..RUNS {
        // Naps long enough that runs are in flight through all the kills.
        let nap = format!("{}ms", 300 + (i % 5) * 100);
        let input = format!(r#"{{"nap": "{nap}"}}"#);
        let started = e2e::binary::run(&["--database-url", url, "run", &file, "--input", &input]);
        assert_eq!(started.code, 0, "seed {seed}: {started:?}");
    }
    let mut servers: Vec<Option<std::process::Child>> = (0..nodes).map(|_| None).collect();
    for _ in 0..KILLS {
        for server in servers.iter_mut().filter(|server| server.is_none()) {
            *server = Some(serve(url));
        }
        std::thread::sleep(Duration::from_millis(
            random.between(KILL_AFTER_MS_MIN, KILL_AFTER_MS_MAX),
        ));
        let victim = random.between(0, nodes as u64) as usize;
        if let Some(mut child) = servers[victim].take() {
            child.kill().expect("SIGKILL imx serve");
            child.wait().expect("reap imx serve");
        }
    }
    let before = succeeded(url);
    eprintln!("{before} of {RUNS} runs succeeded before the last restart");
    assert!(
        before < RUNS,
        "seed {seed}: the kills came after the work; lengthen the naps"
    );
    for server in servers.iter_mut().filter(|server| server.is_none()) {
        *server = Some(serve(url));
    }
    let finished = wait_until_all_succeeded(url, Duration::from_millis(FINISH_MS_MAX));
    for mut child in servers.into_iter().flatten() {
        let _ = child.kill();
        let _ = child.wait();
    }
    assert!(finished, "seed {seed}: not every run succeeded in time");
    verify(url, seed);
}

fn succeeded(url: &str) -> usize {
    let listed = e2e::binary::run(&[
        "--database-url",
        url,
        "runs",
        "--status",
        "succeeded",
        "--limit",
        "1000",
        "--json",
    ]);
    serde_json::from_str::<Vec<serde_json::Value>>(&listed.stdout).map_or(0, |runs| runs.len())
}

fn wait_until_all_succeeded(url: &str, within: Duration) -> bool {
    testkit::poll::eventually_blocking(within, Duration::from_millis(200), || {
        succeeded(url) == RUNS
    })
}

fn verify(url: &str, seed: u64) {
    let runtime = tokio::runtime::Runtime::new().expect("tokio");
    let log = runtime.block_on(async {
        let store = engine::store::open(url).await.expect("open the store");
        let mut log: Vec<RecordedEvent> = Vec::new();
        loop {
            let page = store
                .read_log(log.len() as u64, 1_000)
                .await
                .expect("read the log");
            if page.is_empty() {
                break log;
            }
            log.extend(page);
        }
    });
    engine::chain::verify_log(&engine::chain::LogHead::genesis(), &log)
        .unwrap_or_else(|error| panic!("seed {seed}: the hash chain does not verify: {error}"));
    let mut successes: BTreeMap<(uuid::Uuid, String), usize> = BTreeMap::new();
    let mut finished = 0;
    for event in &log {
        match event.event_type.as_str() {
            "step.succeeded" => {
                let step = event.payload["step"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned();
                *successes.entry((event.run_id, step)).or_default() += 1;
            }
            "run.succeeded" => finished += 1,
            _ => {}
        }
    }
    assert_eq!(finished, RUNS, "seed {seed}: one run.succeeded per run");
    assert_eq!(
        successes.len(),
        RUNS * STEPS,
        "seed {seed}: every step succeeded"
    );
    let twice: Vec<_> = successes.iter().filter(|(_, count)| **count != 1).collect();
    assert!(
        twice.is_empty(),
        "seed {seed}: steps with more than one success: {twice:?}"
    );
}
