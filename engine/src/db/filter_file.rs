//! The insert buffer's key filter, kept across a clean shutdown, so that
//! a restart does not read every key of every database again to build it
//! (`filter_build.rs`: the whole file, in the background for large ones,
//! with the buffer off until it is done).
//!
//! At a clean close, after the last flush, each database whose filter
//! answers writes it next to its file, as `NNNN-NAME.kf`:
//!
//! ```text
//! magic "RDBKF001" | journal_end u64 | root u64 | page_count u64 | free_head u64
//!   | filter (see `KeyFilter::encode`) | crc32c u32 of all before
//! ```
//!
//! At open the file is read and removed, whatever it holds, and used only
//! when all of this holds:
//! - recovery replayed no SET or KILL: keys reach a tree only through
//!   writes, which are journaled, so a store that replayed none holds the
//!   keys its last flush wrote;
//! - the stamp is the journal's end and the database's meta page as they
//!   are now: the file comes from the last clean close of this very tree,
//!   and nothing was written since;
//! - the checksum holds and the filter is the one this pool's budget
//!   grows (a pool resized since builds anew).
//!
//! A filter that missed a key would let the buffer take a second copy of
//! a key the tree holds; so any doubt builds the filter from the keys, as
//! without the file. Writing the file is best effort: a failure is logged
//! and costs the next open a build.

use std::path::{Path, PathBuf};

use crate::btree::node::Meta;
use crate::btree::KeyFilter;
use crate::storage::{OpenMode, Vfs};

const MAGIC: &[u8; 8] = b"RDBKF001";

/// What a kept filter must match: the journal's end, and the shape of
/// the tree on the meta page (not its `redo_from`: a cycle that changed
/// nothing moves it in memory without writing the page).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Stamp([u64; 4]);

impl Stamp {
    pub(super) fn of(journal_end: u64, meta: &Meta) -> Stamp {
        Stamp([journal_end, meta.root, meta.page_count, meta.free_head])
    }
}

/// Where the filter of the database in `db_file` is kept.
pub(super) fn path_of(db_file: &Path) -> PathBuf {
    db_file.with_extension("kf")
}

/// Writes `filter` for the tree `stamp` describes, durably.
pub(super) fn save(
    vfs: &dyn Vfs,
    db_file: &Path,
    stamp: Stamp,
    filter: &KeyFilter,
) -> std::io::Result<()> {
    let mut bytes = Vec::with_capacity(filter.bytes() + 64);
    bytes.extend_from_slice(MAGIC);
    for n in stamp.0 {
        bytes.extend_from_slice(&n.to_le_bytes());
    }
    filter.encode(&mut bytes);
    let crc = crc32c::crc32c(&bytes);
    bytes.extend_from_slice(&crc.to_le_bytes());
    let path = path_of(db_file);
    let file = vfs.open(&path, OpenMode::CreateIfMissing)?;
    file.set_len(0)?;
    file.write_all_at(&bytes, 0)?;
    file.sync()?;
    if let Some(dir) = path.parent() {
        vfs.sync_dir(dir)?;
    }
    Ok(())
}

/// Reads and removes the kept filter of the database in `db_file`: the
/// filter if it matches `stamp` and `budget`, else why not (`None`: no
/// file).
pub(super) fn take(
    vfs: &dyn Vfs,
    db_file: &Path,
    stamp: Stamp,
    budget: usize,
) -> Option<Result<KeyFilter, String>> {
    let path = path_of(db_file);
    if !vfs.exists(&path) {
        return None;
    }
    let read = read_all(vfs, &path);
    // Gone whatever it held: a later open must not find it.
    if let Err(e) = vfs.remove(&path) {
        return Some(Err(format!("cannot remove {}: {e}", path.display())));
    }
    Some(read.and_then(|bytes| decode(&bytes, stamp, budget)))
}

fn read_all(vfs: &dyn Vfs, path: &Path) -> Result<Vec<u8>, String> {
    let file = vfs
        .open(path, OpenMode::Existing)
        .map_err(|e| format!("cannot open it: {e}"))?;
    let len = file.len().map_err(|e| format!("cannot read it: {e}"))?;
    let mut bytes = vec![0; len as usize];
    let mut at = 0;
    while at < bytes.len() {
        match file.read_at(&mut bytes[at..], at as u64) {
            Ok(0) => return Err(format!("ends at byte {at} of {len}")),
            Ok(n) => at += n,
            Err(e) => return Err(format!("cannot read it: {e}")),
        }
    }
    Ok(bytes)
}

fn decode(bytes: &[u8], stamp: Stamp, budget: usize) -> Result<KeyFilter, String> {
    let head = MAGIC.len() + 8 * stamp.0.len();
    if bytes.len() < head + 4 || &bytes[..MAGIC.len()] != MAGIC {
        return Err("not a key filter file".into());
    }
    let (body, crc) = bytes.split_at(bytes.len() - 4);
    if crc32c::crc32c(body).to_le_bytes() != crc {
        return Err("checksum mismatch (a torn or damaged file)".into());
    }
    let mut kept = [0u64; 4];
    for (i, n) in kept.iter_mut().enumerate() {
        let at = MAGIC.len() + 8 * i;
        *n = u64::from_le_bytes(body[at..at + 8].try_into().expect("8 bytes"));
    }
    if Stamp(kept) != stamp {
        return Err(format!(
            "written for another state of the database ({kept:?}, now {:?})",
            stamp.0
        ));
    }
    KeyFilter::decode(&body[head..], budget)
}
