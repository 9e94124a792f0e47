//! Query plans (PostgreSQL): the store prepares its statements once per
//! connection and plans them generically, so a plan made while the queue
//! held a page of tasks must not turn into a scan of every task once the
//! queue has grown (the statistics are only renewed by a later ANALYZE).

use engine::store::*;
use serde_json::json;
use sqlx::PgPool;

use super::fixtures::{event, start_with_tasks, task};
use super::postgres_database;

/// Sequential scans of `tasks` so far, as the statistics collector counts
/// them (every backend flushes its counts when it next goes idle; the
/// store's one connection is told to by `flush`).
async fn tasks_seq_scans(raw: &PgPool) -> i64 {
    sqlx::query_scalar("SELECT seq_scan FROM pg_stat_user_tables WHERE relname = 'tasks'")
        .fetch_one(raw)
        .await
        .expect("pg_stat_user_tables")
}

/// Adds `count` ready tasks on another queue, straight into the table.
async fn add_waiting_tasks(raw: &PgPool, count: i32) {
    sqlx::query(
        "INSERT INTO tasks (task_id, run_id, queue, payload, available_at, created_at) \
         SELECT gen_random_uuid(), gen_random_uuid(), 'elsewhere', '{}', now(), now() \
         FROM generate_series(1, $1)",
    )
    .bind(count)
    .execute(raw)
    .await
    .expect("waiting tasks");
}

/// Makes the store's connection report its statistics now.
async fn flush(store: &PostgresStore) {
    sqlx::query("SELECT pg_stat_force_next_flush()")
        .execute(store.pool())
        .await
        .expect("force a flush");
    sqlx::query("SELECT 1")
        .execute(store.pool())
        .await
        .expect("go idle once more");
}

/// Starts a run with one task, claims it and completes it in an append.
async fn complete_one(store: &PostgresStore) {
    let run_id = start_with_tasks(store, vec![task("plans", 0)], vec![]).await;
    let claimed = store
        .claim_tasks("worker", "plans", 1, 60_000)
        .await
        .expect("claim")
        .remove(0);
    let mut done = AppendRequest::new(run_id, 1, vec![event("StepCompleted", json!({}))]);
    done.complete = Some((claimed.task_id, claimed.lease.token));
    store.append(done).await.expect("complete the task");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn completing_a_task_does_not_scan_a_grown_queue() {
    let Some(database) = postgres_database().await else {
        return;
    };
    // One connection, so that every statement reuses the plans made first.
    let config = StoreConfig {
        pool_connections_max: 1,
        ..StoreConfig::default()
    };
    let store = PostgresStore::connect(&database.url, config)
        .await
        .expect("connect");
    let raw = PgPool::connect(&database.url)
        .await
        .expect("raw connection");
    // A page of waiting tasks, analyzed: the plans are made against it.
    sqlx::query(
        "INSERT INTO tasks (task_id, run_id, queue, payload, available_at, created_at) \
         SELECT gen_random_uuid(), gen_random_uuid(), 'elsewhere', '{}', now(), now() \
         FROM generate_series(1, 50)",
    )
    .execute(&raw)
    .await
    .expect("a page of tasks");
    sqlx::query("ANALYZE tasks")
        .execute(&raw)
        .await
        .expect("ANALYZE");
    complete_one(&store).await;
    // The queue grows, with no ANALYZE after it.
    add_waiting_tasks(&raw, 20_000).await;
    flush(&store).await;
    let before = tasks_seq_scans(&raw).await;
    for _ in 0..5 {
        complete_one(&store).await;
    }
    flush(&store).await;
    assert_eq!(
        tasks_seq_scans(&raw).await,
        before,
        "completions scanned the whole queue"
    );
}
