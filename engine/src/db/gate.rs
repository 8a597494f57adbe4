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

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex, RwLock, RwLockReadGuard};

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
    /// Bumped at every change of `sync`, so a stale stream cannot turn off
    /// what a newer one (or the failover logic) turned on.
    sync_gen: u64,
    /// Everything before this position is durable on the backup.
    acked: Lsn,
    /// Everything before this position is durable here, as the journal's
    /// background flusher last said (used only with one; see
    /// [`Gate::wait_commit`]).
    durable: Lsn,
    paused: Option<String>,
    /// Commits waiting for the backup, parked: `(position, thread)`. An
    /// acknowledgement wakes only those it covers; any other change wakes
    /// them all.
    /// `(position, waits for local durability too, thread)`.
    waiters: Vec<(Lsn, bool, std::thread::Thread)>,
}

impl State {
    /// Wakes the waiting commits that the backup's acknowledgement and the
    /// local durable position now both cover (the latter counts only for
    /// waiters of a background-flushed journal, which is all or none).
    fn wake_covered(&mut self) {
        let (acked, durable, sync) = (self.acked, self.durable, self.sync);
        self.waiters.retain(|(end, local, t)| {
            let done = (!sync || *end <= acked) && (!*local || *end <= durable);
            if done {
                t.unpark();
            }
            !done
        });
    }
}

pub(crate) struct Gate {
    state: Mutex<State>,
    changed: Condvar,
    pause_timeout: Duration,
    /// Held (shared) by every writer from its check to the end of its
    /// journal append; taken exclusively to change access or to pause, so
    /// once those return no write of the old regime is still appending.
    permit: RwLock<()>,
    /// `access` is primary and nothing is paused: a write may go ahead.
    /// Written under `state`; it can only become false under an exclusive
    /// `permit` (access and pause changes), so a writer that holds the
    /// permit and reads true may write ([`Gate::before_write`]'s fast path).
    open: AtomicBool,
}

/// Leave to append journal records as the primary; drop it after the append.
pub(crate) struct WritePermit<'a> {
    _guard: RwLockReadGuard<'a, ()>,
}

impl Gate {
    pub fn new(access: Access, pause_timeout: Duration) -> Gate {
        let open = matches!(access, Access::Primary { .. });
        Gate {
            open: AtomicBool::new(open),
            state: Mutex::new(State {
                access,
                sync: false,
                sync_gen: 0,
                acked: Lsn::ZERO,
                durable: Lsn::ZERO,
                paused: None,
                waiters: Vec::new(),
            }),
            changed: Condvar::new(),
            pause_timeout,
            permit: RwLock::new(()),
        }
    }

    fn update(&self, f: impl FnOnce(&mut State)) {
        {
            let mut s = self.state.lock();
            f(&mut s);
            let open = matches!(s.access, Access::Primary { .. }) && s.paused.is_none();
            self.open.store(open, Ordering::Release);
            for (_, _, t) in s.waiters.drain(..) {
                t.unpark();
            }
        }
        self.changed.notify_all();
    }

    pub fn set_access(&self, access: Access) {
        let _drained = self.permit.write();
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
        self.update(|s| {
            s.sync = sync;
            s.sync_gen += 1;
        });
    }

    /// Turns synchronous commits on if they are off; returns the generation
    /// that only the caller may turn off again.
    pub fn arm_sync(&self) -> Option<u64> {
        let mut st = self.state.lock();
        if st.sync {
            return None;
        }
        st.sync = true;
        st.sync_gen += 1;
        let gen = st.sync_gen;
        for (_, _, t) in st.waiters.drain(..) {
            t.unpark();
        }
        drop(st);
        self.changed.notify_all();
        Some(gen)
    }

    /// Turns synchronous commits off if nothing changed them since `gen`.
    pub fn disarm_sync(&self, gen: u64) {
        self.update(|s| {
            if s.sync_gen == gen {
                s.sync = false;
                s.sync_gen += 1;
            }
        });
    }

    pub fn sync_gen(&self) -> u64 {
        self.state.lock().sync_gen
    }

    pub fn is_sync(&self) -> bool {
        self.state.lock().sync
    }

    pub fn pause(&self, why: &str) {
        let _drained = self.permit.write();
        self.update(|s| s.paused = Some(why.to_string()));
    }

    pub fn resume(&self) {
        self.update(|s| s.paused = None);
    }

    pub fn paused(&self) -> Option<String> {
        self.state.lock().paused.clone()
    }

    pub fn backup_acked(&self, upto: Lsn) {
        let mut s = self.state.lock();
        s.acked = s.acked.max(upto);
        s.wake_covered();
    }

    /// The journal's background flusher made everything below `upto`
    /// durable here (or failed: then everyone is woken to see it).
    pub fn local_durable(&self, upto: Lsn, failed: bool) {
        let mut s = self.state.lock();
        // As reported, not the maximum: a rewind moves it back.
        s.durable = upto;
        if failed {
            for (_, _, t) in s.waiters.drain(..) {
                t.unpark();
            }
        } else {
            s.wake_covered();
        }
    }

    pub fn reset_acked(&self, at: Lsn) {
        self.update(|s| s.acked = at);
    }

    pub fn acked(&self) -> Lsn {
        self.state.lock().acked
    }

    /// Before a change: fails on a read-only member, waits while paused.
    /// The permit must be held until the change's journal records are
    /// appended.
    pub fn before_write(&self) -> Result<WritePermit<'_>> {
        // This runs on every write: when nothing stands in the way, one
        // shared lock and one load.
        let guard = self.permit.read();
        if self.open.load(Ordering::Acquire) {
            return Ok(WritePermit { _guard: guard });
        }
        drop(guard);
        // Read the clock only if commits are paused: this runs on every write.
        let mut deadline = None;
        loop {
            {
                let mut s = self.state.lock();
                loop {
                    if let Access::ReadOnly { primary } = &s.access {
                        return Err(EngineError::ReadOnly {
                            primary: primary.clone(),
                        });
                    }
                    let Some(why) = s.paused.clone() else {
                        break;
                    };
                    let until =
                        *deadline.get_or_insert_with(|| Instant::now() + self.pause_timeout);
                    if self.changed.wait_until(&mut s, until).timed_out() {
                        return Err(EngineError::Paused(why));
                    }
                }
            }
            let guard = self.permit.read();
            let s = self.state.lock();
            if matches!(s.access, Access::Primary { .. }) && s.paused.is_none() {
                return Ok(WritePermit { _guard: guard });
            }
            // Access or pause changed between the check and the permit.
        }
    }

    /// Whether this member may append its own records right now (for
    /// internal records such as checkpoint marks); hold the permit while
    /// appending.
    pub fn primary_permit(&self) -> Option<WritePermit<'_>> {
        let guard = self.permit.read();
        let primary = matches!(self.state.lock().access, Access::Primary { .. });
        primary.then_some(WritePermit { _guard: guard })
    }

    /// After the local journal is durable up to `end`: waits for the
    /// backup while commits are synchronous.
    ///
    /// With `local` (a journal with a background flusher), also waits until
    /// the journal is durable up to `end` here, in the same sleep.
    pub fn wait_commit(&self, end: Lsn, local: Option<&crate::journal::Journal>) -> Result<()> {
        let mut s = self.state.lock();
        loop {
            // The journal's own position decides; the flusher's reports
            // (`s.durable`) only decide whom to wake.
            let here = local.is_none_or(|j| j.durable_lsn() >= end);
            if let Some(j) = local.filter(|j| !here && (j.is_poisoned() || !j.flusher_running())) {
                // The flusher failed (the journal says why) or has stopped
                // (the engine is closing): make the record durable here.
                drop(s);
                j.wait_durable(end)?;
                s = self.state.lock();
                continue;
            }
            match &s.access {
                Access::ReadOnly { .. } => {
                    return Err(EngineError::CommitOutcomeUnknown(
                        "this member stopped being primary before the commit was acknowledged; \
                         its outcome is unknown"
                            .into(),
                    ))
                }
                Access::Primary { .. } if s.sync && s.acked >= end && here => return Ok(()),
                // Running without a backup while paused (the arbiter lease
                // ran out, or commits are otherwise held): this commit may
                // race a takeover; do not acknowledge it.
                Access::Primary { .. } if !s.sync && s.paused.is_some() => {
                    return Err(EngineError::CommitOutcomeUnknown(format!(
                        "commits are paused ({}); this commit's outcome is unknown",
                        s.paused.clone().unwrap_or_default()
                    )))
                }
                Access::Primary { .. } if !s.sync && here => return Ok(()),
                Access::Primary { .. } => {}
            }
            let me = std::thread::current();
            s.waiters.push((end, local.is_some(), me.clone()));
            // An unpark between the unlock and the park is not lost. The
            // timeout only rechecks a flusher that may have stopped.
            parking_lot::MutexGuard::unlocked(&mut s, || {
                if local.is_some() {
                    std::thread::park_timeout(Duration::from_millis(100));
                } else {
                    std::thread::park();
                }
            });
            s.waiters.retain(|(_, _, t)| t.id() != me.id());
        }
    }
}
