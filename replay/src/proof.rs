//! Merkle proofs as files (`imx replay prove`, `imx replay verify-proof`):
//! an inclusion proof of one event in the tree of a size, or a consistency
//! proof between two sizes, in the JSON form `docs/merkle.md` defines, and
//! their offline verification (RFC 9162's algorithms, `engine::merkle`).

use engine::merkle::{self, Hash};
use engine::store::prelude::*;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::Error;

/// The `format` of a proof file.
pub const PROOF_FORMAT: &str = "imx-merkle-proof";
/// The `format_version` this build writes and reads.
pub const PROOF_FORMAT_VERSION: u32 = 1;
/// Longest proof file read, in bytes (a path has at most 64 hashes).
pub const PROOF_BYTES_MAX: u64 = 64 * 1024;

/// A proof file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum ProofFile {
    /// The event whose run chain `hash` is `event_hash` is leaf
    /// `position - 1` of the tree of `tree_size` leaves with root `root`.
    Inclusion {
        format: String,
        format_version: u32,
        tree_size: u64,
        position: u64,
        run_id: Uuid,
        seq: u64,
        event_hash: String,
        root: String,
        path: Vec<String>,
    },
    /// The tree of `old_size` leaves (root `old_root`) is a prefix of the
    /// tree of `new_size` leaves (root `new_root`).
    Consistency {
        format: String,
        format_version: u32,
        old_size: u64,
        new_size: u64,
        old_root: String,
        new_root: String,
        path: Vec<String>,
    },
}

fn hexes(path: &[Hash]) -> Vec<String> {
    path.iter().map(hex::encode).collect()
}

/// The tree size a proof uses: `wanted`, else the newest checkpoint's size
/// if it covers `at_least`, else the log's length. Checked against the log.
async fn tree_size<S: EventStore>(
    store: &S,
    wanted: Option<u64>,
    at_least: u64,
) -> Result<u64, Error> {
    let head = store.log_head().await?.position;
    let size = match wanted {
        Some(size) => size,
        None => match store.latest_checkpoint().await? {
            Some(checkpoint) if checkpoint.tree_size >= at_least => checkpoint.tree_size,
            _ => head,
        },
    };
    if size > head || size < at_least || size == 0 {
        return Err(Error::TreeSize {
            size,
            at_least: at_least.max(1),
            head,
        });
    }
    Ok(size)
}

/// The inclusion proof of run `run_id`'s event `seq`.
pub async fn prove_inclusion<S: EventStore>(
    store: &S,
    run_id: Uuid,
    seq: u64,
    wanted_size: Option<u64>,
) -> Result<ProofFile, Error> {
    let events = store.read_stream(run_id, seq.saturating_sub(1), 1).await?;
    let event = match events.first() {
        Some(event) if event.seq == seq && seq > 0 => event,
        _ => {
            let last = store.read_stream(run_id, 0, 1).await?;
            if last.is_empty() {
                return Err(Error::RunNotFound { run_id });
            }
            return Err(Error::SeqNotFound { run_id, seq });
        }
    };
    let size = tree_size(store, wanted_size, event.position).await?;
    let proof = merkle::inclusion_proof(store, event.position - 1, size).await?;
    Ok(ProofFile::Inclusion {
        format: PROOF_FORMAT.to_owned(),
        format_version: PROOF_FORMAT_VERSION,
        tree_size: size,
        position: event.position,
        run_id,
        seq,
        event_hash: event.hash.clone(),
        root: hex::encode(proof.root),
        path: hexes(&proof.path),
    })
}

/// The consistency proof from `old` to `new` leaves.
pub async fn prove_consistency<S: EventStore>(
    store: &S,
    old: u64,
    new: u64,
) -> Result<ProofFile, Error> {
    let new = tree_size(store, Some(new), old.max(1)).await?;
    let proof = merkle::consistency_proof(store, old, new).await?;
    Ok(ProofFile::Consistency {
        format: PROOF_FORMAT.to_owned(),
        format_version: PROOF_FORMAT_VERSION,
        old_size: old,
        new_size: new,
        old_root: hex::encode(proof.other),
        new_root: hex::encode(proof.root),
        path: hexes(&proof.path),
    })
}

fn hash(value: &str, what: &str) -> Result<Hash, Error> {
    crate::verify::decode(value).ok_or_else(|| Error::ProofFile {
        detail: format!("{what} is not 64 lowercase hex digits"),
    })
}

/// What a verified proof established, for the report.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Proven {
    /// One line: what holds.
    pub statement: String,
    /// The tree size and root the proof ends at (what a checkpoint must sign).
    pub tree_size: u64,
    pub root: String,
}

/// Verifies a proof file's text offline. `Err(Error::ProofInvalid)`: the
/// path does not connect what the file claims.
pub fn verify_proof(text: &str) -> Result<Proven, Error> {
    let file: ProofFile = serde_json::from_str(text).map_err(|error| Error::ProofFile {
        detail: error.to_string(),
    })?;
    let (format, version) = match &file {
        ProofFile::Inclusion {
            format,
            format_version,
            ..
        }
        | ProofFile::Consistency {
            format,
            format_version,
            ..
        } => (format, *format_version),
    };
    if format != PROOF_FORMAT || version != PROOF_FORMAT_VERSION {
        return Err(Error::ProofFile {
            detail: format!(
                "format {format} v{version}, not {PROOF_FORMAT} v{PROOF_FORMAT_VERSION}"
            ),
        });
    }
    match file {
        ProofFile::Inclusion {
            tree_size,
            position,
            run_id,
            seq,
            event_hash,
            root,
            path,
            ..
        } => {
            let path = path
                .iter()
                .map(|h| hash(h, "a path entry"))
                .collect::<Result<Vec<_>, _>>()?;
            let leaf = merkle::leaf_hash(&hash(&event_hash, "event_hash")?);
            let index = position.checked_sub(1).ok_or_else(|| Error::ProofFile {
                detail: "position 0".to_owned(),
            })?;
            if !merkle::verify_inclusion(index, tree_size, &leaf, &path, &hash(&root, "root")?) {
                return Err(Error::ProofInvalid {
                    detail: format!(
                        "the path does not lead from event {event_hash} at position {position} to root {root} of size {tree_size}"
                    ),
                });
            }
            Ok(Proven {
                statement: format!(
                    "run {run_id} seq {seq} (position {position}, hash {event_hash}) is in the log of {tree_size} events with root {root}"
                ),
                tree_size,
                root,
            })
        }
        ProofFile::Consistency {
            old_size,
            new_size,
            old_root,
            new_root,
            path,
            ..
        } => {
            let path = path
                .iter()
                .map(|h| hash(h, "a path entry"))
                .collect::<Result<Vec<_>, _>>()?;
            let (old, new) = (hash(&old_root, "old_root")?, hash(&new_root, "new_root")?);
            if !merkle::verify_consistency(old_size, new_size, &old, &new, &path) {
                return Err(Error::ProofInvalid {
                    detail: format!(
                        "the path does not show the log of {old_size} events (root {old_root}) as a prefix of the log of {new_size} (root {new_root})"
                    ),
                });
            }
            Ok(Proven {
                statement: format!(
                    "the log of {new_size} events (root {new_root}) extends the log of {old_size} events (root {old_root})"
                ),
                tree_size: new_size,
                root: new_root,
            })
        }
    }
}
