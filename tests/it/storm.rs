//! Scenario 1, the SIGKILL storm: three `imx serve` nodes on one
//! PostgreSQL carry the mixed load (http, sleep, for_each with
//! max_parallel, an agent queue served by `imx agent`, an approval
//! approved through the API, a child workflow) while a random node is
//! SIGKILLed every 0.5–2 s and restarted. Nothing acknowledged is lost,
//! nothing succeeds twice, and the five invariants hold.

use std::time::{Duration, Instant};

use e2e::checker::{self, Expect};
use e2e::cluster::{Cluster, NodeOptions};
use e2e::random::Random;
use e2e::target::Target;
use e2e::{load, sized};
use testkit::postgres::{ClusterUse, ScratchDatabase};
use tokio::sync::watch;

/// Nodes of the cluster.
const NODES: usize = 3;
/// A kill comes after a random pause in `[KILL_EVERY_MS_MIN, KILL_EVERY_MS_MAX)`.
const KILL_EVERY_MS_MIN: u64 = 500;
const KILL_EVERY_MS_MAX: u64 = 2_000;
/// How long the runs get to end after the storm.
const SETTLE_MS_MAX: u64 = 300_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_storm_on_three_nodes_loses_and_duplicates_nothing() {
    let _alone = e2e::one_at_a_time().await;
    let Some(database) =
        ScratchDatabase::create("the SIGKILL storm", "imx_e2e_storm", ClusterUse::Shared).await
    else {
        return;
    };
    let runs = sized(60, 200);
    let storm = Duration::from_secs(sized(30, 60));
    let mut random = Random::from_env("scenario 1 (SIGKILL storm)", None);
    let target = Target::start().await;
    let options = NodeOptions {
        lease_ms: 1_000,
        ..NodeOptions::default()
    };
    let mut cluster = Cluster::start(&database.url, NODES, options).await;
    load::register(&cluster.bases).await;
    let mut agent = load::spawn_agent(&database.url, &target.base);
    let (stop, stopped) = watch::channel(false);
    let approver = load::spawn_approver(&database.url, cluster.bases.clone(), stopped);
    let began = Instant::now();
    let starters = load::spawn_starters(
        &database.url,
        cluster.bases.clone(),
        &target.base,
        runs,
        storm * 2 / 3,
    );
    let mut kills = 0;
    while began.elapsed() < storm {
        // The storm's schedule (the fault), not a wait for something.
        let pause = random.between(KILL_EVERY_MS_MIN, KILL_EVERY_MS_MAX);
        tokio::time::sleep(Duration::from_millis(pause)).await;
        let victim = random.between(0, NODES as u64) as usize;
        kills += usize::from(cluster.kill(victim).await);
        cluster.restart(victim).await;
    }
    let acknowledged = starters.await.expect("the starters");
    let expect = Expect {
        acknowledged,
        within: Duration::from_millis(SETTLE_MS_MAX),
        all_succeed: true,
    };
    let report = checker::check(&database.url, &expect, &target).await;
    let _ = stop.send(true);
    let approved = approver.await.expect("the approver");
    let _ = agent.kill().await;
    cluster.shutdown().await;
    e2e::figures(
        "scenario 1 (SIGKILL storm, 3 nodes on PostgreSQL)",
        &format!(
            "{runs} runs, {kills} SIGKILLs over {storm:?} (seed {}), {approved} approvals, {:.1} s in all; {report}",
            random.seed(),
            began.elapsed().as_secs_f64()
        ),
    );
}
