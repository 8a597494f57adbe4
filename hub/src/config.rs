//! `redoubt member --config FILE`: the TOML a member starts from.
//!
//! ```toml
//! mirror = "M1"
//! name = "a"                      # this member; one of [[members]]
//! data = "/var/lib/redoubt/a"
//! listen = "0.0.0.0:7701"         # optional; defaults to this member's addr
//! arbiter = "10.0.0.9:7700"       # optional; without it no automatic failover
//! qos_ms = 8000                   # how long to wait for a silent peer
//! admin = "127.0.0.1:8701"        # optional HTTP admin API
//! databases = ["USER"]            # created by the primary if missing
//! cache_mb = 128                  # buffer pool per database
//! journal_keep_mb = 1024          # journal kept for members that are away
//! journal_write_ahead_kb = 64     # a big transaction's records go to disk
//!                                 # ahead of its commit past this; 0: off
//!
//! [[members]]
//! name = "a"
//! addr = "10.0.0.1:7701"
//! kind = "failover"               # or "async"
//! ```
//!
//! Unknown keys and contradictory settings are refused at start, naming
//! the field.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use redoubt_engine::mirror::{MemberConfig, MemberKind, MemberSpec};
use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MemberFile {
    pub mirror: String,
    pub name: String,
    pub data: PathBuf,
    pub listen: Option<String>,
    pub arbiter: Option<String>,
    #[serde(default = "default_qos_ms")]
    pub qos_ms: u64,
    pub admin: Option<String>,
    #[serde(default)]
    pub databases: Vec<String>,
    #[serde(default = "default_cache_mb")]
    pub cache_mb: u64,
    /// Journal kept (counted back from its end) beyond what recovery and
    /// connected followers need, for members that are away.
    #[serde(default = "default_journal_keep_mb")]
    pub journal_keep_mb: u64,
    /// A transaction's records are written ahead of its commit once this
    /// many KiB wait; 0 turns it off.
    #[serde(default = "default_journal_write_ahead_kb")]
    pub journal_write_ahead_kb: u64,
    pub members: Vec<MemberEntry>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MemberEntry {
    pub name: String,
    pub addr: String,
    pub kind: MemberKind,
}

fn default_qos_ms() -> u64 {
    8000
}

fn default_cache_mb() -> u64 {
    128
}

fn default_journal_keep_mb() -> u64 {
    1024
}

fn default_journal_write_ahead_kb() -> u64 {
    64
}

impl MemberFile {
    pub fn load(path: &Path) -> Result<MemberFile> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("read {}", path.display()))?;
        Self::parse(&text).with_context(|| format!("config {}", path.display()))
    }

    pub fn parse(text: &str) -> Result<MemberFile> {
        let file: MemberFile = toml::from_str(text)?;
        file.to_config().map_err(anyhow::Error::msg)?;
        Ok(file)
    }

    /// The runtime configuration; the error names the field.
    pub fn to_config(&self) -> Result<MemberConfig, String> {
        if self.cache_mb == 0 {
            return Err("cache_mb: must be at least 1".into());
        }
        // At most a group-commit batch (4 MiB): more could not stay
        // written and unsynced (what recovery allows after a crash).
        if self.journal_write_ahead_kb > 4096 {
            return Err(format!(
                "journal_write_ahead_kb: at most 4096 (one journal batch), got {}",
                self.journal_write_ahead_kb
            ));
        }
        let members: Vec<MemberSpec> = self
            .members
            .iter()
            .map(|m| MemberSpec {
                name: m.name.clone(),
                addr: m.addr.clone(),
                kind: m.kind,
            })
            .collect();
        let listen = match &self.listen {
            Some(l) => l.clone(),
            None => members
                .iter()
                .find(|m| m.name == self.name)
                .map(|m| m.addr.clone())
                .ok_or_else(|| format!("name: this member ({:?}) is not in members", self.name))?,
        };
        let cfg = MemberConfig {
            mirror: self.mirror.clone(),
            name: self.name.clone(),
            data_dir: self.data.clone(),
            listen,
            members,
            arbiter: self.arbiter.clone(),
            qos: Duration::from_millis(self.qos_ms),
            databases: self.databases.clone(),
            cache_pages: (self.cache_mb * 1024 * 1024 / 8192) as usize,
            journal_keep_bytes: self.journal_keep_mb.saturating_mul(1 << 20),
            journal_write_ahead_bytes: self.journal_write_ahead_kb * 1024,
            admin: self.admin.clone(),
        };
        cfg.validate()?;
        Ok(cfg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
mirror = "M1"
name = "a"
data = "/tmp/a"
arbiter = "127.0.0.1:7700"
qos_ms = 2000
databases = ["USER"]

[[members]]
name = "a"
addr = "127.0.0.1:7701"
kind = "failover"

[[members]]
name = "b"
addr = "127.0.0.1:7702"
kind = "failover"

[[members]]
name = "dr"
addr = "127.0.0.1:7703"
kind = "async"
"#;

    #[test]
    fn a_good_file_gives_the_runtime_config() {
        let cfg = MemberFile::parse(GOOD).unwrap().to_config().unwrap();
        assert_eq!(cfg.listen, "127.0.0.1:7701");
        assert_eq!(cfg.failover_peer().unwrap().name, "b");
        assert_eq!(cfg.qos, Duration::from_secs(2));
        assert_eq!(cfg.journal_write_ahead_bytes, 64 * 1024, "the default");
        let off = GOOD.replace("qos_ms = 2000", "qos_ms = 2000\njournal_write_ahead_kb = 0");
        let cfg = MemberFile::parse(&off).unwrap().to_config().unwrap();
        assert_eq!(cfg.journal_write_ahead_bytes, 0);
    }

    #[test]
    fn bad_files_are_refused_naming_the_field() {
        let cases = [
            (
                GOOD.replace("qos_ms = 2000", "qos_ms = 2000\nqso = 1"),
                "qso",
            ),
            (
                GOOD.replace("name = \"a\"\ndata", "name = \"zz\"\ndata"),
                "name:",
            ),
            (
                GOOD.replace("kind = \"async\"", "kind = \"sideways\""),
                "sideways",
            ),
            (
                GOOD.replace("127.0.0.1:7703", "127.0.0.1:7702"),
                "members[2].addr",
            ),
            (GOOD.replace("qos_ms = 2000", "qos_ms = 5"), "qos_ms"),
            (
                GOOD.replace("kind = \"async\"", "kind = \"failover\""),
                "at most two",
            ),
            (
                GOOD.replace(
                    "arbiter = \"127.0.0.1:7700\"",
                    "arbiter = \"127.0.0.1:7701\"",
                ),
                "arbiter:",
            ),
            (GOOD.replace("[\"USER\"]", "[\"1x\"]"), "databases"),
            (
                GOOD.replace(
                    "qos_ms = 2000",
                    "qos_ms = 2000\njournal_write_ahead_kb = 5000",
                ),
                "journal_write_ahead_kb",
            ),
        ];
        for (text, want) in cases {
            let err = format!("{:#}", MemberFile::parse(&text).unwrap_err());
            assert!(err.contains(want), "expected {want:?} in: {err}");
        }
    }
}
