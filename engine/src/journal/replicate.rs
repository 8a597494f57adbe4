//! The mirror's reading side of the journal: the exact framed bytes of
//! durable records for streaming ([`Journal::read_raw`]), the chain value at
//! a position ([`Journal::crc_before`]), and verifying / decoding bytes
//! received from another member ([`Journal::decode_raw`]).
//!
//! # Cost of a raw read
//!
//! Finding a position inside a segment needs a validated walk from a point
//! whose chain value is known. The journal keeps a small cache of record
//! boundaries it has already validated ([`Boundaries`]): every raw read
//! remembers where it ended, so a streaming thread that asks again from
//! there starts at once, and a position not in the cache is reached by
//! walking from the nearest cached boundary below it in the same segment
//! (or from the segment header). The records returned are always verified
//! (frame and chained crc), so a byte damaged on disk after it was cached is
//! still caught.

use std::collections::BTreeMap;
use std::sync::Arc;

use parking_lot::Mutex;

use super::error::{Damage, JournalError};
use super::frame::FrameHeader;
use super::record::Record;
use super::segment::{Scan, SegmentHeader, SegmentScanner};
use super::writer::{Inner, Journal};
use crate::storage::VfsFile;
use crate::Lsn;

/// Most boundaries remembered (least recently used go first).
const BOUNDARY_CACHE: usize = 256;

/// Record boundaries already validated, with the stored crc of the record
/// before each (the chain value there).
///
/// Entries are only added after a validated walk or read, and only if no
/// [`Journal::truncate`] ran since the caller started (`generation`), so the
/// cache never names a position of a log that was cut.
pub(crate) struct Boundaries {
    map: Mutex<BoundaryMap>,
}

#[derive(Default)]
struct BoundaryMap {
    /// Position -> (chain value, last use).
    entries: BTreeMap<u64, (u32, u64)>,
    clock: u64,
    generation: u64,
}

impl Boundaries {
    pub(crate) fn new() -> Boundaries {
        Boundaries {
            map: Mutex::new(BoundaryMap::default()),
        }
    }

    /// Changes whenever positions are forgotten; read it before looking at
    /// the journal, pass it to [`Boundaries::insert`].
    pub(crate) fn generation(&self) -> u64 {
        self.map.lock().generation
    }

    /// The highest known boundary in `floor..=lsn`, with its chain value.
    fn below(&self, lsn: Lsn, floor: Lsn) -> Option<(Lsn, u32)> {
        if floor > lsn {
            return None;
        }
        let mut m = self.map.lock();
        m.clock += 1;
        let clock = m.clock;
        let (&at, entry) = m.entries.range_mut(floor.0..=lsn.0).next_back()?;
        entry.1 = clock;
        Some((Lsn(at), entry.0))
    }

    /// Remembers a validated boundary, unless positions were forgotten since
    /// `generation` was read.
    fn insert(&self, generation: u64, lsn: Lsn, crc: u32) {
        let mut m = self.map.lock();
        if m.generation != generation {
            return;
        }
        m.clock += 1;
        let clock = m.clock;
        m.entries.insert(lsn.0, (crc, clock));
        if m.entries.len() > BOUNDARY_CACHE {
            let oldest = m
                .entries
                .iter()
                .min_by_key(|(_, (_, used))| *used)
                .map(|(&at, _)| at);
            if let Some(at) = oldest {
                m.entries.remove(&at);
            }
        }
    }

    /// Forgets every boundary after `lsn` (the log is cut there).
    pub(crate) fn forget_after(&self, lsn: Lsn) {
        let mut m = self.map.lock();
        m.generation += 1;
        m.entries.retain(|&at, _| at <= lsn.0);
    }
}

/// One segment as a raw read sees it.
struct Seg {
    start: Lsn,
    name: String,
    file: Arc<dyn VfsFile>,
    /// Where its records end for this read: the next segment's start, or
    /// the durable position, whichever is lower.
    end: Lsn,
}

impl Seg {
    /// File offset of position `lsn` in this segment.
    fn offset(&self, lsn: Lsn) -> u64 {
        SegmentHeader::LEN + (lsn.0 - self.start.0)
    }

    fn corrupt(&self, lsn: Lsn, reason: impl std::fmt::Display) -> JournalError {
        JournalError::Corrupt {
            lsn,
            segment: self.name.clone(),
            offset: self.offset(lsn),
            reason: reason.to_string(),
        }
    }

    fn io(&self, e: std::io::Error) -> JournalError {
        JournalError::io(format!("read journal segment {}", self.name), e)
    }
}

/// The segment holding position `lsn` (the last one starting at or before
/// it), its records cut at `durable`.
fn segment_for(inner: &Inner, lsn: Lsn, durable: Lsn) -> Result<Seg, JournalError> {
    let segments = inner.segments.read();
    let Some(i) = segments.iter().rposition(|s| s.start <= lsn) else {
        let first = segments.first().map_or(Lsn::ZERO, |s| s.start);
        return Err(JournalError::NotHeld { from: lsn, first });
    };
    let s = &segments[i];
    let end = segments
        .get(i + 1)
        .map_or(durable, |n| n.start.min(durable));
    Ok(Seg {
        start: s.start,
        name: s.name.clone(),
        file: s.file.clone(),
        end: end.max(s.start),
    })
}

/// Reads and checks the header of `seg`: it must start where its name says
/// and, when `chain` is given, continue the chain from it. Returns its seed.
fn header_seed(seg: &Seg, chain: Option<u32>) -> Result<u32, JournalError> {
    let header = SegmentHeader::read(&*seg.file)
        .map_err(|e| seg.io(e))?
        .map_err(|d| seg.corrupt(seg.start, d))?;
    if header.start != seg.start {
        return Err(seg.corrupt(
            seg.start,
            format!("header says the segment starts at lsn {}", header.start),
        ));
    }
    if let Some(crc) = chain {
        if header.prev_crc != crc {
            return Err(seg.corrupt(
                seg.start,
                format!(
                    "chain seed {:#010x} differs from the last crc {crc:#010x} of the previous segment",
                    header.prev_crc
                ),
            ));
        }
    }
    Ok(header.prev_crc)
}

/// A validated record boundary: the segment holding it and the chain value.
struct Located {
    seg: Seg,
    crc: u32,
}

/// Finds record boundary `lsn` (`<= durable`), validating the records
/// between the nearest known boundary below it and it. Errors: `NotHeld`,
/// `NotBoundary`, `Corrupt`, `Io`.
fn locate(inner: &Inner, generation: u64, lsn: Lsn, durable: Lsn) -> Result<Located, JournalError> {
    let seg = segment_for(inner, lsn, durable)?;
    let (from, crc) = match inner.boundaries.below(lsn, seg.start) {
        Some(known) => known,
        None => {
            let seed = header_seed(&seg, None)?;
            inner.boundaries.insert(generation, seg.start, seed);
            (seg.start, seed)
        }
    };
    if from == lsn {
        return Ok(Located { seg, crc });
    }
    let mut scan = SegmentScanner::resume(
        seg.file.clone(),
        seg.start,
        seg.offset(from),
        crc,
        seg.offset(seg.end),
    );
    while scan.lsn() < lsn {
        match scan.next().map_err(|e| seg.io(e))? {
            Scan::Record { .. } => {}
            Scan::End => break,
            Scan::Damaged(d) => return Err(seg.corrupt(scan.lsn(), d)),
        }
    }
    if scan.lsn() != lsn {
        return Err(JournalError::NotBoundary {
            from: lsn,
            segment: seg.name.clone(),
        });
    }
    let crc = scan.prev_crc();
    inner.boundaries.insert(generation, lsn, crc);
    Ok(Located { seg, crc })
}

/// Walks the frames of `bytes`, which must hold whole records starting at
/// `start` and chained to `prev_crc`, calling `each(lsn, header, payload)`
/// for every valid one. Returns the end position and the last stored crc.
/// Any bad frame is `BadStream` naming its position and what is wrong.
pub(super) fn walk_frames(
    start: Lsn,
    prev_crc: u32,
    bytes: &[u8],
    mut each: impl FnMut(Lsn, FrameHeader, &[u8]) -> Result<(), JournalError>,
) -> Result<(Lsn, u32), JournalError> {
    let mut p = 0usize;
    let mut crc = prev_crc;
    while p < bytes.len() {
        let lsn = start.offset(p as u64);
        let bad = |reason: String| JournalError::BadStream { lsn, reason };
        let left = bytes.len() - p;
        let Some(hb) = bytes
            .get(p..p + FrameHeader::LEN)
            .and_then(|b| <&[u8; FrameHeader::LEN]>::try_from(b).ok())
        else {
            return Err(bad(format!(
                "the bytes end inside a record header ({left} of {} bytes)",
                FrameHeader::LEN
            )));
        };
        let header = FrameHeader::parse(hb).map_err(|d| bad(d.to_string()))?;
        let need = header.frame_len();
        if need > left as u64 {
            return Err(bad(format!(
                "the bytes end inside a record ({} payload bytes, {} present)",
                header.len,
                left - FrameHeader::LEN
            )));
        }
        let end = p + need as usize;
        let payload = &bytes[p + FrameHeader::LEN..end];
        header.check(crc, payload).map_err(|d| {
            bad(format!(
                "{d}: the record is damaged or does not continue the chain from crc {crc:#010x}"
            ))
        })?;
        each(lsn, header, payload)?;
        crc = header.crc;
        p = end;
    }
    Ok((start.offset(bytes.len() as u64), crc))
}

impl Journal {
    /// The exact framed bytes (headers and payloads, as stored) of the
    /// whole records from record boundary `from` up to the durable position,
    /// at most `max_bytes` of them, but always at least one whole record if
    /// one is durable after `from` (even if it is larger than `max_bytes`).
    /// Crosses segment boundaries: a record never spans segments and the
    /// chain continues across them, so the bytes are a valid stream to give
    /// to [`Journal::decode_raw`] / [`Journal::append_raw`] with the seed
    /// [`Journal::crc_before`]`(from)`.
    ///
    /// Returns the bytes and the position just past them (`from` and an
    /// empty vec when nothing is durable after `from`). The returned
    /// records are verified (frame and chained crc); finding `from` is cheap
    /// when it is where an earlier call ended (see the module docs).
    ///
    /// Errors: `NotHeld` before the oldest segment, `BeyondDurable` past the
    /// durable position, `NotBoundary`, `Corrupt` if the records are damaged.
    pub fn read_raw(&self, from: Lsn, max_bytes: usize) -> Result<(Vec<u8>, Lsn), JournalError> {
        self.read_raw_to(from, max_bytes, |i| i.durable_lsn())
    }

    /// Like [`Journal::read_raw`], up to what is written to the segment
    /// files rather than what is durable: a primary sends its batch to the
    /// backup while it syncs it itself. A receiver may then hold records
    /// the sender loses in a crash; the epoch histories tell them apart
    /// when they meet again, and the receiver rewinds them.
    pub fn read_raw_written(
        &self,
        from: Lsn,
        max_bytes: usize,
    ) -> Result<(Vec<u8>, Lsn), JournalError> {
        self.read_raw_to(from, max_bytes, |i| i.written_lsn())
    }

    fn read_raw_to(
        &self,
        from: Lsn,
        max_bytes: usize,
        limit: impl Fn(&Inner) -> Lsn,
    ) -> Result<(Vec<u8>, Lsn), JournalError> {
        let inner = &*self.inner;
        // Generation before durable: a truncate lowers durable before it
        // bumps the generation, so a stale read never feeds the cache.
        let generation = inner.boundaries.generation();
        let durable = limit(inner);
        if from > durable {
            return Err(JournalError::BeyondDurable { from, durable });
        }
        let oldest = self.oldest_lsn();
        if from < oldest {
            return Err(JournalError::NotHeld {
                from,
                first: oldest,
            });
        }
        if from == durable {
            return Ok((Vec::new(), from));
        }
        let Located { mut seg, mut crc } = locate(inner, generation, from, durable)?;
        let mut out: Vec<u8> = Vec::new();
        let mut at = from;
        while at < durable {
            if at >= seg.end {
                // The next segment starts where this one ends.
                let next = segment_for(inner, at, durable)?;
                if next.start != at {
                    return Err(seg.corrupt(
                        at,
                        format!("the segment ends at lsn {at}, before the durable position {durable}, and no segment starts there"),
                    ));
                }
                header_seed(&next, Some(crc))?;
                seg = next;
                continue;
            }
            let room = max_bytes.saturating_sub(out.len());
            if !out.is_empty() && room < FrameHeader::LEN {
                break;
            }
            let avail = (seg.end.0 - at.0) as usize;
            let n = room.max(FrameHeader::LEN).min(avail);
            let base = out.len();
            out.resize(base + n, 0);
            seg.file
                .read_exact_at(&mut out[base..], seg.offset(at))
                .map_err(|e| seg.io(e))?;
            let mut p = base;
            let mut cut = false;
            while p < out.len() {
                let rec_at = at.offset((p - base) as u64);
                let left = out.len() - p;
                if left < FrameHeader::LEN {
                    if rec_at.offset(left as u64) >= seg.end {
                        return Err(
                            seg.corrupt(rec_at, Damage::TruncatedHeader { have: left as u64 })
                        );
                    }
                    cut = true;
                    break;
                }
                let mut hb = [0u8; FrameHeader::LEN];
                hb.copy_from_slice(&out[p..p + FrameHeader::LEN]);
                let header = FrameHeader::parse(&hb).map_err(|d| seg.corrupt(rec_at, d))?;
                let need = header.frame_len();
                if need > left as u64 {
                    let seg_left = seg.end.0 - rec_at.0;
                    if need > seg_left {
                        return Err(seg.corrupt(
                            rec_at,
                            Damage::TruncatedPayload {
                                need: u64::from(header.len),
                                have: seg_left - FrameHeader::LEN as u64,
                            },
                        ));
                    }
                    if p != 0 {
                        cut = true;
                        break;
                    }
                    // The first record goes out whole, whatever max_bytes says.
                    let have = out.len();
                    out.resize(need as usize, 0);
                    seg.file
                        .read_exact_at(&mut out[have..], seg.offset(rec_at.offset(have as u64)))
                        .map_err(|e| seg.io(e))?;
                }
                let end = p + need as usize;
                header
                    .check(crc, &out[p + FrameHeader::LEN..end])
                    .map_err(|d| seg.corrupt(rec_at, d))?;
                crc = header.crc;
                p = end;
            }
            out.truncate(p);
            at = at.offset((p - base) as u64);
            if cut {
                break;
            }
        }
        if at > from {
            inner.boundaries.insert(generation, at, crc);
        }
        Ok((out, at))
    }

    /// The stored crc of the record that ends at record boundary `lsn`: the
    /// chain seed of a stream starting at `lsn` (for the start of a segment,
    /// its header's `prev_crc`; for `end_lsn()`, [`Journal::last_crc`]).
    ///
    /// `lsn` must be durable or the end of what was appended. Errors:
    /// `NotHeld`, `BeyondDurable`, `NotBoundary`, `Corrupt`, `Io`.
    pub fn crc_before(&self, lsn: Lsn) -> Result<u32, JournalError> {
        let inner = &*self.inner;
        {
            let p = inner.pending.lock();
            if lsn == p.end() {
                return Ok(p.last_crc);
            }
        }
        self.crc_before_durable(lsn)
    }

    /// [`Journal::crc_before`] for a durable `lsn`, without taking the
    /// append lock (a caller may hold it).
    pub(super) fn crc_before_durable(&self, lsn: Lsn) -> Result<u32, JournalError> {
        let inner = &*self.inner;
        let generation = inner.boundaries.generation();
        let durable = inner.durable_lsn();
        if lsn > durable {
            return Err(JournalError::BeyondDurable { from: lsn, durable });
        }
        Ok(locate(inner, generation, lsn, durable)?.crc)
    }

    /// Verifies and decodes journal bytes received from another member:
    /// whole records starting at `start`, the first chained to `prev_crc`
    /// (the stored crc of the record before `start`). Pure: touches no
    /// journal. Every frame (length, kind, chained crc) and payload is
    /// checked; the first bad one is `BadStream` naming its position and
    /// what is wrong.
    pub fn decode_raw(
        start: Lsn,
        prev_crc: u32,
        bytes: &[u8],
    ) -> Result<Vec<(Lsn, Record)>, JournalError> {
        let mut out = Vec::new();
        walk_frames(start, prev_crc, bytes, |lsn, header, payload| {
            let rec =
                Record::decode(header.kind, payload).map_err(|e| JournalError::BadStream {
                    lsn,
                    reason: format!("{} (kind {})", Damage::Undecodable(e), header.kind),
                })?;
            out.push((lsn, rec));
            Ok(())
        })?;
        Ok(out)
    }

    /// Start of the oldest segment held: the first position that can be read.
    pub fn oldest_lsn(&self) -> Lsn {
        self.inner
            .segments
            .read()
            .first()
            .map_or(Lsn::ZERO, |s| s.start)
    }
}
