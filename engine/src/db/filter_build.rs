//! Building the insert buffer's key filter (`btree/filter.rs`) for
//! databases opened from their files: a database created by this process
//! starts with an empty filter; one opened from disk has keys no filter
//! has seen, so its buffer stays off until they are all added.
//!
//! The filter is installed first, empty and *building*: from then on every
//! key the tree gains is added to it. The build then reads the tree's keys
//! in order, [`CHUNK`] at a time under the read lock, and adds them under
//! the write lock. A key added behind the build's position was added by
//! its writer; one ahead of it is read by the build. When the build
//! reaches the end the filter answers and the buffer starts taking keys.
//!
//! Databases up to [`SYNC_POOLS`] times the pool are built during
//! `Engine::open`; larger ones by a background thread, which stops when the
//! engine closes.

use std::sync::{Arc, Weak};

use super::filter_file::{self, Stamp};
use super::{Database, Inner};
use crate::error::{EngineError, Result};

/// Keys read per hold of the read lock.
const CHUNK: usize = 4096;
/// Databases up to this many pools are built at open.
const SYNC_POOLS: u64 = 4;

impl Inner {
    /// `(entries' share of the pool in bytes, filter budget in bytes)` of
    /// each database's insert buffer; `None` if the buffer is off.
    pub(crate) fn buffer_limits(&self) -> Option<(usize, usize)> {
        // Entries and filter together stay under three quarters of the
        // dirty budget, which counts them (a flush cannot free them).
        let pool = self.opts.cache_pages * crate::wij::PAGE_SIZE;
        let dirty = self.opts.dirty_fraction;
        let share = self.opts.insert_buffer_fraction.min(dirty / 2.0);
        let filter = (1.0 / super::FILTER_SHARE as f64).min(dirty / 4.0);
        (share > 0.0).then_some((
            (pool as f64 * share) as usize,
            (pool as f64 * filter) as usize,
        ))
    }

    /// Starts a filter for every database without one: the one kept at
    /// the last clean shutdown if it is sound (`filter_file.rs`;
    /// `replayed_nothing`: recovery replayed no SET or KILL), else builds the
    /// small ones now and returns the others, for [`builder`]. A build
    /// that fails (a corrupt page) is logged and leaves that buffer off:
    /// reads report the page as they would have.
    /// Also returns the names of the databases whose filter was kept.
    pub(crate) fn start_filters(
        &self,
        replayed_nothing: bool,
    ) -> (Vec<Arc<Database>>, Vec<String>) {
        let limits = self.buffer_limits();
        let dbs: Vec<_> = self.dbs.read().values().cloned().collect();
        let (mut later, mut kept_names) = (Vec::new(), Vec::new());
        for db in dbs {
            let pages = {
                let mut tree = db.tree.write();
                let stamp = Stamp::of(self.journal.end_lsn().0, tree.meta());
                let budget = limits.map_or(0, |(_, budget)| budget);
                let kept = filter_file::take(&*self.opts.vfs, &db.path, stamp, budget);
                let Some((max, budget)) = limits else {
                    continue;
                };
                if tree.has_filter() {
                    continue;
                }
                match kept {
                    Some(Ok(filter)) if replayed_nothing => {
                        tracing::debug!(database = %db.name, "insert buffer key filter kept from the last shutdown");
                        tree.start_filter_with(max, filter);
                        kept_names.push(db.name.clone());
                        continue;
                    }
                    Some(Ok(_)) => tracing::info!(
                        database = %db.name,
                        "the key filter kept at the last shutdown is not used: recovery replayed changes; building it"
                    ),
                    Some(Err(why)) => tracing::info!(
                        database = %db.name,
                        reason = %why,
                        "the key filter kept at the last shutdown is not used; building it"
                    ),
                    None => {}
                }
                tree.start_filter(max, budget);
                tree.meta().page_count
            };
            if pages <= SYNC_POOLS * self.opts.cache_pages as u64 {
                if let Err(e) = self.build_filter(&db) {
                    warn_unbuilt(&db, &e);
                }
            } else {
                later.push(db);
            }
        }
        kept_names.sort();
        (later, kept_names)
    }

    /// Adds the tree's keys to its (started) filter and makes it answer.
    /// False if the engine closed first.
    pub(crate) fn build_filter(&self, db: &Database) -> Result<bool> {
        let t = |e| EngineError::tree(&db.name, e);
        let mut from = Vec::new();
        let mut keys: Vec<Vec<u8>> = Vec::with_capacity(CHUNK);
        loop {
            if self.closed.load(std::sync::atomic::Ordering::SeqCst) {
                return Ok(false);
            }
            keys.clear();
            {
                let tree = db.tree.read();
                let mut c = tree.seek(&from).map_err(t)?;
                while let Some(k) = c.key() {
                    keys.push(k.to_vec());
                    if keys.len() == CHUNK {
                        break;
                    }
                    c.advance(&tree).map_err(t)?;
                }
            }
            let mut tree = db.tree.write();
            tree.note_keys(keys.iter().map(Vec::as_slice));
            match keys.last() {
                Some(last) if keys.len() == CHUNK => {
                    // Resume just after it: the smallest longer key.
                    from.clone_from(last);
                    from.push(0);
                }
                _ => {
                    tree.filter_built();
                    return Ok(true);
                }
            }
        }
    }
}

impl Inner {
    /// At a clean shutdown, after the last flush: keeps every answering
    /// key filter for the next open (`filter_file.rs`). Best effort.
    pub(crate) fn keep_filters(&self) {
        // The stamp names the journal's end as the next open finds it:
        // all of it durable (the last cycle's checkpoint record too).
        if let Err(e) = self.journal.flush() {
            tracing::warn!(error = %e, "could not keep the key filters; the next open builds them");
            return;
        }
        let end = self.journal.durable_lsn().0;
        let dbs: Vec<_> = self.dbs.read().values().cloned().collect();
        for db in dbs {
            let tree = db.tree.read();
            let Some(filter) = tree.answering_filter() else {
                continue;
            };
            let stamp = Stamp::of(end, tree.meta());
            if let Err(e) = filter_file::save(&*self.opts.vfs, &db.path, stamp, filter) {
                tracing::warn!(
                    database = %db.name,
                    error = %e,
                    "could not keep the key filter; the next open builds it"
                );
            }
        }
    }
}

/// The background build of the filters of large databases.
pub(super) fn builder(inner: Weak<Inner>, dbs: Vec<Arc<Database>>) {
    for db in dbs {
        let Some(inner) = inner.upgrade() else { return };
        let started = std::time::Instant::now();
        match inner.build_filter(&db) {
            Ok(true) => tracing::info!(
                database = %db.name,
                seconds = started.elapsed().as_secs_f64(),
                "insert buffer key filter built"
            ),
            Ok(false) => return,
            Err(e) => warn_unbuilt(&db, &e),
        }
    }
}

/// A build failed: the filter goes (it would learn keys forever and
/// never answer).
fn warn_unbuilt(db: &Database, e: &EngineError) {
    db.tree.write().drop_filter();
    tracing::warn!(
        database = %db.name,
        error = %e,
        "building the insert buffer's key filter failed; the buffer stays off"
    );
}
