//! Reads of ranges over the tree and its insert buffer together.
//!
//! A key lives in the tree or in the insert buffer, never both
//! (`buffer.rs`). A [`ReadCursor`] walks the two side by side: a tree
//! [`Cursor`] and the first buffered key at or after the position, and is
//! at whichever of the two is smaller. So `$ORDER`, `$QUERY`, `$DATA` and
//! scans need not merge the buffer into the tree first: a read never
//! waits for a merge, and reads of ranges go on in a store that a failure
//! poisoned (a merge changes pages, which a poisoned store refuses).
//!
//! While the buffer is empty the cursor is the tree's cursor plus one
//! check per step.

use super::cursor::{self, Cursor};
use super::node::Cell;
use super::{Result, Tree};

/// A position in the key order of a tree and its insert buffer. Like
/// [`Cursor`], valid while the caller holds the tree's read lock.
pub struct ReadCursor {
    tree: Cursor,
    /// A copy of the first buffered entry at or after the position.
    buffered: Option<(Vec<u8>, Vec<u8>)>,
}

impl ReadCursor {
    pub(super) fn seek(tree: &Tree, key: &[u8]) -> Result<ReadCursor> {
        let buffered = copy(tree.buffer.first_from(key, true), Vec::new(), Vec::new());
        Ok(ReadCursor {
            tree: Cursor::seek(tree, key)?,
            buffered,
        })
    }

    /// Whether the position is the buffered entry (else the tree's).
    fn at_buffered(&self) -> bool {
        match (&self.buffered, self.tree.key()) {
            (None, _) => false,
            (Some(_), None) => true,
            (Some((b, _)), Some(t)) => {
                debug_assert_ne!(&b[..], t, "a key both buffered and in the tree");
                &b[..] < t
            }
        }
    }

    /// The current key, or `None` past the last entry.
    pub fn key(&self) -> Option<&[u8]> {
        if self.at_buffered() {
            self.buffered.as_ref().map(|(k, _)| &k[..])
        } else {
            self.tree.key()
        }
    }

    /// The current entry's value cell (a buffered value is inline).
    pub fn cell(&self) -> Option<Cell<'_>> {
        if self.at_buffered() {
            self.buffered.as_ref().map(|(_, v)| Cell::Inline(v))
        } else {
            self.tree.cell()
        }
    }

    pub fn advance(&mut self, tree: &Tree) -> Result<()> {
        if self.at_buffered() {
            let (key, value) = self.buffered.take().expect("at a buffered entry");
            // Its key's bytes are reused for the next one's.
            let next = tree.buffer.first_from(&key, false);
            self.buffered = copy(next, key, value);
            Ok(())
        } else {
            self.tree.advance(tree)
        }
    }
}

/// `entry` copied into `key` and `value` (reusing their memory).
fn copy(
    entry: Option<(&[u8], &[u8])>,
    mut key: Vec<u8>,
    mut value: Vec<u8>,
) -> Option<(Vec<u8>, Vec<u8>)> {
    let (k, v) = entry?;
    key.clear();
    key.extend_from_slice(k);
    value.clear();
    value.extend_from_slice(v);
    Some((key, value))
}

/// The last key before `key`, in the tree or the insert buffer.
pub(super) fn last_before(tree: &Tree, key: &[u8]) -> Result<Option<Vec<u8>>> {
    let in_tree = cursor::last_before(tree, key)?;
    Ok(match (in_tree, tree.buffer.last_before(key)) {
        (Some(t), Some(b)) if b > &t[..] => Some(b.to_vec()),
        (None, Some(b)) => Some(b.to_vec()),
        (t, _) => t,
    })
}
