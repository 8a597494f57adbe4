//! The buffer pool of one database file: decoded pages under a CLOCK
//! replacement policy, with a bound on the memory they take.
//!
//! The bound is configured in pages (`cache_pages`) and enforced in bytes:
//! `capacity * PAGE_SIZE` bytes of nodes as allocated ([`Node::memory`]:
//! cells, search indexes, an overflow page's data) plus each slot's own
//! bookkeeping. A decoded page takes more than its 8 KiB on disk (its
//! indexes, room to grow), so the pool holds somewhat fewer pages than
//! `capacity`; counting pages instead let the nodes take up to a third
//! more memory than configured.
//!
//! Invariants:
//! - a *pinned* page is never evicted: a dirty page (changed since it was
//!   last handed to the write daemon), or an in-flight one (handed to it,
//!   not yet durable in the file); so an in-flight page is always resident
//!   and never re-read stale from disk;
//! - a writer changes a page through `Arc::make_mut`: when the daemon still
//!   holds the same page, the writer gets a private copy (copy on write), so
//!   a flush always writes the snapshot it took. The memory of an image no
//!   slot shares any more (copied on write, or its page freed) is counted
//!   in `copy_bytes` until the cycle ends: memory in use is `slot_bytes +
//!   copy_bytes` ([`Pager::resident`]), and the pool makes room for it;
//! - memory the tree holds outside the pool (its insert buffer) is counted
//!   as `external` bytes: the bound covers `slot_bytes + copy_bytes +
//!   external`;
//! - the engine keeps [`Pager::pinned`] (dirty slots, in-flight images and
//!   the external bytes) under a fraction of the bound by flushing and
//!   merging (see `db/flush.rs`), so the pool overshoots its bound only if
//!   that fraction is set near 1.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use parking_lot::{RwLock, RwLockReadGuard};

use super::entries::prefetch_addr;
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
    /// [`Node::first_probe`] of `node`, as last counted: a point read
    /// starts loading it with the node, instead of after the node told
    /// where its search index lives (one cache miss fewer in a row).
    probe: usize,
    /// What the slot takes in memory ([`slot_memory`]), as last counted.
    bytes: u32,
    lsn: u64,
    /// Set by every visit (under the read lock), cleared by the CLOCK hand.
    referenced: AtomicBool,
    dirty: bool,
}

const _: () = assert!(std::mem::size_of::<Slot>() == 40);

struct Cache {
    /// The bound on `slot_bytes + copy_bytes + external`.
    bound: usize,
    index: PageMap<usize>,
    slots: Vec<Slot>,
    hand: usize,
    /// Dirty slots.
    dirty: usize,
    in_flight: PageMap<DirtyPage>,
    /// Memory of all slots, of the dirty ones, and of the in-flight images.
    slot_bytes: usize,
    dirty_bytes: usize,
    in_flight_bytes: usize,
    /// Memory of in-flight images no slot shares any more.
    copy_bytes: usize,
    /// Bytes the tree holds outside the pool.
    external: usize,
}

/// What a slot holding `node` takes: the node, the slot, and its entry in
/// the index.
fn slot_memory(node: &Node) -> usize {
    node.memory() + std::mem::size_of::<Slot>() + 2 * std::mem::size_of::<u64>()
}

/// A slot's memory as stored in the slot (a node never takes 4 GiB).
fn slot_bytes(bytes: usize) -> u32 {
    u32::try_from(bytes).expect("a node of less than 4 GiB")
}

impl Slot {
    fn bytes(&self) -> usize {
        self.bytes as usize
    }
}

/// Bytes as pages' worth of memory, rounded up.
fn pages_of(bytes: usize) -> usize {
    bytes.div_ceil(PAGE_SIZE)
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
                bound: capacity.max(16) * PAGE_SIZE,
                index: PageMap::default(),
                slots: Vec::new(),
                hand: 0,
                dirty: 0,
                in_flight: PageMap::default(),
                slot_bytes: 0,
                dirty_bytes: 0,
                in_flight_bytes: 0,
                copy_bytes: 0,
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
        let r = f(Arc::make_mut(&mut c.slots[i].node));
        // An insert buffer's entry can land after later changes of the page.
        let slot = &mut c.slots[i];
        slot.lsn = slot.lsn.max(lsn);
        c.recount(i, true);
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
            c.copy_bytes += slot_memory(&node);
        }
        let Some(i) = c.index.remove(&from) else {
            c.insert(to, node, lsn, true);
            return;
        };
        let slot = &mut c.slots[i];
        slot.page = to;
        slot.node = node;
        slot.lsn = slot.lsn.max(lsn);
        c.recount(i, true);
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
        c.remove(i);
    }

    /// Puts a freshly allocated page into the pool, dirty.
    pub fn put_new(&self, page: u64, node: Node, lsn: u64) {
        let mut c = self.cache.write();
        if let Some(&i) = c.index.get(&page) {
            c.count_copy(i);
            let slot = &mut c.slots[i];
            slot.node = Arc::new(node);
            slot.lsn = slot.lsn.max(lsn);
            c.recount(i, true);
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

    /// Pages' worth of memory in dirty slots, [`Pager::pinned`], and the
    /// external pages' worth, under one lock.
    pub fn dirty_and_pinned(&self) -> (usize, usize, usize) {
        let c = self.cache.read();
        (
            pages_of(c.dirty_bytes),
            pages_of(c.dirty_bytes + c.in_flight_bytes + c.external),
            pages_of(c.external),
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

    /// Resident leaves and branches (not the small nodes of free lists
    /// and short overflow chains).
    #[cfg(test)]
    pub fn resident_tree_pages(&self) -> usize {
        let c = self.cache.read();
        let tree = |s: &&Slot| matches!(&*s.node, Node::Leaf(_) | Node::Branch { .. });
        c.slots.iter().filter(tree).count()
    }

    /// Panics if a slot's first probe is not its node's as it is now (a
    /// node changed without being counted again): harmless for reads,
    /// which only prefetch there, but the first probe then stops helping.
    #[cfg(test)]
    pub fn check_probes(&self) {
        let c = self.cache.read();
        for s in &c.slots {
            assert_eq!(s.probe, s.node.first_probe(), "slot of page {}", s.page);
        }
    }

    /// Recounts the pool's memory from its nodes and panics if the counts
    /// kept as pages change disagree (a node changed without being
    /// counted again, or a count that drifted).
    #[cfg(test)]
    pub fn verify_memory(&self) {
        let c = self.cache.read();
        let fresh = |s: &Slot| slot_memory(&s.node);
        let all: usize = c.slots.iter().map(fresh).sum();
        let dirty: usize = c.slots.iter().filter(|s| s.dirty).map(fresh).sum();
        let flying: usize = c.in_flight.values().map(|d| slot_memory(&d.node)).sum();
        assert!(
            c.slots.iter().all(|s| s.bytes() == fresh(s)),
            "a slot's memory is stale"
        );
        assert_eq!(c.slot_bytes, all, "memory of the slots");
        assert_eq!(c.dirty_bytes, dirty, "memory of the dirty slots");
        assert_eq!(
            c.dirty,
            c.slots.iter().filter(|s| s.dirty).count(),
            "dirty slots"
        );
        assert_eq!(c.in_flight_bytes, flying, "memory of the in-flight images");
        assert!(
            c.copy_bytes <= c.in_flight_bytes,
            "copies of in-flight images"
        );
    }

    /// The pool's memory (as [`Pager::resident`], in bytes) and its bound.
    #[cfg(test)]
    pub fn memory_and_bound(&self) -> (usize, usize) {
        let c = self.cache.read();
        (c.memory(), c.bound)
    }

    /// Pages' worth of memory in use: the pool's slots, in-flight images
    /// no slot shares any more, and the tree's memory outside the pool.
    /// The pool keeps it within [`Pager::capacity`] unless everything is
    /// pinned.
    pub fn resident(&self) -> usize {
        let c = self.cache.read();
        pages_of(c.memory())
    }

    /// Pages the pool holds (each page once, whatever its memory).
    pub fn resident_pages(&self) -> usize {
        self.cache.read().slots.len()
    }

    /// Sets how many bytes the tree holds outside the pool; the pool
    /// evicts to make room for them.
    pub fn set_external(&self, bytes: usize) {
        if self.cache.read().external == bytes {
            return;
        }
        let mut c = self.cache.write();
        c.external = bytes;
        c.trim();
    }

    /// Pages' worth of memory the pool cannot give back until a flush
    /// cycle ends or the tree merges its insert buffer: dirty pages,
    /// in-flight images (including those copied on write or freed), and
    /// the tree's memory outside the pool.
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
        c.in_flight_bytes += c.dirty_bytes;
        c.dirty_bytes = 0;
        for d in &out {
            c.in_flight.insert(d.page, d.clone());
        }
        out
    }

    /// The images taken by the last `take_dirty` are durable in the file.
    pub fn flushed(&self) {
        let mut c = self.cache.write();
        c.in_flight.clear();
        c.in_flight_bytes = 0;
        c.copy_bytes = 0;
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
        prefetch_addr(s.probe);
        // Written only when it changes: a page many threads visit stays
        // shared in their caches instead of bouncing between them.
        if !s.referenced.load(Ordering::Relaxed) {
            s.referenced.store(true, Ordering::Relaxed);
        }
        Some(&s.node)
    }
}

impl Cache {
    /// Memory in use, held to `bound`.
    fn memory(&self) -> usize {
        self.slot_bytes + self.copy_bytes + self.external
    }

    /// Evicts unpinned pages until the pool is back within its bound.
    fn trim(&mut self) {
        while self.memory() > self.bound && self.evict_one() {}
    }

    /// Slot `i`'s node changed (or was replaced): counts its memory again
    /// and marks it dirty if `dirty`.
    fn recount(&mut self, i: usize, dirty: bool) {
        let s = &mut self.slots[i];
        let (old, new) = (s.bytes(), slot_memory(&s.node));
        s.probe = s.node.first_probe();
        let was_dirty = s.dirty;
        s.bytes = slot_bytes(new);
        s.dirty |= dirty;
        let is_dirty = s.dirty;
        self.slot_bytes = self.slot_bytes - old + new;
        if was_dirty {
            self.dirty_bytes -= old;
        }
        if is_dirty {
            self.dirty_bytes += new;
        }
        if is_dirty && !was_dirty {
            self.dirty += 1;
        }
    }

    /// Removes slot `i` (moving the last slot into its place).
    fn remove(&mut self, i: usize) -> Slot {
        let gone = self.slots.swap_remove(i);
        self.index.remove(&gone.page);
        self.slot_bytes -= gone.bytes();
        if gone.dirty {
            self.dirty -= 1;
            self.dirty_bytes -= gone.bytes();
        }
        if i < self.slots.len() {
            self.index.insert(self.slots[i].page, i);
        }
        gone
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
            self.remove(i);
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
    /// node with the in-flight image, that image now takes memory of its
    /// own until its cycle ends.
    fn count_copy(&mut self, i: usize) {
        let s = &self.slots[i];
        if let Some(d) = self.in_flight.get(&s.page) {
            if Arc::ptr_eq(&d.node, &s.node) {
                self.copy_bytes += s.bytes();
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
        let bytes = slot_memory(&node);
        // Make room; if everything is pinned, overshoot until the next
        // flush cycle.
        while self.memory() + bytes > self.bound && self.evict_one() {}
        let slot = Slot {
            page,
            probe: node.first_probe(),
            node,
            bytes: slot_bytes(bytes),
            lsn,
            referenced: AtomicBool::new(true),
            dirty,
        };
        self.slot_bytes += bytes;
        if dirty {
            self.dirty += 1;
            self.dirty_bytes += bytes;
        }
        self.index.insert(page, self.slots.len());
        self.slots.push(slot);
    }
}
