//! Errors of the journal.
//!
//! [`JournalError`] is what callers branch on: `Corrupt` means "refuse to
//! start, an operator must look", `Poisoned` means "this journal instance can
//! no longer make anything durable", the others are caller mistakes or I/O.

use std::io;

use thiserror::Error;

use crate::Lsn;

/// Why a record payload could not be encoded or decoded.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum RecordError {
    #[error("record kind {0} is unknown")]
    UnknownKind(u8),
    #[error("payload ends inside field `{field}`")]
    Truncated { field: &'static str },
    #[error(
        "field `{field}` is {len} bytes long, more than the {remaining} bytes left in the payload"
    )]
    FieldTooLong {
        field: &'static str,
        len: u64,
        remaining: usize,
    },
    #[error("field `{field}` holds {value}, which is not a valid flag (0 or 1)")]
    BadFlag { field: &'static str, value: u8 },
    #[error("field `{field}` is not valid UTF-8")]
    BadUtf8 { field: &'static str },
    #[error("{0} bytes follow the last field of the payload")]
    TrailingBytes(usize),
    #[error("record payload would be {len} bytes, more than the maximum {max}")]
    TooLarge { len: u64, max: u32 },
}

/// What is wrong with the bytes at one spot of a segment file.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum Damage {
    #[error("zero-filled")]
    ZeroFilled,
    #[error("truncated record header ({have} of 9 bytes present)")]
    TruncatedHeader { have: u64 },
    #[error("record length {len} exceeds the maximum {max}")]
    BadLength { len: u32, max: u32 },
    #[error("unknown record kind {kind}")]
    BadKind { kind: u8 },
    #[error("truncated payload (needs {need} bytes, {have} present)")]
    TruncatedPayload { need: u64, have: u64 },
    #[error("checksum mismatch (stored {stored:#010x}, computed {computed:#010x})")]
    ChecksumMismatch { stored: u32, computed: u32 },
    #[error("undecodable payload: {0}")]
    Undecodable(RecordError),
    #[error("bad segment header: {0}")]
    BadSegmentHeader(String),
    #[error("segment does not continue the journal: {0}")]
    SegmentMismatch(String),
    #[error("journal ends at lsn {end}, before lsn {known_durable} which is known durable")]
    EndsBeforeDurable { end: Lsn, known_durable: Lsn },
}

/// Errors of [`super::Journal`] and [`super::JournalReader`].
#[derive(Debug, Error)]
pub enum JournalError {
    /// The journal on disk is damaged where it cannot be a torn, unacknowledged
    /// tail. Opening refuses to continue; nothing was modified.
    #[error("journal corrupt at lsn {lsn} (segment {segment}, file offset {offset}): {reason}")]
    Corrupt {
        lsn: Lsn,
        /// File name of the segment, e.g. `00000000000000000000.jrn`.
        segment: String,
        /// Byte offset inside that file.
        offset: u64,
        reason: String,
    },
    /// An earlier write or sync failed; nothing more can be made durable.
    #[error("journal is poisoned and refuses further work; first failure: {cause}")]
    Poisoned { cause: String },
    #[error("record rejected: {0}")]
    Record(#[from] RecordError),
    #[error("cannot wait for lsn {upto}: only {end} bytes of records were appended")]
    BeyondEnd { upto: Lsn, end: Lsn },
    #[error("cannot read from lsn {from}: the journal is durable only up to lsn {durable}")]
    BeyondDurable { from: Lsn, durable: Lsn },
    #[error("cannot read from lsn {from}: the oldest segment starts at lsn {first}")]
    NotHeld { from: Lsn, first: Lsn },
    #[error("cannot read from lsn {from}: it is not a record boundary (segment {segment})")]
    NotBoundary { from: Lsn, segment: String },
    /// Journal bytes received from another member (for
    /// [`super::Journal::append_raw`] or [`super::Journal::decode_raw`]) are
    /// not a valid continuation at `lsn`; nothing was appended.
    #[error("received journal bytes are invalid at lsn {lsn}: {reason}")]
    BadStream { lsn: Lsn, reason: String },
    /// Received records must start exactly where this journal ends.
    #[error(
        "cannot append received records starting at lsn {start}: this journal ends at lsn {end}"
    )]
    WrongStart { start: Lsn, end: Lsn },
    /// [`super::Journal::truncate`] refuses while records are appended but
    /// not durable: the caller must stop appending and flush first.
    #[error("cannot truncate to lsn {lsn}: records are appended up to lsn {end} but durable only up to lsn {durable}; stop appending and flush first")]
    TruncateBusy { lsn: Lsn, end: Lsn, durable: Lsn },
    #[error("invalid journal options: {0}")]
    InvalidOptions(String),
    #[error("{action}: {source}")]
    Io {
        action: String,
        #[source]
        source: io::Error,
    },
}

impl JournalError {
    pub(crate) fn io(action: impl Into<String>, source: io::Error) -> Self {
        JournalError::Io {
            action: action.into(),
            source,
        }
    }
}
