//! The [`ApiKeys`] trait: API keys kept as SHA-256 hashes (the key itself is
//! shown once, when it is made, and never stored). The SQL is the same on
//! both databases: one implementation for every [`SqlStore`].

use std::future::Future;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::{Encode, Executor, Type};
use uuid::Uuid;

use super::decode;
use super::dialect::{Dialect, SqlStore};
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

/// The columns `decode::api_key` reads.
const API_KEY_COLUMNS: &str = "key_id, name, roles, key_hash, created_at, revoked_at";

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

impl<S, D> ApiKeys for S
where
    S: SqlStore<Db = D>,
    D: Dialect,
    for<'c> &'c mut D::Connection: Executor<'c, Database = D>,
    for<'q> String: Encode<'q, D> + Type<D>,
{
    async fn create_api_key(&self, key: &ApiKeyRecord) -> Result<(), Error> {
        sqlx::query(
            "INSERT INTO api_keys (key_id, name, roles, key_hash, created_at) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(D::id(key.key_id))
        .bind(key.name.clone())
        .bind(roles_text(&key.roles))
        .bind(key.key_hash.clone())
        .bind(D::time(key.created_at))
        .execute(self.pool())
        .await?;
        Ok(())
    }

    async fn find_api_key(&self, key_hash: &str) -> Result<Option<ApiKeyRecord>, Error> {
        let sql = format!("SELECT {API_KEY_COLUMNS} FROM api_keys WHERE key_hash = $1");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(key_hash.to_owned())
            .fetch_optional(self.pool())
            .await?;
        row.as_ref().map(decode::api_key).transpose()
    }

    async fn list_api_keys(&self) -> Result<Vec<ApiKeyRecord>, Error> {
        let sql = format!("SELECT {API_KEY_COLUMNS} FROM api_keys ORDER BY created_at, key_id");
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .fetch_all(self.pool())
            .await?;
        rows.iter().map(decode::api_key).collect()
    }

    async fn revoke_api_key(&self, key_id: Uuid, at: DateTime<Utc>) -> Result<bool, Error> {
        // RETURNING, not rows_affected: the row count has no generic form in sqlx.
        let revoked = sqlx::query(
            "UPDATE api_keys SET revoked_at = $1 WHERE key_id = $2 AND revoked_at IS NULL \
             RETURNING key_id",
        )
        .bind(D::time(at))
        .bind(D::id(key_id))
        .fetch_optional(self.pool())
        .await?;
        Ok(revoked.is_some())
    }
}

/// The roles column: a JSON array of role names.
pub(crate) fn roles_text(roles: &[String]) -> String {
    serde_json::to_string(roles).unwrap_or_else(|_| "[]".to_owned())
}

pub(crate) fn parse_roles(text: &str) -> Result<Vec<String>, Error> {
    serde_json::from_str(text)
        .map_err(|error| Error::corrupt(format!("bad api key roles {text:?}: {error}")))
}
