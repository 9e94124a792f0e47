//! Store throughput: events/s appended as single-event transitions (event +
//! run row + step row + one enqueued task, one transaction each) and as
//! batches (many runs per transaction), each against a baseline measured in
//! the same run on the same database with the same driver: plain INSERTs of
//! the same event rows into a copy of the events table, no projections, no
//! queue, no hash chain. Prints a table with ratios.
//!
//! The append path with signed checkpoints (issue #17): 32 appenders at
//! once, full transitions, with the checkpoint writer off and on (every
//! 1,000 events, the default, and every 100); the ratio is on ÷ off,
//! measured in interleaved rounds of the same run.
//!
//! `cargo bench -p imx-engine --bench store`; PostgreSQL is measured when
//! `IMX_TEST_POSTGRES_URL` is set (see `scripts/test-postgres`).

use std::sync::Arc;
use std::time::Instant;

use chrono::Utc;
use engine::store::*;
use serde_json::json;
use testkit::bench::Baseline;
use testkit::postgres::{create_database, drop_database};

/// Single-event transactions per measurement.
const SINGLE_EVENTS: usize = 1_000;
/// Runs (one event each) per batched transaction.
const BATCH_RUNS: usize = 100;
/// Batched transactions per measurement.
const BATCHES: usize = 30;
/// Runs the single-event transitions cycle through.
const RUNS: usize = 50;
/// Interleaved repetitions of every workload; the median is reported.
const ROUNDS: usize = 5;
/// Appenders at once in the checkpoint workloads.
const CONCURRENT: usize = 32;
/// Transitions each appender writes per measurement.
const CONCURRENT_EACH: usize = 40;

struct Row {
    backend: &'static str,
    workload: &'static str,
    events: usize,
    seconds: f64,
    baseline: Option<f64>,
    /// PostgreSQL only: WAL bytes written per event (median round).
    wal_bytes: Option<f64>,
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let mut rows = Vec::new();
    let load_before = load_average();
    runtime.block_on(async {
        let folder = tempfile::tempdir().expect("temp dir");
        let url = format!("sqlite://{}/bench.db", folder.path().display());
        let store = Arc::new(SqliteStore::connect(&url, StoreConfig::default()).await.expect("open SQLite"));
        let baseline = Baseline::of_sqlite(&store);
        measure("sqlite", store.as_ref(), &baseline, &mut rows).await;
        with_checkpoints("sqlite", &store, &mut rows).await;
        match std::env::var("IMX_TEST_POSTGRES_URL") {
            Ok(admin_url) => {
                let url = create_database(&admin_url, "imx_bench").await.expect("create database");
                let store = Arc::new(PostgresStore::connect(&url, StoreConfig::default()).await.expect("open Postgres"));
                let baseline = Baseline::of_postgres(&store);
                measure("postgres", store.as_ref(), &baseline, &mut rows).await;
                with_checkpoints("postgres", &store, &mut rows).await;
                store.pool().close().await;
                drop_database(&admin_url, &url).await.expect("drop database");
            }
            Err(_) => eprintln!("!!! PostgreSQL NOT measured: IMX_TEST_POSTGRES_URL is unset (run scripts/test-postgres)"),
        }
    });
    print_table(&rows);
    println!(
        "\nload average (1 min) before: {load_before}, after: {}",
        load_average()
    );
}

/// The 1-minute load average (Linux), to note how busy the machine was.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|text| text.split_whitespace().next().map(str::to_owned))
        .unwrap_or_else(|| "unknown".to_owned())
}

async fn measure<S: EventStore>(
    backend: &'static str,
    store: &S,
    baseline: &Baseline,
    rows: &mut Vec<Row>,
) {
    baseline.create_table().await.expect("baseline table");
    let runs: Vec<RunId> = (0..RUNS).map(|_| new_id()).collect();
    for run_id in &runs {
        store
            .append(transition(*run_id, 0, true))
            .await
            .expect("start run");
    }
    let mut next_seq = 1;
    // Rounds interleave the workloads so that noise from other processes on
    // the machine hits baseline and store alike; medians are reported.
    let mut seconds: [Vec<f64>; 5] = Default::default();
    let mut wal: [Vec<f64>; 5] = Default::default();
    for round in 0..ROUNDS {
        let (started, lsn) = (
            Instant::now(),
            baseline.wal_position().await.expect("WAL position"),
        );
        baseline
            .insert_single(round * SINGLE_EVENTS, SINGLE_EVENTS)
            .await
            .expect("baseline inserts");
        seconds[0].push(secs(started));
        wal[0].push(baseline.wal_since(lsn).await.expect("WAL bytes"));
        for (slot, full) in [(1, false), (2, true)] {
            let (started, lsn) = (
                Instant::now(),
                baseline.wal_position().await.expect("WAL position"),
            );
            for index in 0..SINGLE_EVENTS {
                let (run_id, seq) = (runs[index % RUNS], next_seq + (index / RUNS) as u64);
                store
                    .append(transition(run_id, seq, full))
                    .await
                    .expect("append");
            }
            seconds[slot].push(secs(started));
            wal[slot].push(baseline.wal_since(lsn).await.expect("WAL bytes"));
            next_seq += (SINGLE_EVENTS / RUNS) as u64;
        }
        let (started, lsn) = (
            Instant::now(),
            baseline.wal_position().await.expect("WAL position"),
        );
        baseline
            .insert_batches(round * BATCHES, BATCHES, BATCH_RUNS)
            .await
            .expect("baseline batches");
        seconds[3].push(secs(started));
        wal[3].push(baseline.wal_since(lsn).await.expect("WAL bytes"));
        let (started, lsn) = (
            Instant::now(),
            baseline.wal_position().await.expect("WAL position"),
        );
        for _ in 0..BATCHES {
            let batch: Vec<AppendRequest> = (0..BATCH_RUNS)
                .map(|_| transition(new_id(), 0, true))
                .collect();
            let results = store.append_batch(batch).await.expect("batch");
            assert!(results.iter().all(Result::is_ok), "batch appends succeed");
        }
        seconds[4].push(secs(started));
        wal[4].push(baseline.wal_since(lsn).await.expect("WAL bytes"));
    }
    let single = SINGLE_EVENTS;
    let batched = BATCHES * BATCH_RUNS;
    let base_single = single as f64 / median(&seconds[0]);
    let base_batch = batched as f64 / median(&seconds[3]);
    let workloads = [
        ("baseline: INSERT, 1 event per tx", single, None),
        ("append: event only, 1 per tx", single, Some(base_single)),
        (
            "append: full transition, 1 per tx",
            single,
            Some(base_single),
        ),
        ("baseline: INSERT, 100 events per tx", batched, None),
        (
            "append_batch: 100 runs' transitions per tx",
            batched,
            Some(base_batch),
        ),
    ];
    for (slot, (workload, events, base)) in workloads.into_iter().enumerate() {
        let wal_bytes =
            matches!(baseline, Baseline::Postgres(_)).then(|| median(&wal[slot]) / events as f64);
        rows.push(Row {
            backend,
            workload,
            events,
            seconds: median(&seconds[slot]),
            baseline: base,
            wal_bytes,
        });
    }
}

/// 32 appenders at once with the checkpoint writer off, on at its default
/// (every 1,000 events) and on every 100 events, interleaved; medians.
async fn with_checkpoints<S: EventStore + 'static>(
    backend: &'static str,
    store: &Arc<S>,
    rows: &mut Vec<Row>,
) {
    use engine::checkpoint::{CHECKPOINT_EVERY_EVENTS_DEFAULT, Config, PrivateKey};
    let key = Arc::new(PrivateKey::from_seed("bench", [9; 32]).expect("a key"));
    let writer = |every_events: u64| Config {
        key: Arc::clone(&key),
        origin: "bench/log".to_owned(),
        every_events,
        every_ms: 1_000,
        witnesses: Vec::new(),
        holder: "bench".to_owned(),
    };
    let settings = [None, Some(CHECKPOINT_EVERY_EVENTS_DEFAULT), Some(100)];
    let mut seconds: [Vec<f64>; 3] = Default::default();
    let mut signed = 0;
    for _ in 0..ROUNDS {
        for (slot, every) in settings.iter().enumerate() {
            let handle =
                every.map(|every| engine::checkpoint::spawn(Arc::clone(store), writer(every)));
            let before = store
                .latest_checkpoint()
                .await
                .expect("latest")
                .map_or(0, |c| c.tree_size);
            let started = Instant::now();
            let appenders: Vec<_> = (0..CONCURRENT)
                .map(|_| {
                    let store = Arc::clone(store);
                    tokio::spawn(async move {
                        let run_id = new_id();
                        for seq in 0..CONCURRENT_EACH as u64 {
                            store
                                .append(transition(run_id, seq, true))
                                .await
                                .expect("append");
                        }
                    })
                })
                .collect();
            for appender in appenders {
                appender.await.expect("an appender");
            }
            seconds[slot].push(secs(started));
            if let Some(handle) = handle {
                handle.shutdown().await;
                let after = store
                    .latest_checkpoint()
                    .await
                    .expect("latest")
                    .map_or(0, |c| c.tree_size);
                signed += usize::from(after > before);
            }
        }
    }
    assert!(
        signed > 0,
        "the writer signed checkpoints while the appenders ran"
    );
    let events = CONCURRENT * CONCURRENT_EACH;
    let off = events as f64 / median(&seconds[0]);
    let workloads = [
        ("append: full transition, 32 at once, checkpoints off", None),
        ("… checkpoints on, every 1,000 events (vs off)", Some(off)),
        ("… checkpoints on, every 100 events (vs off)", Some(off)),
    ];
    for (slot, (workload, baseline)) in workloads.into_iter().enumerate() {
        rows.push(Row {
            backend,
            workload,
            events,
            seconds: median(&seconds[slot]),
            baseline,
            wal_bytes: None,
        });
    }
}

/// One step's transition: an event, and (when `full`) the run row, the step
/// row and the next task, as the runtime writes them: the run row keeps its
/// `created_at` (the run's start; here derived from its UUID v7) and moves
/// `updated_at`.
fn transition(run_id: RunId, expected_seq: u64, full: bool) -> AppendRequest {
    let now = Utc::now();
    let created_at = run_id
        .get_timestamp()
        .and_then(|at| {
            let (seconds, nanos) = at.to_unix();
            chrono::DateTime::from_timestamp(seconds as i64, nanos)
        })
        .unwrap_or(now);
    let payload = json!({ "step": "fetch", "attempt": 1, "output": { "status": 200, "body": "x".repeat(200) }, "at": now });
    let event = NewEvent {
        event_type: "StepSucceeded".to_owned(),
        schema_version: 1,
        payload: payload.clone(),
    };
    let mut request = AppendRequest::new(run_id, expected_seq, vec![event]);
    if full {
        request.projection.run = Some(RunRow {
            run_id,
            workflow: "bench".to_owned(),
            version: "sha256:bench".to_owned(),
            status: "running".to_owned(),
            input: json!({ "order": 42 }),
            output: None,
            error: None,
            parent_run_id: None,
            forked_from: None,
            idempotency_key: None,
            created_at,
            updated_at: now,
        });
        request.projection.steps.push(StepRow {
            run_id,
            step_id: "fetch".to_owned(),
            status: "succeeded".to_owned(),
            attempts: 1,
            output: Some(payload["output"].clone()),
            error: None,
            updated_at: now,
        });
        request.enqueue.push(NewTask {
            task_id: new_id(),
            queue: "bench".to_owned(),
            payload: json!({ "step": "next" }),
            available_at: None,
            lease: None,
        });
    }
    request
}

/// The middle value of the rounds' measurements.
fn median(values: &[f64]) -> f64 {
    let mut values = values.to_vec();
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn secs(started: Instant) -> f64 {
    started.elapsed().as_secs_f64()
}

fn print_table(rows: &[Row]) {
    println!(
        "| backend | workload | events | seconds | events/s | vs baseline | WAL bytes/event |"
    );
    println!("| --- | --- | ---: | ---: | ---: | ---: | ---: |");
    for row in rows {
        let events_per_second = row.events as f64 / row.seconds;
        let ratio = row.baseline.map_or_else(
            || "1.00 (baseline)".to_owned(),
            |base| format!("{:.2}", events_per_second / base),
        );
        let wal = row
            .wal_bytes
            .map_or_else(|| "-".to_owned(), |bytes| format!("{bytes:.0}"));
        println!(
            "| {} | {} | {} | {:.3} | {:.0} | {} | {} |",
            row.backend, row.workload, row.events, row.seconds, events_per_second, ratio, wal
        );
    }
}
