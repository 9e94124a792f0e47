//! The [`Relay`] trait: where the log relay (`imx serve --relay-topic`)
//! stands and which node relays. One row per relay (named by its topic)
//! holds the last log position the broker acknowledged and a lease (holder,
//! token, expiry) so that one node among many is the active relay; every
//! position update is fenced by the lease's token. The SQL is the same on
//! both databases: one implementation for every [`SqlStore`]. Expiry times
//! are integer ms since the Unix epoch from the store's clock, which both
//! backends compare the same way.

use std::future::Future;

use sqlx::{Encode, Executor, Type};

use super::decode::Columns;
use super::dialect::{Dialect, SqlStore};
use super::error::Error;
use super::prepare;

/// A relay's row: its position and who holds it until when.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RelayLease {
    /// The relay's name (its topic).
    pub name: String,
    /// The node holding the lease.
    pub holder: String,
    /// Changes on every acquisition; position updates name it (fencing).
    pub token: String,
    /// The last log position the broker acknowledged (0: none yet).
    pub position: u64,
    /// When the lease runs out, in ms since the Unix epoch.
    pub expires_at_ms: i64,
}

/// The columns `lease` reads.
const RELAY_COLUMNS: &str = "name, position, holder, token, expires_at_ms";

/// The relay's position and its lease.
pub trait Relay: Send + Sync {
    /// Takes relay `name`'s lease for `holder` for `lease_ms` when it is
    /// free: no row yet, an expired lease, or one `holder` holds already.
    /// Every acquisition gets a new `token`. `None`: another node holds it.
    fn acquire_relay(
        &self,
        name: &str,
        holder: &str,
        token: &str,
        lease_ms: u64,
    ) -> impl Future<Output = Result<Option<RelayLease>, Error>> + Send;

    /// Records `position` (acknowledged by the broker) and renews the lease
    /// for `lease_ms`, if `token` still holds it; `false` when it does not
    /// (another node took over: stop relaying). The position never moves
    /// backwards.
    fn advance_relay(
        &self,
        name: &str,
        token: &str,
        position: u64,
        lease_ms: u64,
    ) -> impl Future<Output = Result<bool, Error>> + Send;

    /// Ends `token`'s lease now (a graceful stop), so another node takes
    /// over without waiting for it to expire; `false` when it was not held.
    fn release_relay(
        &self,
        name: &str,
        token: &str,
    ) -> impl Future<Output = Result<bool, Error>> + Send;

    /// Relay `name`'s row, if it ever ran.
    fn relay_lease(
        &self,
        name: &str,
    ) -> impl Future<Output = Result<Option<RelayLease>, Error>> + Send;
}

impl<S, D> Relay for S
where
    S: SqlStore<Db = D>,
    D: Dialect,
    for<'c> &'c mut D::Connection: Executor<'c, Database = D>,
    for<'q> i64: Encode<'q, D> + Type<D>,
    for<'q> String: Encode<'q, D> + Type<D>,
{
    async fn acquire_relay(
        &self,
        name: &str,
        holder: &str,
        token: &str,
        lease_ms: u64,
    ) -> Result<Option<RelayLease>, Error> {
        let now_ms = self.limits().clock.now().timestamp_millis();
        let expires_at_ms = now_ms.saturating_add(prepare::to_i64(lease_ms)?);
        // One statement: two nodes racing for a free lease cannot both win.
        let sql = format!(
            "INSERT INTO relay (name, position, holder, token, expires_at_ms) \
             VALUES ($1, 0, $2, $3, $4) \
             ON CONFLICT (name) DO UPDATE SET holder = $2, token = $3, expires_at_ms = $4 \
             WHERE relay.expires_at_ms <= $5 OR relay.holder = $2 \
             RETURNING {RELAY_COLUMNS}"
        );
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(name.to_owned())
            .bind(holder.to_owned())
            .bind(token.to_owned())
            .bind(expires_at_ms)
            .bind(now_ms)
            .fetch_optional(self.pool())
            .await?;
        row.as_ref().map(lease).transpose()
    }

    async fn advance_relay(
        &self,
        name: &str,
        token: &str,
        position: u64,
        lease_ms: u64,
    ) -> Result<bool, Error> {
        let now_ms = self.limits().clock.now().timestamp_millis();
        let expires_at_ms = now_ms.saturating_add(prepare::to_i64(lease_ms)?);
        let position = prepare::to_i64(position)?;
        // RETURNING, not rows_affected: the row count has no generic form in sqlx.
        let updated = sqlx::query(
            "UPDATE relay SET position = CASE WHEN position > $3 THEN position ELSE $3 END, \
             expires_at_ms = $4 WHERE name = $1 AND token = $2 RETURNING name",
        )
        .bind(name.to_owned())
        .bind(token.to_owned())
        .bind(position)
        .bind(expires_at_ms)
        .fetch_optional(self.pool())
        .await?;
        Ok(updated.is_some())
    }

    async fn release_relay(&self, name: &str, token: &str) -> Result<bool, Error> {
        let released = sqlx::query(
            "UPDATE relay SET expires_at_ms = 0 WHERE name = $1 AND token = $2 RETURNING name",
        )
        .bind(name.to_owned())
        .bind(token.to_owned())
        .fetch_optional(self.pool())
        .await?;
        Ok(released.is_some())
    }

    async fn relay_lease(&self, name: &str) -> Result<Option<RelayLease>, Error> {
        let sql = format!("SELECT {RELAY_COLUMNS} FROM relay WHERE name = $1");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(name.to_owned())
            .fetch_optional(self.pool())
            .await?;
        row.as_ref().map(lease).transpose()
    }
}

fn lease(row: &impl Columns) -> Result<RelayLease, Error> {
    Ok(RelayLease {
        name: row.text("name")?,
        holder: row.text("holder")?,
        token: row.text("token")?,
        position: prepare::to_u64(row.int8("position")?, "position")?,
        expires_at_ms: row.int8("expires_at_ms")?,
    })
}
