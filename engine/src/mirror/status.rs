//! What a member reports about itself: `/status`, `redoubt list`, metrics.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct FollowerStatus {
    pub name: String,
    /// End of what the follower has made durable.
    pub durable: u64,
    /// End of what it has applied.
    pub applied: u64,
    /// Bytes of journal the follower still lacks.
    pub lag_bytes: u64,
    /// Seconds since its last acknowledgement.
    pub last_ack_secs: f64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct MemberStatus {
    pub mirror: String,
    pub member: String,
    pub addr: String,
    /// The HTTP admin API, if any.
    pub admin: Option<String>,
    /// "failover" or "async".
    pub kind: String,
    /// "primary", "backup", "async", "starting", "trouble".
    pub role: String,
    pub epoch: u64,
    /// Name of the primary, if known.
    pub primary: Option<String>,
    /// Oldest journal position this member holds (where its seed began,
    /// or 0).
    #[serde(default)]
    pub journal_start: u64,
    /// End of this member's journal.
    pub journal_end: u64,
    pub journal_durable: u64,
    /// End of what this member has applied to its databases.
    pub applied: u64,
    /// (follower) the primary's journal end when it last told us.
    pub primary_end: Option<u64>,
    /// (follower) bytes of journal not yet received.
    pub receive_lag_bytes: Option<u64>,
    /// (follower) seconds between the primary's clock in its last message
    /// and now: how far behind in time this copy is.
    pub receive_lag_secs: Option<f64>,
    /// (primary) commits wait for the backup.
    pub sync: bool,
    /// (backup) the primary counts this member as its active backup.
    pub active_backup: bool,
    /// Why commits are paused, if they are.
    pub paused: Option<String>,
    pub arbiter: Option<String>,
    pub arbiter_connected: bool,
    /// The arbiter's register as last seen: "epoch 4 primary b (backup active)".
    pub witness: Option<String>,
    pub followers: Vec<FollowerStatus>,
    pub commits: u64,
    /// fsyncs of this member's journal since it started (group commit: a
    /// sync covers many commits).
    #[serde(default)]
    pub journal_syncs: u64,
    /// The buffer pools: their bound, what they hold, dirty pages, keys
    /// in insert buffers.
    #[serde(default)]
    pub pool: crate::db::PoolStats,
    pub poisoned: Option<String>,
    /// Set while the primary refuses to stream to this member because it
    /// needs a fresh copy (restart it with `--reseed`).
    #[serde(default)]
    pub needs_seed: Option<String>,
    /// Where each epoch of this member's journal began: (epoch, position).
    pub epochs: Vec<(u64, u64)>,
    /// Every member of the mirror as configured: (name, addr, kind).
    pub members: Vec<(String, String, String)>,
}
