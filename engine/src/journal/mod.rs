//! The journal: the logical log of every change (SET/KILL with before
//! images, transaction begin/commit/rollback, checkpoints, epochs), in
//! segment files of checksummed, chained records, made durable by group
//! commit.
//!
//! - `record.rs`: [`Record`], what a record says, and its payload encoding.
//! - `frame.rs`: [`FrameHeader`], the frame around each payload (length,
//!   kind, chained crc).
//! - `crc.rs`: CRC-32C combination, so a record's chained crc costs tens of
//!   nanoseconds under the append lock.
//! - `segment.rs`: [`SegmentHeader`], segment files, a validating scan.
//! - `writer.rs`: [`Journal`]: appends, group commit, rolling, poisoning.
//! - `reader.rs`: [`JournalReader`]: reading records back.
//! - `replicate.rs`: the mirror's reading side: raw framed bytes for
//!   streaming ([`Journal::read_raw`]), chain values
//!   ([`Journal::crc_before`]), verifying and decoding received bytes
//!   ([`Journal::decode_raw`]).
//! - `writer_raw.rs`: the mirror's writing side: appending received bytes
//!   verbatim ([`Journal::append_raw`]), waiting for new durable bytes,
//!   rewinding ([`Journal::truncate`]) and re-seeding ([`Journal::reset`]).
//! - [`recovery`]: what open does with a damaged log (crash model and
//!   decision table).
//! - `error.rs`: [`JournalError`], [`RecordError`], [`Damage`].
//!
//! Positions ([`crate::Lsn`]) count record bytes only, from the first record
//! ever written, so they mean the same on every member whatever the segment
//! boundaries.

mod crc;
mod error;
mod frame;
mod reader;
mod record;
pub mod recovery;
mod replicate;
mod reserve;
mod segment;
mod writer;
mod writer_raw;

#[cfg(test)]
mod tests;

pub use error::{Damage, JournalError, RecordError};
pub use frame::{FrameHeader, MAX_RECORD};
pub use reader::JournalReader;
pub use record::{ChangeRef, Record, RecordKind, TxnId};
pub use recovery::{OpenReport, TailRepair};
pub use segment::{parse_segment_file_name, segment_file_name, SegmentHeader};
pub use writer::{FlusherHandle, Journal, JournalOptions, WriteAheadHandle};
