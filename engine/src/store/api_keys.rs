//! API keys (kept as SHA-256 hashes) and the operational reads the API's
//! health and metrics endpoints need: migration status and queue depth.
//! Inherent methods on [`Store`] rather than trait methods: only the gateway
//! uses them, and the contract of [`EventStore`] stays about the log.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::Row;
use uuid::Uuid;

use super::error::Error;
use super::schema::{POSTGRES_MIGRATOR, SQLITE_MIGRATOR};
use super::{EventStore, Store};

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

fn roles_text(roles: &[String]) -> String {
    serde_json::to_string(roles).unwrap_or_else(|_| "[]".to_owned())
}

fn parse_roles(text: &str) -> Result<Vec<String>, Error> {
    serde_json::from_str(text)
        .map_err(|error| Error::corrupt(format!("bad api key roles {text:?}: {error}")))
}

fn parse_time(text: &str) -> Result<DateTime<Utc>, Error> {
    DateTime::parse_from_rfc3339(text)
        .map(|at| at.with_timezone(&Utc))
        .map_err(|error| Error::corrupt(format!("bad time {text:?}: {error}")))
}

fn sqlite_key(row: &sqlx::sqlite::SqliteRow) -> Result<ApiKeyRecord, Error> {
    let key_id: String = row.try_get("key_id")?;
    let revoked_at: Option<String> = row.try_get("revoked_at")?;
    Ok(ApiKeyRecord {
        key_id: Uuid::parse_str(&key_id)
            .map_err(|error| Error::corrupt(format!("bad key id {key_id:?}: {error}")))?,
        name: row.try_get("name")?,
        roles: parse_roles(&row.try_get::<String, _>("roles")?)?,
        key_hash: row.try_get("key_hash")?,
        created_at: parse_time(&row.try_get::<String, _>("created_at")?)?,
        revoked_at: revoked_at.as_deref().map(parse_time).transpose()?,
    })
}

fn postgres_key(row: &sqlx::postgres::PgRow) -> Result<ApiKeyRecord, Error> {
    Ok(ApiKeyRecord {
        key_id: row.try_get("key_id")?,
        name: row.try_get("name")?,
        roles: parse_roles(&row.try_get::<String, _>("roles")?)?,
        key_hash: row.try_get("key_hash")?,
        created_at: row.try_get("created_at")?,
        revoked_at: row.try_get("revoked_at")?,
    })
}

impl Store {
    /// Stores a new key's hash. The caller made the key and shows it once.
    pub async fn create_api_key(&self, key: &ApiKeyRecord) -> Result<(), Error> {
        match self {
            Store::Sqlite(store) => {
                sqlx::query(
                    "INSERT INTO api_keys (key_id, name, roles, key_hash, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
                )
                .bind(key.key_id.hyphenated().to_string())
                .bind(&key.name)
                .bind(roles_text(&key.roles))
                .bind(&key.key_hash)
                .bind(crate::chain::format_recorded_at(key.created_at))
                .execute(store.pool())
                .await?;
            }
            Store::Postgres(store) => {
                sqlx::query(
                    "INSERT INTO api_keys (key_id, name, roles, key_hash, created_at) VALUES ($1, $2, $3, $4, $5)",
                )
                .bind(key.key_id)
                .bind(&key.name)
                .bind(roles_text(&key.roles))
                .bind(&key.key_hash)
                .bind(key.created_at)
                .execute(store.pool())
                .await?;
            }
        }
        Ok(())
    }

    /// The key whose hash is `key_hash`, revoked or not.
    pub async fn find_api_key(&self, key_hash: &str) -> Result<Option<ApiKeyRecord>, Error> {
        match self {
            Store::Sqlite(store) => sqlx::query(concat!(
                "SELECT key_id, name, roles, key_hash, created_at, revoked_at",
                " FROM api_keys WHERE key_hash = ?1"
            ))
            .bind(key_hash)
            .fetch_optional(store.pool())
            .await?
            .as_ref()
            .map(sqlite_key)
            .transpose(),
            Store::Postgres(store) => sqlx::query(concat!(
                "SELECT key_id, name, roles, key_hash, created_at, revoked_at",
                " FROM api_keys WHERE key_hash = $1"
            ))
            .bind(key_hash)
            .fetch_optional(store.pool())
            .await?
            .as_ref()
            .map(postgres_key)
            .transpose(),
        }
    }

    /// Every key, oldest first.
    pub async fn list_api_keys(&self) -> Result<Vec<ApiKeyRecord>, Error> {
        const SQL: &str = "SELECT key_id, name, roles, key_hash, created_at, revoked_at FROM api_keys ORDER BY created_at, key_id";
        match self {
            Store::Sqlite(store) => sqlx::query(SQL)
                .fetch_all(store.pool())
                .await?
                .iter()
                .map(sqlite_key)
                .collect(),
            Store::Postgres(store) => sqlx::query(SQL)
                .fetch_all(store.pool())
                .await?
                .iter()
                .map(postgres_key)
                .collect(),
        }
    }

    /// Revokes a key; false when no unrevoked key has that id.
    pub async fn revoke_api_key(&self, key_id: Uuid, at: DateTime<Utc>) -> Result<bool, Error> {
        let done = match self {
            Store::Sqlite(store) => sqlx::query(
                "UPDATE api_keys SET revoked_at = ?1 WHERE key_id = ?2 AND revoked_at IS NULL",
            )
            .bind(crate::chain::format_recorded_at(at))
            .bind(key_id.hyphenated().to_string())
            .execute(store.pool())
            .await?
            .rows_affected(),
            Store::Postgres(store) => sqlx::query(
                "UPDATE api_keys SET revoked_at = $1 WHERE key_id = $2 AND revoked_at IS NULL",
            )
            .bind(at)
            .bind(key_id)
            .execute(store.pool())
            .await?
            .rows_affected(),
        };
        Ok(done == 1)
    }

    /// True when every migration this build embeds is applied (readiness).
    pub async fn migrations_current(&self) -> Result<bool, Error> {
        // The table name is MIGRATIONS_TABLE (sqlx's own).
        const SQL: &str = "SELECT MAX(version) FROM _sqlx_migrations WHERE success";
        let (applied, migrator): (Option<i64>, _) = match self {
            Store::Sqlite(store) => (
                sqlx::query_scalar(SQL).fetch_one(store.pool()).await?,
                &SQLITE_MIGRATOR,
            ),
            Store::Postgres(store) => (
                sqlx::query_scalar(SQL).fetch_one(store.pool()).await?,
                &POSTGRES_MIGRATOR,
            ),
        };
        let known = migrator.iter().map(|migration| migration.version).max();
        Ok(applied == known)
    }

    /// Tasks waiting in every queue (leased ones included).
    pub async fn queue_depth(&self) -> Result<u64, Error> {
        let count: i64 = match self {
            Store::Sqlite(store) => {
                sqlx::query_scalar("SELECT COUNT(*) FROM tasks")
                    .fetch_one(store.pool())
                    .await?
            }
            Store::Postgres(store) => {
                sqlx::query_scalar("SELECT COUNT(*) FROM tasks")
                    .fetch_one(store.pool())
                    .await?
            }
        };
        Ok(u64::try_from(count).unwrap_or(0))
    }

    /// Tasks whose lease ran out at `now` without being completed: a worker
    /// died or stalled, and the task waits to be claimed again.
    pub async fn expired_leases(&self, now: DateTime<Utc>) -> Result<u64, Error> {
        let count: i64 = match self {
            Store::Sqlite(store) => {
                sqlx::query_scalar(
                    "SELECT COUNT(*) FROM tasks WHERE lease_owner IS NOT NULL AND lease_expires_at < ?1",
                )
                .bind(crate::chain::format_recorded_at(now))
                .fetch_one(store.pool())
                .await?
            }
            Store::Postgres(store) => {
                sqlx::query_scalar(
                    "SELECT COUNT(*) FROM tasks WHERE lease_owner IS NOT NULL AND lease_expires_at < $1",
                )
                .bind(now)
                .fetch_one(store.pool())
                .await?
            }
        };
        Ok(u64::try_from(count).unwrap_or(0))
    }

    /// Readiness in one call: the database answers and is fully migrated.
    pub async fn ready(&self) -> Result<bool, Error> {
        self.ping().await?;
        self.migrations_current().await
    }
}
