//! JWT verification keys: one PEM key, or a JWKS file (JSON Web Key Set,
//! RFC 7517) whose keys the token's `kid` header picks. Keys are read once
//! at start-up; the algorithm stays pinned by configuration either way.

use std::collections::BTreeMap;
use std::path::Path;

use jsonwebtoken::DecodingKey;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, JwkSet, KeyAlgorithm, PublicKeyUse};

use super::config::JwtAlgorithm;

/// Most keys accepted in a JWKS file.
pub const JWKS_KEYS_MAX: usize = 100;
/// Largest JWKS file read, in bytes.
pub const JWKS_BYTES_MAX: u64 = 1024 * 1024;

/// The keys bearer JWTs are checked with.
#[derive(Clone)]
pub enum JwtKeys {
    /// Every token is checked with this key (a PEM key, a secret, or a JWKS
    /// holding one key without `kid`).
    One(DecodingKey),
    /// The token's `kid` names the key; a token without a known `kid` is refused.
    ById(BTreeMap<String, DecodingKey>),
}

impl std::fmt::Debug for JwtKeys {
    // Key material stays out of logs: only the shape and the key ids.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            JwtKeys::One(_) => f.write_str("One(..)"),
            JwtKeys::ById(keys) => f.debug_list().entries(keys.keys()).finish(),
        }
    }
}

/// Why a JWKS file cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error("cannot read the JWKS file {path}: {source}")]
    Read {
        path: String,
        source: crate::bounded::Error,
    },
    #[error("the JWKS file {path} is larger than {JWKS_BYTES_MAX} bytes")]
    TooLarge { path: String },
    #[error("the JWKS file {path} is not a JSON Web Key Set ({{\"keys\": [...]}}): {source}")]
    Parse {
        path: String,
        source: serde_json::Error,
    },
    #[error(
        "the JWKS file {path} holds no {algorithm:?} signing key (RS256: kty RSA; ES256: kty EC, crv P-256)"
    )]
    NoKey {
        path: String,
        algorithm: JwtAlgorithm,
    },
    #[error("the JWKS file {path} holds {count} {algorithm:?} keys, more than {JWKS_KEYS_MAX}")]
    TooMany {
        path: String,
        algorithm: JwtAlgorithm,
        count: usize,
    },
    #[error(
        "the JWKS file {path} holds several {algorithm:?} keys, so each needs a distinct `kid`"
    )]
    KidMissing {
        path: String,
        algorithm: JwtAlgorithm,
    },
    #[error("key {kid:?} in the JWKS file {path} is unusable: {source}")]
    Key {
        path: String,
        kid: String,
        source: jsonwebtoken::errors::Error,
    },
}

/// Reads the keys of `path` usable with `algorithm`; keys for another
/// algorithm or for encryption are skipped (sets often hold several kinds).
pub fn read(path: &Path, algorithm: JwtAlgorithm) -> Result<JwtKeys, Error> {
    let shown = path.display().to_string();
    let text = crate::bounded::read_file(path, JWKS_BYTES_MAX).map_err(|source| match source {
        crate::bounded::Error::TooLarge { .. } => Error::TooLarge {
            path: shown.clone(),
        },
        source => Error::Read {
            path: shown.clone(),
            source,
        },
    })?;
    let set: JwkSet = serde_json::from_slice(&text).map_err(|source| Error::Parse {
        path: shown.clone(),
        source,
    })?;
    let usable: Vec<_> = set
        .keys
        .iter()
        .filter(|jwk| {
            matches!(
                jwk.common.public_key_use,
                None | Some(PublicKeyUse::Signature)
            )
        })
        .filter(|jwk| {
            jwk.common
                .key_algorithm
                .is_none_or(|alg| alg == key_algorithm(algorithm))
        })
        .filter(|jwk| match (&jwk.algorithm, algorithm) {
            (AlgorithmParameters::RSA(_), JwtAlgorithm::RS256) => true,
            (AlgorithmParameters::EllipticCurve(ec), JwtAlgorithm::ES256) => {
                ec.curve == EllipticCurve::P256
            }
            _ => false,
        })
        .collect();
    let (path, count) = (shown, usable.len());
    match usable[..] {
        [] => Err(Error::NoKey { path, algorithm }),
        _ if count > JWKS_KEYS_MAX => Err(Error::TooMany {
            path,
            algorithm,
            count,
        }),
        [only] if only.common.key_id.is_none() => {
            let key = DecodingKey::from_jwk(only).map_err(|source| Error::Key {
                path,
                kid: String::new(),
                source,
            })?;
            Ok(JwtKeys::One(key))
        }
        _ => {
            let mut keys = BTreeMap::new();
            for jwk in usable {
                let Some(kid) = jwk.common.key_id.clone() else {
                    return Err(Error::KidMissing { path, algorithm });
                };
                let key = DecodingKey::from_jwk(jwk).map_err(|source| Error::Key {
                    path: path.clone(),
                    kid: kid.clone(),
                    source,
                })?;
                if keys.insert(kid, key).is_some() {
                    return Err(Error::KidMissing { path, algorithm });
                }
            }
            Ok(JwtKeys::ById(keys))
        }
    }
}

fn key_algorithm(algorithm: JwtAlgorithm) -> KeyAlgorithm {
    match algorithm {
        JwtAlgorithm::HS256 => KeyAlgorithm::HS256,
        JwtAlgorithm::RS256 => KeyAlgorithm::RS256,
        JwtAlgorithm::ES256 => KeyAlgorithm::ES256,
    }
}
