//! Scenario 5, failpoints: a node built with the `failpoints` feature is
//! armed at one of the engine's crash points (`FAILPOINTS=<name>=1*return`)
//! and aborts there, twice; restarted unarmed, it finishes every run with
//! each success recorded once. The points: after a claim; after the side
//! effect, before recording it; inside the append before COMMIT; after
//! COMMIT before the node updates its memory.

use std::os::unix::process::ExitStatusExt;
use std::time::{Duration, Instant};

use e2e::checker::{self, Expect, Report};
use e2e::cluster::{Cluster, NodeOptions};
use e2e::target::Target;
use testkit::postgres::{ClusterUse, ScratchDatabase};

/// Runs per point.
const RUNS: usize = 5;
/// Aborts per point before the node is restarted unarmed.
const CRASHES: usize = 2;
const LEASE_MS: u64 = 1_000;
/// How long any wait of the scenario may take on a loaded machine.
const WAIT_MS_MAX: u64 = 120_000;

const WORKFLOW: &str = r#"
name: e2e-failpoints
input: { type: object, required: [target] }
steps:
  call:
    uses: http
    retry: { max_attempts: 10, backoff: fixed, initial_interval: 200ms }
    with: { method: POST, url: "{{ input.target }}/effect" }
  after:
    needs: [call]
    uses: noop
    with: { status: "{{ steps.call.output.status }}" }
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_crash_point_leaves_each_run_finished_with_each_success_once() {
    let _alone = e2e::one_at_a_time().await;
    for point in engine::failpoint::ALL {
        let began = Instant::now();
        let Some((report, repeated)) = crash_at(point).await else {
            return;
        };
        e2e::figures(
            &format!("scenario 5 (failpoint {point})"),
            &format!(
                "{RUNS} runs, {CRASHES} aborts at the point, {repeated} side effects repeated after a crash, {:.1} s; {report}",
                began.elapsed().as_secs_f64()
            ),
        );
    }
}

/// One point: the report, and how many keys the target saw twice.
async fn crash_at(point: &str) -> Option<(Report, usize)> {
    let database =
        ScratchDatabase::create("the failpoints", "imx_e2e_failpoints", ClusterUse::Shared).await?;
    let url = database.url.clone();
    let target = Target::start().await;
    let folder = tempfile::tempdir().expect("temp dir");
    let file = folder.path().join("failpoints.yaml");
    std::fs::write(&file, WORKFLOW).expect("write the workflow");
    // Started by the CLI (unarmed): the node under test only advances runs.
    let file = file.display().to_string();
    let acknowledged = e2e::load::start_runs_by_cli(&url, &file, &target.base, RUNS).await;
    let armed = NodeOptions {
        lease_ms: LEASE_MS,
        env: vec![("FAILPOINTS".into(), format!("{point}=1*return"))],
        ..NodeOptions::default()
    };
    let within = Duration::from_millis(WAIT_MS_MAX);
    let mut cluster = Cluster::start(&url, 1, armed).await;
    for crash in 0..CRASHES {
        let aborted = testkit::poll::until_some("the node reaches the point", within, || {
            let status = cluster.node_mut(0).and_then(|node| node.exited());
            async move { status }
        })
        .await;
        let log = cluster.node(0).expect("the node").lines();
        assert_eq!(
            aborted.signal(),
            Some(6),
            "{point}: ended by SIGABRT: {log:#?}"
        );
        assert!(
            log.iter()
                .any(|line| line.contains(&format!("failpoint {point} reached"))),
            "{point}: the node names the point it crashed at: {log:#?}"
        );
        cluster.reap(0).await;
        if crash + 1 < CRASHES {
            cluster.restart(0).await;
        }
    }
    cluster.options.env.clear();
    cluster.restart(0).await;
    let expect = Expect {
        acknowledged,
        within,
        all_succeed: true,
    };
    let report = checker::check(&url, &expect, &target).await;
    let repeated = target.keys().values().filter(|n| **n > 1).count();
    cluster.shutdown().await;
    Some((report, repeated))
}
