//! The store contract, part 1: the event log (append, read, listing,
//! conflicts, racing writers, batches, retried appends).
//! Every case is generic over `S: EventStore` and runs on both backends.

use std::sync::Arc;

use chrono::Duration;
use engine::chain::{self, LogHead};
use engine::store::*;
use serde_json::json;

pub use super::contract_append_leases::*;
pub use super::contract_audit::*;
pub use super::contract_checkpoints::*;
pub use super::contract_guards::*;
pub use super::contract_operations::*;
pub use super::contract_registry::*;
pub use super::contract_relay::*;
pub use super::contract_schedules::*;
pub use super::contract_work::*;
use super::fixtures::*;
use super::{Database, Fixture, start_time};

pub(super) fn seqs(events: &[RecordedEvent]) -> Vec<u64> {
    events.iter().map(|event| event.seq).collect()
}

pub(super) async fn whole_log<S: EventStore>(store: &S) -> Vec<RecordedEvent> {
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

pub async fn forks_are_listed_oldest_first_by_their_source<S: EventStore>(database: Database) {
    let fixture = Fixture::<S>::open(database, StoreConfig::default()).await;
    let store = &fixture.store;
    let source = new_id();
    store
        .append(start_request(source, "shop", start_time(), None))
        .await
        .expect("start the source");
    let mut forks = Vec::new();
    for index in 0..3 {
        let fork = new_id();
        let at = start_time() + Duration::minutes(3 - index);
        let mut request = start_request(fork, "shop", at, None);
        request
            .projection
            .run
            .as_mut()
            .expect("run row")
            .forked_from = Some(source);
        store.append(request).await.expect("start a fork");
        forks.push(fork);
    }
    forks.reverse(); // oldest first
    let listed = store.list_forks(source, 10).await.expect("list forks");
    assert_eq!(
        listed.iter().map(|run| run.row.run_id).collect::<Vec<_>>(),
        forks
    );
    assert!(listed.iter().all(|run| run.row.forked_from == Some(source)));
    let first = store.list_forks(source, 1).await.expect("limited");
    assert_eq!(first.len(), 1);
    assert!(
        store
            .list_forks(forks[0], 10)
            .await
            .expect("none")
            .is_empty()
    );
    let back = store
        .get_run(forks[0])
        .await
        .expect("read")
        .expect("the fork");
    assert_eq!(back.row.forked_from, Some(source));
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
        lease: None,
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

/// Two nodes on one database take turns: each one's remembered heads go
/// stale every time, and the log still comes out whole.
pub async fn two_nodes_interleave_appends<S: EventStore>(database: Database) {
    let fixture = Fixture::<S>::open(database, StoreConfig::default()).await;
    let other = S::connect(&fixture.url, StoreConfig::default())
        .await
        .expect("second node");
    let nodes = [fixture.store.as_ref(), &other];
    let shared = new_id();
    nodes[0]
        .append(start_request(shared, "shared", start_time(), None))
        .await
        .expect("start");
    for turn in 0..10_u64 {
        let node = nodes[(turn % 2) as usize];
        let tick = AppendRequest::new(
            shared,
            turn + 1,
            vec![event("Tick", json!({ "turn": turn }))],
        );
        node.append(tick).await.expect("append on the shared run");
        node.append(start_request(new_id(), "own", start_time(), None))
            .await
            .expect("a run of its own");
    }
    let log = whole_log(fixture.store.as_ref()).await;
    assert_eq!(log.len(), 1 + 10 * 2);
    chain::verify_log(&LogHead::genesis(), &log).expect("one log chain");
    let stream = other.read_stream(shared, 0, 100).await.expect("stream");
    assert_eq!(seqs(&stream), (1..=11).collect::<Vec<_>>());
    chain::verify_run(&stream).expect("one run chain");
}
