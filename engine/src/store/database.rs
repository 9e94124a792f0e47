//! The [`Database`] trait: connecting to a backend, its limits, its schema
//! (migrations, refusal of a newer one) and readiness.

use std::future::Future;

use super::error::Error;
use super::types::StoreConfig;

/// A connected database: what every other store trait builds on.
pub trait Database: Send + Sync + Sized + std::fmt::Debug + 'static {
    /// Connects, refuses a schema newer than this build knows (`IMX0306`),
    /// and applies pending migrations.
    fn connect(url: &str, config: StoreConfig) -> impl Future<Output = Result<Self, Error>> + Send;

    /// The limits and clock this store was opened with.
    fn config(&self) -> &StoreConfig;

    /// Applies pending migrations (also done by `connect`).
    fn migrate(&self) -> impl Future<Output = Result<(), Error>> + Send;

    /// Liveness of the connection: the database answers a trivial query.
    fn ping(&self) -> impl Future<Output = Result<(), Error>> + Send;

    /// True when every migration this build embeds is applied.
    fn migrations_current(&self) -> impl Future<Output = Result<bool, Error>> + Send;

    /// Readiness in one call: the database answers and is fully migrated.
    fn ready(&self) -> impl Future<Output = Result<bool, Error>> + Send {
        async move {
            self.ping().await?;
            self.migrations_current().await
        }
    }
}
