//! All file I/O of the engine goes through [`Vfs`] and [`VfsFile`], so tests
//! can swap the operating system for a fault-injecting implementation
//! ([`sim::SimFs`]) that keeps written and durable bytes apart.
//!
//! Contract (what callers may rely on, and what they may not):
//! - `write_all_at` makes bytes visible to later reads at once, but they are
//!   durable only after a `sync` of the same file returns `Ok`.
//! - Between two syncs of a file, a crash may keep any subset of the writes,
//!   and may tear any of them (apply only some of its 512-byte sectors).
//! - `set_len` is, like a write, durable only after `sync`.
//! - Creating or removing a file is durable after `sync_dir` of its folder.
//! - A failed `sync` leaves the durable state unknown: the caller must treat
//!   the file as poisoned.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub mod os;
pub mod sim;

/// How to open a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenMode {
    /// Open an existing file; fail with `NotFound` if it is missing.
    Existing,
    /// Open the file, creating it empty if it is missing.
    CreateIfMissing,
}

/// A file system: the OS ([`os::OsFs`]) or a simulation ([`sim::SimFs`]).
pub trait Vfs: Send + Sync + 'static {
    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Arc<dyn VfsFile>>;
    fn remove(&self, path: &Path) -> io::Result<()>;
    fn exists(&self, path: &Path) -> bool;
    /// Full paths of the files directly inside `dir`, sorted by name.
    fn list(&self, dir: &Path) -> io::Result<Vec<PathBuf>>;
    fn create_dir_all(&self, dir: &Path) -> io::Result<()>;
    /// Makes the creation and removal of files in `dir` durable.
    fn sync_dir(&self, dir: &Path) -> io::Result<()>;
}

/// An open file. Positional I/O only, so one handle serves many threads.
pub trait VfsFile: Send + Sync {
    /// Reads up to `buf.len()` bytes at `offset`; returns how many were read
    /// (fewer only at the end of the file).
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize>;
    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()>;
    /// Writes `bufs` back to back from `offset`, as one
    /// [`VfsFile::write_all_at`] of their concatenation would, without
    /// first copying them into one buffer where the file can (`pwritev`).
    /// The default copies.
    fn write_all_vectored_at(&self, bufs: &[&[u8]], offset: u64) -> io::Result<()> {
        self.write_all_at(&bufs.concat(), offset)
    }
    /// Makes every earlier write and `set_len` of this file durable.
    fn sync(&self) -> io::Result<()>;
    /// Asks for `len` bytes written at `offset` to start going to the disk
    /// now, without waiting for them; durable only after a later
    /// [`VfsFile::sync`]. A hint: the default does nothing.
    fn start_writeback(&self, offset: u64, len: u64) -> io::Result<()> {
        let _ = (offset, len);
        Ok(())
    }
    fn len(&self) -> io::Result<u64>;
    fn set_len(&self, len: u64) -> io::Result<()>;

    /// Reads exactly `buf.len()` bytes at `offset`, failing with
    /// `UnexpectedEof` if the file is shorter.
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        let mut done = 0;
        while done < buf.len() {
            let n = self.read_at(&mut buf[done..], offset + done as u64)?;
            if n == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!(
                        "read of {} bytes at offset {offset} passes the end of the file",
                        buf.len()
                    ),
                ));
            }
            done += n;
        }
        Ok(())
    }

    /// Whether the file has no bytes (as `len`, visible bytes).
    fn is_empty(&self) -> io::Result<bool> {
        Ok(self.len()? == 0)
    }
}
