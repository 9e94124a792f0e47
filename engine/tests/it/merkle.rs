//! `engine::merkle` against a reference: RFC 6962's MTH, PATH and PROOF
//! written as the RFC's recursions over a list of leaves, for random sizes;
//! every proof verifies with RFC 9162's algorithms, and a proof for another
//! leaf, size or root does not.

use engine::merkle::{
    self, Block, CompactRange, Fetched, Hash, NodeSource, Recorder, consistency_path,
    inclusion_path, leaf_hash, node_hash, verify_consistency, verify_inclusion,
};
use proptest::prelude::*;
use sha2::{Digest, Sha256};

/// The leaf hashes of events whose hashes are SHA-256 of their index.
fn leaves(count: u64) -> Vec<Hash> {
    (0..count)
        .map(|n| leaf_hash(&Sha256::digest(n.to_be_bytes()).into()))
        .collect()
}

fn largest_power_below(n: usize) -> usize {
    let mut k = 1;
    while k * 2 < n {
        k *= 2;
    }
    k
}

/// RFC 6962 §2.1 MTH over leaf hashes.
fn mth(leaves: &[Hash]) -> Hash {
    match leaves.len() {
        0 => Sha256::digest([]).into(),
        1 => leaves[0],
        n => {
            let k = largest_power_below(n);
            node_hash(&mth(&leaves[..k]), &mth(&leaves[k..]))
        }
    }
}

/// RFC 6962 §2.1.1 PATH.
fn path(m: usize, leaves: &[Hash]) -> Vec<Hash> {
    let n = leaves.len();
    if n <= 1 {
        return Vec::new();
    }
    let k = largest_power_below(n);
    if m < k {
        let mut out = path(m, &leaves[..k]);
        out.push(mth(&leaves[k..]));
        out
    } else {
        let mut out = path(m - k, &leaves[k..]);
        out.push(mth(&leaves[..k]));
        out
    }
}

/// RFC 6962 §2.1.2 SUBPROOF.
fn subproof(m: usize, leaves: &[Hash], whole: bool) -> Vec<Hash> {
    let n = leaves.len();
    if m == n {
        return if whole { Vec::new() } else { vec![mth(leaves)] };
    }
    let k = largest_power_below(n);
    if m <= k {
        let mut out = subproof(m, &leaves[..k], whole);
        out.push(mth(&leaves[k..]));
        out
    } else {
        let mut out = subproof(m - k, &leaves[k..], false);
        out.push(mth(&leaves[..k]));
        out
    }
}

/// A source that has only the leaves (every node is hashed up from them).
fn source(leaves: &[Hash]) -> Fetched {
    let mut fetched = Fetched::default();
    for (index, leaf) in leaves.iter().enumerate() {
        fetched.nodes.insert(
            Block {
                level: 0,
                index: index as u64,
            },
            *leaf,
        );
    }
    fetched
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn roots_and_proofs_equal_the_rfc_recursions(size in 1u64..600, pick in any::<u64>(), old_pick in any::<u64>()) {
        let leaves = leaves(size);
        let mut fetched = source(&leaves);
        let root = merkle::root(&mut fetched, size).expect("every leaf is there");
        prop_assert_eq!(root, mth(&leaves));
        let mut range = CompactRange::default();
        for leaf in &leaves {
            range.push(*leaf);
        }
        prop_assert_eq!(range.root(), root);

        let index = pick % size;
        let proof = inclusion_path(&mut fetched, index, size).expect("nodes");
        prop_assert_eq!(&proof, &path(index as usize, &leaves));
        prop_assert!(verify_inclusion(index, size, &leaves[index as usize], &proof, &root));
        let other = (index + 1) % size;
        if other != index {
            prop_assert!(!verify_inclusion(other, size, &leaves[index as usize], &proof, &root));
            prop_assert!(!verify_inclusion(index, size, &leaves[other as usize], &proof, &root));
        }

        let old = 1 + old_pick % size;
        let old_root = mth(&leaves[..old as usize]);
        let proof = consistency_path(&mut fetched, old, size).expect("nodes");
        let expected = if old == size { Vec::new() } else { subproof(old as usize, &leaves, true) };
        prop_assert_eq!(&proof, &expected);
        prop_assert!(verify_consistency(old, size, &old_root, &root, &proof));
        let wrong = node_hash(&old_root, &old_root);
        prop_assert!(!verify_consistency(old, size, &wrong, &root, &proof));
        prop_assert!(!verify_consistency(old, size, &old_root, &wrong, &proof));
        if old < size {
            prop_assert!(!verify_consistency(old + 1, size, &old_root, &root, &proof));
        }
    }

    #[test]
    fn a_proof_needs_only_the_blocks_a_recording_pass_names(size in 1u64..300, pick in any::<u64>()) {
        let leaves = leaves(size);
        let index = pick % size;
        let mut recorder = Recorder::default();
        let Ok(_) = inclusion_path(&mut recorder, index, size);
        let mut full = source(&leaves);
        let mut only = Fetched::default();
        for block in &recorder.asked {
            only.nodes.insert(*block, full.perfect(*block).expect("hashable"));
        }
        prop_assert_eq!(
            inclusion_path(&mut only, index, size).expect("the recorded blocks suffice"),
            inclusion_path(&mut full, index, size).expect("nodes")
        );
    }
}

#[test]
fn a_compact_range_reports_every_perfect_block_it_completes() {
    let leaves = leaves(8);
    let mut range = CompactRange::default();
    let mut completed = Vec::new();
    for leaf in &leaves {
        completed.extend(range.push(*leaf).into_iter().map(|(block, _)| block));
    }
    // 8 leaves, 4 + 2 + 1 nodes above them.
    assert_eq!(completed.len(), 15);
    assert!(completed.contains(&Block { level: 3, index: 0 }));
    let resumed = CompactRange::from_parts(8, vec![range.root()]).expect("one block");
    assert_eq!(resumed.root(), mth(&leaves));
    assert_eq!(CompactRange::from_parts(8, Vec::new()), None);
}

/// A checkpoint of the first `size` leaves, signed by `key`.
fn signed(leaves: &[Hash], size: u64, key: &engine::checkpoint::PrivateKey) -> String {
    engine::checkpoint::Checkpoint {
        origin: "rotation.example/log".to_owned(),
        tree_size: size,
        root: mth(&leaves[..size as usize]),
        log_hash: hex::encode(Sha256::digest(size.to_be_bytes())),
        time_ms: size as i64,
    }
    .sign(key)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(100))]

    /// Checkpoints signed before a key rotation (old key) and after it (new
    /// key) verify with both public keys trusted, and every later one is
    /// provably an extension of every earlier one across the rotation; a
    /// verifier that trusts only the old key refuses the new key's notes,
    /// and a new-key checkpoint of a forked log fails consistency.
    #[test]
    fn checkpoints_of_rotated_keys_are_consistent_across_the_rotation(
        size in 2u64..400,
        cuts in proptest::collection::btree_set(any::<u64>(), 2..6),
        rotate_at in any::<usize>(),
    ) {
        use engine::checkpoint::{PrivateKey, verify_note};
        let leaves = leaves(size);
        let mut fetched = source(&leaves);
        let old_key = PrivateKey::from_seed("old", [1; 32]).expect("key");
        let new_key = PrivateKey::from_seed("new", [2; 32]).expect("key");
        let both = [old_key.public(), new_key.public()];
        let sizes: Vec<u64> = cuts
            .iter()
            .map(|cut| 1 + cut % size)
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        let rotate_at = rotate_at % (sizes.len() + 1);
        let mut roots = Vec::new();
        for (nth, &tree_size) in sizes.iter().enumerate() {
            let key = if nth < rotate_at { &old_key } else { &new_key };
            let note = signed(&leaves, tree_size, key);
            let verified = verify_note(&note, &both).expect("trusted by one of both keys");
            prop_assert_eq!(verified.checkpoint.tree_size, tree_size);
            let only_old = verify_note(&note, std::slice::from_ref(&both[0]));
            prop_assert_eq!(only_old.is_ok(), nth < rotate_at);
            roots.push(verified.checkpoint.root);
        }
        for i in 0..sizes.len() {
            for j in i + 1..sizes.len() {
                let proof = consistency_path(&mut fetched, sizes[i], sizes[j]).expect("nodes");
                prop_assert!(verify_consistency(sizes[i], sizes[j], &roots[i], &roots[j], &proof));
            }
        }
        // The new key signs a forked log at the last size: no consistency
        // proof from an earlier checkpoint verifies against its root.
        let last = sizes.len() - 1;
        let mut forked = leaves.clone();
        forked[0] = node_hash(&forked[0], &forked[0]);
        let fork = verify_note(&signed(&forked, sizes[last], &new_key), &both).expect("signed");
        for i in 0..last {
            let proof = consistency_path(&mut fetched, sizes[i], sizes[last]).expect("nodes");
            prop_assert!(!verify_consistency(sizes[i], sizes[last], &roots[i], &fork.checkpoint.root, &proof));
        }
    }
}
