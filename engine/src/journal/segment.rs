//! Segment files: naming, the segment header, and a validating scan of the
//! records inside one segment.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::error::Damage;
use super::frame::FrameHeader;
use crate::storage::{OpenMode, Vfs, VfsFile};
use crate::Lsn;

/// File name of the segment whose first record is at `start`:
/// 20 decimal digits and `.jrn`, so names sort like positions.
pub fn segment_file_name(start: Lsn) -> String {
    format!("{:020}.jrn", start.0)
}

/// The start position encoded in a segment file name, if it is one.
pub fn parse_segment_file_name(name: &str) -> Option<Lsn> {
    let digits = name.strip_suffix(".jrn")?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok().map(Lsn)
}

/// The file name part of a path, for messages.
pub(crate) fn display_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.display().to_string())
}

/// The fixed header at the start of every segment file.
///
/// ```text
///  offset  size  field
///  ------  ----  -----------------------------------------------------------
///  0       8     magic       b"RDBTJRNL"
///  8       4     version     u32 LE, 1
///  12      4     header_len  u32 LE, 64
///  16      8     start       u64 LE: Lsn of the first record in this file
///  24      4     prev_crc    u32 LE: chain seed = stored crc of the record
///                            before `start` (0 for a new journal)
///  28      32    reserved    zero
///  60      4     header_crc  u32 LE: crc32c(bytes 0..60)
///  64      ...   records, back to back (see FrameHeader); a record never
///                spans two segments
/// ```
///
/// File offset of the record at `lsn` = `64 + (lsn - start)`.
///
/// Crash model: the writer creates the file, writes the header and syncs it
/// (and syncs the folder) before it writes any record into it, and it
/// creates a segment only after every earlier one is synced for good. So a
/// damaged header can be a torn creation only if nothing follows it and the
/// file is the last segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentHeader {
    pub start: Lsn,
    pub prev_crc: u32,
}

impl SegmentHeader {
    pub const LEN: u64 = 64;
    pub const MAGIC: [u8; 8] = *b"RDBTJRNL";
    pub const VERSION: u32 = 1;

    pub fn to_bytes(&self) -> [u8; Self::LEN as usize] {
        let mut b = [0u8; Self::LEN as usize];
        b[0..8].copy_from_slice(&Self::MAGIC);
        b[8..12].copy_from_slice(&Self::VERSION.to_le_bytes());
        b[12..16].copy_from_slice(&(Self::LEN as u32).to_le_bytes());
        b[16..24].copy_from_slice(&self.start.0.to_le_bytes());
        b[24..28].copy_from_slice(&self.prev_crc.to_le_bytes());
        let crc = crc32c::crc32c(&b[0..60]);
        b[60..64].copy_from_slice(&crc.to_le_bytes());
        b
    }

    /// Parses a header. `Err(BadSegmentHeader)` for bytes that are not a
    /// whole, intact header (possibly torn); `Err(SegmentMismatch)` for an
    /// intact header this code cannot use (never a tear).
    pub fn parse(b: &[u8]) -> Result<SegmentHeader, Damage> {
        let bad = |why: String| Damage::BadSegmentHeader(why);
        if b.len() < Self::LEN as usize {
            return Err(bad(format!(
                "file holds {} of the {} header bytes",
                b.len(),
                Self::LEN
            )));
        }
        let b = &b[..Self::LEN as usize];
        let u32_at = |o: usize| u32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]]);
        let stored = u32_at(60);
        let computed = crc32c::crc32c(&b[0..60]);
        if stored != computed {
            if b.iter().all(|&x| x == 0) {
                return Err(bad("zero-filled".into()));
            }
            return Err(bad(format!(
                "header checksum mismatch (stored {stored:#010x}, computed {computed:#010x})"
            )));
        }
        if b[0..8] != Self::MAGIC {
            return Err(Damage::SegmentMismatch(
                "not a redoubt journal segment (bad magic)".into(),
            ));
        }
        let version = u32_at(8);
        if version != Self::VERSION {
            return Err(Damage::SegmentMismatch(format!(
                "segment format version {version} is not supported (this build reads {})",
                Self::VERSION
            )));
        }
        if u32_at(12) != Self::LEN as u32 {
            return Err(Damage::SegmentMismatch(format!(
                "header length {} is not {}",
                u32_at(12),
                Self::LEN
            )));
        }
        let mut start = [0u8; 8];
        start.copy_from_slice(&b[16..24]);
        Ok(SegmentHeader {
            start: Lsn(u64::from_le_bytes(start)),
            prev_crc: u32_at(24),
        })
    }

    /// Reads and parses the header of an open segment file.
    pub fn read(file: &dyn VfsFile) -> io::Result<Result<SegmentHeader, Damage>> {
        let len = file.len()?;
        let mut b = vec![0u8; len.min(Self::LEN) as usize];
        file.read_exact_at(&mut b, 0)?;
        Ok(Self::parse(&b))
    }
}

/// Creates (or empties) the segment file for `header.start` in `dir`,
/// writes its header and syncs the file. The caller syncs the folder.
pub(crate) fn create_segment(
    vfs: &dyn Vfs,
    dir: &Path,
    header: SegmentHeader,
) -> io::Result<(PathBuf, Arc<dyn VfsFile>)> {
    let path = dir.join(segment_file_name(header.start));
    let file = vfs.open(&path, OpenMode::CreateIfMissing)?;
    file.set_len(0)?;
    file.write_all_at(&header.to_bytes(), 0)?;
    file.sync()?;
    Ok((path, file))
}

/// What [`SegmentScanner::next`] found at the current position.
#[derive(Debug)]
pub(crate) enum Scan<'a> {
    /// A record whose header and chained crc are valid; the scanner moved past it.
    Record {
        header: FrameHeader,
        payload: &'a [u8],
    },
    /// The scan limit, exactly at a record boundary.
    End,
    /// The bytes at the current position are not a valid record; the
    /// scanner did not move.
    Damaged(Damage),
}

/// Read-ahead size of a scan.
const CHUNK: usize = 256 * 1024;

/// Walks the records of one segment from its header on, validating each
/// frame and the crc chain, reading the file in large chunks.
pub(crate) struct SegmentScanner {
    file: Arc<dyn VfsFile>,
    start: Lsn,
    /// File offset where the scan stops (the file length, or a read limit).
    end: u64,
    /// File offset of the next record.
    offset: u64,
    /// Stored crc of the last record passed (the chain value for the next).
    prev_crc: u32,
    buf: Vec<u8>,
    buf_at: u64,
}

impl SegmentScanner {
    /// A scan of `file` (whose header is `header`) up to file offset `end`.
    pub fn new(file: Arc<dyn VfsFile>, header: SegmentHeader, end: u64) -> SegmentScanner {
        SegmentScanner {
            file,
            start: header.start,
            end: end.max(SegmentHeader::LEN),
            offset: SegmentHeader::LEN,
            prev_crc: header.prev_crc,
            buf: Vec::new(),
            buf_at: 0,
        }
    }

    /// A scan of `file` (a segment starting at `start`) that resumes at the
    /// record boundary at file offset `offset`, whose predecessor's stored
    /// crc is `prev_crc` (both known from an earlier validated scan).
    pub fn resume(
        file: Arc<dyn VfsFile>,
        start: Lsn,
        offset: u64,
        prev_crc: u32,
        end: u64,
    ) -> SegmentScanner {
        let offset = offset.max(SegmentHeader::LEN);
        SegmentScanner {
            file,
            start,
            end: end.max(offset),
            offset,
            prev_crc,
            buf: Vec::new(),
            buf_at: 0,
        }
    }

    /// Position of the next record.
    pub fn lsn(&self) -> Lsn {
        self.start.offset(self.offset - SegmentHeader::LEN)
    }

    /// File offset of the next record.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// Stored crc of the last record passed.
    pub fn prev_crc(&self) -> u32 {
        self.prev_crc
    }

    /// File offset where the scan stops.
    pub fn end(&self) -> u64 {
        self.end
    }

    /// Validates the record at the current position and, if it is valid,
    /// moves past it.
    pub fn next(&mut self) -> io::Result<Scan<'_>> {
        let remaining = self.end - self.offset;
        if remaining == 0 {
            return Ok(Scan::End);
        }
        let at = self.offset;
        if remaining < FrameHeader::LEN as u64 {
            let bytes = self.window(at, remaining as usize)?;
            if bytes.iter().all(|&b| b == 0) {
                return Ok(Scan::Damaged(Damage::ZeroFilled));
            }
            return Ok(Scan::Damaged(Damage::TruncatedHeader { have: remaining }));
        }
        let mut hb = [0u8; FrameHeader::LEN];
        hb.copy_from_slice(self.window(at, FrameHeader::LEN)?);
        let header = match FrameHeader::parse(&hb) {
            Ok(h) => h,
            Err(d) => return Ok(Scan::Damaged(d)),
        };
        if header.frame_len() > remaining {
            return Ok(Scan::Damaged(Damage::TruncatedPayload {
                need: u64::from(header.len),
                have: remaining - FrameHeader::LEN as u64,
            }));
        }
        let prev = self.prev_crc;
        let payload_at = at + FrameHeader::LEN as u64;
        if let Err(d) = header.check(prev, self.window(payload_at, header.len as usize)?) {
            return Ok(Scan::Damaged(d));
        }
        self.offset = at + header.frame_len();
        self.prev_crc = header.crc;
        let payload = self.window(payload_at, header.len as usize)?;
        Ok(Scan::Record { header, payload })
    }

    /// `n` bytes at file offset `at` (the caller keeps `at + n <= end`).
    fn window(&mut self, at: u64, n: usize) -> io::Result<&[u8]> {
        let buf_end = self.buf_at + self.buf.len() as u64;
        if !(self.buf_at <= at && at + n as u64 <= buf_end) {
            let want = (n.max(CHUNK) as u64).min(self.end - at) as usize;
            if self.buf.capacity() > 4 * CHUNK && want <= CHUNK {
                self.buf = Vec::new();
            }
            self.buf.resize(want, 0);
            self.file.read_exact_at(&mut self.buf, at)?;
            self.buf_at = at;
        }
        let s = (at - self.buf_at) as usize;
        Ok(&self.buf[s..s + n])
    }
}
