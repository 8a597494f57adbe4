//! Ordered iteration over a tree.

use std::sync::Arc;

use super::keys::Keys;
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
                Node::Branch { keys, children } => {
                    let ci = keys.count_le(key);
                    page = children[ci];
                    stack.push((node, ci));
                }
                Node::Leaf { .. } => break node,
                _ => return Err(corrupt(page, "expected a leaf or branch page")),
            }
        };
        let idx = leaf_keys(&leaf).count_lt(key);
        let mut c = Cursor { stack, leaf, idx };
        c.settle(tree)?;
        Ok(c)
    }

    /// The current key, or `None` past the last entry.
    pub fn key(&self) -> Option<&[u8]> {
        leaf_keys(&self.leaf).get(self.idx).map(Vec::as_slice)
    }

    pub fn cell(&self) -> Option<&Cell> {
        match &*self.leaf {
            Node::Leaf { cells, .. } => cells.get(self.idx),
            _ => None,
        }
    }

    pub fn advance(&mut self, tree: &Tree) -> Result<()> {
        self.idx += 1;
        self.settle(tree)
    }

    /// Moves past the end of exhausted leaves to the next entry, if any.
    fn settle(&mut self, tree: &Tree) -> Result<()> {
        while self.idx >= leaf_keys(&self.leaf).len() {
            let next = loop {
                let Some((node, ci)) = self.stack.pop() else {
                    return Ok(()); // past the last entry
                };
                if let Node::Branch { children, .. } = &*node {
                    if ci + 1 < children.len() {
                        let child = children[ci + 1];
                        self.stack.push((node, ci + 1));
                        break child;
                    }
                }
            };
            let mut page = next;
            self.leaf = loop {
                let node = tree.pager.get(page)?;
                match &*node {
                    Node::Branch { children, .. } => {
                        page = children[0];
                        self.stack.push((node, 0));
                    }
                    Node::Leaf { .. } => break node,
                    _ => return Err(corrupt(page, "expected a leaf or branch page")),
                }
            };
            self.idx = 0;
        }
        Ok(())
    }
}

fn leaf_keys(node: &Node) -> &Keys {
    static NONE: Keys = Keys::new();
    match node {
        Node::Leaf { keys, .. } => keys,
        _ => &NONE,
    }
}

pub(super) fn last_before(tree: &Tree, key: &[u8]) -> Result<Option<(Vec<u8>, Cell)>> {
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
            Node::Branch { keys, children } => {
                let ci = keys.count_lt(key);
                page = children[ci];
                stack.push((node, ci));
            }
            Node::Leaf { keys, cells } => {
                let idx = keys.count_lt(key);
                if idx > 0 {
                    return Ok(Some((keys[idx - 1].clone(), cells[idx - 1].clone())));
                }
                break;
            }
            _ => return Err(corrupt(page, "expected a leaf or branch page")),
        }
    }
    // Up to the nearest branch with a child to the left, then rightmost down.
    while let Some((node, ci)) = stack.pop() {
        let Node::Branch { children, .. } = &*node else {
            continue;
        };
        if ci == 0 {
            continue;
        }
        let mut page = children[ci - 1];
        for _ in 0..MAX_DEPTH {
            let node = tree.pager.get(page)?;
            match &*node {
                Node::Branch { children, .. } => page = children[children.len() - 1],
                Node::Leaf { keys, cells } => {
                    return match keys.last() {
                        Some(k) => Ok(Some((k.clone(), cells[keys.len() - 1].clone()))),
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
