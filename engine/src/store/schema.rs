//! Versioned migrations (embedded from `migrations/`) and the refusal to run
//! against a schema newer than this build knows.

use sqlx::migrate::Migrator;

use super::error::Error;

pub(crate) static SQLITE_MIGRATOR: Migrator = sqlx::migrate!("../migrations/sqlite");
pub(crate) static POSTGRES_MIGRATOR: Migrator = sqlx::migrate!("../migrations/postgres");

/// The table sqlx records applied migrations in.
pub(crate) const MIGRATIONS_TABLE: &str = "_sqlx_migrations";

/// The newest migration applied, NULL before the first (both backends).
pub(crate) const APPLIED_VERSION_SQL: &str = "SELECT MAX(version) FROM _sqlx_migrations";

/// The newest migration applied successfully (readiness).
pub(crate) const APPLIED_SUCCESSFULLY_SQL: &str =
    "SELECT MAX(version) FROM _sqlx_migrations WHERE success";

/// The newest migration `migrator` embeds.
fn known_version(migrator: &Migrator) -> Option<i64> {
    migrator.iter().map(|migration| migration.version).max()
}

/// True when `applied` (from [`APPLIED_SUCCESSFULLY_SQL`]) is the newest
/// migration this build embeds.
pub(crate) fn is_current(migrator: &Migrator, applied: Option<i64>) -> bool {
    applied == known_version(migrator)
}

/// Fails when the database has a migration applied that is newer than every
/// migration this build embeds: an older node must not write to a schema it
/// does not understand.
pub(crate) fn check_version(
    migrator: &Migrator,
    database_version: Option<i64>,
) -> Result<(), Error> {
    let known_version = known_version(migrator).unwrap_or(0);
    match database_version {
        Some(database_version) if database_version > known_version => Err(Error::SchemaTooNew {
            database_version,
            known_version,
        }),
        _ => Ok(()),
    }
}
