//! redoubt-engine: the storage of one member.
//!
//! - [`model`]: global keys and values, their collating byte encoding and
//!   their text form.
//! - [`storage`]: the file-system trait all I/O goes through.
//! - [`journal`]: the logical log with group commit.
//! - [`wij`]: the write image journal that makes page flushes atomic.

pub mod arbiter;
pub mod btree;
pub mod client;
pub mod db;
pub mod error;
pub mod journal;
pub mod lsn;
pub mod mirror;
pub mod model;
pub mod storage;
pub mod wij;
pub mod wire;

pub use db::{
    Direction, Engine, EngineOptions, PendingCommit, PoolStats, RecoveryReport, Row, Session,
};
pub use error::{EngineError, Result};
pub use lsn::Lsn;
pub use model::{GlobalName, Key, Subscript, Value, ValueRef};
