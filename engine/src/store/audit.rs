//! The [`AuditTrail`] trait: what verifiable history keeps beside the log.
//! The Merkle tree's stored nodes (`merkle_nodes`: perfect subtrees from
//! `merkle::STORED_LEVEL_MIN` up, written by the tree builder, never on the
//! append path) and the signed checkpoints (`checkpoints`). Both tables are
//! append-only (database triggers, IMX0315) and every insert is idempotent:
//! two builders write the same bytes for the same node. The SQL is the same
//! on both databases: one implementation for every [`SqlStore`].

use std::future::Future;

use sqlx::{Encode, Executor, Type};

use super::decode::Columns;
use super::dialect::{Dialect, SqlStore};
use super::error::Error;
use super::prepare;

/// Rows per INSERT statement (three parameters each, far below either
/// database's parameter limit).
pub const AUDIT_INSERT_ROWS_MAX: usize = 500;

/// One stored node of the Merkle tree.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MerkleNode {
    pub level: u32,
    pub index: u64,
    /// 64 lowercase hex digits.
    pub hash: String,
}

/// One signed checkpoint as stored: its fields, and the signed note as
/// published (`docs/checkpoints.md`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckpointRecord {
    pub tree_size: u64,
    pub key_id: String,
    pub root: String,
    pub log_hash: String,
    pub signed_at_ms: i64,
    pub note: String,
}

const CHECKPOINT_COLUMNS: &str = "tree_size, key_id, root, log_hash, signed_at_ms, note";

/// The Merkle tree's nodes and the checkpoints.
pub trait AuditTrail: Send + Sync {
    /// The `hash` of the events at positions `after + 1 ..`, in order, at
    /// most `max` (the tree's leaf inputs).
    fn leaf_hashes(
        &self,
        after: u64,
        max: u32,
    ) -> impl Future<Output = Result<Vec<String>, Error>> + Send;

    /// The stored nodes of `level` with index in `first..=last`, by index.
    fn merkle_nodes(
        &self,
        level: u32,
        first: u64,
        last: u64,
    ) -> impl Future<Output = Result<Vec<(u64, String)>, Error>> + Send;

    /// How many nodes of `level` are stored (the highest index + 1).
    fn merkle_width(&self, level: u32) -> impl Future<Output = Result<u64, Error>> + Send;

    /// Stores nodes; a node already stored is kept as it is.
    fn append_merkle_nodes(
        &self,
        nodes: &[MerkleNode],
    ) -> impl Future<Output = Result<(), Error>> + Send;

    /// Stores a checkpoint; `false` when one of that size and key exists.
    fn append_checkpoint(
        &self,
        checkpoint: &CheckpointRecord,
    ) -> impl Future<Output = Result<bool, Error>> + Send;

    /// Checkpoints with `tree_size > after_size`, by size then key, at most `max`.
    fn checkpoints(
        &self,
        after_size: u64,
        max: u32,
    ) -> impl Future<Output = Result<Vec<CheckpointRecord>, Error>> + Send;

    /// The checkpoint of the largest tree (any key), if any.
    fn latest_checkpoint(
        &self,
    ) -> impl Future<Output = Result<Option<CheckpointRecord>, Error>> + Send;
}

impl<S, D> AuditTrail for S
where
    S: SqlStore<Db = D>,
    D: Dialect,
    for<'c> &'c mut D::Connection: Executor<'c, Database = D>,
    for<'q> i64: Encode<'q, D> + Type<D>,
    for<'q> String: Encode<'q, D> + Type<D>,
    for<'r> (String,): sqlx::FromRow<'r, D::Row>,
    for<'r> (i64, String): sqlx::FromRow<'r, D::Row>,
    for<'r> (Option<i64>,): sqlx::FromRow<'r, D::Row>,
{
    async fn leaf_hashes(&self, after: u64, max: u32) -> Result<Vec<String>, Error> {
        let limit = prepare::page(self.limits(), max)?;
        let rows: Vec<(String,)> = sqlx::query_as(
            "SELECT hash FROM events WHERE position > $1 ORDER BY position LIMIT $2",
        )
        .bind(prepare::to_i64(after)?)
        .bind(limit)
        .fetch_all(self.pool())
        .await?;
        Ok(rows.into_iter().map(|(hash,)| hash).collect())
    }

    async fn merkle_nodes(
        &self,
        level: u32,
        first: u64,
        last: u64,
    ) -> Result<Vec<(u64, String)>, Error> {
        let rows: Vec<(i64, String)> = sqlx::query_as(
            "SELECT idx, hash FROM merkle_nodes WHERE level = $1 AND idx >= $2 AND idx <= $3 \
             ORDER BY idx",
        )
        .bind(i64::from(level))
        .bind(prepare::to_i64(first)?)
        .bind(prepare::to_i64(last)?)
        .fetch_all(self.pool())
        .await?;
        rows.into_iter()
            .map(|(index, hash)| Ok((prepare::to_u64(index, "idx")?, hash)))
            .collect()
    }

    async fn merkle_width(&self, level: u32) -> Result<u64, Error> {
        let (highest,): (Option<i64>,) =
            sqlx::query_as("SELECT MAX(idx) FROM merkle_nodes WHERE level = $1")
                .bind(i64::from(level))
                .fetch_one(self.pool())
                .await?;
        match highest {
            Some(index) => Ok(prepare::to_u64(index, "idx")? + 1),
            None => Ok(0),
        }
    }

    async fn append_merkle_nodes(&self, nodes: &[MerkleNode]) -> Result<(), Error> {
        for chunk in nodes.chunks(AUDIT_INSERT_ROWS_MAX) {
            let values: Vec<String> = (0..chunk.len())
                .map(|n| format!("(${}, ${}, ${})", 3 * n + 1, 3 * n + 2, 3 * n + 3))
                .collect();
            let sql = format!(
                "INSERT INTO merkle_nodes (level, idx, hash) VALUES {} \
                 ON CONFLICT (level, idx) DO NOTHING",
                values.join(", ")
            );
            let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
            for node in chunk {
                query = query
                    .bind(i64::from(node.level))
                    .bind(prepare::to_i64(node.index)?)
                    .bind(node.hash.clone());
            }
            query.execute(self.pool()).await?;
        }
        Ok(())
    }

    async fn append_checkpoint(&self, checkpoint: &CheckpointRecord) -> Result<bool, Error> {
        let inserted = sqlx::query(
            "INSERT INTO checkpoints (tree_size, key_id, root, log_hash, signed_at_ms, note) \
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (tree_size, key_id) DO NOTHING \
             RETURNING tree_size",
        )
        .bind(prepare::to_i64(checkpoint.tree_size)?)
        .bind(checkpoint.key_id.clone())
        .bind(checkpoint.root.clone())
        .bind(checkpoint.log_hash.clone())
        .bind(checkpoint.signed_at_ms)
        .bind(checkpoint.note.clone())
        .fetch_optional(self.pool())
        .await?;
        Ok(inserted.is_some())
    }

    async fn checkpoints(&self, after_size: u64, max: u32) -> Result<Vec<CheckpointRecord>, Error> {
        let limit = prepare::page(self.limits(), max)?;
        let sql = format!(
            "SELECT {CHECKPOINT_COLUMNS} FROM checkpoints WHERE tree_size > $1 \
             ORDER BY tree_size, key_id LIMIT $2"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(prepare::to_i64(after_size)?)
            .bind(limit)
            .fetch_all(self.pool())
            .await?;
        rows.iter().map(checkpoint).collect()
    }

    async fn latest_checkpoint(&self) -> Result<Option<CheckpointRecord>, Error> {
        let sql = format!(
            "SELECT {CHECKPOINT_COLUMNS} FROM checkpoints ORDER BY tree_size DESC, key_id LIMIT 1"
        );
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .fetch_optional(self.pool())
            .await?;
        row.as_ref().map(checkpoint).transpose()
    }
}

fn checkpoint(row: &impl Columns) -> Result<CheckpointRecord, Error> {
    Ok(CheckpointRecord {
        tree_size: prepare::to_u64(row.int8("tree_size")?, "tree_size")?,
        key_id: row.text("key_id")?,
        root: row.text("root")?,
        log_hash: row.text("log_hash")?,
        signed_at_ms: row.int8("signed_at_ms")?,
        note: row.text("note")?,
    })
}
