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
//! So the free pages fall in three sets:
//! - listed: named by the free list of the snapshot last handed to the
//!   daemon, hence unused by the tree on disk while the next cycle runs;
//!   allocation takes these, and records them in `direct`;
//! - `reusable`: freed since that snapshot but unused by the tree on disk
//!   all the same (fresh pages, or pages allocated directly since the
//!   snapshot): allocation takes these first;
//! - `pending`: freed since that snapshot; the tree on disk may still use
//!   them, so they wait for the next snapshot, which lists them. Allocation
//!   never takes them: it grows the file instead (by at most one cycle's
//!   frees).
//!
//! On disk the free pages are named by a chain of free-list pages (*trunks*,
//! `next | pages`, see `node.rs`) from the meta page's `free_head`; the
//! free pages themselves hold nothing that is read, so writing one
//! directly cannot break the list. The chain is a stack: allocation takes
//! the pages of the trunks nearest the head, and a snapshot whose free set
//! changed writes only the pages that changed, as new trunks in front of
//! the ones allocation did not touch:
//!
//! ```text
//! before:  meta -> [T3: 40 pages left of 1019] -> [T2] -> [T1] -> 0
//! after:   meta -> [N2] -> [N1] -> [T2] -> [T1] -> 0
//!          N1, N2 (new pages, written directly) name the cycle's frees,
//!          T3's 40 pages and T3 itself; T2 and T1 are not written.
//! ```
//!
//! A trunk that allocation touched is never rewritten in place (the tree
//! on disk holds it): its page joins the free set, which lists it from the
//! next snapshot on. So a cycle writes about one trunk per 1,019 pages it
//! freed, plus one, however long the list: a KILL that freed a million
//! pages writes their 982 trunks once, not at every later cycle.
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

/// Pages a new trunk names: as many as a page holds; under `cfg(test)`
/// 30, so that the engine's tests, whose trees free a few hundred pages,
/// build lists of many trunks and consume them as a large database does.
const TRUNK_FILL: usize = if cfg!(test) { 30 } else { FREE_LIST_CAPACITY };

/// A set of page numbers.
pub type PageSet = HashSet<u64, BuildHasherDefault<PageHasher>>;

/// A free-list page: where it is, and the pages it names that are still
/// free (allocation takes them from the end).
struct Trunk {
    page: u64,
    pages: Vec<u64>,
}

#[derive(Default)]
pub(super) struct FreeSpace {
    /// The free list, its head last. Trunks below `intact` hold exactly
    /// what their pages say; those from `intact` on lost pages to
    /// allocation since the last snapshot.
    stack: Vec<Trunk>,
    intact: usize,
    /// Trunks from `top` on are empty.
    top: usize,
    /// Freed since the last snapshot and unused by the tree on disk.
    reusable: Vec<u64>,
    /// Freed since the last snapshot, maybe used by the tree on disk.
    pending: Vec<u64>,
    /// Allocated from listed or reusable pages since the last snapshot.
    direct: PageSet,
    /// The free set changed since the last snapshot.
    changed: bool,
}

impl FreeSpace {
    /// Reads the free list of a tree opened from its file: the chain from
    /// `head`, every page below `page_count`. Its pages are all listed
    /// (the file holds exactly the tree they are free in).
    pub fn load(pager: &Pager, head: u64, page_count: u64) -> Result<FreeSpace> {
        let mut chain = Vec::new();
        let mut page = head;
        while page != 0 {
            if chain.len() as u64 >= page_count || page >= page_count {
                return Err(corrupt(page, "free list runs past the file or loops"));
            }
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
            chain.push(Trunk {
                page,
                pages: pages.clone(),
            });
            page = *next;
        }
        let mut all: Vec<u64> = chain.iter().flat_map(|t| t.pages.iter().copied()).collect();
        all.sort_unstable();
        if let Some(w) = all.windows(2).find(|w| w[0] == w[1]) {
            return Err(corrupt(
                head,
                format!("free list names page {} twice", w[0]),
            ));
        }
        if let Some(t) = chain.iter().find(|t| all.binary_search(&t.page).is_ok()) {
            return Err(corrupt(t.page, "free list names its own page as free"));
        }
        chain.reverse();
        Ok(FreeSpace {
            intact: chain.len(),
            top: chain.len(),
            stack: chain,
            ..FreeSpace::default()
        })
    }

    /// Whether the next cycle may write `page` straight to the file.
    /// `fresh_from`: the page count of the last snapshot.
    pub fn is_direct(&self, page: u64, fresh_from: u64) -> bool {
        page >= fresh_from || self.direct.contains(&page)
    }

    /// A page for the tree: a reusable one, else a listed one from the
    /// head of the list, else a new one at the end of the file. All are
    /// direct.
    pub fn alloc(&mut self, page_count: &mut u64) -> u64 {
        if let Some(page) = self.reusable.pop().or_else(|| self.take_listed()) {
            self.direct.insert(page);
            self.changed = true;
            return page;
        }
        *page_count += 1;
        *page_count - 1
    }

    /// A listed page from the trunk nearest the head that has one left.
    /// Every trunk it takes from or passes (emptied) is relisted by the
    /// next snapshot.
    fn take_listed(&mut self) -> Option<u64> {
        while self.top > 0 {
            let i = self.top - 1;
            self.intact = self.intact.min(i);
            if let Some(page) = self.stack[i].pages.pop() {
                return Some(page);
            }
            self.top = i;
        }
        None
    }

    /// `page` left the tree.
    pub fn release(&mut self, page: u64, fresh_from: u64) {
        self.changed = true;
        if page >= fresh_from || self.direct.remove(&page) {
            self.reusable.push(page);
        } else {
            self.pending.push(page);
        }
    }

    /// How many pages are free (listed, reusable and pending).
    pub fn free_count(&self) -> usize {
        let listed: usize = self.stack.iter().map(|t| t.pages.len()).sum();
        listed + self.reusable.len() + self.pending.len()
    }

    /// The free-list pages, head first.
    pub fn trunks(&self) -> impl Iterator<Item = u64> + '_ {
        self.stack.iter().rev().map(|t| t.page)
    }

    /// Every free page: listed, reusable or pending.
    pub fn pages(&self) -> impl Iterator<Item = u64> + '_ {
        let listed = self.stack.iter().flat_map(|t| t.pages.iter());
        listed.chain(&self.reusable).chain(&self.pending).copied()
    }

    /// Checks the list against the pages that hold it: a trunk allocation
    /// has not touched names exactly the pages it says, one it touched at
    /// least those it still holds, and each points at the one below.
    pub fn verify(&self, pager: &Pager) -> Result<()> {
        for (i, t) in self.stack.iter().enumerate() {
            let Node::FreeList { next, pages } = &*pager.get(t.page)? else {
                return Err(corrupt(t.page, "expected a free-list page"));
            };
            let below = i.checked_sub(1).map_or(0, |b| self.stack[b].page);
            if *next != below {
                return Err(corrupt(
                    t.page,
                    format!("free-list page points at {next}, not {below}"),
                ));
            }
            let named: PageSet = pages.iter().copied().collect();
            let holds = t.pages.iter().all(|p| named.contains(p));
            if !holds || (i < self.intact && named.len() != t.pages.len()) {
                return Err(corrupt(
                    t.page,
                    "free-list page differs from the free pages it stands for",
                ));
            }
        }
        Ok(())
    }

    /// For a snapshot: if the free set changed, lists the pages freed
    /// since the last one, and those of the trunks allocation touched
    /// (what they still hold, and their own pages), in new trunks at the
    /// head of the list, points `free_head` at it, and returns the pages
    /// allocated directly since the last snapshot. From here on every free
    /// page is listed.
    pub fn snapshot(
        &mut self,
        pager: &Pager,
        page_count: &mut u64,
        free_head: &mut u64,
        lsn: u64,
    ) -> PageSet {
        if self.changed {
            // Unused by the tree on disk, so fit to hold the new trunks,
            // which the cycle writes directly: what is left in touched
            // trunks, and the reusable pages.
            let mut unused = std::mem::take(&mut self.reusable);
            // Used by the tree on disk (the touched trunks themselves,
            // the pending pages): unused by the snapshot being taken, so
            // listed by it, and written no earlier than the next cycle.
            let mut used = std::mem::take(&mut self.pending);
            let mut n;
            loop {
                for t in self.stack.drain(self.intact..) {
                    unused.extend(t.pages);
                    used.push(t.page);
                    pager.discard(t.page);
                }
                // Trunks taken from `unused` leave the list they hold.
                let listed = unused.len() + used.len();
                n = 0;
                while n * TRUNK_FILL < listed - n.min(unused.len()) {
                    n += 1;
                }
                // Short of unused pages for the new trunks: relist the
                // next trunk too (the pages it names are unused) rather
                // than grow the file.
                if unused.len() >= n || self.intact == 0 {
                    break;
                }
                self.intact -= 1;
            }
            // The highest unused pages hold the list; allocation takes
            // the lowest first.
            unused.sort_unstable();
            let mut trunks = Vec::with_capacity(n);
            for _ in 0..n {
                let page = unused.pop().unwrap_or_else(|| {
                    *page_count += 1;
                    *page_count - 1
                });
                self.direct.insert(page);
                trunks.push(page);
            }
            let mut free = unused;
            free.append(&mut used);
            // Descending: a trunk's lowest page is taken first, and the
            // trunk at the head holds the lowest pages.
            free.sort_unstable_by(|a, b| b.cmp(a));
            for (i, page) in trunks.into_iter().enumerate() {
                let from = (i * TRUNK_FILL).min(free.len());
                let to = ((i + 1) * TRUNK_FILL).min(free.len());
                let next = self.stack.last().map_or(0, |t| t.page);
                let pages = free[from..to].to_vec();
                pager.put_new(
                    page,
                    Node::FreeList {
                        next,
                        pages: pages.clone(),
                    },
                    lsn,
                );
                self.stack.push(Trunk { page, pages });
            }
            *free_head = self.stack.last().map_or(0, |t| t.page);
            self.intact = self.stack.len();
            self.top = self.stack.len();
            self.changed = false;
        }
        debug_assert!(self.pending.is_empty() && self.reusable.is_empty());
        std::mem::take(&mut self.direct)
    }
}
