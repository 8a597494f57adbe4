//! A member's configuration, as the runtime needs it (the `redoubt member`
//! command reads it from TOML). Bad or contradictory settings are refused
//! with a message naming the field.

use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MemberKind {
    /// Primary or backup: replicates synchronously, fails over.
    Failover,
    /// A disaster-recovery copy: follows asynchronously, never fails over
    /// by itself.
    Async,
}

/// One member of the mirror as every member knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberSpec {
    pub name: String,
    /// Where clients and other members reach it.
    pub addr: String,
    pub kind: MemberKind,
}

#[derive(Debug, Clone)]
pub struct MemberConfig {
    pub mirror: String,
    /// This member's name; must be one of `members`.
    pub name: String,
    pub data_dir: PathBuf,
    /// Address to listen on for clients and members (defaults to this
    /// member's `addr`).
    pub listen: String,
    /// Every member of the mirror, this one included.
    pub members: Vec<MemberSpec>,
    pub arbiter: Option<String>,
    /// How long a member waits for a silent peer.
    pub qos: Duration,
    /// Databases the primary creates if they are missing.
    pub databases: Vec<String>,
    /// Buffer pool bound per database, in 8 KiB pages.
    pub cache_pages: usize,
    /// Journal kept beyond what recovery and connected followers need
    /// (see `EngineOptions::journal_keep_bytes`).
    pub journal_keep_bytes: u64,
    /// A transaction's records are written ahead of its commit once this
    /// many wait (see `JournalOptions::write_ahead_bytes`); 0: never.
    pub journal_write_ahead_bytes: u64,
    /// Where this member's HTTP admin API listens, if it has one (served by
    /// the `redoubt` process; reported in the status so tools find it).
    pub admin: Option<String>,
}

/// At most this many members per mirror (as IRIS).
pub const MAX_MEMBERS: usize = 16;

impl MemberConfig {
    pub fn me(&self) -> &MemberSpec {
        self.members
            .iter()
            .find(|m| m.name == self.name)
            .expect("validated: this member is listed")
    }

    /// The other failover member, if this one is a failover member and the
    /// mirror has two.
    pub fn failover_peer(&self) -> Option<&MemberSpec> {
        if self.me().kind != MemberKind::Failover {
            return None;
        }
        self.members
            .iter()
            .find(|m| m.kind == MemberKind::Failover && m.name != self.name)
    }

    pub fn member(&self, name: &str) -> Option<&MemberSpec> {
        self.members.iter().find(|m| m.name == name)
    }

    /// Checks the configuration; the error names the field.
    pub fn validate(&self) -> Result<(), String> {
        let valid_name = |n: &str| {
            !n.is_empty()
                && n.len() <= 64
                && n.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        };
        if !valid_name(&self.mirror) {
            return Err(format!(
                "mirror: {:?} is not a valid name (letters, digits, '-', '_')",
                self.mirror
            ));
        }
        if !valid_name(&self.name) {
            return Err(format!("name: {:?} is not a valid member name", self.name));
        }
        if self.members.len() > MAX_MEMBERS {
            return Err(format!(
                "members: {} members; a mirror has at most {MAX_MEMBERS}",
                self.members.len()
            ));
        }
        for (i, m) in self.members.iter().enumerate() {
            if !valid_name(&m.name) {
                return Err(format!(
                    "members[{i}].name: {:?} is not a valid member name",
                    m.name
                ));
            }
            if m.addr.parse::<std::net::SocketAddr>().is_err() && !m.addr.contains(':') {
                return Err(format!("members[{i}].addr: {:?} is not HOST:PORT", m.addr));
            }
            if self.members[..i].iter().any(|o| o.name == m.name) {
                return Err(format!("members[{i}].name: {:?} is listed twice", m.name));
            }
            if self.members[..i].iter().any(|o| o.addr == m.addr) {
                return Err(format!(
                    "members[{i}].addr: {} is used by two members",
                    m.addr
                ));
            }
        }
        if !self.members.iter().any(|m| m.name == self.name) {
            return Err(format!(
                "name: this member ({:?}) is not in members",
                self.name
            ));
        }
        let failover = self
            .members
            .iter()
            .filter(|m| m.kind == MemberKind::Failover)
            .count();
        if failover == 0 {
            return Err("members: a mirror needs one or two failover members".into());
        }
        if failover > 2 {
            return Err(format!(
                "members: {failover} failover members; a mirror has at most two"
            ));
        }
        if self.qos < Duration::from_millis(100) || self.qos > Duration::from_secs(600) {
            return Err(format!(
                "qos_ms: {} ms is outside 100..=600000",
                self.qos.as_millis()
            ));
        }
        if let Some(a) = &self.arbiter {
            if self.members.iter().any(|m| &m.addr == a) {
                return Err(format!(
                    "arbiter: {a} is a member's address; the arbiter must be a separate service"
                ));
            }
        }
        for d in &self.databases {
            if !crate::db::valid_database_name(d) {
                return Err(format!("databases: {d:?} is not a valid database name"));
            }
        }
        Ok(())
    }
}
