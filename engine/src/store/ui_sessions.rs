//! The [`UiSessions`] trait: the web UI's browser sessions, kept in the
//! database so that they survive a restart and work on every node behind
//! one address. Only the SHA-256 of a session id is stored (the id is the
//! browser's cookie); a session signed in with an API key keeps the key's
//! hash, never the key, and is checked against it again on every use.
//! Not events: sessions are deleted when they end. The SQL is the same on
//! both databases: one implementation for every [`SqlStore`].

use std::future::Future;

use chrono::{DateTime, Utc};
use sqlx::{Encode, Executor, Type};

use super::api_keys::{parse_roles, roles_text};
use super::decode::Columns;
use super::dialect::{Dialect, SqlStore};
use super::error::Error;

/// One signed-in browser, as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UiSessionRecord {
    /// Lower-case hex SHA-256 of the session id (the cookie value).
    pub session_hash: String,
    /// The CSRF token bound to the session.
    pub csrf: String,
    /// Who signed in: `key:<key id>`, `jwt:<sub>` or `anonymous`.
    pub principal: String,
    /// The roles the credential carried at sign-in.
    pub roles: Vec<String>,
    /// Signed in with an API key: the key's hash, checked again on each use.
    pub key_hash: Option<String>,
    pub created_at: DateTime<Utc>,
    /// The session ends then, used or not (its lifetime, or a JWT's `exp`).
    pub expires_at: DateTime<Utc>,
    /// The session ends then unless it is used (moved on by `touch`).
    pub idle_expires_at: DateTime<Utc>,
}

const SESSION_COLUMNS: &str =
    "session_hash, csrf, principal, roles, key_hash, created_at, expires_at, idle_expires_at";

/// The stored browser sessions.
pub trait UiSessions: Send + Sync {
    /// Stores a new session after deleting the ended ones; when
    /// `sessions_max` remain, the least recently used go first.
    fn create_ui_session(
        &self,
        session: &UiSessionRecord,
        sessions_max: u32,
    ) -> impl Future<Output = Result<(), Error>> + Send;

    /// The session whose id hashes to `session_hash`, unless it ended by `now`.
    fn find_ui_session(
        &self,
        session_hash: &str,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<Option<UiSessionRecord>, Error>> + Send;

    /// Moves a live session's idle end to `idle_expires_at`.
    fn touch_ui_session(
        &self,
        session_hash: &str,
        idle_expires_at: DateTime<Utc>,
    ) -> impl Future<Output = Result<(), Error>> + Send;

    /// Deletes the session; false when there was none.
    fn end_ui_session(
        &self,
        session_hash: &str,
    ) -> impl Future<Output = Result<bool, Error>> + Send;
}

impl<S, D> UiSessions for S
where
    S: SqlStore<Db = D>,
    D: Dialect,
    for<'c> &'c mut D::Connection: Executor<'c, Database = D>,
    for<'q> String: Encode<'q, D> + Type<D>,
    for<'q> Option<String>: Encode<'q, D> + Type<D>,
    for<'q> i64: Encode<'q, D> + Type<D>,
{
    async fn create_ui_session(
        &self,
        session: &UiSessionRecord,
        sessions_max: u32,
    ) -> Result<(), Error> {
        let now = D::time(session.created_at);
        sqlx::query("DELETE FROM ui_sessions WHERE expires_at <= $1 OR idle_expires_at <= $2")
            .bind(now)
            .bind(D::time(session.created_at))
            .execute(self.pool())
            .await?;
        let count = sqlx::query("SELECT COUNT(*) AS sessions FROM ui_sessions")
            .fetch_one(self.pool())
            .await?
            .int8("sessions")?;
        let over = count + 1 - i64::from(sessions_max);
        if over > 0 {
            sqlx::query(
                "DELETE FROM ui_sessions WHERE session_hash IN \
                 (SELECT session_hash FROM ui_sessions ORDER BY idle_expires_at LIMIT $1)",
            )
            .bind(over)
            .execute(self.pool())
            .await?;
        }
        sqlx::query(
            "INSERT INTO ui_sessions (session_hash, csrf, principal, roles, key_hash, created_at, \
             expires_at, idle_expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(session.session_hash.clone())
        .bind(session.csrf.clone())
        .bind(session.principal.clone())
        .bind(roles_text(&session.roles))
        .bind(session.key_hash.clone())
        .bind(D::time(session.created_at))
        .bind(D::time(session.expires_at))
        .bind(D::time(session.idle_expires_at))
        .execute(self.pool())
        .await?;
        Ok(())
    }

    async fn find_ui_session(
        &self,
        session_hash: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<UiSessionRecord>, Error> {
        let sql = format!(
            "SELECT {SESSION_COLUMNS} FROM ui_sessions \
             WHERE session_hash = $1 AND expires_at > $2 AND idle_expires_at > $3"
        );
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(session_hash.to_owned())
            .bind(D::time(now))
            .bind(D::time(now))
            .fetch_optional(self.pool())
            .await?;
        row.as_ref().map(decode).transpose()
    }

    async fn touch_ui_session(
        &self,
        session_hash: &str,
        idle_expires_at: DateTime<Utc>,
    ) -> Result<(), Error> {
        sqlx::query("UPDATE ui_sessions SET idle_expires_at = $1 WHERE session_hash = $2")
            .bind(D::time(idle_expires_at))
            .bind(session_hash.to_owned())
            .execute(self.pool())
            .await?;
        Ok(())
    }

    async fn end_ui_session(&self, session_hash: &str) -> Result<bool, Error> {
        // RETURNING, not rows_affected: the row count has no generic form in sqlx.
        let ended =
            sqlx::query("DELETE FROM ui_sessions WHERE session_hash = $1 RETURNING session_hash")
                .bind(session_hash.to_owned())
                .fetch_optional(self.pool())
                .await?;
        Ok(ended.is_some())
    }
}

fn decode(row: &impl Columns) -> Result<UiSessionRecord, Error> {
    Ok(UiSessionRecord {
        session_hash: row.text("session_hash")?,
        csrf: row.text("csrf")?,
        principal: row.text("principal")?,
        roles: parse_roles(&row.text("roles")?)?,
        key_hash: row.optional_text("key_hash")?,
        created_at: row.time("created_at")?,
        expires_at: row.time("expires_at")?,
        idle_expires_at: row.time("idle_expires_at")?,
    })
}
