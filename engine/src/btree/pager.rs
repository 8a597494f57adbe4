//! The buffer pool of one database file: decoded pages under a CLOCK
//! replacement policy, with a bound on the number of pages it holds.
//!
//! Invariants:
//! - a *pinned* page is never evicted: a dirty page (changed since it was
//!   last handed to the write daemon), or an in-flight one (handed to it,
//!   not yet durable in the file); so an in-flight page is always resident
//!   and never re-read stale from disk;
//! - a writer changes a page through `Arc::make_mut`: when the daemon still
//!   holds the same page, the writer gets a private copy (copy on write), so
//!   a flush always writes the snapshot it took. Such copies are counted in
//!   `copies` until the cycle ends: memory in use is `slots + copies`
//!   pages ([`Pager::resident`]), and the pool makes room for them;
//! - memory the tree holds outside the pool (its insert buffer) is counted
//!   as `external` pages: the bound covers `slots + copies + external`;
//! - the engine keeps [`Pager::pinned`] (`dirty + in flight + copies +
//!   external`) under a fraction of the bound by flushing and merging (see
//!   `db/flush.rs`), so the pool overshoots its bound only if that fraction
//!   is set near 1.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use parking_lot::{RwLock, RwLockReadGuard};

use super::node::Node;
use super::page::PageError;
use crate::storage::VfsFile;
use crate::wij::PAGE_SIZE;

/// A page that failed to load.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("read page {page}: {source}")]
    Io {
        page: u64,
        #[source]
        source: std::io::Error,
    },
    #[error("page {page} is corrupt: {source}")]
    Corrupt {
        page: u64,
        #[source]
        source: PageError,
    },
}

/// A page image taken by the write daemon: the node and its journal stamp.
#[derive(Clone)]
pub struct DirtyPage {
    pub page: u64,
    pub node: Arc<Node>,
    pub lsn: u64,
}

/// Hashes a page number with one multiplication (as rustc's FxHash): page
/// numbers are not chosen by an adversary, and SipHash was a visible part
/// of every page visit.
#[derive(Default)]
pub struct PageHasher(u64);

impl Hasher for PageHasher {
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(u64::from(b));
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(5) ^ n).wrapping_mul(0x517c_c1b7_2722_0a95);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

type PageMap<V> = HashMap<u64, V, BuildHasherDefault<PageHasher>>;

struct Slot {
    page: u64,
    node: Arc<Node>,
    lsn: u64,
    /// Set by every visit (under the read lock), cleared by the CLOCK hand.
    referenced: AtomicBool,
    dirty: bool,
}

struct Cache {
    capacity: usize,
    index: PageMap<usize>,
    slots: Vec<Slot>,
    hand: usize,
    dirty: usize,
    in_flight: PageMap<DirtyPage>,
    /// Pages copied on write while their first image was in flight.
    copies: usize,
    /// Pages' worth of memory the tree holds outside the pool.
    external: usize,
}

/// Readers of resident pages share the lock; loading, changing and
/// evicting take it exclusively.
pub struct Pager {
    file: Arc<dyn VfsFile>,
    cache: RwLock<Cache>,
    /// The bound, also readable without the lock.
    capacity: usize,
}

impl Pager {
    pub fn new(file: Arc<dyn VfsFile>, capacity: usize) -> Pager {
        Pager {
            file,
            cache: RwLock::new(Cache {
                capacity: capacity.max(16),
                index: PageMap::default(),
                slots: Vec::new(),
                hand: 0,
                dirty: 0,
                in_flight: PageMap::default(),
                copies: 0,
                external: 0,
            }),
            capacity: capacity.max(16),
        }
    }

    pub fn file(&self) -> &Arc<dyn VfsFile> {
        &self.file
    }

    /// The page, from the pool or from the file.
    pub fn get(&self, page: u64) -> Result<Arc<Node>, LoadError> {
        {
            let c = self.cache.read();
            if let Some(&i) = c.index.get(&page) {
                let s = &c.slots[i];
                if !s.referenced.load(Ordering::Relaxed) {
                    s.referenced.store(true, Ordering::Relaxed);
                }
                return Ok(s.node.clone());
            }
        }
        {
            let mut c = self.cache.write();
            if let Some(n) = c.lookup(page) {
                return Ok(n); // in flight, or loaded meanwhile
            }
        }
        let (node, lsn) = self.read(page)?;
        let node = Arc::new(node);
        let mut c = self.cache.write();
        if let Some(n) = c.lookup(page) {
            return Ok(n); // another reader loaded it meanwhile
        }
        c.insert(page, node.clone(), lsn, false);
        Ok(node)
    }

    /// A shared view of the resident pages, for a descent that visits
    /// several without locking and counting references for each. Hold it
    /// briefly: changes and loads wait for it. Never call the pager's other
    /// methods while holding it.
    pub fn view(&self) -> View<'_> {
        View(self.cache.read())
    }

    /// Changes a page in place, stamping it with `lsn` and marking it dirty.
    pub fn modify<R>(
        &self,
        page: u64,
        lsn: u64,
        f: impl FnOnce(&mut Node) -> R,
    ) -> Result<R, LoadError> {
        let (mut c, i) = self.resident_slot(page)?;
        *c.slots[i].referenced.get_mut() = true;
        c.count_copy(i);
        let was_dirty = c.slots[i].dirty;
        let slot = &mut c.slots[i];
        let r = f(Arc::make_mut(&mut slot.node));
        // An insert buffer's entry can land after later changes of the page.
        slot.lsn = slot.lsn.max(lsn);
        slot.dirty = true;
        if !was_dirty {
            c.dirty += 1;
        }
        c.trim();
        Ok(r)
    }

    /// The write-locked pool and the slot of `page`, loaded if need be.
    fn resident_slot(
        &self,
        page: u64,
    ) -> Result<(parking_lot::RwLockWriteGuard<'_, Cache>, usize), LoadError> {
        let mut c = self.cache.write();
        if let Some(&i) = c.index.get(&page) {
            return Ok((c, i));
        }
        if c.lookup(page).is_none() {
            // Not resident: load it without the lock, then insert it
            // unless another thread did meanwhile.
            drop(c);
            let (node, old_lsn) = self.read(page)?;
            c = self.cache.write();
            if c.lookup(page).is_none() {
                c.insert(page, Arc::new(node), old_lsn, false);
            }
        }
        let i = c.index[&page];
        Ok((c, i))
    }

    /// Moves page `from`, whose node is `node`, to the unused number `to`,
    /// dirty and stamped with `lsn`; `from` leaves the pool (an in-flight
    /// image of it stays until its cycle ends).
    pub fn rename(&self, from: u64, to: u64, node: Arc<Node>, lsn: u64) {
        self.discard(to);
        let mut c = self.cache.write();
        // The page is about to change: shared with an in-flight image of
        // `from`, it will be copied, and the copy counts.
        if c.in_flight
            .get(&from)
            .is_some_and(|d| Arc::ptr_eq(&d.node, &node))
        {
            c.copies += 1;
        }
        let Some(i) = c.index.remove(&from) else {
            c.insert(to, node, lsn, true);
            return;
        };
        let slot = &mut c.slots[i];
        let was_dirty = slot.dirty;
        slot.page = to;
        slot.node = node;
        slot.lsn = slot.lsn.max(lsn);
        slot.dirty = true;
        if !was_dirty {
            c.dirty += 1;
        }
        c.index.insert(to, i);
    }

    /// Forgets `page` (freed): it is not written, and stops taking room.
    /// An in-flight image of it stays until its cycle ends.
    pub fn discard(&self, page: u64) {
        let mut c = self.cache.write();
        let Some(&i) = c.index.get(&page) else {
            return;
        };
        // An in-flight image the slot shared stays in memory without the
        // slot: it counts as a copy until its cycle ends.
        c.count_copy(i);
        c.index.remove(&page);
        let gone = c.slots.swap_remove(i);
        if gone.dirty {
            c.dirty -= 1;
        }
        if i < c.slots.len() {
            let moved = c.slots[i].page;
            c.index.insert(moved, i);
        }
    }

    /// Puts a freshly allocated page into the pool, dirty.
    pub fn put_new(&self, page: u64, node: Node, lsn: u64) {
        let mut c = self.cache.write();
        if let Some(&i) = c.index.get(&page) {
            c.count_copy(i);
            let was_dirty = c.slots[i].dirty;
            let slot = &mut c.slots[i];
            slot.node = Arc::new(node);
            slot.lsn = slot.lsn.max(lsn);
            slot.dirty = true;
            if !was_dirty {
                c.dirty += 1;
            }
            c.trim();
        } else {
            c.insert(page, Arc::new(node), lsn, true);
        }
    }

    /// Whether `page` is resident and dirty (a flush will write it
    /// anyway).
    pub fn is_dirty(&self, page: u64) -> bool {
        let c = self.cache.read();
        c.index.get(&page).is_some_and(|&i| c.slots[i].dirty)
    }

    pub fn dirty_count(&self) -> usize {
        self.cache.read().dirty
    }

    /// ([`Pager::dirty_count`], [`Pager::pinned`], the external pages)
    /// under one lock.
    pub fn dirty_and_pinned(&self) -> (usize, usize, usize) {
        let c = self.cache.read();
        (
            c.dirty,
            c.dirty + c.in_flight.len() + c.copies + c.external,
            c.external,
        )
    }

    /// The most bytes any resident leaf allocated for its cells.
    #[cfg(test)]
    pub fn largest_leaf_buffer(&self) -> usize {
        let c = self.cache.read();
        let sizes = c.slots.iter().filter_map(|s| match &*s.node {
            Node::Leaf(e) => Some(e.cells_capacity()),
            _ => None,
        });
        sizes.max().unwrap_or(0)
    }

    /// Pages in memory: the pool's slots, copies made on write while a
    /// cycle holds the original, and the tree's memory outside the pool.
    pub fn resident(&self) -> usize {
        let c = self.cache.read();
        c.slots.len() + c.copies + c.external
    }

    /// Sets how many pages' worth of memory the tree holds outside the
    /// pool; the pool evicts to make room for it.
    pub fn set_external(&self, pages: usize) {
        if self.cache.read().external == pages {
            return;
        }
        let mut c = self.cache.write();
        c.external = pages;
        c.trim();
    }

    /// Memory the pool cannot give back until a flush cycle ends or the
    /// tree merges its insert buffer: dirty pages, in-flight pages, copies
    /// of in-flight pages, and the tree's memory outside the pool.
    pub fn pinned(&self) -> usize {
        self.dirty_and_pinned().1
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Hands every dirty page to the write daemon: they become clean in the
    /// pool and stay in `in_flight` until [`Pager::flushed`].
    pub fn take_dirty(&self) -> Vec<DirtyPage> {
        let mut c = self.cache.write();
        let mut out = Vec::with_capacity(c.dirty);
        for s in c.slots.iter_mut().filter(|s| s.dirty) {
            s.dirty = false;
            out.push(DirtyPage {
                page: s.page,
                node: s.node.clone(),
                lsn: s.lsn,
            });
        }
        c.dirty = 0;
        for d in &out {
            c.in_flight.insert(d.page, d.clone());
        }
        out
    }

    /// The images taken by the last `take_dirty` are durable in the file.
    pub fn flushed(&self) {
        let mut c = self.cache.write();
        c.in_flight.clear();
        c.copies = 0;
        c.trim();
    }

    fn read(&self, page: u64) -> Result<(Node, u64), LoadError> {
        // The page is decoded out of a buffer the thread keeps: a fresh
        // zeroed 8 KiB per read was a visible part of a random load.
        thread_local! {
            static BUF: std::cell::RefCell<Vec<u8>> = std::cell::RefCell::new(vec![0; PAGE_SIZE]);
        }
        BUF.with(|buf| {
            let buf = &mut *buf.borrow_mut();
            self.file
                .read_exact_at(buf, page * PAGE_SIZE as u64)
                .map_err(|source| LoadError::Io { page, source })?;
            Node::decode(buf, page).map_err(|source| LoadError::Corrupt { page, source })
        })
    }
}

/// See [`Pager::view`].
pub struct View<'a>(RwLockReadGuard<'a, Cache>);

impl View<'_> {
    /// The page if it is resident (in flight pages are resident too).
    pub fn get(&self, page: u64) -> Option<&Node> {
        self.get_arc(page).map(|n| &**n)
    }

    /// Like [`View::get`], with the shared node, to keep beyond the view.
    pub fn get_arc(&self, page: u64) -> Option<&Arc<Node>> {
        let &i = self.0.index.get(&page)?;
        let s = &self.0.slots[i];
        // Written only when it changes: a page many threads visit stays
        // shared in their caches instead of bouncing between them.
        if !s.referenced.load(Ordering::Relaxed) {
            s.referenced.store(true, Ordering::Relaxed);
        }
        Some(&s.node)
    }
}

impl Cache {
    /// Evicts unpinned pages until the pool is back within its bound.
    fn trim(&mut self) {
        while self.slots.len() + self.copies + self.external > self.capacity && self.evict_one() {}
    }

    /// CLOCK: two sweeps at most; the first unpinned slot not referenced
    /// since the hand last passed is removed. False if every slot is pinned.
    fn evict_one(&mut self) -> bool {
        let n = self.slots.len();
        for _ in 0..2 * n {
            let i = self.hand % self.slots.len();
            self.hand = i + 1;
            if self.pinned(i) {
                continue;
            }
            let s = &mut self.slots[i];
            if *s.referenced.get_mut() {
                *s.referenced.get_mut() = false;
                continue;
            }
            let gone = self.slots.swap_remove(i);
            self.index.remove(&gone.page);
            if i < self.slots.len() {
                self.index.insert(self.slots[i].page, i);
            }
            // The slot moved into `i` has not been looked at this sweep.
            self.hand = i;
            return true;
        }
        false
    }

    /// Slot `i` may not be evicted: dirty or in flight.
    fn pinned(&self, i: usize) -> bool {
        let s = &self.slots[i];
        s.dirty || self.in_flight.contains_key(&s.page)
    }

    /// Slot `i` is about to be changed or replaced: if it still shares its
    /// node with the in-flight image, the change makes a second copy.
    fn count_copy(&mut self, i: usize) {
        let s = &self.slots[i];
        if let Some(d) = self.in_flight.get(&s.page) {
            if Arc::ptr_eq(&d.node, &s.node) {
                self.copies += 1;
            }
        }
    }

    fn lookup(&mut self, page: u64) -> Option<Arc<Node>> {
        if let Some(&i) = self.index.get(&page) {
            let s = &mut self.slots[i];
            *s.referenced.get_mut() = true;
            return Some(s.node.clone());
        }
        let d = self.in_flight.get(&page)?.clone();
        self.insert(page, d.node.clone(), d.lsn, false);
        Some(d.node)
    }

    fn insert(&mut self, page: u64, node: Arc<Node>, lsn: u64, dirty: bool) {
        let slot = Slot {
            page,
            node,
            lsn,
            referenced: AtomicBool::new(true),
            dirty,
        };
        if dirty {
            self.dirty += 1;
        }
        // Make room; if everything is pinned, overshoot until the next
        // flush cycle.
        while self.slots.len() + self.copies + self.external >= self.capacity && self.evict_one() {}
        self.index.insert(page, self.slots.len());
        self.slots.push(slot);
    }
}
