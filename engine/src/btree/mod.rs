//! A B+tree of encoded keys in one database file.
//!
//! Keys are compared with memcmp (the model's encoding makes byte order the
//! collation order). Values up to [`node::INLINE_MAX`] bytes live in the
//! leaves; larger ones in chains of overflow pages. A leaf that empties is
//! freed and unlinked from its parent; pages are not merged when they merely
//! become underfull (a later insert fills them again). Freed pages go on a
//! free list that allocation takes from first.
//!
//! Concurrency: the caller serialises writers (`&mut Tree`) against readers
//! (`&Tree`, many at once), e.g. with an `RwLock`.

pub mod node;
pub mod page;
pub mod pager;

mod check;
mod cursor;

use std::sync::Arc;

use node::{Cell, Meta, Node, INLINE_MAX, OVERFLOW_CAPACITY};
use pager::{DirtyPage, LoadError, Pager};

pub use check::TreeCheck;
pub use cursor::Cursor;

use crate::storage::VfsFile;

#[derive(Debug, thiserror::Error)]
pub enum TreeError {
    #[error(transparent)]
    Load(#[from] LoadError),
    #[error("tree structure is corrupt at page {page}: {reason}")]
    Corrupt { page: u64, reason: String },
}

pub type Result<T> = std::result::Result<T, TreeError>;

/// No tree of 8 KiB pages is this deep; a descent that goes further is
/// following a cycle in corrupt pages.
pub(crate) const MAX_DEPTH: usize = 64;

fn corrupt(page: u64, reason: impl Into<String>) -> TreeError {
    TreeError::Corrupt {
        page,
        reason: reason.into(),
    }
}

pub struct Tree {
    pager: Pager,
    meta: Meta,
}

impl Tree {
    /// A new, empty tree: meta page 0 and an empty root leaf at page 1, both
    /// dirty (nothing is written until the first flush).
    pub fn create(file: Arc<dyn VfsFile>, cache_pages: usize, file_id: u32, name: &str) -> Tree {
        let pager = Pager::new(file, cache_pages);
        pager.put_new(1, Node::empty_leaf(), 0);
        Tree {
            pager,
            meta: Meta {
                file_id,
                name: name.to_string(),
                root: 1,
                page_count: 2,
                free_head: 0,
                redo_from: 0,
                undo_from: 0,
            },
        }
    }

    pub fn open(file: Arc<dyn VfsFile>, cache_pages: usize, meta: Meta) -> Tree {
        Tree {
            pager: Pager::new(file, cache_pages),
            meta,
        }
    }

    pub fn meta(&self) -> &Meta {
        &self.meta
    }

    pub fn pager(&self) -> &Pager {
        &self.pager
    }

    /// The value stored under `key`.
    pub fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        let mut page = self.meta.root;
        for _ in 0..MAX_DEPTH {
            let node = self.pager.get(page)?;
            match &*node {
                Node::Branch { keys, children } => {
                    page = children[keys.partition_point(|k| k.as_slice() <= key)];
                }
                Node::Leaf { keys, cells } => {
                    return match keys.binary_search_by(|k| k.as_slice().cmp(key)) {
                        Ok(i) => Ok(Some(self.value(&cells[i])?)),
                        Err(_) => Ok(None),
                    };
                }
                _ => return Err(corrupt(page, "expected a leaf or branch page")),
            }
        }
        Err(corrupt(
            page,
            "the tree is deeper than any real tree (a cycle)",
        ))
    }

    /// Whether any key lies in `[from, to)`.
    pub fn any_in(&self, from: &[u8], to: &[u8]) -> Result<bool> {
        let c = self.seek(from)?;
        Ok(c.key().is_some_and(|k| k < to))
    }

    /// A cursor at the first entry whose key is `>= key`.
    pub fn seek(&self, key: &[u8]) -> Result<Cursor> {
        Cursor::seek(self, key)
    }

    /// The last entry whose key is `< key`.
    pub fn last_before(&self, key: &[u8]) -> Result<Option<(Vec<u8>, Cell)>> {
        cursor::last_before(self, key)
    }

    /// The bytes of a leaf value, following an overflow chain if needed.
    pub fn value(&self, cell: &Cell) -> Result<Vec<u8>> {
        match cell {
            Cell::Inline(v) => Ok(v.clone()),
            Cell::Overflow { len, first } => {
                let mut out = Vec::with_capacity((*len as usize).min(crate::db::MAX_VALUE));
                let mut page = *first;
                while page != 0 {
                    let node = self.pager.get(page)?;
                    let Node::Overflow { data, next } = &*node else {
                        return Err(corrupt(page, "expected an overflow page"));
                    };
                    out.extend_from_slice(data);
                    if out.len() as u64 > *len {
                        return Err(corrupt(page, "overflow chain longer than its value"));
                    }
                    page = *next;
                }
                if out.len() as u64 != *len {
                    return Err(corrupt(
                        *first,
                        format!("overflow chain holds {} of {len} bytes", out.len()),
                    ));
                }
                Ok(out)
            }
        }
    }

    /// Sets `key` to `value`; pages changed are stamped with `lsn`.
    pub fn put(&mut self, key: &[u8], value: &[u8], lsn: u64) -> Result<()> {
        let cell = if value.len() > INLINE_MAX {
            self.write_overflow(value, lsn)?
        } else {
            Cell::Inline(value.to_vec())
        };
        let (mut path, leaf) = self.path_to_leaf(key)?;
        let old = self.pager.modify(leaf, lsn, |n| {
            let Node::Leaf { keys, cells } = n else {
                return None;
            };
            match keys.binary_search_by(|k| k.as_slice().cmp(key)) {
                Ok(i) => Some(std::mem::replace(&mut cells[i], cell)),
                Err(i) => {
                    keys.insert(i, key.to_vec());
                    cells.insert(i, cell);
                    None
                }
            }
        })?;
        if let Some(Cell::Overflow { first, .. }) = old {
            self.free_chain(first, lsn)?;
        }
        // Split upwards while a page does not fit.
        let mut page = leaf;
        loop {
            if self.pager.get(page)?.fits() {
                return Ok(());
            }
            let right_page = self.alloc(lsn)?;
            let (sep, right) = self.pager.modify(page, lsn, split)?;
            self.pager.put_new(right_page, right, lsn);
            match path.pop() {
                Some((parent, ci)) => {
                    self.pager.modify(parent, lsn, |n| {
                        if let Node::Branch { keys, children } = n {
                            keys.insert(ci, sep);
                            children.insert(ci + 1, right_page);
                        }
                    })?;
                    page = parent;
                }
                None => {
                    let root = self.alloc(lsn)?;
                    self.pager.put_new(
                        root,
                        Node::Branch {
                            keys: vec![sep],
                            children: vec![page, right_page],
                        },
                        lsn,
                    );
                    self.meta.root = root;
                    return Ok(());
                }
            }
        }
    }

    /// Removes `key`; returns whether it was there.
    pub fn delete(&mut self, key: &[u8], lsn: u64) -> Result<bool> {
        let (mut path, leaf) = self.path_to_leaf(key)?;
        let removed = self.pager.modify(leaf, lsn, |n| {
            let Node::Leaf { keys, cells } = n else {
                return None;
            };
            let i = keys.binary_search_by(|k| k.as_slice().cmp(key)).ok()?;
            keys.remove(i);
            Some(cells.remove(i))
        })?;
        let Some(cell) = removed else {
            return Ok(false);
        };
        if let Cell::Overflow { first, .. } = cell {
            self.free_chain(first, lsn)?;
        }
        // Unlink pages that became empty.
        let mut page = leaf;
        loop {
            let empty = match &*self.pager.get(page)? {
                Node::Leaf { keys, .. } => keys.is_empty(),
                Node::Branch { children, .. } => children.is_empty(),
                _ => false,
            };
            if !empty {
                break;
            }
            match path.pop() {
                Some((parent, ci)) => {
                    self.free_page(page, lsn);
                    self.pager.modify(parent, lsn, |n| {
                        if let Node::Branch { keys, children } = n {
                            children.remove(ci);
                            if !keys.is_empty() {
                                keys.remove(ci.saturating_sub(1));
                            }
                        }
                    })?;
                    page = parent;
                }
                None => {
                    self.pager.modify(page, lsn, |n| *n = Node::empty_leaf())?;
                    break;
                }
            }
        }
        // A root branch with one child gives way to that child.
        loop {
            let root = self.meta.root;
            let child = match &*self.pager.get(root)? {
                Node::Branch { children, .. } if children.len() == 1 => children[0],
                _ => break,
            };
            self.free_page(root, lsn);
            self.meta.root = child;
        }
        Ok(true)
    }

    /// Hands the dirty pages and the current meta (stamped with the given
    /// recovery bounds) to the write daemon.
    pub fn take_flush(&mut self, redo_from: u64, undo_from: u64) -> (Vec<DirtyPage>, Meta) {
        self.meta.redo_from = redo_from;
        self.meta.undo_from = undo_from;
        (self.pager.take_dirty(), self.meta.clone())
    }

    /// Verifies the whole structure; see [`TreeCheck`].
    pub fn check(&self) -> Result<TreeCheck> {
        check::check(self)
    }

    /// Branch pages from the root to the leaf where `key` belongs: each as
    /// (page, index of the child taken), then the leaf page.
    fn path_to_leaf(&self, key: &[u8]) -> Result<(Vec<(u64, usize)>, u64)> {
        let mut path = Vec::new();
        let mut page = self.meta.root;
        loop {
            if path.len() > MAX_DEPTH {
                return Err(corrupt(
                    page,
                    "the tree is deeper than any real tree (a cycle)",
                ));
            }
            let node = self.pager.get(page)?;
            match &*node {
                Node::Branch { keys, children } => {
                    let ci = keys.partition_point(|k| k.as_slice() <= key);
                    path.push((page, ci));
                    page = children[ci];
                }
                Node::Leaf { .. } => return Ok((path, page)),
                _ => return Err(corrupt(page, "expected a leaf or branch page")),
            }
        }
    }

    fn alloc(&mut self, lsn: u64) -> Result<u64> {
        let head = self.meta.free_head;
        if head == 0 {
            self.meta.page_count += 1;
            return Ok(self.meta.page_count - 1);
        }
        let next = match &*self.pager.get(head)? {
            Node::Free { next } => *next,
            _ => return Err(corrupt(head, "free list points at a page in use")),
        };
        self.meta.free_head = next;
        // Placeholder until the caller puts the real node there.
        self.pager.put_new(head, Node::Free { next: 0 }, lsn);
        Ok(head)
    }

    fn free_page(&mut self, page: u64, lsn: u64) {
        self.pager.put_new(
            page,
            Node::Free {
                next: self.meta.free_head,
            },
            lsn,
        );
        self.meta.free_head = page;
    }

    fn write_overflow(&mut self, value: &[u8], lsn: u64) -> Result<Cell> {
        let mut next = 0;
        for chunk in value.chunks(OVERFLOW_CAPACITY).rev() {
            let page = self.alloc(lsn)?;
            self.pager.put_new(
                page,
                Node::Overflow {
                    data: chunk.to_vec(),
                    next,
                },
                lsn,
            );
            next = page;
        }
        Ok(Cell::Overflow {
            len: value.len() as u64,
            first: next,
        })
    }

    fn free_chain(&mut self, first: u64, lsn: u64) -> Result<()> {
        let mut page = first;
        while page != 0 {
            let next = match &*self.pager.get(page)? {
                Node::Overflow { next, .. } => *next,
                _ => return Err(corrupt(page, "expected an overflow page")),
            };
            self.free_page(page, lsn);
            page = next;
        }
        Ok(())
    }
}

/// Splits an overfull leaf or branch where the larger half is smallest;
/// returns the separator and the right half.
fn split(node: &mut Node) -> (Vec<u8>, Node) {
    match node {
        Node::Leaf { keys, cells } => {
            let sizes: Vec<usize> = keys
                .iter()
                .zip(cells.iter())
                .map(|(k, c)| {
                    2 + k.len()
                        + match c {
                            Cell::Inline(v) => 5 + v.len(),
                            Cell::Overflow { .. } => 17,
                        }
                })
                .collect();
            let at = balanced_split(&sizes);
            let rkeys = keys.split_off(at);
            let rcells = cells.split_off(at);
            (
                rkeys[0].clone(),
                Node::Leaf {
                    keys: rkeys,
                    cells: rcells,
                },
            )
        }
        Node::Branch { keys, children } => {
            let sizes: Vec<usize> = keys.iter().map(|k| 10 + k.len()).collect();
            let at = balanced_split(&sizes).min(keys.len() - 1);
            let mut rkeys = keys.split_off(at);
            let sep = rkeys.remove(0);
            let rchildren = children.split_off(at + 1);
            (
                sep,
                Node::Branch {
                    keys: rkeys,
                    children: rchildren,
                },
            )
        }
        _ => unreachable!("only leaves and branches overflow"),
    }
}

/// The index in `1..len` that minimises the larger of the two halves.
fn balanced_split(sizes: &[usize]) -> usize {
    let total: usize = sizes.iter().sum();
    let mut left = 0;
    let mut best = (usize::MAX, 1);
    for (i, s) in sizes.iter().enumerate().take(sizes.len() - 1) {
        left += s;
        let worst = left.max(total - left);
        if worst < best.0 {
            best = (worst, i + 1);
        }
    }
    best.1
}

#[cfg(test)]
mod tests;
