//! What a mirror member's runtime asks of its engine: the role's access,
//! synchronous commits, applying what the primary sent, and taking over.

use super::{Access, Engine};
use crate::error::Result;
use crate::journal::{Record, TxnId};
use crate::Lsn;

impl Engine {
    pub fn access(&self) -> Access {
        self.inner.gate.access()
    }

    /// Refuse writes from now on, naming the primary to write to.
    pub fn set_read_only(&self, primary: Option<String>) {
        self.inner.gate.set_access(Access::ReadOnly { primary });
        // Not ours to undo any more: the new primary rolls them back.
        super::session::settle_orphans(&self.inner);
    }

    /// Commits wait for the backup's acknowledgement (or stop waiting).
    pub fn set_sync(&self, sync: bool) {
        self.inner.gate.set_sync(sync);
    }

    pub fn is_sync(&self) -> bool {
        self.inner.gate.is_sync()
    }

    /// Turns synchronous commits on if off; the generation returned is the
    /// only one `disarm_sync` accepts.
    pub fn arm_sync(&self) -> Option<u64> {
        self.inner.gate.arm_sync()
    }

    pub fn disarm_sync(&self, gen: u64) {
        self.inner.gate.disarm_sync(gen);
    }

    pub fn sync_gen(&self) -> u64 {
        self.inner.gate.sync_gen()
    }

    pub fn pause_commits(&self, why: &str) {
        self.inner.gate.pause(why);
    }

    pub fn resume_commits(&self) {
        self.inner.gate.resume();
        super::session::settle_orphans(&self.inner);
    }

    pub fn paused(&self) -> Option<String> {
        self.inner.gate.paused()
    }

    /// The backup has made everything before `upto` durable.
    /// The oldest journal position the mirror's followers still need
    /// (`None`: no constraint); flush cycles never purge from there on.
    pub fn set_journal_floor(&self, floor: Option<Lsn>) {
        self.inner.journal_floor.store(
            floor.map_or(u64::MAX, |l| l.0),
            std::sync::atomic::Ordering::SeqCst,
        );
    }

    pub fn backup_acked(&self, upto: Lsn) {
        self.inner.gate.backup_acked(upto);
    }

    pub fn reset_backup_acked(&self, at: Lsn) {
        self.inner.gate.reset_acked(at);
    }

    pub fn backup_acked_lsn(&self) -> Lsn {
        self.inner.gate.acked()
    }

    /// Where each epoch of this member's journal began, oldest first.
    pub fn epoch_history(&self) -> Vec<(u64, Lsn)> {
        self.inner.history.lock().entries()
    }

    /// The epoch of the newest epoch record in this member's journal.
    pub fn last_log_epoch(&self) -> u64 {
        self.inner.history.lock().last_epoch()
    }

    /// Everything before this position is applied to the databases.
    pub fn applied_lsn(&self) -> Lsn {
        self.inner.applier.lock().applied
    }

    /// Applies records received from the primary (already durable in this
    /// member's journal), in order; `end` is the end of the last one.
    pub fn apply_received(&self, records: Vec<(Lsn, Record)>, end: Lsn) -> Result<()> {
        let ends: Vec<Lsn> = records
            .iter()
            .skip(1)
            .map(|(l, _)| *l)
            .chain([end])
            .collect();
        let mut applier = self.inner.applier.lock();
        for ((lsn, rec), rec_end) in records.into_iter().zip(ends) {
            let db = match &rec {
                Record::Set { db, .. } | Record::Kill { db, .. } => self.inner.db(db).ok(),
                _ => None,
            };
            if let Some(db) = db {
                // A flush cycle needs the applier for its bounds: let go.
                drop(applier);
                self.inner.throttle(&db)?;
                // The insert buffer filled (by an earlier record): merge it
                // before it grows past its share of the pool.
                if db.tree.read().buffer_full() {
                    self.inner.merge_full(&db)?;
                }
                applier = self.inner.applier.lock();
            }
            applier
                .apply(&self.inner, lsn, rec_end, rec, true)
                .map_err(|e| self.inner.poison(e))?;
        }
        applier.applied = applier.applied.max(end);
        Ok(())
    }

    /// Cuts this follower's journal back to `cut`, undoing every change
    /// after it (a tail the mirror never acknowledged). Only while
    /// read-only, with nothing being applied.
    pub fn rewind_to(&self, cut: Lsn) -> Result<()> {
        if let Access::Primary { .. } = self.access() {
            return Err(crate::EngineError::BadArgument(
                "a primary does not rewind its journal".into(),
            ));
        }
        super::rewind::rewind(&self.inner, cut)
    }

    /// Takes writes at `epoch`: journals the epoch mark, rolls back the
    /// transactions the old primary never finished, and opens the gate.
    /// Returns the transactions rolled back.
    pub fn become_primary(&self, epoch: u64) -> Result<Vec<TxnId>> {
        let inner = &self.inner;
        // Taken out of its lock: rolling back may run flush cycles, which
        // read the applier's bounds (the rollback passes its own).
        let mut applier = std::mem::take(&mut *inner.applier.lock());
        let (epoch_at, _) = inner.journal.append_with_start(&Record::Epoch {
            epoch,
            time_us: super::now_us(),
        })?;
        let rolled_back = applier.roll_back_open(inner);
        let end = inner.journal.end_lsn();
        applier.applied = end;
        *inner.applier.lock() = applier;
        let rolled_back = rolled_back?;
        inner.journal.wait_durable(end)?;
        inner.history.lock().record(epoch, epoch_at)?;
        inner
            .next_txn
            .fetch_max(end.0.max(1), std::sync::atomic::Ordering::SeqCst);
        inner.gate.set_access(Access::Primary { epoch });
        Ok(rolled_back)
    }
}
