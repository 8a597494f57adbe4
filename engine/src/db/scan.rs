//! Ordered scans of a subtree, in batches copied out of the pages.
//!
//! A scan holds the database's read lock only while it copies a batch:
//! the keys and values of up to [`BATCH_ROWS`] rows (or about
//! [`BATCH_BYTES`]), byte for byte, into one buffer the scan reuses. The
//! caller's function then sees each row borrowed from that buffer with no
//! lock held, so it may read or write the engine, and writers are not held
//! up by a long scan. Each batch is consistent; the scan as a whole sees
//! changes made meanwhile beyond the batch it is in (as IRIS's `$ORDER`
//! loops do).
//!
//! Nothing is allocated per row: a batch is two `memcpy`s per row into
//! buffers that keep their capacity. [`Row::key`] decodes the key when the
//! caller wants it as a [`Key`]; [`Row::encoded_key`] is the collating
//! encoding itself, which sorts like the keys and is what most consumers
//! (an export writing a sorted column, a comparison) need.

use super::session::Session;
use crate::btree::Tree;
use crate::error::{EngineError, Result};
use crate::model::{self, Key, Value, ValueRef};

/// Most rows copied under one hold of the read lock.
const BATCH_ROWS: usize = 256;
/// A batch also ends once it holds this many bytes (large values).
const BATCH_BYTES: usize = 256 << 10;

/// One row of a scan, borrowed from the scan's batch: valid for the call
/// of the function it is handed to.
#[derive(Clone, Copy, Debug)]
pub struct Row<'a> {
    key: &'a [u8],
    value: ValueRef<'a>,
}

impl<'a> Row<'a> {
    /// The key in its collating byte encoding (see
    /// [`model::encoding`](crate::model)): byte order is key order.
    pub fn encoded_key(&self) -> &'a [u8] {
        self.key
    }

    /// The key, decoded.
    pub fn key(&self) -> Result<Key> {
        Ok(Key::decode(self.key)?)
    }

    /// The value, read in place.
    pub fn value(&self) -> ValueRef<'a> {
        self.value
    }
}

/// The rows of one batch: `bytes` holds each row's key then its value,
/// back to back; `ends[i]` is where row `i`'s key and value end.
#[derive(Default)]
struct Batch {
    bytes: Vec<u8>,
    ends: Vec<(usize, usize)>,
}

impl Batch {
    /// Copies rows from the first key `>= from` up to (not including)
    /// `end`. True if it stopped because the batch is full, so rows may
    /// remain.
    fn fill(&mut self, tree: &Tree, from: &[u8], end: &[u8]) -> crate::btree::Result<bool> {
        self.bytes.clear();
        self.ends.clear();
        let mut c = tree.read_seek(from)?;
        while let Some(k) = c.key().filter(|k| *k < end) {
            self.bytes.extend_from_slice(k);
            let key_end = self.bytes.len();
            tree.value_into(c.cell().expect("at a key"), &mut self.bytes)?;
            self.ends.push((key_end, self.bytes.len()));
            if self.ends.len() == BATCH_ROWS || self.bytes.len() >= BATCH_BYTES {
                return Ok(true);
            }
            c.advance(tree)?;
        }
        Ok(false)
    }

    /// Each row's (encoded key, encoded value).
    fn rows(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        let mut start = 0;
        self.ends.iter().map(move |&(key_end, value_end)| {
            let row = (&self.bytes[start..key_end], &self.bytes[key_end..value_end]);
            start = value_end;
            row
        })
    }

    fn last_key(&self) -> Option<&[u8]> {
        let (&(key_end, _), before) = self.ends.split_last()?;
        let start = before.last().map_or(0, |&(_, value_end)| value_end);
        Some(&self.bytes[start..key_end])
    }
}

impl Session {
    /// Calls `f` for every node with a value in the subtree of `root`, in
    /// collation order, until it returns false; each row is borrowed (see
    /// [`Row`]). Returns how many rows `f` saw. The database's lock is not
    /// held while `f` runs (see the module's notes).
    pub fn scan_rows(
        &self,
        db: &str,
        root: &Key,
        mut f: impl FnMut(Row<'_>) -> bool,
    ) -> Result<u64> {
        let enc = root.encode();
        let end = model::subtree_end(&enc);
        let db = self.db(db)?;
        let mut from = enc;
        let mut batch = Batch::default();
        let mut n = 0;
        loop {
            let full = {
                let tree = db.tree.read();
                batch
                    .fill(&tree, &from, &end)
                    .map_err(|e| EngineError::tree(&db.name, e))?
            };
            for (key, value) in batch.rows() {
                n += 1;
                let value = ValueRef::decode(value)?;
                if !f(Row { key, value }) {
                    return Ok(n);
                }
            }
            match batch.last_key() {
                Some(last) if full => {
                    // Resume just after the last key: the smallest longer
                    // byte string.
                    from.clear();
                    from.extend_from_slice(last);
                    from.push(0);
                }
                _ => return Ok(n),
            }
        }
    }

    /// Like [`Session::scan_rows`], with each row's key and value decoded
    /// and owned.
    pub fn scan(&self, db: &str, root: &Key, mut f: impl FnMut(Key, Value) -> bool) -> Result<u64> {
        let mut failed = None;
        let n = self.scan_rows(db, root, |row| match row.key() {
            Ok(key) => f(key, row.value().to_value()),
            Err(e) => {
                failed = Some(e);
                false
            }
        })?;
        failed.map_or(Ok(n), Err)
    }
}
