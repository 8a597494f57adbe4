//! Merging databases' insert buffers into their trees (see
//! `btree/buffer.rs`).
//!
//! | when                                   | who                 | how much          |
//! |----------------------------------------|---------------------|-------------------|
//! | a write filled the buffer              | that writer         | 1/64 of its share, from where the last merge stopped |
//! | a TCOMMIT finds the buffer above what  | that committer,     | [`SYNC_STEP`] keys at a time until the commit is durable or the buffer is back there |
//! | a writer's merge leaves (engines with  | while its commit    |                   |
//! | a write daemon)                        | syncs               |                   |
//! | a KILL finds keys                      | that writer         | all of it         |
//! | clean shutdown, `checkpoint`           | the caller          | all of it         |
//! | a daemon tick finds no key added since | the write daemon    | all of it         |
//! | the tick before                        |                     |                   |
//! | its oldest key is [`MAX_LAG`] of       | the write daemon    | all of it         |
//! | journal behind the end                 |                     |                   |
//!
//! Merging goes in chunks of [`CHUNK`] keys, in key order, one hold of the
//! database's write lock each: readers get in between, and the pool's
//! bound is kept between chunks by the same throttle writers obey (a merge
//! dirties leaves as writes do). A merge changes no data, only where it
//! lives, so it journals nothing.
//!
//! The committer's merge is work the next writes would otherwise stall
//! for, done while its own thread would idle through the disk's flush
//! (session 16, random load of 2.3M rows into a 64 MiB pool, three paired
//! runs: 239k/238k/236k SETs/s against 215k/217k/214k; writers' merges 353
//! taking 1.2 s against 730 taking 3.1 s).

use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::{Database, Inner};
use crate::btree::Tree;
use crate::error::{EngineError, Result};
use crate::Lsn;

/// Keys merged per hold of the write lock.
const CHUNK: usize = 256;

/// Keys merged per step while a commit syncs: small, so a commit whose
/// sync ends mid-step is acknowledged at most about this many keys' merge
/// (some 100 µs) later than it could have been.
const SYNC_STEP: usize = 64;

/// Journal bytes a buffered key may fall behind the journal's end before
/// the write daemon merges its buffer: buffered keys hold `redo_from`
/// back, so this bounds the replay they add to recovery and the journal
/// they keep from being purged.
pub(crate) const MAX_LAG: u64 = 256 << 20;

impl Inner {
    /// Called by a writer whose write left the buffer full: merges, from
    /// where the last merge stopped, until the buffer is a sixty-fourth of
    /// its share below it (one writer merges at a time; the others wait
    /// for it, which bounds the buffer while writers outpace the merge).
    /// A stall of one sixty-fourth of a whole merge, at the same keys per
    /// leaf written: each region of keys still waits a whole turn.
    /// Counted as a writer's stall (`stalls.rs`), the wait for another
    /// writer's merge included.
    pub(crate) fn merge_full(&self, db: &Database) -> Result<()> {
        self.stalls.writer_merge(|| {
            let _one = db.merging.lock();
            while db.tree.read().buffer_above_low_water() {
                if self.merge_some(db, CHUNK)? == 0 {
                    break;
                }
            }
            Ok(())
        })
    }

    /// Called by a committer whose commit record is appended, before it
    /// waits for it to be durable: if a database's buffer is nearly full
    /// (above the level a writer's merge leaves it at), starts the sync
    /// on another thread and merges that buffer [`SYNC_STEP`] keys at a
    /// time until the journal is durable past `end` or the buffer is back
    /// at that level. The merge the next writes would have stalled for is
    /// then done while this one waits for the disk anyway. A failed merge
    /// has poisoned the store (later writes are refused); the commit's
    /// outcome is still its sync's, so the error is not returned here.
    pub(crate) fn merge_while_syncing(&self, end: Lsn) {
        // Without a write daemon the engine does nothing in the background
        // (and crash tests count on every sync in the same order).
        if self.opts.flush_interval.is_none() || self.journal.durable_lsn() >= end {
            return;
        }
        let dbs: Vec<Arc<Database>> = self
            .dbs
            .read()
            .values()
            .filter(|d| d.tree.read().buffer_above_low_water())
            .cloned()
            .collect();
        if dbs.is_empty() {
            return;
        }
        self.start_sync(end);
        for db in dbs {
            // Another thread merging it is as good.
            let Some(_one) = db.merging.try_lock() else {
                continue;
            };
            while self.journal.durable_lsn() < end && db.tree.read().buffer_above_low_water() {
                match self.merge_some(&db, SYNC_STEP) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => self.stalls.merged_while_syncing(n),
                }
            }
        }
    }

    /// Merges up to `n` keys (fewer if the buffer empties first); how
    /// many it merged.
    fn merge_some(&self, db: &Database, n: usize) -> Result<usize> {
        let mut left = n;
        while left > 0 {
            // Not `check_poison`: the last flush merges after closing.
            if let Some(why) = self.poison.lock().clone() {
                return Err(EngineError::Poisoned(why));
            }
            self.throttle(db)?;
            let moved = self.merge_locked(&mut db.tree.write(), db, left.min(CHUNK))?;
            if moved == 0 {
                break;
            }
            left -= moved.min(left);
        }
        Ok(n - left)
    }

    /// Merges up to `n` keys under the caller's write lock, fewer if the
    /// pool fills with dirty pages. A failure leaves the tree half
    /// changed: it poisons the store.
    fn merge_locked(&self, tree: &mut Tree, db: &Database, n: usize) -> Result<usize> {
        let moved = tree
            .merge(n, self.pinned_limit())
            .map_err(|e| self.poison(EngineError::tree(&db.name, e)))?;
        self.stalls.merged(moved);
        Ok(moved)
    }

    /// Merges every key under the caller's write lock, whatever the pool
    /// (it may overshoot by the keys that arrived since the caller last
    /// merged in chunks: few).
    pub(crate) fn merge_rest_locked(&self, tree: &mut Tree, db: &Database) -> Result<()> {
        let moved = tree
            .merge(usize::MAX, usize::MAX)
            .map_err(|e| self.poison(EngineError::tree(&db.name, e)))?;
        self.stalls.merged(moved);
        Ok(())
    }

    /// Merges the database's whole buffer, in chunks.
    pub(crate) fn merge_all(&self, db: &Database) -> Result<()> {
        let _one = db.merging.lock();
        self.merge_some(db, usize::MAX).map(|_| ())
    }

    /// Called by the write daemon before each cycle (`tick`: woken by its
    /// timer, not by a writer): merges the buffers that are idle (no key
    /// added since the previous tick) or old (see [`MAX_LAG`]). A buffer
    /// left behind by a load that ended would otherwise cost every write
    /// and read of the database a filter lookup, and recovery a longer
    /// replay.
    pub(crate) fn merge_stale(&self, tick: bool) -> Result<()> {
        let end = self.journal.end_lsn().0;
        let dbs: Vec<_> = self.dbs.read().values().cloned().collect();
        for db in dbs {
            let (buffered, added, oldest) = {
                let tree = db.tree.read();
                (
                    tree.buffered(),
                    tree.buffer_additions(),
                    tree.buffer_oldest(),
                )
            };
            let idle = tick && db.idle_mark.swap(added, Ordering::Relaxed) == added;
            let old = oldest.is_some_and(|o| end.saturating_sub(o) > MAX_LAG);
            if buffered > 0 && (idle || old) {
                self.merge_all(&db)?;
            }
        }
        Ok(())
    }

    /// Merges every database's buffer (before the last flush at shutdown,
    /// so the files hold everything).
    pub(crate) fn merge_everything(&self) -> Result<()> {
        let dbs: Vec<_> = self.dbs.read().values().cloned().collect();
        dbs.iter().try_for_each(|db| self.merge_all(db))
    }
}
