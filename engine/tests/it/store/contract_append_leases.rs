//! The store contract, part 2b: tasks leased in the append that enqueues
//! them (the runtime's local dispatch). Such a lease is a claim in all but
//! the transaction: the first of the task's claims, fenced by its token,
//! renewable, and the task is ready for anyone once it expires. Time moves
//! only through the fixture's manual clock.

use chrono::Duration;
use engine::store::*;
use serde_json::json;

use super::contract::whole_log;
use super::fixtures::*;
use super::{Database, Fixture, start_time};

const LEASE_MS: u64 = 1_000;

/// A task on `queue` leased to `owner` by the append that enqueues it.
fn leased(queue: &str, n: usize, owner: &str) -> NewTask {
    NewTask {
        lease: Some(TaskLease {
            owner: owner.to_owned(),
            token: LeaseToken(new_id()),
            lease_ms: LEASE_MS,
        }),
        ..task(queue, n)
    }
}

fn token(task: &NewTask) -> LeaseToken {
    task.lease.as_ref().expect("a leased task").token
}

/// The append that records a task's result and completes it.
fn finish(run_id: RunId, expected_seq: u64, task_id: TaskId, token: LeaseToken) -> AppendRequest {
    let mut request = AppendRequest::new(
        run_id,
        expected_seq,
        vec![event("StepCompleted", json!({ "at": start_time() }))],
    );
    request.complete = Some((task_id, token));
    request
}

pub async fn a_lease_taken_at_append_is_held_renewed_and_completed<S: EventStore>(
    database: Database,
) {
    let fixture = Fixture::<S>::open(database, StoreConfig::default()).await;
    let store = &fixture.store;
    // One leased and one free task in one append (several rows), then a
    // leased one alone (one row): both shapes of the task insert.
    let (mine, free) = (leased("jobs", 1, "node-a"), task("jobs", 2));
    let run_id = start_with_tasks(store.as_ref(), vec![mine.clone(), free.clone()], vec![]).await;
    let alone = leased("jobs", 3, "node-a");
    let mut more = AppendRequest::new(run_id, 1, vec![event("Tick", json!(1))]);
    more.enqueue = vec![alone.clone()];
    store
        .append(more)
        .await
        .expect("enqueue a leased task alone");

    let claimed = store
        .claim_tasks("node-b", "jobs", 10, LEASE_MS)
        .await
        .expect("claim");
    let ids: Vec<TaskId> = claimed.iter().map(|task| task.task_id).collect();
    assert_eq!(ids, [free.task_id], "leased tasks are not claimable");
    assert_eq!(claimed[0].claims, 1);

    fixture.clock.advance_ms(600);
    let renewed = store
        .renew_lease(alone.task_id, token(&alone), LEASE_MS)
        .await
        .expect("renew the lease taken at append");
    assert_eq!(renewed.owner, "node-a");
    assert_eq!(
        renewed.expires_at,
        start_time() + Duration::milliseconds(600 + LEASE_MS as i64)
    );
    assert!(matches!(
        store
            .renew_lease(alone.task_id, LeaseToken(new_id()), LEASE_MS)
            .await,
        Err(Error::LeaseLost { .. })
    ));
    store
        .append(finish(run_id, 2, mine.task_id, token(&mine)))
        .await
        .expect("the holder records and completes");
    store
        .complete_task(alone.task_id, token(&alone))
        .await
        .expect("complete the renewed lease");
    store
        .complete_task(free.task_id, claimed[0].lease.token)
        .await
        .expect("complete the claimed task");
    fixture.clock.advance_ms(60_000);
    assert!(
        store
            .claim_tasks("node-b", "jobs", 10, LEASE_MS)
            .await
            .expect("claim")
            .is_empty(),
        "all three done for good"
    );
    assert_eq!(store.queue_depth().await.expect("depth"), 0);
}

pub async fn an_expired_lease_taken_at_append_passes_to_another_node_and_fences_the_first<
    S: EventStore,
>(
    database: Database,
) {
    let fixture = Fixture::<S>::open(database, StoreConfig::default()).await;
    let store = &fixture.store;
    let first = leased("jobs", 1, "node-a");
    let run_id = start_with_tasks(store.as_ref(), vec![first.clone()], vec![]).await;

    // node-a stalls; its lease runs out and the task is ready again.
    fixture.clock.advance_ms(LEASE_MS as i64 + 1);
    assert_eq!(
        store
            .expired_leases(fixture.clock.now())
            .await
            .expect("expired"),
        1
    );
    let taken = store
        .claim_tasks("node-b", "jobs", 10, LEASE_MS)
        .await
        .expect("claim")
        .pop()
        .expect("the expired task is claimable");
    assert_eq!(taken.task_id, first.task_id);
    assert_eq!(taken.claims, 2, "the lease at append was the first claim");

    // node-a's late result is refused and writes nothing.
    let error = store
        .append(finish(run_id, 1, first.task_id, token(&first)))
        .await
        .expect_err("a late result of the old holder");
    assert!(
        matches!(error, Error::LeaseLost { task_id } if task_id == first.task_id),
        "{error:?}"
    );
    assert!(matches!(
        store
            .renew_lease(first.task_id, token(&first), LEASE_MS)
            .await,
        Err(Error::LeaseLost { .. })
    ));
    assert!(matches!(
        store.complete_task(first.task_id, token(&first)).await,
        Err(Error::LeaseLost { .. })
    ));
    assert_eq!(
        store
            .read_stream(run_id, 0, 10)
            .await
            .expect("stream")
            .len(),
        1,
        "the fenced append wrote nothing"
    );
    store
        .append(finish(run_id, 1, taken.task_id, taken.lease.token))
        .await
        .expect("the new holder records and completes");
    fixture.clock.advance_ms(60_000);
    assert!(
        store
            .claim_tasks("node-c", "jobs", 10, LEASE_MS)
            .await
            .expect("claim")
            .is_empty(),
        "done once"
    );
}

pub async fn a_lease_at_append_beyond_the_limit_is_refused<S: EventStore>(database: Database) {
    let fixture = Fixture::<S>::open(database, StoreConfig::default()).await;
    let store = &fixture.store;
    let mut too_long = leased("jobs", 1, "node-a");
    if let Some(lease) = too_long.lease.as_mut() {
        lease.lease_ms = store.config().lease_ms_max + 1;
    }
    let mut unnamed = leased("jobs", 2, "node-a");
    if let Some(lease) = unnamed.lease.as_mut() {
        lease.owner = String::new();
    }
    for (case, refused) in [("too long", too_long), ("no owner", unnamed)] {
        let mut request = start_request(new_id(), "work", start_time(), None);
        request.enqueue = vec![refused];
        let error = store.append(request).await.expect_err(case);
        assert!(
            matches!(
                error,
                Error::LimitExceeded { .. } | Error::InvalidRequest { .. }
            ),
            "{case}: {error:?}"
        );
    }
    assert!(
        whole_log(store.as_ref()).await.is_empty(),
        "nothing written"
    );
    assert_eq!(store.queue_depth().await.expect("depth"), 0);
}
