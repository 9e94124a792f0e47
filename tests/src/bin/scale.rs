//! The scale-out bench (`scripts/bench-scale`; a measurement, nothing
//! asserted): for each N of `--nodes` (1,2,3), N `imx serve` processes on
//! one PostgreSQL (a fresh database per cell) carry `--runs` runs kept
//! `--concurrency` in flight (a closed loop: a new start through GraphQL,
//! on the nodes in turn, as soon as a run ends), for each workflow
//! (a 10-step noop chain, and a 3-step chain of `http` calls to a local
//! server). Prints runs/s and run latency (`created_at` → end, from the
//! `runs` table), and the CPU each node, PostgreSQL (all the cluster's
//! processes) and the bench itself used over the measured window, in
//! cores (docs/scaling.md).

use std::collections::HashSet;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use e2e::cluster::{Node, NodeOptions};
use e2e::graphql;
use e2e::probe;
use e2e::target::Target;
use serde_json::json;
use testkit::postgres::{ClusterUse, ScratchDatabase};
use uuid::Uuid;

/// How often the bench looks for ended runs.
const POLL_MS: u64 = 5;
/// A cell whose runs have not ended after this long fails the bench.
const CELL_MS_MAX: u64 = 600_000;

const NOOP: &str = r#"
name: scale-noop
steps:
  s1: { uses: noop }
  s2: { needs: [s1], uses: noop }
  s3: { needs: [s2], uses: noop }
  s4: { needs: [s3], uses: noop }
  s5: { needs: [s4], uses: noop }
  s6: { needs: [s5], uses: noop }
  s7: { needs: [s6], uses: noop }
  s8: { needs: [s7], uses: noop }
  s9: { needs: [s8], uses: noop }
  s10: { needs: [s9], uses: noop }
"#;

const HTTP: &str = r#"
name: scale-http
input: { type: object, required: [target] }
steps:
  a: { uses: http, with: { method: POST, url: "{{ input.target }}/a" } }
  b: { needs: [a], uses: http, with: { method: POST, url: "{{ input.target }}/b" } }
  c: { needs: [b], uses: http, with: { method: POST, url: "{{ input.target }}/c" } }
"#;

#[derive(Debug)]
struct Args {
    nodes: Vec<usize>,
    runs: usize,
    concurrency: usize,
    workflows: Vec<String>,
}

fn parse_args() -> anyhow::Result<Args> {
    let mut args = Args {
        nodes: vec![1, 2, 3],
        runs: 1000,
        concurrency: 32,
        workflows: vec!["noop".into(), "http".into()],
    };
    let mut words = std::env::args().skip(1);
    while let Some(flag) = words.next() {
        let value = words
            .next()
            .with_context(|| format!("{flag} needs a value"))?;
        let number = || {
            value
                .parse::<usize>()
                .with_context(|| format!("{flag} takes a whole number"))
        };
        match flag.as_str() {
            "--nodes" => {
                args.nodes = value
                    .split(',')
                    .map(|n| {
                        n.parse::<usize>()
                            .with_context(|| format!("--nodes: {n} is not a number"))
                    })
                    .collect::<anyhow::Result<_>>()?;
            }
            "--runs" => args.runs = number()?,
            "--concurrency" => args.concurrency = number()?,
            "--workflow" => args.workflows = value.split(',').map(str::to_owned).collect(),
            _ => bail!(
                "unknown flag {flag} (--nodes 1,2,3, --runs N, --concurrency N, --workflow noop,http)"
            ),
        }
    }
    if args.nodes.contains(&0) || args.runs == 0 || args.concurrency == 0 {
        bail!("--nodes, --runs and --concurrency must be at least 1");
    }
    if let Some(bad) = args
        .workflows
        .iter()
        .find(|w| !matches!(w.as_str(), "noop" | "http"))
    {
        bail!("--workflow: {bad} is neither noop nor http");
    }
    Ok(args)
}

/// One measured cell.
#[derive(Debug)]
struct Cell {
    workflow: String,
    nodes: usize,
    runs: usize,
    seconds: f64,
    p50_ms: f64,
    p99_ms: f64,
    node_cores: Vec<f64>,
    postgres_cores: f64,
    bench_cores: f64,
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let args = parse_args()?;
    println!("scale: {args:?}");
    println!("imx: {}", e2e::binary::imx().display());
    println!("machine: {}", probe::machine());
    let target = Target::start().await;
    let mut cells = Vec::new();
    for workflow in &args.workflows {
        for &nodes in &args.nodes {
            let cell = measure(workflow, nodes, &args, &target).await?;
            println!("{}", row(&cell));
            cells.push(cell);
        }
    }
    println!("\nmachine after: {}\n", probe::machine());
    println!(
        "| workflow | nodes | runs | runs/s | vs 1 node | p50 ms | p99 ms | CPU per node (cores) | PostgreSQL (cores) | bench (cores) |"
    );
    println!("| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: | ---: |");
    for cell in &cells {
        let one = cells
            .iter()
            .find(|c| c.workflow == cell.workflow && c.nodes == 1)
            .map(|c| c.runs as f64 / c.seconds);
        let rate = cell.runs as f64 / cell.seconds;
        let ratio = one.map_or("-".to_owned(), |one| format!("{:.2}x", rate / one));
        let per_node: Vec<String> = cell.node_cores.iter().map(|c| format!("{c:.2}")).collect();
        println!(
            "| {} | {} | {} | {rate:.0} | {ratio} | {:.1} | {:.1} | {} | {:.2} | {:.2} |",
            cell.workflow,
            cell.nodes,
            cell.runs,
            cell.p50_ms,
            cell.p99_ms,
            per_node.join(" / "),
            cell.postgres_cores,
            cell.bench_cores
        );
    }
    Ok(())
}

fn row(cell: &Cell) -> String {
    format!(
        "{} x{}: {} runs in {:.1} s = {:.0} runs/s, p50 {:.1} ms, p99 {:.1} ms, node CPU {:?} cores, PostgreSQL {:.2}, bench {:.2}",
        cell.workflow,
        cell.nodes,
        cell.runs,
        cell.seconds,
        cell.runs as f64 / cell.seconds,
        cell.p50_ms,
        cell.p99_ms,
        cell.node_cores,
        cell.postgres_cores,
        cell.bench_cores
    )
}

/// N nodes on a fresh database, the runs, the figures.
async fn measure(
    workflow: &str,
    count: usize,
    args: &Args,
    target: &Target,
) -> anyhow::Result<Cell> {
    let Some(database) =
        ScratchDatabase::create("the scale bench", "imx_scale", ClusterUse::Shared).await
    else {
        bail!(
            "no test PostgreSQL: run `eval \"$(scripts/test-postgres)\"` first (scripts/bench-scale does)"
        );
    };
    // The bench is one caller: lift the API's per-caller rate limit.
    let options = NodeOptions {
        lease_ms: 30_000,
        workers: 32,
        args: ["--rate-per-second", "1000000", "--rate-burst", "1000000"]
            .map(str::to_owned)
            .to_vec(),
        ..NodeOptions::default()
    };
    let mut nodes = Vec::new();
    for index in 0..count {
        let url = probe::with_application_name(&database.url, &format!("imx-node-{index}"));
        let node = Node::start(&url, &options).await;
        if node.base.is_empty() {
            bail!("node {index} did not start: {:#?}", node.lines());
        }
        nodes.push(node);
    }
    let client = graphql::client();
    let (source, name, input) = match workflow {
        "noop" => (NOOP, "scale-noop", json!({})),
        _ => (HTTP, "scale-http", json!({"target": target.base})),
    };
    let answer = graphql::post(
        &client,
        &nodes[0].base,
        graphql::REGISTER,
        json!({"source": source}),
    )
    .await
    .map_err(anyhow::Error::msg)?;
    if answer.data("registerWorkflow").is_none() {
        bail!("registering {name} failed: {:?}", answer.body);
    }
    let pool = sqlx::PgPool::connect(&database.url)
        .await
        .context("connect")?;
    let node_cpu = |nodes: &[Node]| {
        nodes
            .iter()
            .map(|n| probe::cpu_time(n.pid).unwrap_or_default())
            .collect::<Vec<_>>()
    };
    let self_pid = std::process::id() as i32;
    let (nodes_before, postgres_before, bench_before) = (
        node_cpu(&nodes),
        probe::postgres_cpu(),
        probe::cpu_time(self_pid).unwrap_or_default(),
    );
    let began = Instant::now();
    let mut in_flight: HashSet<Uuid> = HashSet::new();
    let (mut started, mut ended, mut turn) = (0usize, 0usize, 0usize);
    while ended < args.runs {
        // The starts that fill the window go out together, on the nodes in turn.
        let mut starts = tokio::task::JoinSet::new();
        while in_flight.len() + starts.len() < args.concurrency && started < args.runs {
            let base = nodes[turn % nodes.len()].base.clone();
            turn += 1;
            started += 1;
            let (client, variables) = (client.clone(), json!({"workflow": name, "input": input}));
            starts.spawn(
                async move { graphql::post(&client, &base, graphql::START, variables).await },
            );
        }
        while let Some(answer) = starts.join_next().await {
            let answer = answer
                .context("a start task")?
                .map_err(anyhow::Error::msg)?;
            let id = answer.body["data"]["startRun"]["run"]["id"]
                .as_str()
                .and_then(|id| Uuid::parse_str(id).ok())
                .with_context(|| format!("a start was refused: {:?}", answer.body))?;
            in_flight.insert(id);
        }
        tokio::time::sleep(Duration::from_millis(POLL_MS)).await;
        let ids: Vec<Uuid> = in_flight.iter().copied().collect();
        let done: Vec<(Uuid, String)> = sqlx::query_as(
            "SELECT run_id, status FROM runs WHERE run_id = ANY($1) \
             AND status IN ('succeeded', 'failed', 'cancelled')",
        )
        .bind(&ids)
        .fetch_all(&pool)
        .await?;
        for (id, status) in done {
            if status != "succeeded" {
                bail!("run {id} ended {status}");
            }
            in_flight.remove(&id);
            ended += 1;
        }
        if began.elapsed() > Duration::from_millis(CELL_MS_MAX) {
            bail!(
                "{ended} of {} runs ended within {CELL_MS_MAX} ms",
                args.runs
            );
        }
    }
    let seconds = began.elapsed().as_secs_f64();
    let cores =
        |before: Duration, after: Duration| after.saturating_sub(before).as_secs_f64() / seconds;
    let node_cores = nodes_before
        .iter()
        .zip(node_cpu(&nodes))
        .map(|(b, a)| cores(*b, a))
        .collect();
    let postgres_cores = cores(postgres_before, probe::postgres_cpu());
    let bench_cores = cores(bench_before, probe::cpu_time(self_pid).unwrap_or_default());
    let (p50_ms, p99_ms): (f64, f64) = sqlx::query_as(
        "SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY ms), percentile_cont(0.99) WITHIN GROUP (ORDER BY ms) \
         FROM (SELECT extract(epoch FROM updated_at - created_at) * 1000 AS ms FROM runs \
               WHERE workflow = $1 AND parent_run_id IS NULL) AS latencies",
    )
    .bind(name)
    .fetch_one(&pool)
    .await?;
    pool.close().await;
    for node in nodes {
        node.stop().await;
    }
    Ok(Cell {
        workflow: workflow.to_owned(),
        nodes: count,
        runs: args.runs,
        seconds,
        p50_ms,
        p99_ms,
        node_cores,
        postgres_cores,
        bench_cores,
    })
}
