//! Signed checkpoints (issue #17, `docs/checkpoints.md`): Ed25519 keys in
//! the C2SP signed-note key format, and checkpoints in the C2SP
//! tlog-checkpoint text form (origin, tree size, base64 root, then imx's
//! extension lines) signed as a C2SP signed note. Pure: keys, text and
//! signatures; the node's writer is `writer.rs`, the Kafka witness
//! `topic.rs`.

mod topic;
mod writer;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use sha2::{Digest, Sha256};

use crate::merkle::Hash;

pub use topic::{TOPIC_READ_MS_MAX, TREE_SIZE_HEADER, read_topic};
pub use writer::{
    CHECKPOINT_EVERY_EVENTS_DEFAULT, CHECKPOINT_EVERY_MS_DEFAULT, CHECKPOINT_LEASE_MS,
    CHECKPOINT_LEASE_NAME, CHECKPOINT_POLL_MS_MAX, Config, Handle, WITNESS_POST_TIMEOUT_MS,
    Witness, checkpoint_once, spawn,
};

/// The signature algorithm byte of Ed25519 in C2SP signed notes.
const ALG_ED25519: u8 = 0x01;
/// The prefix of a private key line.
const PRIVATE_PREFIX: &str = "PRIVATE+KEY+";
/// The extension line carrying the log chain's hash at the tree size.
pub const LOG_HASH_LINE: &str = "imx-log-hash";
/// The extension line carrying the signing time (ms since the Unix epoch).
pub const TIME_LINE: &str = "imx-time-ms";
/// Longest key name (C2SP: no spaces, no `+`).
pub const KEY_NAME_BYTES_MAX: usize = 128;
/// Longest checkpoint note read (a few lines and signatures).
pub const NOTE_BYTES_MAX: usize = 16 * 1024;

/// Why a key or a checkpoint is refused; codes IMX087x (`docs/errors.md`).
#[derive(Debug, thiserror::Error, strum::EnumDiscriminants)]
#[strum_discriminants(
    name(ErrorKind),
    vis(pub),
    derive(strum::VariantArray, Hash, PartialOrd, Ord)
)]
#[non_exhaustive]
pub enum Error {
    #[error(
        "IMX0871: not an Ed25519 key in the C2SP note format: {detail}; make one with `imx keys generate`"
    )]
    BadKey { detail: String },
    #[error("IMX0872: not an imx checkpoint (C2SP signed note): {detail}")]
    BadNote { detail: String },
    #[error(
        "IMX0873: the checkpoint of size {tree_size} has no valid signature by a trusted key ({keys}); add its key to --trusted-keys, or do not trust it"
    )]
    Untrusted { tree_size: u64, keys: String },
    #[error("IMX0874: cannot write the checkpoint to {target}: {detail}")]
    Witness { target: String, detail: String },
    #[error(
        "IMX0875: two trusted checkpoints of size {tree_size} disagree (signed by {first} and by {second}): the signer showed two different histories; treat the key as compromised"
    )]
    Conflict {
        tree_size: u64,
        first: String,
        second: String,
    },
    #[error(transparent)]
    Store(#[from] crate::store::Error),
}

impl ErrorKind {
    /// The stable code; `None` for `Store` (it keeps its IMX03xx).
    pub const fn code(self) -> Option<&'static str> {
        Some(match self {
            ErrorKind::BadKey => "IMX0871",
            ErrorKind::BadNote => "IMX0872",
            ErrorKind::Untrusted => "IMX0873",
            ErrorKind::Witness => "IMX0874",
            ErrorKind::Conflict => "IMX0875",
            ErrorKind::Store => return None,
        })
    }
}

impl Error {
    /// The stable code (`docs/errors.md`) as data.
    pub fn code(&self) -> &'static str {
        match (self, ErrorKind::from(self).code()) {
            (Error::Store(error), _) => error.code(),
            (_, Some(code)) => code,
            // ErrorKind::code is `None` for `Store` only, matched above.
            (_, None) => crate::store::ErrorKind::Database.code(),
        }
    }
}

fn bad_key(detail: impl Into<String>) -> Error {
    Error::BadKey {
        detail: detail.into(),
    }
}

fn bad_note(detail: impl Into<String>) -> Error {
    Error::BadNote {
        detail: detail.into(),
    }
}

/// The C2SP key hash: the first 4 bytes of SHA-256(name ‖ "\n" ‖ 0x01 ‖ key).
fn key_hash(name: &str, public: &VerifyingKey) -> u32 {
    let mut hasher = Sha256::new();
    hasher.update(name.as_bytes());
    hasher.update(b"\n");
    hasher.update([ALG_ED25519]);
    hasher.update(public.as_bytes());
    let digest = hasher.finalize();
    u32::from_be_bytes([digest[0], digest[1], digest[2], digest[3]])
}

fn check_name(name: &str) -> Result<(), Error> {
    if name.is_empty()
        || name.len() > KEY_NAME_BYTES_MAX
        || name
            .chars()
            .any(|c| c == '+' || c.is_whitespace() || c.is_control())
    {
        return Err(bad_key(format!(
            "key name {name:?}: 1 to {KEY_NAME_BYTES_MAX} bytes, no spaces and no `+`"
        )));
    }
    Ok(())
}

/// A public key that checkpoints are checked against.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrustedKey {
    pub name: String,
    /// 8 hex digits: the key hash, from the name and the public key.
    pub key_id: String,
    key: VerifyingKey,
    hash: u32,
}

impl TrustedKey {
    /// Reads `name+hash8+base64(0x01 ‖ key)` (the C2SP verifier key).
    pub fn parse(text: &str) -> Result<TrustedKey, Error> {
        let mut parts = text.trim().splitn(3, '+');
        let (Some(name), Some(hash), Some(key)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(bad_key("a verifier key is NAME+HASH+KEY"));
        };
        check_name(name)?;
        let bytes = BASE64
            .decode(key)
            .map_err(|_| bad_key("the key is not base64"))?;
        let [ALG_ED25519, key @ ..] = bytes.as_slice() else {
            return Err(bad_key("not an Ed25519 key (algorithm byte 0x01)"));
        };
        let key: [u8; 32] = key.try_into().map_err(|_| bad_key("not 32 key bytes"))?;
        let key = VerifyingKey::from_bytes(&key).map_err(|_| bad_key("not an Ed25519 point"))?;
        let expected = key_hash(name, &key);
        if format!("{expected:08x}") != hash {
            return Err(bad_key(format!("key hash {hash} is not {expected:08x}")));
        }
        Ok(TrustedKey {
            name: name.to_owned(),
            key_id: hash.to_owned(),
            key,
            hash: expected,
        })
    }

    /// The verifier key line.
    pub fn to_text(&self) -> String {
        let mut bytes = vec![ALG_ED25519];
        bytes.extend_from_slice(self.key.as_bytes());
        format!("{}+{:08x}+{}", self.name, self.hash, BASE64.encode(bytes))
    }

    /// Every key of a keys file: one verifier key per line; `#` comments.
    pub fn parse_all(text: &str) -> Result<Vec<TrustedKey>, Error> {
        text.lines()
            .map(str::trim)
            .filter(|line| !line.is_empty() && !line.starts_with('#'))
            .map(TrustedKey::parse)
            .collect()
    }
}

/// A signing key (never logged; `Debug` shows the public half only).
pub struct PrivateKey {
    name: String,
    key: SigningKey,
}

impl std::fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PrivateKey({})", self.public().to_text())
    }
}

impl PrivateKey {
    /// A new key named `name` from 32 random bytes (the caller's randomness).
    pub fn from_seed(name: &str, seed: [u8; 32]) -> Result<PrivateKey, Error> {
        check_name(name)?;
        Ok(PrivateKey {
            name: name.to_owned(),
            key: SigningKey::from_bytes(&seed),
        })
    }

    /// Reads `PRIVATE+KEY+name+hash8+base64(0x01 ‖ seed)`.
    pub fn parse(text: &str) -> Result<PrivateKey, Error> {
        let rest = text
            .trim()
            .strip_prefix(PRIVATE_PREFIX)
            .ok_or_else(|| bad_key("a private key starts with PRIVATE+KEY+"))?;
        let mut parts = rest.splitn(3, '+');
        let (Some(name), Some(hash), Some(seed)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(bad_key("a private key is PRIVATE+KEY+NAME+HASH+KEY"));
        };
        let bytes = BASE64
            .decode(seed)
            .map_err(|_| bad_key("the key is not base64"))?;
        let [ALG_ED25519, seed @ ..] = bytes.as_slice() else {
            return Err(bad_key("not an Ed25519 key (algorithm byte 0x01)"));
        };
        let seed: [u8; 32] = seed.try_into().map_err(|_| bad_key("not 32 key bytes"))?;
        let key = PrivateKey::from_seed(name, seed)?;
        if key.public().key_id != hash {
            return Err(bad_key("the key hash does not match the key"));
        }
        Ok(key)
    }

    pub fn to_text(&self) -> String {
        let mut bytes = vec![ALG_ED25519];
        bytes.extend_from_slice(self.key.as_bytes());
        let public = self.public();
        format!(
            "{PRIVATE_PREFIX}{}+{}+{}",
            self.name,
            public.key_id,
            BASE64.encode(bytes)
        )
    }

    pub fn public(&self) -> TrustedKey {
        let key = self.key.verifying_key();
        let hash = key_hash(&self.name, &key);
        TrustedKey {
            name: self.name.clone(),
            key_id: format!("{hash:08x}"),
            key,
            hash,
        }
    }
}

/// What a checkpoint commits to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Checkpoint {
    /// The log's name (the first line).
    pub origin: String,
    /// Events in the tree: positions 1..=tree_size.
    pub tree_size: u64,
    pub root: Hash,
    /// The log chain's `log_hash` at position `tree_size` (genesis for 0).
    pub log_hash: String,
    pub time_ms: i64,
}

impl Checkpoint {
    /// The signed text: the tlog-checkpoint lines and imx's extensions.
    pub fn body(&self) -> String {
        format!(
            "{}\n{}\n{}\n{LOG_HASH_LINE} {}\n{TIME_LINE} {}\n",
            self.origin,
            self.tree_size,
            BASE64.encode(self.root),
            self.log_hash,
            self.time_ms
        )
    }

    /// The signed note: body, a blank line, `— name base64(hash4 ‖ sig)`.
    pub fn sign(&self, key: &PrivateKey) -> String {
        let body = self.body();
        let signature = key.key.sign(body.as_bytes());
        let mut blob = key.public().hash.to_be_bytes().to_vec();
        blob.extend_from_slice(&signature.to_bytes());
        format!("{body}\n\u{2014} {} {}\n", key.name, BASE64.encode(blob))
    }

    fn parse_body(body: &str) -> Result<Checkpoint, Error> {
        let lines: Vec<&str> = body.lines().collect();
        let [origin, size, root, log_hash, time] = lines.as_slice() else {
            return Err(bad_note(
                "the body is not 5 lines (origin, size, root, log hash, time)",
            ));
        };
        let tree_size = size
            .parse::<u64>()
            .ok()
            .filter(|_| size.bytes().all(|b| b.is_ascii_digit()))
            .ok_or_else(|| bad_note("the tree size is not a decimal number"))?;
        let root: Hash = BASE64
            .decode(root)
            .ok()
            .and_then(|bytes| bytes.try_into().ok())
            .ok_or_else(|| bad_note("the root is not 32 bytes of base64"))?;
        let log_hash = log_hash
            .strip_prefix(&format!("{LOG_HASH_LINE} "))
            .filter(|hash| {
                hash.len() == 64
                    && hash
                        .bytes()
                        .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
            })
            .ok_or_else(|| bad_note(format!("line 4 is not `{LOG_HASH_LINE} <64 hex>`")))?;
        let time_ms = time
            .strip_prefix(&format!("{TIME_LINE} "))
            .and_then(|ms| ms.parse::<i64>().ok())
            .ok_or_else(|| bad_note(format!("line 5 is not `{TIME_LINE} <ms>`")))?;
        let checkpoint = Checkpoint {
            origin: (*origin).to_owned(),
            tree_size,
            root,
            log_hash: log_hash.to_owned(),
            time_ms,
        };
        if checkpoint.body() != body {
            return Err(bad_note("the body is not in its one canonical spelling"));
        }
        Ok(checkpoint)
    }
}

/// A checkpoint whose signature by a trusted key verified.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verified {
    pub checkpoint: Checkpoint,
    /// The trusted keys that signed it (`name+hash8`).
    pub signers: Vec<String>,
    pub note: String,
}

/// Checks a signed note against `trusted` keys: at least one signature
/// line by a trusted key must verify; lines of unknown keys are ignored
/// (C2SP signed note), a line of a trusted key that does not verify is an
/// error.
pub fn verify_note(note: &str, trusted: &[TrustedKey]) -> Result<Verified, Error> {
    if note.len() > NOTE_BYTES_MAX {
        return Err(bad_note(format!("longer than {NOTE_BYTES_MAX} bytes")));
    }
    let (body, signatures) = note
        .split_once("\n\n")
        .ok_or_else(|| bad_note("no blank line before the signatures"))?;
    let body = format!("{body}\n");
    let checkpoint = Checkpoint::parse_body(&body)?;
    let mut signers = Vec::new();
    for line in signatures.lines() {
        let rest = line
            .strip_prefix("\u{2014} ")
            .ok_or_else(|| bad_note("a signature line starts with an em dash and a space"))?;
        let (name, blob) = rest
            .split_once(' ')
            .ok_or_else(|| bad_note("a signature line is `— NAME SIGNATURE`"))?;
        let blob = BASE64
            .decode(blob)
            .map_err(|_| bad_note("a signature is not base64"))?;
        let (hash, signature) = blob
            .split_at_checked(4)
            .ok_or_else(|| bad_note("a signature is too short"))?;
        let hash = u32::from_be_bytes(hash.try_into().unwrap_or_default());
        let Some(key) = trusted
            .iter()
            .find(|key| key.name == name && key.hash == hash)
        else {
            continue;
        };
        let signature = Signature::from_slice(signature)
            .map_err(|_| bad_note("a signature is not 64 bytes"))?;
        key.key.verify(body.as_bytes(), &signature).map_err(|_| {
            bad_note(format!(
                "the signature by {name}+{:08x} does not verify",
                key.hash
            ))
        })?;
        signers.push(format!("{name}+{:08x}", key.hash));
    }
    if signers.is_empty() {
        return Err(Error::Untrusted {
            tree_size: checkpoint.tree_size,
            keys: trusted
                .iter()
                .map(|key| format!("{}+{}", key.name, key.key_id))
                .collect::<Vec<_>>()
                .join(", "),
        });
    }
    Ok(Verified {
        checkpoint,
        signers,
        note: note.to_owned(),
    })
}

/// Splits a witness file (notes one after another, each ending at its
/// signature lines, separated by a blank line) into notes.
pub fn split_notes(text: &str) -> Vec<String> {
    let mut notes = Vec::new();
    let mut current = String::new();
    let mut in_signatures = false;
    for line in text.split_inclusive('\n') {
        if in_signatures && !line.starts_with('\u{2014}') {
            notes.push(std::mem::take(&mut current));
            in_signatures = false;
            if line == "\n" {
                continue;
            }
        }
        if line == "\n" && !current.is_empty() && !in_signatures {
            in_signatures = true;
        }
        current.push_str(line);
    }
    if !current.trim().is_empty() {
        notes.push(current);
    }
    notes
}
