//! `imx replay verify --trusted-keys KEYS [--checkpoints FILE]`: signed
//! checkpoints (`docs/checkpoints.md`) turned into the log hashes a history
//! must have at their sizes. Only notes with a valid signature by a
//! trusted key count; notes of other keys are skipped (and counted), a
//! trusted key's signature that does not verify is an error, and two
//! trusted checkpoints of one size that disagree are an error (the signer
//! showed two histories: a split view or a stolen key).

use std::collections::BTreeMap;

use engine::checkpoint::{Error, TrustedKey, Verified, split_notes, verify_note};

use crate::verify::Expectation;

/// The trusted checkpoints found, one per tree size.
#[derive(Clone, Debug, Default)]
pub struct TrustedCheckpoints {
    pub by_size: BTreeMap<u64, Verified>,
    /// Notes with no signature by a trusted key (skipped).
    pub untrusted: usize,
}

impl TrustedCheckpoints {
    /// Reads checkpoint notes: witness files (`split_notes`) or the
    /// store's notes, checked against `keys`.
    pub fn from_notes<'a>(
        keys: &[TrustedKey],
        notes: impl IntoIterator<Item = &'a str>,
    ) -> Result<TrustedCheckpoints, Error> {
        let mut found = TrustedCheckpoints::default();
        for note in notes {
            let verified = match verify_note(note, keys) {
                Ok(verified) => verified,
                Err(Error::Untrusted { .. }) => {
                    found.untrusted += 1;
                    continue;
                }
                Err(error) => return Err(error),
            };
            let size = verified.checkpoint.tree_size;
            match found.by_size.get_mut(&size) {
                Some(known)
                    if known.checkpoint.log_hash != verified.checkpoint.log_hash
                        || known.checkpoint.root != verified.checkpoint.root =>
                {
                    return Err(Error::Conflict {
                        tree_size: size,
                        first: known.signers.join(" "),
                        second: verified.signers.join(" "),
                    });
                }
                Some(known) => {
                    for signer in verified.signers {
                        if !known.signers.contains(&signer) {
                            known.signers.push(signer);
                        }
                    }
                }
                None => {
                    found.by_size.insert(size, verified);
                }
            }
        }
        Ok(found)
    }

    /// One expectation per checkpoint: its log hash at its size.
    pub fn expectations(&self) -> Vec<Expectation> {
        self.by_size
            .values()
            .filter(|verified| verified.checkpoint.tree_size > 0)
            .map(|verified| Expectation {
                position: verified.checkpoint.tree_size,
                log_hash: verified.checkpoint.log_hash.clone(),
                checkpoint: Some(verified.signers.join(" ")),
                checkpoint_root: Some(hex::encode(verified.checkpoint.root)),
            })
            .collect()
    }
}

/// Splits a checkpoints file into notes and reads them (see
/// [`TrustedCheckpoints::from_notes`]).
pub fn read_checkpoints_file(keys: &[TrustedKey], text: &str) -> Result<TrustedCheckpoints, Error> {
    let notes = split_notes(text);
    TrustedCheckpoints::from_notes(keys, notes.iter().map(String::as_str))
}
