//! Structural verification of a whole tree, used after recovery in tests and
//! by operators (`redoubt check`, later).

use super::node::{Cell, Node};
use super::{corrupt, Result, Tree};

/// A page still to visit: (page, low bound, high bound, depth).
type Pending = (u64, Option<Vec<u8>>, Option<Vec<u8>>, u32);

/// What a successful check counted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TreeCheck {
    pub entries: u64,
    pub leaves: u64,
    pub branches: u64,
    pub overflow_pages: u64,
    pub free_pages: u64,
    pub depth: u32,
    /// Of `entries`, those waiting in the insert buffer.
    pub buffered: u64,
}

/// Verifies: keys strictly ascending and inside their parent's separator
/// bounds; every leaf at the same depth; no empty page below the root;
/// overflow chains as long as their values; every page of the file
/// reachable exactly once, from the root, as a page of the free list or as
/// a free page; and no key of the insert buffer in a leaf.
pub(super) fn check(tree: &Tree) -> Result<TreeCheck> {
    #[cfg(test)]
    tree.pager.verify_memory();
    let meta = &tree.meta;
    if meta.page_count < 2 {
        return Err(corrupt(
            0,
            format!("page count {} is below 2", meta.page_count),
        ));
    }
    let file_pages = tree.pager.file().len().unwrap_or(0) / crate::wij::PAGE_SIZE as u64;
    // Pages never written yet are in the pool, or free.
    let unwritten = (tree.pager.resident_pages() + tree.free.free_count()) as u64;
    if meta.page_count > file_pages + unwritten + 1 {
        return Err(corrupt(
            0,
            format!(
                "page count {} exceeds the file's {file_pages} pages, the pool and the free pages",
                meta.page_count
            ),
        ));
    }
    let mut seen = vec![false; meta.page_count as usize];
    let mut out = TreeCheck::default();
    seen[0] = true;
    let mut leaf_depth = None;
    let mut todo: Vec<Pending> = vec![(meta.root, None, None, 1)];
    let mark = |seen: &mut Vec<bool>, page: u64| -> Result<()> {
        match seen.get_mut(page as usize) {
            None => Err(corrupt(
                page,
                format!("beyond page count {}", meta.page_count),
            )),
            Some(true) => Err(corrupt(page, "reached twice")),
            Some(s) => {
                *s = true;
                Ok(())
            }
        }
    };
    while let Some((page, lo, hi, depth)) = todo.pop() {
        mark(&mut seen, page)?;
        let node = tree.pager.get(page)?;
        let Some(entries) = node.entries() else {
            return Err(corrupt(page, "expected a leaf or branch page"));
        };
        if (1..entries.len()).any(|i| entries.key(i - 1) >= entries.key(i)) {
            return Err(corrupt(page, "keys out of order"));
        }
        let in_bounds = |k: &[u8]| {
            lo.as_deref().is_none_or(|lo| k >= lo) && hi.as_deref().is_none_or(|hi| k < hi)
        };
        if !entries.keys().all(in_bounds) {
            return Err(corrupt(page, "key outside its parent's bounds"));
        }
        match &*node {
            Node::Leaf(entries) => {
                if entries.is_empty() && page != meta.root {
                    return Err(corrupt(page, "empty leaf below the root"));
                }
                if *leaf_depth.get_or_insert(depth) != depth {
                    return Err(corrupt(page, "leaves at different depths"));
                }
                out.leaves += 1;
                out.entries += entries.len() as u64;
                for i in 0..entries.len() {
                    if let Cell::Overflow { len, first } = Cell::from_payload(entries.payload(i)) {
                        let mut total = 0u64;
                        let mut p = first;
                        while p != 0 {
                            mark(&mut seen, p)?;
                            let n = tree.pager.get(p)?;
                            let Node::Overflow { data, next } = &*n else {
                                return Err(corrupt(p, "expected an overflow page"));
                            };
                            total += data.len() as u64;
                            out.overflow_pages += 1;
                            p = *next;
                        }
                        if total != len {
                            return Err(corrupt(first, "overflow chain length differs"));
                        }
                    }
                }
            }
            Node::Branch { first, entries } => {
                if *first == 0 {
                    return Err(corrupt(page, "branch without children"));
                }
                out.branches += 1;
                for i in 0..=entries.len() {
                    let clo = if i == 0 {
                        lo.clone()
                    } else {
                        Some(entries.key(i - 1).to_vec())
                    };
                    let chi = if i == entries.len() {
                        hi.clone()
                    } else {
                        Some(entries.key(i).to_vec())
                    };
                    todo.push((Node::child(*first, entries, i), clo, chi, depth + 1));
                }
            }
            _ => unreachable!("matched above"),
        }
    }
    out.depth = leaf_depth.unwrap_or(1);
    let mut p = meta.free_head;
    for trunk in tree.free.trunks() {
        if p != trunk {
            return Err(corrupt(
                trunk,
                "free list differs from the chain on the meta page",
            ));
        }
        mark(&mut seen, trunk)?;
        let Node::FreeList { next, .. } = &*tree.pager.get(trunk)? else {
            return Err(corrupt(trunk, "expected a free-list page"));
        };
        p = *next;
    }
    if p != 0 {
        return Err(corrupt(
            p,
            "free list differs from the chain on the meta page",
        ));
    }
    tree.free.verify(&tree.pager)?;
    for page in tree.free.pages() {
        mark(&mut seen, page)?;
    }
    out.free_pages = tree.free.free_count() as u64;
    if let Some(leaked) = seen.iter().position(|s| !s) {
        return Err(corrupt(
            leaked as u64,
            "neither reachable nor free (leaked)",
        ));
    }
    for key in tree.buffer.keys() {
        let (_, leaf, node) = tree.path_to_leaf(key)?;
        if let Node::Leaf(entries) = &*node {
            if entries.search(key).is_ok() {
                return Err(corrupt(
                    leaf,
                    "a key both in a leaf and in the insert buffer",
                ));
            }
        }
        out.buffered += 1;
    }
    out.entries += out.buffered;
    Ok(out)
}
