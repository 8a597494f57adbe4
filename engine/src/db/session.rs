//! Sessions: the operations on globals, transactions and locks.
//!
//! As in IRIS, changes are visible to other sessions as soon as they are
//! made (there is no isolation beyond LOCK); a transaction makes a group of
//! changes commit together and lets them be rolled back with their
//! before-images. A SET or KILL outside a transaction, and an outermost
//! TCOMMIT, return only when their journal record is durable
//! ([`Session::tcommit_pipelined`] hands that wait back to the caller).

use std::sync::Arc;
use std::time::Duration;

use super::{now_us, Database, Inner, PendingCommit, MAX_VALUE};
use crate::btree::Tree;
use crate::error::{EngineError, Result};
use crate::journal::{ChangeRef, Record, TxnId};
use crate::model::{self, Key, Subscript, Value, ValueRef};
use crate::Lsn;

/// Transactions nest at most this deep.
pub const MAX_TXN_LEVELS: usize = 255;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Forward,
    Backward,
}

pub struct Session {
    pub(super) inner: Arc<Inner>,
    id: u64,
    txn: Option<Txn>,
    /// The database this session used last: looking it up in the shared
    /// catalogue on every call costs a lock and a reference count that
    /// threads fight over.
    last_db: std::cell::RefCell<Option<Arc<Database>>>,
    /// Scratch for encoding keys on the read path.
    key_buf: std::cell::RefCell<Vec<u8>>,
    /// Scratch for the new value on the write path.
    value_buf: Vec<u8>,
}

struct Txn {
    id: TxnId,
    /// Journal position of the TxnBegin of each open level.
    levels: Vec<Lsn>,
    changes: Vec<Change>,
}

/// A change [`Session::write_locked`] made: its record's (start, end), the
/// encoded key and the before-image.
struct Written {
    start: Lsn,
    end: Lsn,
    key: Vec<u8>,
    before: Option<Vec<u8>>,
    /// The write left the database's insert buffer full.
    buffer_full: bool,
    /// The pool's dirty, pinned and external pages after the write.
    pressure: (usize, usize, usize),
}

struct Change {
    lsn: Lsn,
    db: Arc<Database>,
    key: Vec<u8>,
    before: Option<Vec<u8>>,
}

impl Session {
    pub(super) fn new(inner: Arc<Inner>) -> Session {
        let id = inner
            .next_session
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Session {
            inner,
            id,
            txn: None,
            last_db: std::cell::RefCell::new(None),
            key_buf: std::cell::RefCell::new(Vec::new()),
            value_buf: Vec::new(),
        }
    }

    /// Like `db` without the reference count, for reads that finish before
    /// the session's next call.
    fn db_ref(&self, name: &str) -> Result<std::cell::Ref<'_, Arc<Database>>> {
        let hit = self
            .last_db
            .borrow()
            .as_ref()
            .is_some_and(|d| d.name == name);
        if !hit {
            let db = self.inner.db(name)?;
            *self.last_db.borrow_mut() = Some(db);
        }
        Ok(std::cell::Ref::map(self.last_db.borrow(), |d| {
            d.as_ref().expect("just set")
        }))
    }

    /// The database named `name`, from this session's one-entry cache.
    pub(super) fn db(&self, name: &str) -> Result<Arc<Database>> {
        let mut last = self.last_db.borrow_mut();
        if let Some(db) = last.as_ref().filter(|d| d.name == name) {
            return Ok(db.clone());
        }
        let db = self.inner.db(name)?;
        *last = Some(db.clone());
        Ok(db)
    }

    // ---- reads ----

    pub fn get(&self, db: &str, key: &Key) -> Result<Option<Value>> {
        self.get_with(db, key, |v| v.to_value())
    }

    /// Calls `f` with the value stored under `key`, read in place: a
    /// string or byte string is not copied out of the buffer pool. The
    /// database's read lock (and the pool's) is held while `f` runs: keep
    /// it short, and do not call into the engine from it (another call on
    /// this session panics; a read or write of the same database from
    /// this thread can deadlock). Copy out what you need instead.
    pub fn get_with<R>(
        &self,
        db: &str,
        key: &Key,
        f: impl FnOnce(ValueRef<'_>) -> R,
    ) -> Result<Option<R>> {
        let db = self.db_ref(db)?;
        let mut buf = self.key_buf.borrow_mut();
        buf.clear();
        key.encode_into(&mut buf);
        let value = db
            .tree
            .read()
            .get_with(&buf, |raw| ValueRef::decode(raw).map(f))
            .map_err(|e| EngineError::tree(&db.name, e))?;
        Ok(value.transpose()?)
    }

    /// `$DATA`: 0 no node, 1 value only, 10 children only, 11 both.
    pub fn data(&self, db: &str, key: &Key) -> Result<u8> {
        let db = self.db(db)?;
        let enc = key.encode();
        let tree = db.tree.read();
        let t = |e| EngineError::tree(&db.name, e);
        let mut c = tree.read_seek(&enc).map_err(t)?;
        let has_value = c.key() == Some(enc.as_slice());
        if has_value {
            c.advance(&tree).map_err(t)?;
        }
        let has_children = c.key().is_some_and(|k| k.starts_with(&enc));
        Ok(u8::from(has_value) + 10 * u8::from(has_children))
    }

    /// `$ORDER`: the next (or previous) subscript at the level of `key`'s
    /// last subscript. An empty string as the last subscript starts from
    /// the first (or last) one.
    pub fn order(&self, db: &str, key: &Key, dir: Direction) -> Result<Option<Subscript>> {
        let parent = key.parent().ok_or_else(|| {
            EngineError::BadArgument(format!("$ORDER needs a subscripted key, got {key}"))
        })?;
        let from_start = matches!(key.last(), Some(Subscript::Str(s)) if s.is_empty());
        let penc = parent.encode();
        let db = self.db(db)?;
        let tree = db.tree.read();
        let t = |e| EngineError::tree(&db.name, e);
        let found = match dir {
            Direction::Forward => {
                let start = if from_start {
                    penc.clone()
                } else {
                    model::subtree_end(&key.encode())
                };
                let mut c = tree.read_seek(&start).map_err(t)?;
                if c.key() == Some(penc.as_slice()) {
                    c.advance(&tree).map_err(t)?;
                }
                c.key().map(<[u8]>::to_vec)
            }
            Direction::Backward => {
                let bound = if from_start {
                    model::subtree_end(&penc)
                } else {
                    key.encode()
                };
                tree.read_last_before(&bound).map_err(t)?
            }
        };
        match found {
            Some(k) if k.len() > penc.len() && k.starts_with(&penc) => {
                Ok(Some(model::decode_subscript_at(&k, penc.len())?.0))
            }
            _ => Ok(None),
        }
    }

    /// `$QUERY`: the next (or previous) node with a value in the same global.
    pub fn query(&self, db: &str, key: &Key, dir: Direction) -> Result<Option<Key>> {
        let enc = key.encode();
        let global = model::encode_global_prefix(&key.global);
        let db = self.db(db)?;
        let tree = db.tree.read();
        let t = |e| EngineError::tree(&db.name, e);
        let found = match dir {
            Direction::Forward => {
                let mut c = tree.read_seek(&enc).map_err(t)?;
                if c.key() == Some(enc.as_slice()) {
                    c.advance(&tree).map_err(t)?;
                }
                c.key().map(<[u8]>::to_vec)
            }
            Direction::Backward => tree.read_last_before(&enc).map_err(t)?,
        };
        match found {
            Some(k) if k.starts_with(&global) => Ok(Some(Key::decode(&k)?)),
            _ => Ok(None),
        }
    }

    // ---- writes ----

    pub fn set(&mut self, db: &str, key: &Key, value: &Value) -> Result<()> {
        let len = value.encoded_len();
        if len > MAX_VALUE {
            return Err(EngineError::ValueTooLarge {
                len,
                max: MAX_VALUE,
            });
        }
        let end = self.write(db, key, |_, out| {
            value.encode_into(out);
            Ok(true)
        })?;
        self.commit_if_outside_txn(end.map(|(_, e)| e))
    }

    /// `ZKILL`: removes the node's value, not its children; whether it had one.
    pub fn zkill(&mut self, db: &str, key: &Key) -> Result<bool> {
        let end = self.write(db, key, |_, _| Ok(false))?;
        self.commit_if_outside_txn(end.map(|(_, e)| e))?;
        Ok(end.is_some())
    }

    /// `$INCREMENT`: adds `by` to the node's integer value (missing = 0)
    /// atomically and returns the new value.
    pub fn increment(&mut self, db: &str, key: &Key, by: i64) -> Result<i64> {
        let mut result = 0;
        let end = self.write(db, key, |before, out| {
            let old = match before {
                None => 0,
                Some(b) => match Value::decode(b)? {
                    Value::Int(i) => i,
                    Value::Str(s) if s.trim().parse::<i64>().is_ok() => {
                        s.trim().parse().expect("checked")
                    }
                    other => {
                        return Err(EngineError::NotAnInteger {
                            key: key.to_string(),
                            value: other.to_string(),
                        })
                    }
                },
            };
            result = old
                .checked_add(by)
                .ok_or_else(|| EngineError::IncrementOverflow {
                    key: key.to_string(),
                })?;
            Value::Int(result).encode_into(out);
            Ok(true)
        })?;
        self.commit_if_outside_txn(end.map(|(_, e)| e))?;
        Ok(result)
    }

    /// `KILL`: removes the node and its whole subtree; returns how many
    /// nodes had values. Outside a transaction the kill runs in an implicit
    /// one, so a crash never leaves half a subtree; it works in batches,
    /// letting readers in and flush cycles run between them, so a subtree
    /// larger than the buffer pool can be killed.
    pub fn kill(&mut self, dbname: &str, key: &Key) -> Result<u64> {
        self.inner.check_poison()?;
        drop(self.inner.gate.before_write()?);
        let db = self.db(dbname)?;
        let enc = key.encode();
        let end = model::subtree_end(&enc);
        let implicit = self.txn.is_none();
        if implicit {
            let any = db
                .tree
                .read()
                .any_in(&enc, &end)
                .map_err(|e| EngineError::tree(dbname, e))?;
            if !any {
                return Ok(0);
            }
            self.tstart()?;
        }
        match (self.kill_in_txn(&db, &enc, &end), implicit) {
            (Ok(n), true) => self.tcommit().map(|_| n),
            (Ok(n), false) => Ok(n),
            (Err(e), true) => {
                if let Err(undo) = self.trollback(false) {
                    tracing::warn!(error = %undo, "rolling back a failed KILL failed");
                }
                Err(e)
            }
            (Err(e), false) => Err(e),
        }
    }

    fn kill_in_txn(&mut self, db: &Arc<Database>, enc: &[u8], end: &[u8]) -> Result<u64> {
        const BATCH: usize = 128;
        let txn = self.txn_id();
        let mut n = 0;
        self.inner.merge_all(db)?;
        loop {
            self.inner.throttle(db)?;
            let _permit = self.inner.gate.before_write()?;
            let mut tree = db.tree.write();
            // Keys another session buffered since: the kill must see them.
            self.inner.merge_rest_locked(&mut tree, db)?;
            for _ in 0..BATCH {
                let t = |e| EngineError::tree(&db.name, e);
                let c = tree.seek(enc).map_err(t)?;
                let Some(k) = c.key().filter(|k| *k < end).map(<[u8]>::to_vec) else {
                    return Ok(n);
                };
                let before = tree.value(c.cell().expect("at a key")).map_err(t)?;
                drop(c);
                let rec = Record::Kill {
                    txn,
                    time_us: now_us(),
                    db: db.name.clone(),
                    key: k,
                    before,
                };
                let (start, _) = self.inner.journal.append_with_start(&rec)?;
                let Record::Kill { key: k, before, .. } = rec else {
                    unreachable!("built above")
                };
                if let Err(err) = tree.delete(&k, start.0) {
                    return Err(self.inner.poison(EngineError::tree(&db.name, err)));
                }
                if let Some(t) = &mut self.txn {
                    t.changes.push(Change {
                        lsn: start,
                        db: db.clone(),
                        key: k,
                        before: Some(before),
                    });
                }
                n += 1;
            }
        }
    }

    // ---- transactions ----

    /// `TSTART`; returns the new nesting level.
    pub fn tstart(&mut self) -> Result<usize> {
        self.inner.check_poison()?;
        let _permit = self.inner.gate.before_write()?;
        match &mut self.txn {
            None => {
                let id = self
                    .inner
                    .next_txn
                    .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let (start, _) = self.inner.journal.append_with_start(&Record::TxnBegin {
                    txn: id,
                    level: 1,
                    time_us: now_us(),
                })?;
                self.inner.open_txns.lock().insert(id, start);
                self.txn = Some(Txn {
                    id,
                    levels: vec![start],
                    changes: Vec::new(),
                });
                Ok(1)
            }
            Some(t) => {
                if t.levels.len() >= MAX_TXN_LEVELS {
                    return Err(EngineError::TooManyLevels(MAX_TXN_LEVELS));
                }
                let (start, _) = self.inner.journal.append_with_start(&Record::TxnBegin {
                    txn: t.id,
                    level: (t.levels.len() + 1) as u8,
                    time_us: now_us(),
                })?;
                t.levels.push(start);
                Ok(t.levels.len())
            }
        }
    }

    /// `$TLEVEL`.
    pub fn tlevel(&self) -> usize {
        self.txn.as_ref().map_or(0, |t| t.levels.len())
    }

    /// `TCOMMIT`: ends the innermost level; the outermost commits durably.
    pub fn tcommit(&mut self) -> Result<()> {
        match self.end_txn()? {
            Some(end) => {
                // Work the next writes would stall for, done while the
                // commit syncs (see `merge.rs`).
                self.inner.merge_while_syncing(end);
                self.inner.wait_commit(end)
            }
            None => Ok(()),
        }
    }

    /// `TCOMMIT` without waiting for durability: the outermost level's
    /// commit record is journaled and its sync started, and the session is
    /// free for its next transaction while the sync runs. The commit is
    /// acknowledged only when the returned [`PendingCommit::wait`] returns
    /// `Ok` (see `pending.rs`). Closing an inner level commits nothing and
    /// returns a commit with nothing to wait for.
    pub fn tcommit_pipelined(&mut self) -> Result<PendingCommit> {
        let end = self.end_txn()?;
        Ok(PendingCommit::new(Arc::clone(&self.inner), end))
    }

    /// Closes the innermost level; for the outermost, journals the commit
    /// record and returns its end (not yet durable).
    fn end_txn(&mut self) -> Result<Option<Lsn>> {
        self.inner.check_poison()?;
        let t = self.txn.as_mut().ok_or(EngineError::NoTransaction)?;
        if t.levels.len() > 1 {
            t.levels.pop();
            return Ok(None);
        }
        let id = t.id;
        if let Some(lost) = self.discard_if_demoted() {
            return Err(lost);
        }
        let permit = self.inner.gate.before_write()?;
        let end = self.inner.journal.append(&Record::TxnCommit {
            txn: id,
            time_us: now_us(),
        })?;
        drop(permit);
        self.inner.open_txns.lock().remove(&id);
        self.txn = None;
        Ok(Some(end))
    }

    /// `TROLLBACK` (all levels) or `TROLLBACK 1` (`innermost_only`).
    pub fn trollback(&mut self, innermost_only: bool) -> Result<()> {
        if self.txn.is_none() {
            return Err(EngineError::NoTransaction);
        }
        if self.discard_if_demoted().is_some() {
            // Not ours to undo any more: the new primary rolls it back.
            return Ok(());
        }
        let _permit = self.inner.gate.before_write()?;
        let t = self.txn.as_mut().ok_or(EngineError::NoTransaction)?;
        let full = !innermost_only || t.levels.len() == 1;
        let to = if full {
            t.levels[0]
        } else {
            *t.levels.last().expect("open")
        };
        let first_undone = t.changes.partition_point(|c| c.lsn < to);
        let undone: Vec<Change> = t.changes.drain(first_undone..).collect();
        let id = t.id;
        if full {
            self.txn = None;
        } else if let Some(t) = &mut self.txn {
            t.levels.pop();
        }
        // Lock every database involved, in name order, so the rollback
        // record and its effects are one step in every database's history.
        let mut dbs: Vec<Arc<Database>> = Vec::new();
        for c in &undone {
            if !dbs.iter().any(|d| Arc::ptr_eq(d, &c.db)) {
                dbs.push(c.db.clone());
            }
        }
        dbs.sort_by(|a, b| a.name.cmp(&b.name));
        let mut guards: Vec<_> = dbs.iter().map(|d| d.tree.write()).collect();
        let result = (|| {
            let (lsn, _) = self.inner.journal.append_with_start(&Record::TxnRollback {
                txn: id,
                to,
                full,
                time_us: now_us(),
            })?;
            for c in undone.iter().rev() {
                let i = dbs
                    .iter()
                    .position(|d| Arc::ptr_eq(d, &c.db))
                    .expect("locked");
                let tree: &mut Tree = &mut guards[i];
                let r = match &c.before {
                    Some(v) => tree.put(&c.key, v, lsn.0),
                    None => tree.delete(&c.key, lsn.0).map(|_| ()),
                };
                r.map_err(|e| self.inner.poison(EngineError::tree(&c.db.name, e)))?;
            }
            Ok(())
        })();
        drop(guards);
        if full {
            self.inner.open_txns.lock().remove(&id);
        }
        result
    }

    // ---- locks ----

    /// `LOCK +key:timeout`; false if it timed out.
    pub fn lock(&self, db: &str, key: &Key, timeout: Duration) -> Result<bool> {
        self.db(db)?;
        Ok(self.inner.locks.lock(self.id, db, &key.encode(), timeout))
    }

    /// `LOCK -key`; false if this session did not hold it.
    pub fn unlock(&self, db: &str, key: &Key) -> bool {
        self.inner.locks.unlock(self.id, db, &key.encode())
    }

    // ---- internals ----

    /// A transaction left open on a member that is no longer primary:
    /// forget it without journaling or touching the databases (the new
    /// primary rolls it back, or this member rewinds its records).
    fn discard_if_demoted(&mut self) -> Option<EngineError> {
        if let super::Access::ReadOnly { .. } = self.inner.gate.access() {
            if let Some(t) = self.txn.take() {
                self.inner.open_txns.lock().remove(&t.id);
                return Some(EngineError::NotPrimary(
                    "this member stopped being primary: the transaction did not commit and was rolled back".into(),
                ));
            }
        }
        None
    }

    fn txn_id(&self) -> TxnId {
        self.txn.as_ref().map_or(0, |t| t.id)
    }

    fn commit_if_outside_txn(&self, end: Option<Lsn>) -> Result<()> {
        match (end, &self.txn) {
            (Some(end), None) => self.inner.wait_commit(end),
            _ => Ok(()),
        }
    }

    /// The one write path: under the database's write lock, computes the new
    /// value from the old (`f` writes its encoding into the buffer it gets
    /// and returns true, or returns false to remove the value), journals
    /// the change with its before-image and applies it. Returns the
    /// record's (start, end), or `None` if nothing changed (removing a
    /// missing node).
    fn write(
        &mut self,
        dbname: &str,
        key: &Key,
        f: impl FnOnce(Option<&[u8]>, &mut Vec<u8>) -> Result<bool>,
    ) -> Result<Option<(Lsn, Lsn)>> {
        self.inner.check_poison()?;
        let db = self.db(dbname).map_err(|e| {
            // A read-only member says so first, whatever the database: the
            // client then looks for the primary.
            match self.inner.gate.before_write() {
                Ok(_) => e,
                Err(refused) => refused,
            }
        })?;
        let mut new = std::mem::take(&mut self.value_buf);
        new.clear();
        let done = self.write_locked(&db, key, f, &mut new);
        if new.capacity() <= 64 * 1024 {
            self.value_buf = new;
        }
        let Some(w) = done? else {
            // Nothing changed: no more pages pinned than before.
            return Ok(None);
        };
        if let Some(t) = &mut self.txn {
            t.changes.push(Change {
                lsn: w.start,
                db: db.clone(),
                key: w.key,
                before: w.before,
            });
        }
        // After the change is recorded for rollback: a merge that fails has
        // poisoned the store, and the write is not acknowledged.
        if w.buffer_full {
            self.inner.merge_full(&db)?;
        }
        // The pool's pressure was read under the write lock; past the
        // limits this waits for (or runs) a flush before the next write.
        // The change is made by now: a cycle that failed without poisoning
        // the store (which refuses the write's acknowledgement) is the
        // pool's trouble, retried at the next write, not this write's.
        if let Err(e) = self.inner.throttle_with(&db, w.pressure) {
            self.inner.check_poison()?;
            tracing::warn!(error = %e, "a flush cycle the pool needed failed; the write stands");
        }
        if self.txn.is_some() {
            // A large transaction's records go to the file as it grows,
            // on the journal's own thread (see `Journal::write_ahead`).
            self.inner.journal.request_write_ahead();
        }
        Ok(Some((w.start, w.end)))
    }

    /// [`Session::write`] from taking the permit on.
    fn write_locked(
        &self,
        db: &Database,
        key: &Key,
        f: impl FnOnce(Option<&[u8]>, &mut Vec<u8>) -> Result<bool>,
        new: &mut Vec<u8>,
    ) -> Result<Option<Written>> {
        // Held until the record is appended: no write of an old regime
        // lands after this member stops being primary.
        let _permit = self.inner.gate.before_write()?;
        // Everything that does not depend on the before-image is prepared
        // outside the lock.
        let enc = key.encode();
        if enc.len() > model::MAX_ENCODED_KEY {
            return Err(EngineError::KeyTooLong {
                len: enc.len(),
                max: model::MAX_ENCODED_KEY,
            });
        }
        let txn = self.txn_id();
        let time_us = now_us();
        let mut tree = db.tree.write();
        let t = |e| EngineError::tree(&db.name, e);
        let mut found = tree.find(&enc).map_err(t)?;
        let before = found.before.take();
        let set = f(before.as_deref(), new)?;
        let change = match (set, &before) {
            (true, _) => ChangeRef::set(txn, time_us, &db.name, &enc, new, before.as_deref()),
            (false, Some(b)) => ChangeRef::kill(txn, time_us, &db.name, &enc, b),
            (false, None) => return Ok(None),
        };
        let (start, end) = self.inner.journal.append_change(&change)?;
        let applied = if set {
            tree.put_found(found, &enc, new, start.0)
        } else {
            tree.delete_found(found, &enc, start.0).map(|_| ())
        };
        let buffer_full = tree.buffer_full();
        let pressure = tree.pager().dirty_and_pinned();
        drop(tree);
        if let Err(e) = applied {
            return Err(self.inner.poison(EngineError::tree(&db.name, e)));
        }
        Ok(Some(Written {
            start,
            end,
            key: enc,
            before,
            buffer_full,
            pressure,
        }))
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        if self.txn.is_some() {
            match self.trollback(false) {
                Ok(()) => {}
                Err(EngineError::Paused(why)) => {
                    tracing::warn!(%why, "commits are paused: the closed session's transaction is rolled back when they resume");
                    if let Some(txn) = self.txn.take() {
                        // Nothing is undone yet, and its locks stay held
                        // until it is (see `Inner::orphans`).
                        self.inner.orphans.lock().push(Orphan {
                            txn,
                            session: self.id,
                        });
                        settle_orphans(&self.inner);
                        return;
                    }
                }
                Err(e) => {
                    // Demoted while it waited: the new primary rolls it back.
                    if self.discard_if_demoted().is_none() {
                        tracing::warn!(error = %e, "rolling back the transaction of a closed session failed");
                    }
                }
            }
        }
        self.inner.locks.release_all(self.id);
    }
}

/// The open transaction of a session closed while commits were paused,
/// and that session's id, under which its locks stay held (see
/// `Inner::orphans`).
pub(crate) struct Orphan {
    txn: Txn,
    session: u64,
}

/// Settles the orphans as the gate now stands: on a read-only member they
/// are dropped with their locks (the new primary rolls them back; rolling
/// them back here later would write stale before-images); while commits
/// are paused they wait; otherwise each is rolled back in a session with
/// its old id, which releases its locks. Called after every change that
/// can settle them (`Engine::resume_commits`, `Engine::set_read_only`)
/// and after a new orphan is added, so neither side can miss the other.
pub(crate) fn settle_orphans(inner: &Arc<Inner>) {
    let orphans = {
        let mut list = inner.orphans.lock();
        if list.is_empty() {
            return;
        }
        match inner.gate.access() {
            super::Access::ReadOnly { .. } => {
                for o in list.drain(..) {
                    inner.open_txns.lock().remove(&o.txn.id);
                    inner.locks.release_all(o.session);
                }
                return;
            }
            super::Access::Primary { .. } if inner.gate.paused().is_some() => return,
            super::Access::Primary { .. } => std::mem::take(&mut *list),
        }
    };
    for Orphan { txn, session } in orphans {
        let mut s = Session::new(inner.clone());
        s.id = session;
        s.txn = Some(txn);
        drop(s);
    }
}
