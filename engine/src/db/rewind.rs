//! Rewinding a follower's journal tail that the mirror never acknowledged
//! (a former primary that wrote records its backup never received): every
//! change after the cut is undone with its before-image, newest first, the
//! databases are flushed at the cut, then the journal is cut back.
//!
//! | record after the cut | undone by |
//! |---|---|
//! | Set / Kill | restoring its before-image |
//! | TxnRollback | re-applying the changes it undid (found by following the transaction forward from its begin) |
//! | TxnBegin / TxnCommit / Checkpoint / Epoch / Database | nothing to undo in the databases |
//!
//! Crash safety: until the flush at the cut, only memory changed (recovery
//! replays the tail again, and the member rewinds again); after it, the
//! files hold the state at the cut with `redo_from` = the cut, so a crash
//! before the journal is cut replays the tail onto that state, which gives
//! the pre-rewind state again. The epoch history is cut before the journal.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use super::apply::{Applier, Change};
use super::{Database, Inner};
use crate::error::{EngineError, Result};
use crate::journal::{Record, TxnId};
use crate::Lsn;

/// One change as the forward scan saw it.
#[derive(Clone)]
struct Seen {
    lsn: Lsn,
    db: String,
    key: Vec<u8>,
    /// The value the change set (None: removed).
    after: Option<Vec<u8>>,
    before: Option<Vec<u8>>,
}

/// What to undo, newest first.
enum Undo {
    /// Put back `value` (None: remove).
    Restore {
        db: String,
        key: Vec<u8>,
        value: Option<Vec<u8>>,
    },
    /// Re-apply these changes, oldest first.
    Redo(Vec<Seen>),
}

pub(crate) fn rewind(inner: &Inner, cut: Lsn) -> Result<()> {
    let journal = &inner.journal;
    // Records a former primary appended but never made durable (e.g. its
    // last checkpoint mark) go with the tail; make them durable first so
    // the cut is one clean step.
    journal.wait_durable(journal.end_lsn())?;
    let end = journal.end_lsn();
    if cut >= end {
        return Ok(());
    }
    // Check the cut before changing anything: a position this journal does
    // not hold, or not at a record boundary, is refused here.
    if cut < journal.oldest_lsn() {
        return Err(EngineError::BadArgument(format!(
            "cannot rewind to {cut}: the journal starts at {}",
            journal.oldest_lsn()
        )));
    }
    journal.crc_before(cut)?;
    // One forward scan over the whole journal: the open transactions at the
    // cut (the applier's state after rewinding) and, for each rollback after
    // the cut, the changes it undid.
    let mut open: BTreeMap<TxnId, (Lsn, Vec<Seen>)> = BTreeMap::new();
    let mut at_cut: Option<BTreeMap<TxnId, (Lsn, Vec<Seen>)>> = None;
    let mut undo: Vec<Undo> = Vec::new();
    let mut reader = journal.read_from(journal.oldest_lsn())?;
    while let Some(item) = reader.next() {
        let (lsn, rec) = item?;
        if lsn >= cut && at_cut.is_none() {
            at_cut = Some(open.clone());
        }
        let after_cut = lsn >= cut;
        match rec {
            Record::Set {
                txn,
                db,
                key,
                value,
                before,
                ..
            } => {
                let seen = Seen {
                    lsn,
                    db: db.clone(),
                    key: key.clone(),
                    after: Some(value),
                    before: before.clone(),
                };
                if after_cut {
                    undo.push(Undo::Restore {
                        db,
                        key,
                        value: before,
                    });
                }
                if txn != 0 {
                    open.entry(txn).or_insert((lsn, Vec::new())).1.push(seen);
                }
            }
            Record::Kill {
                txn,
                db,
                key,
                before,
                ..
            } => {
                let seen = Seen {
                    lsn,
                    db: db.clone(),
                    key: key.clone(),
                    after: None,
                    before: Some(before.clone()),
                };
                if after_cut {
                    undo.push(Undo::Restore {
                        db,
                        key,
                        value: Some(before),
                    });
                }
                if txn != 0 {
                    open.entry(txn).or_insert((lsn, Vec::new())).1.push(seen);
                }
            }
            Record::TxnBegin { txn, .. } => {
                open.entry(txn).or_insert((lsn, Vec::new()));
            }
            Record::TxnCommit { txn, .. } => {
                open.remove(&txn);
            }
            Record::TxnRollback { txn, to, full, .. } => {
                let mut undone = Vec::new();
                if let Some((_, changes)) = open.get_mut(&txn) {
                    while changes.last().is_some_and(|c| c.lsn >= to) {
                        undone.push(changes.pop().expect("checked"));
                    }
                }
                undone.reverse();
                if after_cut {
                    undo.push(Undo::Redo(undone));
                }
                if full {
                    open.remove(&txn);
                }
            }
            Record::Checkpoint { .. } | Record::Epoch { .. } | Record::Database { .. } => {}
        }
        if reader.position() >= end {
            break;
        }
    }
    let at_cut = at_cut.unwrap_or(open);

    // Undo newest first, in memory.
    let db_of = |name: &str| -> Result<Arc<Database>> { inner.db(name) };
    let put = |db: &Database, key: &[u8], value: Option<&[u8]>| -> Result<()> {
        let mut tree = db.tree.write();
        match value {
            Some(v) => tree.put(key, v, cut.0),
            None => tree.delete(key, cut.0).map(|_| ()),
        }
        .map_err(|e| inner.poison(EngineError::tree(&db.name, e)))
    };
    let mut dbs: HashMap<String, Arc<Database>> = HashMap::new();
    for u in undo.into_iter().rev() {
        match u {
            Undo::Restore { db, key, value } => {
                let d = match dbs.get(&db) {
                    Some(d) => d.clone(),
                    None => dbs.entry(db.clone()).or_insert(db_of(&db)?).clone(),
                };
                put(&d, &key, value.as_deref())?;
            }
            Undo::Redo(changes) => {
                for c in changes {
                    let d = db_of(&c.db)?;
                    put(&d, &c.key, c.after.as_deref())?;
                }
            }
        }
    }

    // The applier's state at the cut.
    let mut applier = Applier::new(cut);
    for (txn, (begin, changes)) in at_cut {
        let mut kept = Vec::with_capacity(changes.len());
        for c in changes {
            kept.push(Change {
                lsn: c.lsn,
                db: db_of(&c.db)?,
                key: c.key,
                before: c.before,
            });
        }
        applier.restore_open(txn, begin, kept);
    }
    let undo_from = applier.oldest_open().unwrap_or(cut).min(cut);
    *inner.applier.lock() = applier;

    inner.checkpoint_at(Some((cut, undo_from)))?;
    inner.history.lock().cut(cut)?;
    journal.truncate(cut)?;
    tracing::warn!(
        cut = cut.0,
        dropped = end.0 - cut.0,
        "rewound a journal tail the mirror never acknowledged"
    );
    Ok(())
}
