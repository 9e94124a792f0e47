//! Scenario 4, network faults between the nodes and PostgreSQL: two nodes
//! reach the database only through the fault-injecting proxy
//! (`e2e::proxy`) while they carry the mixed load: 200 ms added latency,
//! then a 10 s blackhole (a partition that heals), then connection resets
//! mid-transaction, then answers cut: every 4th request reaches
//! PostgreSQL and is carried out, but its answer is dropped and the
//! connection reset (an append whose COMMIT outcome the node cannot know
//! must not be applied twice). Nothing is lost or duplicated, the nodes
//! recover by themselves.

use std::time::{Duration, Instant};

use e2e::checker::{self, Expect};
use e2e::cluster::{Cluster, NodeOptions};
use e2e::proxy::{Mode, Proxy};
use e2e::target::Target;
use e2e::{load, sized};
use testkit::postgres::{ClusterUse, ScratchDatabase};
use tokio::sync::watch;

const NODES: usize = 2;
const LATENCY_MS: u64 = 200;
const BLACKHOLE_MS: u64 = 10_000;
/// Resets of every connection, one per `RESET_EVERY_MS`.
const RESETS: usize = 8;
const RESET_EVERY_MS: u64 = 700;
/// Every Nth request's answer is cut, for `CUT_MS`.
const CUT_EVERY: u64 = 4;
const CUT_MS: u64 = 5_000;
const WAIT_MS_MAX: u64 = 300_000;

/// The injected fault lasts `ms` (the schedule of the fault, not a wait).
async fn hold(ms: u64) {
    tokio::time::sleep(Duration::from_millis(ms)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn latency_blackhole_and_resets_to_postgres_lose_and_duplicate_nothing() {
    let _alone = e2e::one_at_a_time().await;
    let Some(db) =
        ScratchDatabase::create("network faults", "imx_e2e_network", ClusterUse::Shared).await
    else {
        return;
    };
    let began = Instant::now();
    let runs = sized(30, 150);
    let host_port = db
        .url
        .split('@')
        .nth(1)
        .and_then(|rest| rest.split('/').next());
    let upstream = host_port
        .and_then(|addr| addr.parse().ok())
        .expect("host:port of the cluster");
    let proxy = Proxy::start(upstream).await;
    let target = Target::start().await;
    let options = NodeOptions {
        lease_ms: 2_000,
        ..NodeOptions::default()
    };
    let mut cluster = Cluster::start(&proxy.url_for(&db.url), NODES, options).await;
    load::register(&cluster.bases).await;
    // The agent, the approver's reads and the CLI starts reach the
    // database directly: the faults are between the nodes and PostgreSQL.
    let mut agent = load::spawn_agent(&db.url, &target.base);
    let (stop, stopped) = watch::channel(false);
    let approver = load::spawn_approver(&db.url, cluster.bases.clone(), stopped);
    let spread = Duration::from_secs(sized(30, 60));
    let starters = load::spawn_starters(&db.url, cluster.bases.clone(), &target.base, runs, spread);
    hold(1_000).await;
    proxy.set(Mode::Latency(Duration::from_millis(LATENCY_MS)));
    hold(5_000).await;
    proxy.set(Mode::Pass);
    hold(2_000).await;
    proxy.set(Mode::Blackhole);
    hold(BLACKHOLE_MS).await;
    proxy.set(Mode::Pass);
    hold(2_000).await;
    for _ in 0..RESETS {
        proxy.reset_all();
        hold(RESET_EVERY_MS).await;
    }
    proxy.set(Mode::CutAnswers(CUT_EVERY));
    hold(CUT_MS).await;
    proxy.set(Mode::Pass);
    let acknowledged = starters.await.expect("the starters");
    let expect = Expect {
        acknowledged,
        within: Duration::from_millis(WAIT_MS_MAX),
        all_succeed: true,
    };
    let report = checker::check(&db.url, &expect, &target).await;
    for index in 0..NODES {
        let node = cluster.node_mut(index).expect("no node was stopped");
        assert!(
            node.exited().is_none(),
            "node {index} ended under the network faults"
        );
    }
    let _ = stop.send(true);
    let _ = approver.await;
    let _ = agent.kill().await;
    cluster.shutdown().await;
    let stats = &proxy.stats;
    let count = |counter: &std::sync::atomic::AtomicUsize| {
        counter.load(std::sync::atomic::Ordering::Relaxed)
    };
    assert!(
        count(&stats.answers_cut) > 0,
        "no answer was cut: the scenario did not reach an unknown outcome"
    );
    e2e::figures(
        "scenario 4 (network faults to PostgreSQL)",
        &format!(
            "{runs} runs on {NODES} nodes; {LATENCY_MS} ms latency for 5 s, a {} s blackhole, {RESETS} rounds of resets: {} connections reset ({} with a request in flight), then every {CUT_EVERY}th request's answer cut for {} s: {} answers cut (outcome unknown to the node), {} connections in all, {:.1} s in all; {report}",
            BLACKHOLE_MS / 1000,
            count(&stats.resets),
            count(&stats.resets_in_flight),
            CUT_MS / 1000,
            count(&stats.answers_cut),
            count(&stats.connections),
            began.elapsed().as_secs_f64()
        ),
    );
}
