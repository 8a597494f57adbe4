//! One database: a file of pages holding one B+tree, behind a reader/writer
//! lock. Readers share the lock and never wait for an fsync: commits wait
//! for the journal after releasing it.
//!
//! Files live in `<data>/databases/<file id>-<name>.rdb`; the file id ties
//! write image journal entries to their file. An empty marker file
//! `<file id>-<name>.ok` beside it says its creation finished: the data
//! file is written, synced and linked before the marker is created, so a
//! data file without a marker (or a marker without a data file) is a
//! creation a crash interrupted, never acknowledged, and is removed at
//! startup.

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};

use crate::btree::node::{Meta, Node};
use crate::btree::Tree;
use crate::error::{EngineError, Result};
use crate::storage::{OpenMode, Vfs, VfsFile};
use crate::wij::PAGE_SIZE;

pub struct Database {
    pub name: String,
    pub file_id: u32,
    pub path: PathBuf,
    pub(crate) file: Arc<dyn VfsFile>,
    pub(crate) tree: RwLock<Tree>,
    /// Held while merging the tree's insert buffer (`merge.rs`): one
    /// merge at a time.
    pub(crate) merging: Mutex<()>,
    /// [`Tree::buffer_additions`] at the write daemon's last tick
    /// (`merge.rs`).
    pub(crate) idle_mark: AtomicU64,
}

pub fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && name.len() <= 63
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

pub fn file_name(file_id: u32, name: &str) -> String {
    format!("{file_id:04}-{name}.rdb")
}

pub fn marker_name(file_id: u32, name: &str) -> String {
    format!("{file_id:04}-{name}.ok")
}

/// `(file id, database name)` from a database file's name.
pub fn parse_file_name(path: &Path) -> Option<(u32, String)> {
    parse_with_suffix(path, ".rdb")
}

/// `(file id, database name)` from a creation marker's name.
pub fn parse_marker_name(path: &Path) -> Option<(u32, String)> {
    parse_with_suffix(path, ".ok")
}

fn parse_with_suffix(path: &Path, suffix: &str) -> Option<(u32, String)> {
    let stem = path.file_name()?.to_str()?.strip_suffix(suffix)?;
    let (id, name) = stem.split_once('-')?;
    Some((id.parse().ok()?, name.to_string()))
}

impl Database {
    /// Creates the file with a meta page and an empty root leaf, durably.
    pub fn create(
        vfs: &dyn Vfs,
        dir: &Path,
        file_id: u32,
        name: &str,
        cache_pages: usize,
    ) -> Result<Database> {
        let path = dir.join(file_name(file_id, name));
        let ctx = || format!("create database file {}", path.display());
        let file = vfs
            .open(&path, OpenMode::CreateIfMissing)
            .map_err(|e| EngineError::io(ctx(), e))?;
        let meta = Meta {
            file_id,
            name: name.to_string(),
            root: 1,
            page_count: 2,
            free_head: 0,
            redo_from: 0,
            undo_from: 0,
        };
        let mut bytes = meta.encode(0);
        bytes.extend(Node::empty_leaf().encode(1, 0));
        file.write_all_at(&bytes, 0)
            .and_then(|_| file.sync())
            .and_then(|_| vfs.sync_dir(dir))
            .and_then(|_| {
                vfs.open(
                    &dir.join(marker_name(file_id, name)),
                    OpenMode::CreateIfMissing,
                )
            })
            .and_then(|_| vfs.sync_dir(dir))
            .map_err(|e| EngineError::io(ctx(), e))?;
        let tree =
            Tree::open(file.clone(), cache_pages, meta).map_err(|e| EngineError::tree(name, e))?;
        Ok(Database {
            name: name.to_string(),
            file_id,
            path,
            file,
            tree: RwLock::new(tree),
            merging: Mutex::new(()),
            idle_mark: AtomicU64::new(0),
        })
    }

    /// Opens an existing file whose page 0 is known good (after any write
    /// image journal restore).
    pub fn open(file: Arc<dyn VfsFile>, path: PathBuf, cache_pages: usize) -> Result<Database> {
        let meta = read_meta(&*file, &path)?;
        let (name, file_id) = (meta.name.clone(), meta.file_id);
        let tree =
            Tree::open(file.clone(), cache_pages, meta).map_err(|e| EngineError::tree(&name, e))?;
        Ok(Database {
            name,
            file_id,
            path,
            file,
            tree: RwLock::new(tree),
            merging: Mutex::new(()),
            idle_mark: AtomicU64::new(0),
        })
    }
}

/// The journal position page 0 is stamped with: everything before it was
/// durable in the journal when the meta page was written (a flush cycle's
/// journal end; its `redo_from` may be lower, see `Tree::take_flush`).
pub fn read_meta_stamp(file: &dyn VfsFile, path: &Path) -> Result<u64> {
    let mut buf = vec![0u8; PAGE_SIZE];
    file.read_exact_at(&mut buf, 0)
        .map_err(|e| EngineError::io(format!("read meta page of {}", path.display()), e))?;
    crate::btree::page::verify(&buf, 0)
        .map(|h| h.lsn)
        .map_err(|e| EngineError::BadDatabaseFile {
            path: path.display().to_string(),
            reason: format!("meta page: {e}"),
        })
}

pub fn read_meta(file: &dyn VfsFile, path: &Path) -> Result<Meta> {
    let mut buf = vec![0u8; PAGE_SIZE];
    file.read_exact_at(&mut buf, 0)
        .map_err(|e| EngineError::io(format!("read meta page of {}", path.display()), e))?;
    Meta::decode(&buf).map_err(|e| EngineError::BadDatabaseFile {
        path: path.display().to_string(),
        reason: format!("meta page: {e}"),
    })
}
