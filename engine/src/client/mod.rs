//! The Rust client of a redoubt mirror.
//!
//! ```no_run
//! use redoubt_engine::client::{Client, ClientOptions};
//! use redoubt_engine::{Key, Value};
//!
//! let addrs = ["10.0.0.1:7000".to_string(), "10.0.0.2:7000".to_string()];
//! let mut c = Client::connect(&addrs, ClientOptions::default())?;
//! let key: Key = "^myfirstglobal".parse()?;
//! c.set("DB", &key, &Value::from("congratulations"))?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! [`Client::connect`] handshakes with each address in turn and keeps the
//! member whose Welcome says Primary, following the primary address a
//! backup names (libpq's `target_session_attrs=read-write`). With
//! [`Target::Any`] it keeps the first member that answers, for reads on a
//! copy. All calls, reads included, go to that one member; there is no
//! read routing to backups within one client (use a second client with
//! `Target::Any`).
//!
//! A write whose answer is lost is [`ClientError::OutcomeUnknown`], never
//! retried; a transaction or locks lost with the connection are
//! [`ClientError::TransactionLost`]. What *is* retried (once, on a new
//! connection) is in [`session`].
//!
//! Files: [`options`], [`error`], `conn` (one connection), `discover`
//! (finding the primary), [`session`] ([`Client`] and its retry rules),
//! [`ops`] (the typed operations), [`pipeline`] (many requests in flight,
//! commits overlapping the next transaction).

mod conn;
mod discover;
pub mod error;
pub mod ops;
pub mod options;
pub mod pipeline;
pub mod session;

#[cfg(test)]
mod tests;

pub use error::ClientError;
pub use options::{ClientOptions, Target};
pub use pipeline::{PipelineError, PIPELINE_WINDOW};
pub use session::Client;
