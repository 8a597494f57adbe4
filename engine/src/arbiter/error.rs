//! [`ArbiterError`]: failures of the arbiter service and of a member's link
//! to it.

use std::io;
use std::path::PathBuf;

use crate::wire::{RefuseCode, WireError};

#[derive(Debug, thiserror::Error)]
pub enum ArbiterError {
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: io::Error,
    },

    /// A witness file that does not check out. The arbiter refuses to start
    /// rather than forget or guess a mirror's epoch.
    #[error("witness file {path}: {reason}; restore it from a backup, or move it away and let the primary register again")]
    CorruptState { path: PathBuf, reason: String },

    #[error(transparent)]
    Wire(#[from] WireError),

    /// The other side refused the handshake.
    #[error("refused ({code}): {reason}")]
    Refused { code: RefuseCode, reason: String },

    /// A mirror whose witness file could not be written; see
    /// [`WitnessStore`](super::WitnessStore).
    #[error("{0}")]
    Poisoned(String),

    /// The other side sent a message that has no place here.
    #[error("protocol error: {0}")]
    Protocol(String),
}

impl ArbiterError {
    pub(crate) fn io(context: impl Into<String>, source: io::Error) -> ArbiterError {
        ArbiterError::Io {
            context: context.into(),
            source,
        }
    }
}
