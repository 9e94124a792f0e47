//! The [`LogReader`] trait: reading the event log, one run's stream or the
//! global log by position, and its head. The SQL is the same on both
//! databases: one implementation for every [`SqlStore`].

use std::future::Future;

use sqlx::{Encode, Executor, Type};

use super::decode;
use super::dialect::{Dialect, SqlStore};
use super::error::Error;
use super::prepare;
use super::types::*;

/// Reading the log (every read is bounded by `page_size_max`).
pub trait LogReader: Send + Sync {
    /// A run's events with `seq > after_seq`, in seq order, at most `max`.
    fn read_stream(
        &self,
        run_id: RunId,
        after_seq: u64,
        max: u32,
    ) -> impl Future<Output = Result<Vec<RecordedEvent>, Error>> + Send;

    /// The global log from `position > after_position`, at most `max`.
    /// Positions are gap-free and commit-ordered: a reader never skips an
    /// event that commits later.
    fn read_log(
        &self,
        after_position: u64,
        max: u32,
    ) -> impl Future<Output = Result<Vec<RecordedEvent>, Error>> + Send;

    /// The last event's position and log hash (genesis when empty).
    fn log_head(&self) -> impl Future<Output = Result<LogHead, Error>> + Send;
}

impl<S, D> LogReader for S
where
    S: SqlStore<Db = D>,
    D: Dialect,
    for<'c> &'c mut D::Connection: Executor<'c, Database = D>,
    for<'q> i64: Encode<'q, D> + Type<D>,
    for<'q> String: Encode<'q, D> + Type<D>,
    for<'r> (i64, String): sqlx::FromRow<'r, D::Row>,
{
    async fn read_stream(
        &self,
        run_id: RunId,
        after_seq: u64,
        max: u32,
    ) -> Result<Vec<RecordedEvent>, Error> {
        let limit = prepare::page(self.limits(), max)?;
        let sql = format!(
            "SELECT {} FROM events WHERE run_id = $1 AND seq > $2 ORDER BY seq LIMIT $3",
            D::EVENT_COLUMNS
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(D::id(run_id))
            .bind(prepare::to_i64(after_seq)?)
            .bind(limit)
            .fetch_all(self.pool())
            .await?;
        rows.iter().map(decode::event).collect()
    }

    async fn read_log(&self, after_position: u64, max: u32) -> Result<Vec<RecordedEvent>, Error> {
        let limit = prepare::page(self.limits(), max)?;
        let sql = format!(
            "SELECT {} FROM events WHERE position > $1 ORDER BY position LIMIT $2",
            D::EVENT_COLUMNS
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(prepare::to_i64(after_position)?)
            .bind(limit)
            .fetch_all(self.pool())
            .await?;
        rows.iter().map(decode::event).collect()
    }

    async fn log_head(&self) -> Result<LogHead, Error> {
        let row: Option<(i64, String)> =
            sqlx::query_as("SELECT position, log_hash FROM events ORDER BY position DESC LIMIT 1")
                .fetch_optional(self.pool())
                .await?;
        match row {
            Some((position, log_hash)) => Ok(LogHead {
                position: prepare::to_u64(position, "position")?,
                log_hash,
            }),
            None => Ok(LogHead::genesis()),
        }
    }
}
