//! The write image journal (WIJ): makes the write daemon's page flushes
//! atomic.
//!
//! The write daemon flushes dirty pages in *cycles*:
//!
//! 1. **Phase 1** ([`Wij::begin_cycle`]): write the page images into the
//!    WIJ slots of the new cycle, sync, then mark the WIJ `Active` for it.
//! 2. **Phase 2** (the caller): write the same pages into the database
//!    files and sync them.
//!
//! The next cycle's phase 1 starts from that `Active` header: a cycle
//! begins only after the previous one's phase 2, so naming cycle `c + 1`
//! active says that cycle `c` is done, and marking `c` clean needs no
//! synced step of its own. Its slots are in the other stripes (see
//! [`mod@format`]), so they stay intact until the header names `c + 1`.
//! [`Wij::end_cycle`] marks the WIJ `Clean` when nothing follows: at a
//! clean shutdown and after a restore.
//!
//! At startup an `Active` WIJ is restored: the caller writes
//! [`Wij::images`] back into the database files, syncs them and calls
//! [`Wij::end_cycle`] (restoring a cycle whose phase 2 had finished
//! rewrites the pages it already holds). A `Clean` WIJ is compared by the
//! caller with the pages it last wrote, and a mismatch is reported.
//!
//! The file layout and the byte encodings are in [`mod@format`]; how the two
//! header copies are reconciled at open is in [`recovery`].
//!
//! # Crash model
//!
//! The storage contract ([`crate::storage`]) lets a crash keep any subset of
//! the writes issued since a file's last sync and tear any of them at
//! 512-byte sectors. The sync points of one cycle `c`, and what a crash at
//! each leaves (`P` is the previous state: `Empty`, `Clean(c-1)` or
//! `Active(c-1)`, whose phase 2 is complete):
//!
//! | step                                   | a crash before it is durable leaves |
//! |----------------------------------------|-------------------------------------|
//! | 1. write slots of `c`, sync            | `P`; slots of `c` dropped, applied or torn |
//! | 2. write header copy A = `Active(c)`, sync | `P` or `Active(c)` (slots are durable) |
//! | 3. write header copy B = `Active(c)`, sync | `Active(c)` (copy A is durable)   |
//! | (caller: phase 2, database files synced)   | `Active(c)`                       |
//! | 4. only by `end_cycle`: copy A = `Clean(c)`, sync | `Active(c)` or `Clean(c)`  |
//! | 5. only by `end_cycle`: copy B = `Clean(c)`, sync | `Clean(c)`                 |
//!
//! So a reopened WIJ is in the state before or after the interrupted step,
//! never anything else, and a torn header copy never loses the state: the
//! copy not in flight still holds the old or the new header (see
//! [`recovery`], which also repairs the stale copy at open). Whatever the
//! state, the slots of the cycle it names are never written by the step in
//! flight: cycle `c`'s slots are in the stripes of `c`'s parity, and the
//! next cycle to use them, `c + 2`, starts only once the header names
//! `c + 1`. [`Wij::scan`] decides slot by slot:
//!
//! | header      | slot checksum | slot's cycle     | result                                  |
//! |-------------|---------------|------------------|-----------------------------------------|
//! | `Active(c)` | bad           | -                | `Corrupt` (its slots were synced first) |
//! | `Active(c)` | good          | `c`              | image                                   |
//! | `Active(c)` | good          | not `c`          | `Corrupt`                               |
//! | `Clean(c)`  | bad           | -                | skipped: damaged                        |
//! | `Clean(c)`  | good          | `c`              | image                                   |
//! | `Clean(c)`  | good          | not `c`          | `Corrupt` (no crash writes that)        |
//! | any         | good, but wrong magic or slot index | | `Corrupt`                        |
//! | any         | slot past the end of the file |  | `Corrupt`                               |
//!
//! No crash damages a slot of a `Clean` cycle, so a bad one is rot; it is
//! skipped (and reported), which is harmless since a `Clean` cycle's pages
//! are already durable in the database.
//!
//! A failed write or sync poisons the [`Wij`] (its durable state is then
//! unknown): every later call fails with [`WijError::Poisoned`] until the
//! process restarts and reopens the file.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::storage::{OpenMode, Vfs, VfsFile};

mod error;
pub mod format;
pub mod recovery;

pub use error::{WijError, WijPart};

use format::{
    Header, SlotHeader, SlotRead, HEADER_BLOCK, HEADER_COPIES, SLOTS_OFFSET, SLOT_SIZE,
    STRIPE_SLOTS,
};
use recovery::HeaderDecision;

/// The engine's page size in bytes; every image is one page.
pub const PAGE_SIZE: usize = 8192;

/// Slots written (or read) per system call: one stripe.
const SLOTS_PER_BATCH: usize = STRIPE_SLOTS as usize;

/// One database page as the write daemon flushes it.
#[derive(Clone, PartialEq, Eq)]
pub struct PageImage {
    /// The database file the page belongs to.
    pub file_id: u32,
    pub page_no: u64,
    /// Exactly [`PAGE_SIZE`] bytes, sealed (the page's stored checksum in
    /// its first 4 bytes, as `btree::page::seal` leaves it; the WIJ
    /// derives its slot checksum from it).
    pub data: Vec<u8>,
}

impl fmt::Debug for PageImage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PageImage")
            .field("file_id", &self.file_id)
            .field("page_no", &self.page_no)
            .field("len", &self.data.len())
            .field(
                "crc32c",
                &format_args!("{:#010x}", crc32c::crc32c(&self.data)),
            )
            .finish()
    }
}

/// What the WIJ header says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WijState {
    /// A new file: no cycle was ever marked active.
    Empty,
    /// Cycle `cycle` finished: its pages are durable in the database.
    Clean { cycle: u64 },
    /// Cycle `cycle`'s images are durable in the WIJ; the database may hold
    /// any mix of old and new pages, so the images must be restored.
    Active { cycle: u64 },
}

impl WijState {
    /// The cycle the header names; 0 when Empty.
    pub fn cycle(self) -> u64 {
        match self {
            WijState::Empty => 0,
            WijState::Clean { cycle } | WijState::Active { cycle } => cycle,
        }
    }
}

impl fmt::Display for WijState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WijState::Empty => write!(f, "empty"),
            WijState::Clean { cycle } => write!(f, "clean after cycle {cycle}"),
            WijState::Active { cycle } => write!(f, "active with cycle {cycle}"),
        }
    }
}

/// Why [`Wij::scan`] left a slot of a `Clean` WIJ out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SkipReason {
    /// The checksum fails: damaged since it was synced (no crash tears a
    /// slot of the cycle the header names).
    Damaged,
}

/// A slot of the header's cycle that [`Wij::scan`] left out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SkippedSlot {
    /// Position of the image in its cycle.
    pub index: u64,
    /// File offset of the slot.
    pub offset: u64,
    pub reason: SkipReason,
}

/// The images of the header's cycle, read and verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scan {
    pub state: WijState,
    /// Verified images, in the order `begin_cycle` got them.
    pub images: Vec<PageImage>,
    /// Slots left out (only ever for a `Clean` WIJ).
    pub skipped: Vec<SkippedSlot>,
}

/// An open write image journal.
pub struct Wij {
    file: Arc<dyn VfsFile>,
    path: PathBuf,
    /// The header both copies hold (or will once the current update ends).
    header: Header,
    /// Set by a failed write or sync; see [`WijError::Poisoned`].
    poisoned: bool,
}

impl fmt::Debug for Wij {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Wij")
            .field("path", &self.path)
            .field("header", &self.header)
            .field("poisoned", &self.poisoned)
            .finish()
    }
}

impl Wij {
    /// Opens the WIJ at `path`, creating it (and syncing its directory) if
    /// it is missing or its creation never completed. Reconciles the two
    /// header copies (see [`recovery`]), repairing a stale copy.
    pub fn open(vfs: Arc<dyn Vfs>, path: &Path) -> Result<Wij, WijError> {
        let io_err = |action: &str| {
            let context = format!("{action} WIJ {}", path.display());
            move |source| WijError::Io { context, source }
        };
        let file = vfs
            .open(path, OpenMode::CreateIfMissing)
            .map_err(io_err("open"))?;
        let len = file.len().map_err(io_err("read the length of"))?;
        // Missing bytes (a short file) read as zero: blank copies.
        let mut area = vec![0u8; SLOTS_OFFSET as usize];
        file.read_at(&mut area, 0)
            .map_err(io_err("read the header of"))?;
        let copies = [
            Header::decode(&area[..HEADER_BLOCK]),
            Header::decode(&area[HEADER_BLOCK..]),
        ];
        let empty = Header {
            state: WijState::Empty,
            image_count: 0,
            seq: 0,
        };
        let mut wij = Wij {
            file,
            path: path.to_path_buf(),
            header: empty,
            poisoned: false,
        };
        match recovery::decide(&copies, len) {
            HeaderDecision::Use { header, repair } => {
                wij.header = header;
                if let Some(copy) = repair {
                    tracing::warn!(
                        wij = %path.display(),
                        copy,
                        copies = ?copies,
                        "WIJ header copy at offset {} is stale or damaged; rewriting it",
                        HEADER_COPIES[copy]
                    );
                    wij.write_at(
                        &header.encode(),
                        HEADER_COPIES[copy],
                        "repair a header copy of",
                    )?;
                    wij.sync("repair a header copy of")?;
                }
            }
            HeaderDecision::Initialize => {
                if len > 0 {
                    tracing::warn!(wij = %path.display(), len, "WIJ creation never completed; making it anew");
                }
                let mut both = empty.encode();
                both.extend_from_slice(&empty.encode());
                wij.write_at(&both, 0, "initialize")?;
                wij.sync("initialize")?;
                let dir = match path.parent() {
                    Some(p) if !p.as_os_str().is_empty() => p,
                    _ => Path::new("."),
                };
                if let Err(source) = vfs.sync_dir(dir) {
                    let context = format!(
                        "sync directory {} of new WIJ {}",
                        dir.display(),
                        path.display()
                    );
                    return Err(WijError::Io { context, source });
                }
            }
            HeaderDecision::Corrupt(detail) => {
                return Err(WijError::Corrupt {
                    path: wij.path,
                    part: WijPart::Header,
                    offset: 0,
                    detail,
                })
            }
            HeaderDecision::Unsupported { copy, version } => {
                return Err(WijError::UnsupportedVersion {
                    path: wij.path,
                    offset: HEADER_COPIES[copy],
                    found: version,
                    supported: format::FORMAT_VERSION,
                })
            }
        }
        Ok(wij)
    }

    /// What the header says (as of the last successful update).
    pub fn state(&self) -> WijState {
        self.header.state
    }

    /// Images in the header's cycle (0 when Empty).
    pub fn image_count(&self) -> u64 {
        self.header.image_count
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Phase 1: writes `images` as cycle `last cycle + 1`, syncs, then
    /// marks the WIJ `Active` for that cycle (both header copies, a sync
    /// after each). Returns the new cycle number. If a cycle is `Active`,
    /// the caller must have finished its phase 2 (its pages are durable in
    /// the database files): the new header says it is done. Any failure
    /// poisons the WIJ.
    pub fn begin_cycle(&mut self, images: &[PageImage]) -> Result<u64, WijError> {
        let mut cycle = self.start_cycle()?;
        cycle.write(images)?;
        cycle.finish()
    }

    /// [`Wij::begin_cycle`] in parts, so a caller can encode a large
    /// cycle's images a batch at a time instead of all at once: the images
    /// of each [`CycleWriter::write`] follow those of the one before, and
    /// [`CycleWriter::finish`] syncs them and marks the WIJ `Active`.
    /// Dropped unfinished, the cycle never happened (the header still
    /// names the previous one, whose slots these writes do not touch).
    pub fn start_cycle(&mut self) -> Result<CycleWriter<'_>, WijError> {
        self.check_usable()?;
        let cycle = self.header.state.cycle() + 1;
        Ok(CycleWriter {
            wij: self,
            cycle,
            count: 0,
            heads: Vec::with_capacity(SLOTS_PER_BATCH),
        })
    }

    /// After phase 2, when no cycle follows (a clean shutdown, a restore):
    /// marks the WIJ `Clean` (both header copies, a sync after each).
    /// Refused unless a cycle is `Active`. Any failure poisons the WIJ.
    pub fn end_cycle(&mut self) -> Result<(), WijError> {
        self.check_usable()?;
        let WijState::Active { cycle } = self.header.state else {
            return Err(self.wrong_state("end a cycle"));
        };
        let clean = Header {
            state: WijState::Clean { cycle },
            image_count: self.header.image_count,
            seq: self.header.seq + 1,
        };
        self.write_header(clean)
    }

    /// The verified images of the header's cycle (`Active` or `Clean`;
    /// none when `Empty`), in the order `begin_cycle` got them. For an
    /// `Active` WIJ every image must verify, else [`WijError::Corrupt`]
    /// names the image and its offset; for a `Clean` one, slots a later,
    /// damaged slots are left out (see [`Wij::scan`]).
    pub fn images(&self) -> Result<Vec<PageImage>, WijError> {
        Ok(self.scan()?.images)
    }

    /// Like [`Wij::images`], and says which slots were left out and why.
    pub fn scan(&self) -> Result<Scan, WijError> {
        self.check_usable()?;
        let header = self.header;
        let mut scan = Scan {
            state: header.state,
            images: Vec::new(),
            skipped: Vec::new(),
        };
        let cycle = match header.state {
            WijState::Empty => return Ok(scan),
            WijState::Clean { cycle } | WijState::Active { cycle } => cycle,
        };
        let active = matches!(header.state, WijState::Active { .. });
        let count = header.image_count;
        let len = self.file.len().map_err(|source| WijError::Io {
            context: format!("read the length of WIJ {}", self.path.display()),
            source,
        })?;
        if len < header.total_len() {
            // The first slot that does not fit (the search ends: the last
            // one does not).
            let index = (0..count)
                .find(|&i| format::slot_offset(cycle, i) + SLOT_SIZE as u64 > len)
                .unwrap_or(0);
            return Err(self.corrupt(
                WijPart::Image(index),
                format::slot_offset(cycle, index),
                format!(
                    "the file ends at {len}, before the end of the cycle's slots at {}",
                    header.total_len()
                ),
            ));
        }
        let mut batch = vec![0u8; SLOTS_PER_BATCH.min(count as usize) * SLOT_SIZE];
        let mut first = 0u64;
        while first < count {
            let n = (count - first).min(SLOTS_PER_BATCH as u64) as usize;
            let buf = &mut batch[..n * SLOT_SIZE];
            let offset = format::slot_offset(cycle, first);
            self.file
                .read_exact_at(buf, offset)
                .map_err(|source| WijError::Io {
                    context: format!(
                        "read images {first}.. of cycle {cycle} at offset {offset} of WIJ {}",
                        self.path.display()
                    ),
                    source,
                })?;
            for (i, slot) in buf.chunks_exact(SLOT_SIZE).enumerate() {
                let index = first + i as u64;
                let offset = format::slot_offset(cycle, index);
                let skip = |reason| SkippedSlot {
                    index,
                    offset,
                    reason,
                };
                match SlotHeader::decode(slot) {
                    SlotRead::BadChecksum if active => {
                        return Err(self.corrupt(
                            WijPart::Image(index),
                            offset,
                            "checksum mismatch".into(),
                        ))
                    }
                    SlotRead::BadChecksum => scan.skipped.push(skip(SkipReason::Damaged)),
                    SlotRead::BadMagic => {
                        return Err(self.corrupt(
                            WijPart::Image(index),
                            offset,
                            "not a slot (bad magic)".into(),
                        ))
                    }
                    SlotRead::Valid(head) if u64::from(head.index) != index => {
                        let detail = format!("slot says it holds image {}", head.index);
                        return Err(self.corrupt(WijPart::Image(index), offset, detail));
                    }
                    SlotRead::Valid(head) if head.cycle == cycle => {
                        scan.images.push(head.image(slot))
                    }
                    SlotRead::Valid(head) => {
                        let detail = format!(
                            "slot is from cycle {}, the header's cycle is {cycle}",
                            head.cycle
                        );
                        return Err(self.corrupt(WijPart::Image(index), offset, detail));
                    }
                }
            }
            first += n as u64;
        }
        Ok(scan)
    }

    fn check_usable(&self) -> Result<(), WijError> {
        if self.poisoned {
            Err(WijError::Poisoned {
                path: self.path.clone(),
            })
        } else {
            Ok(())
        }
    }

    fn wrong_state(&self, op: &'static str) -> WijError {
        WijError::WrongState {
            path: self.path.clone(),
            op,
            state: self.header.state,
        }
    }

    fn corrupt(&self, part: WijPart, offset: u64, detail: String) -> WijError {
        WijError::Corrupt {
            path: self.path.clone(),
            part,
            offset,
            detail,
        }
    }

    /// Writes both header copies in order, syncing after each, then adopts
    /// `header`.
    fn write_header(&mut self, header: Header) -> Result<(), WijError> {
        let block = header.encode();
        for offset in HEADER_COPIES {
            let what = format!("write header ({}) at offset {offset} of", header.state);
            self.write_at(&block, offset, &what)?;
            self.sync(&format!(
                "sync header ({}) at offset {offset} of",
                header.state
            ))?;
        }
        self.header = header;
        Ok(())
    }

    /// A write that poisons the WIJ if it fails.
    fn write_at(&mut self, buf: &[u8], offset: u64, what: &str) -> Result<(), WijError> {
        self.file
            .write_all_at(buf, offset)
            .map_err(|source| self.poison(what, Some(offset), source))
    }

    /// A sync that poisons the WIJ if it fails.
    fn sync(&mut self, what: &str) -> Result<(), WijError> {
        self.file
            .sync()
            .map_err(|source| self.poison(what, None, source))
    }

    fn poison(&mut self, what: &str, offset: Option<u64>, source: io::Error) -> WijError {
        self.poisoned = true;
        let at = offset.map(|o| format!(" (offset {o})")).unwrap_or_default();
        let context = format!(
            "{what} WIJ {}{at}; the WIJ is now poisoned",
            self.path.display()
        );
        WijError::Io { context, source }
    }
}

/// One cycle's phase 1 in progress (see [`Wij::start_cycle`]).
pub struct CycleWriter<'w> {
    wij: &'w mut Wij,
    cycle: u64,
    /// Images written so far.
    count: usize,
    heads: Vec<[u8; format::SLOT_HEADER_LEN]>,
}

impl CycleWriter<'_> {
    /// Writes `images` after those already written, not synced.
    pub fn write(&mut self, images: &[PageImage]) -> Result<(), WijError> {
        let wij = &mut *self.wij;
        if let Some((i, image)) = images
            .iter()
            .enumerate()
            .find(|(_, i)| i.data.len() != PAGE_SIZE)
        {
            return Err(WijError::BadImageSize {
                path: wij.path.clone(),
                index: self.count + i,
                len: image.data.len(),
            });
        }
        let total = self.count + images.len();
        if u32::try_from(total).is_err() {
            return Err(WijError::TooManyImages {
                path: wij.path.clone(),
                count: total,
            });
        }
        let cycle = self.cycle;
        // Each slot's header, then the image itself, straight from its
        // buffer (no copy of the 8 KiB into a batch). One write per
        // stripe: slots are contiguous only within one.
        let mut rest = images;
        let mut first = self.count;
        while !rest.is_empty() {
            let n = rest.len().min(SLOTS_PER_BATCH - first % SLOTS_PER_BATCH);
            let (chunk, later) = rest.split_at(n);
            rest = later;
            self.heads.clear();
            self.heads
                .extend(chunk.iter().enumerate().map(|(i, image)| {
                    SlotHeader {
                        // Cannot truncate: the total fits in u32 (checked above).
                        index: (first + i) as u32,
                        cycle,
                        file_id: image.file_id,
                        page_no: image.page_no,
                    }
                    .sealed_head(&image.data)
                }));
            let parts: Vec<&[u8]> = self
                .heads
                .iter()
                .zip(chunk)
                .flat_map(|(head, image)| [&head[..], &image.data[..]])
                .collect();
            let what = format!("write images {first}.. of cycle {cycle} to");
            let offset = format::slot_offset(cycle, first as u64);
            wij.file
                .write_all_vectored_at(&parts, offset)
                .map_err(|source| wij.poison(&what, Some(offset), source))?;
            first += n;
        }
        self.count = total;
        Ok(())
    }

    /// Syncs the images written, then marks the WIJ `Active` for this
    /// cycle. Returns the cycle number.
    pub fn finish(self) -> Result<u64, WijError> {
        let cycle = self.cycle;
        let wij = self.wij;
        wij.sync(&format!("sync images of cycle {cycle} in"))?;
        let active = Header {
            state: WijState::Active { cycle },
            image_count: self.count as u64,
            seq: wij.header.seq + 1,
        };
        wij.write_header(active)?;
        Ok(cycle)
    }
}

#[cfg(test)]
mod tests;
