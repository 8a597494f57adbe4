//! Seeding: a copy of a running engine's databases, taken while writes go
//! on, plus the journal from the copy's start, from which a new member (or
//! one that lost its disk) builds a store that then follows the primary.
//!
//! ## The copy
//!
//! Between two flush cycles the database files hold one consistent cycle
//! (see `flush.rs`): every change before the meta page's `redo_from` and
//! nothing the journal cannot rebuild. [`Engine::begin_seed`] runs a cycle
//! and, still holding the cycle lock, notes each file's page count and the
//! journal's durable end `E`. From then on the copy reads the files as they
//! are on disk, in page order, while later cycles go on writing them: a
//! cycle that is about to overwrite a page the copy has not read yet first
//! keeps the page's old bytes for it (copy-on-write, `preserve_for_seeds`).
//! So the copy is exactly the files as of that cycle, whatever happens
//! after, and no writer ever waits for it.
//!
//! ## The journal part
//!
//! Opening the copy replays the journal from `U` = the oldest
//! `undo_from`/`redo_from` of its meta pages (changes after `redo_from`,
//! and the transactions still open at the cycle, for undo). So a seed is:
//! the pages, the journal bytes `[U, E)` exactly as the primary stores
//! them, and the epoch history before `E`. The new member's journal starts
//! at `U` (positions mean the same on every member), and it streams from
//! `E` like any follower.
//!
//! ## Installing
//!
//! [`SeedInstall`] writes into the member's (empty) data folder. A marker
//! file `seeding` is made durable first and removed last: a folder with the
//! marker is an interrupted seed, which [`Engine::open`] refuses and
//! [`discard_interrupted_seed`] clears, never half a store.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::Mutex;

use super::database::{self, Database};
use super::history::History;
use super::{Engine, Inner};
use crate::btree::page;
use crate::error::{EngineError, Result};
use crate::journal::{Journal, JournalOptions};
use crate::storage::{OpenMode, Vfs, VfsFile};
use crate::wij::{PageImage, PAGE_SIZE};
use crate::Lsn;

/// Name of the marker file of a seed in progress.
pub const SEEDING_MARKER: &str = "seeding";

/// What a seed holds, sent before its pages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeedPlan {
    /// First journal position the copy needs (`U`).
    pub journal_start: Lsn,
    /// Stored crc of the record before `journal_start` (the chain seed).
    pub prev_crc: u32,
    /// End of the journal part (`E`); streaming continues from here.
    pub journal_end: Lsn,
    /// `(epoch, start)` of every epoch that began before `journal_end`.
    pub epochs: Vec<(u64, Lsn)>,
    pub databases: Vec<SeedDatabase>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeedDatabase {
    pub file_id: u32,
    pub name: String,
    /// Pages in the copy (`0..pages`).
    pub pages: u64,
}

impl SeedPlan {
    pub fn total_pages(&self) -> u64 {
        self.databases.iter().map(|d| d.pages).sum()
    }

    /// Bytes the seed carries: pages and journal.
    pub fn total_bytes(&self) -> u64 {
        self.total_pages() * PAGE_SIZE as u64 + (self.journal_end.0 - self.journal_start.0)
    }
}

/// One file's copy in progress: how far it has been read, and the old
/// bytes of pages a cycle overwrote before the copy reached them.
pub(crate) struct FileCopy {
    file_id: u32,
    file: Arc<dyn VfsFile>,
    path: PathBuf,
    pages: u64,
    /// Where the seed's journal part begins: kept from purges.
    journal_start: Lsn,
    state: Mutex<CopyState>,
}

#[derive(Default)]
struct CopyState {
    /// Pages before this were read (or given out from `kept`).
    next: u64,
    kept: HashMap<u64, Vec<u8>>,
    /// Why this copy was given up (it never fails a flush cycle).
    failed: Option<String>,
}

/// Most bytes of old pages one file's copy keeps before it gives up (a
/// slow receiver against a busy primary): the member then seeds again.
const KEPT_MAX: usize = 256 << 20;

/// A copy being taken; dropping it stops the copy-on-write.
pub struct SeedSnapshot {
    inner: Arc<Inner>,
    plan: SeedPlan,
    files: Vec<Arc<FileCopy>>,
    /// The primary's tenure when the copy began: a copy outlives no
    /// demotion (a rewind could change the journal part under it).
    access: super::Access,
}

impl Engine {
    /// Starts a copy of this store for a new member (primary only: the
    /// journal part must be the mirror's). See the module docs.
    pub fn begin_seed(&self) -> Result<SeedSnapshot> {
        let inner = &self.inner;
        if !matches!(inner.gate.access(), super::Access::Primary { .. }) {
            return Err(EngineError::NotPrimary(
                "only the primary can give out a seed".into(),
            ));
        }
        let epoch = inner.gate.access();
        // No database is created while the copy is set up (creation takes
        // `creating`, never the cycle lock, so this order is safe).
        let creating = inner.creating.lock();
        let mut cycle = inner.cycle.lock();
        // Every meta page stamped with this cycle's bounds, even of files
        // with no change since their last cycle: each copied file then
        // needs the journal only from this cycle's bounds on.
        inner.cycle_locked(&mut cycle, None, true)?;
        let dbs: Vec<Arc<Database>> = inner.dbs.read().values().cloned().collect();
        let journal_end = inner.journal.durable_lsn();
        let mut files = Vec::new();
        let mut databases = Vec::new();
        let mut journal_start = journal_end;
        let mut metas = Vec::new();
        for db in dbs {
            let meta = database::read_meta(&*db.file, &db.path)?;
            journal_start = journal_start.min(Lsn(meta.redo_from.min(meta.undo_from)));
            metas.push((db, meta));
        }
        for (db, meta) in metas {
            databases.push(SeedDatabase {
                file_id: db.file_id,
                name: db.name.clone(),
                pages: meta.page_count,
            });
            files.push(Arc::new(FileCopy {
                file_id: db.file_id,
                file: db.file.clone(),
                path: db.path.clone(),
                pages: meta.page_count,
                journal_start,
                state: Mutex::new(CopyState::default()),
            }));
        }
        // Registered before the cycle lock goes: no purge (which runs at
        // the end of a cycle) removes the journal part from here on.
        inner.seeds.lock().extend(files.iter().cloned());
        drop(cycle);
        drop(creating);
        databases.sort_by_key(|d| d.file_id);
        files.sort_by_key(|f| f.file_id);
        let prev_crc = inner.journal.crc_before(journal_start)?;
        let epochs = inner
            .history
            .lock()
            .entries()
            .into_iter()
            .filter(|(_, start)| *start < journal_end)
            .collect();
        let plan = SeedPlan {
            journal_start,
            prev_crc,
            journal_end,
            epochs,
            databases,
        };
        tracing::info!(
            pages = plan.total_pages(),
            journal_from = %plan.journal_start,
            journal_to = %plan.journal_end,
            "seed copy started"
        );
        Ok(SeedSnapshot {
            inner: self.inner.clone(),
            plan,
            files,
            access: epoch,
        })
    }
}

impl SeedSnapshot {
    pub fn plan(&self) -> &SeedPlan {
        &self.plan
    }

    /// Pages `first..first + count` of database `file_id` as of the copy.
    /// Pages of a file must be read in order, each once.
    pub fn read_pages(&self, file_id: u32, first: u64, count: u64) -> Result<Vec<u8>> {
        let f = self
            .files
            .iter()
            .find(|f| f.file_id == file_id)
            .ok_or_else(|| EngineError::BadArgument(format!("no file {file_id} in this seed")))?;
        self.still_primary()?;
        let mut st = f.state.lock();
        if let Some(why) = &st.failed {
            return Err(EngineError::BadArgument(format!(
                "the seed copy was given up: {why}"
            )));
        }
        if first != st.next || first + count > f.pages {
            return Err(EngineError::BadArgument(format!(
                "seed pages {first}..{} of file {file_id}: expected from {} (of {})",
                first + count,
                st.next,
                f.pages
            )));
        }
        let mut buf = vec![0u8; count as usize * PAGE_SIZE];
        // Holding the state lock: a cycle cannot decide a page is already
        // copied while its old bytes are still being read here.
        f.file
            .read_exact_at(&mut buf, first * PAGE_SIZE as u64)
            .map_err(|e| EngineError::io(format!("read {} for a seed", f.path.display()), e))?;
        for p in first..first + count {
            if let Some(old) = st.kept.remove(&p) {
                let at = (p - first) as usize * PAGE_SIZE;
                buf[at..at + PAGE_SIZE].copy_from_slice(&old);
            }
        }
        st.next = first + count;
        Ok(buf)
    }

    /// The journal bytes `[from, from + up to max_bytes)` of the seed's part.
    pub fn read_journal(&self, from: Lsn, max_bytes: usize) -> Result<(Vec<u8>, Lsn)> {
        self.still_primary()?;
        let (mut bytes, mut end) = self.inner.journal.read_raw(from, max_bytes)?;
        if end > self.plan.journal_end {
            // Cut at the seed's end, which is a record boundary.
            bytes.truncate((self.plan.journal_end.0 - from.0) as usize);
            end = self.plan.journal_end;
        }
        Ok((bytes, end))
    }

    /// Fails once this member is no longer the primary of the tenure the
    /// copy began in. Check it again after the last byte is sent.
    pub fn still_primary(&self) -> Result<()> {
        let now = self.inner.gate.access();
        if now != self.access {
            return Err(EngineError::NotPrimary(format!(
                "this member changed from {:?} to {now:?} during the seed",
                self.access
            )));
        }
        Ok(())
    }

    /// Bytes kept for this copy by cycles that overwrote unread pages.
    pub fn kept_bytes(&self) -> usize {
        self.files
            .iter()
            .map(|f| f.state.lock().kept.len() * PAGE_SIZE)
            .sum()
    }
}

impl Drop for SeedSnapshot {
    fn drop(&mut self) {
        self.inner
            .seeds
            .lock()
            .retain(|f| !self.files.iter().any(|mine| Arc::ptr_eq(f, mine)));
    }
}

impl Inner {
    /// The oldest journal position a seed in progress still has to send.
    pub(crate) fn seed_journal_hold(&self) -> Option<Lsn> {
        self.seeds.lock().iter().map(|f| f.journal_start).min()
    }

    /// Before a cycle overwrites pages of `db`: keeps the on-disk bytes of
    /// those a running copy has not read yet.
    pub(crate) fn preserve_for_seeds(&self, db: &Database, images: &[PageImage]) -> Result<()> {
        let copies: Vec<Arc<FileCopy>> = self
            .seeds
            .lock()
            .iter()
            .filter(|f| f.file_id == db.file_id)
            .cloned()
            .collect();
        for f in copies {
            let mut st = f.state.lock();
            for img in images {
                let p = img.page_no;
                if st.failed.is_some() || p < st.next || p >= f.pages || st.kept.contains_key(&p) {
                    continue;
                }
                if st.kept.len() * PAGE_SIZE >= KEPT_MAX {
                    give_up(&mut st, format!(
                        "more than {} MiB of pages changed on the primary before the copy read them",
                        KEPT_MAX >> 20
                    ));
                    continue;
                }
                let mut old = vec![0u8; PAGE_SIZE];
                match f.file.read_exact_at(&mut old, p * PAGE_SIZE as u64) {
                    Ok(()) => {
                        st.kept.insert(p, old);
                    }
                    // The copy, not the primary, pays for a failed read.
                    Err(e) => give_up(&mut st, format!("read {}: {e}", f.path.display())),
                }
            }
        }
        Ok(())
    }
}

fn give_up(st: &mut CopyState, why: String) {
    tracing::warn!(reason = %why, "giving up a seed copy");
    st.kept = HashMap::new();
    st.failed = Some(why);
}

/// Writes a seed into an empty data folder. Feed it the pages of every
/// database and the journal part, in order, then [`SeedInstall::finish`].
pub struct SeedInstall {
    vfs: Arc<dyn Vfs>,
    dir: PathBuf,
    plan: SeedPlan,
    files: HashMap<u32, (Arc<dyn VfsFile>, u64)>,
    journal: Journal,
    journal_at: Lsn,
}

impl SeedInstall {
    /// Prepares `dir`, which must hold no store yet.
    pub fn begin(
        vfs: Arc<dyn Vfs>,
        dir: &Path,
        journal: JournalOptions,
        plan: SeedPlan,
    ) -> Result<SeedInstall> {
        if plan.journal_start > plan.journal_end {
            return Err(EngineError::BadArgument(format!(
                "seed journal from {} to {}: the start is after the end",
                plan.journal_start, plan.journal_end
            )));
        }
        if holds_store(&*vfs, dir)? {
            return Err(EngineError::BadArgument(format!(
                "{} already holds a store; a seed goes into an empty folder",
                dir.display()
            )));
        }
        let io = |what: String| move |e| EngineError::io(what, e);
        let db_dir = dir.join("databases");
        vfs.create_dir_all(&db_dir)
            .map_err(io(format!("create {}", db_dir.display())))?;
        vfs.open(&dir.join(SEEDING_MARKER), OpenMode::CreateIfMissing)
            .and_then(|_| vfs.sync_dir(dir))
            .map_err(io(format!("mark {} as seeding", dir.display())))?;
        let mut files = HashMap::new();
        for d in &plan.databases {
            if !database::valid_name(&d.name) {
                return Err(EngineError::BadDatabaseName(d.name.clone()));
            }
            let path = db_dir.join(database::file_name(d.file_id, &d.name));
            let file = vfs
                .open(&path, OpenMode::CreateIfMissing)
                .map_err(io(format!("create {}", path.display())))?;
            files.insert(d.file_id, (file, 0u64));
        }
        let journal = Journal::reset(
            vfs.clone(),
            &dir.join("journal"),
            journal,
            plan.journal_start,
            plan.prev_crc,
        )?;
        Ok(SeedInstall {
            vfs,
            dir: dir.to_path_buf(),
            journal_at: plan.journal_start,
            plan,
            files,
            journal,
        })
    }

    pub fn plan(&self) -> &SeedPlan {
        &self.plan
    }

    /// Pages from `first` on of database `file_id`, in order; each page's
    /// checksum and number are verified.
    pub fn pages(&mut self, file_id: u32, first: u64, bytes: &[u8]) -> Result<()> {
        let pages = self
            .plan
            .databases
            .iter()
            .find(|d| d.file_id == file_id)
            .map(|d| d.pages);
        let (Some(pages), Some((file, next))) = (pages, self.files.get_mut(&file_id)) else {
            return Err(EngineError::BadArgument(format!(
                "seed pages for file {file_id}, which the seed does not list"
            )));
        };
        let count = (bytes.len() / PAGE_SIZE) as u64;
        if !bytes.len().is_multiple_of(PAGE_SIZE) || first != *next || first + count > pages {
            return Err(EngineError::BadArgument(format!(
                "seed pages of file {file_id}: got {} bytes from page {first}, expected whole pages from {} (of {pages})",
                bytes.len(),
                next
            )));
        }
        for (i, p) in bytes.chunks_exact(PAGE_SIZE).enumerate() {
            page::verify(p, first + i as u64).map_err(|e| EngineError::BadDatabaseFile {
                path: format!("seed of file {file_id}"),
                reason: format!("page {}: {e}", first + i as u64),
            })?;
        }
        file.write_all_at(bytes, first * PAGE_SIZE as u64)
            .map_err(|e| EngineError::io(format!("write seed pages of file {file_id}"), e))?;
        *next = first + count;
        Ok(())
    }

    /// Journal bytes at `start` (framed records, as the primary stores them).
    pub fn journal(&mut self, start: Lsn, bytes: &[u8]) -> Result<()> {
        if start != self.journal_at {
            return Err(EngineError::BadArgument(format!(
                "seed journal at {start}, expected {}",
                self.journal_at
            )));
        }
        self.journal_at = self.journal.append_raw(start, bytes)?;
        // Durable chunk by chunk: the part can be long, never all in memory.
        self.journal.wait_durable(self.journal_at)?;
        if self.journal_at > self.plan.journal_end {
            return Err(EngineError::BadArgument(format!(
                "seed journal runs to {}, past its end {}",
                self.journal_at, self.plan.journal_end
            )));
        }
        Ok(())
    }

    /// Checks that everything arrived, makes it durable, and removes the
    /// `seeding` marker: from here the folder opens as a store.
    pub fn finish(self) -> Result<()> {
        let io = |what: String| move |e| EngineError::io(what, e);
        if self.journal_at != self.plan.journal_end {
            return Err(EngineError::BadArgument(format!(
                "seed journal ended at {}, expected {}",
                self.journal_at, self.plan.journal_end
            )));
        }
        self.journal.wait_durable(self.journal_at)?;
        drop(self.journal);
        let db_dir = self.dir.join("databases");
        for d in &self.plan.databases {
            let (file, next) = &self.files[&d.file_id];
            if *next != d.pages {
                return Err(EngineError::BadArgument(format!(
                    "seed of database {} ended at page {next} of {}",
                    d.name, d.pages
                )));
            }
            file.sync()
                .map_err(io(format!("sync the seed of database {}", d.name)))?;
            self.vfs
                .open(
                    &db_dir.join(database::marker_name(d.file_id, &d.name)),
                    OpenMode::CreateIfMissing,
                )
                .map_err(io(format!("mark database {} created", d.name)))?;
        }
        self.vfs
            .sync_dir(&db_dir)
            .map_err(io(format!("sync {}", db_dir.display())))?;
        let mut history = History::open(&*self.vfs, self.dir.join("epochs"))?;
        for (epoch, start) in &self.plan.epochs {
            history.record(*epoch, *start)?;
        }
        self.vfs
            .remove(&self.dir.join(SEEDING_MARKER))
            .and_then(|_| self.vfs.sync_dir(&self.dir))
            .map_err(io(format!("finish the seed in {}", self.dir.display())))?;
        tracing::info!(dir = %self.dir.display(), end = %self.plan.journal_end, "seed installed");
        Ok(())
    }
}

/// Whether `dir` holds a store (journal segments or database files) or
/// pieces of one (a write image journal, an epoch history): a seed goes
/// only into a folder with none of these.
pub fn holds_store(vfs: &dyn Vfs, dir: &Path) -> Result<bool> {
    if ["wij", "epochs"].iter().any(|f| vfs.exists(&dir.join(f))) {
        return Ok(true);
    }
    for sub in ["databases", "journal"] {
        let d = dir.join(sub);
        if !vfs.exists(&d) {
            continue;
        }
        let listing = vfs
            .list(&d)
            .map_err(|e| EngineError::io(format!("list {}", d.display()), e))?;
        if listing.iter().any(|p| {
            database::parse_file_name(p).is_some()
                || p.file_name()
                    .and_then(|n| n.to_str())
                    .and_then(crate::journal::parse_segment_file_name)
                    .is_some()
        }) {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Whether `dir` holds a seed that never finished.
pub fn interrupted_seed(vfs: &dyn Vfs, dir: &Path) -> bool {
    vfs.exists(&dir.join(SEEDING_MARKER))
}

/// Removes what an interrupted seed left (databases, journal, epochs),
/// then the marker, so the folder is empty again.
pub fn discard_interrupted_seed(vfs: &dyn Vfs, dir: &Path) -> Result<()> {
    let io = |what: String| move |e| EngineError::io(what, e);
    for sub in ["databases", "journal"] {
        let d = dir.join(sub);
        if !vfs.exists(&d) {
            continue;
        }
        for p in vfs.list(&d).map_err(io(format!("list {}", d.display())))? {
            vfs.remove(&p)
                .map_err(io(format!("remove {}", p.display())))?;
        }
        vfs.sync_dir(&d)
            .map_err(io(format!("sync {}", d.display())))?;
    }
    // `epoch` is a mirror member's last known epoch, written with its seed.
    for f in ["epochs", "epoch", SEEDING_MARKER] {
        let p = dir.join(f);
        if vfs.exists(&p) {
            vfs.remove(&p)
                .map_err(io(format!("remove {}", p.display())))?;
        }
    }
    vfs.sync_dir(dir)
        .map_err(io(format!("sync {}", dir.display())))
}
