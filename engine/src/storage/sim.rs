//! Simulated files: [`SimFs`], an in-memory, fault-injecting [`Vfs`] for
//! crash tests.
//!
//! # Model
//!
//! Every file (an *inode*) keeps three things:
//!
//! ```text
//!   visible bytes   what reads see: every write and set_len, at once
//!   durable bytes   what a power cut keeps for sure: the state at the last
//!                   successful sync of the file
//!   pending ops     the writes and set_lens issued since that sync, in order
//! ```
//!
//! A successful `sync` applies the pending ops to the durable bytes and
//! clears them. [`SimFs::crash_image`] builds what a disk could hold after a
//! power cut *now*: the durable bytes, then each pending op in order either
//! dropped, applied, or (writes only) torn: a random subset of the 512-byte
//! sectors it touches is applied (sectors are aligned to file offsets; a
//! subset, not only a prefix). The choices come from a splitmix64 generator
//! seeded by the caller, so an image is a pure function of the state and the
//! seed.
//!
//! Names are tracked the same way: a *visible* namespace (path → inode) and
//! a *durable* one. `open(CreateIfMissing)` and `remove` change only the
//! visible namespace; `sync_dir(d)` copies the visible entries directly
//! inside `d` into the durable namespace. In a crash image, every path on
//! which the two namespaces disagree independently takes either side: a file
//! created but whose directory was never synced may vanish, a removed file
//! whose directory was not synced may come back (with its own durable bytes
//! and fate of pending ops), a file removed and re-created may be the old one.
//! An unlinked file stays usable through handles already open, as on POSIX.
//!
//! Simplifications, on purpose:
//! - Directories may be implicit: `open` does not require the parent to
//!   exist, and creating a file creates its missing ancestors, as
//!   `create_dir_all` does. Directories are durable as soon as they exist
//!   and cannot be removed. `list` or `sync_dir` of a path that is not a
//!   directory fails with `NotFound`.
//! - Paths are compared after dropping `.` components; `..` is not resolved.
//!
//! # Faults
//!
//! - Sync points are `VfsFile::sync` and `Vfs::sync_dir`. [`SimFs::syncs`]
//!   counts the successful ones (all files). [`SimFs::crash_at_sync`]`(n)`
//!   makes the n-th sync point from now fail *without* taking effect and
//!   kills the "process": from then on every operation on this `SimFs` and
//!   every file opened from it fails (`exists` keeps answering, since it
//!   cannot fail). [`SimFs::crash_now`] kills it at once.
//! - [`SimFs::fail_next_sync`] makes the next `VfsFile::sync` fail with an
//!   I/O error without a crash, modelling Linux after an fsync error: the
//!   pending ops are forgotten (reads still see them, but they never become
//!   durable, and a later successful sync does not bring them back).
//! - [`SimFs::flip_bit`] and [`SimFs::write_raw`] corrupt the visible and
//!   durable bytes alike, as a bad disk would.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use parking_lot::Mutex;

use super::{OpenMode, Vfs, VfsFile};

/// Sector size of the tearing model: the unit a torn write keeps or loses.
pub const SECTOR_SIZE: u64 = 512;

/// What a crash image does with the operations pending since the last sync.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CrashFate {
    /// Each pending op (and each undecided name) is chosen by a PRNG seeded
    /// with this value.
    Seeded(u64),
    /// Nothing that was not synced survives: the image is the durable state.
    DropAll,
    /// Everything survives: the image is the visible state.
    KeepAll,
}

/// An in-memory, fault-injecting file system. Cloning gives another handle
/// to the same file system.
#[derive(Clone, Default)]
pub struct SimFs {
    state: Arc<Mutex<State>>,
}

impl std::fmt::Debug for SimFs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let st = self.state.lock();
        f.debug_struct("SimFs")
            .field("files", &st.visible.keys().collect::<Vec<_>>())
            .field("syncs", &st.syncs)
            .field("crashed", &st.crashed)
            .finish()
    }
}

type InodeId = u64;

#[derive(Default)]
struct State {
    /// Path → inode, as the running process sees it.
    visible: BTreeMap<PathBuf, InodeId>,
    /// Path → inode, as a crash is sure to keep it (updated by `sync_dir`).
    durable: BTreeMap<PathBuf, InodeId>,
    /// Directories, made by `create_dir_all` or as the ancestors of a
    /// created file. The root (and `""` for relative paths) is implicit.
    dirs: BTreeSet<PathBuf>,
    inodes: HashMap<InodeId, Inode>,
    next_inode: InodeId,
    /// Successful sync points (file syncs and directory syncs).
    syncs: u64,
    /// The sync point (1-based, counted down) at which the process dies.
    crash_countdown: Option<u64>,
    crashed: bool,
    /// File syncs still to fail with an I/O error.
    failing_syncs: u64,
    /// How long a file sync takes (a disk's flush), slept before it
    /// takes effect with no lock held; zero by default.
    sync_delay: std::time::Duration,
}

#[derive(Default, Clone)]
struct Inode {
    visible: Vec<u8>,
    durable: Vec<u8>,
    pending: Vec<Op>,
    /// Open handles; an inode no name refers to lives while this is > 0.
    handles: usize,
    /// Failed syncs so far. As Linux reports a failed writeback to every
    /// open file (its `errseq_t`), each handle's next sync fails too if
    /// one failed since the handle last synced or was opened.
    sync_errors: u64,
}

#[derive(Clone)]
enum Op {
    Write { offset: u64, data: Vec<u8> },
    SetLen(u64),
}

/// Drops `.` components so `./a/b` and `a/b` name the same file.
fn norm(path: &Path) -> PathBuf {
    path.components()
        .filter(|c| !matches!(c, Component::CurDir))
        .collect()
}

/// The parent as the namespace sees it (`""` for a bare relative name).
fn parent_of(path: &Path) -> PathBuf {
    path.parent().map(Path::to_path_buf).unwrap_or_default()
}

fn crashed_error(path: &Path) -> io::Error {
    io::Error::other(format!(
        "simulated crash: the file system is dead ({})",
        path.display()
    ))
}

fn not_found(action: &str, path: &Path) -> io::Error {
    io::Error::new(
        io::ErrorKind::NotFound,
        format!("{action} {}: no such file", path.display()),
    )
}

fn write_into(bytes: &mut Vec<u8>, offset: u64, data: &[u8]) {
    if data.is_empty() {
        return;
    }
    let start = offset as usize;
    let end = start + data.len();
    if bytes.len() < end {
        bytes.resize(end, 0);
    }
    bytes[start..end].copy_from_slice(data);
}

fn apply(bytes: &mut Vec<u8>, op: &Op) {
    match op {
        Op::Write { offset, data } => write_into(bytes, *offset, data),
        Op::SetLen(len) => bytes.resize(*len as usize, 0),
    }
}

/// splitmix64: small, fast and good enough to pick fates.
struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
}

/// How one undecided thing (a pending op, a name) ends up in a crash image.
struct Fates {
    fate: CrashFate,
    rng: Rng,
}

impl Fates {
    fn new(fate: CrashFate) -> Fates {
        let seed = match fate {
            CrashFate::Seeded(seed) => seed,
            _ => 0,
        };
        Fates {
            fate,
            rng: Rng(seed),
        }
    }

    /// Whether an undecided name takes its visible (not durable) side.
    fn keep_name(&mut self) -> bool {
        match self.fate {
            CrashFate::Seeded(_) => self.rng.below(2) == 1,
            CrashFate::DropAll => false,
            CrashFate::KeepAll => true,
        }
    }

    /// Applies (or not, or partly) one pending op to `bytes`.
    fn apply_pending(&mut self, bytes: &mut Vec<u8>, op: &Op) {
        match (self.fate, op) {
            (CrashFate::DropAll, _) => {}
            (CrashFate::KeepAll, _) => apply(bytes, op),
            (CrashFate::Seeded(_), Op::SetLen(_)) => {
                if self.rng.below(2) == 1 {
                    apply(bytes, op);
                }
            }
            (CrashFate::Seeded(_), Op::Write { offset, data }) => match self.rng.below(3) {
                0 => {}
                1 => apply(bytes, op),
                _ => self.tear(bytes, *offset, data),
            },
        }
    }

    /// Applies a random subset of the sectors a write touches.
    fn tear(&mut self, bytes: &mut Vec<u8>, offset: u64, data: &[u8]) {
        let end = offset + data.len() as u64;
        let mut pos = offset;
        while pos < end {
            let sector_end = ((pos / SECTOR_SIZE) + 1) * SECTOR_SIZE;
            let piece_end = sector_end.min(end);
            if self.rng.below(2) == 1 {
                let from = (pos - offset) as usize;
                let to = (piece_end - offset) as usize;
                write_into(bytes, pos, &data[from..to]);
            }
            pos = piece_end;
        }
    }
}

impl State {
    fn check_alive(&self, path: &Path) -> io::Result<()> {
        if self.crashed {
            Err(crashed_error(path))
        } else {
            Ok(())
        }
    }

    /// Counts a sync point down; `Err` if this is the one that crashes.
    fn sync_point(&mut self, path: &Path) -> io::Result<()> {
        self.check_alive(path)?;
        if let Some(n) = self.crash_countdown {
            if n <= 1 {
                self.crash_countdown = None;
                self.crashed = true;
                return Err(crashed_error(path));
            }
            self.crash_countdown = Some(n - 1);
        }
        Ok(())
    }

    fn is_dir(&self, path: &Path) -> bool {
        path.parent().is_none() || path.as_os_str().is_empty() || self.dirs.contains(path)
    }

    fn add_dirs(&mut self, dir: &Path) {
        for ancestor in dir.ancestors() {
            if !ancestor.as_os_str().is_empty() {
                self.dirs.insert(ancestor.to_path_buf());
            }
        }
    }

    /// Drops an inode nothing refers to any more.
    fn collect(&mut self, id: InodeId) {
        let referenced = self.inodes.get(&id).is_some_and(|i| i.handles > 0)
            || self.visible.values().any(|&v| v == id)
            || self.durable.values().any(|&v| v == id);
        if !referenced {
            self.inodes.remove(&id);
        }
    }

    fn inode_mut(&mut self, id: InodeId, path: &Path) -> io::Result<&mut Inode> {
        // Cannot fail while a handle holds the inode; kept an error, not a
        // panic, for defence.
        self.inodes
            .get_mut(&id)
            .ok_or_else(|| not_found("access", path))
    }

    fn visible_inode_mut(&mut self, path: &Path) -> io::Result<&mut Inode> {
        let id = *self
            .visible
            .get(&norm(path))
            .ok_or_else(|| not_found("access", path))?;
        self.inode_mut(id, path)
    }
}

impl SimFs {
    /// An empty, healthy file system.
    pub fn new() -> SimFs {
        SimFs::default()
    }

    /// Successful sync points (file syncs and directory syncs) so far.
    pub fn syncs(&self) -> u64 {
        self.state.lock().syncs
    }

    /// Arms a crash at the `n`-th sync point from now (1-based): that sync
    /// fails without taking effect and the file system dies. `n == 0`
    /// crashes at once.
    pub fn crash_at_sync(&self, n: u64) {
        let mut st = self.state.lock();
        if n == 0 {
            st.crashed = true;
            st.crash_countdown = None;
        } else {
            st.crash_countdown = Some(n);
        }
    }

    /// Kills the file system now: every later operation fails.
    pub fn crash_now(&self) {
        self.crash_at_sync(0);
    }

    pub fn is_crashed(&self) -> bool {
        self.state.lock().crashed
    }

    /// Makes every later file sync take `delay` (as a disk's flush does),
    /// for tests of what runs while a commit syncs.
    pub fn set_sync_delay(&self, delay: std::time::Duration) {
        self.state.lock().sync_delay = delay;
    }

    /// Makes the next file sync fail with an I/O error, losing the writes
    /// pending on that file (see the module docs), without crashing.
    pub fn fail_next_sync(&self) {
        self.state.lock().failing_syncs += 1;
    }

    /// What a disk could hold after a power cut now, with pending ops and
    /// undecided names chosen from `seed`. See [`SimFs::crash_image_with`].
    pub fn crash_image(&self, seed: u64) -> SimFs {
        self.crash_image_with(CrashFate::Seeded(seed))
    }

    /// A new, healthy `SimFs` (sync count 0) holding what a disk could hold
    /// after a power cut now. Works on a crashed or a running file system;
    /// this one is not changed.
    pub fn crash_image_with(&self, fate: CrashFate) -> SimFs {
        let st = self.state.lock();
        let mut fates = Fates::new(fate);
        let mut names = BTreeMap::new();
        let paths: BTreeSet<&PathBuf> = st.visible.keys().chain(st.durable.keys()).collect();
        for path in paths {
            let visible = st.visible.get(path);
            let durable = st.durable.get(path);
            let chosen = if visible == durable || fates.keep_name() {
                visible
            } else {
                durable
            };
            if let Some(&id) = chosen {
                names.insert(path.clone(), id);
            }
        }
        // Each surviving inode's bytes, decided once, in path order.
        let mut inodes: HashMap<InodeId, Inode> = HashMap::new();
        for &id in names.values() {
            if inodes.contains_key(&id) {
                continue;
            }
            let Some(old) = st.inodes.get(&id) else {
                continue;
            };
            let mut bytes = old.durable.clone();
            for op in &old.pending {
                fates.apply_pending(&mut bytes, op);
            }
            inodes.insert(
                id,
                Inode {
                    visible: bytes.clone(),
                    durable: bytes,
                    pending: Vec::new(),
                    handles: 0,
                    sync_errors: 0,
                },
            );
        }
        let image = State {
            visible: names.clone(),
            durable: names,
            dirs: st.dirs.clone(),
            inodes,
            next_inode: st.next_inode,
            ..State::default()
        };
        SimFs {
            state: Arc::new(Mutex::new(image)),
        }
    }

    /// The visible bytes of a file (what reads see), or `None` if no file
    /// has that name.
    pub fn file_bytes(&self, path: &Path) -> Option<Vec<u8>> {
        let st = self.state.lock();
        let id = st.visible.get(&norm(path))?;
        st.inodes.get(id).map(|i| i.visible.clone())
    }

    /// The durable bytes of a file (what a crash keeps for sure, if its
    /// name survives), or `None` if no file has that name.
    pub fn durable_bytes(&self, path: &Path) -> Option<Vec<u8>> {
        let st = self.state.lock();
        let id = st.visible.get(&norm(path))?;
        st.inodes.get(id).map(|i| i.durable.clone())
    }

    /// Flips bit `bit` (0 = least significant) of byte `byte_offset` in
    /// the visible and the durable bytes (where the durable bytes reach
    /// that far). Pending ops are untouched. Works on a crashed file system.
    pub fn flip_bit(&self, path: &Path, byte_offset: u64, bit: u8) -> io::Result<()> {
        let mut st = self.state.lock();
        let inode = st.visible_inode_mut(path)?;
        let at = byte_offset as usize;
        let mask = 1u8 << (bit % 8);
        let Some(byte) = inode.visible.get_mut(at) else {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "flip bit at offset {byte_offset} of {}: past the end",
                    path.display()
                ),
            ));
        };
        *byte ^= mask;
        if let Some(byte) = inode.durable.get_mut(at) {
            *byte ^= mask;
        }
        Ok(())
    }

    /// Writes `bytes` at `offset` into the visible and the durable bytes at
    /// once, as if it had always been on disk. Pending ops are untouched.
    /// Works on a crashed file system.
    pub fn write_raw(&self, path: &Path, offset: u64, bytes: &[u8]) -> io::Result<()> {
        let mut st = self.state.lock();
        let inode = st.visible_inode_mut(path)?;
        write_into(&mut inode.visible, offset, bytes);
        write_into(&mut inode.durable, offset, bytes);
        Ok(())
    }
}

impl Vfs for SimFs {
    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Arc<dyn VfsFile>> {
        let path = norm(path);
        let mut st = self.state.lock();
        st.check_alive(&path)?;
        if st.is_dir(&path) {
            return Err(io::Error::new(
                io::ErrorKind::IsADirectory,
                format!("open {}: is a directory", path.display()),
            ));
        }
        if let Some(file) = path
            .ancestors()
            .skip(1)
            .find(|a| st.visible.contains_key(*a))
        {
            return Err(io::Error::new(
                io::ErrorKind::NotADirectory,
                format!("open {}: {} is a file", path.display(), file.display()),
            ));
        }
        let id = match (st.visible.get(&path), mode) {
            (Some(&id), _) => id,
            (None, OpenMode::Existing) => return Err(not_found("open", &path)),
            (None, OpenMode::CreateIfMissing) => {
                let id = st.next_inode;
                st.next_inode += 1;
                st.inodes.insert(id, Inode::default());
                st.visible.insert(path.clone(), id);
                st.add_dirs(&parent_of(&path));
                id
            }
        };
        let inode = st.inode_mut(id, &path)?;
        inode.handles += 1;
        let errors_seen = std::sync::atomic::AtomicU64::new(inode.sync_errors);
        Ok(Arc::new(SimFile {
            fs: self.clone(),
            inode: id,
            path,
            errors_seen,
        }))
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        let path = norm(path);
        let mut st = self.state.lock();
        st.check_alive(&path)?;
        let id = st
            .visible
            .remove(&path)
            .ok_or_else(|| not_found("remove", &path))?;
        st.collect(id);
        Ok(())
    }

    fn exists(&self, path: &Path) -> bool {
        let path = norm(path);
        let st = self.state.lock();
        st.visible.contains_key(&path) || st.is_dir(&path)
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<PathBuf>> {
        let dir = norm(dir);
        let st = self.state.lock();
        st.check_alive(&dir)?;
        if !st.is_dir(&dir) {
            return Err(not_found("list", &dir));
        }
        Ok(st
            .visible
            .keys()
            .filter(|p| parent_of(p) == dir)
            .cloned()
            .collect())
    }

    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        let dir = norm(dir);
        let mut st = self.state.lock();
        st.check_alive(&dir)?;
        if let Some(file) = dir.ancestors().find(|a| st.visible.contains_key(*a)) {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!(
                    "create directory {}: {} is a file",
                    dir.display(),
                    file.display()
                ),
            ));
        }
        st.add_dirs(&dir);
        Ok(())
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        let dir = norm(dir);
        let mut st = self.state.lock();
        st.check_alive(&dir)?;
        if !st.is_dir(&dir) {
            return Err(not_found("sync directory", &dir));
        }
        st.sync_point(&dir)?;
        let inside: BTreeSet<PathBuf> = st
            .visible
            .keys()
            .chain(st.durable.keys())
            .filter(|p| parent_of(p) == dir)
            .cloned()
            .collect();
        let mut dropped = Vec::new();
        for path in inside {
            match st.visible.get(&path).copied() {
                Some(id) => {
                    if let Some(old) = st.durable.insert(path, id) {
                        dropped.push(old);
                    }
                }
                None => dropped.extend(st.durable.remove(&path)),
            }
        }
        for id in dropped {
            st.collect(id);
        }
        st.syncs += 1;
        Ok(())
    }
}

/// A handle to a simulated file.
struct SimFile {
    fs: SimFs,
    inode: InodeId,
    /// The name it was opened by, for error messages.
    path: PathBuf,
    /// The inode's `sync_errors` this handle has seen reported.
    errors_seen: std::sync::atomic::AtomicU64,
}

impl SimFile {
    fn with<T>(&self, f: impl FnOnce(&mut State, &mut Inode) -> io::Result<T>) -> io::Result<T> {
        let mut st = self.fs.state.lock();
        st.check_alive(&self.path)?;
        // Take the inode out so `f` can touch the rest of the state too.
        let mut inode = st
            .inodes
            .remove(&self.inode)
            .ok_or_else(|| not_found("access", &self.path))?;
        let result = f(&mut st, &mut inode);
        st.inodes.insert(self.inode, inode);
        result
    }
}

impl VfsFile for SimFile {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        self.with(|_, inode| {
            let len = inode.visible.len() as u64;
            if offset >= len {
                return Ok(0);
            }
            let n = buf.len().min((len - offset) as usize);
            buf[..n].copy_from_slice(&inode.visible[offset as usize..offset as usize + n]);
            Ok(n)
        })
    }

    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.with(|_, inode| {
            if !buf.is_empty() {
                write_into(&mut inode.visible, offset, buf);
                inode.pending.push(Op::Write {
                    offset,
                    data: buf.to_vec(),
                });
            }
            Ok(())
        })
    }

    fn sync(&self) -> io::Result<()> {
        let delay = self.fs.state.lock().sync_delay;
        if !delay.is_zero() {
            std::thread::sleep(delay);
        }
        self.with(|st, inode| {
            st.sync_point(&self.path)?;
            use std::sync::atomic::Ordering::Relaxed;
            if st.failing_syncs > 0 {
                st.failing_syncs -= 1;
                inode.pending.clear();
                inode.sync_errors += 1;
                self.errors_seen.store(inode.sync_errors, Relaxed);
                return Err(io::Error::other(format!(
                    "sync {}: simulated I/O error (unsynced writes lost)",
                    self.path.display()
                )));
            }
            if self.errors_seen.swap(inode.sync_errors, Relaxed) < inode.sync_errors {
                return Err(io::Error::other(format!(
                    "sync {}: simulated I/O error reported by a sync through another handle \
                     (unsynced writes lost)",
                    self.path.display()
                )));
            }
            for op in std::mem::take(&mut inode.pending) {
                apply(&mut inode.durable, &op);
            }
            st.syncs += 1;
            Ok(())
        })
    }

    fn len(&self) -> io::Result<u64> {
        self.with(|_, inode| Ok(inode.visible.len() as u64))
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        self.with(|_, inode| {
            inode.visible.resize(len as usize, 0);
            inode.pending.push(Op::SetLen(len));
            Ok(())
        })
    }
}

impl Drop for SimFile {
    fn drop(&mut self) {
        let mut st = self.fs.state.lock();
        if let Some(inode) = st.inodes.get_mut(&self.inode) {
            inode.handles = inode.handles.saturating_sub(1);
        }
        st.collect(self.inode);
    }
}

#[cfg(test)]
mod tests;
