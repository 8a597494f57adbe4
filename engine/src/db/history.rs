//! The epoch history of a member's journal: where each primary tenure
//! began, like Raft's (term, index). Two members compare histories to find
//! where their journals part: a journal's records of epoch E are the
//! mirror's only up to where the next epoch after E began.
//!
//! Kept in `<data>/epochs`, one line per epoch, appended and fsynced when
//! an epoch record is written or received:
//!
//! ```text
//! <epoch> <start lsn> <crc32c of "<epoch> <start lsn>" in hex>\n
//! ```
//!
//! A torn last line (a crash while appending) fails its checksum and is
//! dropped; the epoch record is still in the journal and is recorded again
//! when recovery or the follower applies it. Rewinding cuts the file back
//! to the lines before the cut position.

use std::path::PathBuf;
use std::sync::Arc;

use crate::error::{EngineError, Result};
use crate::storage::{OpenMode, Vfs, VfsFile};
use crate::Lsn;

pub(crate) struct History {
    file: Arc<dyn VfsFile>,
    path: PathBuf,
    /// (epoch, start, byte offset of its line)
    entries: Vec<(u64, Lsn, u64)>,
    len: u64,
}

fn line(epoch: u64, start: Lsn) -> String {
    let body = format!("{epoch} {}", start.0);
    format!("{body} {:08x}\n", crc32c::crc32c(body.as_bytes()))
}

impl History {
    pub fn open(vfs: &dyn Vfs, path: PathBuf) -> Result<History> {
        let io = |e| EngineError::io(format!("open {}", path.display()), e);
        let file = vfs.open(&path, OpenMode::CreateIfMissing).map_err(io)?;
        let len = file.len().map_err(io)?;
        let mut buf = vec![0u8; len as usize];
        file.read_exact_at(&mut buf, 0).map_err(io)?;
        let mut entries = Vec::new();
        let mut offset = 0u64;
        for raw in buf.split_inclusive(|b| *b == b'\n') {
            let parsed = std::str::from_utf8(raw).ok().and_then(|l| {
                let l = l.strip_suffix('\n')?;
                let (body, crc) = l.rsplit_once(' ')?;
                let crc = u32::from_str_radix(crc, 16).ok()?;
                (crc == crc32c::crc32c(body.as_bytes())).then_some(())?;
                let (e, s) = body.split_once(' ')?;
                Some((e.parse().ok()?, Lsn(s.parse().ok()?)))
            });
            match parsed {
                Some((e, s)) => entries.push((e, s, offset)),
                None => break, // a torn tail; everything after it goes too
            }
            offset += raw.len() as u64;
        }
        if offset < len {
            tracing::warn!(file = %path.display(), dropped = len - offset, "dropping a torn end of the epoch history");
            file.set_len(offset).and_then(|_| file.sync()).map_err(io)?;
        }
        Ok(History {
            file,
            path,
            entries,
            len: offset,
        })
    }

    pub fn entries(&self) -> Vec<(u64, Lsn)> {
        self.entries.iter().map(|(e, s, _)| (*e, *s)).collect()
    }

    /// The epoch of the newest epoch record in the journal (0 if none).
    pub fn last_epoch(&self) -> u64 {
        self.entries.last().map_or(0, |e| e.0)
    }

    /// Records that `epoch` begins at `start` (idempotent).
    pub fn record(&mut self, epoch: u64, start: Lsn) -> Result<()> {
        if self
            .entries
            .iter()
            .any(|(e, s, _)| *e == epoch && *s == start)
        {
            return Ok(());
        }
        let text = line(epoch, start);
        let io = |e| EngineError::io(format!("append to {}", self.path.display()), e);
        self.file
            .write_all_at(text.as_bytes(), self.len)
            .map_err(io)?;
        self.file.sync().map_err(io)?;
        self.entries.push((epoch, start, self.len));
        self.len += text.len() as u64;
        Ok(())
    }

    /// Forgets every epoch that began at or after `at`.
    pub fn cut(&mut self, at: Lsn) -> Result<()> {
        let Some(i) = self.entries.iter().position(|(_, s, _)| *s >= at) else {
            return Ok(());
        };
        let offset = self.entries[i].2;
        let io = |e| EngineError::io(format!("cut {}", self.path.display()), e);
        self.file
            .set_len(offset)
            .and_then(|_| self.file.sync())
            .map_err(io)?;
        self.entries.truncate(i);
        self.len = offset;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::sim::SimFs;

    #[test]
    fn records_survive_reopen_and_a_torn_line_is_dropped() {
        let fs = SimFs::new();
        let path = PathBuf::from("/h/epochs");
        let mut h = History::open(&fs, path.clone()).unwrap();
        h.record(1, Lsn(0)).unwrap();
        h.record(2, Lsn(500)).unwrap();
        h.record(2, Lsn(500)).unwrap();
        h.record(3, Lsn(900)).unwrap();
        assert_eq!(History::open(&fs, path.clone()).unwrap().entries().len(), 3);
        // Tear the last line.
        let len = fs.file_bytes(&path).unwrap().len() as u64;
        fs.write_raw(&path, len - 3, b"zz\n").unwrap();
        let mut h = History::open(&fs, path.clone()).unwrap();
        assert_eq!(h.entries(), vec![(1, Lsn(0)), (2, Lsn(500))]);
        h.cut(Lsn(500)).unwrap();
        assert_eq!(h.last_epoch(), 1);
        h.record(4, Lsn(700)).unwrap();
        assert_eq!(
            History::open(&fs, path).unwrap().entries(),
            vec![(1, Lsn(0)), (4, Lsn(700))]
        );
    }
}
