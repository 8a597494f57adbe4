//! The mirror's writing side of the journal: appending records received
//! from the primary verbatim ([`Journal::append_raw`]), waiting for new
//! durable bytes ([`Journal::wait_durable_beyond`]), cutting a divergent
//! tail ([`Journal::truncate`]) and starting over at a given position
//! ([`Journal::reset`]).

use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tracing::{info, warn};

use super::error::JournalError;
use super::replicate::walk_frames;
use super::segment::{create_segment, display_name, parse_segment_file_name, SegmentHeader};
use super::writer::{Inner, Journal, JournalOptions, LeaderGuard};
use crate::storage::Vfs;
use crate::Lsn;

impl Journal {
    /// Appends records received from the primary, verbatim: `bytes` holds
    /// whole framed records (as [`Journal::read_raw`] returns them) starting
    /// at `start`, which must be [`Journal::end_lsn`] (else `WrongStart`
    /// naming both positions).
    ///
    /// Every frame is verified first (length bound, kind, crc chained from
    /// this journal's last stored crc); on the first bad one nothing at all
    /// is appended and the error (`BadStream`) names its position and what
    /// is wrong. Payloads are not decoded here: use [`Journal::decode_raw`]
    /// to get the records to apply.
    ///
    /// The bytes are then buffered exactly like [`Journal::append`]: durable
    /// after [`Journal::wait_durable`] of the returned end. Since the bytes
    /// and the chain are the primary's, this journal holds the same record
    /// stream, byte for byte, from the same positions (segment files may be
    /// cut at other places).
    ///
    /// Verification runs outside the append lock; if another append moved
    /// the end meanwhile, nothing is appended and `WrongStart` is returned.
    pub fn append_raw(&self, start: Lsn, bytes: &[u8]) -> Result<Lsn, JournalError> {
        let inner = &*self.inner;
        inner.check_poison()?;
        let (end, seed) = {
            let p = inner.pending.lock();
            (p.end(), p.last_crc)
        };
        if start != end {
            return Err(JournalError::WrongStart { start, end });
        }
        if bytes.is_empty() {
            return Ok(end);
        }
        let (new_end, last_crc) = walk_frames(start, seed, bytes, |_, _, _| Ok(()))?;
        let mut p = inner.pending.lock();
        if p.end() != start || p.last_crc != seed {
            return Err(JournalError::WrongStart {
                start,
                end: p.end(),
            });
        }
        p.buf.extend_from_slice(bytes);
        p.last_crc = last_crc;
        inner.end.store(new_end.0, Ordering::Release);
        Ok(new_end)
    }

    /// Blocks until `durable_lsn() > lsn` or `timeout` passes, and returns
    /// `durable_lsn()`. Woken by every group-commit flush. Returns at once
    /// if the journal is poisoned (nothing will become durable any more;
    /// check [`Journal::is_poisoned`]).
    pub fn wait_durable_beyond(&self, lsn: Lsn, timeout: Duration) -> Lsn {
        self.wait_beyond(lsn, timeout, |i| i.durable_lsn())
    }

    /// Like [`Journal::wait_durable_beyond`] for the written position (see
    /// [`Journal::read_raw_written`]).
    pub fn wait_written_beyond(&self, lsn: Lsn, timeout: Duration) -> Lsn {
        let inner = &*self.inner;
        let deadline = Instant::now().checked_add(timeout);
        let mut guard = inner.written_lock.lock();
        loop {
            // Durable implies written (a truncate may lower both).
            let at = inner.written_lsn().max(inner.durable_lsn());
            if at > lsn || self.is_poisoned() {
                return at;
            }
            match deadline {
                Some(d) => {
                    if inner.written_changed.wait_until(&mut guard, d).timed_out() {
                        return inner.written_lsn();
                    }
                }
                None => inner.written_changed.wait(&mut guard),
            }
        }
    }

    /// End of what is written to the segment files (durable or about to be).
    pub fn written_lsn(&self) -> Lsn {
        self.inner.written_lsn()
    }

    fn wait_beyond(&self, lsn: Lsn, timeout: Duration, pos: impl Fn(&Inner) -> Lsn) -> Lsn {
        let inner = &*self.inner;
        let deadline = Instant::now().checked_add(timeout);
        let mut leading = inner.leader.lock();
        loop {
            let at = pos(inner);
            if at > lsn || self.is_poisoned() {
                return at;
            }
            match deadline {
                Some(deadline) => {
                    if inner.flushed.wait_until(&mut leading, deadline).timed_out() {
                        return pos(inner);
                    }
                }
                None => inner.flushed.wait(&mut leading),
            }
        }
    }

    /// Cuts the log back to record boundary `lsn` (`oldest_lsn() <= lsn <=
    /// end_lsn()`): removes the segments after the one holding `lsn`,
    /// truncates that one there (`set_len` + sync) and syncs the folder.
    /// Afterwards `end_lsn() == durable_lsn() == lsn` and appends continue
    /// the chain from the record before `lsn`. Used to rewind the divergent
    /// tail of a former primary.
    ///
    /// # Caller's duty
    ///
    /// The caller must stop appending and make everything durable first
    /// ([`Journal::flush`]): truncate waits for a running group-commit flush
    /// and holds off new ones, but if records are appended and not durable
    /// it refuses with `TruncateBusy` (cutting them would let a committer
    /// waiting on their position be acknowledged by other records).
    /// Readers (`read_raw`, `read_from`, `crc_before`) running at the same
    /// time may fail or describe the log before the cut; nothing should
    /// stream from a journal being rewound.
    ///
    /// # Crashes
    ///
    /// Later segments are removed newest first, each removal made durable
    /// before the next, then the cut segment is truncated and synced. A
    /// crash in between leaves a valid, longer log (ending between `lsn` and
    /// the old end) that opens cleanly; the caller redoes the truncate.
    ///
    /// An I/O failure poisons the journal. Other errors: `NotHeld`,
    /// `BeyondEnd`, `NotBoundary`, `Corrupt` (nothing changed).
    pub fn truncate(&self, lsn: Lsn) -> Result<(), JournalError> {
        let inner = &*self.inner;
        inner.check_poison()?;
        // Take the leader role so no flush runs while the log is cut.
        {
            let mut leading = inner.leader.lock();
            while *leading {
                inner.flushed.wait(&mut leading);
            }
            *leading = true;
        }
        let _guard = LeaderGuard(inner);
        let mut active = inner.active.lock();
        inner.settle_reserve(&mut active);
        let mut pending = inner.pending.lock();
        inner.check_poison()?;
        let end = pending.end();
        let durable = inner.durable_lsn();
        if end != durable {
            return Err(JournalError::TruncateBusy { lsn, end, durable });
        }
        if lsn > end {
            return Err(JournalError::BeyondEnd { upto: lsn, end });
        }
        let crc = self.crc_before_durable(lsn)?;
        if lsn == end {
            return Ok(());
        }

        // From here on readers see the log as cut; positions after `lsn`
        // are forgotten (after lowering durable: see read_raw).
        inner.durable.store(lsn.0, Ordering::Release);
        inner.written.store(lsn.0, Ordering::Release);
        inner.end.store(lsn.0, Ordering::Release);
        inner.boundaries.forget_after(lsn);

        let (keep, remove) = {
            let segments = inner.segments.read();
            let keep = segments
                .iter()
                .rposition(|s| s.start <= lsn)
                .expect("crc_at_boundary found the segment");
            let remove: Vec<_> = segments[keep + 1..]
                .iter()
                .map(|s| (s.start, s.name.clone()))
                .collect();
            let k = &segments[keep];
            ((k.start, k.name.clone(), k.file.clone()), remove)
        };
        for (start, name) in remove.iter().rev() {
            let path = inner.dir.join(name);
            inner
                .vfs
                .remove(&path)
                .map_err(|e| inner.poison(format!("remove journal segment {name} failed: {e}")))?;
            inner.vfs.sync_dir(&inner.dir).map_err(|e| {
                inner.poison(format!(
                    "sync of journal folder {} failed: {e}",
                    inner.dir.display()
                ))
            })?;
            inner.syncs.fetch_add(1, Ordering::Relaxed);
            inner.segments.write().retain(|s| s.start != *start);
        }
        let (start, name, file) = keep;
        let len = SegmentHeader::LEN + (lsn.0 - start.0);
        file.set_len(len)
            .map_err(|e| inner.poison(format!("truncate journal segment {name} failed: {e}")))?;
        file.sync()
            .map_err(|e| inner.poison(format!("sync of journal segment {name} failed: {e}")))?;
        inner.syncs.fetch_add(1, Ordering::Relaxed);
        inner.vfs.sync_dir(&inner.dir).map_err(|e| {
            inner.poison(format!(
                "sync of journal folder {} failed: {e}",
                inner.dir.display()
            ))
        })?;

        active.start = start;
        active.name = name.clone();
        active.file = file;
        active.len = len;
        active.reserved = len;
        active.last_crc = crc;
        pending.buf.clear();
        pending.taken = 0;
        pending.start = lsn;
        pending.last_crc = crc;
        warn!(dir = %inner.dir.display(), %lsn, old_end = %end, segment = %name,
              removed_segments = remove.len(), "journal truncated");
        Ok(())
    }

    /// Removes every segment file in `dir` and starts a new journal there
    /// whose first record will be at `start`, chained to `prev_crc` (the
    /// stored crc of the record before `start` on the member this journal
    /// copies). For a member seeded from a copy: its journal begins where
    /// the primary's copy began. No other [`Journal`] may be open on `dir`.
    ///
    /// Not atomic: after a crash during reset the folder may hold the old
    /// segments, some of them, none, or a torn new one, and opening it may
    /// fail or give another log. The caller must consider the member seeded
    /// only once reset has returned, and call it again after a crash.
    /// Removes the segment files that hold only records before `lsn`
    /// (never the last segment, which is being written). Returns the bytes
    /// of the files removed. Positions before the new oldest segment then
    /// read as `NotHeld`; a reader already inside a removed file goes on
    /// reading it (the file stays open). The caller decides what nobody
    /// needs any more (see `db/flush.rs`, `purge_journal`).
    pub fn purge_before(&self, lsn: Lsn) -> Result<u64, JournalError> {
        let inner = &*self.inner;
        let doomed: Vec<(Lsn, String)> = {
            let segs = inner.segments.read();
            segs.windows(2)
                .take_while(|w| w[1].start <= lsn)
                .map(|w| (w[0].start, w[0].name.clone()))
                .collect()
        };
        let mut bytes = 0;
        for (start, name) in doomed {
            let path = inner.dir.join(&name);
            // Out of the index first: nobody opens it from here on.
            let removed = {
                let mut segs = inner.segments.write();
                let at = segs.iter().position(|s| s.start == start);
                at.map(|i| segs.remove(i))
            };
            if let Some(seg) = removed {
                bytes += seg.file.len().unwrap_or(0);
            }
            inner
                .vfs
                .remove(&path)
                .map_err(|e| JournalError::io(format!("remove journal segment {name}"), e))?;
            // Each removal is durable before the next: a crash mid-purge
            // leaves the oldest segments removed and a contiguous run
            // after them, never a run with a hole (directory entries not
            // yet synced may survive in any subset), which recovery would
            // rightly refuse as a journal that does not continue.
            inner.vfs.sync_dir(&inner.dir).map_err(|e| {
                JournalError::io(format!("sync journal folder {}", inner.dir.display()), e)
            })?;
        }
        if bytes > 0 {
            info!(before = %lsn, bytes, "purged journal segments");
        }
        Ok(bytes)
    }

    pub fn reset(
        vfs: Arc<dyn Vfs>,
        dir: &Path,
        opts: JournalOptions,
        start: Lsn,
        prev_crc: u32,
    ) -> Result<Journal, JournalError> {
        opts.validate()?;
        let io = |what: String| move |e| JournalError::io(what, e);
        vfs.create_dir_all(dir)
            .map_err(io(format!("create journal folder {}", dir.display())))?;
        let mut old: Vec<_> = vfs
            .list(dir)
            .map_err(io(format!("list journal folder {}", dir.display())))?
            .into_iter()
            .filter(|p| parse_segment_file_name(&display_name(p)).is_some())
            .collect();
        old.sort();
        // Newest first, each removal durable before the next (as in
        // `purge_before`): a crash leaves the oldest segments, a run
        // without a hole, which opens.
        for path in old.iter().rev() {
            vfs.remove(path)
                .map_err(io(format!("remove journal segment {}", path.display())))?;
            vfs.sync_dir(dir)
                .map_err(io(format!("sync journal folder {}", dir.display())))?;
        }
        create_segment(&*vfs, dir, SegmentHeader { start, prev_crc }).map_err(io(format!(
            "create journal segment at lsn {start} in {}",
            dir.display()
        )))?;
        vfs.sync_dir(dir)
            .map_err(io(format!("sync journal folder {}", dir.display())))?;
        info!(dir = %dir.display(), %start, prev_crc, removed_segments = old.len(), "journal reset");
        let (journal, _) = Journal::open(vfs, dir, opts, start)?;
        Ok(journal)
    }
}
