//! The write daemon: flush cycles through the write image journal.
//!
//! One cycle:
//! 1. for each database, under its write lock: take the dirty pages (the
//!    pool keeps them readable as in-flight) and stamp the meta page with
//!    `redo_from` = the journal's end (every change before it is in these
//!    pages) and `undo_from` = the first position of any open transaction;
//! 2. wait until the journal is durable up to the largest `redo_from`
//!    (a page never reaches disk before the journal records it reflects);
//! 3. phase 0: *direct* pages go straight to their database files, which
//!    are synced: pages the tree on disk (the previous cycle's) does not
//!    use, either fresh (numbered from the page count of the previous
//!    cycle's meta page on) or free in it (see `btree/free.rs`). Only
//!    this cycle's pages refer to them (the WIJ's, through the meta page
//!    and branches, and other direct pages), and the WIJ names the cycle
//!    only after they are durable, so a crash that tears one loses
//!    nothing: the journal from the previous cycle's `redo_from` builds
//!    them again. A bulk load's new pages, and the leaves any load
//!    changes (the tree moves a leaf below the root to such a page before
//!    changing it), are so written once, not twice;
//! 4. phase 1: the other page images go to the WIJ, durably, then it is marked
//!    active (which says the previous cycle, whose phase 2 is done, is
//!    finished: the WIJ keeps its slots apart, see `wij`);
//! 5. phase 2: the same images go to the database files, each file synced;
//!    the in-flight pages are released.
//!
//! The WIJ stays active until the next cycle: marking it clean would cost
//! two more syncs per cycle. [`Inner::mark_clean`] does it at a clean
//! shutdown, so startup compares the last cycle with the files.
//!
//! Sync points per cycle: the journal up to `redo_from` (often already
//! durable), each database file with fresh pages, the WIJ slots, the two
//! WIJ header copies, each database file.
//!
//! A crash before step 4 completes leaves the database files as of the
//! previous cycle (whose images recovery restores, harmlessly, from the
//! WIJ that still names it); during step 5, recovery restores the images
//! from the active WIJ (direct pages are durable before it names the
//! cycle). Either way the files hold exactly one cycle's
//! consistent snapshot and the journal from its `redo_from` on rebuilds
//! the rest.

use std::sync::{Arc, Weak};
use std::time::Duration;

use super::{Database, Inner};
use crate::btree::pager::DirtyPage;
use crate::error::{EngineError, Result};
use crate::journal::Record;
use crate::wij::format::STRIPE_SLOTS;
use crate::wij::{PageImage, PAGE_SIZE};
use crate::Lsn;

/// Buffers a flush cycle reuses instead of allocating them anew: fresh
/// memory every cycle costs page faults and zeroing in the kernel, a
/// visible part of the write daemon's time.
#[derive(Default)]
pub(crate) struct CycleBuffers {
    /// Page-sized buffers for one batch of images ([`BATCH_PAGES`]).
    pages: Vec<Vec<u8>>,
}

/// Pages a cycle encodes at a time: its memory beyond the pool's (two WIJ
/// stripes, 2 MiB). The pages wait as nodes, which the pool holds (in
/// flight) anyway; a cycle that encoded them all at once held a second
/// copy of every dirty page, up to half the pool again. Tests use tiny
/// batches, so every cycle they run is written in several.
const BATCH_PAGES: usize = if cfg!(test) {
    3
} else {
    2 * STRIPE_SLOTS as usize
};

/// The pages of one cycle.
#[derive(Default)]
struct Cycle {
    /// Through the WIJ: pages that existed in the files before this cycle,
    /// and each database's meta page.
    images: Vec<CyclePage>,
    /// Direct pages (fresh, or free in the tree on disk): straight to the
    /// files.
    fresh: Vec<CyclePage>,
    per_file: Vec<FileCycle>,
}

/// One database's part of a [`Cycle`]: ranges of `images` and `fresh`.
struct FileCycle {
    db: Arc<Database>,
    images: std::ops::Range<usize>,
    fresh: std::ops::Range<usize>,
}

/// A page of a cycle, encoded when its batch is written (twice for a page
/// through the WIJ: once for it, once for the file; the encoding is the
/// same both times, the node being an in-flight snapshot).
struct CyclePage {
    file_id: u32,
    page_no: u64,
    content: Content,
}

enum Content {
    Node(DirtyPage),
    /// Encoded already: a meta page.
    Encoded(Vec<u8>),
}

impl CyclePage {
    fn encode_into(&self, buf: &mut Vec<u8>) {
        match &self.content {
            Content::Node(p) => p.node.encode_into(buf, p.page, p.lsn),
            Content::Encoded(data) => {
                buf.clear();
                buf.extend_from_slice(data);
            }
        }
    }
}

impl CycleBuffers {
    /// Calls `f` with the images of `pages`, in order, encoded
    /// [`BATCH_PAGES`] at a time into the reused buffers.
    fn in_batches(
        &mut self,
        pages: &[&CyclePage],
        mut f: impl FnMut(&[PageImage]) -> Result<()>,
    ) -> Result<()> {
        let mut batch = Vec::with_capacity(BATCH_PAGES.min(pages.len()));
        for part in pages.chunks(BATCH_PAGES) {
            for p in part {
                let mut data = self.pages.pop().unwrap_or_default();
                p.encode_into(&mut data);
                batch.push(PageImage {
                    file_id: p.file_id,
                    page_no: p.page_no,
                    data,
                });
            }
            let written = f(&batch);
            self.pages.extend(batch.drain(..).map(|i| i.data));
            written?;
        }
        Ok(())
    }
}

impl Inner {
    pub(crate) fn checkpoint(&self) -> Result<()> {
        self.checkpoint_at(None)
    }

    /// A cycle whose meta pages carry the given `(redo_from, undo_from)`
    /// instead of the journal's end and the open transactions' start (used
    /// while recovery replays, when the trees reflect a point inside the
    /// journal).
    pub(crate) fn checkpoint_at(&self, bounds: Option<(Lsn, Lsn)>) -> Result<()> {
        let mut bufs = self.cycle.lock();
        self.cycle_locked(&mut bufs, bounds, false)
    }

    /// One cycle; the caller holds `self.cycle` (its buffers). With
    /// `every_meta`, the meta page of every database is written with the
    /// cycle's bounds, changed or not (a seed's copy needs every file
    /// stamped).
    pub(crate) fn cycle_locked(
        &self,
        bufs: &mut CycleBuffers,
        bounds: Option<(Lsn, Lsn)>,
        every_meta: bool,
    ) -> Result<()> {
        if let Some(why) = self.poison.lock().clone() {
            // Memory may disagree with the journal: never write it out.
            return Err(EngineError::Poisoned(why));
        }
        let dbs: Vec<Arc<Database>> = self.dbs.read().values().cloned().collect();
        let mut cycle = Cycle::default();
        let mut max_redo = Lsn::ZERO;
        for db in &dbs {
            // Bounds first, then the tree's lock: the applier takes them in
            // the other order. Read before the snapshot, the bounds can only
            // be lower than exact, which replays a little more (replay is
            // idempotent) and never less.
            let (redo, undo) = bounds.unwrap_or_else(|| self.flush_bounds());
            let flush = db.tree.write().take_flush(redo.0, undo.0);
            if flush.pages.is_empty() && !every_meta {
                continue; // unchanged since its last cycle
            }
            max_redo = max_redo.max(Lsn(flush.meta.redo_from));
            let (start, fresh_start) = (cycle.images.len(), cycle.fresh.len());
            for p in flush.pages {
                let to = if p.page >= flush.fresh_from || flush.direct.contains(&p.page) {
                    &mut cycle.fresh
                } else {
                    &mut cycle.images
                };
                to.push(CyclePage {
                    file_id: db.file_id,
                    page_no: p.page,
                    content: Content::Node(p),
                });
            }
            cycle.images.push(CyclePage {
                file_id: db.file_id,
                page_no: 0,
                content: Content::Encoded(flush.meta.encode(flush.durable_to)),
            });
            cycle.per_file.push(FileCycle {
                db: db.clone(),
                images: start..cycle.images.len(),
                fresh: fresh_start..cycle.fresh.len(),
            });
        }
        if cycle.per_file.is_empty() {
            return Ok(());
        }
        match self.write_cycle(bufs, max_redo, &cycle) {
            Ok(()) => {
                for f in &cycle.per_file {
                    f.db.tree.read().pager().flushed();
                }
                // Not while recovery replays (`bounds`): it reads on.
                if bounds.is_none() {
                    self.purge_journal(&dbs)?;
                }
                Ok(())
            }
            // The pages stay in flight (readable from memory): the files
            // may not hold them, and the store is poisoned from here on.
            Err(e) => Err(self.poison(e)),
        }
    }

    fn write_cycle(&self, bufs: &mut CycleBuffers, max_redo: Lsn, cycle: &Cycle) -> Result<()> {
        // The pages may hold changes journaled after the bounds were read
        // (between that read and the tree's lock): everything journaled
        // before they were taken must be durable before any reaches disk.
        self.journal
            .wait_durable(self.journal.end_lsn().max(max_redo))?;
        // Phase 0: direct pages straight to their files (see the module
        // documentation), durable before the WIJ names the cycle.
        for f in &cycle.per_file {
            let fresh = &cycle.fresh[f.fresh.clone()];
            if !fresh.is_empty() {
                self.write_to_file(bufs, &f.db, fresh)?;
            }
        }
        let mut wij = self.wij.lock();
        let mut phase1 = wij.start_cycle()?;
        let all: Vec<&CyclePage> = cycle.images.iter().collect();
        bufs.in_batches(&all, |batch| Ok(phase1.write(batch)?))?;
        phase1.finish()?;
        for f in &cycle.per_file {
            self.write_to_file(bufs, &f.db, &cycle.images[f.images.clone()])?;
        }
        drop(wij);
        tracing::debug!(
            pages = cycle.images.len(),
            fresh = cycle.fresh.len(),
            redo = %max_redo,
            "flush cycle done"
        );
        // Only a primary writes its own records: a follower's journal must
        // stay byte for byte the primary's.
        if let Some(_permit) = self.gate.primary_permit() {
            let open: Vec<_> = self
                .open_txns
                .lock()
                .iter()
                .map(|(t, l)| (*t, *l))
                .collect();
            self.journal.append(&Record::Checkpoint {
                redo_from: max_redo,
                open_txns: open,
                time_us: super::now_us(),
            })?;
        }
        Ok(())
    }

    /// Writes `pages` of `db` to its file in page order, a batch at a time
    /// (each page's old image first kept for a seed copy being read), and
    /// syncs the file.
    fn write_to_file(
        &self,
        bufs: &mut CycleBuffers,
        db: &Database,
        pages: &[CyclePage],
    ) -> Result<()> {
        let mut sorted: Vec<&CyclePage> = pages.iter().collect();
        sorted.sort_by_key(|p| p.page_no);
        bufs.in_batches(&sorted, |batch| {
            self.preserve_for_seeds(db, batch)?;
            write_unsynced(db, batch)
        })?;
        sync_file(db)
    }

    /// Marks the WIJ clean after the last cycle (a clean shutdown), so the
    /// next startup compares that cycle's images with the files instead
    /// of restoring them.
    pub(crate) fn mark_clean(&self) -> Result<()> {
        let _cycle = self.cycle.lock();
        let mut wij = self.wij.lock();
        if let crate::wij::WijState::Active { .. } = wij.state() {
            wij.end_cycle()?;
        }
        Ok(())
    }

    /// After a cycle: removes the journal segments nobody needs. Kept is
    /// everything from the oldest of
    /// - where recovery would start: `min(redo_from, undo_from)` of every
    ///   database's meta page *on disk* (what a crash would find);
    /// - `journal_keep_bytes` before the end;
    /// - what the mirror's connected followers still need (`journal_floor`);
    /// - the journal part of a seed being sent.
    fn purge_journal(&self, dbs: &[Arc<Database>]) -> Result<()> {
        let end = self.journal.end_lsn().0;
        let mut keep = end.saturating_sub(self.opts.journal_keep_bytes);
        for db in dbs {
            let meta = super::database::read_meta(&*db.file, &db.path)?;
            keep = keep.min(meta.redo_from.min(meta.undo_from));
        }
        keep = keep.min(self.journal_floor.load(std::sync::atomic::Ordering::SeqCst));
        if let Some(hold) = self.seed_journal_hold() {
            keep = keep.min(hold.0);
        }
        if keep > self.journal.oldest_lsn().0 {
            self.journal.purge_before(Lsn(keep))?;
        }
        Ok(())
    }

    /// `(redo_from, undo_from)` for a cycle now. A primary has applied its
    /// whole journal; a follower only what its applier reached.
    fn flush_bounds(&self) -> (Lsn, Lsn) {
        let applier = self.applier.lock();
        let redo = match self.gate.access() {
            super::Access::Primary { .. } => self.journal.end_lsn(),
            super::Access::ReadOnly { .. } => applier.applied,
        };
        let sessions = self.open_txns.lock().values().min().copied();
        let undo = [sessions, applier.oldest_open()]
            .into_iter()
            .flatten()
            .min()
            .unwrap_or(redo)
            .min(redo);
        (redo, undo)
    }

    /// Keeps a database's pinned pages (dirty, in flight, copies; see
    /// [`crate::btree::pager`]) within its pool; called by writers between
    /// changes (a session's SET after its change, with the figures it read
    /// under the tree's lock: [`Inner::throttle_with`]; so a writer goes
    /// past the hard limit by one change's pages at most). With `limit` =
    /// `cache_pages * dirty_fraction`:
    ///
    /// | state                        | what the writer does                  |
    /// |------------------------------|---------------------------------------|
    /// | dirty <= room / 2            | nothing                               |
    /// | dirty > room / 2 (soft)      | wakes the write daemon, goes on       |
    /// | pinned > limit (hard)        | waits for a running cycle; if still   |
    /// |                              | over, runs a cycle itself             |
    ///
    /// where `room` is `limit` less the insert buffer's memory, which
    /// `pinned` counts too (a flush cannot free it, a merge does).
    ///
    /// So the daemon flushes in the background while the writer fills the
    /// other half of the budget, and the pool's bound holds whatever the
    /// daemon's speed. Without a daemon (`flush_interval: None`) only the
    /// hard limit acts.
    pub(crate) fn throttle(&self, db: &Database) -> Result<()> {
        self.throttle_at(db, None)
    }

    /// `throttle` with explicit cycle bounds (see `checkpoint_at`); these
    /// callers (recovery, a follower's applier) never hand work to the
    /// daemon, whose cycles use the current bounds.
    pub(crate) fn throttle_at(&self, db: &Database, bounds: Option<(Lsn, Lsn)>) -> Result<()> {
        let pressure = db.tree.read().pager().dirty_and_pinned();
        self.throttle_from(db, bounds, pressure)
    }

    /// [`Inner::throttle`] with the pool's `(dirty, pinned, external)`
    /// pages as the caller read them (under the tree's lock it held).
    pub(crate) fn throttle_with(
        &self,
        db: &Database,
        pressure: (usize, usize, usize),
    ) -> Result<()> {
        self.throttle_from(db, None, pressure)
    }

    fn throttle_from(
        &self,
        db: &Database,
        bounds: Option<(Lsn, Lsn)>,
        (dirty, pinned, external): (usize, usize, usize),
    ) -> Result<()> {
        let limit = self.pinned_limit();
        // The insert buffer's memory leaves less room for dirty pages.
        let room = limit.saturating_sub(external);
        if bounds.is_none() && dirty > room / 2 && self.opts.flush_interval.is_some() {
            self.kick_daemon();
        }
        if pinned > limit {
            return self.stalls.flush_wait(|| {
                // The daemon's cycle, if one runs, may bring us back under.
                drop(self.cycle.lock());
                if db.tree.read().pager().pinned() > limit {
                    self.checkpoint_at(bounds)?;
                }
                Ok(())
            });
        }
        Ok(())
    }

    /// The hard limit of [`Inner::throttle`]: pinned pages of a database
    /// past which writers (and merges) wait for a flush.
    pub(crate) fn pinned_limit(&self) -> usize {
        ((self.opts.cache_pages as f64 * self.opts.dirty_fraction) as usize).max(8)
    }

    /// Asks the write daemon for a cycle now.
    fn kick_daemon(&self) {
        let (m, cv) = &self.daemon_wake;
        let mut w = m.lock();
        if !w.kick {
            w.kick = true;
            cv.notify_all();
        }
    }
}

/// Writes page images at their places in a database file and syncs it.
/// A run of consecutive pages goes in one (vectored) write, straight from
/// the images' buffers.
pub(crate) fn write_images(db: &Database, images: &[PageImage]) -> Result<()> {
    write_unsynced(db, images)?;
    sync_file(db)
}

/// Writes `images` to `db`'s file, coalescing runs of consecutive pages;
/// not synced.
fn write_unsynced(db: &Database, images: &[PageImage]) -> Result<()> {
    let ctx = || format!("write pages of {}", db.path.display());
    let mut sorted: Vec<&PageImage> = images.iter().collect();
    sorted.sort_by_key(|i| i.page_no);
    // Coalesce runs of consecutive pages into one write.
    let mut i = 0;
    while i < sorted.len() {
        let mut j = i + 1;
        while j < sorted.len() && sorted[j].page_no == sorted[j - 1].page_no + 1 && j - i < 128 {
            j += 1;
        }
        let at = sorted[i].page_no * PAGE_SIZE as u64;
        let written = if j == i + 1 {
            db.file.write_all_at(&sorted[i].data, at)
        } else {
            let run: Vec<&[u8]> = sorted[i..j].iter().map(|img| &img.data[..]).collect();
            db.file.write_all_vectored_at(&run, at)
        };
        written.map_err(|e| EngineError::io(ctx(), e))?;
        i = j;
    }
    Ok(())
}

fn sync_file(db: &Database) -> Result<()> {
    let ctx = || format!("sync {}", db.path.display());
    db.file.sync().map_err(|e| EngineError::io(ctx(), e))
}

pub(super) fn daemon(inner: Weak<Inner>, every: Duration) {
    loop {
        let Some(inner) = inner.upgrade() else { return };
        let kicked;
        {
            let (m, cv) = &inner.daemon_wake;
            let mut w = m.lock();
            if !w.stop && !w.kick {
                cv.wait_for(&mut w, every);
            }
            if w.stop {
                return;
            }
            kicked = w.kick;
            w.kick = false;
        }
        if inner.poison.lock().is_some() {
            return;
        }
        if let Err(e) = inner.merge_stale(!kicked) {
            tracing::error!(error = %e, "merging an idle or old insert buffer failed");
            return;
        }
        if let Err(e) = inner.checkpoint() {
            tracing::error!(error = %e, "write daemon cycle failed");
            return;
        }
    }
}
