//! OS files: [`OsFs`] maps the [`Vfs`] contract onto `std::fs`.
//!
//! - Reads and writes are positional (`pread`/`pwrite` through
//!   [`FileExt`]), so one handle serves many threads without a seek lock.
//! - `sync` is `fdatasync` ([`File::sync_data`]): it flushes the data and
//!   the metadata needed to read it back (including the length), not the
//!   timestamps.
//! - `sync_dir` opens the directory and `fsync`s it, which makes the
//!   creation and removal of its entries durable.
//!
//! Errors keep their [`io::ErrorKind`] and gain the path and the action in
//! their message.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::{OpenMode, Vfs, VfsFile};

/// The operating system's file system.
#[derive(Debug, Clone, Copy, Default)]
pub struct OsFs;

/// Adds the action and the path to an error, keeping its kind.
fn context(err: io::Error, action: &str, path: &Path) -> io::Error {
    io::Error::new(err.kind(), format!("{action} {}: {err}", path.display()))
}

impl Vfs for OsFs {
    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Arc<dyn VfsFile>> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(mode == OpenMode::CreateIfMissing)
            .truncate(false)
            .open(path)
            .map_err(|e| context(e, "open", path))?;
        Ok(Arc::new(OsFile {
            file,
            path: path.to_path_buf(),
        }))
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        fs::remove_file(path).map_err(|e| context(e, "remove", path))
    }

    fn exists(&self, path: &Path) -> bool {
        path.exists()
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<PathBuf>> {
        let mut files = Vec::new();
        for entry in fs::read_dir(dir).map_err(|e| context(e, "list", dir))? {
            let entry = entry.map_err(|e| context(e, "list", dir))?;
            let kind = entry
                .file_type()
                .map_err(|e| context(e, "stat entry of", dir))?;
            if kind.is_file() {
                files.push(entry.path());
            }
        }
        files.sort();
        Ok(files)
    }

    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        fs::create_dir_all(dir).map_err(|e| context(e, "create directory", dir))
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        let handle = File::open(dir).map_err(|e| context(e, "open directory", dir))?;
        handle
            .sync_all()
            .map_err(|e| context(e, "sync directory", dir))
    }
}

/// An open OS file.
#[derive(Debug)]
struct OsFile {
    file: File,
    /// For error messages only.
    path: PathBuf,
}

impl VfsFile for OsFile {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        let mut done = 0;
        while done < buf.len() {
            match self.file.read_at(&mut buf[done..], offset + done as u64) {
                Ok(0) => break,
                Ok(n) => done += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    return Err(context(
                        e,
                        &format!("read at offset {offset} of"),
                        &self.path,
                    ))
                }
            }
        }
        Ok(done)
    }

    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.file.write_all_at(buf, offset).map_err(|e| {
            context(
                e,
                &format!("write {} bytes at offset {offset} to", buf.len()),
                &self.path,
            )
        })
    }

    fn write_all_vectored_at(&self, bufs: &[&[u8]], offset: u64) -> io::Result<()> {
        let total: usize = bufs.iter().map(|b| b.len()).sum();
        write_vectored_at(&self.file, bufs, offset).map_err(|e| {
            context(
                e,
                &format!("write {total} bytes at offset {offset} to"),
                &self.path,
            )
        })
    }

    fn sync(&self) -> io::Result<()> {
        self.file
            .sync_data()
            .map_err(|e| context(e, "sync", &self.path))
    }

    /// `sync_file_range(SYNC_FILE_RANGE_WRITE)` on Linux: the kernel
    /// starts writing the range back and returns; the later `fdatasync`
    /// waits for what is still in flight and flushes the disk's cache.
    fn start_writeback(&self, offset: u64, len: u64) -> io::Result<()> {
        #[cfg(target_os = "linux")]
        {
            use std::os::fd::AsRawFd;
            // SAFETY: a plain system call on a file descriptor this file
            // owns for its whole life; it reads no memory of ours.
            let r = unsafe {
                libc::sync_file_range(
                    self.file.as_raw_fd(),
                    offset as libc::off64_t,
                    len as libc::off64_t,
                    libc::SYNC_FILE_RANGE_WRITE,
                )
            };
            if r != 0 {
                return Err(context(
                    io::Error::last_os_error(),
                    &format!("start write-back of {len} bytes at offset {offset} of"),
                    &self.path,
                ));
            }
        }
        #[cfg(not(target_os = "linux"))]
        let _ = (offset, len);
        Ok(())
    }

    fn len(&self) -> io::Result<u64> {
        Ok(self
            .file
            .metadata()
            .map_err(|e| context(e, "stat", &self.path))?
            .len())
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        self.file
            .set_len(len)
            .map_err(|e| context(e, &format!("set length {len} of"), &self.path))
    }
}

/// `pwritev(2)` of all of `bufs` at `offset`, resuming after short writes
/// and interruptions, at most `IOV_MAX` (1024) buffers per call.
fn write_vectored_at(file: &File, bufs: &[&[u8]], mut offset: u64) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    const IOV_MAX: usize = 1024;
    let mut bufs: Vec<&[u8]> = bufs.iter().copied().filter(|b| !b.is_empty()).collect();
    let mut first = 0;
    while first < bufs.len() {
        let iov: Vec<libc::iovec> = bufs[first..bufs.len().min(first + IOV_MAX)]
            .iter()
            .map(|b| libc::iovec {
                iov_base: b.as_ptr() as *mut libc::c_void,
                iov_len: b.len(),
            })
            .collect();
        let at = libc::off_t::try_from(offset)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "offset past off_t"))?;
        // SAFETY: every iovec points into a slice borrowed for this call,
        // which pwritev only reads; the count matches the vector's length.
        let n =
            unsafe { libc::pwritev(file.as_raw_fd(), iov.as_ptr(), iov.len() as libc::c_int, at) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::WriteZero,
                "pwritev wrote nothing",
            ));
        }
        // Skip what was written: whole buffers, then part of the next.
        let mut left = n as usize;
        offset += left as u64;
        while left > 0 {
            let b = bufs[first];
            if left >= b.len() {
                left -= b.len();
                first += 1;
            } else {
                bufs[first] = &b[left..];
                left = 0;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Vectored writes land exactly as one write of the concatenation:
    /// more buffers than one `pwritev` takes (`IOV_MAX`), empty ones, and
    /// sizes that do not line up with anything.
    #[test]
    fn vectored_writes_match_one_write_of_the_concatenation() {
        let dir = tempfile::tempdir().unwrap();
        let f = OsFs
            .open(&dir.path().join("v.dat"), OpenMode::CreateIfMissing)
            .unwrap();
        let parts: Vec<Vec<u8>> = (0..2500u32)
            .map(|i| vec![(i % 251) as u8; (i as usize * 7) % 37])
            .collect();
        let refs: Vec<&[u8]> = parts.iter().map(Vec::as_slice).collect();
        f.write_all_vectored_at(&refs, 1000).unwrap();
        let whole = parts.concat();
        let mut back = vec![0u8; whole.len()];
        f.read_exact_at(&mut back, 1000).unwrap();
        assert_eq!(back, whole);
        assert_eq!(f.len().unwrap(), 1000 + whole.len() as u64);
        f.write_all_vectored_at(&[], 5).unwrap();
        assert_eq!(f.len().unwrap(), 1000 + whole.len() as u64);
    }

    #[test]
    fn round_trip_on_real_files() {
        let dir = tempfile::tempdir().unwrap();
        let fs = OsFs;
        let path = dir.path().join("a.dat");
        assert!(!fs.exists(&path));
        let err = fs.open(&path, OpenMode::Existing).err().unwrap();
        assert_eq!(err.kind(), io::ErrorKind::NotFound);

        let f = fs.open(&path, OpenMode::CreateIfMissing).unwrap();
        f.write_all_at(b"hello", 10).unwrap();
        assert_eq!(f.len().unwrap(), 15);
        f.sync().unwrap();
        fs.sync_dir(dir.path()).unwrap();
        let mut buf = [0xffu8; 20];
        assert_eq!(f.read_at(&mut buf, 0).unwrap(), 15);
        assert_eq!(&buf[..15], b"\0\0\0\0\0\0\0\0\0\0hello");
        let mut exact = [0u8; 5];
        f.read_exact_at(&mut exact, 10).unwrap();
        assert_eq!(&exact, b"hello");
        assert_eq!(
            f.read_exact_at(&mut exact, 12).unwrap_err().kind(),
            io::ErrorKind::UnexpectedEof
        );
        f.set_len(3).unwrap();
        assert_eq!(f.len().unwrap(), 3);

        fs.create_dir_all(&dir.path().join("sub/deeper")).unwrap();
        fs.open(&dir.path().join("b.dat"), OpenMode::CreateIfMissing)
            .unwrap();
        assert_eq!(
            fs.list(dir.path()).unwrap(),
            vec![path.clone(), dir.path().join("b.dat")]
        );
        fs.remove(&path).unwrap();
        assert!(!fs.exists(&path));
        assert_eq!(
            fs.remove(&path).unwrap_err().kind(),
            io::ErrorKind::NotFound
        );
    }
}
