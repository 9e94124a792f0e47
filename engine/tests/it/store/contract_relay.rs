//! The store contract, part 5: the log relay's row (one lease among nodes,
//! fenced position updates, a position that never moves backwards).

use engine::store::*;

use super::{Database, Fixture};

const LEASE_MS: u64 = 1_000;

pub async fn relay_lease_is_held_by_one_node_and_fences_a_taken_over_holder<S: EventStore>(
    database: Database,
) {
    let fixture = Fixture::<S>::open(database, StoreConfig::default()).await;
    let store = &fixture.store;
    assert_eq!(store.relay_lease("log").await.expect("read"), None);
    let first = store
        .acquire_relay("log", "node-a", "token-a", LEASE_MS)
        .await
        .expect("acquire")
        .expect("a free relay is taken");
    assert_eq!(
        (first.holder.as_str(), first.token.as_str(), first.position),
        ("node-a", "token-a", 0)
    );
    assert_eq!(
        store
            .acquire_relay("log", "node-b", "token-b", LEASE_MS)
            .await
            .expect("acquire"),
        None,
        "a running lease is not taken"
    );
    assert!(
        store
            .acquire_relay("other", "node-b", "token-b", LEASE_MS)
            .await
            .expect("acquire")
            .is_some(),
        "relays are independent by name"
    );
    assert!(
        store
            .advance_relay("log", "token-a", 40, LEASE_MS)
            .await
            .expect("advance")
    );
    assert!(
        store
            .advance_relay("log", "token-a", 30, LEASE_MS)
            .await
            .expect("advance"),
        "an older position is accepted but changes nothing"
    );
    assert_eq!(
        store
            .relay_lease("log")
            .await
            .expect("read")
            .expect("row")
            .position,
        40
    );

    // The holder stops renewing: after the lease runs out node-b takes over,
    // from the stored position, and node-a's late update is refused.
    fixture
        .clock
        .advance_ms(i64::try_from(LEASE_MS).expect("small"));
    let second = store
        .acquire_relay("log", "node-b", "token-b", LEASE_MS)
        .await
        .expect("acquire")
        .expect("an expired lease is taken");
    assert_eq!((second.holder.as_str(), second.position), ("node-b", 40));
    assert!(
        !store
            .advance_relay("log", "token-a", 99, LEASE_MS)
            .await
            .expect("advance"),
        "the old token is fenced"
    );
    assert_eq!(
        store
            .relay_lease("log")
            .await
            .expect("read")
            .expect("row")
            .position,
        40
    );

    // A released lease is free at once; a holder re-acquires its own lease.
    assert!(
        store
            .release_relay("log", "token-b")
            .await
            .expect("release")
    );
    assert!(
        !store
            .release_relay("log", "token-b-stale")
            .await
            .expect("release")
    );
    let third = store
        .acquire_relay("log", "node-c", "token-c", LEASE_MS)
        .await
        .expect("acquire")
        .expect("a released lease is taken");
    assert_eq!(third.position, 40);
    let again = store
        .acquire_relay("log", "node-c", "token-c2", LEASE_MS)
        .await
        .expect("acquire")
        .expect("the holder renews its own lease");
    assert_eq!(again.token, "token-c2");
    assert!(
        !store
            .advance_relay("log", "token-c", 41, LEASE_MS)
            .await
            .expect("advance")
    );
}
