//! Opening an engine: restore or verify the write image journal, open the
//! database files, then roll the journal forward from each database's
//! checkpoint and roll back the transactions that never ended.
//!
//! ## Write image journal: decision table
//!
//! | WIJ state | images verify | database pages equal images | action           |
//! |-----------|---------------|-----------------------------|------------------|
//! | empty     | –             | –                           | nothing          |
//! | active    | yes           | –                           | restore images   |
//! | active    | no            | –                           | refuse (corrupt) |
//! | clean     | yes           | yes                         | verified         |
//! | clean     | yes           | no                          | refuse (mismatch)|
//! | clean     | no            | –                           | refuse (corrupt) |
//!
//! `WIJ_CASES` holds this table; a test checks that every combination of
//! inputs matches exactly one row.
//!
//! ## Journal: what replay does with each record at position `p`
//!
//! A change is applied to database `D` only if `p >= D.redo_from`: earlier
//! changes are already in the pages written with `D`'s meta page. Records
//! from `min(undo_from)` on are read so that every change of a transaction
//! still open at some checkpoint is known, for undo.
//!
//! | record        | effect                                                      |
//! |---------------|-------------------------------------------------------------|
//! | Set / Kill    | apply (if `p >= redo_from`); remember before-image by txn   |
//! | TxnBegin      | note the transaction                                         |
//! | TxnCommit     | forget the transaction: it is durable history               |
//! | TxnRollback   | undo the txn's changes at or after `to`, newest first (each |
//! |               | undo applied if `p >= redo_from`); forget it if `full`       |
//! | Checkpoint, Epoch | nothing                                                 |
//!
//! At the end of the log, every transaction not forgotten never committed:
//! a full `TxnRollback` is journaled for it and its changes are undone, so
//! replaying the journal again (after another crash) does the same.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::Arc;

use parking_lot::{Condvar, Mutex, RwLock};

use super::apply::Applier;
use super::database::{self, Database};
use super::flush::write_images;
use super::gate::{Access, Gate};
use super::{DaemonWake, EngineOptions, Inner, LockTable};
use crate::error::{EngineError, Result};
use crate::journal::{Journal, Record, TxnId};
use crate::storage::{OpenMode, VfsFile};
use crate::wij::{PageImage, Wij, WijState, PAGE_SIZE};
use crate::Lsn;

/// What the write image journal looked like at startup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WijKind {
    Empty,
    Clean,
    Active,
}

/// What startup does about the write image journal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WijAction {
    Nothing,
    Restore,
    Verified,
    RefuseCorrupt,
    RefuseMismatch,
}

/// The decision table above: (state, images verify, pages match) with
/// `None` meaning "either".
pub const WIJ_CASES: &[(WijKind, Option<bool>, Option<bool>, WijAction)] = &[
    (WijKind::Empty, None, None, WijAction::Nothing),
    (WijKind::Active, Some(true), None, WijAction::Restore),
    (WijKind::Active, Some(false), None, WijAction::RefuseCorrupt),
    (WijKind::Clean, Some(true), Some(true), WijAction::Verified),
    (
        WijKind::Clean,
        Some(true),
        Some(false),
        WijAction::RefuseMismatch,
    ),
    (WijKind::Clean, Some(false), None, WijAction::RefuseCorrupt),
];

/// Looks up the table; panics only if the table is incomplete (tested).
pub fn wij_decision(kind: WijKind, images_ok: bool, pages_match: bool) -> WijAction {
    let rows: Vec<_> = WIJ_CASES
        .iter()
        .filter(|(k, i, p, _)| {
            *k == kind && i.is_none_or(|i| i == images_ok) && p.is_none_or(|p| p == pages_match)
        })
        .collect();
    assert_eq!(rows.len(), 1, "WIJ decision table must match exactly once");
    rows[0].3
}

/// What recovery found and did.
#[derive(Debug, Clone, Default)]
pub struct RecoveryReport {
    pub wij: Option<WijAction>,
    pub restored_pages: usize,
    pub journal_dropped_bytes: u64,
    pub replay_from: Lsn,
    pub replay_to: Lsn,
    pub records_replayed: u64,
    /// Of those, SETs and KILLs (changes to a tree).
    pub changes_replayed: u64,
    pub rolled_back: Vec<TxnId>,
    /// (mirror members) transactions left open for the primary to finish.
    pub open_transactions: Vec<TxnId>,
    pub removed_unfinished_databases: Vec<String>,
    /// Databases whose insert-buffer key filter was kept from the last
    /// clean shutdown instead of built from their keys (`filter_file.rs`).
    pub key_filters_kept: Vec<String>,
}

struct DbFile {
    path: std::path::PathBuf,
    name: String,
    file_id: u32,
    file: Arc<dyn VfsFile>,
}

pub(super) fn open(dir: &Path, opts: EngineOptions) -> Result<(Inner, RecoveryReport)> {
    let vfs = opts.vfs.clone();
    if super::seed::interrupted_seed(&*vfs, dir) {
        return Err(EngineError::BadDatabaseFile {
            path: dir.join(super::seed::SEEDING_MARKER).display().to_string(),
            reason: "a seed into this folder never finished; it holds no usable store \
                     (a member seeds again at its next start)"
                .into(),
        });
    }
    let db_dir = dir.join("databases");
    for d in [dir.to_path_buf(), db_dir.clone(), dir.join("journal")] {
        vfs.create_dir_all(&d)
            .map_err(|e| EngineError::io(format!("create {}", d.display()), e))?;
    }
    let mut report = RecoveryReport::default();

    // 1. Database files, by file id.
    let mut files = Vec::new();
    let listing = vfs
        .list(&db_dir)
        .map_err(|e| EngineError::io(format!("list {}", db_dir.display()), e))?;
    let markers: Vec<(u32, String)> = listing
        .iter()
        .filter_map(|p| database::parse_marker_name(p))
        .collect();
    for path in &listing {
        if let Some(id_name) = database::parse_marker_name(path) {
            if !listing
                .iter()
                .any(|p| database::parse_file_name(p).as_ref() == Some(&id_name))
            {
                remove_unfinished(&*vfs, path, &mut report)?;
            }
            continue;
        }
        let Some((file_id, name)) = database::parse_file_name(path) else {
            continue;
        };
        if !markers.contains(&(file_id, name.clone())) {
            remove_unfinished(&*vfs, path, &mut report)?;
            report.removed_unfinished_databases.push(name);
            continue;
        }
        let file = vfs
            .open(path, OpenMode::Existing)
            .map_err(|e| EngineError::io(format!("open {}", path.display()), e))?;
        files.push(DbFile {
            path: path.clone(),
            name,
            file_id,
            file,
        });
    }
    vfs.sync_dir(&db_dir)
        .map_err(|e| EngineError::io(format!("sync {}", db_dir.display()), e))?;

    // 2. The write image journal.
    let mut wij = Wij::open(vfs.clone(), &dir.join("wij"))?;
    let kind = match wij.state() {
        WijState::Empty => WijKind::Empty,
        WijState::Clean { .. } => WijKind::Clean,
        WijState::Active { .. } => WijKind::Active,
    };
    let images = match kind {
        WijKind::Empty => Ok(Vec::new()),
        _ => wij.images(),
    };
    let mismatches = match (&images, kind) {
        (Ok(images), WijKind::Clean) => compare_images(&files, images)?,
        _ => Vec::new(),
    };
    let action = wij_decision(kind, images.is_ok(), mismatches.is_empty());
    report.wij = Some(action);
    match action {
        WijAction::Nothing | WijAction::Verified => {}
        WijAction::Restore => {
            let images = images?;
            for f in &files {
                let mine: Vec<PageImage> = images
                    .iter()
                    .filter(|i| i.file_id == f.file_id)
                    .cloned()
                    .collect();
                restore(f, &mine)?;
            }
            report.restored_pages = images.len();
            wij.end_cycle()?;
            tracing::warn!(
                pages = report.restored_pages,
                "restored pages from the active write image journal"
            );
        }
        WijAction::RefuseCorrupt => {
            return Err(images.err().map(EngineError::from).unwrap_or_else(|| {
                EngineError::BadDatabaseFile {
                    path: dir.join("wij").display().to_string(),
                    reason: "unreadable".into(),
                }
            }))
        }
        WijAction::RefuseMismatch => {
            return Err(EngineError::WijMismatch {
                pages: mismatches.join(", "),
            })
        }
    }

    // 3. Open the databases.
    let mut dbs = HashMap::new();
    for f in files {
        let db = Database::open(f.file, f.path, opts.cache_pages)?;
        dbs.insert(db.name.clone(), Arc::new(db));
    }

    // 4. The journal, trusting everything before the newest checkpoint:
    // the journal end its cycle made durable, which meta pages carry as
    // their stamp (`redo_from` may be lower, for keys in insert buffers).
    let mut known_durable = 0;
    for d in dbs.values() {
        known_durable = known_durable.max(database::read_meta_stamp(&*d.file, &d.path)?);
    }
    let (journal, jreport) = Journal::open(
        vfs.clone(),
        &dir.join("journal"),
        opts.journal,
        Lsn(known_durable),
    )?;
    report.journal_dropped_bytes = jreport.dropped_bytes;

    let mut history = super::history::History::open(&*vfs, dir.join("epochs"))?;
    // Epochs recorded for records the journal lost (written, never durable).
    history.cut(journal.end_lsn())?;
    let opts_mirrored = opts.mirrored;
    let pause_timeout = opts.pause_timeout;
    let inner = Inner {
        opts,
        dir: dir.to_path_buf(),
        journal,
        wij: Mutex::new(wij),
        dbs: RwLock::new(dbs),
        locks: LockTable::default(),
        open_txns: Mutex::new(BTreeMap::new()),
        orphans: Mutex::new(Vec::new()),
        next_txn: AtomicU64::new(1),
        next_session: AtomicU64::new(1),
        poison: Mutex::new(None),
        poisoned: AtomicBool::new(false),
        cycle: Mutex::new(Default::default()),
        creating: Mutex::new(()),
        daemon_wake: (Mutex::new(DaemonWake::default()), Condvar::new()),
        stalls: Default::default(),
        closed: AtomicBool::new(false),
        applier: Mutex::new(Applier::default()),
        history: Mutex::new(history),
        seeds: Mutex::new(Vec::new()),
        background_flush: AtomicBool::new(false),
        journal_floor: AtomicU64::new(u64::MAX),
        gate: Gate::new(
            if opts_mirrored {
                Access::ReadOnly { primary: None }
            } else {
                Access::Primary { epoch: 0 }
            },
            pause_timeout,
        ),
    };
    replay(&inner, &mut report)?;
    Ok((inner, report))
}

/// Pages whose bytes differ from the clean WIJ's images, as "file:page".
fn compare_images(files: &[DbFile], images: &[PageImage]) -> Result<Vec<String>> {
    let mut bad = Vec::new();
    let mut buf = vec![0u8; PAGE_SIZE];
    for img in images {
        let Some(f) = files.iter().find(|f| f.file_id == img.file_id) else {
            bad.push(format!(
                "file id {} (missing) page {}",
                img.file_id, img.page_no
            ));
            continue;
        };
        let n = f
            .file
            .read_at(&mut buf, img.page_no * PAGE_SIZE as u64)
            .map_err(|e| EngineError::io(format!("read {}", f.path.display()), e))?;
        if n != PAGE_SIZE || buf != img.data {
            bad.push(format!("{} page {}", f.path.display(), img.page_no));
        }
    }
    Ok(bad)
}

fn remove_unfinished(
    vfs: &dyn crate::storage::Vfs,
    path: &Path,
    report: &mut RecoveryReport,
) -> Result<()> {
    tracing::warn!(file = %path.display(), "removing a database file whose creation never finished");
    let _ = report;
    vfs.remove(path)
        .map_err(|e| EngineError::io(format!("remove {}", path.display()), e))
}

fn restore(f: &DbFile, images: &[PageImage]) -> Result<()> {
    if images.is_empty() {
        return Ok(());
    }
    // Reuse the daemon's writer through a throwaway handle on the file.
    let meta_stub = crate::btree::Tree::open(
        f.file.clone(),
        16,
        crate::btree::node::Meta {
            file_id: f.file_id,
            name: f.name.clone(),
            root: 1,
            page_count: 2,
            free_head: 0,
            redo_from: 0,
            undo_from: 0,
        },
    )
    .map_err(|e| EngineError::tree(&f.name, e))?;
    let db = Database {
        name: f.name.clone(),
        file_id: f.file_id,
        path: f.path.clone(),
        file: f.file.clone(),
        tree: RwLock::new(meta_stub),
        merging: Mutex::new(()),
        idle_mark: std::sync::atomic::AtomicU64::new(0),
    };
    write_images(&db, images)
}

fn replay(inner: &Inner, report: &mut RecoveryReport) -> Result<()> {
    let dbs: Vec<Arc<Database>> = inner.dbs.read().values().cloned().collect();
    // A database never flushed (its meta still as created, redo_from 0)
    // has all its records after its creation record, which is after any
    // purge of the journal (purges keep what every database listed at the
    // time needs, and a database created later journals after that): it
    // needs the journal only from the oldest position held.
    let oldest = inner.journal.oldest_lsn().0;
    let from = dbs
        .iter()
        .map(|d| {
            let m = d.tree.read();
            if m.meta().redo_from == 0 {
                oldest
            } else {
                m.meta().undo_from.min(m.meta().redo_from)
            }
        })
        .min()
        .unwrap_or(oldest);
    let from = Lsn(from);
    report.replay_from = from;
    let limit = (inner.opts.cache_pages as f64 * inner.opts.dirty_fraction) as usize;
    let mut applier = Applier::new(from);
    let mut reader = inner.journal.read_from(from)?;
    while let Some(item) = reader.next() {
        let (lsn, rec) = item?;
        let db = match &rec {
            Record::Set { db, .. } | Record::Kill { db, .. } => Some(db.clone()),
            _ => None,
        };
        applier.apply(inner, lsn, reader.position(), rec, false)?;
        report.records_replayed += 1;
        report.replay_to = lsn;
        if let Some(db) = db {
            report.changes_replayed += 1;
            throttle_replay(inner, &*inner.db(&db)?, lsn, &applier, limit)?;
        }
    }
    if !inner.opts.mirrored {
        // Transactions that never ended: journal their rollback, then undo.
        // (A mirror member keeps them open: its journal must stay the
        // primary's, and it rolls them back only if it becomes primary.)
        report.rolled_back = applier.roll_back_open(inner)?;
    }
    applier.applied = inner.journal.end_lsn();
    inner.journal.wait_durable(inner.journal.end_lsn())?;
    // Transaction ids are unique for the life of the journal: each id is
    // at most the journal's end when it was taken (every transaction
    // journals a begin record), so starting from today's end never reuses
    // one.
    inner.next_txn.fetch_max(
        inner.journal.end_lsn().0.max(1),
        std::sync::atomic::Ordering::SeqCst,
    );
    report.open_transactions = applier.open_txns();
    *inner.applier.lock() = applier;
    if report.records_replayed > 0 || !report.rolled_back.is_empty() {
        inner.checkpoint()?;
    }
    if !report.rolled_back.is_empty() {
        tracing::warn!(txns = ?report.rolled_back, "rolled back transactions that never committed");
    }
    Ok(())
}

/// Flushes mid-replay when the pool fills, so recovering a journal larger
/// than memory stays within the pool bound. The checkpoint's bounds are the
/// replay position, not the journal's end.
fn throttle_replay(
    inner: &Inner,
    db: &Database,
    lsn: Lsn,
    applier: &Applier,
    limit: usize,
) -> Result<()> {
    // Pinned memory, not a count of dirty pages: a decoded page takes
    // more than a page of the bound.
    if db.tree.read().pager().pinned() <= limit.max(8) {
        return Ok(());
    }
    // Replaying the record at `lsn` again is harmless; resume there.
    let next = lsn;
    let undo = applier.oldest_open().unwrap_or(next).min(next);
    inner.checkpoint_at(Some((next, undo)))
}
