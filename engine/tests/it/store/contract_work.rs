//! The store contract, part 2: work distribution (leases, fencing, timers,
//! wake-ups). Time moves only through the fixture's manual clock.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration as StdDuration;

use chrono::{DateTime, Duration, Utc};
use engine::store::*;
use serde_json::json;

use super::fixtures::*;
use super::{Database, Fixture, start_time};

const LEASE_MS: u64 = 10_000;

#[derive(Default)]
struct Ledger {
    /// Every claim of a task: (claimed at, lease).
    claims: BTreeMap<TaskId, Vec<(DateTime<Utc>, Lease)>>,
    completed: BTreeMap<TaskId, usize>,
}

/// Claims and completes until the queue yields nothing, recording all.
async fn drain<S: EventStore>(
    store: Arc<S>,
    clock: ManualClock,
    worker: String,
    ledger: Arc<Mutex<Ledger>>,
) {
    loop {
        let claimed = store
            .claim_tasks(&worker, "jobs", 2, LEASE_MS)
            .await
            .expect("claim");
        if claimed.is_empty() {
            return;
        }
        for task in claimed {
            ledger
                .lock()
                .expect("ledger")
                .claims
                .entry(task.task_id)
                .or_default()
                .push((clock.now(), task.lease.clone()));
            store
                .complete_task(task.task_id, task.lease.token)
                .await
                .expect("complete a held lease");
            *ledger
                .lock()
                .expect("ledger")
                .completed
                .entry(task.task_id)
                .or_default() += 1;
        }
    }
}

pub async fn four_workers_share_tasks_through_leases<S: EventStore>(database: Database) {
    let fixture = Fixture::<S>::open(database, StoreConfig::default()).await;
    let store = &fixture.store;
    let tasks: Vec<NewTask> = (0..40).map(|n| task("jobs", n)).collect();
    let all: BTreeSet<TaskId> = tasks.iter().map(|task| task.task_id).collect();
    start_with_tasks(store.as_ref(), tasks, vec![]).await;

    // A worker claims three tasks and dies without finishing them.
    let crashed = store
        .claim_tasks("crashed", "jobs", 3, LEASE_MS)
        .await
        .expect("claim");
    assert_eq!(crashed.len(), 3);
    let ledger = Arc::new(Mutex::new(Ledger::default()));
    for task in &crashed {
        ledger
            .lock()
            .expect("ledger")
            .claims
            .entry(task.task_id)
            .or_default()
            .push((fixture.clock.now(), task.lease.clone()));
    }
    for round in 0..2 {
        let workers: Vec<_> = (0..4)
            .map(|worker| {
                let worker = format!("worker-{worker}");
                tokio::spawn(drain(
                    Arc::clone(store),
                    fixture.clock.clone(),
                    worker,
                    Arc::clone(&ledger),
                ))
            })
            .collect();
        for worker in workers {
            worker.await.expect("worker");
        }
        let done = ledger.lock().expect("ledger").completed.len();
        assert_eq!(done, if round == 0 { 37 } else { 40 }, "round {round}");
        // The crashed worker's leases run out; its tasks become ready again.
        fixture.clock.advance_ms(LEASE_MS as i64 + 1);
    }
    {
        let ledger = ledger.lock().expect("ledger");
        assert_eq!(
            ledger.completed.keys().copied().collect::<BTreeSet<_>>(),
            all
        );
        assert!(
            ledger.completed.values().all(|count| *count == 1),
            "every task done once"
        );
        for (task_id, claims) in &ledger.claims {
            for pair in claims.windows(2) {
                let ((_, earlier), (claimed_at, _)) = (&pair[0], &pair[1]);
                assert!(
                    *claimed_at >= earlier.expires_at,
                    "task {task_id} held by two live leases"
                );
            }
        }
        let reclaimed: Vec<usize> = crashed
            .iter()
            .map(|task| ledger.claims[&task.task_id].len())
            .collect();
        assert_eq!(reclaimed, [2, 2, 2]);
    }
    for task in &crashed {
        let error = store
            .complete_task(task.task_id, task.lease.token)
            .await
            .expect_err("the crashed lease is dead");
        assert!(matches!(error, Error::LeaseLost { .. }), "{error:?}");
    }
}

pub async fn expired_or_taken_lease_is_fenced<S: EventStore>(database: Database) {
    let fixture = Fixture::<S>::open(database, StoreConfig::default()).await;
    let store = &fixture.store;
    let run_id = start_with_tasks(
        store.as_ref(),
        vec![task("jobs", 1), task("jobs", 2)],
        vec![],
    )
    .await;
    let slow = store
        .claim_tasks("slow", "jobs", 1, 1_000)
        .await
        .expect("claim")
        .remove(0);
    assert_eq!(slow.claims, 1);
    fixture.clock.advance_ms(500);
    let renewed = store
        .renew_lease(slow.task_id, slow.lease.token, 1_000)
        .await
        .expect("renew a live lease");
    assert_eq!(
        renewed.expires_at,
        start_time() + Duration::milliseconds(1_500)
    );
    fixture.clock.advance_ms(1_001);

    // Expired but not yet taken: still fenced.
    let finish = |token: LeaseToken, task_id: TaskId| {
        let mut request = AppendRequest::new(
            run_id,
            1,
            vec![event("StepCompleted", json!({ "at": start_time() }))],
        );
        request.complete = Some((task_id, token));
        request
    };
    let error = store
        .append(finish(slow.lease.token, slow.task_id))
        .await
        .expect_err("expired lease");
    assert!(
        matches!(error, Error::LeaseLost { task_id } if task_id == slow.task_id),
        "{error:?}"
    );

    let fast = store
        .claim_tasks("fast", "jobs", 2, 1_000)
        .await
        .expect("reclaim");
    let retaken = fast
        .iter()
        .find(|task| task.task_id == slow.task_id)
        .expect("the expired task is ready again");
    assert_eq!(retaken.claims, 2);
    assert!(matches!(
        store
            .renew_lease(slow.task_id, slow.lease.token, 1_000)
            .await,
        Err(Error::LeaseLost { .. })
    ));
    assert!(matches!(
        store.complete_task(slow.task_id, slow.lease.token).await,
        Err(Error::LeaseLost { .. })
    ));
    let error = store
        .append(finish(slow.lease.token, slow.task_id))
        .await
        .expect_err("taken lease");
    assert!(matches!(error, Error::LeaseLost { .. }), "{error:?}");
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
        .append(finish(retaken.lease.token, retaken.task_id))
        .await
        .expect("the holder appends and completes");
    let left = fast
        .iter()
        .find(|task| task.task_id != slow.task_id)
        .expect("other task");
    store
        .complete_task(left.task_id, left.lease.token)
        .await
        .expect("complete");
    fixture.clock.advance_ms(60_000);
    assert!(
        store
            .claim_tasks("any", "jobs", 10, 1_000)
            .await
            .expect("claim")
            .is_empty(),
        "both done for good"
    );
}

pub async fn timers_fire_in_order_once<S: EventStore>(database: Database) {
    let fixture = Fixture::<S>::open(database, StoreConfig::default()).await;
    let store = &fixture.store;
    let t0 = start_time();
    let timer = |seconds: i64| NewTimer {
        timer_id: new_id(),
        queue: "retries".to_owned(),
        fire_at: t0 + Duration::seconds(seconds),
        payload: json!({ "s": seconds }),
    };
    let timers: Vec<NewTimer> = [5, 1, 3, 2, 4, 30].into_iter().map(timer).collect();
    let cancelled = timers[5].timer_id;
    let run_id = start_with_tasks(store.as_ref(), vec![], timers).await;
    let mut cancel = AppendRequest::new(run_id, 1, vec![event("TimerCancelled", json!({}))]);
    cancel.cancel_timers = vec![cancelled];
    store.append(cancel).await.expect("cancel a timer");

    assert!(
        store
            .due_timers(t0, 10)
            .await
            .expect("nothing due yet")
            .is_empty()
    );
    let fired = store
        .due_timers(t0 + Duration::milliseconds(3_500), 10)
        .await
        .expect("due");
    let order: Vec<i64> = fired
        .iter()
        .map(|timer| timer.payload["s"].as_i64().unwrap_or(-1))
        .collect();
    assert_eq!(order, [1, 2, 3]);
    assert!(
        store
            .due_timers(t0 + Duration::milliseconds(3_500), 10)
            .await
            .expect("again")
            .is_empty()
    );

    // Four pollers race for the rest; each timer fires for exactly one.
    let pollers: Vec<_> = (0..4)
        .map(|_| {
            let store = Arc::clone(store);
            tokio::spawn(async move {
                store
                    .due_timers(t0 + Duration::hours(1), 10)
                    .await
                    .expect("race")
            })
        })
        .collect();
    let mut rest = Vec::new();
    for poller in pollers {
        rest.extend(poller.await.expect("poller"));
    }
    rest.sort_by_key(|timer| timer.fire_at);
    assert_eq!(
        rest.iter()
            .map(|timer| timer.payload["s"].as_i64().unwrap_or(-1))
            .collect::<Vec<_>>(),
        [4, 5]
    );

    // Fired timers are tasks now, each once.
    fixture.clock.advance_ms(3_600_000);
    let tasks = store
        .claim_tasks("w", "retries", 10, 1_000)
        .await
        .expect("claim fired timers");
    let mut task_ids: Vec<TaskId> = tasks.iter().map(|task| task.task_id).collect();
    let mut timer_ids: Vec<TimerId> = fired
        .iter()
        .chain(&rest)
        .map(|timer| timer.timer_id)
        .collect();
    task_ids.sort();
    timer_ids.sort();
    assert_eq!(task_ids, timer_ids);
}

pub async fn wait_for_work_wakes_on_enqueue<S: EventStore>(database: Database) {
    let fixture = Fixture::<S>::open(database, StoreConfig::default()).await;
    let store = &fixture.store;
    assert!(
        !store
            .wait_for_work(StdDuration::from_millis(50))
            .await
            .expect("idle wait"),
        "no work, no wake"
    );
    // A first append, so that the one that enqueues can take any fast path.
    start_with_tasks(store.as_ref(), vec![], vec![]).await;
    let waiter = {
        let store = Arc::clone(store);
        tokio::spawn(async move {
            store
                .wait_for_work(StdDuration::from_secs(30))
                .await
                .expect("wait")
        })
    };
    let started = std::time::Instant::now();
    start_with_tasks(store.as_ref(), vec![task("jobs", 1)], vec![]).await;
    assert!(waiter.await.expect("waiter"), "woken by the enqueue");
    assert!(
        started.elapsed() < StdDuration::from_secs(20),
        "woken, not timed out"
    );
}

/// Parts an append may carry, one bit each in `every_shape_of_append_writes_its_rows`.
const RUN_ROW: u8 = 1;
const STEP_ROW: u8 = 2;
const ENQUEUE: u8 = 4;
const TIMER: u8 = 8;
const CANCEL_TIMER: u8 = 16;
const COMPLETE: u8 = 32;

/// Every combination of the parts an append carries (run row, step row,
/// new task, new timer, cancelled timer, completed task) writes exactly
/// those, through both writes of a node: the one-statement append (heads
/// remembered) and the path that reads the heads under the lock (another
/// node wrote in between). The PostgreSQL statement is built per shape.
pub async fn every_shape_of_append_writes_its_rows<S: EventStore>(database: Database) {
    let fixture = Fixture::<S>::open(database, StoreConfig::default()).await;
    let first = &fixture.store;
    let config = StoreConfig {
        clock: Arc::new(fixture.clock.clone()),
        ..StoreConfig::default()
    };
    let second = S::connect(&fixture.url, config)
        .await
        .expect("a second node");
    let far = start_time() + Duration::days(365);
    let due_timer = |queue: &str| NewTimer {
        timer_id: new_id(),
        queue: queue.to_owned(),
        fire_at: start_time(),
        payload: json!({}),
    };
    for shape in 0..64u8 {
        for (node, writer) in [("first", first.as_ref()), ("second", &second)] {
            let label = format!("shape {shape:06b} by the {node} node");
            let start_queue = format!("start-{shape}-{node}");
            let queue = format!("shape-{shape}-{node}");
            let started_timer = due_timer(&start_queue);
            let started_timer_id = started_timer.timer_id;
            // The start goes through the first node: the second one's
            // remembered heads are stale for every append it makes.
            let run_id = start_with_tasks(
                first.as_ref(),
                vec![task(&start_queue, 0)],
                vec![started_timer],
            )
            .await;
            let claimed = first
                .claim_tasks("worker", &start_queue, 1, LEASE_MS)
                .await
                .expect("claim the start's task")
                .remove(0);
            let mut request = AppendRequest::new(
                run_id,
                1,
                vec![event("StepCompleted", json!({ "shape": shape }))],
            );
            if shape & RUN_ROW != 0 {
                let mut run = start_request(run_id, "work", start_time(), None)
                    .projection
                    .run
                    .expect("a run row");
                run.status = "succeeded".to_owned();
                request.projection.run = Some(run);
            }
            if shape & STEP_ROW != 0 {
                request.projection.steps.push(StepRow {
                    run_id,
                    step_id: "step".to_owned(),
                    status: "succeeded".to_owned(),
                    attempts: 1,
                    output: Some(json!({ "shape": shape })),
                    error: None,
                    updated_at: start_time(),
                });
            }
            let new_task = task(&queue, 1);
            let new_task_id = new_task.task_id;
            if shape & ENQUEUE != 0 {
                request.enqueue.push(new_task);
            }
            let new_timer = due_timer(&queue);
            let new_timer_id = new_timer.timer_id;
            if shape & TIMER != 0 {
                request.timers.push(new_timer);
            }
            if shape & CANCEL_TIMER != 0 {
                request.cancel_timers.push(started_timer_id);
            }
            if shape & COMPLETE != 0 {
                request.complete = Some((claimed.task_id, claimed.lease.token));
            }
            writer.append(request).await.expect(&label);

            let stream = first.read_stream(run_id, 0, 10).await.expect("stream");
            assert_eq!(stream.len(), 2, "{label}: both events");
            let run = first.get_run(run_id).await.expect("run").expect("run row");
            let status = if shape & RUN_ROW != 0 {
                "succeeded"
            } else {
                "running"
            };
            assert_eq!(run.row.status, status, "{label}: run row");
            let steps = first.get_steps(run_id).await.expect("steps");
            assert_eq!(
                steps.len(),
                usize::from(shape & STEP_ROW != 0),
                "{label}: step rows"
            );
            let tasks = first
                .claim_tasks("checker", &queue, 10, LEASE_MS)
                .await
                .expect("claim");
            let task_ids: Vec<TaskId> = tasks.iter().map(|task| task.task_id).collect();
            let expected: Vec<TaskId> = (shape & ENQUEUE != 0)
                .then_some(new_task_id)
                .into_iter()
                .collect();
            assert_eq!(task_ids, expected, "{label}: enqueued");
            let fired: BTreeSet<TimerId> = first
                .due_timers(far, 1_000)
                .await
                .expect("due timers")
                .into_iter()
                .map(|timer| timer.timer_id)
                .collect();
            assert_eq!(
                fired.contains(&new_timer_id),
                shape & TIMER != 0,
                "{label}: new timer"
            );
            assert_eq!(
                fired.contains(&started_timer_id),
                shape & CANCEL_TIMER == 0,
                "{label}: cancelled timer"
            );
            let renewed = first
                .renew_lease(claimed.task_id, claimed.lease.token, LEASE_MS)
                .await;
            assert_eq!(
                renewed.is_err(),
                shape & COMPLETE != 0,
                "{label}: completed task"
            );
        }
    }
}
