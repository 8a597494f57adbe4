//! Seeding a member that has nothing: the receiver connects to the
//! primary, handshakes and sends `SeedRequest` (no payload); the primary
//! answers [`SeedStart`], then every database's pages as [`SeedPages`] in
//! page order, then the journal part as `Journal` chunks
//! ([`super::JournalChunk`]), then [`SeedDone`]. The receiver then opens
//! the copy and streams from `journal_end` like any follower.

use super::codec::{Dec, Enc, Fields};
use super::WireError;

/// Primary → receiver: what the seed holds.
///
/// ```text
///   journal_start u64 | prev_crc u32 | journal_end u64
///   | epochs: count u32 | count × (epoch u64 | start u64)
///   | databases: count u32 | count × (file_id u32 | name string | pages u64)
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeedStart {
    pub journal_start: u64,
    pub prev_crc: u32,
    pub journal_end: u64,
    pub epochs: Vec<(u64, u64)>,
    pub databases: Vec<SeedDatabase>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeedDatabase {
    pub file_id: u32,
    pub name: String,
    pub pages: u64,
}

impl Fields for SeedStart {
    fn put(&self, e: &mut Enc) {
        e.u64(self.journal_start)
            .u32(self.prev_crc)
            .u64(self.journal_end);
        e.count(self.epochs.len());
        for (epoch, start) in &self.epochs {
            e.u64(*epoch).u64(*start);
        }
        e.count(self.databases.len());
        for d in &self.databases {
            e.u32(d.file_id).str(&d.name).u64(d.pages);
        }
    }

    fn get(d: &mut Dec<'_>) -> Result<Self, WireError> {
        let journal_start = d.u64("journal_start")?;
        let prev_crc = d.u32("prev_crc")?;
        let journal_end = d.u64("journal_end")?;
        let n = d.count("epochs", 16)?;
        let mut epochs = Vec::with_capacity(n as usize);
        for _ in 0..n {
            epochs.push((d.u64("epoch")?, d.u64("start")?));
        }
        let n = d.count("databases", 16)?;
        let mut databases = Vec::with_capacity(n as usize);
        for _ in 0..n {
            databases.push(SeedDatabase {
                file_id: d.u32("file_id")?,
                name: d.string("name")?,
                pages: d.u64("pages")?,
            });
        }
        Ok(SeedStart {
            journal_start,
            prev_crc,
            journal_end,
            epochs,
            databases,
        })
    }
}

/// Primary → receiver: consecutive pages of one database file.
///
/// ```text
///   file_id u32 | first u64 | bytes bytes (whole 8 KiB pages)
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeedPages {
    pub file_id: u32,
    pub first: u64,
    pub bytes: Vec<u8>,
}

impl Fields for SeedPages {
    fn put(&self, e: &mut Enc) {
        e.u32(self.file_id).u64(self.first).bytes(&self.bytes);
    }

    fn get(d: &mut Dec<'_>) -> Result<Self, WireError> {
        Ok(SeedPages {
            file_id: d.u32("file_id")?,
            first: d.u64("first")?,
            bytes: d.bytes("bytes")?.to_vec(),
        })
    }
}

/// Primary → receiver: everything was sent.
///
/// ```text
///   pages u64 | journal_bytes u64
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeedDone {
    pub pages: u64,
    pub journal_bytes: u64,
}

impl Fields for SeedDone {
    fn put(&self, e: &mut Enc) {
        e.u64(self.pages).u64(self.journal_bytes);
    }

    fn get(d: &mut Dec<'_>) -> Result<Self, WireError> {
        Ok(SeedDone {
            pages: d.u64("pages")?,
            journal_bytes: d.u64("journal_bytes")?,
        })
    }
}
