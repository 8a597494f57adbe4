//! Opening a journal: find the end of the valid log, cut a torn tail, refuse
//! real corruption.
//!
//! # Crash model
//!
//! The writer ([`super::Journal`]) changes segment files in only these ways:
//!
//! 1. creating a segment: create, write the 64-byte header, sync the file,
//!    sync the folder; only then are records written into it, and only
//!    after every earlier segment has been synced for the last time;
//! 2. records: writes of whole records at the end of the last segment's
//!    records (each followed, once per `RESERVE_BYTES`, by a write of zeros
//!    after it), then ONE sync that makes them all durable. The bytes
//!    written since the last sync never exceed `max_batch_bytes` (or a
//!    single record, if that one record is longer, written alone after a
//!    sync). Usually one write per sync (a group-commit batch); a large
//!    transaction's records may be written ahead in several
//!    (`Journal::write_ahead`) before the sync of its commit. Nothing is
//!    acknowledged before its sync;
//! 3. before a roll and at a clean close: cutting the last segment's
//!    reserved zeros (`set_len` to its records + sync), so only the last
//!    segment can end in zeros;
//! 4. at open: truncating a torn tail (`set_len` + sync), removing a torn
//!    segment (remove + folder sync), and a sync of the last segment.
//!
//! So after a crash, everything up to the end of the last sync is intact,
//! and what follows is at most one batch's worth (`max_batch_bytes`) that
//! may be missing, cut short, zero-filled, or torn sector by sector (some
//! sectors written, some not), in any pattern. Every acknowledged record
//! lies before it.
//!
//! # Scan
//!
//! Segments are scanned in name order; each header is checked, then every
//! record's frame and crc chain, up to the first spot where the valid log
//! stops. That spot is classified by [`decide`] from the [`Facts`] below.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tracing::warn;

use super::error::{Damage, JournalError};
use super::frame::FrameHeader;
use super::segment::{display_name, parse_segment_file_name, Scan, SegmentHeader, SegmentScanner};
use crate::storage::{OpenMode, Vfs, VfsFile};
use crate::Lsn;

/// What the scan of one segment stopped at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Spot {
    /// The end of the file, exactly at a record boundary.
    End,
    /// The segment header is short, zero-filled or fails its checksum: it may
    /// be a torn creation.
    Header,
    /// An intact segment header (or file name) that does not continue the
    /// journal: wrong start position or chain seed, unknown version or magic.
    /// Never the result of a torn write.
    Mismatch,
    /// Bytes that are not a valid record: zero-filled, a short header, a bad
    /// length or kind, a short payload, or a checksum mismatch.
    Record,
    /// Only zeros from here to the end of the file: the space the writer
    /// reserves ahead of its records (`RESERVE_BYTES`), or a batch none of
    /// whose sectors reached the disk.
    Zeros,
}

/// The inputs of the decision, all booleans except the spot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Facts {
    pub spot: Spot,
    /// No segment file sorts after this one.
    pub last_segment: bool,
    /// The spot lies before the `known_durable` position the caller passed
    /// (for `Header`/`Mismatch`: the segment's start position does).
    pub before_durable: bool,
    /// `Record`: valid-looking records found after the damage (following the
    /// chain, or by scanning forward for two records that chain) end more
    /// than `max_batch_bytes` past it. `Header`: the file holds bytes past
    /// the 64 header bytes. Meaningless for `End` and `Mismatch`.
    pub beyond_batch: bool,
}

/// What to do about a spot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// A whole segment: go on with the next one.
    NextSegment,
    /// The journal ends here, cleanly.
    CleanEnd,
    /// A torn, unacknowledged batch: truncate the segment at the spot.
    TruncateTail,
    /// A torn segment creation: remove the file.
    DropSegment,
    /// Refuse to open; the text says why the spot cannot be a torn write.
    Corrupt(&'static str),
}

/// One row of the decision table; `None` = any value.
#[derive(Debug, Clone, Copy)]
pub struct Row {
    pub spot: Spot,
    pub last_segment: Option<bool>,
    pub before_durable: Option<bool>,
    pub beyond_batch: Option<bool>,
    pub outcome: Outcome,
}

const fn row(
    spot: Spot,
    last_segment: Option<bool>,
    before_durable: Option<bool>,
    beyond_batch: Option<bool>,
    outcome: Outcome,
) -> Row {
    Row {
        spot,
        last_segment,
        before_durable,
        beyond_batch,
        outcome,
    }
}

const Y: Option<bool> = Some(true);
const N: Option<bool> = Some(false);
const ANY: Option<bool> = None;

const LATER_SEGMENT: &str =
    "a later segment exists, so this one was synced in full before it was created";
const KNOWN_DURABLE: &str = "it lies before a position known durable";

/// The decision table. Every combination of [`Facts`] matches exactly one
/// row (checked by a test over all 32 combinations).
///
/// ```text
///  #  spot      last  before_durable  beyond_batch  outcome
///  1  End       no    -               -             NextSegment
///  2  End       yes   no              -             CleanEnd
///  3  End       yes   yes             -             Corrupt: log ends before a durable point
///  4  Mismatch  -     -               -             Corrupt: intact but wrong, never a tear
///  5  Header    no    -               -             Corrupt: later segment proves it synced
///  6  Header    yes   yes             -             Corrupt: holds durable positions
///  7  Header    yes   no              yes           Corrupt: records follow, so header was synced
///  8  Header    yes   no              no            DropSegment (torn creation)
///  9  Record    no    -               -             Corrupt: later segment proves it synced
/// 10  Record    yes   yes             -             Corrupt: damage before a durable point
/// 11  Record    yes   no              yes           Corrupt: valid records beyond one batch
/// 12  Record    yes   no              no            TruncateTail (torn batch)
/// 13  Zeros     no    -               -             Corrupt: later segment proves it synced
/// 14  Zeros     yes   yes             -             Corrupt: log ends before a durable point
/// 15  Zeros     yes   no              -             CleanEnd (reserved space stays)
/// ```
pub const DECISIONS: [Row; 15] = [
    row(Spot::End, N, ANY, ANY, Outcome::NextSegment),
    row(Spot::End, Y, N, ANY, Outcome::CleanEnd),
    row(Spot::End, Y, Y, ANY, Outcome::Corrupt(KNOWN_DURABLE)),
    row(
        Spot::Mismatch,
        ANY,
        ANY,
        ANY,
        Outcome::Corrupt("an intact header that does not continue the journal is never a torn write"),
    ),
    row(Spot::Header, N, ANY, ANY, Outcome::Corrupt(LATER_SEGMENT)),
    row(Spot::Header, Y, Y, ANY, Outcome::Corrupt(KNOWN_DURABLE)),
    row(
        Spot::Header,
        Y,
        N,
        Y,
        Outcome::Corrupt("records follow the header, and they are written only after the header was synced"),
    ),
    row(Spot::Header, Y, N, N, Outcome::DropSegment),
    row(Spot::Record, N, ANY, ANY, Outcome::Corrupt(LATER_SEGMENT)),
    row(Spot::Record, Y, Y, ANY, Outcome::Corrupt(KNOWN_DURABLE)),
    row(
        Spot::Record,
        Y,
        N,
        Y,
        Outcome::Corrupt("valid records follow it farther than one batch (max_batch_bytes), so it is not a torn write"),
    ),
    row(Spot::Record, Y, N, N, Outcome::TruncateTail),
    row(Spot::Zeros, N, ANY, ANY, Outcome::Corrupt(LATER_SEGMENT)),
    row(Spot::Zeros, Y, Y, ANY, Outcome::Corrupt(KNOWN_DURABLE)),
    row(Spot::Zeros, Y, N, ANY, Outcome::CleanEnd),
];

impl Row {
    pub fn matches(&self, f: &Facts) -> bool {
        let ok = |want: Option<bool>, have: bool| want.is_none_or(|w| w == have);
        self.spot == f.spot
            && ok(self.last_segment, f.last_segment)
            && ok(self.before_durable, f.before_durable)
            && ok(self.beyond_batch, f.beyond_batch)
    }
}

/// Looks the facts up in [`DECISIONS`].
pub fn decide(f: Facts) -> Outcome {
    let mut rows = DECISIONS.iter().filter(|r| r.matches(&f));
    let first = rows.next();
    debug_assert!(rows.next().is_none(), "two decision rows match {f:?}");
    match first {
        Some(r) => r.outcome,
        None => Outcome::Corrupt("no decision row matches (internal error)"),
    }
}

/// A torn tail cut at open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TailRepair {
    /// Where the valid log now ends.
    pub lsn: Lsn,
    /// The segment file cut or removed.
    pub segment: String,
    /// File offset of the cut (0 when the segment was removed).
    pub offset: u64,
    pub dropped_bytes: u64,
    /// The damage found at the cut.
    pub reason: String,
    /// The whole segment was removed (its header was torn).
    pub segment_removed: bool,
}

/// What [`super::Journal::open`] found and did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenReport {
    /// No segment existed (or the only one was a torn creation): a new
    /// journal was started at position 0.
    pub created: bool,
    /// Position of the first record held (start of the oldest segment).
    pub start: Lsn,
    /// End of the valid log, now durable.
    pub end: Lsn,
    /// Stored crc of the record before `end` (the chain value appends continue from).
    pub last_crc: u32,
    pub segments: usize,
    /// Valid records scanned.
    pub records: u64,
    /// Bytes cut from a torn tail (0 if none).
    pub dropped_bytes: u64,
    pub repair: Option<TailRepair>,
}

/// A segment that survived recovery.
pub(crate) struct Recovered {
    pub start: Lsn,
    pub path: PathBuf,
    pub file: Arc<dyn VfsFile>,
}

pub(crate) struct Recovery {
    pub segments: Vec<Recovered>,
    /// End of the valid log and the chain value there.
    pub end: Lsn,
    pub last_crc: u32,
    pub records: u64,
    pub repair: Option<TailRepair>,
    /// File syncs done.
    pub syncs: u64,
}

fn corrupt(
    lsn: Lsn,
    segment: &str,
    offset: u64,
    damage: impl std::fmt::Display,
    why: &str,
) -> JournalError {
    JournalError::Corrupt {
        lsn,
        segment: segment.to_owned(),
        offset,
        reason: format!("{damage}; {why}"),
    }
}

/// Scans every segment in `dir`, repairs a torn tail, and returns what
/// survived. Errors with `Corrupt` (changing nothing) where [`decide`] says so.
pub(crate) fn recover(
    vfs: &dyn Vfs,
    dir: &Path,
    max_batch: u64,
    known_durable: Lsn,
) -> Result<Recovery, JournalError> {
    let mut names = Vec::new();
    for path in vfs
        .list(dir)
        .map_err(io(format!("list journal folder {}", dir.display())))?
    {
        match parse_segment_file_name(&display_name(&path)) {
            Some(start) => names.push((start, path)),
            None => warn!(file = %path.display(), "ignoring a file that is not a journal segment"),
        }
    }
    names.sort_by_key(|(start, _)| *start);

    let mut out = Recovery {
        segments: Vec::new(),
        end: Lsn::ZERO,
        last_crc: 0,
        records: 0,
        repair: None,
        syncs: 0,
    };
    if names.is_empty() && known_durable > Lsn::ZERO {
        return Err(corrupt(
            Lsn::ZERO,
            "(none)",
            0,
            Damage::EndsBeforeDurable {
                end: Lsn::ZERO,
                known_durable,
            },
            "the journal folder holds no segment",
        ));
    }

    for (i, (name_start, path)) in names.iter().enumerate() {
        let name_start = *name_start;
        let last_segment = i + 1 == names.len();
        let name = display_name(path);
        let file = vfs
            .open(path, OpenMode::Existing)
            .map_err(io(format!("open journal segment {name}")))?;
        let file_len = file
            .len()
            .map_err(io(format!("read length of journal segment {name}")))?;
        let expected = (!out.segments.is_empty()).then_some((out.end, out.last_crc));

        // The header: torn (Header), or intact but not continuing (Mismatch).
        let header = match expected {
            Some((end, _)) if end != name_start => Err(Damage::SegmentMismatch(format!(
                "file name says it starts at lsn {name_start}, but the previous segment ends at lsn {end}"
            ))),
            _ => SegmentHeader::read(&*file)
                .map_err(io(format!("read header of journal segment {name}")))?
                .and_then(|h| check_header(h, name_start, expected)),
        };
        let header = match header {
            Ok(h) => h,
            Err(damage) => {
                let spot = match damage {
                    Damage::BadSegmentHeader(_) => Spot::Header,
                    _ => Spot::Mismatch,
                };
                let facts = Facts {
                    spot,
                    last_segment,
                    before_durable: name_start < known_durable,
                    beyond_batch: file_len > SegmentHeader::LEN,
                };
                match decide(facts) {
                    Outcome::DropSegment if expected.is_some() || name_start == Lsn::ZERO => {
                        vfs.remove(path).map_err(io(format!("remove torn journal segment {name}")))?;
                        vfs.sync_dir(dir).map_err(io(format!("sync journal folder {}", dir.display())))?;
                        warn!(segment = %name, bytes = file_len, %damage, "removed a journal segment whose creation was torn");
                        out.repair = Some(TailRepair {
                            lsn: name_start,
                            segment: name,
                            offset: 0,
                            dropped_bytes: file_len,
                            reason: damage.to_string(),
                            segment_removed: true,
                        });
                        break;
                    }
                    Outcome::DropSegment => {
                        return Err(corrupt(
                            name_start,
                            &name,
                            0,
                            damage,
                            "the only segment's header is damaged and it does not start at 0, so the chain cannot go on",
                        ))
                    }
                    Outcome::Corrupt(why) => return Err(corrupt(name_start, &name, 0, damage, why)),
                    other => return Err(corrupt(name_start, &name, 0, damage, unexpected(other))),
                }
            }
        };

        // The records.
        let mut scan = SegmentScanner::new(file.clone(), header, file_len);
        let damage = loop {
            match scan
                .next()
                .map_err(io(format!("read journal segment {name}")))?
            {
                Scan::Record { .. } => out.records += 1,
                Scan::End => break None,
                Scan::Damaged(d) => break Some(d),
            }
        };
        let lsn = scan.lsn();
        let offset = scan.offset();
        let facts = match &damage {
            None => Facts {
                spot: Spot::End,
                last_segment,
                before_durable: lsn < known_durable,
                beyond_batch: false,
            },
            Some(_) => {
                let before_durable = lsn < known_durable;
                let mut tail = vec![0u8; (file_len - offset) as usize];
                file.read_exact_at(&mut tail, offset)
                    .map_err(io(format!("read journal segment {name}")))?;
                let zeros = tail.iter().all(|b| *b == 0);
                // Only rows 11 and 12 look at beyond_batch; skip the scan
                // where any value gives the same outcome.
                let beyond_batch = !zeros
                    && last_segment
                    && !before_durable
                    && valid_reach(&tail, max_batch) > max_batch;
                Facts {
                    spot: if zeros { Spot::Zeros } else { Spot::Record },
                    last_segment,
                    before_durable,
                    beyond_batch,
                }
            }
        };
        out.segments.push(Recovered {
            start: header.start,
            path: path.clone(),
            file: file.clone(),
        });
        out.end = lsn;
        out.last_crc = scan.prev_crc();
        let why_end = Damage::EndsBeforeDurable {
            end: lsn,
            known_durable,
        };
        match (decide(facts), damage) {
            (Outcome::NextSegment, _) => continue,
            (Outcome::CleanEnd, _) => break,
            (Outcome::TruncateTail, Some(damage)) => {
                let dropped = file_len - offset;
                file.set_len(offset)
                    .map_err(io(format!("truncate journal segment {name}")))?;
                file.sync()
                    .map_err(io(format!("sync journal segment {name}")))?;
                out.syncs += 1;
                warn!(segment = %name, %lsn, offset, dropped_bytes = dropped, %damage, "cut a torn journal tail");
                out.repair = Some(TailRepair {
                    lsn,
                    segment: name,
                    offset,
                    dropped_bytes: dropped,
                    reason: damage.to_string(),
                    segment_removed: false,
                });
                break;
            }
            (Outcome::Corrupt(why), Some(damage)) => {
                return Err(corrupt(lsn, &name, offset, damage, why))
            }
            (Outcome::Corrupt(why), None) => return Err(corrupt(lsn, &name, offset, why_end, why)),
            (other, _) => return Err(corrupt(lsn, &name, offset, why_end, unexpected(other))),
        }
    }
    Ok(out)
}

fn io(what: String) -> impl FnOnce(std::io::Error) -> JournalError {
    move |e| JournalError::io(what, e)
}

fn unexpected(o: Outcome) -> &'static str {
    match o {
        Outcome::NextSegment | Outcome::CleanEnd => {
            "unexpected decision for a damaged spot (internal error)"
        }
        _ => "unexpected decision (internal error)",
    }
}

/// An intact header must name the same start as the file, and continue the
/// chain of the previous segment.
fn check_header(
    h: SegmentHeader,
    name_start: Lsn,
    expected: Option<(Lsn, u32)>,
) -> Result<SegmentHeader, Damage> {
    if h.start != name_start {
        return Err(Damage::SegmentMismatch(format!(
            "header says it starts at lsn {}, its file name says {name_start}",
            h.start
        )));
    }
    if let Some((_, crc)) = expected {
        if h.prev_crc != crc {
            return Err(Damage::SegmentMismatch(format!(
                "chain seed {:#010x} differs from the last crc {crc:#010x} of the previous segment",
                h.prev_crc
            )));
        }
    }
    Ok(h)
}

/// How far past the damaged spot (offset 0 of `tail`) valid-looking records
/// reach: the end of the farthest chain of records found after it, or 0.
/// Stops early once it passes `limit`.
///
/// A record is "valid-looking" when it chains: it validates against the
/// damaged record's stored crc (it is the damaged record's successor), or
/// the record right after it validates against its own stored crc (two
/// records chain, a 1-in-2^32 accident for random bytes). From such an
/// anchor the chain is followed as far as it validates.
pub(crate) fn valid_reach(tail: &[u8], limit: u64) -> u64 {
    if tail.len() as u64 <= limit {
        // Nothing can end more than `limit` past the damage.
        return 0;
    }
    let damaged_crc = header_at(tail, 0).map(|h| h.crc);
    let mut farthest = 0u64;
    // The successor by the damaged header's own length first: the common
    // case of a damaged payload costs no scan.
    if let Some(h) = header_at(tail, 0) {
        if let Some(end) = chain_from(tail, h.frame_len() as usize, damaged_crc) {
            farthest = end;
            if farthest > limit {
                return farthest;
            }
        }
    }
    let mut p = 1usize;
    while p + FrameHeader::LEN <= tail.len() {
        match chain_from(tail, p, damaged_crc) {
            Some(end) => {
                farthest = farthest.max(end);
                if farthest > limit {
                    break;
                }
                p = (end as usize).max(p + 1);
            }
            None => p += 1,
        }
    }
    farthest
}

fn header_at(tail: &[u8], p: usize) -> Option<FrameHeader> {
    let b: &[u8; FrameHeader::LEN] = tail.get(p..p + FrameHeader::LEN)?.try_into().ok()?;
    Some(FrameHeader::from_bytes(b))
}

/// A structurally sane record at `p` that fits in `tail`: (header, payload, end).
fn record_at(tail: &[u8], p: usize) -> Option<(FrameHeader, &[u8], usize)> {
    let b: &[u8; FrameHeader::LEN] = tail.get(p..p + FrameHeader::LEN)?.try_into().ok()?;
    let h = FrameHeader::parse(b).ok()?;
    let end = p.checked_add(h.frame_len() as usize)?;
    let payload = tail.get(p + FrameHeader::LEN..end)?;
    Some((h, payload, end))
}

/// If the record at `p` is an anchor (see [`valid_reach`]), the end of the
/// chain that starts there.
fn chain_from(tail: &[u8], p: usize, damaged_crc: Option<u32>) -> Option<u64> {
    let (h, payload, mut end) = record_at(tail, p)?;
    let by_predecessor = damaged_crc.is_some_and(|c| h.check(c, payload).is_ok());
    if !by_predecessor {
        let (h2, payload2, _) = record_at(tail, end)?;
        h2.check(h.crc, payload2).ok()?;
    }
    let mut prev = h.crc;
    while let Some((h, payload, next)) = record_at(tail, end) {
        if h.check(prev, payload).is_err() {
            break;
        }
        prev = h.crc;
        end = next;
    }
    Some(end as u64)
}
