//! The peers: the embedded engines a Rust user would otherwise pick, behind
//! [`Store`](crate::store::Store), configured for the same durability as
//! ours (every commit durable before it returns); and the servers the
//! `mirror` and `failover` scenarios run next to ours (PostgreSQL with a
//! synchronous standby, a three-member etcd).

pub mod etcd;
pub mod postgres;
pub mod redb;
pub mod sqlite;

pub use self::redb::Redb;
pub use self::sqlite::Sqlite;
