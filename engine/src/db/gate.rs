//! The commit gate: what a mirror member's role allows a session to do.
//!
//! - Only a primary takes writes; on a backup or async member a write fails
//!   with a read-only error naming the primary.
//! - While the primary waits for the arbiter (backup lost) or is in trouble
//!   (isolated), new writes wait; they fail after `pause_timeout`.
//! - While the backup is synchronous, a commit returns only when the
//!   backup has acknowledged it durable, as well as the local journal.
//! - A primary that is fenced (a newer epoch exists) fails every waiting
//!   commit: its outcome is unknown to the client, and it will be rewound.

use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

use crate::error::{EngineError, Result};
use crate::Lsn;

/// What this member may do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Access {
    /// Takes writes (a standalone engine, or the primary at `epoch`).
    Primary { epoch: u64 },
    /// Reads only; `primary` names the member to write to, if known.
    ReadOnly { primary: Option<String> },
}

#[derive(Debug)]
struct State {
    access: Access,
    /// Commits wait for the backup's acknowledgement.
    sync: bool,
    /// Everything before this position is durable on the backup.
    acked: Lsn,
    paused: Option<String>,
}

pub(crate) struct Gate {
    state: Mutex<State>,
    changed: Condvar,
    pause_timeout: Duration,
}

impl Gate {
    pub fn new(access: Access, pause_timeout: Duration) -> Gate {
        Gate {
            state: Mutex::new(State {
                access,
                sync: false,
                acked: Lsn::ZERO,
                paused: None,
            }),
            changed: Condvar::new(),
            pause_timeout,
        }
    }

    fn update(&self, f: impl FnOnce(&mut State)) {
        f(&mut self.state.lock());
        self.changed.notify_all();
    }

    pub fn set_access(&self, access: Access) {
        self.update(|s| {
            s.access = access;
            s.sync = false;
            s.paused = None;
        });
    }

    pub fn access(&self) -> Access {
        self.state.lock().access.clone()
    }

    pub fn set_sync(&self, sync: bool) {
        self.update(|s| s.sync = sync);
    }

    pub fn is_sync(&self) -> bool {
        self.state.lock().sync
    }

    pub fn pause(&self, why: &str) {
        self.update(|s| s.paused = Some(why.to_string()));
    }

    pub fn resume(&self) {
        self.update(|s| s.paused = None);
    }

    pub fn paused(&self) -> Option<String> {
        self.state.lock().paused.clone()
    }

    pub fn backup_acked(&self, upto: Lsn) {
        self.update(|s| s.acked = s.acked.max(upto));
    }

    pub fn reset_acked(&self, at: Lsn) {
        self.update(|s| s.acked = at);
    }

    pub fn acked(&self) -> Lsn {
        self.state.lock().acked
    }

    /// Before a change: fails on a read-only member, waits while paused.
    pub fn before_write(&self) -> Result<()> {
        let deadline = Instant::now() + self.pause_timeout;
        let mut s = self.state.lock();
        loop {
            if let Access::ReadOnly { primary } = &s.access {
                return Err(EngineError::ReadOnly {
                    primary: primary.clone(),
                });
            }
            let Some(why) = s.paused.clone() else {
                return Ok(());
            };
            if self.changed.wait_until(&mut s, deadline).timed_out() {
                return Err(EngineError::Paused(why));
            }
        }
    }

    /// After the local journal is durable up to `end`: waits for the
    /// backup while commits are synchronous.
    pub fn wait_commit(&self, end: Lsn) -> Result<()> {
        let mut s = self.state.lock();
        loop {
            match &s.access {
                Access::ReadOnly { .. } => {
                    return Err(EngineError::CommitOutcomeUnknown(
                        "this member stopped being primary before the commit was acknowledged; \
                         its outcome is unknown"
                            .into(),
                    ))
                }
                Access::Primary { .. } if !s.sync || s.acked >= end => return Ok(()),
                Access::Primary { .. } => {}
            }
            self.changed.wait(&mut s);
        }
    }
}
