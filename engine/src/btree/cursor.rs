//! Ordered iteration over a tree.

use std::sync::Arc;

use super::entries::Entries;
use super::node::{Cell, Node};
use super::{corrupt, Result, Tree, MAX_DEPTH};

/// A position in the tree's key order. It owns the pages on its path, so it
/// stays valid (as a snapshot of those pages) while the caller holds the
/// tree's read lock.
pub struct Cursor {
    stack: Vec<(Arc<Node>, usize)>,
    leaf: Arc<Node>,
    idx: usize,
}

impl Cursor {
    pub(super) fn seek(tree: &Tree, key: &[u8]) -> Result<Cursor> {
        let mut stack = Vec::new();
        let mut page = tree.meta.root;
        let leaf = loop {
            if stack.len() > MAX_DEPTH {
                return Err(corrupt(
                    page,
                    "the tree is deeper than any real tree (a cycle)",
                ));
            }
            let node = tree.pager.get(page)?;
            match &*node {
                Node::Branch { first, entries } => {
                    let ci = entries.count_le(key);
                    page = Node::child(*first, entries, ci);
                    stack.push((node, ci));
                }
                Node::Leaf(_) => break node,
                _ => return Err(corrupt(page, "expected a leaf or branch page")),
            }
        };
        let idx = leaf_entries(&leaf).count_lt(key);
        let mut c = Cursor { stack, leaf, idx };
        c.settle(tree)?;
        Ok(c)
    }

    /// The current key, or `None` past the last entry.
    pub fn key(&self) -> Option<&[u8]> {
        let e = leaf_entries(&self.leaf);
        (self.idx < e.len()).then(|| e.key(self.idx))
    }

    pub fn cell(&self) -> Option<Cell<'_>> {
        let e = leaf_entries(&self.leaf);
        (self.idx < e.len()).then(|| Cell::from_payload(e.payload(self.idx)))
    }

    pub fn advance(&mut self, tree: &Tree) -> Result<()> {
        self.idx += 1;
        self.settle(tree)
    }

    /// Moves past the end of exhausted leaves to the next entry, if any.
    fn settle(&mut self, tree: &Tree) -> Result<()> {
        while self.idx >= leaf_entries(&self.leaf).len() {
            let next = loop {
                let Some((node, ci)) = self.stack.pop() else {
                    return Ok(()); // past the last entry
                };
                if let Node::Branch { first, entries } = &*node {
                    if ci < entries.len() {
                        let child = Node::child(*first, entries, ci + 1);
                        self.stack.push((node, ci + 1));
                        break child;
                    }
                }
            };
            let mut page = next;
            self.leaf = loop {
                let node = tree.pager.get(page)?;
                match &*node {
                    Node::Branch { first, .. } => {
                        page = *first;
                        self.stack.push((node, 0));
                    }
                    Node::Leaf(_) => break node,
                    _ => return Err(corrupt(page, "expected a leaf or branch page")),
                }
            };
            self.idx = 0;
        }
        Ok(())
    }
}

fn leaf_entries(node: &Node) -> &Entries {
    static NONE: Entries = Entries::new();
    match node {
        Node::Leaf(entries) => entries,
        _ => &NONE,
    }
}

pub(super) fn last_before(tree: &Tree, key: &[u8]) -> Result<Option<Vec<u8>>> {
    let mut stack = Vec::new();
    let mut page = tree.meta.root;
    loop {
        if stack.len() > MAX_DEPTH {
            return Err(corrupt(
                page,
                "the tree is deeper than any real tree (a cycle)",
            ));
        }
        let node = tree.pager.get(page)?;
        match &*node {
            Node::Branch { first, entries } => {
                let ci = entries.count_lt(key);
                page = Node::child(*first, entries, ci);
                stack.push((node, ci));
            }
            Node::Leaf(entries) => {
                let idx = entries.count_lt(key);
                if idx > 0 {
                    return Ok(Some(entries.key(idx - 1).to_vec()));
                }
                break;
            }
            _ => return Err(corrupt(page, "expected a leaf or branch page")),
        }
    }
    // Up to the nearest branch with a child to the left, then rightmost down.
    while let Some((node, ci)) = stack.pop() {
        let Node::Branch { first, entries } = &*node else {
            continue;
        };
        if ci == 0 {
            continue;
        }
        let mut page = Node::child(*first, entries, ci - 1);
        for _ in 0..MAX_DEPTH {
            let node = tree.pager.get(page)?;
            match &*node {
                Node::Branch { first, entries } => {
                    page = Node::child(*first, entries, entries.len())
                }
                Node::Leaf(entries) => {
                    return match entries.last_key() {
                        Some(k) => Ok(Some(k.to_vec())),
                        None => Err(corrupt(page, "empty leaf below the root")),
                    };
                }
                _ => return Err(corrupt(page, "expected a leaf or branch page")),
            }
        }
        return Err(corrupt(
            page,
            "the tree is deeper than any real tree (a cycle)",
        ));
    }
    Ok(None)
}
