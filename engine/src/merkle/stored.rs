//! The tree over a store ([`AuditTrail`]): [`extend`] stores the nodes of
//! every complete block of [`STORED_BLOCK_LEAVES`] leaves up to a size (the
//! tree builder; never on the append path), and proofs fetch the O(log n)
//! nodes they need — stored ones from `merkle_nodes`, the few below
//! [`STORED_LEVEL_MIN`] hashed again from at most 16 leaves each.

use std::collections::BTreeSet;

use super::{
    Block, CompactRange, Fetched, Hash, MissingNode, Recorder, STORED_BLOCK_LEAVES,
    STORED_LEVEL_MIN, blocks, consistency_path, inclusion_path, leaf_hash,
};
use crate::store::{AuditTrail, Error, MerkleNode};

/// Leaves read per page while building. One page completes fewer than
/// `AUDIT_INSERT_ROWS_MAX` nodes (1,000 / 16 + one per level), so its nodes
/// go in as one statement: the stored nodes are always those of a prefix.
pub const LEAF_PAGE_LEAVES: u32 = 1_000;

/// A proof from the store: the path and the roots it connects.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Proof {
    pub path: Vec<Hash>,
    /// Inclusion: the root of the tree of the proof's size. Consistency:
    /// the root of the new tree.
    pub root: Hash,
    /// Inclusion: the event's `hash` (the leaf input). Consistency: the
    /// root of the old tree.
    pub other: Hash,
}

fn decode(hex_hash: &str, what: &str) -> Result<Hash, Error> {
    let mut bytes = [0u8; 32];
    hex::decode_to_slice(hex_hash, &mut bytes)
        .map_err(|_| Error::corrupt(format!("{what} {hex_hash:?} is not a hex SHA-256")))?;
    Ok(bytes)
}

/// The compact range of the first `size` leaves, `size` a multiple of
/// [`STORED_BLOCK_LEAVES`] whose nodes are stored.
async fn stored_range<S: AuditTrail>(store: &S, size: u64) -> Result<CompactRange, Error> {
    let mut stack = Vec::new();
    for block in blocks(0, size) {
        let rows = store
            .merkle_nodes(block.level, block.index, block.index)
            .await?;
        let (_, hash) = rows.first().ok_or_else(|| {
            Error::corrupt(format!(
                "merkle node level {} index {} is missing",
                block.level, block.index
            ))
        })?;
        stack.push(decode(hash, "merkle node")?);
    }
    CompactRange::from_parts(size, stack)
        .ok_or_else(|| Error::corrupt("merkle frontier of the wrong shape"))
}

/// Stores the nodes (levels ≥ [`STORED_LEVEL_MIN`]) of the first
/// `size / 16 * 16` leaves that are not stored yet, and returns that
/// prefix's compact range. `size` must not exceed the log's length.
pub async fn extend<S: AuditTrail>(store: &S, size: u64) -> Result<CompactRange, Error> {
    let target = size / STORED_BLOCK_LEAVES * STORED_BLOCK_LEAVES;
    let built = (store.merkle_width(STORED_LEVEL_MIN).await? * STORED_BLOCK_LEAVES).min(target);
    let mut range = stored_range(store, built).await?;
    while range.size() < target {
        let want = u32::try_from(target - range.size())
            .map_or(LEAF_PAGE_LEAVES, |left| left.min(LEAF_PAGE_LEAVES));
        let page = store.leaf_hashes(range.size(), want).await?;
        if page.is_empty() {
            return Err(Error::corrupt(format!(
                "the log ends before position {}",
                range.size() + 1
            )));
        }
        let mut nodes = Vec::new();
        for hash in &page {
            let leaf = leaf_hash(&decode(hash, "event hash")?);
            for (block, hash) in range.push(leaf) {
                if block.level >= STORED_LEVEL_MIN {
                    nodes.push(MerkleNode {
                        level: block.level,
                        index: block.index,
                        hash: hex::encode(hash),
                    });
                }
            }
        }
        store.append_merkle_nodes(&nodes).await?;
    }
    Ok(range)
}

/// The root of the tree of the first `size` leaves (storing the nodes of
/// its complete blocks on the way).
pub async fn root_at<S: AuditTrail>(store: &S, size: u64) -> Result<Hash, Error> {
    let mut range = extend(store, size).await?;
    let rest = u32::try_from(size - range.size()).unwrap_or(0);
    if rest > 0 {
        for hash in store.leaf_hashes(range.size(), rest).await? {
            range.push(leaf_hash(&decode(&hash, "event hash")?));
        }
    }
    if range.size() != size {
        return Err(Error::corrupt(format!(
            "the log ends before position {size}"
        )));
    }
    Ok(range.root())
}

/// Fetches what `asked` names: stored nodes, and the leaves of the blocks
/// below the stored levels.
async fn fetch<S: AuditTrail>(store: &S, asked: &[Block]) -> Result<Fetched, Error> {
    let mut fetched = Fetched::default();
    let unique: BTreeSet<Block> = asked.iter().copied().collect();
    for block in unique {
        if block.level >= STORED_LEVEL_MIN {
            let rows = store
                .merkle_nodes(block.level, block.index, block.index)
                .await?;
            if let Some((_, hash)) = rows.first() {
                fetched.nodes.insert(block, decode(hash, "merkle node")?);
                continue;
            }
        }
        let leaves = u32::try_from(block.end() - block.start()).unwrap_or(u32::MAX);
        let hashes = store.leaf_hashes(block.start(), leaves).await?;
        for (offset, hash) in hashes.iter().enumerate() {
            let leaf = Block {
                level: 0,
                index: block.start() + offset as u64,
            };
            fetched
                .nodes
                .insert(leaf, leaf_hash(&decode(hash, "event hash")?));
        }
    }
    Ok(fetched)
}

fn missing(error: MissingNode) -> Error {
    Error::corrupt(error.to_string())
}

/// The inclusion proof of leaf `index` (position `index + 1`) in the tree
/// of `size` leaves; `index < size ≤` the log's length.
pub async fn inclusion_proof<S: AuditTrail>(
    store: &S,
    index: u64,
    size: u64,
) -> Result<Proof, Error> {
    let root = root_at(store, size).await?;
    let mut recorder = Recorder::default();
    let Ok(_) = inclusion_path(&mut recorder, index, size);
    let mut fetched = fetch(store, &recorder.asked).await?;
    let path = inclusion_path(&mut fetched, index, size).map_err(missing)?;
    let event = store.leaf_hashes(index, 1).await?;
    let event = decode(
        event
            .first()
            .ok_or_else(|| Error::corrupt("the proven event is missing"))?,
        "event hash",
    )?;
    Ok(Proof {
        path,
        root,
        other: event,
    })
}

/// The consistency proof between the trees of `old` and `new` leaves;
/// `1 ≤ old ≤ new ≤` the log's length.
pub async fn consistency_proof<S: AuditTrail>(
    store: &S,
    old: u64,
    new: u64,
) -> Result<Proof, Error> {
    let root = root_at(store, new).await?;
    let old_root = root_at(store, old).await?;
    let mut recorder = Recorder::default();
    let Ok(_) = consistency_path(&mut recorder, old, new);
    let mut fetched = fetch(store, &recorder.asked).await?;
    let path = consistency_path(&mut fetched, old, new).map_err(missing)?;
    Ok(Proof {
        path,
        root,
        other: old_root,
    })
}
