//! The store's one error type, with stable codes, and the rule that sorts
//! database failures into retryable (outage, contention) and not.

use uuid::Uuid;

use super::types::{RunId, TaskId};

/// Everything a store operation can fail with. Codes `IMX03xx` are stable:
/// [`Error::code`], one per [`ErrorKind`], each with an entry in `docs/errors.md`.
#[derive(Debug, thiserror::Error, strum::EnumDiscriminants)]
#[strum_discriminants(
    name(ErrorKind),
    vis(pub),
    derive(strum::VariantArray, Hash, PartialOrd, Ord)
)]
#[non_exhaustive]
pub enum Error {
    #[error(
        "IMX0301: run {run_id}: expected seq {expected_seq} but the run is at {}; another writer appended first: reload the run and decide again",
        actual_seq.map_or_else(|| "a later seq".to_owned(), |seq| seq.to_string())
    )]
    Conflict {
        run_id: RunId,
        expected_seq: u64,
        actual_seq: Option<u64>,
    },

    #[error(
        "IMX0302: the lease on task {task_id} expired or was taken by another worker; drop this result, the task belongs to its new holder"
    )]
    LeaseLost { task_id: TaskId },

    #[error(
        "IMX0303: event {index} ({event_type}) of run {run_id} has a {bytes}-byte payload; the limit is {max} bytes (payload_bytes_max): keep large data outside the log and store a reference"
    )]
    PayloadTooLarge {
        run_id: RunId,
        index: usize,
        event_type: String,
        bytes: usize,
        max: usize,
    },

    #[error("IMX0304: {what} is {value}; the limit is {max} ({setting})")]
    LimitExceeded {
        what: String,
        value: u64,
        max: u64,
        setting: &'static str,
    },

    #[error("IMX0305: invalid store request: {message}")]
    InvalidRequest { message: String },

    #[error(
        "IMX0306: the database schema is at version {database_version}, newer than the newest this imx knows ({known_version}); run a newer imx against this database (never downgrade a migrated database)"
    )]
    SchemaTooNew {
        database_version: i64,
        known_version: i64,
    },

    #[error("IMX0307: the database is unavailable ({source}); the operation may be retried")]
    Unavailable {
        #[source]
        source: sqlx::Error,
    },

    #[error(
        "IMX0308: unsupported database URL scheme {scheme:?}: use sqlite://PATH (default sqlite://./.imx/imx.db) or postgres://USER@HOST:PORT/DB"
    )]
    UnsupportedUrl { scheme: String },

    #[error("IMX0309: cannot create the folder {path} for the SQLite database: {source}")]
    CreateFolder {
        path: String,
        #[source]
        source: std::io::Error,
    },

    #[error("IMX0310: migrating the database failed: {source}")]
    Migrate {
        #[source]
        source: sqlx::migrate::MigrateError,
    },

    #[error("IMX0311: the idempotency key {key:?} already belongs to run {run_id}")]
    IdempotencyKeyTaken { key: String, run_id: RunId },

    #[error("IMX0312: the store holds data it cannot read ({what}); run `imx replay verify`")]
    Corrupt { what: String },

    #[error("IMX0313: database error: {source}")]
    Database {
        #[source]
        source: sqlx::Error,
    },

    #[error("IMX0314: run {run_id} not found")]
    RunNotFound { run_id: Uuid },
}

/// Rejected by a database trigger, not by this code: UPDATE, DELETE or
/// TRUNCATE of `events` (the migrations raise it; it reaches callers inside
/// a [`Error::Database`]).
pub const APPEND_ONLY_CODE: &str = "IMX0315";

impl ErrorKind {
    /// The stable code of errors of this kind; also the prefix of their message.
    pub const fn code(self) -> &'static str {
        match self {
            ErrorKind::Conflict => "IMX0301",
            ErrorKind::LeaseLost => "IMX0302",
            ErrorKind::PayloadTooLarge => "IMX0303",
            ErrorKind::LimitExceeded => "IMX0304",
            ErrorKind::InvalidRequest => "IMX0305",
            ErrorKind::SchemaTooNew => "IMX0306",
            ErrorKind::Unavailable => "IMX0307",
            ErrorKind::UnsupportedUrl => "IMX0308",
            ErrorKind::CreateFolder => "IMX0309",
            ErrorKind::Migrate => "IMX0310",
            ErrorKind::IdempotencyKeyTaken => "IMX0311",
            ErrorKind::Corrupt => "IMX0312",
            ErrorKind::Database => "IMX0313",
            ErrorKind::RunNotFound => "IMX0314",
        }
    }
}

impl Error {
    /// The stable `IMX03xx` code (`docs/errors.md`), as data: what the API
    /// returns as `extensions.imxCode`.
    pub fn code(&self) -> &'static str {
        ErrorKind::from(self).code()
    }

    /// True when the same operation may succeed if tried again later: the
    /// database was unreachable, restarting, or a transaction lost a race.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Error::Unavailable { .. })
    }

    /// True when the database refused a write for want of disk space
    /// (SQLite FULL, PostgreSQL 53100 disk_full): retryable, but not within
    /// seconds — a caller waiting for an answer should get it now, and work
    /// in the background tries again on its usual schedule.
    pub fn is_storage_full(&self) -> bool {
        match self {
            Error::Unavailable {
                source: sqlx::Error::Database(database),
            } => {
                let code = database.code().unwrap_or_default();
                if database
                    .try_downcast_ref::<sqlx::sqlite::SqliteError>()
                    .is_some()
                {
                    code.parse::<i32>()
                        .is_ok_and(|extended| extended & 0xff == SQLITE_FULL)
                } else {
                    code == "53100"
                }
            }
            _ => false,
        }
    }

    pub(crate) fn limit(
        what: impl Into<String>,
        value: usize,
        max: usize,
        setting: &'static str,
    ) -> Self {
        Error::LimitExceeded {
            what: what.into(),
            value: value as u64,
            max: max as u64,
            setting,
        }
    }

    pub(crate) fn invalid(message: impl Into<String>) -> Self {
        Error::InvalidRequest {
            message: message.into(),
        }
    }

    pub(crate) fn corrupt(what: impl Into<String>) -> Self {
        Error::Corrupt { what: what.into() }
    }
}

impl From<sqlx::Error> for Error {
    fn from(source: sqlx::Error) -> Self {
        if is_transient(&source) {
            Error::Unavailable { source }
        } else {
            Error::Database { source }
        }
    }
}

impl From<sqlx::migrate::MigrateError> for Error {
    fn from(source: sqlx::migrate::MigrateError) -> Self {
        match source {
            sqlx::migrate::MigrateError::Execute(inner) if is_transient(&inner) => {
                Error::Unavailable { source: inner }
            }
            source => Error::Migrate { source },
        }
    }
}

/// Connection loss, server shutdown/start-up, pool exhaustion, lock
/// contention, serialization failures and deadlocks are worth retrying.
fn is_transient(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::WorkerCrashed
        | sqlx::Error::BeginFailed => true,
        sqlx::Error::Database(database) => {
            let code = database.code().unwrap_or_default();
            if database
                .try_downcast_ref::<sqlx::sqlite::SqliteError>()
                .is_some()
            {
                // SQLite extended result codes: the primary code is the low
                // byte; BUSY (5) and LOCKED (6): another writer holds a lock;
                // FULL (13): the disk is full, and a write succeeds again
                // once space is freed (the transaction rolled back whole).
                code.parse::<i32>().is_ok_and(|extended| {
                    matches!(extended & 0xff, SQLITE_BUSY | SQLITE_LOCKED | SQLITE_FULL)
                })
            } else {
                is_transient_sqlstate(&code)
            }
        }
        _ => false,
    }
}

/// SQLite primary result codes (the low byte of an extended code).
const SQLITE_BUSY: i32 = 5;
const SQLITE_LOCKED: i32 = 6;
const SQLITE_FULL: i32 = 13;

/// Postgres SQLSTATEs: class 08 connection exception, 57P01-03 shutdown and
/// start-up, 53300 too many connections, 53100 disk full, 40001
/// serialization failure, 40P01 deadlock, 55P03 lock not available.
fn is_transient_sqlstate(code: &str) -> bool {
    code.starts_with("08")
        || code.starts_with("57P")
        || matches!(code, "53300" | "53100" | "40001" | "40P01" | "55P03")
}
