//! [`WitnessStore`]: the durable witness register of every mirror, one
//! small file per mirror in the arbiter's data directory.
//!
//! ```text
//!  <data dir>/<mirror>.witness
//!
//!  offset  size  field
//!  ------  ----  -------------------------------------------------------
//!  0       8     magic          "RDWITNES"
//!  8       4     format         u32 LE = 1
//!  12      8     epoch          u64 LE
//!  20      1     backup_active  u8: 0 or 1
//!  21      2     mirror_len     u16 LE, then mirror_len bytes of UTF-8
//!  ..      2     primary_len    u16 LE, then primary_len bytes of UTF-8
//!  ..      4     crc            u32 LE = crc32c(every byte before it)
//! ```
//!
//! A change is written to `<mirror>.witness.tmp`, fsynced, renamed over
//! the file, and the directory is fsynced; only then does the arbiter
//! answer. Crash model: a crash before the rename leaves the old file (and
//! a `.tmp` that the next start deletes); a crash after it leaves the old
//! or the new file, each whole and valid. So a state a member was told
//! about is always the one found at restart. A file that fails its checks
//! (length, magic, checksum, mirror name) stops the arbiter at start with
//! [`ArbiterError::CorruptState`]: guessing an epoch could allow two
//! primaries.
//!
//! A failed write or fsync poisons the mirror's register: it refuses
//! every change until the arbiter restarts and reloads what is on disk.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use super::ArbiterError;
use crate::wire::Witness;

const MAGIC: &[u8; 8] = b"RDWITNES";
const FORMAT: u32 = 1;
const SUFFIX: &str = ".witness";
const TMP_SUFFIX: &str = ".witness.tmp";

/// Longest mirror name, in bytes.
pub const MAX_MIRROR_NAME: usize = 64;
/// Longest member name stored as a primary, in bytes.
pub const MAX_MEMBER_NAME: usize = 255;

/// Checks a mirror name: 1 to 64 ASCII letters, digits, `_`, `-` or `.`,
/// starting with a letter or digit (it names a file).
pub fn validate_mirror_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= MAX_MIRROR_NAME
        && name.as_bytes()[0].is_ascii_alphanumeric()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "invalid mirror name {name:?}: use 1 to {MAX_MIRROR_NAME} letters, digits, '_', '-' or '.', starting with a letter or digit"
        ))
    }
}

/// Checks a member name as stored in a witness: 1 to 255 bytes, no
/// control characters.
pub fn validate_member_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > MAX_MEMBER_NAME || name.chars().any(char::is_control) {
        Err(format!(
            "invalid member name {name:?}: use 1 to {MAX_MEMBER_NAME} bytes without control characters"
        ))
    } else {
        Ok(())
    }
}

/// The file's bytes for `mirror`'s state.
pub fn encode_file(mirror: &str, w: &Witness) -> Vec<u8> {
    let mut b = Vec::with_capacity(32 + mirror.len() + w.primary.len());
    b.extend_from_slice(MAGIC);
    b.extend_from_slice(&FORMAT.to_le_bytes());
    b.extend_from_slice(&w.epoch.to_le_bytes());
    b.push(u8::from(w.backup_active));
    for s in [mirror, w.primary.as_str()] {
        let len = u16::try_from(s.len()).expect("names are validated to fit u16");
        b.extend_from_slice(&len.to_le_bytes());
        b.extend_from_slice(s.as_bytes());
    }
    let crc = crc32c::crc32c(&b);
    b.extend_from_slice(&crc.to_le_bytes());
    b
}

/// Parses a witness file of `mirror`; the error says what is wrong.
pub fn decode_file(mirror: &str, b: &[u8]) -> Result<Witness, String> {
    if b.len() < 8 + 4 + 8 + 1 + 2 + 2 + 4 {
        return Err(format!("{} bytes is too short", b.len()));
    }
    if &b[0..8] != MAGIC {
        return Err("not a witness file (bad magic)".into());
    }
    let (body, crc) = b.split_at(b.len() - 4);
    let stored = u32::from_le_bytes([crc[0], crc[1], crc[2], crc[3]]);
    if crc32c::crc32c(body) != stored {
        return Err("checksum mismatch".into());
    }
    let format = u32::from_le_bytes([b[8], b[9], b[10], b[11]]);
    if format != FORMAT {
        return Err(format!(
            "format {format} is not supported (expected {FORMAT})"
        ));
    }
    let mut e = [0u8; 8];
    e.copy_from_slice(&b[12..20]);
    let epoch = u64::from_le_bytes(e);
    let backup_active = match b[20] {
        0 => false,
        1 => true,
        x => return Err(format!("backup_active byte {x} is neither 0 nor 1")),
    };
    let mut pos = 21;
    let mut name = |what: &str| -> Result<String, String> {
        let len_bytes = body
            .get(pos..pos + 2)
            .ok_or(format!("truncated before the {what} length"))?;
        let len = usize::from(u16::from_le_bytes([len_bytes[0], len_bytes[1]]));
        let s = body
            .get(pos + 2..pos + 2 + len)
            .ok_or(format!("truncated in the {what} name"))?;
        pos += 2 + len;
        String::from_utf8(s.to_vec()).map_err(|_| format!("{what} name is not UTF-8"))
    };
    let stored_mirror = name("mirror")?;
    let primary = name("primary")?;
    if pos != body.len() {
        return Err(format!(
            "{} unexpected bytes after the primary name",
            body.len() - pos
        ));
    }
    if stored_mirror != mirror {
        return Err(format!("it holds mirror {stored_mirror:?}, not {mirror:?}"));
    }
    Ok(Witness {
        epoch,
        primary,
        backup_active,
    })
}

/// The durable state of every mirror this arbiter has seen.
pub struct WitnessStore {
    dir: PathBuf,
    mirrors: HashMap<String, Witness>,
    poisoned: HashMap<String, String>,
}

impl WitnessStore {
    /// Opens (creating if needed) `dir` and loads every witness file;
    /// deletes leftover temporary files. A bad file is an error.
    pub fn open(dir: &Path) -> Result<WitnessStore, ArbiterError> {
        fs::create_dir_all(dir)
            .map_err(|e| ArbiterError::io(format!("create data directory {}", dir.display()), e))?;
        let entries = fs::read_dir(dir)
            .map_err(|e| ArbiterError::io(format!("list data directory {}", dir.display()), e))?;
        let mut mirrors = HashMap::new();
        for entry in entries {
            let entry =
                entry.map_err(|e| ArbiterError::io(format!("list {}", dir.display()), e))?;
            let path = entry.path();
            let Some(file) = path.file_name().and_then(|n| n.to_str()) else {
                continue;
            };
            if file.ends_with(TMP_SUFFIX) {
                fs::remove_file(&path)
                    .map_err(|e| ArbiterError::io(format!("remove {}", path.display()), e))?;
                continue;
            }
            let Some(mirror) = file.strip_suffix(SUFFIX) else {
                continue;
            };
            let corrupt = |reason: String| ArbiterError::CorruptState {
                path: path.clone(),
                reason,
            };
            validate_mirror_name(mirror).map_err(corrupt)?;
            let bytes = fs::read(&path)
                .map_err(|e| ArbiterError::io(format!("read {}", path.display()), e))?;
            let w = decode_file(mirror, &bytes).map_err(corrupt)?;
            mirrors.insert(mirror.to_string(), w);
        }
        Ok(WitnessStore {
            dir: dir.to_path_buf(),
            mirrors,
            poisoned: HashMap::new(),
        })
    }

    /// The state of `mirror`, if it has one.
    pub fn get(&self, mirror: &str) -> Option<&Witness> {
        self.mirrors.get(mirror)
    }

    /// Why `mirror`'s register refuses changes, if a write failed.
    pub fn poisoned(&self, mirror: &str) -> Option<&str> {
        self.poisoned.get(mirror).map(String::as_str)
    }

    /// Every mirror with state.
    pub fn mirrors(&self) -> impl Iterator<Item = (&str, &Witness)> {
        self.mirrors.iter().map(|(m, w)| (m.as_str(), w))
    }

    /// Makes `w` the durable state of `mirror`, then the state in memory.
    /// On failure the mirror is poisoned and its state in memory stays as
    /// it was. `mirror` and `w.primary` must be valid names.
    pub fn put(&mut self, mirror: &str, w: Witness) -> Result<(), ArbiterError> {
        if let Some(why) = self.poisoned.get(mirror) {
            return Err(ArbiterError::Poisoned(why.clone()));
        }
        let result = self.write_file(mirror, &w);
        match result {
            Ok(()) => {
                self.mirrors.insert(mirror.to_string(), w);
                Ok(())
            }
            Err(e) => {
                self.poisoned.insert(
                    mirror.to_string(),
                    format!(
                        "the arbiter could not store the state of mirror {mirror} ({e}); it refuses changes until restarted"
                    ),
                );
                Err(e)
            }
        }
    }

    fn write_file(&self, mirror: &str, w: &Witness) -> Result<(), ArbiterError> {
        let path = self.dir.join(format!("{mirror}{SUFFIX}"));
        let tmp = self.dir.join(format!("{mirror}{TMP_SUFFIX}"));
        let bytes = encode_file(mirror, w);
        let ctx = |what: &str, p: &Path| format!("{what} {}", p.display());
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)
            .map_err(|e| ArbiterError::io(ctx("create", &tmp), e))?;
        f.write_all(&bytes)
            .map_err(|e| ArbiterError::io(ctx("write", &tmp), e))?;
        f.sync_all()
            .map_err(|e| ArbiterError::io(ctx("fsync", &tmp), e))?;
        drop(f);
        fs::rename(&tmp, &path).map_err(|e| ArbiterError::io(ctx("rename over", &path), e))?;
        File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| ArbiterError::io(ctx("fsync directory", &self.dir), e))?;
        Ok(())
    }
}
