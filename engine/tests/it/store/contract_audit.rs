//! The store contract, part 7: the audit trail. The Merkle tree's nodes
//! (built off the append path, idempotent, append-only) give the same roots
//! and proofs as the RFC's recursion over the events' hashes; checkpoints
//! are stored once per size and key, append-only.

use engine::merkle::{self, Hash, leaf_hash, node_hash, verify_consistency, verify_inclusion};
use engine::store::*;
use serde_json::json;

use super::contract::whole_log;
use super::fixtures::*;
use super::{Database, Fixture, Raw, start_time};

/// Appends `runs` runs of `events` events each (one append per event).
pub(super) async fn fill<S: EventStore>(store: &S, runs: usize, events: usize) {
    for _ in 0..runs {
        let run_id = new_id();
        let mut history = vec![run_started("audit", start_time(), None)];
        store
            .append(start_request(run_id, "audit", start_time(), None))
            .await
            .expect("start");
        for n in 1..events {
            let next = vec![step_completed(
                &format!("s{n}"),
                json!({ "n": n }),
                start_time(),
            )];
            store
                .append(next_request(run_id, &history, next.clone()))
                .await
                .expect("append");
            history.extend(next);
        }
    }
}

/// RFC 6962 MTH, the recursion as written.
pub(super) fn mth(leaves: &[Hash]) -> Hash {
    match leaves.len() {
        0 => merkle::empty_root(),
        1 => leaves[0],
        n => {
            let k = 1 << (n - 1).ilog2();
            node_hash(&mth(&leaves[..k]), &mth(&leaves[k..]))
        }
    }
}

pub(super) async fn reference_leaves<S: EventStore>(store: &S) -> Vec<Hash> {
    whole_log(store)
        .await
        .iter()
        .map(|event| {
            let mut bytes = [0u8; 32];
            hex::decode_to_slice(&event.hash, &mut bytes).expect("hex");
            leaf_hash(&bytes)
        })
        .collect()
}

pub async fn merkle_roots_and_proofs_from_stored_nodes_match_the_reference<S: EventStore>(
    database: Database,
) {
    let fixture = Fixture::<S>::open(database, StoreConfig::default()).await;
    let store = fixture.store.as_ref();
    fill(store, 7, 11).await;
    let leaves = reference_leaves(store).await;
    assert_eq!(leaves.len(), 77);
    for size in [1u64, 15, 16, 17, 40, 77] {
        let root = merkle::root_at(store, size).await.expect("root");
        assert_eq!(root, mth(&leaves[..size as usize]), "size {size}");
    }
    // Every complete block of 16 leaves has its nodes stored: 4 at level 4,
    // 2 at level 5, 1 at level 6.
    assert_eq!(store.merkle_width(4).await.expect("width"), 4);
    assert_eq!(store.merkle_width(6).await.expect("width"), 1);
    // Building again stores nothing new and changes nothing.
    merkle::extend(store, 77).await.expect("extend");
    assert_eq!(store.merkle_width(4).await.expect("width"), 4);
    for (index, size) in [(0u64, 77u64), (63, 77), (76, 77), (20, 33), (32, 33)] {
        let proof = merkle::inclusion_proof(store, index, size)
            .await
            .expect("inclusion");
        assert_eq!(leaf_hash(&proof.other), leaves[index as usize]);
        assert!(
            verify_inclusion(
                index,
                size,
                &leaves[index as usize],
                &proof.path,
                &proof.root
            ),
            "inclusion of {index} in {size}"
        );
    }
    for (old, new) in [(1u64, 77u64), (16, 77), (33, 64), (50, 77), (77, 77)] {
        let proof = merkle::consistency_proof(store, old, new)
            .await
            .expect("consistency");
        assert_eq!(proof.other, mth(&leaves[..old as usize]));
        assert!(
            verify_consistency(old, new, &proof.other, &proof.root, &proof.path),
            "consistency {old} → {new}"
        );
    }
}

fn checkpoint(tree_size: u64, key_id: &str) -> CheckpointRecord {
    CheckpointRecord {
        tree_size,
        key_id: key_id.to_owned(),
        root: "ab".repeat(32),
        log_hash: "cd".repeat(32),
        signed_at_ms: 1_000,
        note: format!("note {tree_size} {key_id}\n"),
    }
}

pub async fn audit_tables_are_append_only_and_checkpoints_are_stored_once<S: EventStore>(
    database: Database,
) {
    let fixture = Fixture::<S>::open(database, StoreConfig::default()).await;
    let store = fixture.store.as_ref();
    fill(store, 2, 16).await;
    let hashes = store.leaf_hashes(0, 100).await.expect("leaves");
    let log: Vec<String> = whole_log(store).await.into_iter().map(|e| e.hash).collect();
    assert_eq!(hashes, log);
    assert_eq!(store.leaf_hashes(30, 100).await.expect("leaves"), log[30..]);
    merkle::extend(store, 32).await.expect("extend");
    let nodes = store.merkle_nodes(4, 0, 9).await.expect("nodes");
    assert_eq!(
        nodes.iter().map(|(index, _)| *index).collect::<Vec<_>>(),
        [0, 1]
    );

    assert!(
        store
            .append_checkpoint(&checkpoint(32, "k1"))
            .await
            .expect("store")
    );
    assert!(
        !store
            .append_checkpoint(&checkpoint(32, "k1"))
            .await
            .expect("again")
    );
    assert!(
        store
            .append_checkpoint(&checkpoint(32, "k2"))
            .await
            .expect("other key")
    );
    assert!(
        store
            .append_checkpoint(&checkpoint(16, "k1"))
            .await
            .expect("smaller")
    );
    let listed = store.checkpoints(0, 10).await.expect("list");
    let keys: Vec<(u64, &str)> = listed
        .iter()
        .map(|c| (c.tree_size, c.key_id.as_str()))
        .collect();
    assert_eq!(keys, [(16, "k1"), (32, "k1"), (32, "k2")]);
    assert_eq!(listed[1], checkpoint(32, "k1"));
    assert_eq!(store.checkpoints(16, 10).await.expect("after").len(), 2);
    assert_eq!(
        store.latest_checkpoint().await.expect("latest"),
        Some(checkpoint(32, "k1"))
    );

    for (table, update) in [
        ("merkle_nodes", "UPDATE merkle_nodes SET hash = 'x'"),
        ("checkpoints", "UPDATE checkpoints SET root = 'x'"),
    ] {
        let delete = if table == "merkle_nodes" {
            "DELETE FROM merkle_nodes"
        } else {
            "DELETE FROM checkpoints"
        };
        for (statement, sql) in [("UPDATE", update), ("DELETE", delete)] {
            let error = fixture
                .raw
                .execute(sql)
                .await
                .expect_err("rejected")
                .to_string();
            assert!(
                error.contains("IMX0315") && error.contains(statement) && error.contains(table),
                "{statement} {table}: {error}"
            );
        }
    }
    if let Raw::Postgres(_) = fixture.raw {
        for sql in ["TRUNCATE merkle_nodes", "TRUNCATE checkpoints"] {
            let error = fixture
                .raw
                .execute(sql)
                .await
                .expect_err("rejected")
                .to_string();
            assert!(error.contains("append-only"), "{error}");
        }
    }
    assert_eq!(store.merkle_nodes(4, 0, 9).await.expect("nodes"), nodes);
}
