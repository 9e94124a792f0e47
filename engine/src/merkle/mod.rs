//! The RFC 6962 Merkle tree over the global log: leaf `i` is the event at
//! position `i + 1`, its leaf input the 32 bytes of the event's `hash`.
//! Pure (no I/O): root, inclusion and consistency proofs are computed from
//! a [`NodeSource`] of *perfect* subtrees (2^level leaves starting at a
//! multiple of 2^level), which the store keeps from level
//! [`STORED_LEVEL_MIN`] up and the caller fills in below that from leaves.
//! The verification functions are RFC 9162 §2.1.3.2 and §2.1.4.2 as
//! written. Normative text: `docs/merkle.md`.

use sha2::{Digest, Sha256};

/// A SHA-256 digest.
pub type Hash = [u8; 32];

/// The lowest level the store keeps nodes of: one node per 16 leaves and
/// the levels above (about n/8 rows for n events); lower nodes are hashed
/// again from at most 16 leaves when a proof needs them.
pub const STORED_LEVEL_MIN: u32 = 4;

/// The leaves under one stored node of the lowest stored level.
pub const STORED_BLOCK_LEAVES: u64 = 1 << STORED_LEVEL_MIN;

/// `SHA-256(0x00 || event_hash)`.
pub fn leaf_hash(event_hash: &Hash) -> Hash {
    let mut input = [0u8; 33];
    input[1..].copy_from_slice(event_hash);
    Sha256::digest(input).into()
}

/// `SHA-256(0x01 || left || right)`.
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut input = [1u8; 65];
    input[1..33].copy_from_slice(left);
    input[33..].copy_from_slice(right);
    Sha256::digest(input).into()
}

/// The root of the empty tree, `SHA-256()` (RFC 6962 §2.1).
pub fn empty_root() -> Hash {
    Sha256::digest([]).into()
}

/// One perfect subtree: `level` (0 = a leaf) and `index` at that level; it
/// covers leaves `index << level .. (index + 1) << level`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Block {
    pub level: u32,
    pub index: u64,
}

impl Block {
    pub fn start(self) -> u64 {
        self.index << self.level
    }
    pub fn end(self) -> u64 {
        (self.index + 1) << self.level
    }
    pub fn children(self) -> (Block, Block) {
        let level = self.level - 1;
        (
            Block {
                level,
                index: 2 * self.index,
            },
            Block {
                level,
                index: 2 * self.index + 1,
            },
        )
    }
}

/// Where the hashes of perfect subtrees come from.
pub trait NodeSource {
    type Error;
    fn perfect(&mut self, block: Block) -> Result<Hash, Self::Error>;
}

/// The perfect subtrees that make up leaves `start..end` (`start` a
/// multiple of the largest power of two ≤ `end - start`, as every range
/// RFC 6962 hashes is), largest first.
pub fn blocks(start: u64, end: u64) -> Vec<Block> {
    let mut out = Vec::new();
    let mut at = start;
    while at < end {
        let mut level = (end - at).ilog2();
        while !at.is_multiple_of(1u64 << level) {
            level -= 1;
        }
        out.push(Block {
            level,
            index: at >> level,
        });
        at += 1u64 << level;
    }
    out
}

/// `MTH(D[start:end])`: the perfect subtrees folded from the right.
pub fn range_hash<S: NodeSource>(source: &mut S, start: u64, end: u64) -> Result<Hash, S::Error> {
    if start == end {
        return Ok(empty_root());
    }
    let mut parts = blocks(start, end).into_iter().rev();
    let mut hash = match parts.next() {
        Some(last) => source.perfect(last)?,
        None => return Ok(empty_root()),
    };
    for block in parts {
        hash = node_hash(&source.perfect(block)?, &hash);
    }
    Ok(hash)
}

/// The root of the tree of the first `size` leaves.
pub fn root<S: NodeSource>(source: &mut S, size: u64) -> Result<Hash, S::Error> {
    range_hash(source, 0, size)
}

/// The largest power of two strictly below `n` (`n` ≥ 2).
fn split(n: u64) -> u64 {
    1u64 << (n - 1).ilog2()
}

/// `PATH(index, D[0:size])` of RFC 6962 §2.1.1, leaf to root.
/// `index < size` is the caller's to check.
pub fn inclusion_path<S: NodeSource>(
    source: &mut S,
    index: u64,
    size: u64,
) -> Result<Vec<Hash>, S::Error> {
    let mut path = Vec::new();
    path_into(source, index, 0, size, &mut path)?;
    Ok(path)
}

fn path_into<S: NodeSource>(
    source: &mut S,
    index: u64,
    start: u64,
    end: u64,
    path: &mut Vec<Hash>,
) -> Result<(), S::Error> {
    let n = end - start;
    if n <= 1 {
        return Ok(());
    }
    let k = split(n);
    if index < k {
        path_into(source, index, start, start + k, path)?;
        path.push(range_hash(source, start + k, end)?);
    } else {
        path_into(source, index - k, start + k, end, path)?;
        path.push(range_hash(source, start, start + k)?);
    }
    Ok(())
}

/// `PROOF(old, D[0:new])` of RFC 6962 §2.1.2; empty when `old == new`.
/// `1 ≤ old ≤ new` is the caller's to check.
pub fn consistency_path<S: NodeSource>(
    source: &mut S,
    old: u64,
    new: u64,
) -> Result<Vec<Hash>, S::Error> {
    let mut path = Vec::new();
    if old < new {
        subproof_into(source, old, 0, new, true, &mut path)?;
    }
    Ok(path)
}

fn subproof_into<S: NodeSource>(
    source: &mut S,
    m: u64,
    start: u64,
    end: u64,
    whole: bool,
    path: &mut Vec<Hash>,
) -> Result<(), S::Error> {
    let n = end - start;
    if m == n {
        if !whole {
            path.push(range_hash(source, start, end)?);
        }
        return Ok(());
    }
    let k = split(n);
    if m <= k {
        subproof_into(source, m, start, start + k, whole, path)?;
        path.push(range_hash(source, start + k, end)?);
    } else {
        subproof_into(source, m - k, start + k, end, false, path)?;
        path.push(range_hash(source, start, start + k)?);
    }
    Ok(())
}

/// RFC 9162 §2.1.3.2: does `path` prove `leaf` (a leaf hash) at `index` in
/// the tree of `size` leaves whose root is `root`?
pub fn verify_inclusion(index: u64, size: u64, leaf: &Hash, path: &[Hash], root: &Hash) -> bool {
    if index >= size {
        return false;
    }
    let (mut f, mut s) = (index, size - 1);
    let mut r = *leaf;
    for p in path {
        if s == 0 {
            return false;
        }
        if f & 1 == 1 || f == s {
            r = node_hash(p, &r);
            while f & 1 == 0 && f != 0 {
                f >>= 1;
                s >>= 1;
            }
        } else {
            r = node_hash(&r, p);
        }
        f >>= 1;
        s >>= 1;
    }
    s == 0 && r == *root
}

/// RFC 9162 §2.1.4.2: does `path` prove that the tree of `old` leaves with
/// root `old_root` is a prefix of the tree of `new` leaves with `new_root`?
/// Equal sizes need an empty path and equal roots.
pub fn verify_consistency(
    old: u64,
    new: u64,
    old_root: &Hash,
    new_root: &Hash,
    path: &[Hash],
) -> bool {
    if old == 0 || old > new {
        return false;
    }
    if old == new {
        return path.is_empty() && old_root == new_root;
    }
    if path.is_empty() {
        return false;
    }
    let mut nodes: Vec<Hash> = Vec::with_capacity(path.len() + 1);
    if old.is_power_of_two() {
        nodes.push(*old_root);
    }
    nodes.extend_from_slice(path);
    let (mut f, mut s) = (old - 1, new - 1);
    while f & 1 == 1 {
        f >>= 1;
        s >>= 1;
    }
    let (mut fr, mut sr) = (nodes[0], nodes[0]);
    for c in &nodes[1..] {
        if s == 0 {
            return false;
        }
        if f & 1 == 1 || f == s {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            while f & 1 == 0 && f != 0 {
                f >>= 1;
                s >>= 1;
            }
        } else {
            sr = node_hash(&sr, c);
        }
        f >>= 1;
        s >>= 1;
    }
    fr == *old_root && sr == *new_root && s == 0
}

/// The blocks a computation asks its source for, in order (a first pass
/// with dummy hashes: which nodes a proof needs does not depend on their
/// values, so the caller can fetch them all at once, then compute).
#[derive(Debug, Default)]
pub struct Recorder {
    pub asked: Vec<Block>,
}

impl NodeSource for Recorder {
    type Error = std::convert::Infallible;
    fn perfect(&mut self, block: Block) -> Result<Hash, Self::Error> {
        self.asked.push(block);
        Ok([0; 32])
    }
}

/// A source over hashes fetched beforehand: stored nodes and leaf hashes
/// (already `leaf_hash`ed), hashing up from children what it lacks.
#[derive(Debug, Default)]
pub struct Fetched {
    pub nodes: std::collections::HashMap<Block, Hash>,
}

/// A node [`Fetched`] neither has nor can hash from what it has.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the Merkle node at level {} index {} is not available", .0.level, .0.index)]
pub struct MissingNode(pub Block);

impl NodeSource for Fetched {
    type Error = MissingNode;
    fn perfect(&mut self, block: Block) -> Result<Hash, MissingNode> {
        if let Some(hash) = self.nodes.get(&block) {
            return Ok(*hash);
        }
        if block.level == 0 {
            return Err(MissingNode(block));
        }
        let (left, right) = block.children();
        let hash = node_hash(&self.perfect(left)?, &self.perfect(right)?);
        self.nodes.insert(block, hash);
        Ok(hash)
    }
}

/// A compact range: the perfect subtrees of a prefix of the leaves, which
/// grows one leaf at a time with O(1) amortized hashing and yields the root
/// of the prefix at any point (the tree builder and offline verifiers).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CompactRange {
    size: u64,
    /// Roots of [`blocks`]`(0, size)`, largest first.
    stack: Vec<Hash>,
}

impl CompactRange {
    /// A range from `size` leaves and the hashes of `blocks(0, size)`.
    pub fn from_parts(size: u64, stack: Vec<Hash>) -> Option<CompactRange> {
        (blocks(0, size).len() == stack.len()).then_some(CompactRange { size, stack })
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    /// Appends a leaf (already `leaf_hash`ed); returns the perfect blocks it
    /// completed, lowest first (the leaf itself first).
    pub fn push(&mut self, leaf: Hash) -> Vec<(Block, Hash)> {
        let mut completed = Vec::new();
        self.push_with(leaf, |block, hash| completed.push((block, *hash)));
        completed
    }

    /// Appends a leaf (already `leaf_hash`ed), keeping only the range (the
    /// verifier's per-event path: no allocation).
    pub fn append(&mut self, leaf: Hash) {
        self.push_with(leaf, |_, _| {});
    }

    /// Appends a leaf and hands each perfect block it completes to
    /// `completed`, lowest first (the leaf itself first).
    fn push_with(&mut self, leaf: Hash, mut completed: impl FnMut(Block, &Hash)) {
        let mut hash = leaf;
        let mut level = 0;
        let mut index = self.size;
        completed(Block { level, index }, &hash);
        while index & 1 == 1 {
            let left = self.stack.pop().unwrap_or([0; 32]);
            hash = node_hash(&left, &hash);
            level += 1;
            index >>= 1;
            completed(Block { level, index }, &hash);
        }
        self.stack.push(hash);
        self.size += 1;
    }

    /// The root of the first `size()` leaves.
    pub fn root(&self) -> Hash {
        let mut parts = self.stack.iter().rev();
        let Some(last) = parts.next() else {
            return empty_root();
        };
        parts.fold(*last, |hash, left| node_hash(left, &hash))
    }
}

mod stored;

pub use stored::{LEAF_PAGE_LEAVES, Proof, consistency_proof, extend, inclusion_proof, root_at};
