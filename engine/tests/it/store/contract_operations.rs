//! The store contract, part 4: what the API's operators rely on: API keys
//! (found by hash, listed, revoked once), the web UI's sessions, readiness, the queue metrics, and
//! backward keyset paging over runs (`run_ids_newer`).

use chrono::Duration;
use engine::store::*;

use super::fixtures::*;
use super::{Database, Fixture, start_time};

fn key(name: &str, hash: &str, minutes: i64) -> ApiKeyRecord {
    ApiKeyRecord {
        key_id: new_id(),
        name: name.to_owned(),
        roles: vec!["operator".to_owned(), "finance".to_owned()],
        key_hash: hash.to_owned(),
        created_at: start_time() + Duration::minutes(minutes),
        revoked_at: None,
    }
}

pub async fn api_keys_are_found_by_hash_listed_and_revoked_once<S: EventStore>(database: Database) {
    let fixture = Fixture::<S>::open(database, StoreConfig::default()).await;
    let store = &fixture.store;
    let (older, newer) = (key("ci", "aa11", 0), key("ops", "bb22", 1));
    // Created newest first: the list still comes oldest first.
    store.create_api_key(&newer).await.expect("create newer");
    store.create_api_key(&older).await.expect("create older");
    assert_eq!(
        store.find_api_key("bb22").await.expect("find"),
        Some(newer.clone())
    );
    assert_eq!(store.find_api_key("cc33").await.expect("find"), None);
    assert_eq!(
        store.list_api_keys().await.expect("list"),
        [older.clone(), newer.clone()]
    );
    let at = start_time() + Duration::minutes(5);
    assert!(
        store
            .revoke_api_key(older.key_id, at)
            .await
            .expect("revoke")
    );
    assert!(
        !store
            .revoke_api_key(older.key_id, at)
            .await
            .expect("revoke again"),
        "a revoked key is not revoked twice"
    );
    assert!(
        !store
            .revoke_api_key(new_id(), at)
            .await
            .expect("revoke unknown"),
        "an unknown key is not revoked"
    );
    let revoked = store
        .find_api_key("aa11")
        .await
        .expect("find")
        .expect("kept");
    assert_eq!(revoked.revoked_at, Some(at));
}

pub async fn a_migrated_store_is_ready_and_counts_its_queue<S: EventStore>(database: Database) {
    let fixture = Fixture::<S>::open(database, StoreConfig::default()).await;
    let store = &fixture.store;
    assert!(store.migrations_current().await.expect("migrations"));
    assert!(store.ready().await.expect("ready"));
    assert_eq!(store.queue_depth().await.expect("depth"), 0);
    start_with_tasks(
        store.as_ref(),
        vec![task("jobs", 1), task("jobs", 2), task("other", 3)],
        vec![],
    )
    .await;
    let claimed = store
        .claim_tasks("worker", "jobs", 1, 1_000)
        .await
        .expect("claim");
    assert_eq!(claimed.len(), 1);
    // Leased tasks still count; the lease has not run out yet.
    assert_eq!(store.queue_depth().await.expect("depth"), 3);
    let now = start_time() + Duration::milliseconds(999);
    assert_eq!(store.expired_leases(now).await.expect("expired"), 0);
    let later = start_time() + Duration::milliseconds(1_001);
    assert_eq!(store.expired_leases(later).await.expect("expired"), 1);
}

pub async fn run_ids_newer_page_oldest_first_after_a_cursor<S: EventStore>(database: Database) {
    let config = StoreConfig {
        page_size_max: 3,
        ..StoreConfig::default()
    };
    let fixture = Fixture::<S>::open(database, config).await;
    let store = &fixture.store;
    let mut runs = Vec::new();
    for index in 0..5 {
        let run_id = new_id();
        let workflow = if index % 2 == 0 { "even" } else { "odd" };
        let created_at = start_time() + Duration::minutes(index);
        store
            .append(start_request(run_id, workflow, created_at, None))
            .await
            .expect("start");
        runs.push((run_id, created_at));
    }
    let ids: Vec<RunId> = runs.iter().map(|(run_id, _)| *run_id).collect();
    let first = NewerRunsQuery {
        limit: 2,
        ..NewerRunsQuery::default()
    };
    assert_eq!(store.run_ids_newer(&first).await.expect("first"), ids[..2]);
    let (run_id, created_at) = runs[1];
    let after = NewerRunsQuery {
        after: Some(RunCursor { created_at, run_id }),
        limit: 10,
        ..NewerRunsQuery::default()
    };
    // A limit above page_size_max is cut to it.
    assert_eq!(store.run_ids_newer(&after).await.expect("after"), ids[2..5]);
    let odd = NewerRunsQuery {
        workflow: Some("odd".to_owned()),
        limit: 3,
        ..NewerRunsQuery::default()
    };
    assert_eq!(
        store.run_ids_newer(&odd).await.expect("odd"),
        [ids[1], ids[3]]
    );
    let none = NewerRunsQuery {
        status: Some("succeeded".to_owned()),
        limit: 3,
        ..NewerRunsQuery::default()
    };
    assert_eq!(
        store.run_ids_newer(&none).await.expect("status"),
        Vec::<RunId>::new()
    );
}

fn ui_session(hash: &str, minutes: i64, key_hash: Option<&str>) -> UiSessionRecord {
    let created_at = start_time() + Duration::minutes(minutes);
    UiSessionRecord {
        session_hash: hash.to_owned(),
        csrf: format!("csrf-{hash}"),
        principal: "key:k".to_owned(),
        roles: vec!["viewer".to_owned()],
        key_hash: key_hash.map(str::to_owned),
        created_at,
        expires_at: created_at + Duration::hours(24),
        idle_expires_at: created_at + Duration::hours(8),
    }
}

pub async fn ui_sessions_are_found_until_they_end_idle_out_or_are_deleted<S: EventStore>(
    database: Database,
) {
    let fixture = Fixture::<S>::open(database, StoreConfig::default()).await;
    let store = &fixture.store;
    let first = ui_session("s1", 0, Some("aa11"));
    store.create_ui_session(&first, 100).await.expect("create");
    let at = |minutes: i64| start_time() + Duration::minutes(minutes);
    assert_eq!(
        store.find_ui_session("s1", at(1)).await.expect("find"),
        Some(first.clone()),
        "found by the id's hash, with its CSRF token and key hash"
    );
    assert_eq!(
        store.find_ui_session("s2", at(1)).await.expect("find"),
        None
    );
    // Idle: gone after 8 h unused, unless used (touched) before.
    assert_eq!(
        store.find_ui_session("s1", at(8 * 60)).await.expect("find"),
        None,
        "idle for 8 h: ended"
    );
    store
        .touch_ui_session("s1", at(7 * 60) + Duration::hours(8))
        .await
        .expect("touch");
    assert!(
        store
            .find_ui_session("s1", at(8 * 60))
            .await
            .expect("find")
            .is_some(),
        "used at 7 h: alive at 8 h"
    );
    assert_eq!(
        store
            .find_ui_session("s1", at(24 * 60))
            .await
            .expect("find"),
        None,
        "past its lifetime, used or not"
    );
    assert!(store.end_ui_session("s1").await.expect("end"));
    assert!(!store.end_ui_session("s1").await.expect("end again"));
    assert_eq!(
        store.find_ui_session("s1", at(2)).await.expect("find"),
        None
    );

    // At the limit, the least recently used session goes first; ended ones
    // are deleted whenever a session is created.
    for (hash, minutes) in [("a", 10), ("b", 11), ("c", 12)] {
        store
            .create_ui_session(&ui_session(hash, minutes, None), 2)
            .await
            .expect("create");
    }
    let alive = |hash: &'static str| async move {
        store
            .find_ui_session(hash, at(20))
            .await
            .expect("find")
            .is_some()
    };
    assert_eq!(
        (alive("a").await, alive("b").await, alive("c").await),
        (false, true, true)
    );
    store
        .create_ui_session(&ui_session("d", 9 * 60, None), 10)
        .await
        .expect("create");
    assert!(
        !store.end_ui_session("b").await.expect("end"),
        "b idled out by 9 h and was deleted when d was created"
    );
}
