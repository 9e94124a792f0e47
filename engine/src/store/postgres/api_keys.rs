//! PostgreSQL side of the API keys.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::PostgresStore;
use crate::store::api_keys::{API_KEY_COLUMNS, ApiKeyRecord, ApiKeys, roles_text};
use crate::store::decode;
use crate::store::error::Error;

impl ApiKeys for PostgresStore {
    async fn create_api_key(&self, key: &ApiKeyRecord) -> Result<(), Error> {
        sqlx::query(
            "INSERT INTO api_keys (key_id, name, roles, key_hash, created_at) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(key.key_id)
        .bind(&key.name)
        .bind(roles_text(&key.roles))
        .bind(&key.key_hash)
        .bind(key.created_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn find_api_key(&self, key_hash: &str) -> Result<Option<ApiKeyRecord>, Error> {
        let sql = format!("SELECT {API_KEY_COLUMNS} FROM api_keys WHERE key_hash = $1");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(key_hash)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(decode::api_key).transpose()
    }

    async fn list_api_keys(&self) -> Result<Vec<ApiKeyRecord>, Error> {
        let sql = format!("SELECT {API_KEY_COLUMNS} FROM api_keys ORDER BY created_at, key_id");
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(decode::api_key).collect()
    }

    async fn revoke_api_key(&self, key_id: Uuid, at: DateTime<Utc>) -> Result<bool, Error> {
        let done = sqlx::query(
            "UPDATE api_keys SET revoked_at = $1 WHERE key_id = $2 AND revoked_at IS NULL",
        )
        .bind(at)
        .bind(key_id)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }
}
