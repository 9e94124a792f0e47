//! Versioned migrations (embedded from `migrations/`) and the refusal to run
//! against a schema newer than this build knows.

use sqlx::migrate::Migrator;

use super::error::Error;

pub(crate) static SQLITE_MIGRATOR: Migrator = sqlx::migrate!("../migrations/sqlite");
pub(crate) static POSTGRES_MIGRATOR: Migrator = sqlx::migrate!("../migrations/postgres");

/// The table sqlx records applied migrations in.
pub(crate) const MIGRATIONS_TABLE: &str = "_sqlx_migrations";

/// Fails when the database has a migration applied that is newer than every
/// migration this build embeds: an older node must not write to a schema it
/// does not understand.
pub(crate) fn check_version(
    migrator: &Migrator,
    database_version: Option<i64>,
) -> Result<(), Error> {
    let known_version = migrator
        .iter()
        .map(|migration| migration.version)
        .max()
        .unwrap_or(0);
    match database_version {
        Some(database_version) if database_version > known_version => Err(Error::SchemaTooNew {
            database_version,
            known_version,
        }),
        _ => Ok(()),
    }
}
