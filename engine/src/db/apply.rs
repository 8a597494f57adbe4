//! Applying journal records to the databases ("dejournaling"): used by
//! recovery to roll the journal forward, and by backup and async members
//! to apply what they receive from the primary.
//!
//! A change is applied to database `D` only if its position is at or past
//! `D.redo_from` (earlier ones are already in `D`'s pages). The applier
//! remembers every change of a transaction that has not ended, with its
//! before-image, so a later `TxnRollback` record, or the end of a
//! primary's tenure, can undo it.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::{now_us, Database, Inner};
use crate::error::{EngineError, Result};
use crate::journal::{Record, TxnId};
use crate::Lsn;

/// A change of an open transaction, kept for undo.
pub(crate) struct Change {
    pub lsn: Lsn,
    pub db: Arc<Database>,
    pub key: Vec<u8>,
    pub before: Option<Vec<u8>>,
}

#[derive(Default)]
pub(crate) struct Applier {
    txns: BTreeMap<TxnId, Vec<Change>>,
    /// First position of each open transaction (its begin record).
    begins: BTreeMap<TxnId, Lsn>,
    /// End of the last record applied: every record before it is applied.
    pub applied: Lsn,
}

impl Applier {
    pub fn new(applied: Lsn) -> Applier {
        Applier {
            applied,
            ..Applier::default()
        }
    }

    /// The first position of the oldest open transaction.
    pub fn oldest_open(&self) -> Option<Lsn> {
        self.begins.values().min().copied()
    }

    /// Adds an open transaction found by a scan (rewinding).
    pub fn restore_open(&mut self, txn: TxnId, begin: Lsn, changes: Vec<Change>) {
        self.begins.insert(txn, begin);
        self.txns.insert(txn, changes);
    }

    pub fn open_txns(&self) -> Vec<TxnId> {
        self.begins.keys().copied().collect()
    }

    /// Applies the record at `lsn` (ending at `end`). A `follower` (a
    /// member applying what it received) creates a database the primary
    /// created, and lets new keys wait in the insert buffer as the
    /// primary's writes do (its caller merges a full buffer). Recovery
    /// does neither: a merge there would flush with the wrong bounds.
    pub fn apply(
        &mut self,
        inner: &Inner,
        lsn: Lsn,
        end: Lsn,
        rec: Record,
        follower: bool,
    ) -> Result<()> {
        let create_missing = follower;
        let db_of = |name: &str| -> Result<Arc<Database>> {
            match inner.db(name) {
                Ok(db) => Ok(db),
                Err(EngineError::NoSuchDatabase(_)) if create_missing => {
                    inner.create_database_unjournaled(name)?;
                    inner.db(name)
                }
                Err(_) => Err(EngineError::UnknownDatabaseInJournal {
                    lsn: lsn.0,
                    db: name.to_string(),
                }),
            }
        };
        match rec {
            Record::Set {
                txn,
                db,
                key,
                value,
                before,
                ..
            } => {
                let db = db_of(&db)?;
                if follower {
                    set_buffered(&db, lsn, &key, &value)?;
                } else {
                    set_or_remove(&db, lsn, lsn, &key, Some(&value))?;
                }
                self.remember(txn, lsn, db, key, before);
            }
            Record::Kill {
                txn,
                db,
                key,
                before,
                ..
            } => {
                let db = db_of(&db)?;
                set_or_remove(&db, lsn, lsn, &key, None)?;
                self.remember(txn, lsn, db, key, Some(before));
            }
            Record::TxnBegin { txn, .. } => {
                self.txns.entry(txn).or_default();
                self.begins.entry(txn).or_insert(lsn);
            }
            Record::TxnCommit { txn, .. } => {
                self.txns.remove(&txn);
                self.begins.remove(&txn);
            }
            Record::TxnRollback { txn, to, full, .. } => {
                if let Some(changes) = self.txns.get_mut(&txn) {
                    undo(changes, to, lsn)?;
                }
                if full {
                    self.txns.remove(&txn);
                    self.begins.remove(&txn);
                }
            }
            Record::Database { name, .. } => {
                if inner.db(&name).is_err() {
                    inner.create_database_unjournaled(&name)?;
                }
            }
            Record::Epoch { epoch, .. } => inner.history.lock().record(epoch, lsn)?,
            Record::Checkpoint { .. } => {}
        }
        self.applied = end;
        Ok(())
    }

    fn remember(
        &mut self,
        txn: TxnId,
        lsn: Lsn,
        db: Arc<Database>,
        key: Vec<u8>,
        before: Option<Vec<u8>>,
    ) {
        if txn != 0 {
            self.begins.entry(txn).or_insert(lsn);
            self.txns.entry(txn).or_default().push(Change {
                lsn,
                db,
                key,
                before,
            });
        }
    }

    /// Rolls back every open transaction: at the end of recovery, and when
    /// a follower becomes primary (the old primary's unfinished
    /// transactions never committed).
    ///
    /// Transactions may have changed the same node (IRIS has no isolation
    /// beyond LOCK), so their changes are undone together, newest first
    /// across all of them. Each undo step is journaled as a compensating
    /// change outside any transaction, so replaying the journal after
    /// another crash repeats exactly these steps; then a full rollback
    /// record per transaction, positioned after every change, only ends it.
    pub fn roll_back_open(&mut self, inner: &Inner) -> Result<Vec<TxnId>> {
        let mut changes: Vec<Change> = std::mem::take(&mut self.txns)
            .into_values()
            .flatten()
            .collect();
        changes.sort_by_key(|c| std::cmp::Reverse(c.lsn));
        // Until the last step is journaled, recovery must still see these
        // transactions' changes: flush cycles keep `undo_from` at their start.
        let floor = self.oldest_open().unwrap_or(Lsn::ZERO);
        for c in changes {
            let mut tree = c.db.tree.write();
            let current = tree
                .get(&c.key)
                .map_err(|e| EngineError::tree(&c.db.name, e))?;
            let rec = match (c.before, current) {
                (Some(value), before) => Record::Set {
                    txn: 0,
                    time_us: now_us(),
                    db: c.db.name.clone(),
                    key: c.key,
                    value,
                    before,
                },
                (None, Some(before)) => Record::Kill {
                    txn: 0,
                    time_us: now_us(),
                    db: c.db.name.clone(),
                    key: c.key,
                    before,
                },
                (None, None) => continue,
            };
            let (lsn, end) = inner.journal.append_with_start(&rec)?;
            let r = match &rec {
                Record::Set { key, value, .. } => tree.put(key, value, lsn.0),
                Record::Kill { key, .. } => tree.delete(key, lsn.0).map(|_| ()),
                _ => unreachable!("built above"),
            };
            r.map_err(|e| inner.poison(EngineError::tree(&c.db.name, e)))?;
            self.applied = end;
            drop(tree);
            inner.throttle_at(&c.db, Some((end, floor.min(end))))?;
        }
        let mut done = Vec::new();
        for txn in std::mem::take(&mut self.begins).into_keys() {
            let end = inner.journal.end_lsn();
            self.applied = inner.journal.append(&Record::TxnRollback {
                txn,
                to: end,
                full: true,
                time_us: now_us(),
            })?;
            done.push(txn);
        }
        Ok(done)
    }
}

/// Sets (`Some`) or removes (`None`) a key if the database's pages do not
/// already reflect the journal record at `effect_lsn`.
fn set_or_remove(
    db: &Database,
    effect_lsn: Lsn,
    stamp: Lsn,
    key: &[u8],
    value: Option<&[u8]>,
) -> Result<()> {
    let mut tree = db.tree.write();
    if effect_lsn.0 < tree.meta().redo_from {
        return Ok(());
    }
    match value {
        Some(v) => tree.put(key, v, stamp.0),
        None => tree.delete(key, stamp.0).map(|_| ()),
    }
    .map_err(|e| EngineError::tree(&db.name, e))
}

/// A follower's SET: like the primary's, a new key whose leaf is not in
/// the pool may wait in the insert buffer (see `btree/buffer.rs`).
fn set_buffered(db: &Database, lsn: Lsn, key: &[u8], value: &[u8]) -> Result<()> {
    let mut tree = db.tree.write();
    if lsn.0 < tree.meta().redo_from {
        return Ok(());
    }
    let t = |e| EngineError::tree(&db.name, e);
    let found = tree.find(key).map_err(t)?;
    tree.put_found(found, key, value, lsn.0).map_err(t)
}

/// Undoes, newest first, the changes at or after `to`; the rollback record
/// at `rollback_lsn` is the effect's position.
fn undo(changes: &mut Vec<Change>, to: Lsn, rollback_lsn: Lsn) -> Result<()> {
    while changes.last().is_some_and(|c| c.lsn >= to) {
        let c = changes.pop().expect("checked");
        set_or_remove(
            &c.db,
            rollback_lsn,
            rollback_lsn,
            &c.key,
            c.before.as_deref(),
        )?;
    }
    Ok(())
}
