//! Workflow versions: the content hash of a workflow's canonical form.
//!
//! The canonical form is the RFC 8785 (JSON Canonicalization Scheme) text of
//! the model's serde form, so two definitions that mean the same thing (keys
//! reordered, YAML reformatted, defaults written out or inherited) share one
//! version, and any semantic edit yields a new one. See `docs/versions.md`.

use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::workflow::Workflow;

/// Prefix of every version string; names the hash so it can change one day.
pub const VERSION_PREFIX: &str = "sha256:";

/// The version of `workflow`: `sha256:` followed by 64 lowercase hex digits.
pub fn version_of(workflow: &Workflow) -> String {
    let digest = Sha256::digest(canonical_form(workflow).as_bytes());
    format!("{VERSION_PREFIX}{}", hex::encode(digest))
}

/// The RFC 8785 canonical JSON text that [`version_of`] hashes.
pub fn canonical_form(workflow: &Workflow) -> String {
    // Going through `Value` first maps non-finite floats to `null`, so the
    // canonicaliser below only ever sees finite numbers and string keys.
    let value = match serde_json::to_value(workflow) {
        Ok(value) => stored_form(value),
        // Unreachable for the model's types; still deterministic and distinct
        // per workflow instead of panicking on a user path.
        Err(err) => Value::String(format!("unserializable workflow ({err}): {workflow:?}")),
    };
    match serde_json_canonicalizer::to_string(&value) {
        Ok(text) => text,
        Err(err) => format!("unserializable workflow ({err}): {workflow:?}"),
    }
}

/// The serde form after one more round trip through the model, i.e. the form
/// a stored and reloaded workflow has. Without it `output: Some(null)` would
/// serialise as `"output": null`, reload as `None` and change its version.
fn stored_form(value: Value) -> Value {
    match serde_json::from_value::<Workflow>(value.clone()).map(|w| serde_json::to_value(&w)) {
        Ok(Ok(reloaded)) => reloaded,
        _ => value,
    }
}

/// Whether `version` has the shape [`version_of`] produces.
pub fn is_version(version: &str) -> bool {
    version.strip_prefix(VERSION_PREFIX).is_some_and(|digest| {
        digest.len() == 64
            && digest
                .bytes()
                .all(|byte| byte.is_ascii_digit() || (b'a'..=b'f').contains(&byte))
    })
}
