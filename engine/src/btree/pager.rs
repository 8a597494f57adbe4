//! The buffer pool of one database file: decoded pages under a CLOCK
//! replacement policy, with a bound on the number of pages it holds.
//!
//! Invariants:
//! - a dirty page (changed since it was last handed to the write daemon) is
//!   never evicted; the engine starts a flush cycle when too many pages are
//!   dirty, so the pool overshoots its bound by at most a few pages;
//! - pages handed to the write daemon stay reachable in `in_flight` until
//!   their images are durable in the database file, so a page evicted in
//!   between is never re-read stale from disk;
//! - a writer changes a page through `Arc::make_mut`: when the daemon still
//!   holds the same page, the writer gets a private copy (copy on write), so
//!   a flush always writes the snapshot it took.

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::Mutex;

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

struct Slot {
    page: u64,
    node: Arc<Node>,
    lsn: u64,
    referenced: bool,
    dirty: bool,
}

struct Cache {
    capacity: usize,
    index: HashMap<u64, usize>,
    slots: Vec<Slot>,
    hand: usize,
    dirty: usize,
    in_flight: HashMap<u64, DirtyPage>,
}

pub struct Pager {
    file: Arc<dyn VfsFile>,
    cache: Mutex<Cache>,
}

impl Pager {
    pub fn new(file: Arc<dyn VfsFile>, capacity: usize) -> Pager {
        Pager {
            file,
            cache: Mutex::new(Cache {
                capacity: capacity.max(16),
                index: HashMap::new(),
                slots: Vec::new(),
                hand: 0,
                dirty: 0,
                in_flight: HashMap::new(),
            }),
        }
    }

    pub fn file(&self) -> &Arc<dyn VfsFile> {
        &self.file
    }

    /// The page, from the pool or from the file.
    pub fn get(&self, page: u64) -> Result<Arc<Node>, LoadError> {
        {
            let mut c = self.cache.lock();
            if let Some(n) = c.lookup(page) {
                return Ok(n);
            }
        }
        let (node, lsn) = self.read(page)?;
        let node = Arc::new(node);
        let mut c = self.cache.lock();
        if let Some(n) = c.lookup(page) {
            return Ok(n); // another reader loaded it meanwhile
        }
        c.insert(page, node.clone(), lsn, false);
        Ok(node)
    }

    /// Changes a page in place, stamping it with `lsn` and marking it dirty.
    pub fn modify<R>(
        &self,
        page: u64,
        lsn: u64,
        f: impl FnOnce(&mut Node) -> R,
    ) -> Result<R, LoadError> {
        self.get(page)?;
        let mut c = self.cache.lock();
        if c.lookup(page).is_none() {
            // Evicted between the two locks: load it again under this lock.
            drop(c);
            let (node, old_lsn) = self.read(page)?;
            c = self.cache.lock();
            if c.lookup(page).is_none() {
                c.insert(page, Arc::new(node), old_lsn, false);
            }
        }
        let i = c.index[&page];
        let was_dirty = c.slots[i].dirty;
        let slot = &mut c.slots[i];
        let r = f(Arc::make_mut(&mut slot.node));
        slot.lsn = lsn;
        slot.dirty = true;
        if !was_dirty {
            c.dirty += 1;
        }
        Ok(r)
    }

    /// Puts a freshly allocated page into the pool, dirty.
    pub fn put_new(&self, page: u64, node: Node, lsn: u64) {
        let mut c = self.cache.lock();
        if let Some(&i) = c.index.get(&page) {
            let was_dirty = c.slots[i].dirty;
            let slot = &mut c.slots[i];
            slot.node = Arc::new(node);
            slot.lsn = lsn;
            slot.dirty = true;
            if !was_dirty {
                c.dirty += 1;
            }
        } else {
            c.insert(page, Arc::new(node), lsn, true);
        }
    }

    pub fn dirty_count(&self) -> usize {
        self.cache.lock().dirty
    }

    pub fn resident(&self) -> usize {
        self.cache.lock().slots.len()
    }

    pub fn capacity(&self) -> usize {
        self.cache.lock().capacity
    }

    /// Hands every dirty page to the write daemon: they become clean in the
    /// pool and stay in `in_flight` until [`Pager::flushed`].
    pub fn take_dirty(&self) -> Vec<DirtyPage> {
        let mut c = self.cache.lock();
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
        let mut c = self.cache.lock();
        c.in_flight.clear();
        c.trim();
    }

    fn read(&self, page: u64) -> Result<(Node, u64), LoadError> {
        let mut buf = vec![0u8; PAGE_SIZE];
        self.file
            .read_exact_at(&mut buf, page * PAGE_SIZE as u64)
            .map_err(|source| LoadError::Io { page, source })?;
        Node::decode(&buf, page).map_err(|source| LoadError::Corrupt { page, source })
    }
}

impl Cache {
    /// Evicts clean pages until the pool is back within its bound.
    fn trim(&mut self) {
        let mut i = 0;
        while self.slots.len() > self.capacity && i < self.slots.len() {
            if self.slots[i].dirty {
                i += 1;
                continue;
            }
            let gone = self.slots.swap_remove(i);
            self.index.remove(&gone.page);
            if i < self.slots.len() {
                self.index.insert(self.slots[i].page, i);
            }
        }
        if self.hand >= self.slots.len() {
            self.hand = 0;
        }
    }

    fn lookup(&mut self, page: u64) -> Option<Arc<Node>> {
        if let Some(&i) = self.index.get(&page) {
            let s = &mut self.slots[i];
            s.referenced = true;
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
            referenced: true,
            dirty,
        };
        if dirty {
            self.dirty += 1;
        }
        if self.slots.len() < self.capacity {
            self.index.insert(page, self.slots.len());
            self.slots.push(slot);
            return;
        }
        // CLOCK: two sweeps at most; clean, unreferenced slots are victims.
        let n = self.slots.len();
        for _ in 0..2 * n {
            let i = self.hand;
            self.hand = (self.hand + 1) % n;
            let s = &mut self.slots[i];
            if s.dirty {
                continue;
            }
            if s.referenced {
                s.referenced = false;
                continue;
            }
            self.index.remove(&s.page);
            self.index.insert(page, i);
            self.slots[i] = slot;
            return;
        }
        // Everything is dirty: overshoot until the next flush cycle.
        self.index.insert(page, self.slots.len());
        self.slots.push(slot);
    }
}
