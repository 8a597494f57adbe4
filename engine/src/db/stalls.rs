//! Where writers wait besides their commits: merges of a full insert
//! buffer and flush cycles the pool needed; and the merging committers
//! did while their commits synced, which no writer waits for. Counted since the engine
//! opened, reported in [`PoolStats`](super::PoolStats) and as metrics, so
//! an operator can tell why writes slow down.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

/// Counters of one engine; every field only grows.
#[derive(Default)]
pub(crate) struct WriteStalls {
    /// Merges a write ran (or waited for) because it filled its buffer.
    writer_merges: AtomicU64,
    writer_merge_us: AtomicU64,
    /// Keys any merge moved from a buffer into their leaves.
    merged_keys: AtomicU64,
    /// Of those, keys a committer merged while its commit synced.
    sync_merged_keys: AtomicU64,
    /// Times a write found the pool's dirty budget spent and waited for a
    /// flush cycle (the daemon's, or one it ran).
    flush_waits: AtomicU64,
    flush_wait_us: AtomicU64,
}

/// The counters as read at one moment.
pub(crate) struct StallCounts {
    pub writer_merges: u64,
    pub writer_merge_us: u64,
    pub merged_keys: u64,
    pub sync_merged_keys: u64,
    pub flush_waits: u64,
    pub flush_wait_us: u64,
}

impl WriteStalls {
    /// Runs a writer's merge, counting it and its time.
    pub(crate) fn writer_merge<R>(&self, f: impl FnOnce() -> R) -> R {
        timed(&self.writer_merges, &self.writer_merge_us, f)
    }

    /// Runs a writer's wait for a flush cycle, counting it and its time.
    pub(crate) fn flush_wait<R>(&self, f: impl FnOnce() -> R) -> R {
        timed(&self.flush_waits, &self.flush_wait_us, f)
    }

    pub(crate) fn merged(&self, keys: usize) {
        self.merged_keys.fetch_add(keys as u64, Ordering::Relaxed);
    }

    pub(crate) fn merged_while_syncing(&self, keys: usize) {
        self.sync_merged_keys
            .fetch_add(keys as u64, Ordering::Relaxed);
    }

    pub(crate) fn counts(&self) -> StallCounts {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        StallCounts {
            writer_merges: get(&self.writer_merges),
            writer_merge_us: get(&self.writer_merge_us),
            merged_keys: get(&self.merged_keys),
            sync_merged_keys: get(&self.sync_merged_keys),
            flush_waits: get(&self.flush_waits),
            flush_wait_us: get(&self.flush_wait_us),
        }
    }
}

fn timed<R>(count: &AtomicU64, us: &AtomicU64, f: impl FnOnce() -> R) -> R {
    let start = Instant::now();
    let r = f();
    count.fetch_add(1, Ordering::Relaxed);
    us.fetch_add(start.elapsed().as_micros() as u64, Ordering::Relaxed);
    r
}
