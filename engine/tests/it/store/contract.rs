//! The store contract, part 1: the event log (append, read, conflicts,
//! batches, idempotency, projections, append-only, limits, schema version).
//! Every case is generic over `S: EventStore` and runs on both backends.

use std::sync::Arc;

use chrono::Duration;
use engine::chain::{self, LogHead};
use engine::store::*;
use serde_json::json;

pub use super::contract_registry::*;
pub use super::contract_work::*;
use super::fixtures::*;
use super::{Database, Fixture, Raw, start_time};

fn seqs(events: &[RecordedEvent]) -> Vec<u64> {
    events.iter().map(|event| event.seq).collect()
}

async fn whole_log<S: EventStore>(store: &S) -> Vec<RecordedEvent> {
    let mut log = Vec::new();
    loop {
        let page = store.read_log(log.len() as u64, 2).await.expect("read log");
        if page.is_empty() {
            return log;
        }
        log.extend(page);
    }
}

pub async fn append_and_read<S: EventStore>(database: Database) {
    let fixture = Fixture::<S>::open(database, StoreConfig::default()).await;
    let store = &fixture.store;
    store.ping().await.expect("ping");
    let (run_id, t0) = (new_id(), start_time());
    let start = start_request(run_id, "orders", t0, None);
    let history = start.events.clone();
    let started = store.append(start).await.expect("start");
    assert_eq!(
        (seqs(&started.events), started.events[0].position),
        (vec![1], 1)
    );
    assert_eq!(
        started.events[0].recorded_at, t0,
        "recorded_at comes from the store's clock"
    );

    // Payload edge cases: the largest exact integer, a float, non-ASCII and NUL.
    let output =
        json!({ "status": 200, "big": 9_007_199_254_740_991_i64, "pi": 3.5, "text": "ü\u{0}" });
    let more = vec![
        step_completed("fetch", output, t0 + Duration::seconds(1)),
        step_completed("pack", json!([1]), t0),
    ];
    let appended = store
        .append(next_request(run_id, &history, more.clone()))
        .await
        .expect("append");
    assert_eq!(seqs(&appended.events), [2, 3]);

    let stream = store
        .read_stream(run_id, 0, 100)
        .await
        .expect("read stream");
    assert_eq!(
        stream[1..],
        appended.events[..],
        "what append returns is what is stored"
    );
    assert_eq!(stream[1].payload, more[0].payload);
    assert_eq!(
        store.read_stream(run_id, 1, 100).await.expect("from seq 1"),
        stream[1..]
    );
    assert_eq!(
        store.read_stream(run_id, 0, 2).await.expect("page"),
        stream[..2]
    );
    let head = chain::verify_run(&stream).expect("run chain verifies");
    assert_eq!((head.seq, head.hash.as_str()), (3, stream[2].hash.as_str()));

    let other = new_id();
    store
        .append(start_request(other, "billing", t0, None))
        .await
        .expect("second run");
    let log = whole_log(store.as_ref()).await;
    assert_eq!(
        log.iter().map(|event| event.position).collect::<Vec<_>>(),
        [1, 2, 3, 4]
    );
    let log_head = chain::verify_log(&LogHead::genesis(), &log).expect("log chain verifies");
    assert_eq!(store.log_head().await.expect("head"), log_head);

    let run = store
        .get_run(run_id)
        .await
        .expect("get run")
        .expect("run exists");
    assert_eq!(
        (
            run.last_seq,
            run.row.workflow.as_str(),
            run.row.status.as_str()
        ),
        (3, "orders", "running")
    );
    let steps = store.get_steps(run_id).await.expect("steps");
    assert_eq!(
        steps
            .iter()
            .map(|step| step.step_id.as_str())
            .collect::<Vec<_>>(),
        ["fetch", "pack"]
    );
    assert_eq!(steps[0].output, Some(more[0].payload["output"].clone()));
    assert_eq!(
        store.get_run(new_id()).await.expect("get unknown run"),
        None
    );
}

pub async fn list_runs_filters_and_pages<S: EventStore>(database: Database) {
    let fixture = Fixture::<S>::open(database, StoreConfig::default()).await;
    let store = &fixture.store;
    let mut ids = Vec::new();
    for index in 0..7 {
        let run_id = new_id();
        let workflow = if index % 2 == 0 { "even" } else { "odd" };
        let mut request = start_request(
            run_id,
            workflow,
            start_time() + Duration::minutes(index),
            None,
        );
        if index % 3 == 0 {
            request.projection.run.as_mut().expect("run row").status = "succeeded".to_owned();
        }
        store.append(request).await.expect("start");
        ids.push(run_id);
    }
    ids.reverse(); // newest first
    let mut seen = Vec::new();
    let mut query = RunQuery {
        limit: 3,
        ..RunQuery::default()
    };
    let mut pages = 0;
    loop {
        let page = store.list_runs(&query).await.expect("list");
        pages += 1;
        seen.extend(page.items.iter().map(|run| run.row.run_id));
        match page.next {
            Some(next) => query.after = Some(next),
            None => break,
        }
    }
    assert_eq!((seen, pages), (ids.clone(), 3));
    let odd = RunQuery {
        workflow: Some("odd".to_owned()),
        limit: 10,
        ..RunQuery::default()
    };
    let odd = store.list_runs(&odd).await.expect("by workflow");
    assert_eq!(
        odd.items
            .iter()
            .map(|run| run.row.run_id)
            .collect::<Vec<_>>(),
        [ids[1], ids[3], ids[5]]
    );
    let done = RunQuery {
        status: Some("succeeded".to_owned()),
        limit: 10,
        ..RunQuery::default()
    };
    let done = store.list_runs(&done).await.expect("by status");
    assert_eq!(
        done.items
            .iter()
            .map(|run| run.row.run_id)
            .collect::<Vec<_>>(),
        [ids[0], ids[3], ids[6]]
    );
    assert!(done.next.is_none());
}

pub async fn stale_expected_seq_conflicts<S: EventStore>(database: Database) {
    let fixture = Fixture::<S>::open(database, StoreConfig::default()).await;
    let store = &fixture.store;
    let (run_id, t0) = (new_id(), start_time());
    let start = start_request(run_id, "orders", t0, None);
    let history = start.events.clone();
    store.append(start).await.expect("start");
    store
        .append(next_request(
            run_id,
            &history,
            vec![step_completed("a", json!(1), t0)],
        ))
        .await
        .expect("first");

    let mut stale = next_request(run_id, &history, vec![step_completed("b", json!(2), t0)]);
    stale.enqueue.push(NewTask {
        task_id: new_id(),
        queue: "q".to_owned(),
        payload: json!({}),
        available_at: None,
    });
    let error = store.append(stale).await.expect_err("stale expected seq");
    assert!(
        matches!(
            error,
            Error::Conflict {
                expected_seq: 1,
                actual_seq: Some(2),
                ..
            }
        ),
        "unexpected {error:?}"
    );
    assert!(error.to_string().starts_with("IMX0301"), "{error}");
    let ahead = AppendRequest::new(run_id, 5, vec![event("Tick", json!({}))]);
    let error = store
        .append(ahead)
        .await
        .expect_err("expected seq ahead of the run");
    assert!(
        matches!(
            error,
            Error::Conflict {
                expected_seq: 5,
                actual_seq: Some(2),
                ..
            }
        ),
        "{error:?}"
    );

    assert_eq!(
        store
            .read_stream(run_id, 0, 100)
            .await
            .expect("stream")
            .len(),
        2,
        "nothing of the loser written"
    );
    assert_eq!(store.get_steps(run_id).await.expect("steps").len(), 1);
    assert!(
        store
            .claim_tasks("w", "q", 10, 1_000)
            .await
            .expect("claim")
            .is_empty(),
        "no task enqueued"
    );
}

pub async fn racing_appenders_get_gap_free_seqs<S: EventStore>(database: Database) {
    const WRITERS: usize = 8;
    const WINS_PER_WRITER: usize = 12;
    let fixture = Fixture::<S>::open(database, StoreConfig::default()).await;
    let run_id = new_id();
    fixture
        .store
        .append(start_request(run_id, "race", start_time(), None))
        .await
        .expect("start");
    let mut writers = Vec::new();
    for writer in 0..WRITERS {
        let store = Arc::clone(&fixture.store);
        writers.push(tokio::spawn(async move {
            let mut won = Vec::new();
            let mut conflicts = 0;
            while won.len() < WINS_PER_WRITER {
                let last_seq = store
                    .get_run(run_id)
                    .await
                    .expect("run")
                    .expect("exists")
                    .last_seq;
                let tick = event("Tick", json!({ "writer": writer, "n": won.len() }));
                match store
                    .append(AppendRequest::new(run_id, last_seq, vec![tick]))
                    .await
                {
                    Ok(appended) => won.push(appended.events[0].seq),
                    Err(Error::Conflict { .. }) => conflicts += 1,
                    Err(error) => panic!("writer {writer}: {error}"),
                }
            }
            (writer, won, conflicts)
        }));
    }
    let mut winner_of = std::collections::BTreeMap::new();
    let mut conflicts = 0;
    for handle in writers {
        let (writer, won, lost) = handle.await.expect("writer task");
        conflicts += lost;
        for seq in won {
            assert!(
                winner_of.insert(seq, writer).is_none(),
                "seq {seq} won twice"
            );
        }
    }
    let total = WRITERS * WINS_PER_WRITER;
    assert_eq!(
        winner_of.keys().copied().collect::<Vec<_>>(),
        (2..=total as u64 + 1).collect::<Vec<_>>()
    );
    let stream = fixture
        .store
        .read_stream(run_id, 0, 1_000)
        .await
        .expect("stream");
    chain::verify_run(&stream).expect("one unforked chain");
    for event in &stream[1..] {
        assert_eq!(
            event.payload["writer"],
            json!(winner_of[&event.seq]),
            "seq {} has its winner's event",
            event.seq
        );
    }
    eprintln!("racing appenders: {total} wins, {conflicts} conflicts");
}

pub async fn batch_settles_each_run<S: EventStore>(database: Database) {
    let fixture = Fixture::<S>::open(database, StoreConfig::default()).await;
    let store = &fixture.store;
    let t0 = start_time();
    let runs = [new_id(), new_id(), new_id()];
    for run_id in runs {
        store
            .append(start_request(run_id, "batch", t0, None))
            .await
            .expect("start");
    }
    let mut lost_lease = AppendRequest::new(runs[2], 1, vec![event("Tick", json!(2))]);
    lost_lease.complete = Some((new_id(), LeaseToken(new_id())));
    let batch = vec![
        AppendRequest::new(
            runs[0],
            1,
            vec![event("Tick", json!(0)), event("Tick", json!(1))],
        ),
        AppendRequest::new(runs[1], 0, vec![event("Tick", json!(1))]),
        lost_lease,
    ];
    let results = store.append_batch(batch).await.expect("batch");
    assert_eq!(
        results[0]
            .as_ref()
            .map(|appended| seqs(&appended.events))
            .ok(),
        Some(vec![2, 3])
    );
    assert!(
        matches!(results[1], Err(Error::Conflict { .. })),
        "{:?}",
        results[1]
    );
    assert!(
        matches!(results[2], Err(Error::LeaseLost { .. })),
        "{:?}",
        results[2]
    );
    assert_eq!(
        store
            .read_stream(runs[2], 0, 10)
            .await
            .expect("stream")
            .len(),
        1
    );

    let many: Vec<AppendRequest> = (0..50)
        .map(|index| start_request(new_id(), "many", t0 + Duration::seconds(index), None))
        .collect();
    let results = store.append_batch(many).await.expect("batch of new runs");
    assert!(results.iter().all(Result::is_ok), "all 50 started");
    let log = whole_log(store.as_ref()).await;
    assert_eq!(log.len(), 3 + 2 + 50);
    chain::verify_log(&LogHead::genesis(), &log).expect("gap-free positions and log chain");

    let twice = vec![
        AppendRequest::new(runs[0], 3, vec![]),
        AppendRequest::new(runs[0], 3, vec![]),
    ];
    let error = store
        .append_batch(twice)
        .await
        .expect_err("one run twice in a batch");
    assert!(matches!(error, Error::InvalidRequest { .. }), "{error:?}");
}

pub async fn retried_append_is_idempotent<S: EventStore>(database: Database) {
    let fixture = Fixture::<S>::open(database, StoreConfig::default()).await;
    let store = &fixture.store;
    let run_id = new_id();
    let start = start_request(run_id, "retry", start_time(), None);
    let first = store.append(start.clone()).await.expect("first attempt");
    let again = store
        .append(start.clone())
        .await
        .expect("the retry returns what the first attempt wrote");
    assert_eq!(first, again);
    let mut other = start;
    other.append_id = new_id();
    assert!(
        matches!(store.append(other).await, Err(Error::Conflict { .. })),
        "another request still conflicts"
    );
    assert_eq!(
        store
            .read_stream(run_id, 0, 10)
            .await
            .expect("stream")
            .len(),
        1
    );
}

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
