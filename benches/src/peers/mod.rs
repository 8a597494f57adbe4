//! The embedded engines a Rust user would otherwise pick, behind
//! [`Store`](crate::store::Store), configured for the same durability as
//! ours: every commit durable before it returns.

pub mod redb;
pub mod sqlite;

pub use self::redb::Redb;
pub use self::sqlite::Sqlite;
