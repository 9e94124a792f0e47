//! `imx bench run`: runs of a 10-step workflow through an in-process runtime
//! (the standard executors; `http` against a real local server) on scratch
//! databases, one at a time and concurrently, printing runs/s, step
//! transitions/s and run latency beside the database's raw commit rate
//! (single-row INSERT transactions) measured in the same run. No result is
//! asserted: it is a measurement, see `docs/bench-runtime.md`.

use std::collections::{HashMap, HashSet};
use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use engine::runtime::{CommitCounts, Config, Runtime, StartRequest, WORKERS_DEFAULT};
use engine::store::prelude::*;
use engine::store::{RunId, RunQuery, Store};
use testkit::bench::Baseline;
use tokio::sync::{broadcast, oneshot};

use crate::cli::{BenchBackend, BenchRunArgs, BenchWorkflow, ExecutorArgs};

/// Steps of each benchmark workflow (a chain).
const STEPS: usize = 10;
/// Single-row INSERT transactions that measure the raw commit rate.
const BASELINE_COMMITS: usize = 300;
/// Bare GETs of the bench server that measure one HTTP round trip.
const BASELINE_GETS: usize = 300;
/// A run that has not ended after this long fails the benchmark, in ms.
const RUN_WAIT_MS_MAX: u64 = 120_000;

/// One measured cell of the table.
struct Row {
    backend: &'static str,
    workflow: &'static str,
    concurrency: usize,
    runs: usize,
    seconds: f64,
    latencies: Vec<Duration>,
    commits_per_second: f64,
    commits: CommitCounts,
    /// What one serial run cannot beat (concurrency 1 only), in ms.
    floor: Option<Floor>,
}

/// The serial baseline of a run, measured in the same cell: 10 raw commits
/// (one per step result) plus, for `http`, 10 bare GETs of the bench server.
#[derive(Clone, Copy)]
struct Floor {
    commit_ms: f64,
    /// p50 of one bare GET over a kept-alive connection (`None`: not http).
    get_ms: Option<f64>,
    /// p50 of one bare GET over a new connection each time.
    get_new_connection_ms: Option<f64>,
}

impl Floor {
    fn run_ms(&self, workflow: &str) -> f64 {
        match workflow {
            // One append records the whole run.
            "bench-noop" => self.commit_ms,
            _ => STEPS as f64 * (self.commit_ms + self.get_ms.unwrap_or(0.0)),
        }
    }
}

pub async fn run(args: BenchRunArgs) -> anyhow::Result<ExitCode> {
    if args.runs == 0 || args.concurrency.contains(&0) {
        bail!("--runs and every --concurrency must be at least 1");
    }
    let server = if args.workflow.contains(&BenchWorkflow::Http) {
        Some(LocalServer::start().await?)
    } else {
        None
    };
    println!("machine: {}", machine());
    println!("commit_batch_max: {}", args.commit_batch_max);
    println!("local_dispatch: {}", args.local_dispatch);
    let mut rows = Vec::new();
    for backend in &args.backend {
        match backend {
            BenchBackend::Sqlite => {
                let folder = tempfile::tempdir().context("cannot make a temp dir")?;
                let url = format!("sqlite://{}/bench.db", folder.path().display());
                bench_store("sqlite", &url, &args, server.as_ref(), &mut rows).await?;
            }
            BenchBackend::Postgres => {
                let Some(admin_url) = &args.postgres_url else {
                    eprintln!(
                        "!!! PostgreSQL NOT measured: give --postgres-url or IMX_BENCH_POSTGRES_URL"
                    );
                    continue;
                };
                let url = testkit::postgres::create_database(admin_url, "imx_bench")
                    .await
                    .context("cannot create a scratch database")?;
                let measured =
                    bench_store("postgres", &url, &args, server.as_ref(), &mut rows).await;
                testkit::postgres::drop_database(admin_url, &url)
                    .await
                    .context("cannot drop the scratch database")?;
                measured?;
            }
        }
    }
    println!();
    print_table(&rows);
    println!("\nmachine after: {}", machine());
    Ok(ExitCode::SUCCESS)
}

/// Every workflow and concurrency on one fresh database.
async fn bench_store(
    backend: &'static str,
    url: &str,
    args: &BenchRunArgs,
    server: Option<&LocalServer>,
    rows: &mut Vec<Row>,
) -> anyhow::Result<()> {
    let store = engine::store::open(url)
        .await
        .with_context(|| format!("cannot open {backend}"))?;
    let baseline = Baseline::of(&store);
    baseline.create_table().await?;
    if let Some(setting) = baseline.synchronous_commit().await? {
        println!("{backend}: synchronous_commit = {setting}");
    }
    let most = args.concurrency.iter().copied().max().unwrap_or(1);
    let config = Config {
        workers: most.max(WORKERS_DEFAULT),
        resume_on_start: false,
        commit_batch_max: args.commit_batch_max,
        local_dispatch: args.local_dispatch,
        // Templates are evaluated as on a node.
        evaluator: crate::serve::sandbox(&crate::cli::TemplateArgs::default())?,
        ..Config::default()
    };
    // The `http` workflow calls the bench's own server on loopback, which the
    // node egress policy denies by default: allow exactly that address.
    let executors = crate::serve::executors(ExecutorArgs {
        egress_allow: vec![LOCAL_SERVER_ADDRESS.to_owned()],
        ..ExecutorArgs::default()
    })?;
    let runtime = Runtime::new(Arc::new(store), executors, config);
    let handle = runtime.start().await?;
    let ends = Ends::follow(&runtime);
    // Killed when dropped, at the end of this backend's cells.
    let _agent = match args.workflow.contains(&BenchWorkflow::Agent) {
        true => Some(start_agent(url, most)?),
        false => None,
    };
    let mut baseline_position = 0;
    for workflow in &args.workflow {
        let (name, source) = source(*workflow, server)?;
        runtime.register_source(&source).await?;
        for &concurrency in &args.concurrency {
            let bench = Bench {
                runtime: &runtime,
                ends: &ends,
                workflow: name,
                // The agent process records the runs' last steps: their ends
                // are not this process's, so they are looked for.
                look_every: (*workflow == BenchWorkflow::Agent)
                    .then_some(Duration::from_millis(AGENT_END_LOOK_MS)),
            };
            // Warm caches and connections; not measured.
            bench.runs(concurrency.min(args.runs), concurrency).await?;
            let started = Instant::now();
            baseline
                .insert_single(baseline_position, BASELINE_COMMITS)
                .await?;
            baseline_position += BASELINE_COMMITS;
            let commits_per_second = BASELINE_COMMITS as f64 / started.elapsed().as_secs_f64();
            let floor = match (concurrency, server) {
                (1, Some(server)) if *workflow == BenchWorkflow::Http => Some(Floor {
                    commit_ms: 1_000.0 / commits_per_second,
                    get_ms: Some(bare_get_ms(&server.url, true).await?),
                    get_new_connection_ms: Some(bare_get_ms(&server.url, false).await?),
                }),
                (1, _) => Some(Floor {
                    commit_ms: 1_000.0 / commits_per_second,
                    get_ms: None,
                    get_new_connection_ms: None,
                }),
                _ => None,
            };
            let before = runtime.commit_counts();
            let started = Instant::now();
            let latencies = bench.runs(args.runs, concurrency).await?;
            let seconds = started.elapsed().as_secs_f64();
            let after = runtime.commit_counts();
            bench.check_all_succeeded().await?;
            rows.push(Row {
                backend,
                workflow: name,
                concurrency,
                runs: args.runs,
                seconds,
                latencies,
                commits_per_second,
                commits: CommitCounts {
                    transactions: after.transactions - before.transactions,
                    appends: after.appends - before.appends,
                    queued: 0,
                },
                floor,
            });
            eprintln!("{backend} {name} x{concurrency}: {seconds:.2} s");
        }
    }
    handle.shutdown().await;
    Ok(())
}

struct Bench<'a> {
    runtime: &'a Arc<Runtime<Store>>,
    ends: &'a Arc<Ends>,
    workflow: &'static str,
    /// Read the run's status this often besides waiting for its end.
    look_every: Option<Duration>,
}

impl Bench<'_> {
    /// `runs` runs, `concurrency` at a time; each run's latency from its
    /// start request to its end.
    async fn runs(&self, runs: usize, concurrency: usize) -> anyhow::Result<Vec<Duration>> {
        let next = Arc::new(AtomicUsize::new(0));
        let mut clients = tokio::task::JoinSet::new();
        for _ in 0..concurrency {
            let (runtime, ends) = (Arc::clone(self.runtime), Arc::clone(self.ends));
            let (next, workflow, look_every) = (Arc::clone(&next), self.workflow, self.look_every);
            clients.spawn(async move {
                let mut latencies = Vec::new();
                while next.fetch_add(1, Ordering::Relaxed) < runs {
                    let started = Instant::now();
                    let request = StartRequest {
                        workflow: workflow.to_owned(),
                        input: serde_json::json!({}),
                        ..StartRequest::default()
                    };
                    let run_id = runtime.start_run(request).await?.run_id;
                    ends.wait(&runtime, run_id, look_every).await?;
                    latencies.push(started.elapsed());
                }
                anyhow::Ok(latencies)
            });
        }
        let mut latencies = Vec::with_capacity(runs);
        while let Some(client) = clients.join_next().await {
            latencies.extend(client??);
        }
        Ok(latencies)
    }

    /// A benchmark of failing runs would measure the wrong thing.
    async fn check_all_succeeded(&self) -> anyhow::Result<()> {
        for status in ["failed", "cancelled"] {
            let query = RunQuery {
                status: Some(status.to_owned()),
                workflow: Some(self.workflow.to_owned()),
                limit: 1,
                ..RunQuery::default()
            };
            if let Some(run) = self.runtime.store().list_runs(&query).await?.items.first() {
                bail!(
                    "run {} of {} {status}: {:?}",
                    run.row.run_id,
                    self.workflow,
                    run.row.error
                );
            }
        }
        Ok(())
    }
}

/// Hands each run's end (from [`Runtime::ends`]) to whoever waits for it.
#[derive(Default)]
struct Ends {
    state: Mutex<EndsState>,
}

#[derive(Default)]
struct EndsState {
    /// Ended runs nobody waited for yet.
    ended: HashSet<RunId>,
    /// `true`: ended; `false`: ends were lost, look for yourself.
    waiting: HashMap<RunId, oneshot::Sender<bool>>,
}

impl Ends {
    fn follow(runtime: &Arc<Runtime<Store>>) -> Arc<Ends> {
        let ends = Arc::new(Ends::default());
        let mut receiver = runtime.ends();
        let follower = Arc::clone(&ends);
        tokio::spawn(async move {
            loop {
                let ended = receiver.recv().await;
                let Ok(mut state) = follower.state.lock() else {
                    return;
                };
                match ended {
                    Ok(run_id) => match state.waiting.remove(&run_id) {
                        Some(waiter) => drop(waiter.send(true)),
                        None => drop(state.ended.insert(run_id)),
                    },
                    Err(broadcast::error::RecvError::Lagged(_)) => {
                        for (_, waiter) in state.waiting.drain() {
                            let _ = waiter.send(false);
                        }
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                }
            }
        });
        ends
    }

    async fn wait(
        &self,
        runtime: &Runtime<Store>,
        run_id: RunId,
        look_every: Option<Duration>,
    ) -> anyhow::Result<()> {
        let deadline = tokio::time::Instant::now() + Duration::from_millis(RUN_WAIT_MS_MAX);
        loop {
            let answer = {
                let mut state = self
                    .state
                    .lock()
                    .map_err(|_| anyhow::anyhow!("run ends lock poisoned"))?;
                if state.ended.remove(&run_id) {
                    return Ok(());
                }
                let (sender, answer) = oneshot::channel();
                state.waiting.insert(run_id, sender);
                answer
            };
            let look_at = look_every.map_or(deadline, |every| {
                deadline.min(tokio::time::Instant::now() + every)
            });
            match tokio::time::timeout_at(look_at, answer).await {
                Ok(Ok(true)) => return Ok(()),
                Ok(_) => {
                    if runtime.state(run_id).await?.is_finished() {
                        return Ok(());
                    }
                }
                Err(_) if tokio::time::Instant::now() >= deadline => {
                    bail!("run {run_id} did not end within {RUN_WAIT_MS_MAX} ms")
                }
                Err(_) => {
                    let ended = runtime.store().get_run(run_id).await?.is_some_and(|run| {
                        matches!(
                            run.row.status.as_str(),
                            "succeeded" | "failed" | "cancelled"
                        )
                    });
                    if ended {
                        return Ok(());
                    }
                }
            }
        }
    }
}

/// A local HTTP server for the `http` steps; stops when dropped.
struct LocalServer {
    url: String,
    task: tokio::task::JoinHandle<()>,
}

/// Where the bench's local HTTP server listens (port chosen by the system).
const LOCAL_SERVER_ADDRESS: &str = "127.0.0.1";

impl LocalServer {
    async fn start() -> anyhow::Result<LocalServer> {
        let app = axum::Router::new().route(
            "/step",
            axum::routing::get(|| async { axum::Json(serde_json::json!({ "ok": true })) }),
        );
        let listener = tokio::net::TcpListener::bind((LOCAL_SERVER_ADDRESS, 0))
            .await
            .context("cannot listen on a loopback port")?;
        let url = format!("http://{}/step", listener.local_addr()?);
        let task = tokio::spawn(async move {
            if let Err(error) = axum::serve(listener, app).await {
                eprintln!("imx bench: the local HTTP server stopped: {error}");
            }
        });
        Ok(LocalServer { url, task })
    }
}

impl Drop for LocalServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The queue of the `agent` workflow's steps.
const AGENT_QUEUE: &str = "bench";
/// How often a waiting client reads an `agent` run's status, in ms.
const AGENT_END_LOOK_MS: u64 = 2;

/// `imx agent` (this very binary) on the bench's store, serving the
/// `agent` workflow's queue with `workers` slots; killed when dropped.
fn start_agent(url: &str, workers: usize) -> anyhow::Result<tokio::process::Child> {
    let program = std::env::current_exe().context("cannot find the imx binary")?;
    tokio::process::Command::new(program)
        .env("IMX_DATABASE_URL", url)
        .args(["agent", "--queue", AGENT_QUEUE, "--workers"])
        .arg(workers.to_string())
        .args(["--", "sh", "-c", "cat >/dev/null"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .context("cannot start imx agent")
}

/// The workflow's name and YAML: a chain of [`STEPS`] steps.
fn source(
    workflow: BenchWorkflow,
    server: Option<&LocalServer>,
) -> anyhow::Result<(&'static str, String)> {
    let (name, step) = match workflow {
        BenchWorkflow::Noop => ("bench-noop", "uses: noop, with: { i: INDEX }".to_owned()),
        BenchWorkflow::Http => {
            let server = server.context("the local HTTP server is not running")?;
            let step = format!(
                "uses: http, with: {{ method: GET, url: \"{}\" }}",
                server.url
            );
            ("bench-http", step)
        }
        BenchWorkflow::Agent => (
            "bench-agent",
            format!("uses: agent, with: {{ queue: {AGENT_QUEUE} }}"),
        ),
    };
    let mut yaml = format!("name: {name}\nsteps:\n");
    for index in 1..=STEPS {
        let needs = match index {
            1 => String::new(),
            _ => format!("needs: [s{:02}], ", index - 1),
        };
        let step = step.replace("INDEX", &index.to_string());
        yaml.push_str(&format!("  s{index:02}: {{ {needs}{step} }}\n"));
    }
    Ok((name, yaml))
}

/// CPUs and load average, to judge how quiet the machine was.
fn machine() -> String {
    let cpus = std::thread::available_parallelism().map_or(0, usize::from);
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let load: Vec<&str> = load.split_whitespace().take(3).collect();
    format!("{cpus} CPUs, load average {}", load.join(" "))
}

/// Nearest-rank percentile of sorted `values`, in ms.
fn percentile_ms(sorted: &[Duration], percent: usize) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = (sorted.len() * percent).div_ceil(100).max(1);
    sorted[rank - 1].as_secs_f64() * 1_000.0
}

fn print_table(rows: &[Row]) {
    println!(
        "| backend | workflow | concurrency | runs | runs/s | step transitions/s | p50 ms | p99 ms | raw commits/s | transitions/s ÷ raw commits/s | appends per commit | serial floor ms | p50 ÷ floor |"
    );
    println!(
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
    );
    for row in rows {
        let mut latencies = row.latencies.clone();
        latencies.sort();
        let runs_per_second = row.runs as f64 / row.seconds;
        let transitions = runs_per_second * STEPS as f64;
        let per_commit = row.commits.appends as f64 / row.commits.transactions.max(1) as f64;
        let p50 = percentile_ms(&latencies, 50);
        let (floor, ratio) = match row.floor {
            Some(floor) => {
                let run_ms = floor.run_ms(row.workflow);
                (format!("{run_ms:.1}"), format!("{:.2}", p50 / run_ms))
            }
            None => ("-".to_owned(), "-".to_owned()),
        };
        println!(
            "| {} | {} | {} | {} | {:.0} | {:.0} | {:.1} | {:.1} | {:.0} | {:.2} | {:.1} | {} | {} |",
            row.backend,
            row.workflow,
            row.concurrency,
            row.runs,
            runs_per_second,
            transitions,
            p50,
            percentile_ms(&latencies, 99),
            row.commits_per_second,
            transitions / row.commits_per_second,
            per_commit,
            floor,
            ratio,
        );
    }
    println!();
    for row in rows {
        if let Some(Floor {
            commit_ms,
            get_ms: Some(get_ms),
            get_new_connection_ms: Some(fresh_ms),
        }) = row.floor
        {
            println!(
                "{} {}: one raw commit {commit_ms:.3} ms (mean of {BASELINE_COMMITS}); one bare GET \
                 {get_ms:.3} ms kept alive, {fresh_ms:.3} ms on a new connection (p50 of {BASELINE_GETS})",
                row.backend, row.workflow
            );
        }
    }
}

/// p50 of one GET of `url` in ms, [`BASELINE_GETS`] in a row, over one
/// kept-alive connection (`keep_alive`) or a new connection each time: the
/// round trip an `http` step cannot beat, and what connection reuse saves.
async fn bare_get_ms(url: &str, keep_alive: bool) -> anyhow::Result<f64> {
    let mut client = reqwest::Client::builder().no_proxy();
    if !keep_alive {
        client = client.pool_max_idle_per_host(0);
    }
    let client = client.build().context("cannot build an HTTP client")?;
    let mut times = Vec::with_capacity(BASELINE_GETS);
    for _ in 0..BASELINE_GETS {
        let started = Instant::now();
        let answer = client.get(url).send().await.context("bare GET")?;
        answer.bytes().await.context("bare GET body")?;
        times.push(started.elapsed());
    }
    times.sort();
    Ok(percentile_ms(&times, 50))
}
