//! The journal writer: cheap buffered appends, group commit, segment rolling,
//! poisoning.
//!
//! # Concurrency
//!
//! - `pending` (short lock): appenders frame their record into it; a flush
//!   leader swaps it out. Appenders never wait for I/O.
//! - `leader` + `flushed` (condvar): at most one thread flushes at a time.
//!   A committer in [`Journal::wait_durable`] that finds no flush running
//!   and its position still not durable (checked again under the `leader`
//!   lock: a flush may have ended since its first look) becomes the leader:
//!   it takes the pending bytes (up to `max_batch_bytes`, cut at a record
//!   boundary), does ONE write and ONE sync, publishes the new durable
//!   position and wakes the committers it covered, and one more to lead
//!   the next batch (see [`LeaderGuard`]). A committer that finds a flush
//!   running parks until then, and checks again.
//! - [`Journal::write_ahead`] also takes the leader role, when it is free:
//!   it writes pending records to the segment file without a sync, and asks
//!   the OS to start sending them to the disk, so the commit that follows
//!   finds them written (and mostly on the disk) and syncs at once. The
//!   bytes written and not synced (`written - durable`) never exceed
//!   `max_batch_bytes`: recovery's torn-tail rule relies on it.
//! - Every sync makes new bytes durable: a flush syncs only if it wrote
//!   bytes or found bytes written ahead (nothing pending, no sync), and a
//!   committer whose position is already durable never leads. Besides
//!   batches, only the creation of a segment (its header, at a roll) and a
//!   truncate sync, so without truncates `syncs = batches + new segments`
//!   after open, and `batches <= commits` (plus, with writes ahead, one
//!   per segment a write ahead rolls past: it syncs the old one first).
//! - `active` (held only by the leader): the segment being written.
//! - `segments` (read-mostly): the index readers use to find files.
//! - [`Journal::truncate`] (in `writer_raw.rs`) takes the leader role, then
//!   `active`, then `pending` (the same order as a flush), so it runs
//!   between batches and no append interleaves with it.
//! - [`Journal::wait_durable_beyond`] waits on `flushed` like a committer.
//!
//! Invariants:
//! - `durable <= end`; both are record boundaries.
//! - Every byte below `durable` is written and synced in a segment file.
//! - Bytes in `[durable, written)` are in the segment file, not synced;
//!   `written - durable <= max_batch_bytes`. Bytes in `[written,
//!   pending.start)` are being written by the leader; bytes in
//!   `[pending.start, end)` are only in memory.

use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use parking_lot::{Condvar, Mutex, RwLock};
use tracing::{error, info};

use super::error::JournalError;
use super::frame::{FrameHeader, PayloadSum};
use super::reader::JournalReader;
use super::record::{ChangeRef, Record, RecordKind};
use super::recovery::{self, OpenReport};
use super::replicate::Boundaries;
use super::reserve::{self, Reserver};
use super::segment::{create_segment, display_name, SegmentHeader};
use crate::storage::{Vfs, VfsFile};
use crate::Lsn;

/// Tuning of a journal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JournalOptions {
    /// A segment is closed and a new one started once it holds at least this
    /// many bytes (checked before each batch; records never span segments,
    /// so a segment may end up to one batch larger). Default 64 MiB.
    pub segment_bytes: u64,
    /// Most bytes one group-commit write carries (a single larger record is
    /// written alone). Recovery relies on it: damage followed by valid
    /// records reaching farther than this is corruption, not a torn write.
    /// Must be the same value the journal was written with. Default 4 MiB.
    pub max_batch_bytes: u64,
    /// Zero-fill ahead of the records on a thread of the journal's own
    /// (`reserve.rs`) instead of in the committing flush. Default on;
    /// tests that count syncs to cut a simulated disk turn it off, since
    /// the thread's syncs would fall at varying places.
    pub zero_fill_thread: bool,
    /// [`Journal::write_ahead`] writes appended records to the segment
    /// file (unsynced) once at least this many wait in memory; 0 turns it
    /// off. Default 64 KiB.
    pub write_ahead_bytes: u64,
}

impl Default for JournalOptions {
    fn default() -> Self {
        JournalOptions {
            segment_bytes: 64 * 1024 * 1024,
            max_batch_bytes: 4 * 1024 * 1024,
            zero_fill_thread: true,
            write_ahead_bytes: 64 * 1024,
        }
    }
}

impl JournalOptions {
    pub(super) fn validate(&self) -> Result<(), JournalError> {
        if self.segment_bytes == 0 {
            return Err(JournalError::InvalidOptions(
                "segment_bytes must be at least 1".into(),
            ));
        }
        if self.max_batch_bytes < FrameHeader::LEN as u64 {
            return Err(JournalError::InvalidOptions(format!(
                "max_batch_bytes must be at least {} (one record header)",
                FrameHeader::LEN
            )));
        }
        Ok(())
    }
}

/// One segment file, as readers see it.
pub(crate) struct SegmentEntry {
    pub start: Lsn,
    pub name: String,
    pub file: Arc<dyn VfsFile>,
}

/// Appended records not yet taken by a flush.
pub(super) struct Pending {
    pub(super) buf: Vec<u8>,
    /// Bytes at the front of `buf` already taken by a flush.
    pub(super) taken: usize,
    /// Position of `buf[taken]`.
    pub(super) start: Lsn,
    /// Stored crc of the last appended record (the chain value).
    pub(super) last_crc: u32,
}

impl Pending {
    pub(super) fn end(&self) -> Lsn {
        self.start.offset((self.buf.len() - self.taken) as u64)
    }
}

/// How committers wake the background flusher: it sets `idle` before it
/// looks for requests and sleeps; a committer that sees `idle` after
/// counting its request takes the lock (so the flusher is asleep or has
/// not looked yet) and notifies. The fences make the two "store, then load"
/// sequences see each other (at least one of them sees the other's store).
#[derive(Default)]
struct FlusherSignal {
    /// The flusher thread runs (false before it starts and once it ends).
    running: std::sync::atomic::AtomicBool,
    idle: std::sync::atomic::AtomicBool,
    /// `true` once the flusher must stop.
    stop: Mutex<bool>,
    wake: Condvar,
}

impl FlusherSignal {
    fn requested(&self) {
        std::sync::atomic::fence(Ordering::SeqCst);
        if self.idle.load(Ordering::SeqCst) {
            let _g = self.stop.lock();
            self.wake.notify_one();
        }
    }
}

/// How sessions wake the write-ahead thread ([`Journal::start_write_ahead`]):
/// `asked` is set by the first request since the thread last looked, which
/// alone takes the lock and notifies.
#[derive(Default)]
struct WriteAheadSignal {
    asked: std::sync::atomic::AtomicBool,
    /// The highest position a [`Journal::request_sync`] asked to be made
    /// durable (set before `asked`, read after clearing it).
    sync_to: AtomicU64,
    /// `true` once the thread must stop.
    stop: Mutex<bool>,
    wake: Condvar,
}

/// Stops the write-ahead thread when dropped.
pub struct WriteAheadHandle {
    inner: Arc<Inner>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for WriteAheadHandle {
    fn drop(&mut self) {
        *self.inner.write_ahead.stop.lock() = true;
        self.inner.write_ahead.wake.notify_one();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Stops the background flusher when dropped (after a last flush).
pub struct FlusherHandle {
    inner: Arc<Inner>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for FlusherHandle {
    fn drop(&mut self) {
        *self.inner.flusher.stop.lock() = true;
        self.inner.flusher.wake.notify_one();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// How far ahead of its records the last segment is zero-filled. A sync
/// after a write that makes a file longer must also record the new size
/// (on ext4 a metadata journal commit: measured 2.5x the time of a
/// data-only sync of a small write on this project's machines), so batches
/// write into space zeroed ahead, one such size change per this many
/// bytes (at most `segment_bytes`), as PostgreSQL zero-fills WAL files.
/// Recovery reads a zero run to the end of the last segment as its clean
/// end (`recovery.rs`, `Spot::Zeros`).
///
/// With `zero_fill_thread` (the default) a thread keeps several megabytes
/// zeroed ahead (`reserve.rs`), so a flush zero-fills this much itself only
/// when it finds nothing zeroed (the first batches of a new segment).
pub const RESERVE_BYTES: u64 = 4 << 20;

/// The segment being written; touched only by the flush leader.
pub(super) struct Active {
    pub(super) start: Lsn,
    pub(super) name: String,
    pub(super) file: Arc<dyn VfsFile>,
    /// Bytes of header and records in the file.
    pub(super) len: u64,
    /// Length of the file: from `len` to here only zeros, written ahead so
    /// that a batch's sync does not also have to record a larger file
    /// (see [`RESERVE_BYTES`]).
    pub(super) reserved: u64,
    /// Stored crc of the last record written (seed of the next segment).
    pub(super) last_crc: u32,
    /// Recycled batch buffer.
    spare: Vec<u8>,
}

pub(crate) struct Inner {
    pub(super) vfs: Arc<dyn Vfs>,
    pub(super) dir: PathBuf,
    opts: JournalOptions,
    pub(super) pending: Mutex<Pending>,
    /// End of appended records (mirrors `pending.end()`).
    pub(super) end: AtomicU64,
    /// Every byte below is durable.
    pub(super) durable: AtomicU64,
    /// Every byte below is written to its segment file (readable there),
    /// perhaps not yet synced: `durable <= written <= end`. A primary
    /// streams up to here, so its backup's sync runs alongside its own.
    pub(super) written: AtomicU64,
    /// `written` moved: streams wait here (apart from the leader's lock,
    /// which a leader's own caller may hold).
    pub(super) written_lock: Mutex<()>,
    pub(super) written_changed: Condvar,
    pub(super) syncs: AtomicU64,
    /// Batches written and synced (flushes that wrote bytes).
    batches: AtomicU64,
    /// Writes ahead of a commit ([`Journal::write_ahead`]) that wrote bytes.
    writes_ahead: AtomicU64,
    poison: OnceLock<String>,
    /// True while a flush leader runs (or a truncate, which excludes flushes).
    pub(super) leader: Mutex<bool>,
    /// The background flusher (see [`Journal::start_flusher`]), if any.
    flusher: FlusherSignal,
    /// The write-ahead thread (see [`Journal::start_write_ahead`]), if any.
    write_ahead: WriteAheadSignal,
    /// Flushes asked of the background flusher ([`Journal::request_flush`]).
    requested: AtomicU64,
    /// Committers waiting for a running flush, parked: `(position, thread)`.
    /// Taken after `leader`. See [`LeaderGuard`] for who wakes whom.
    committers: Mutex<Vec<(Lsn, std::thread::Thread)>>,
    /// Notified after every flush: committers and
    /// [`Journal::wait_durable_beyond`] wait on it.
    pub(super) flushed: Condvar,
    pub(super) active: Mutex<Active>,
    pub(crate) segments: RwLock<Vec<SegmentEntry>>,
    /// Record boundaries already validated, for cheap raw reads.
    pub(super) boundaries: Boundaries,
    /// The zero-filling thread, if `zero_fill_thread` (see `reserve.rs`).
    pub(super) reserver: ReserveThread,
}

impl Inner {
    pub(crate) fn durable_lsn(&self) -> Lsn {
        Lsn(self.durable.load(Ordering::Acquire))
    }

    pub(crate) fn written_lsn(&self) -> Lsn {
        Lsn(self.written.load(Ordering::Acquire))
    }

    pub(super) fn check_poison(&self) -> Result<(), JournalError> {
        match self.poison.get() {
            Some(cause) => Err(JournalError::Poisoned {
                cause: cause.clone(),
            }),
            None => Ok(()),
        }
    }

    /// Records the first failure for good and returns the error to give out.
    pub(super) fn poison(&self, cause: String) -> JournalError {
        if self.poison.set(cause.clone()).is_ok() {
            error!(dir = %self.dir.display(), %cause, "journal poisoned");
        }
        JournalError::Poisoned {
            cause: self.poison.get().cloned().unwrap_or(cause),
        }
    }

    /// Bytes that may still be written before a sync: recovery takes
    /// damage followed by valid records reaching farther than
    /// `max_batch_bytes` for corruption, so no more than that is ever
    /// written and not synced.
    fn unsynced_room(&self) -> u64 {
        // `durable` first: `written` only grows past it.
        let durable = self.durable.load(Ordering::Acquire);
        let unsynced = self.written.load(Ordering::Acquire).saturating_sub(durable);
        self.opts.max_batch_bytes.saturating_sub(unsynced)
    }

    /// Moves up to `max` bytes of pending records (whole records) into the
    /// empty `out`: at least one record if `one_at_least` (a record longer
    /// than `max` then goes alone), else none if the first is too long.
    /// Returns the batch's position and the stored crc of its last record.
    fn take_batch(&self, out: &mut Vec<u8>, max: u64, one_at_least: bool) -> Option<(Lsn, u32)> {
        let mut p = self.pending.lock();
        let avail = &p.buf[p.taken..];
        if avail.is_empty() {
            return None;
        }
        let start = p.start;
        if p.taken == 0 && avail.len() as u64 <= max {
            std::mem::swap(&mut p.buf, out);
            p.start = start.offset(out.len() as u64);
            return Some((start, p.last_crc));
        }
        let mut cut = 0usize;
        let mut crc = 0u32;
        while cut < avail.len() {
            let mut hb = [0u8; FrameHeader::LEN];
            hb.copy_from_slice(&avail[cut..cut + FrameHeader::LEN]);
            let h = FrameHeader::from_bytes(&hb);
            let next = cut + h.frame_len() as usize;
            if (cut > 0 || !one_at_least) && next as u64 > max {
                break;
            }
            cut = next;
            crc = h.crc;
        }
        if cut == 0 {
            return None;
        }
        out.extend_from_slice(&avail[..cut]);
        p.taken += cut;
        p.start = start.offset(cut as u64);
        if p.taken == p.buf.len() {
            p.buf.clear();
            p.taken = 0;
        }
        Some((start, crc))
    }

    /// One batch: take, write, sync, publish. Leader only. With nothing
    /// pending and nothing written ahead it does nothing (and does not
    /// sync). The batch is cut so that it and the bytes written ahead stay
    /// within `max_batch_bytes`; if the next record does not fit beside
    /// them, this flush only syncs them, and the next one takes it.
    pub(super) fn flush_batch(&self, active: &mut Active) -> Result<(), JournalError> {
        // A leader that failed left `pending` and `active` out of step: no
        // later leader may write.
        self.check_poison()?;
        let room = self.unsynced_room();
        let nothing_unsynced = room == self.opts.max_batch_bytes;
        self.write_pending(active, room, nothing_unsynced)?;
        if self.written_lsn() > self.durable_lsn() {
            self.sync_written(active)?;
        }
        Ok(())
    }

    /// Writes up to `max` bytes of pending records (see
    /// [`Inner::take_batch`] for `one_at_least`) to the segment file, not
    /// synced. Leader only. Returns the bytes written.
    fn write_pending(
        &self,
        active: &mut Active,
        max: u64,
        one_at_least: bool,
    ) -> Result<u64, JournalError> {
        let mut batch = std::mem::take(&mut active.spare);
        batch.clear();
        let result = match self.take_batch(&mut batch, max, one_at_least) {
            Some((start, last_crc)) => self
                .write_batch(active, start, &batch, last_crc)
                .map(|()| batch.len() as u64),
            None => Ok(0),
        };
        batch.clear();
        if batch.capacity() as u64 > 2 * self.opts.max_batch_bytes.max(1 << 20) {
            batch = Vec::new();
        }
        active.spare = batch;
        result
    }

    /// Writes one batch of whole records at the end of the segment's
    /// records (rolling to a new segment first if it is full), not synced,
    /// and publishes it as written.
    fn write_batch(
        &self,
        active: &mut Active,
        start: Lsn,
        batch: &[u8],
        last_crc: u32,
    ) -> Result<(), JournalError> {
        debug_assert!(!batch.is_empty(), "an empty batch is never written");
        if active.len >= self.opts.segment_bytes && active.len > SegmentHeader::LEN {
            // A segment is synced for the last time before the next exists.
            if self.written_lsn() > self.durable_lsn() {
                self.sync_written(active)?;
            }
            self.roll(active, start)?;
        }
        let at = active.start.offset(active.len - SegmentHeader::LEN);
        if at != start {
            return Err(self.poison(format!(
                "internal error: batch at lsn {start}, but journal segment {} ends at lsn {at}",
                active.name
            )));
        }
        if let Some((r, _)) = &self.reserver {
            // Also waits while the thread zeroes where this batch goes.
            active.reserved = r.collect(active.reserved, active.len + batch.len() as u64);
        }
        if let Err(e) = active.file.write_all_at(batch, active.len) {
            return Err(self.poison(format!(
                "write of {} bytes at lsn {start} to journal segment {} failed: {e}",
                batch.len(),
                active.name
            )));
        }
        let batch_end = active.len + batch.len() as u64;
        if batch_end > active.reserved {
            // Zeros ahead, synced with this batch: the next batches then
            // overwrite allocated space and their syncs are data only.
            let ahead = RESERVE_BYTES.min(self.opts.segment_bytes);
            if let Err(e) = active
                .file
                .write_all_at(&vec![0u8; ahead as usize], batch_end)
            {
                return Err(self.poison(format!(
                    "reserving {ahead} bytes in journal segment {} failed: {e}",
                    active.name
                )));
            }
            active.reserved = batch_end + ahead;
        }
        active.len = batch_end;
        active.last_crc = last_crc;
        // Readable now: let streams send it while we sync.
        self.written
            .store(start.0 + batch.len() as u64, Ordering::Release);
        drop(self.written_lock.lock());
        self.written_changed.notify_all();
        Ok(())
    }

    /// Syncs the segment and publishes everything written as durable.
    /// Leader only; something must be written and not synced.
    fn sync_written(&self, active: &mut Active) -> Result<(), JournalError> {
        let upto = self.written_lsn();
        if let Err(e) = active.file.sync() {
            return Err(self.poison(format!(
                "sync of journal segment {} failed: {e}",
                active.name
            )));
        }
        self.syncs.fetch_add(1, Ordering::Relaxed);
        if let Some(why) = self.reserver.as_ref().and_then(|(r, _)| r.failure()) {
            // Its failed sync may have dropped pages of this batch.
            return Err(self.poison(why));
        }
        self.batches.fetch_add(1, Ordering::Relaxed);
        self.durable.store(upto.0, Ordering::Release);
        if let Some((r, _)) = &self.reserver {
            active.reserved = r.collect(active.reserved, 0);
            if active.reserved < active.len + reserve::AHEAD {
                r.request(
                    &self.dir.join(&active.name),
                    active.reserved.max(active.len),
                );
            }
        }
        Ok(())
    }

    /// Starts a new segment at `start`. The old one was synced by its last
    /// batch (or at open), so it is complete for good before the new file
    /// exists.
    fn roll(&self, active: &mut Active, start: Lsn) -> Result<(), JournalError> {
        self.settle_reserve(active);
        // Only the last segment may end in reserved zeros: cut them first.
        // The file's own length decides, not `reserved`: the zero-filling
        // thread may have written zeros it never got to report.
        let file_len = active.file.len().map_err(|e| {
            self.poison(format!(
                "size of journal segment {} unknown: {e}",
                active.name
            ))
        })?;
        if file_len > active.len {
            active
                .file
                .set_len(active.len)
                .and_then(|()| active.file.sync())
                .map_err(|e| {
                    self.poison(format!(
                        "cutting the reserved end of journal segment {} failed: {e}",
                        active.name
                    ))
                })?;
            self.syncs.fetch_add(1, Ordering::Relaxed);
            active.reserved = active.len;
        }
        let header = SegmentHeader {
            start,
            prev_crc: active.last_crc,
        };
        let (path, file) = create_segment(&*self.vfs, &self.dir, header).map_err(|e| {
            self.poison(format!("create journal segment at lsn {start} failed: {e}"))
        })?;
        self.syncs.fetch_add(1, Ordering::Relaxed);
        self.vfs.sync_dir(&self.dir).map_err(|e| {
            self.poison(format!(
                "sync of journal folder {} failed: {e}",
                self.dir.display()
            ))
        })?;
        let name = display_name(&path);
        self.segments.write().push(SegmentEntry {
            start,
            name: name.clone(),
            file: file.clone(),
        });
        tracing::debug!(segment = %name, "journal segment started");
        active.start = start;
        active.name = name;
        active.file = file;
        active.len = SegmentHeader::LEN;
        active.reserved = SegmentHeader::LEN;
        Ok(())
    }
}

/// The zero-filling thread and its handle (see `reserve.rs`).
type ReserveThread = Option<(Arc<Reserver>, Mutex<Option<std::thread::JoinHandle<()>>>)>;

/// Before the last segment changes: takes in what the zero-filling thread
/// did and lets it forget the segment.
fn settle_reserve(reserver: &ReserveThread, active: &mut Active) {
    if let Some((r, _)) = reserver {
        active.reserved = r.collect(active.reserved, 0);
        r.new_generation();
    }
}

impl Inner {
    pub(super) fn settle_reserve(&self, active: &mut Active) {
        settle_reserve(&self.reserver, active);
    }
}

impl Drop for Inner {
    /// A journal closed in good order gives its reserved zeros back, so
    /// its last segment ends at its last record, like every other.
    fn drop(&mut self) {
        if let Some((r, thread)) = &self.reserver {
            settle_reserve(&self.reserver, self.active.get_mut());
            r.stop();
            if let Some(t) = thread.lock().take() {
                let _ = t.join();
            }
        }
        if self.poison.get().is_some() {
            return;
        }
        let active = self.active.get_mut();
        // Zeros still at the end of our records: nobody (a newer instance
        // on the same folder) has written there since.
        let mut head = [0u8; FrameHeader::LEN];
        let untouched = active
            .file
            .read_exact_at(&mut head, active.len)
            .is_ok_and(|()| head.iter().all(|b| *b == 0));
        if active.reserved > active.len && untouched {
            let trimmed = active
                .file
                .set_len(active.len)
                .and_then(|()| active.file.sync());
            if let Err(e) = trimmed {
                tracing::warn!(segment = %active.name, error = %e, "could not trim the reserved end of the journal (harmless)");
            }
        }
    }
}

/// Clears the leader flag and wakes waiters, even if the flush panicked.
///
/// Parked committers are woken selectively, so a flush does not wake the
/// committers it did not cover only to have all but one of them wait
/// again: those now durable return, and ONE of the rest (if any) is
/// woken to lead the next flush; it leaves the list when woken, and
/// whoever leads next does the same when it ends, so every parked
/// committer is covered or designated eventually. On poison everyone is
/// woken (they return the error). Timed waiters and truncates wait on
/// `flushed` and are all notified.
pub(super) struct LeaderGuard<'a>(pub(super) &'a Inner);

impl Drop for LeaderGuard<'_> {
    fn drop(&mut self) {
        let inner = self.0;
        let mut leading = inner.leader.lock();
        *leading = false;
        let durable = inner.durable_lsn();
        let all = inner.poison.get().is_some();
        let mut waiting = inner.committers.lock();
        waiting.retain(|(upto, t)| {
            let done = all || *upto <= durable;
            if done {
                t.unpark();
            }
            !done
        });
        if let Some(i) = (0..waiting.len()).min_by_key(|&i| waiting[i].0) {
            waiting.swap_remove(i).1.unpark();
        }
        drop(waiting);
        drop(leading);
        inner.flushed.notify_all();
    }
}

// Encoding scratch, one per thread, so payloads are encoded and
// checksummed outside the `pending` lock without allocating.
thread_local! {
    static SCRATCH: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// Scratch buffers above this size are released after use.
const SCRATCH_KEEP: usize = 1 << 20;

/// The journal of one member: segment files in one folder, appended by many
/// threads through `&self`, made durable by group commit.
///
/// - Appends only buffer in memory; nothing bounds the buffer but the
///   callers' own commits ([`Journal::wait_durable`], [`Journal::flush`]).
/// - Dropping the journal discards what is not durable yet.
/// - A failed write or sync poisons it for good: the failed batch may or may
///   not be on disk, so no later batch may be written after it, and an fsync
///   is never retried. Reopen (recovery decides what survived).
pub struct Journal {
    pub(super) inner: Arc<Inner>,
}

impl std::fmt::Debug for Journal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Journal")
            .field("dir", &self.inner.dir)
            .field("end", &self.end_lsn())
            .field("durable", &self.durable_lsn())
            .field("poisoned", &self.is_poisoned())
            .finish()
    }
}

impl Journal {
    /// Opens the journal in `dir` (creating the folder and a first segment
    /// if there is none), validating every segment and cutting a torn tail
    /// (see [`super::recovery`]). `known_durable` is a position the caller
    /// knows was durable (the checkpoint position in its database headers):
    /// damage before it, or a log ending before it, is `Corrupt`.
    ///
    /// Everything found valid is synced, so `durable_lsn() == end_lsn()`
    /// on return, and appends continue the chain from the last valid record.
    pub fn open(
        vfs: Arc<dyn Vfs>,
        dir: &Path,
        opts: JournalOptions,
        known_durable: Lsn,
    ) -> Result<(Journal, OpenReport), JournalError> {
        opts.validate()?;
        vfs.create_dir_all(dir)
            .map_err(|e| JournalError::io(format!("create journal folder {}", dir.display()), e))?;
        let rec = recovery::recover(&*vfs, dir, opts.max_batch_bytes, known_durable)?;
        let mut syncs = rec.syncs;
        let sync_dir = |vfs: &dyn Vfs| {
            vfs.sync_dir(dir)
                .map_err(|e| JournalError::io(format!("sync journal folder {}", dir.display()), e))
        };
        let created = rec.segments.is_empty();
        let mut segments: Vec<SegmentEntry> = rec
            .segments
            .iter()
            .map(|s| SegmentEntry {
                start: s.start,
                name: display_name(&s.path),
                file: s.file.clone(),
            })
            .collect();
        if created {
            let header = SegmentHeader {
                start: Lsn::ZERO,
                prev_crc: 0,
            };
            let (path, file) = create_segment(&*vfs, dir, header).map_err(|e| {
                JournalError::io(
                    format!("create first journal segment in {}", dir.display()),
                    e,
                )
            })?;
            syncs += 1;
            segments.push(SegmentEntry {
                start: Lsn::ZERO,
                name: display_name(&path),
                file,
            });
        } else {
            // What we found may have been written but never synced by a
            // process that died; it counts as durable only once synced.
            let last = segments.last().expect("not empty");
            last.file
                .sync()
                .map_err(|e| JournalError::io(format!("sync journal segment {}", last.name), e))?;
            syncs += 1;
        }
        sync_dir(&*vfs)?;

        let last = segments.last().expect("at least one segment");
        let len = SegmentHeader::LEN + (rec.end.0 - last.start.0);
        let reserved = last
            .file
            .len()
            .map_err(|e| JournalError::io(format!("size of journal segment {}", last.name), e))?
            .max(len);
        let active = Active {
            start: last.start,
            name: last.name.clone(),
            file: last.file.clone(),
            len,
            reserved,
            last_crc: rec.last_crc,
            spare: Vec::new(),
        };
        let report = OpenReport {
            created,
            start: segments[0].start,
            end: rec.end,
            last_crc: rec.last_crc,
            segments: segments.len(),
            records: rec.records,
            dropped_bytes: rec.repair.as_ref().map_or(0, |r| r.dropped_bytes),
            repair: rec.repair,
        };
        info!(dir = %dir.display(), end = %report.end, segments = report.segments,
              records = report.records, dropped_bytes = report.dropped_bytes, "journal opened");
        let inner = Inner {
            vfs,
            dir: dir.to_path_buf(),
            opts,
            pending: Mutex::new(Pending {
                buf: Vec::new(),
                taken: 0,
                start: rec.end,
                last_crc: rec.last_crc,
            }),
            end: AtomicU64::new(rec.end.0),
            durable: AtomicU64::new(rec.end.0),
            written: AtomicU64::new(rec.end.0),
            written_lock: Mutex::new(()),
            written_changed: Condvar::new(),
            syncs: AtomicU64::new(syncs),
            batches: AtomicU64::new(0),
            writes_ahead: AtomicU64::new(0),
            poison: OnceLock::new(),
            leader: Mutex::new(false),
            committers: Mutex::new(Vec::new()),
            flusher: FlusherSignal::default(),
            write_ahead: WriteAheadSignal::default(),
            requested: AtomicU64::new(0),
            flushed: Condvar::new(),
            active: Mutex::new(active),
            segments: RwLock::new(segments),
            boundaries: Boundaries::new(),
            reserver: None,
        };
        let mut inner = inner;
        if inner.opts.zero_fill_thread {
            let r = Arc::new(Reserver::new(inner.vfs.clone()));
            let thread = {
                let r = r.clone();
                std::thread::Builder::new()
                    .name("redoubt-journal-zero".into())
                    .spawn(move || r.run())
                    .map_err(|e| JournalError::io("start the journal's zero-filling thread", e))?
            };
            inner.reserver = Some((r, Mutex::new(Some(thread))));
        }
        Ok((
            Journal {
                inner: Arc::new(inner),
            },
            report,
        ))
    }

    /// Appends a record to the in-memory buffer; returns the position just
    /// past it (what to pass to [`Journal::wait_durable`]). Not durable yet.
    pub fn append(&self, rec: &Record) -> Result<Lsn, JournalError> {
        self.append_with_start(rec).map(|(_, end)| end)
    }

    /// Like [`Journal::append`], also returning the record's own position.
    pub fn append_with_start(&self, rec: &Record) -> Result<(Lsn, Lsn), JournalError> {
        self.inner.check_poison()?;
        let len = rec.check_size()?;
        self.append_encoded(rec.kind(), len, |out| rec.encode_into(out))
    }

    /// [`Journal::append_with_start`] of a SET or KILL given by reference.
    pub fn append_change(&self, change: &ChangeRef<'_>) -> Result<(Lsn, Lsn), JournalError> {
        self.inner.check_poison()?;
        let len = change.check_size()?;
        self.append_encoded(change.kind(), len, |out| change.encode_into(out))
    }

    /// Frames the `len` payload bytes `encode` writes and buffers them.
    fn append_encoded(
        &self,
        kind: RecordKind,
        len: u32,
        encode: impl FnOnce(&mut Vec<u8>),
    ) -> Result<(Lsn, Lsn), JournalError> {
        SCRATCH.with(|cell| {
            let mut payload = cell.borrow_mut();
            payload.clear();
            encode(&mut payload);
            debug_assert_eq!(payload.len(), len as usize);
            let sum = PayloadSum::of(&payload);
            let positions = {
                let mut p = self.inner.pending.lock();
                let header = FrameHeader::chained(p.last_crc, kind, &payload, sum);
                let start = p.end();
                p.buf.extend_from_slice(&header.to_bytes());
                p.buf.extend_from_slice(&payload);
                p.last_crc = header.crc;
                let end = start.offset(header.frame_len());
                self.inner.end.store(end.0, Ordering::Release);
                (start, end)
            };

            if payload.capacity() > SCRATCH_KEEP {
                *payload = Vec::new();
            }
            Ok(positions)
        })
    }

    /// Starts a thread that flushes whenever a committer asks
    /// ([`Journal::request_flush`]), so committers need not lead flushes
    /// themselves: they can wait for
    /// `on_durable`, which is called with `durable_lsn()` after every flush
    /// (and once more, with the store poisoned, if a flush fails). A mirror
    /// primary uses it to wait for its own sync and its backup's
    /// acknowledgement with one sleep. `wait_durable` still works beside it.
    ///
    /// `delay` is an adaptive commit delay (PostgreSQL's `commit_delay`
    /// with `commit_siblings`, decided from the traffic): when the previous
    /// flush served more than one request, the flusher waits
    /// this long before the next, so that concurrent committers share one
    /// sync. A lone committer is never delayed.
    pub fn start_flusher(
        &self,
        delay: std::time::Duration,
        on_durable: impl Fn(Lsn) + Send + 'static,
    ) -> FlusherHandle {
        let j = Journal {
            inner: self.inner.clone(),
        };
        self.inner.flusher.running.store(true, Ordering::SeqCst);
        let thread = std::thread::Builder::new()
            .name("redoubt-journal-flush".into())
            .spawn(move || {
                let f = &j.inner.flusher;
                // Cleared however the thread ends, so waiters can tell.
                struct Running<'a>(&'a std::sync::atomic::AtomicBool);
                impl Drop for Running<'_> {
                    fn drop(&mut self) {
                        self.0.store(false, Ordering::SeqCst);
                    }
                }
                let _running = Running(&f.running);
                let (mut served, mut last_batch) = (0u64, 0u64);
                loop {
                    {
                        let mut stop = f.stop.lock();
                        loop {
                            f.idle.store(true, Ordering::SeqCst);
                            std::sync::atomic::fence(Ordering::SeqCst);
                            let asked = j.inner.requested.load(Ordering::SeqCst) > served;
                            let pending = (asked || *stop) && j.end_lsn() > j.durable_lsn();
                            if pending || *stop || j.is_poisoned() {
                                f.idle.store(false, Ordering::SeqCst);
                                if !pending || j.is_poisoned() {
                                    on_durable(j.durable_lsn());
                                    return;
                                }
                                break;
                            }
                            if asked {
                                // Already durable: tell the askers.
                                served = j.inner.requested.load(Ordering::SeqCst);
                                f.idle.store(false, Ordering::SeqCst);
                                drop(stop);
                                on_durable(j.durable_lsn());
                                stop = f.stop.lock();
                                continue;
                            }
                            f.wake.wait(&mut stop);
                        }
                    }
                    // Commits were arriving together: give the others
                    // of this round a moment to join the batch.
                    if last_batch > 1 && !delay.is_zero() {
                        std::thread::sleep(delay);
                    }
                    let asked = j.inner.requested.load(Ordering::SeqCst);
                    last_batch = asked - served;
                    served = asked;
                    let result = j.wait_durable(j.end_lsn());
                    on_durable(j.durable_lsn());
                    if result.is_err() {
                        return;
                    }
                }
            })
            .expect("spawn journal flusher");
        FlusherHandle {
            inner: self.inner.clone(),
            thread: Some(thread),
        }
    }

    /// Whether a background flusher is running (see
    /// [`Journal::start_flusher`]); once it has stopped, a committer must
    /// make its record durable itself ([`Journal::wait_durable`]).
    pub fn flusher_running(&self) -> bool {
        self.inner.flusher.running.load(Ordering::SeqCst)
    }

    /// Asks the background flusher for a flush of everything appended so
    /// far (a committer's record is appended before it asks); the flusher
    /// reports through its `on_durable`. Without a flusher it does nothing.
    pub fn request_flush(&self) {
        self.inner.requested.fetch_add(1, Ordering::SeqCst);
        self.inner.flusher.requested();
    }

    /// Returns once every byte below `upto` is durable (group commit: one
    /// write + one sync serves every record appended before it started).
    pub fn wait_durable(&self, upto: Lsn) -> Result<(), JournalError> {
        let inner = &*self.inner;
        loop {
            inner.check_poison()?;
            if inner.durable_lsn() >= upto {
                return Ok(());
            }
            let end = self.end_lsn();
            if upto > end {
                return Err(JournalError::BeyondEnd { upto, end });
            }
            {
                let mut leading = inner.leader.lock();
                if *leading {
                    let me = std::thread::current();
                    inner.committers.lock().push((upto, me.clone()));
                    drop(leading);
                    // Woken when our position is durable, to lead the next
                    // flush, or spuriously; an unpark that came before the
                    // park makes it return at once.
                    std::thread::park();
                    inner.committers.lock().retain(|(_, t)| t.id() != me.id());
                    continue;
                }
                // A flush may have ended since the check above (it publishes
                // `durable` before giving up the role under this lock, so
                // the value read here is final until we lead): if it covered
                // `upto`, leading would only sync other committers' records
                // on our time.
                inner.check_poison()?;
                if inner.durable_lsn() >= upto {
                    return Ok(());
                }
                *leading = true;
            }
            let _guard = LeaderGuard(inner);
            let mut active = inner.active.lock();
            inner.flush_batch(&mut active)?;
        }
    }

    /// Writes the records appended so far to the segment file, without a
    /// sync, if at least `write_ahead_bytes` of them wait in memory and no
    /// flush is running; and asks the OS to start sending them to the disk
    /// ([`VfsFile::start_writeback`]). A large transaction calls this as it
    /// goes: its commit then finds most of its records written and on their
    /// way to the disk, and syncs the rest at once (the sync no longer has
    /// to transfer them all), and a mirror primary streams them to its
    /// backups before the commit. Nothing becomes durable or acknowledged
    /// here; at most `max_batch_bytes` stay written and not synced.
    ///
    /// [`VfsFile::start_writeback`]: crate::storage::VfsFile::start_writeback
    pub fn write_ahead(&self) -> Result<(), JournalError> {
        let inner = &*self.inner;
        if !self.write_ahead_due() {
            return Ok(());
        }
        {
            let mut leading = inner.leader.lock();
            if *leading {
                return Ok(()); // a flush is taking them anyway
            }
            *leading = true;
        }
        let _guard = LeaderGuard(inner);
        let mut active = inner.active.lock();
        inner.check_poison()?;
        let n = inner.write_pending(&mut active, inner.unsynced_room(), false)?;
        if n == 0 {
            return Ok(());
        }
        inner.writes_ahead.fetch_add(1, Ordering::Relaxed);
        // At the end of the segment's records (a roll may have started a
        // new one for them).
        if let Err(e) = active.file.start_writeback(active.len - n, n) {
            return Err(inner.poison(format!(
                "starting the write-back of journal segment {} failed: {e}",
                active.name
            )));
        }
        Ok(())
    }

    /// Whether [`Journal::write_ahead`] would write now.
    fn write_ahead_due(&self) -> bool {
        let due = self.inner.opts.write_ahead_bytes;
        due > 0 && self.end_lsn().0.saturating_sub(self.inner.written_lsn().0) >= due
    }

    /// Asks the write-ahead thread, if one runs, for a
    /// [`Journal::write_ahead`] when it is due. Cheap when it is not (two
    /// loads): a session in a transaction calls it after every change.
    pub fn request_write_ahead(&self) {
        if self.write_ahead_due() {
            self.wake_write_ahead();
        }
    }

    /// Asks the write-ahead thread, if one runs, to make the journal
    /// durable up to `upto` (leading a group-commit flush, as a committer
    /// would), so that a pipelined commit's sync runs while its session
    /// goes on. Nothing waits for it here; without the thread, the
    /// commit's eventual [`Journal::wait_durable`] syncs.
    pub fn request_sync(&self, upto: Lsn) {
        if self.durable_lsn() < upto {
            self.inner
                .write_ahead
                .sync_to
                .fetch_max(upto.0, Ordering::SeqCst);
            self.wake_write_ahead();
        }
    }

    fn wake_write_ahead(&self) {
        let signal = &self.inner.write_ahead;
        if !signal.asked.swap(true, Ordering::SeqCst) {
            let _g = signal.stop.lock();
            signal.wake.notify_one();
        }
    }

    /// Starts a thread that does [`Journal::write_ahead`] when asked
    /// ([`Journal::request_write_ahead`]), so the sessions appending do not
    /// spend their time in the write and the write-back's start (measured:
    /// done inline, they cost the loading thread what the commit's sync
    /// saved).
    pub fn start_write_ahead(&self) -> WriteAheadHandle {
        let j = Journal {
            inner: self.inner.clone(),
        };
        let thread = std::thread::Builder::new()
            .name("redoubt-journal-ahead".into())
            .spawn(move || {
                let signal = &j.inner.write_ahead;
                loop {
                    {
                        let mut stop = signal.stop.lock();
                        while !*stop && !signal.asked.load(Ordering::Acquire) {
                            signal.wake.wait(&mut stop);
                        }
                        if *stop {
                            return;
                        }
                    }
                    // Cleared first: a request from now on wakes us again.
                    signal.asked.store(false, Ordering::SeqCst);
                    let sync_to = Lsn(signal.sync_to.load(Ordering::SeqCst));
                    let done = if j.durable_lsn() < sync_to {
                        j.wait_durable(sync_to)
                    } else {
                        j.write_ahead()
                    };
                    if done.is_err() {
                        return; // poisoned: every commit fails from now on
                    }
                }
            })
            .expect("spawn journal write-ahead thread");
        WriteAheadHandle {
            inner: self.inner.clone(),
            thread: Some(thread),
        }
    }

    /// Makes everything appended so far durable.
    pub fn flush(&self) -> Result<(), JournalError> {
        self.wait_durable(self.end_lsn())
    }

    /// Every byte below is durable; always a record boundary.
    pub fn durable_lsn(&self) -> Lsn {
        self.inner.durable_lsn()
    }

    /// End of the appended records (durable or not); a record boundary.
    pub fn end_lsn(&self) -> Lsn {
        Lsn(self.inner.end.load(Ordering::Acquire))
    }

    /// Stored crc of the last appended record: the chain value the next
    /// record is checksummed with.
    pub fn last_crc(&self) -> u32 {
        self.inner.pending.lock().last_crc
    }

    /// Number of segment file syncs since open (including open's own):
    /// one per group-commit batch ([`Journal::batches`]) plus one per new
    /// segment (its header), and those of [`Journal::truncate`].
    pub fn syncs(&self) -> u64 {
        self.inner.syncs.load(Ordering::Relaxed)
    }

    /// Number of group-commit batches written since open, each one write
    /// and one sync of records not written before: never more than the
    /// commits that waited for them, and with group commit far fewer.
    pub fn batches(&self) -> u64 {
        self.inner.batches.load(Ordering::Relaxed)
    }

    /// True once a write or sync failed; every later append and wait fails.
    /// Writes ahead of a commit so far ([`Journal::write_ahead`]).
    pub fn writes_ahead(&self) -> u64 {
        self.inner.writes_ahead.load(Ordering::Relaxed)
    }

    pub fn is_poisoned(&self) -> bool {
        self.inner.poison.get().is_some()
    }

    /// Reads the records from `from` (a record boundary) up to the durable
    /// position at the time of this call, from the segment files, validating
    /// the crc chain from the start of `from`'s segment. Records appended
    /// but not yet durable are not returned: call again from
    /// [`JournalReader::position`] to follow the journal.
    pub fn read_from(&self, from: Lsn) -> Result<JournalReader, JournalError> {
        JournalReader::new(self.inner.clone(), from)
    }

    /// Start positions and file names of the segments, oldest first.
    pub fn segments(&self) -> Vec<(Lsn, String)> {
        self.inner
            .segments
            .read()
            .iter()
            .map(|s| (s.start, s.name.clone()))
            .collect()
    }

    /// The options the journal was opened with.
    pub fn options(&self) -> JournalOptions {
        self.inner.opts
    }

    /// The journal folder.
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }
}
