//! Reading the journal back: (position, record) pairs from the segment
//! files, every frame and the crc chain validated.

use std::sync::Arc;

use super::error::{Damage, JournalError};
use super::record::Record;
use super::segment::{Scan, SegmentHeader, SegmentScanner};
use super::writer::Inner;
use crate::Lsn;

/// Iterates `(position, record)` from a start position up to a limit fixed
/// when the reader was made (the durable position then). Reads only
/// durable bytes, so it never sees a batch still in flight.
///
/// A damaged record yields one `Err(Corrupt)` and ends the iteration.
pub struct JournalReader {
    inner: Arc<Inner>,
    limit: Lsn,
    scanner: SegmentScanner,
    segment: String,
    done: bool,
}

impl std::fmt::Debug for JournalReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JournalReader")
            .field("segment", &self.segment)
            .field("position", &self.position())
            .field("limit", &self.limit)
            .finish()
    }
}

impl JournalReader {
    pub(crate) fn new(inner: Arc<Inner>, from: Lsn) -> Result<JournalReader, JournalError> {
        let limit = inner.durable_lsn();
        if from > limit {
            return Err(JournalError::BeyondDurable {
                from,
                durable: limit,
            });
        }
        let (start, name, file) = {
            let segments = inner.segments.read();
            let Some(seg) = segments.iter().rev().find(|s| s.start <= from) else {
                let first = segments.first().map_or(Lsn::ZERO, |s| s.start);
                return Err(JournalError::NotHeld { from, first });
            };
            (seg.start, seg.name.clone(), seg.file.clone())
        };
        let scanner = open_segment(&name, file, start, None, limit)?;
        let mut reader = JournalReader {
            inner,
            limit,
            scanner,
            segment: name,
            done: false,
        };
        // Walk (and validate) from the segment start to `from`.
        while reader.scanner.lsn() < from {
            let damage = match reader.scanner.next() {
                Ok(Scan::Record { .. }) => continue,
                Ok(Scan::End) => break,
                Ok(Scan::Damaged(d)) => d,
                Err(e) => return Err(reader.io_error(e)),
            };
            return Err(reader.corrupt(damage.to_string()));
        }
        if reader.scanner.lsn() != from {
            return Err(JournalError::NotBoundary {
                from,
                segment: reader.segment.clone(),
            });
        }
        Ok(reader)
    }

    /// Position of the next record (the end of the last one returned).
    pub fn position(&self) -> Lsn {
        self.scanner.lsn()
    }

    /// The reader stops here (the durable position when it was made).
    pub fn limit(&self) -> Lsn {
        self.limit
    }

    fn corrupt(&self, reason: String) -> JournalError {
        JournalError::Corrupt {
            lsn: self.scanner.lsn(),
            segment: self.segment.clone(),
            offset: self.scanner.offset(),
            reason,
        }
    }

    fn io_error(&self, e: std::io::Error) -> JournalError {
        JournalError::io(format!("read journal segment {}", self.segment), e)
    }

    /// Moves to the segment that starts where the current one ended.
    fn next_segment(&mut self) -> Result<(), JournalError> {
        let at = self.scanner.lsn();
        let next = {
            let segments = self.inner.segments.read();
            segments
                .iter()
                .find(|s| s.start == at)
                .map(|s| (s.name.clone(), s.file.clone()))
        };
        let Some((name, file)) = next else {
            return Err(self.corrupt(format!(
                "the segment ends at lsn {at}, before the durable position {}, and no segment starts there",
                self.limit
            )));
        };
        self.scanner = open_segment(&name, file, at, Some(self.scanner.prev_crc()), self.limit)?;
        self.segment = name;
        Ok(())
    }

    fn step(&mut self) -> Result<Option<(Lsn, Record)>, JournalError> {
        if self.scanner.lsn() >= self.limit {
            return Ok(None);
        }
        if self.scanner.offset() == self.scanner.end() {
            self.next_segment()?;
        }
        let at = self.scanner.lsn();
        let (kind, decoded) = match self.scanner.next() {
            Ok(Scan::Record { header, payload }) => {
                (header.kind, Record::decode(header.kind, payload))
            }
            Ok(Scan::End) => {
                return Err(self.corrupt(format!(
                    "the segment ends before the durable position {}",
                    self.limit
                )))
            }
            Ok(Scan::Damaged(d)) => return Err(self.corrupt(d.to_string())),
            Err(e) => return Err(self.io_error(e)),
        };
        match decoded {
            Ok(rec) => Ok(Some((at, rec))),
            Err(e) => Err(JournalError::Corrupt {
                lsn: at,
                segment: self.segment.clone(),
                offset: self.scanner.offset() - (self.scanner.lsn().0 - at.0),
                reason: format!("{} (kind {kind})", Damage::Undecodable(e)),
            }),
        }
    }
}

impl Iterator for JournalReader {
    type Item = Result<(Lsn, Record), JournalError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        match self.step() {
            Ok(Some(item)) => Some(Ok(item)),
            Ok(None) => {
                self.done = true;
                None
            }
            Err(e) => {
                self.done = true;
                Some(Err(e))
            }
        }
    }
}

/// A scanner over the segment `name` that must start at `start` and, when
/// `chain` is given, continue the crc chain from it. It stops at `limit`.
fn open_segment(
    name: &str,
    file: Arc<dyn crate::storage::VfsFile>,
    start: Lsn,
    chain: Option<u32>,
    limit: Lsn,
) -> Result<SegmentScanner, JournalError> {
    let io = |e| JournalError::io(format!("read journal segment {name}"), e);
    let corrupt = |reason: String| JournalError::Corrupt {
        lsn: start,
        segment: name.to_owned(),
        offset: 0,
        reason,
    };
    let header = SegmentHeader::read(&*file)
        .map_err(io)?
        .map_err(|d| corrupt(d.to_string()))?;
    if header.start != start {
        return Err(corrupt(format!(
            "header says the segment starts at lsn {}",
            header.start
        )));
    }
    if let Some(crc) = chain {
        if header.prev_crc != crc {
            return Err(corrupt(format!(
                "chain seed {:#010x} differs from the last crc {crc:#010x} of the previous segment",
                header.prev_crc
            )));
        }
    }
    let file_len = file.len().map_err(io)?;
    let limit_offset = SegmentHeader::LEN + (limit.0.saturating_sub(start.0));
    Ok(SegmentScanner::new(
        file,
        header,
        file_len.min(limit_offset),
    ))
}
