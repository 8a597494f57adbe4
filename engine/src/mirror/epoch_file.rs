//! The epoch a member last knew, kept across restarts in `<data>/epoch`:
//! a line of text, replaced atomically (write a temporary file, fsync,
//! rename, fsync the folder), so a crash leaves the old or the new value.

use std::fs;
use std::io::Write;
use std::path::Path;

pub fn read(dir: &Path) -> std::io::Result<u64> {
    match fs::read_to_string(dir.join("epoch")) {
        Ok(text) => text.trim().parse().map_err(|_| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!(
                    "{}: not an epoch number: {text:?}",
                    dir.join("epoch").display()
                ),
            )
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(0),
        Err(e) => Err(e),
    }
}

pub fn write(dir: &Path, epoch: u64) -> std::io::Result<()> {
    let tmp = dir.join("epoch.tmp");
    let mut f = fs::File::create(&tmp)?;
    writeln!(f, "{epoch}")?;
    f.sync_all()?;
    fs::rename(&tmp, dir.join("epoch"))?;
    fs::File::open(dir)?.sync_all()
}
