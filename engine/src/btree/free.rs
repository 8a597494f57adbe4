//! Free pages, and which pages the next flush cycle may write straight to
//! the database file instead of through the write image journal.
//!
//! A flush cycle `k` writes the snapshot `S_k` the write daemon took while
//! the file still holds `S_{k-1}` (see `db/flush.rs`). A page that `S_{k-1}`
//! does not use (its tree, overflow chains and free-list pages) may be
//! written *directly*: a crash that tears it before the WIJ names cycle
//! `k` loses nothing, because recovery then restores `S_{k-1}`, which does
//! not read it; and the cycle syncs its direct pages before the WIJ names
//! it (after which recovery restores `S_k`, which may read them). Such
//! pages are those numbered from `S_{k-1}`'s page count on
//! (*fresh*), and those that were free in `S_{k-1}`. Every other page goes
//! through the WIJ.
//!
//! So the free pages fall in two sets:
//! - `clean`: free in the snapshot last handed to the daemon, hence unused
//!   by the tree on disk while the next cycle runs; allocation takes these
//!   first and records them in `direct`;
//! - `pending`: freed since that snapshot; the tree on disk may still use
//!   them, so they wait for the next snapshot, which makes them `clean`.
//!   Allocation never takes them: it grows the file instead (by at most
//!   one cycle's frees).
//!
//! A page allocated directly and freed again before the snapshot is unused
//! on disk: it goes straight back to `clean`.
//!
//! On disk the free pages are listed in a chain of free-list pages (`next |
//! pages`, see `node.rs`) from the meta page's `free_head`; the free pages
//! themselves hold nothing that is read, so writing one directly cannot
//! break the list. Each snapshot whose free set changed writes a new chain
//! into direct pages and frees the old one (never rewriting, in place, a
//! list that the tree on disk holds). A large free set (after a big KILL)
//! is rewritten whole by each cycle that changes it: about 8 KiB per 1,019
//! free pages.
//!
//! Leaves are moved to direct pages before they change (`Tree::relocate`),
//! so a load's modified leaves are written once; branches, fewer by two
//! orders of magnitude, and a root that is a leaf (its page is on the
//! meta page) go through the WIJ.

use std::collections::HashSet;
use std::hash::BuildHasherDefault;

use super::node::{Node, FREE_LIST_CAPACITY};
use super::pager::{PageHasher, Pager};
use super::{corrupt, Result};

/// A set of page numbers.
pub type PageSet = HashSet<u64, BuildHasherDefault<PageHasher>>;

#[derive(Default)]
pub(super) struct FreeSpace {
    /// Free and unused by the tree on disk: direct when allocated. Kept
    /// sorted descending after a snapshot, so allocation takes low pages
    /// first.
    clean: Vec<u64>,
    /// Freed since the last snapshot.
    pending: Vec<u64>,
    /// Allocated from `clean` since the last snapshot.
    direct: PageSet,
    /// The free-list pages the last snapshot wrote (or the file holds).
    trunks: Vec<u64>,
    /// The free set changed since the last snapshot.
    changed: bool,
}

impl FreeSpace {
    /// Reads the free list of a tree opened from its file: the chain from
    /// `head`, every page below `page_count`. Its pages are all `clean`
    /// (the file holds exactly the tree they are free in).
    pub fn load(pager: &Pager, head: u64, page_count: u64) -> Result<FreeSpace> {
        let mut free = FreeSpace::default();
        let mut page = head;
        while page != 0 {
            if free.trunks.len() as u64 >= page_count || page >= page_count {
                return Err(corrupt(page, "free list runs past the file or loops"));
            }
            free.trunks.push(page);
            let node = pager.get(page)?;
            let Node::FreeList { next, pages } = &*node else {
                return Err(corrupt(page, "expected a free-list page"));
            };
            if let Some(bad) = pages.iter().find(|&&p| p == 0 || p >= page_count) {
                return Err(corrupt(
                    page,
                    format!("free list names page {bad}, beyond page count {page_count}"),
                ));
            }
            free.clean.extend_from_slice(pages);
            page = *next;
        }
        free.clean.sort_unstable_by(|a, b| b.cmp(a));
        if let Some(w) = free.clean.windows(2).find(|w| w[0] == w[1]) {
            return Err(corrupt(
                head,
                format!("free list names page {} twice", w[0]),
            ));
        }
        // Descending order: search with the order reversed.
        if let Some(&t) = free
            .trunks
            .iter()
            .find(|&&t| free.clean.binary_search_by(|p| t.cmp(p)).is_ok())
        {
            return Err(corrupt(t, "free list names its own page as free"));
        }
        Ok(free)
    }

    /// Whether the next cycle may write `page` straight to the file.
    /// `fresh_from`: the page count of the last snapshot.
    pub fn is_direct(&self, page: u64, fresh_from: u64) -> bool {
        page >= fresh_from || self.direct.contains(&page)
    }

    /// A page for the tree: a clean free one, else a new one at the end of
    /// the file. Both are direct.
    pub fn alloc(&mut self, page_count: &mut u64) -> u64 {
        if let Some(page) = self.clean.pop() {
            self.direct.insert(page);
            self.changed = true;
            return page;
        }
        *page_count += 1;
        *page_count - 1
    }

    /// `page` left the tree.
    pub fn release(&mut self, page: u64, fresh_from: u64) {
        self.changed = true;
        if page >= fresh_from || self.direct.remove(&page) {
            self.clean.push(page);
        } else {
            self.pending.push(page);
        }
    }

    /// Free pages (clean and pending) and the free-list pages.
    pub fn counts(&self) -> (usize, &[u64]) {
        (self.clean.len() + self.pending.len(), &self.trunks)
    }

    /// Every free page, clean or pending.
    pub fn pages(&self) -> impl Iterator<Item = u64> + '_ {
        self.clean.iter().chain(&self.pending).copied()
    }

    /// For a snapshot: writes the free list as it now is into new
    /// free-list pages (if it changed), points `free_head` at it, and
    /// returns the pages allocated directly since the last snapshot. From
    /// here on every free page is clean.
    pub fn snapshot(
        &mut self,
        pager: &Pager,
        page_count: &mut u64,
        free_head: &mut u64,
        lsn: u64,
    ) -> PageSet {
        if self.changed {
            // The old list is unused by the snapshot being taken, but the
            // tree on disk uses it: its pages join the free set now and
            // are written no earlier than the next cycle.
            let old = std::mem::take(&mut self.trunks);
            for &p in &old {
                pager.discard(p);
            }
            let listed = self.clean.len() + self.pending.len() + old.len();
            // Trunks come from `clean` (direct) or the end of the file;
            // those from `clean` leave the list they hold.
            let mut t = 0;
            while t * FREE_LIST_CAPACITY < listed - t.min(self.clean.len()) {
                t += 1;
            }
            for _ in 0..t {
                let page = self.alloc(page_count);
                self.trunks.push(page);
            }
            let mut free = std::mem::take(&mut self.clean);
            free.append(&mut self.pending);
            free.extend(old);
            free.sort_unstable_by(|a, b| b.cmp(a));
            for (i, &trunk) in self.trunks.iter().enumerate() {
                let from = (i * FREE_LIST_CAPACITY).min(free.len());
                let to = ((i + 1) * FREE_LIST_CAPACITY).min(free.len());
                let next = self.trunks.get(i + 1).copied().unwrap_or(0);
                let node = Node::FreeList {
                    next,
                    pages: free[from..to].to_vec(),
                };
                pager.put_new(trunk, node, lsn);
            }
            *free_head = self.trunks.first().copied().unwrap_or(0);
            self.clean = free;
            self.changed = false;
        }
        debug_assert!(self.pending.is_empty());
        std::mem::take(&mut self.direct)
    }
}
