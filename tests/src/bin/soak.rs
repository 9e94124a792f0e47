//! Scenario 8, the soak (`scripts/soak`; not in CI): scenario 1's mixed
//! load on three `imx serve` nodes on one PostgreSQL, without faults, for
//! `--minutes` (30 by default), sampling every `--sample-seconds` (30)
//! each node's memory, file descriptors, threads and CPU, the `imx agent`'s
//! too, PostgreSQL's connections per node and the tables' rows and bytes;
//! then the invariant checker over every run. Prints one table row per
//! sample and a last line with the growth from the first sample after
//! warm-up to the last (docs/reliability.md, scenario 8).

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use e2e::checker::{self, Expect};
use e2e::cluster::{Node, NodeOptions};
use e2e::load;
use e2e::probe::{self, Process};
use e2e::target::Target;
use testkit::postgres::{ClusterUse, ScratchDatabase};
use tokio::sync::watch;

const NODES: usize = 3;

/// What the command line asks for.
#[derive(Debug)]
struct Args {
    minutes: u64,
    sample_seconds: u64,
    runs_per_minute: u64,
}

fn parse_args() -> anyhow::Result<Args> {
    let mut args = Args {
        minutes: 30,
        sample_seconds: 30,
        runs_per_minute: 120,
    };
    let mut words = std::env::args().skip(1);
    while let Some(flag) = words.next() {
        let value: u64 = words
            .next()
            .with_context(|| format!("{flag} needs a value"))?
            .parse()
            .with_context(|| format!("{flag} takes a whole number"))?;
        match flag.as_str() {
            "--minutes" => args.minutes = value,
            "--sample-seconds" => args.sample_seconds = value,
            "--runs-per-minute" => args.runs_per_minute = value,
            _ => bail!("unknown flag {flag} (--minutes, --sample-seconds, --runs-per-minute)"),
        }
    }
    if args.minutes == 0 || args.sample_seconds == 0 || args.runs_per_minute == 0 {
        bail!("every value must be at least 1");
    }
    Ok(args)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let args = parse_args()?;
    let Some(database) = ScratchDatabase::create("the soak", "imx_soak", ClusterUse::Shared).await
    else {
        bail!(
            "no test PostgreSQL: run `eval \"$(scripts/test-postgres)\"` first (scripts/soak does)"
        );
    };
    let began = Instant::now();
    println!("soak: {args:?}; machine: {}", probe::machine());
    let target = Target::start().await;
    let options = NodeOptions {
        lease_ms: 5_000,
        ..NodeOptions::default()
    };
    let mut nodes = Vec::new();
    for index in 0..NODES {
        let url = probe::with_application_name(&database.url, &format!("imx-node-{index}"));
        let node = Node::start(&url, &options).await;
        if node.base.is_empty() {
            bail!("node {index} did not start: {:#?}", node.lines());
        }
        nodes.push(node);
    }
    let bases = Arc::new(std::sync::Mutex::new(
        nodes
            .iter()
            .map(|node| node.base.clone())
            .collect::<Vec<_>>(),
    ));
    load::register(&bases).await;
    let agent_url = probe::with_application_name(&database.url, "imx-agent");
    let agent = load::spawn_agent(&agent_url, &target.base);
    let agent_pid = agent.id().context("the agent's pid")? as i32;
    let (stop, stopped) = watch::channel(false);
    let approver = load::spawn_approver(&database.url, Arc::clone(&bases), stopped);
    let length = Duration::from_secs(args.minutes * 60);
    let runs = (args.minutes * args.runs_per_minute) as usize;
    let starters = load::spawn_starters(
        &database.url,
        Arc::clone(&bases),
        &target.base,
        runs,
        length,
    );
    let pool = sqlx::PgPool::connect(&database.url)
        .await
        .context("connect for the samples")?;
    let name = probe::database_name(&database.url).to_owned();
    print_header();
    let mut samples = Vec::new();
    let every = Duration::from_secs(args.sample_seconds);
    let mut next = Instant::now();
    loop {
        let sample = Sample::take(&nodes, agent_pid, &pool, &name, began).await;
        println!("{}", sample.row());
        samples.push(sample);
        if starters.is_finished() {
            break;
        }
        next += every;
        tokio::time::sleep_until(next.into()).await;
    }
    let acknowledged = starters.await.context("the starters")?;
    let expect = Expect {
        acknowledged,
        within: Duration::from_secs(300),
        all_succeed: true,
    };
    let report = checker::check(&database.url, &expect, &target).await;
    let end = Sample::take(&nodes, agent_pid, &pool, &name, began).await;
    println!("{}", end.row());
    samples.push(end);
    stop.send(true).ok();
    let approved = approver.await.unwrap_or_default();
    for node in nodes {
        node.stop().await;
    }
    pool.close().await;
    drop(agent);
    println!("soak: {approved} approvals through the API; {report}");
    println!("soak: {}", growth(&samples));
    println!("soak: machine after: {}", probe::machine());
    Ok(())
}

/// One sample: each node, the agent, the database.
#[derive(Debug)]
struct Sample {
    at: Duration,
    nodes: Vec<Option<Process>>,
    agent: Option<Process>,
    connections: Vec<(String, i64)>,
    tables: Vec<(&'static str, i64, i64)>,
}

impl Sample {
    async fn take(
        nodes: &[Node],
        agent: i32,
        pool: &sqlx::PgPool,
        database: &str,
        began: Instant,
    ) -> Sample {
        Sample {
            at: began.elapsed(),
            nodes: nodes.iter().map(|node| probe::process(node.pid)).collect(),
            agent: probe::process(agent),
            connections: probe::connections(pool, database).await,
            tables: probe::table_sizes(pool).await,
        }
    }

    fn row(&self) -> String {
        let node = |process: &Option<Process>| match process {
            Some(p) => format!(
                "{} MiB {} fds {} thr {:.0} s",
                p.rss_kib / 1024,
                p.fds,
                p.threads,
                p.cpu.as_secs_f64()
            ),
            None => "gone".to_owned(),
        };
        let nodes: Vec<String> = self.nodes.iter().map(node).collect();
        let connections: Vec<String> = self
            .connections
            .iter()
            .map(|(name, count)| format!("{name}={count}"))
            .collect();
        let tables: Vec<String> = self
            .tables
            .iter()
            .map(|(table, rows, bytes)| format!("{table} {rows} ({} KiB)", bytes / 1024))
            .collect();
        format!(
            "| {:.0} | {} | {} | {} | {} |",
            self.at.as_secs_f64(),
            nodes.join(" / "),
            node(&self.agent),
            connections.join(" "),
            tables.join(", ")
        )
    }
}

fn print_header() {
    println!(
        "| s | nodes: RSS, fds, threads, CPU | agent | PostgreSQL connections | tables: rows (bytes) |"
    );
    println!("| ---: | --- | --- | --- | --- |");
}

/// From the second sample (the first after start-up and warm-up) to the
/// last: how each node's memory and descriptors moved.
fn growth(samples: &[Sample]) -> String {
    let (Some(first), Some(last)) = (samples.get(1).or(samples.first()), samples.last()) else {
        return "no samples".to_owned();
    };
    let moves: Vec<String> = first
        .nodes
        .iter()
        .zip(&last.nodes)
        .enumerate()
        .map(|(index, (a, b))| match (a, b) {
            (Some(a), Some(b)) => format!(
                "node {index}: RSS {} -> {} MiB, fds {} -> {}",
                a.rss_kib / 1024,
                b.rss_kib / 1024,
                a.fds,
                b.fds
            ),
            _ => format!("node {index}: gone"),
        })
        .collect();
    let connections = |sample: &Sample| {
        sample
            .connections
            .iter()
            .map(|(_, count)| count)
            .sum::<i64>()
    };
    format!(
        "from {:.0} s to {:.0} s: {}; connections {} -> {}",
        first.at.as_secs_f64(),
        last.at.as_secs_f64(),
        moves.join("; "),
        connections(first),
        connections(last)
    )
}
