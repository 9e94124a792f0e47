//! Wake-ups across nodes (PostgreSQL): a node sends at most one NOTIFY per
//! `REMOTE_WAKE_INTERVAL`, and still every commit that enqueues work is
//! followed by one, so the other nodes hear of all work within the interval.

use std::time::{Duration, Instant};

use engine::store::*;
use sqlx::postgres::PgListener;

use super::fixtures::{start_with_tasks, task};
use super::postgres_database;

/// The notifications `listener` receives until none came for a second.
async fn received(listener: &mut PgListener) -> usize {
    let mut count = 0;
    while let Ok(notification) = tokio::time::timeout(Duration::from_secs(1), listener.recv()).await
    {
        notification.expect("a notification");
        count += 1;
    }
    count
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn other_nodes_hear_of_every_enqueue_with_one_notify_per_interval() {
    let Some(database) = postgres_database().await else {
        return;
    };
    let writer = PostgresStore::connect(&database.url, StoreConfig::default())
        .await
        .expect("the writing node");
    let mut other_node = PgListener::connect(&database.url)
        .await
        .expect("another node's listener");
    other_node.listen(WORK_CHANNEL).await.expect("LISTEN");

    // Two enqueues back to back: the first carries the NOTIFY; the second,
    // inside the interval, gets its own at the interval's end.
    start_with_tasks(&writer, vec![task("jobs", 0)], vec![]).await;
    start_with_tasks(&writer, vec![task("jobs", 0)], vec![]).await;
    assert_eq!(received(&mut other_node).await, 2, "one NOTIFY each");

    // Many: at most one per interval (plus the trailing one), not one each.
    let started = Instant::now();
    let enqueues = 40;
    for _ in 0..enqueues {
        start_with_tasks(&writer, vec![task("jobs", 0)], vec![]).await;
    }
    let intervals = started.elapsed().as_millis() / REMOTE_WAKE_INTERVAL.as_millis();
    let count = received(&mut other_node).await;
    assert!(count >= 1, "woken at all");
    assert!(
        count as u128 <= (intervals + 2).min(enqueues),
        "{count} NOTIFYs for {enqueues} enqueues in {intervals} intervals"
    );
}
