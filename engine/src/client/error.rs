//! [`ClientError`].

use std::fmt::Write;
use std::io;

use crate::wire::{RemoteError, WireError};

/// Why a client call failed. Callers branch on the variant.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The member answered with an error (e.g. `ReadOnly`, naming the
    /// primary). The op was not done.
    #[error("{0}")]
    Remote(RemoteError),

    /// No address led to a usable member; each attempt and why it failed.
    #[error("no primary found: {}", describe(tried))]
    NoPrimary { tried: Vec<(String, String)> },

    /// The connection broke (or timed out) after a write was sent and
    /// before its answer came: it may or may not have been done. Never
    /// retried by the client; read the data to find out.
    #[error("the outcome of {op} is unknown: {reason}")]
    OutcomeUnknown { op: String, reason: String },

    /// The connection broke while a transaction or locks were open; the
    /// member rolls the transaction back (or recovery does) and releases
    /// the locks. Nothing is retried; the client starts again at level 0
    /// with no locks.
    #[error("the transaction (level {level}) and {locks} lock(s) were lost during {op}: {reason}")]
    TransactionLost {
        op: String,
        level: u32,
        locks: u32,
        reason: String,
    },

    /// The member answered with a reply of the wrong shape.
    #[error("{op}: the member answered with {got}")]
    UnexpectedReply { op: String, got: &'static str },

    #[error(transparent)]
    Wire(#[from] WireError),

    #[error(transparent)]
    Io(#[from] io::Error),
}

fn describe(tried: &[(String, String)]) -> String {
    if tried.is_empty() {
        return "no addresses to try".into();
    }
    let mut s = String::new();
    for (i, (addr, why)) in tried.iter().enumerate() {
        if i > 0 {
            s.push_str("; ");
        }
        let _ = write!(s, "{addr}: {why}");
    }
    s
}
