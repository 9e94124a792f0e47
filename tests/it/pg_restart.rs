//! Scenario 2, PostgreSQL crashed and restarted under the full engine:
//! three nodes carry the mixed load (no kills) while the cluster is
//! stopped with `pg_ctl stop -m immediate` (a crash: WAL replay on start)
//! and started again, twice. The outage is held until a prober saw it:
//! meanwhile `/readyz` answers 503 and GraphQL `UNAVAILABLE`, never a 500
//! or `INTERNAL`; the nodes recover by themselves and nothing is lost.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use e2e::checker::{self, Expect};
use e2e::cluster::{Cluster, NodeOptions};
use e2e::random::Random;
use e2e::target::Target;
use e2e::{database, graphql, load, sized};
use serde_json::json;
use testkit::postgres::{ClusterUse, ScratchDatabase};
use tokio::sync::watch;

const NODES: usize = 3;
/// Crash restarts of PostgreSQL.
const RESTARTS: usize = 2;
/// How long any wait of the scenario may take on a loaded machine.
const WAIT_MS_MAX: u64 = 300_000;
/// The prober's pace.
const PROBE_EVERY_MS: u64 = 50;
const PROBE: &str = "{ runs(first: 1) { edges { node { id } } } }";

/// What the prober saw.
#[derive(Debug, Default)]
struct Probes {
    readyz: Vec<u16>,
    graphql: Vec<(u16, Vec<String>)>,
}

impl Probes {
    fn unavailable_seen_since(&self, readyz_from: usize, graphql_from: usize) -> bool {
        self.readyz[readyz_from..].contains(&503)
            && self.graphql[graphql_from..]
                .iter()
                .any(|(_, codes)| codes.iter().any(|code| code == "UNAVAILABLE"))
    }
}

fn spawn_prober(
    bases: Arc<Mutex<Vec<String>>>,
    probes: Arc<Mutex<Probes>>,
    mut stop: watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let client = graphql::client();
        while !*stop.borrow() {
            let bases = bases.lock().expect("bases lock").clone();
            for base in bases {
                if let Ok(response) = client.get(format!("{base}/readyz")).send().await {
                    probes
                        .lock()
                        .expect("probes")
                        .readyz
                        .push(response.status().as_u16());
                }
                if let Ok(answer) = graphql::post(&client, &base, PROBE, json!({})).await {
                    let codes = answer.error_codes();
                    probes
                        .lock()
                        .expect("probes")
                        .graphql
                        .push((answer.status, codes));
                }
            }
            let pause = Duration::from_millis(PROBE_EVERY_MS);
            let _ = tokio::time::timeout(pause, stop.changed()).await;
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_crash_restarts_under_load_lose_nothing_and_answer_unavailable() {
    let _alone = e2e::one_at_a_time().await;
    let Some(db) = ScratchDatabase::create(
        "PostgreSQL restarts",
        "imx_e2e_pgrestart",
        ClusterUse::Exclusive,
    )
    .await
    else {
        return;
    };
    let began = Instant::now();
    let runs = sized(40, 200);
    let mut random = Random::from_env("scenario 2 (PostgreSQL restarts)", None);
    let target = Target::start().await;
    let mut cluster = Cluster::start(&db.url, NODES, NodeOptions::default()).await;
    load::register(&cluster.bases).await;
    let mut agent = load::spawn_agent(&db.url, &target.base);
    let (stop, stopped) = watch::channel(false);
    let approver = load::spawn_approver(&db.url, cluster.bases.clone(), stopped.clone());
    let probes: Arc<Mutex<Probes>> = Arc::default();
    let prober = spawn_prober(cluster.bases.clone(), Arc::clone(&probes), stopped);
    let spread = Duration::from_secs(sized(20, 60));
    let starters = load::spawn_starters(&db.url, cluster.bases.clone(), &target.base, runs, spread);
    let within = Duration::from_millis(WAIT_MS_MAX);
    let mut outages = Vec::new();
    for _ in 0..RESTARTS {
        // The fault's schedule, not a wait for something.
        tokio::time::sleep(Duration::from_millis(random.between(2_000, 5_000))).await;
        let (readyz_from, graphql_from) = {
            let probes = probes.lock().expect("probes");
            (probes.readyz.len(), probes.graphql.len())
        };
        let down = database::crash_stop().await;
        let down_at = Instant::now();
        testkit::poll::until("the nodes report the outage", within, || {
            probes
                .lock()
                .expect("probes")
                .unavailable_seen_since(readyz_from, graphql_from)
        })
        .await;
        down.start().await;
        let ready_from = probes.lock().expect("probes").readyz.len();
        testkit::poll::until("every node is ready again", within, || {
            let probes = probes.lock().expect("probes");
            probes.readyz[ready_from..]
                .iter()
                .filter(|s| **s == 200)
                .count()
                >= NODES
        })
        .await;
        outages.push(down_at.elapsed());
    }
    let acknowledged = starters.await.expect("the starters");
    let expect = Expect {
        acknowledged,
        within,
        all_succeed: true,
    };
    let report = checker::check(&db.url, &expect, &target).await;
    for index in 0..NODES {
        let node = cluster.node_mut(index).expect("no node was stopped");
        assert!(
            node.exited().is_none(),
            "node {index} ended during the outages"
        );
    }
    let _ = stop.send(true);
    let _ = (approver.await, prober.await);
    let _ = agent.kill().await;
    cluster.shutdown().await;
    let probes = probes.lock().expect("probes");
    let internal: Vec<_> = probes
        .graphql
        .iter()
        .filter(|(status, codes)| *status >= 500 || codes.iter().any(|c| c == "INTERNAL"))
        .collect();
    assert!(
        internal.is_empty(),
        "500s or INTERNAL during the outages: {internal:?}"
    );
    assert!(
        !probes
            .readyz
            .iter()
            .any(|status| *status >= 500 && *status != 503)
    );
    let unavailable = probes
        .graphql
        .iter()
        .filter(|(_, c)| c.iter().any(|c| c == "UNAVAILABLE"));
    e2e::figures(
        "scenario 2 (PostgreSQL crash-restarted under load)",
        &format!(
            "{runs} runs, {RESTARTS} crash restarts (down {outages:?}), probes: {} /readyz ({} 503), {} GraphQL ({} UNAVAILABLE, 0 INTERNAL, 0 5xx), {:.1} s in all; {report}",
            probes.readyz.len(),
            probes.readyz.iter().filter(|s| **s == 503).count(),
            probes.graphql.len(),
            unavailable.count(),
            began.elapsed().as_secs_f64()
        ),
    );
}
