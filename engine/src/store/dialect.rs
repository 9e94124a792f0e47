//! What lets one piece of SQL serve both backends: a [`Dialect`] says how a
//! database binds ids and times and which column lists it reads (casts,
//! collations), and a [`SqlStore`] hands out its pool and limits. The
//! traits whose SQL is the same on both databases (`LogReader`,
//! `ReadModels`, `ApiKeys`) are implemented once for every `SqlStore`; shared SQL uses `$n`
//! placeholders, which sqlx's SQLite driver binds by number too.

use chrono::{DateTime, Utc};
use sqlx::{Encode, IntoArguments, Pool, Type};
use uuid::Uuid;

use super::decode::Columns;
use super::types::StoreConfig;

/// One database's side of the shared SQL.
pub trait Dialect: sqlx::Database<Row: Columns, Arguments: IntoArguments<Self>> {
    /// An id as bound (SQLite: hyphenated text; PostgreSQL: `uuid`).
    type Id: for<'q> Encode<'q, Self> + Type<Self> + Send + Sync + 'static;
    /// A time as bound (SQLite: RFC 3339 text; PostgreSQL: `timestamptz`).
    type Time: for<'q> Encode<'q, Self> + Type<Self> + Send + Sync + 'static;

    fn id(id: Uuid) -> Self::Id;
    fn time(at: DateTime<Utc>) -> Self::Time;

    /// The event columns `decode::event` reads, from `events`.
    const EVENT_COLUMNS: &'static str;
    /// The run columns `decode::run` reads, from `runs r` (with `last_seq`).
    const RUN_COLUMNS: &'static str;
    /// The step columns `decode::step` reads, from `steps`.
    const STEP_COLUMNS: &'static str;
    /// Step ids in byte order.
    const STEP_ORDER: &'static str;
    /// The workflow columns `decode::workflow` reads, from `workflows`.
    const WORKFLOW_COLUMNS: &'static str;
}

/// A store on one sqlx pool: what the shared implementations need.
pub trait SqlStore: Send + Sync {
    type Db: Dialect;

    fn pool(&self) -> &Pool<Self::Db>;

    fn limits(&self) -> &StoreConfig;
}
