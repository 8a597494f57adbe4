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

    pub fn open_txns(&self) -> Vec<TxnId> {
        self.begins.keys().copied().collect()
    }

    /// Applies the record at `lsn` (ending at `end`). Followers pass
    /// `create_missing` so a database the primary created appears here.
    pub fn apply(
        &mut self,
        inner: &Inner,
        lsn: Lsn,
        end: Lsn,
        rec: Record,
        create_missing: bool,
    ) -> Result<()> {
        let db_of = |name: &str| -> Result<Arc<Database>> {
            match inner.db(name) {
                Ok(db) => Ok(db),
                Err(EngineError::NoSuchDatabase(_)) if create_missing => {
                    inner.create_database(name)?;
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
                set_or_remove(&db, lsn, lsn, &key, Some(&value))?;
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
            Record::Checkpoint { .. } | Record::Epoch { .. } => {}
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

    /// Journals a full rollback of every open transaction and undoes it:
    /// at the end of recovery, and when a follower becomes primary (the
    /// old primary's unfinished transactions never committed).
    pub fn roll_back_open(&mut self, inner: &Inner) -> Result<Vec<TxnId>> {
        let mut done = Vec::new();
        for (txn, mut changes) in std::mem::take(&mut self.txns) {
            let to = self.begins.get(&txn).copied().unwrap_or(Lsn::ZERO);
            let (lsn, end) = inner.journal.append_with_start(&Record::TxnRollback {
                txn,
                to,
                full: true,
                time_us: now_us(),
            })?;
            undo(&mut changes, to, lsn)?;
            self.applied = end;
            done.push(txn);
        }
        self.begins.clear();
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
