//! Errors of the write image journal.

use std::fmt;
use std::io;
use std::path::PathBuf;

use super::{WijState, PAGE_SIZE};

/// The part of a WIJ file an error is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WijPart {
    /// The header (both copies).
    Header,
    /// The slot holding image `n` of the cycle (0-based).
    Image(u64),
}

impl fmt::Display for WijPart {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WijPart::Header => write!(f, "header"),
            WijPart::Image(index) => write!(f, "image {index}"),
        }
    }
}

/// Why a WIJ operation failed.
#[derive(Debug, thiserror::Error)]
pub enum WijError {
    /// The file system failed; `context` names the action, the file and the
    /// offset. After a failed write or sync the [`super::Wij`] is poisoned.
    #[error("{context}")]
    Io {
        context: String,
        #[source]
        source: io::Error,
    },
    /// The file holds something no crash can explain.
    #[error("WIJ {}: {part} at offset {offset} is corrupt: {detail}", .path.display())]
    Corrupt {
        path: PathBuf,
        part: WijPart,
        offset: u64,
        detail: String,
    },
    /// A well-formed header of a format version this build does not know.
    #[error("WIJ {}: header at offset {offset} has format version {found}; this build knows version {supported}", .path.display())]
    UnsupportedVersion {
        path: PathBuf,
        offset: u64,
        found: u32,
        supported: u32,
    },
    /// An image passed to `begin_cycle` is not one page long.
    #[error("WIJ {}: image {index} has {len} bytes; a page has {PAGE_SIZE}", .path.display())]
    BadImageSize {
        path: PathBuf,
        index: usize,
        len: usize,
    },
    /// More images than one cycle can hold (`u32::MAX`).
    #[error("WIJ {}: {count} images do not fit in one cycle", .path.display())]
    TooManyImages { path: PathBuf, count: usize },
    /// The operation does not fit the state (`end_cycle` with no active
    /// cycle).
    #[error("WIJ {}: cannot {op}: the WIJ is {state}", .path.display())]
    WrongState {
        path: PathBuf,
        op: &'static str,
        state: WijState,
    },
    /// An earlier write or sync failed, so the durable state is unknown:
    /// the WIJ refuses everything until it is reopened after a restart.
    #[error("WIJ {}: refused: an earlier write or sync failed and its durable state is unknown; restart and reopen it", .path.display())]
    Poisoned { path: PathBuf },
}
