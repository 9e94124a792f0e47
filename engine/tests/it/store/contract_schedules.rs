//! The store contract, part 5: cron schedule state and the fire ledger
//! (a cursor that only moves forward, pause and resume, the first decision
//! per fire kept, what the list reports).

use chrono::Duration;
use engine::store::*;

use super::{Database, Fixture, start_time};

fn fire(at_seconds: i64, outcome: FireOutcome) -> FireRecord {
    let at = start_time() + Duration::seconds(at_seconds);
    FireRecord {
        workflow: "nightly".to_owned(),
        trigger: "cron".to_owned(),
        scheduled_at: at,
        outcome,
        reason: (outcome == FireOutcome::Skipped).then(|| "overlap".to_owned()),
        idempotency_key: format!("cron:nightly:cron:{at_seconds}"),
        recorded_at: at,
    }
}

pub async fn schedules_keep_a_forward_cursor_and_the_first_decision_per_fire<S: EventStore>(
    database: Database,
) {
    let fixture = Fixture::<S>::open(database, StoreConfig::default()).await;
    let store = &fixture.store;
    let t0 = start_time();
    let created = store
        .ensure_schedule("nightly", "cron", t0)
        .await
        .expect("ensure");
    assert_eq!((created.cursor_at, created.paused_at), (t0, None));
    // A second node seeing it later does not move the cursor.
    let again = store
        .ensure_schedule("nightly", "cron", t0 + Duration::hours(1))
        .await
        .expect("again");
    assert_eq!(again.cursor_at, t0);
    store
        .advance_schedule("nightly", "cron", t0 + Duration::seconds(10))
        .await
        .expect("advance");
    store
        .advance_schedule("nightly", "cron", t0 + Duration::seconds(5))
        .await
        .expect("never back");
    let state = store
        .ensure_schedule("nightly", "cron", t0)
        .await
        .expect("read");
    assert_eq!(state.cursor_at, t0 + Duration::seconds(10));

    // The first decision recorded for a fire wins; the loser reads it back.
    let first = store
        .record_fire(&fire(60, FireOutcome::Started))
        .await
        .expect("record");
    assert_eq!(first.outcome, FireOutcome::Started);
    let loser = store
        .record_fire(&fire(60, FireOutcome::Skipped))
        .await
        .expect("record again");
    assert_eq!(loser, first);
    store
        .record_fire(&fire(120, FireOutcome::Skipped))
        .await
        .expect("skip");
    store
        .record_fire(&fire(180, FireOutcome::Started))
        .await
        .expect("start");
    let latest = store
        .latest_started_fire("nightly", "cron", t0 + Duration::seconds(180))
        .await
        .expect("latest");
    assert_eq!(
        latest.map(|f| f.scheduled_at),
        Some(t0 + Duration::seconds(60))
    );
    let ledger = store
        .list_fires("nightly", "cron", 2)
        .await
        .expect("ledger");
    let seconds: Vec<i64> = ledger
        .iter()
        .map(|f| (f.scheduled_at - t0).num_seconds())
        .collect();
    assert_eq!(seconds, [180, 120], "newest first, bounded");
    assert_eq!(ledger[1].reason.as_deref(), Some("overlap"));
    assert_eq!(ledger[0].reason, None);

    let listed = store.list_schedules().await.expect("list");
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].last_fire_at, Some(t0 + Duration::seconds(180)));
    assert_eq!(listed[0].last_skipped_at, Some(t0 + Duration::seconds(120)));
    assert_eq!(listed[0].skipped, 1);
}

pub async fn schedules_pause_and_resume_without_catching_up<S: EventStore>(database: Database) {
    let fixture = Fixture::<S>::open(database, StoreConfig::default()).await;
    let store = &fixture.store;
    let t0 = start_time();
    // Pausing a schedule no scheduler has seen yet creates it, paused.
    store
        .set_schedule_paused("nightly", "cron", Some((t0, "ops".to_owned())), t0)
        .await
        .expect("pause");
    // Pausing again keeps the first pause.
    let later = t0 + Duration::minutes(1);
    store
        .set_schedule_paused("nightly", "cron", Some((later, "bob".to_owned())), later)
        .await
        .expect("pause again");
    let paused = store
        .ensure_schedule("nightly", "cron", t0)
        .await
        .expect("read");
    assert_eq!(
        (
            paused.paused_at,
            paused.paused_by.as_deref(),
            paused.cursor_at
        ),
        (Some(t0), Some("ops"), t0)
    );
    // Resuming moves the cursor to the resume: the pause is not caught up.
    let resumed_at = t0 + Duration::hours(2);
    store
        .set_schedule_paused("nightly", "cron", None, resumed_at)
        .await
        .expect("resume");
    let resumed = store
        .ensure_schedule("nightly", "cron", t0)
        .await
        .expect("read");
    assert_eq!(
        (resumed.paused_at, resumed.paused_by, resumed.cursor_at),
        (None, None, resumed_at)
    );
    // Resuming with an older "now" never moves the cursor back.
    store
        .set_schedule_paused("nightly", "cron", None, t0)
        .await
        .expect("resume again");
    let state = store
        .ensure_schedule("nightly", "cron", t0)
        .await
        .expect("read");
    assert_eq!(state.cursor_at, resumed_at);
}
