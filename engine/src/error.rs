//! Errors of the engine's public API.

use std::io;

use crate::btree::TreeError;
use crate::journal::JournalError;
use crate::model::ModelError;
use crate::wij::WijError;

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: io::Error,
    },
    #[error("database {db}: {source}")]
    Tree {
        db: String,
        #[source]
        source: TreeError,
    },
    #[error(transparent)]
    Journal(#[from] JournalError),
    #[error(transparent)]
    Wij(#[from] WijError),
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error(
        "the write image journal is clean but database pages differ from its images: {pages}; \
             a database file was changed behind the engine's back or a write was lost. \
             Restore the database from a mirror member or backup"
    )]
    WijMismatch { pages: String },
    #[error("database file {path}: {reason}")]
    BadDatabaseFile { path: String, reason: String },
    #[error("no database named {0:?}")]
    NoSuchDatabase(String),
    #[error("database {0:?} already exists")]
    DatabaseExists(String),
    #[error("invalid database name {0:?}: use 1 to 63 letters, digits, '_' or '-', starting with a letter")]
    BadDatabaseName(String),
    #[error("encoded key is {len} bytes; the limit is {max}")]
    KeyTooLong { len: usize, max: usize },
    #[error("value is {len} bytes; the limit is {max}")]
    ValueTooLarge { len: usize, max: usize },
    #[error("the store is poisoned and refuses writes: {0}")]
    Poisoned(String),
    #[error("no transaction is open")]
    NoTransaction,
    #[error("transactions nest at most {0} levels")]
    TooManyLevels(usize),
    #[error("$INCREMENT of {key}: the value {value} is not an integer")]
    NotAnInteger { key: String, value: String },
    #[error("$INCREMENT of {key} overflows a 64-bit integer")]
    IncrementOverflow { key: String },
    #[error("journal record at {lsn} names database {db:?}, which does not exist")]
    UnknownDatabaseInJournal { lsn: u64, db: String },
    #[error("transaction {txn} at journal position {lsn}: {reason}")]
    BadTransaction { txn: u64, lsn: u64, reason: String },
    #[error("{0}")]
    BadArgument(String),
    #[error("this member is read-only{}", primary.as_ref().map(|p| format!("; write to the primary, {p}")).unwrap_or_else(|| "; no primary is known".into()))]
    ReadOnly { primary: Option<String> },
    #[error("{0}")]
    NotPrimary(String),
    #[error("{0}")]
    CommitOutcomeUnknown(String),
    #[error("commits are paused: {0}")]
    Paused(String),
    #[error("the engine is closed")]
    Closed,
}

pub type Result<T, E = EngineError> = std::result::Result<T, E>;

impl EngineError {
    pub(crate) fn io(context: impl Into<String>, source: io::Error) -> Self {
        EngineError::Io {
            context: context.into(),
            source,
        }
    }

    pub(crate) fn tree(db: &str, source: TreeError) -> Self {
        EngineError::Tree {
            db: db.to_string(),
            source,
        }
    }
}
