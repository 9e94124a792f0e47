//! Outages: PostgreSQL restarted (`pg_ctl restart -m immediate`) in the middle
//! of 2,000 appends from 8 tasks loses no acknowledged append and the store
//! recovers by itself; an unreachable database is a retryable error.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use engine::chain::{self, LogHead};
use engine::store::*;
use serde_json::json;

use super::{ClusterUse, postgres_database_for};

const TASKS: usize = 8;
const APPENDS_PER_TASK: usize = 250;
/// The restart is triggered once this many appends were acknowledged.
const RESTART_AFTER_APPENDS: usize = 500;
/// Crash recovery of a cluster holding many test databases can take a while.
const OUTAGE_POLICY: RetryPolicy = RetryPolicy {
    attempts_max: 1_000,
    backoff_initial_ms: 20,
    backoff_max_ms: 1_000,
    elapsed_ms_max: 120_000,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_restart_loses_no_acknowledged_append() {
    let Some(database) = postgres_database_for(ClusterUse::Exclusive).await else {
        return;
    };
    let data = std::env::var("IMX_TEST_POSTGRES_DATA")
        .expect("IMX_TEST_POSTGRES_DATA is unset: start the cluster with `eval \"$(scripts/test-postgres)\"`");
    let user = std::env::var("IMX_TEST_POSTGRES_USER").unwrap_or_else(|_| "postgres".to_owned());
    let bin = std::env::var("IMX_TEST_POSTGRES_BIN")
        .unwrap_or_else(|_| "/usr/lib/postgresql/15/bin".to_owned());
    let store = Arc::new(
        PostgresStore::connect(&database.url, StoreConfig::default())
            .await
            .expect("connect"),
    );
    let acknowledged = Arc::new(AtomicUsize::new(0));
    let retried = Arc::new(AtomicUsize::new(0));
    let (restart_now, restart_signal) = tokio::sync::oneshot::channel::<()>();
    let restart_now = Arc::new(std::sync::Mutex::new(Some(restart_now)));

    let restarter = tokio::spawn(async move {
        restart_signal.await.expect("restart signal");
        tokio::task::spawn_blocking(move || restart_postgres(&bin, &data, &user))
            .await
            .expect("restart task")
    });
    let mut appenders = Vec::new();
    for task in 0..TASKS {
        let (store, acknowledged, retried) = (
            Arc::clone(&store),
            Arc::clone(&acknowledged),
            Arc::clone(&retried),
        );
        let restart_now = Arc::clone(&restart_now);
        appenders.push(tokio::spawn(async move {
            let run_id = new_id();
            let mut acked = Vec::new();
            for n in 0..APPENDS_PER_TASK {
                let tick = NewEvent {
                    event_type: "Tick".to_owned(),
                    schema_version: 1,
                    payload: json!({ "task": task, "n": n }),
                };
                let request = AppendRequest::new(run_id, n as u64, vec![tick]);
                let appended = retry(&OUTAGE_POLICY, || {
                    let (store, request, retried) =
                        (Arc::clone(&store), request.clone(), Arc::clone(&retried));
                    async move {
                        let result = store.append(request).await;
                        if result.as_ref().is_err_and(Error::is_retryable) {
                            retried.fetch_add(1, Ordering::Relaxed);
                        }
                        result
                    }
                })
                .await
                .unwrap_or_else(|error| panic!("task {task} append {n} failed for good: {error}"));
                acked.extend(appended.events);
                if acknowledged.fetch_add(1, Ordering::SeqCst) + 1 == RESTART_AFTER_APPENDS
                    && let Some(signal) = restart_now.lock().expect("signal").take()
                {
                    signal.send(()).expect("send restart");
                }
            }
            (run_id, acked)
        }));
    }
    let mut runs = Vec::new();
    for appender in appenders {
        runs.push(appender.await.expect("appender"));
    }
    let (old_pid, new_pid) = restarter.await.expect("restarter");
    assert_ne!(old_pid, new_pid, "the postmaster was restarted");
    let retried = retried.load(Ordering::Relaxed);
    eprintln!(
        "postgres restart: {} appends acknowledged, {retried} attempts retried",
        TASKS * APPENDS_PER_TASK
    );
    assert!(retried > 0, "the restart hit in-flight appends");

    store.ping().await.expect("the store recovered by itself");
    for (run_id, acked) in &runs {
        let stream = store.read_stream(*run_id, 0, 1_000).await.expect("stream");
        assert_eq!(
            &stream, acked,
            "every acknowledged append of run {run_id} is in the log, nothing else"
        );
        chain::verify_run(&stream).expect("run chain verifies");
    }
    let mut log = Vec::new();
    loop {
        let page = store.read_log(log.len() as u64, 1_000).await.expect("log");
        if page.is_empty() {
            break;
        }
        log.extend(page);
    }
    assert_eq!(log.len(), TASKS * APPENDS_PER_TASK);
    chain::verify_log(&LogHead::genesis(), &log).expect("log chain verifies");
}

/// `pg_ctl restart -m immediate` (a crash: no checkpoint, WAL replay on
/// start) as the cluster's owner; returns the postmaster pids before/after.
fn restart_postgres(bin: &str, data: &str, user: &str) -> (String, String) {
    let pid = || {
        std::fs::read_to_string(format!("{data}/postmaster.pid"))
            .map(|text| text.lines().next().unwrap_or_default().to_owned())
            .unwrap_or_default()
    };
    let before = pid();
    let pg_ctl = format!("{bin}/pg_ctl");
    // `-l`: the new postmaster must not inherit our pipes, or reading
    // pg_ctl's output would wait for the server to exit.
    let log = format!("{data}/../server.log");
    let args = [
        "-D",
        data,
        "-l",
        &log,
        "-m",
        "immediate",
        "-w",
        "-t",
        "60",
        "restart",
    ];
    let mut command = if nix_is_root() {
        let mut command = std::process::Command::new("runuser");
        command.args(["-u", user, "--", &pg_ctl]);
        command
    } else {
        std::process::Command::new(&pg_ctl)
    };
    let output = command.args(args).output().expect("run pg_ctl");
    assert!(
        output.status.success(),
        "pg_ctl restart failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    (before, pid())
}

fn nix_is_root() -> bool {
    std::process::Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|output| String::from_utf8_lossy(&output.stdout).trim() == "0")
}

#[tokio::test]
async fn unreachable_postgres_is_a_retryable_error() {
    // Port 1 on loopback: nothing listens there, the connection is refused.
    let config = StoreConfig {
        acquire_timeout_ms: 2_000,
        ..StoreConfig::default()
    };
    let error = PostgresStore::connect("postgres://postgres@127.0.0.1:1/imx", config)
        .await
        .expect_err("refused");
    assert!(error.is_retryable(), "{error:?}");
    assert!(error.to_string().starts_with("IMX0307"), "{error}");
    let attempts = AtomicUsize::new(0);
    let policy = RetryPolicy {
        attempts_max: 3,
        backoff_initial_ms: 1,
        backoff_max_ms: 2,
        elapsed_ms_max: 10_000,
    };
    let result: Result<(), Error> = retry(&policy, || {
        attempts.fetch_add(1, Ordering::Relaxed);
        async {
            Err(Error::Unavailable {
                source: sqlx::Error::PoolTimedOut,
            })
        }
    })
    .await;
    assert!(result.is_err_and(|error| error.is_retryable()));
    assert_eq!(
        attempts.load(Ordering::Relaxed),
        3,
        "gives up after attempts_max"
    );
}
