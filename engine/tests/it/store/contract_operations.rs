//! The store contract, part 4: what the API's operators rely on: API keys
//! (found by hash, listed, revoked once), readiness, the queue metrics, and
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
