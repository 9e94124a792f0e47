//! The store contract, part 3: idempotent starts, projection rebuild, the
//! append-only trigger, payload limits and the schema-version guard.

use std::sync::Arc;

use chrono::Duration;
use engine::chain::{self, LogHead};
use engine::store::*;
use serde_json::json;

use super::contract::whole_log;
use super::fixtures::*;
use super::{Database, Fixture, Raw, start_time};

pub async fn idempotent_start_returns_existing_run<S: EventStore>(database: Database) {
    let fixture = Fixture::<S>::open(database, StoreConfig::default()).await;
    let store = &fixture.store;
    let t0 = start_time();
    let first = new_id();
    let outcome = store
        .start_run(start_request(first, "orders", t0, Some("order-42")))
        .await
        .expect("start");
    assert!(matches!(outcome, StartOutcome::Started(_)), "{outcome:?}");
    let outcome = store
        .start_run(start_request(new_id(), "orders", t0, Some("order-42")))
        .await
        .expect("again");
    match outcome {
        StartOutcome::Existing(run) => assert_eq!((run.row.run_id, run.last_seq), (first, 1)),
        other => panic!("expected the existing run, got {other:?}"),
    }
    assert_eq!(
        store
            .find_run_by_key("order-42")
            .await
            .expect("by key")
            .map(|run| run.row.run_id),
        Some(first)
    );

    let mut racers = Vec::new();
    for _ in 0..8 {
        let store = Arc::clone(&fixture.store);
        let request = start_request(new_id(), "orders", t0, Some("order-43"));
        racers.push(tokio::spawn(async move {
            store.start_run(request).await.expect("racing start")
        }));
    }
    let mut started = Vec::new();
    let mut existing = Vec::new();
    for racer in racers {
        match racer.await.expect("racer") {
            StartOutcome::Started(appended) => started.push(appended.run_id),
            StartOutcome::Existing(run) => existing.push(run.row.run_id),
        }
    }
    assert_eq!(started.len(), 1, "exactly one start wins");
    assert!(
        existing.iter().all(|run_id| *run_id == started[0]),
        "the others get the winner"
    );
    let log = whole_log(store.as_ref()).await;
    let starts = log
        .iter()
        .filter(|event| event.payload["key"] == json!("order-43"))
        .count();
    assert_eq!(starts, 1, "one RunStarted for the key");
    // Two starts with one key in ONE batch (group commit): the first is
    // written, the second is told the key is taken, the others are written.
    let (keyed, other) = (new_id(), new_id());
    let batch = vec![
        start_request(keyed, "orders", t0, Some("order-44")),
        start_request(new_id(), "orders", t0, Some("order-44")),
        start_request(other, "orders", t0, None),
    ];
    let results = store.append_batch(batch).await.expect("batch");
    assert!(results[0].is_ok(), "{:?}", results[0]);
    assert!(
        matches!(&results[1], Err(Error::IdempotencyKeyTaken { run_id, .. }) if *run_id == keyed),
        "{:?}",
        results[1]
    );
    assert!(results[2].is_ok(), "{:?}", results[2]);
    let by_key = store.find_run_by_key("order-44").await.expect("by key");
    assert_eq!(by_key.map(|run| run.row.run_id), Some(keyed));
    assert!(store.get_run(other).await.expect("get").is_some());

    let not_start = AppendRequest::new(new_id(), 3, vec![]);
    assert!(matches!(
        store.start_run(not_start).await,
        Err(Error::InvalidRequest { .. })
    ));
}

pub async fn rebuilt_projections_equal_incremental<S: EventStore>(database: Database) {
    let fixture = Fixture::<S>::open(database, StoreConfig::default()).await;
    let store = &fixture.store;
    let t0 = start_time();
    let mut runs = Vec::new();
    for index in 0..5_i64 {
        let run_id = new_id();
        let start = start_request(
            run_id,
            "rebuild",
            t0 + Duration::minutes(index),
            Some(&format!("k{index}")),
        );
        let mut history = start.events.clone();
        store.append(start).await.expect("start");
        for step in 0..index {
            let at = t0 + Duration::minutes(index) + Duration::seconds(step);
            let events = vec![step_completed(
                &format!("s{}", step % 2),
                json!({ "step": step }),
                at,
            )];
            store
                .append(next_request(run_id, &history, events.clone()))
                .await
                .expect("step");
            history.extend(events);
        }
        if index % 2 == 1 {
            let events = vec![run_succeeded(t0 + Duration::hours(1))];
            store
                .append(next_request(run_id, &history, events))
                .await
                .expect("finish");
        }
        runs.push(run_id);
    }
    let incremental = snapshot(store.as_ref(), &runs).await;
    fixture
        .raw
        .execute("UPDATE runs SET status = 'corrupted'")
        .await
        .expect("damage the runs projection");
    fixture
        .raw
        .execute("DELETE FROM steps WHERE step_id = 's0'")
        .await
        .expect("damage the steps projection");
    assert_ne!(snapshot(store.as_ref(), &runs).await, incremental);
    let stats = store.rebuild_projections(fold).await.expect("rebuild");
    assert_eq!(
        stats,
        RebuildStats {
            runs: 5,
            events: 5 + 10 + 2
        }
    );
    assert_eq!(
        snapshot(store.as_ref(), &runs).await,
        incremental,
        "rebuilt == incremental"
    );
}

async fn snapshot<S: EventStore>(
    store: &S,
    runs: &[RunId],
) -> Vec<(Option<RunRecord>, Vec<StepRow>)> {
    let mut rows = Vec::new();
    for run_id in runs {
        rows.push((
            store.get_run(*run_id).await.expect("run"),
            store.get_steps(*run_id).await.expect("steps"),
        ));
    }
    rows
}

pub async fn database_rejects_update_and_delete_of_events<S: EventStore>(database: Database) {
    let fixture = Fixture::<S>::open(database, StoreConfig::default()).await;
    let run_id = new_id();
    fixture
        .store
        .append(start_request(run_id, "audit", start_time(), None))
        .await
        .expect("start");
    let before = whole_log(fixture.store.as_ref()).await;
    let update = fixture
        .raw
        .execute("UPDATE events SET event_type = 'Edited'")
        .await;
    let delete = fixture.raw.execute("DELETE FROM events").await;
    for (statement, result) in [("UPDATE", update), ("DELETE", delete)] {
        let error = result.expect_err("the database rejects it").to_string();
        assert!(
            error.contains("append-only") && error.contains(statement),
            "{statement}: {error}"
        );
    }
    if let Raw::Postgres(_) = fixture.raw {
        let error = fixture
            .raw
            .execute("TRUNCATE events")
            .await
            .expect_err("TRUNCATE rejected")
            .to_string();
        assert!(error.contains("append-only"), "{error}");
    }
    let after = whole_log(fixture.store.as_ref()).await;
    assert_eq!(after, before);
    chain::verify_log(&LogHead::genesis(), &after).expect("chain intact");
}

pub async fn payload_limit_rejects_before_writing<S: EventStore>(database: Database) {
    let config = StoreConfig {
        payload_bytes_max: 1024,
        events_per_append_max: 3,
        ..StoreConfig::default()
    };
    let fixture = Fixture::<S>::open(database, config).await;
    let store = &fixture.store;
    let run_id = new_id();
    // {"s":"xx…"} is 8 bytes plus the string.
    let at_limit = event("Big", json!({ "s": "x".repeat(1024 - 8) }));
    let over = event("Big", json!({ "s": "x".repeat(1024 - 7) }));
    let mut start = start_request(run_id, "limits", start_time(), None);
    start.events.push(over);
    let error = store
        .append(start.clone())
        .await
        .expect_err("payload over the limit");
    match &error {
        Error::PayloadTooLarge {
            index: 1,
            bytes: 1025,
            max: 1024,
            ..
        } => {}
        other => panic!("unexpected {other:?}"),
    }
    assert!(error.to_string().contains("payload_bytes_max"), "{error}");
    assert_eq!(
        store.log_head().await.expect("head"),
        LogHead::genesis(),
        "nothing written"
    );
    assert_eq!(store.get_run(run_id).await.expect("run"), None);

    start.events[1] = at_limit.clone();
    store
        .append(start)
        .await
        .expect("a payload at the limit is fine");
    let four = AppendRequest::new(
        run_id,
        2,
        vec![
            at_limit.clone(),
            at_limit.clone(),
            at_limit.clone(),
            at_limit,
        ],
    );
    assert!(matches!(
        store.append(four).await,
        Err(Error::LimitExceeded { .. })
    ));
    let huge_integer =
        AppendRequest::new(run_id, 2, vec![event("Int", json!({ "n": 1_u64 << 53 }))]);
    assert!(matches!(
        store.append(huge_integer).await,
        Err(Error::InvalidRequest { .. })
    ));
    assert_eq!(store.log_head().await.expect("head").position, 2);
}

pub async fn schema_newer_than_known_is_refused<S: EventStore>(database: Database) {
    let fixture = Fixture::<S>::open(database, StoreConfig::default()).await;
    fixture.raw.add_future_migration().await;
    let error = S::connect(&fixture.url, StoreConfig::default())
        .await
        .expect_err("refuses a newer schema");
    match &error {
        Error::SchemaTooNew {
            database_version: 99990101000000,
            known_version,
        } => {
            assert!(*known_version < 99990101000000);
        }
        other => panic!("unexpected {other:?}"),
    }
    assert!(
        error
            .to_string()
            .contains("newer than the newest this imx knows"),
        "{error}"
    );
    assert!(matches!(
        fixture.store.migrate().await,
        Err(Error::SchemaTooNew { .. })
    ));
}
