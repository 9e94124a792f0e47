//! The [`ApiKeys`] trait: API keys kept as SHA-256 hashes (the key itself is
//! shown once, when it is made, and never stored).

use std::future::Future;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::error::Error;

/// An API key as stored: never the key itself, only its hash.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiKeyRecord {
    pub key_id: Uuid,
    pub name: String,
    pub roles: Vec<String>,
    /// Lower-case hex SHA-256 of the whole key text.
    pub key_hash: String,
    pub created_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
}

/// The columns every API key read selects, in both backends.
pub(crate) const API_KEY_COLUMNS: &str = "key_id, name, roles, key_hash, created_at, revoked_at";

/// The stored API keys.
pub trait ApiKeys: Send + Sync {
    /// Stores a new key's hash. The caller made the key and shows it once.
    fn create_api_key(&self, key: &ApiKeyRecord) -> impl Future<Output = Result<(), Error>> + Send;

    /// The key whose hash is `key_hash`, revoked or not.
    fn find_api_key(
        &self,
        key_hash: &str,
    ) -> impl Future<Output = Result<Option<ApiKeyRecord>, Error>> + Send;

    /// Every key, oldest first.
    fn list_api_keys(&self) -> impl Future<Output = Result<Vec<ApiKeyRecord>, Error>> + Send;

    /// Revokes a key; false when no unrevoked key has that id.
    fn revoke_api_key(
        &self,
        key_id: Uuid,
        at: DateTime<Utc>,
    ) -> impl Future<Output = Result<bool, Error>> + Send;
}

/// The roles column: a JSON array of role names.
pub(crate) fn roles_text(roles: &[String]) -> String {
    serde_json::to_string(roles).unwrap_or_else(|_| "[]".to_owned())
}

pub(crate) fn parse_roles(text: &str) -> Result<Vec<String>, Error> {
    serde_json::from_str(text)
        .map_err(|error| Error::corrupt(format!("bad api key roles {text:?}: {error}")))
}
