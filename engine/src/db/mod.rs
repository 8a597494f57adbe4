//! The engine of one member: its databases, journal, write image journal,
//! write daemon and sessions.
//!
//! ```text
//! <data dir>/
//!   journal/            segment files (see `journal`)
//!   wij                 the write image journal (see `wij`)
//!   databases/NNNN-NAME.rdb   one file of 8 KiB pages per database
//! ```
//!
//! Write path: a writer takes its database's write lock, reads the
//! before-image, appends the journal record (memory only), changes the tree,
//! releases the lock, and then, if the change commits, waits for the
//! journal to be durable up to its record (group commit). Readers take the
//! read lock and never wait for disk writes or fsyncs.

mod apply;
mod database;
mod filter_build;
mod filter_file;
mod flush;
mod gate;
mod history;
mod locks;
mod merge;
mod pending;
mod recovery;
mod replica;
mod rewind;
mod scan;
mod seed;
mod session;
mod stalls;

#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use parking_lot::{Condvar, Mutex, RwLock};

pub use database::{valid_name as valid_database_name, Database};
pub use gate::Access;
pub use pending::PendingCommit;
pub use recovery::{wij_decision, RecoveryReport, WijAction};
pub use scan::Row;
pub use seed::{
    discard_interrupted_seed, holds_store, interrupted_seed, SeedDatabase, SeedInstall, SeedPlan,
    SeedSnapshot, SEEDING_MARKER,
};
pub use session::{Direction, Session};

use crate::error::{EngineError, Result};
use crate::journal::{Journal, JournalOptions, TxnId};
use crate::storage::os::OsFs;
use crate::storage::Vfs;
use crate::wij::Wij;
use crate::Lsn;
use locks::LockTable;

/// Largest value a SET accepts (encoded bytes).
pub const MAX_VALUE: usize = 16 << 20;

/// What the buffer pools hold, summed over the databases
/// ([`Engine::pool_stats`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PoolStats {
    /// The bound: `cache_pages` for each database.
    pub capacity_pages: u64,
    /// Memory held, in 8 KiB pages' worth: the pages' nodes as allocated
    /// (a decoded page takes more than its 8 KiB on disk), insert buffers
    /// and key filters (which share the bound).
    pub resident_pages: u64,
    /// Pages changed since the flush cycle that last wrote them.
    pub dirty_pages: u64,
    /// Keys waiting in insert buffers (see `docs/engine.md`).
    pub buffered_keys: u64,
    /// Databases whose insert buffer takes new keys: their key filter
    /// answers (not being built at open, not outgrown).
    pub buffering_databases: u64,
    /// Since the engine opened: keys merged from insert buffers into
    /// their leaves.
    #[serde(default)]
    pub merged_keys: u64,
    /// Of those, keys committers merged while their commit synced (work
    /// no write waited for; see `db/merge.rs`).
    #[serde(default)]
    pub sync_merged_keys: u64,
    /// Since the engine opened: merges a write ran or waited for because
    /// it filled its insert buffer, and their time in microseconds.
    #[serde(default)]
    pub writer_merges: u64,
    #[serde(default)]
    pub writer_merge_us: u64,
    /// Since the engine opened: waits of writes for a flush cycle (the
    /// pool's dirty budget spent), and their time in microseconds.
    #[serde(default)]
    pub flush_waits: u64,
    #[serde(default)]
    pub flush_wait_us: u64,
}

#[derive(Clone)]
pub struct EngineOptions {
    /// The file system: the OS, or a simulation in tests.
    pub vfs: Arc<dyn Vfs>,
    /// Buffer pool bound per database, in 8 KiB pages' worth of memory
    /// (enforced in bytes: a decoded page takes more than 8 KiB, so the
    /// pool holds somewhat fewer pages than this).
    pub cache_pages: usize,
    /// A database's dirty-page budget as a fraction of its pool (see
    /// `Inner::throttle`: the write daemon is woken at half of it, writers
    /// wait at all of it). 0.9 by default, as InnoDB's
    /// `innodb_max_dirty_pages_pct`: a cycle costs a handful of syncs
    /// whatever its size, so a write-heavy load larger than the pool
    /// flushes fewer, larger cycles (a random bulk load into a pool a
    /// quarter of its data ran about half as many cycles as with 0.5).
    pub dirty_fraction: f64,
    /// How much of a database's pool its insert buffer may fill before it
    /// is merged into the tree (capped at half of `dirty_fraction`; 0
    /// turns the buffer off). The buffer holds new keys whose leaves are
    /// not resident, so that a load of keys in random order into a
    /// database larger than its pool reads and writes each leaf once for
    /// many keys instead of once per key (`btree/buffer.rs`). A database
    /// buffers once its key filter has seen every key it holds: at once
    /// when created by this process, after a build at open otherwise
    /// (`db/filter_build.rs`). The filter takes up to another eighth of
    /// the pool (a quarter of `dirty_fraction` at most); both count
    /// against the pool's bound. Default 0.45 (with `dirty_fraction` 0.9, the cap): a random
    /// load four times its pool ran at 38k SETs/s with 0.25 and 45k with
    /// 0.45 (7.3 and 6.1 KB written per SET).
    pub insert_buffer_fraction: f64,
    pub journal: JournalOptions,
    /// How often the write daemon flushes; `None` runs no daemon (cycles
    /// then happen only when the pool needs room or on `checkpoint`).
    pub flush_interval: Option<Duration>,
    /// A mirror member: starts read-only, leaves unfinished transactions
    /// open at recovery (its journal must stay identical to the
    /// primary's), and rolls them back only when it becomes primary.
    pub mirrored: bool,
    /// How long a write waits while commits are paused before failing.
    pub pause_timeout: Duration,
    /// Mirror members: how long the journal's background flusher waits
    /// before a sync while commits arrive together (never for a lone
    /// committer), so that more of them share it; see
    /// `Journal::start_flusher`. Default 60 µs.
    pub commit_delay: Duration,
    /// Journal kept after every flush cycle, counted back from its end,
    /// whatever recovery needs: for followers that are away (a mirror
    /// member back within this much catches up by streaming; one further
    /// behind needs a seed). Segments older than this and than what
    /// recovery and connected followers need are removed. Default 1 GiB.
    pub journal_keep_bytes: u64,
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions {
            vfs: Arc::new(OsFs),
            cache_pages: 16 * 1024,
            dirty_fraction: 0.9,
            insert_buffer_fraction: 0.45,
            journal: JournalOptions::default(),
            flush_interval: Some(Duration::from_secs(1)),
            mirrored: false,
            pause_timeout: Duration::from_secs(30),
            commit_delay: Duration::from_micros(60),
            journal_keep_bytes: 1 << 30,
        }
    }
}

/// The share of a pool (1/n) a database's insert-buffer key filter may use.
const FILTER_SHARE: usize = 8;

/// One member's storage. Cloning shares it.
#[derive(Clone)]
pub struct Engine {
    // Dropped first: the guard of the last handle flushes through a weak
    // reference to `inner`, which must still be alive then.
    _daemon: Arc<DaemonGuard>,
    inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) opts: EngineOptions,
    pub(crate) dir: PathBuf,
    pub(crate) journal: Journal,
    pub(crate) wij: Mutex<Wij>,
    pub(crate) dbs: RwLock<HashMap<String, Arc<Database>>>,
    pub(crate) locks: LockTable,
    /// First journal position of every open transaction.
    pub(crate) open_txns: Mutex<BTreeMap<TxnId, Lsn>>,
    /// Transactions of closed sessions that could not be rolled back
    /// because commits were paused: rolled back when they resume, dropped
    /// if this member is demoted first (the new primary rolls them back);
    /// their locks stay held until then (`session::settle_orphans`).
    pub(crate) orphans: Mutex<Vec<session::Orphan>>,
    pub(crate) next_txn: AtomicU64,
    pub(crate) next_session: AtomicU64,
    pub(crate) poison: Mutex<Option<String>>,
    /// `poison` is set: the check on every write reads this flag only.
    pub(crate) poisoned: AtomicBool,
    /// Held for a whole flush cycle; holds buffers reused from cycle to
    /// cycle.
    pub(crate) cycle: Mutex<flush::CycleBuffers>,
    pub(crate) creating: Mutex<()>,
    /// The write daemon sleeps on this between cycles; see [`DaemonWake`].
    pub(crate) daemon_wake: (Mutex<DaemonWake>, Condvar),
    /// Where writers waited besides their commits (`stalls.rs`).
    pub(crate) stalls: stalls::WriteStalls,
    pub(crate) closed: AtomicBool,
    /// Applies records received from a primary (and tracks the open
    /// transactions of the journal).
    pub(crate) applier: Mutex<apply::Applier>,
    pub(crate) gate: gate::Gate,
    /// Where each epoch of the journal began.
    pub(crate) history: Mutex<history::History>,
    /// The journal flushes in the background (mirror members): commits
    /// wait in the gate only.
    pub(crate) background_flush: AtomicBool,
    /// The oldest journal position the mirror's followers still need
    /// (set by the member; `u64::MAX`: no follower constrains purging).
    pub(crate) journal_floor: AtomicU64,
    /// Copies in progress for seeding members (see `seed.rs`).
    pub(crate) seeds: Mutex<Vec<Arc<seed::FileCopy>>>,
}

/// Why the write daemon should wake before its interval ends.
#[derive(Debug, Default)]
pub(crate) struct DaemonWake {
    /// The engine is closing: end the thread.
    pub(crate) stop: bool,
    /// A writer found many dirty pages: run a cycle now (`flush.rs`).
    pub(crate) kick: bool,
}

struct DaemonGuard {
    inner: Weak<Inner>,
    thread: Mutex<Option<JoinHandle<()>>>,
    /// Builds large databases' key filters after open (`filter_build.rs`);
    /// stops at its next chunk once the engine is closed.
    filter_builder: Mutex<Option<JoinHandle<()>>>,
    /// The journal's background flusher (mirror members), stopped last.
    flusher: Mutex<Option<crate::journal::FlusherHandle>>,
    /// The journal's write-ahead thread (`Journal::start_write_ahead`).
    write_ahead: Mutex<Option<crate::journal::WriteAheadHandle>>,
}

impl Drop for DaemonGuard {
    fn drop(&mut self) {
        if let Some(inner) = self.inner.upgrade() {
            inner.stop_daemon();
            if let Some(t) = self.thread.lock().take() {
                let _ = t.join();
            }
            let was_closed = inner.closed.swap(true, Ordering::SeqCst);
            if let Some(t) = self.filter_builder.lock().take() {
                let _ = t.join();
            }
            if inner.poison.lock().is_none() && !was_closed {
                if let Err(e) = inner.final_flush() {
                    tracing::error!(error = %e, "final flush at shutdown failed");
                }
            }
        }
        drop(self.flusher.lock().take());
        drop(self.write_ahead.lock().take());
    }
}

impl Engine {
    /// Opens (creating if needed) the engine in `dir`, running crash
    /// recovery first.
    pub fn open(dir: &Path, opts: EngineOptions) -> Result<(Engine, RecoveryReport)> {
        let (inner, mut report) = recovery::open(dir, opts)?;
        let inner = Arc::new(inner);
        let (large, kept) = inner.start_filters(report.changes_replayed == 0);
        report.key_filters_kept = kept;
        let filter_builder = (!large.is_empty()).then(|| {
            let weak = Arc::downgrade(&inner);
            std::thread::Builder::new()
                .name("redoubt-key-filter".into())
                .spawn(move || filter_build::builder(weak, large))
                .expect("spawn key filter builder")
        });
        let thread = inner.opts.flush_interval.map(|every| {
            let weak = Arc::downgrade(&inner);
            std::thread::Builder::new()
                .name("redoubt-write-daemon".into())
                .spawn(move || flush::daemon(weak, every))
                .expect("spawn write daemon")
        });
        // A mirror member's journal flushes in the background: a commit
        // then waits for its own sync and the backup's acknowledgement in
        // one sleep (`Gate::wait_commit`), and no session thread spends its
        // time leading fsyncs.
        let flusher = inner.opts.mirrored.then(|| {
            inner.gate.local_durable(inner.journal.durable_lsn(), false);
            let weak = Arc::downgrade(&inner);
            let handle = inner
                .journal
                .start_flusher(inner.opts.commit_delay, move |durable| {
                    if let Some(inner) = weak.upgrade() {
                        let failed = inner.journal.is_poisoned();
                        inner.gate.local_durable(durable, failed);
                    }
                });
            inner.background_flush.store(true, Ordering::SeqCst);
            handle
        });
        let guard = DaemonGuard {
            inner: Arc::downgrade(&inner),
            flusher: Mutex::new(flusher),
            write_ahead: Mutex::new(Some(inner.journal.start_write_ahead())),
            thread: Mutex::new(thread),
            filter_builder: Mutex::new(filter_builder),
        };
        Ok((
            Engine {
                inner,
                _daemon: Arc::new(guard),
            },
            report,
        ))
    }

    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// A new session: the unit that owns transactions and locks.
    pub fn session(&self) -> Session {
        Session::new(self.inner.clone())
    }

    pub fn create_database(&self, name: &str) -> Result<()> {
        self.inner.create_database(name)
    }

    pub fn database_names(&self) -> Vec<String> {
        let mut v: Vec<String> = self.inner.dbs.read().keys().cloned().collect();
        v.sort();
        v
    }

    /// Merges the insert buffers and runs one write daemon cycle now:
    /// afterwards the database files hold every change made before, and
    /// recovery starts from here.
    pub fn checkpoint(&self) -> Result<()> {
        self.inner.check_poison()?;
        self.inner.merge_everything()?;
        self.inner.checkpoint()
    }

    /// Keys waiting in the databases' insert buffers (see
    /// [`EngineOptions::insert_buffer_fraction`]).
    pub fn buffered_keys(&self) -> usize {
        self.inner
            .dbs
            .read()
            .values()
            .map(|d| d.tree.read().buffered())
            .sum()
    }

    pub fn journal(&self) -> &Journal {
        &self.inner.journal
    }

    /// Verifies the structure of every database's tree.
    pub fn check(&self) -> Result<Vec<(String, crate::btree::TreeCheck)>> {
        let dbs: Vec<Arc<Database>> = self.inner.dbs.read().values().cloned().collect();
        let mut out = Vec::new();
        for db in dbs {
            let c = db
                .tree
                .read()
                .check()
                .map_err(|e| EngineError::tree(&db.name, e))?;
            out.push((db.name.clone(), c));
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
    }

    /// The buffer pools of all databases, summed (for status and metrics).
    pub fn pool_stats(&self) -> PoolStats {
        let dbs = self.inner.dbs.read();
        let stalls = self.inner.stalls.counts();
        let mut stats = PoolStats {
            capacity_pages: (self.inner.opts.cache_pages * dbs.len()) as u64,
            merged_keys: stalls.merged_keys,
            sync_merged_keys: stalls.sync_merged_keys,
            writer_merges: stalls.writer_merges,
            writer_merge_us: stalls.writer_merge_us,
            flush_waits: stalls.flush_waits,
            flush_wait_us: stalls.flush_wait_us,
            ..PoolStats::default()
        };
        for d in dbs.values() {
            let tree = d.tree.read();
            stats.resident_pages += tree.pager().resident() as u64;
            stats.dirty_pages += tree.pager().dirty_count() as u64;
            stats.buffered_keys += tree.buffered() as u64;
            stats.buffering_databases += u64::from(tree.answering_filter().is_some());
        }
        stats
    }

    /// Memory held by the databases' buffer pools, in 8 KiB pages' worth
    /// (see [`PoolStats::resident_pages`]; for memory checks).
    pub fn resident_pages(&self) -> usize {
        self.inner
            .dbs
            .read()
            .values()
            .map(|d| d.tree.read().pager().resident())
            .sum()
    }

    pub fn poisoned(&self) -> Option<String> {
        self.inner.poison.lock().clone()
    }

    /// Flushes everything and stops the write daemon. Also done on drop of
    /// the last handle.
    pub fn close(self) -> Result<()> {
        self.inner.stop_daemon();
        if let Some(t) = self._daemon.thread.lock().take() {
            let _ = t.join();
        }
        if self.inner.closed.swap(true, Ordering::SeqCst) {
            return Ok(());
        }
        if let Some(t) = self._daemon.filter_builder.lock().take() {
            let _ = t.join();
        }
        if let Some(why) = self.inner.poison.lock().clone() {
            return Err(EngineError::Poisoned(why));
        }
        self.inner.final_flush()
    }
}

impl Inner {
    /// At a clean shutdown: merges the insert buffers, flushes, marks the
    /// WIJ clean, and keeps the key filters for the next open.
    fn final_flush(&self) -> Result<()> {
        self.merge_everything()?;
        self.checkpoint()?;
        self.mark_clean()?;
        self.keep_filters();
        Ok(())
    }

    pub(crate) fn db(&self, name: &str) -> Result<Arc<Database>> {
        self.dbs
            .read()
            .get(name)
            .cloned()
            .ok_or_else(|| EngineError::NoSuchDatabase(name.to_string()))
    }

    /// Creates a database and journals its creation, so followers create
    /// it too.
    pub(crate) fn create_database(&self, name: &str) -> Result<()> {
        self.check_poison()?;
        if let Access::ReadOnly { .. } = self.gate.access() {
            return Err(EngineError::ReadOnly { primary: None });
        }
        self.create_database_unjournaled(name)?;
        let end = self.journal.append(&crate::journal::Record::Database {
            name: name.to_string(),
            time_us: now_us(),
        })?;
        self.journal.wait_durable(end)?;
        Ok(())
    }

    /// Creates the database file only (recovery and followers, which apply
    /// the journal's record of it).
    pub(crate) fn create_database_unjournaled(&self, name: &str) -> Result<()> {
        if !database::valid_name(name) {
            return Err(EngineError::BadDatabaseName(name.to_string()));
        }
        // One creation at a time; the file is written and synced without
        // holding the catalogue lock, so readers never wait for it.
        let _creating = self.creating.lock();
        let file_id = {
            let dbs = self.dbs.read();
            if dbs.contains_key(name) {
                return Err(EngineError::DatabaseExists(name.to_string()));
            }
            dbs.values().map(|d| d.file_id).max().unwrap_or(0) + 1
        };
        let db = Database::create(
            &*self.opts.vfs,
            &self.dir.join("databases"),
            file_id,
            name,
            self.opts.cache_pages,
        )?;
        if let Some((max, budget)) = self.buffer_limits() {
            db.tree.write().enable_insert_buffer(max, budget);
        }
        self.dbs.write().insert(name.to_string(), Arc::new(db));
        Ok(())
    }

    /// Returns once a commit whose last record ends at `end` may be
    /// acknowledged: durable here and, while the backup is synchronous,
    /// acknowledged by it.
    /// Starts making the journal durable up to `end` on another thread
    /// (the member's flusher, or else the journal's write-ahead thread),
    /// so the caller can work while it syncs.
    pub(crate) fn start_sync(&self, end: Lsn) {
        if self.background_flush.load(Ordering::Relaxed) {
            self.journal.request_flush();
        } else {
            self.journal.request_sync(end);
        }
    }

    pub(crate) fn wait_commit(&self, end: Lsn) -> Result<()> {
        if self.background_flush.load(Ordering::Relaxed) {
            self.journal.request_flush();
            self.gate.wait_commit(end, Some(&self.journal))
        } else {
            self.journal.wait_durable(end)?;
            self.gate.wait_commit(end, None)
        }
    }

    pub(crate) fn check_poison(&self) -> Result<()> {
        if self.closed.load(Ordering::SeqCst) {
            return Err(EngineError::Closed);
        }
        if !self.poisoned.load(Ordering::Acquire) {
            return Ok(());
        }
        match &*self.poison.lock() {
            Some(why) => Err(EngineError::Poisoned(why.clone())),
            None => Ok(()),
        }
    }

    /// Marks the store unusable for writes after a failure that left memory
    /// and disk disagreeing. Returns the error to hand to the caller.
    pub(crate) fn poison(&self, e: EngineError) -> EngineError {
        let mut p = self.poison.lock();
        if p.is_none() {
            tracing::error!(error = %e, "store poisoned; reopen to recover");
            *p = Some(e.to_string());
            self.poisoned.store(true, Ordering::Release);
        }
        e
    }

    fn stop_daemon(&self) {
        let (m, cv) = &self.daemon_wake;
        m.lock().stop = true;
        cv.notify_all();
    }
}

/// The wall clock for journal records' `time_us`, in microseconds since
/// the Unix epoch. On Linux it is the kernel's coarse clock (a few
/// milliseconds of resolution: 4 ms here): every SET reads it, and the
/// precise clock was 24 ns of a SET's ~1 µs in a key-order load, the
/// coarse one 7 ns. Records are ordered by their journal position, never
/// by this time, which says when to within the resolution.
pub(crate) fn now_us() -> u64 {
    #[cfg(target_os = "linux")]
    {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: clock_gettime writes one timespec through the pointer,
        // which points at a live local.
        if unsafe { libc::clock_gettime(libc::CLOCK_REALTIME_COARSE, &mut ts) } == 0 {
            return (ts.tv_sec as u64) * 1_000_000 + (ts.tv_nsec as u64) / 1_000;
        }
    }
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}
