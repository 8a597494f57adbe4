//! Pipelined commits: a transaction's commit record is in the journal and
//! its sync has started, but the session goes on before it is durable.
//!
//! [`Session::tcommit_pipelined`](super::Session::tcommit_pipelined) ends
//! the outermost transaction like `TCOMMIT` and returns a
//! [`PendingCommit`] instead of waiting. The commit is acknowledged only
//! when [`PendingCommit::wait`] returns `Ok`, with exactly the guarantee of
//! `TCOMMIT` (durable here and, while the backup is synchronous, on the
//! backup). Until then it may be lost in a crash, as a whole: recovery rolls
//! back a transaction whose commit record is not durable.
//!
//! What a loader gains: the sync of transaction N runs while it builds
//! transaction N+1, instead of the loader idling through it. The journal is
//! one sequence, so a commit that becomes durable makes every earlier one
//! durable too: a loader that waits for N before committing N+1 has at most
//! one transaction unacknowledged at any time, and after a crash resumes
//! from the last one it saw acknowledged.
//!
//! Changes are visible to other sessions as soon as they are made, as for
//! every transaction (see `session.rs`); a pipelined commit changes only
//! when its session hears that it is durable.

use std::sync::Arc;

use super::Inner;
use crate::error::Result;
use crate::Lsn;

/// A commit that may not be durable yet. Dropping it does not undo the
/// commit (its record is in the journal and is synced anyway); it only
/// means nobody hears when it became durable.
#[must_use = "a pipelined commit is acknowledged only by `wait`"]
pub struct PendingCommit {
    inner: Arc<Inner>,
    /// End of the commit record; `None` when the TCOMMIT closed an inner
    /// level, which commits nothing.
    end: Option<Lsn>,
}

impl PendingCommit {
    pub(super) fn new(inner: Arc<Inner>, end: Option<Lsn>) -> PendingCommit {
        // Start the sync now, so that it overlaps the caller's next work.
        if let Some(end) = end {
            inner.start_sync(end);
        }
        PendingCommit { inner, end }
    }

    /// The journal position this commit waits for: the end of its commit
    /// record (`None` for an inner level, nothing to wait for).
    pub fn end(&self) -> Option<Lsn> {
        self.end
    }

    /// Whether the journal is durable here past this commit, without
    /// waiting (the backup's acknowledgement is not checked: only
    /// [`PendingCommit::wait`] acknowledges).
    pub fn is_durable_here(&self) -> bool {
        self.end
            .is_none_or(|end| self.inner.journal.durable_lsn() >= end)
    }

    /// Returns once the commit may be acknowledged, exactly as `TCOMMIT`
    /// would have. An error means its outcome is unknown: it names why (a
    /// failed sync poisons the store, a demotion leaves the outcome to
    /// the new primary).
    pub fn wait(self) -> Result<()> {
        match self.end {
            Some(end) => self.inner.wait_commit(end),
            None => Ok(()),
        }
    }
}

impl std::fmt::Debug for PendingCommit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PendingCommit")
            .field("end", &self.end)
            .finish()
    }
}
