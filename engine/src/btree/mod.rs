//! A B+tree of encoded keys in one database file.
//!
//! Keys are compared as bytes (the model's encoding makes byte order the
//! collation order), through each page's search index (`entries.rs`). Values
//! up to [`node::INLINE_MAX`] bytes live in the leaves; larger ones in
//! chains of overflow pages. A full page splits evenly, except at the right
//! edge of the tree, where an ascending load leaves full pages behind (see
//! `split`). A leaf that empties is freed and unlinked from its parent; a
//! node left under a quarter full merges with a sibling under the same
//! parent when the two fit in 7/8 of a page (`merge_underfull`). Freed pages
//! go on a free list that allocation takes from first, and a leaf in the
//! tree on disk moves to a page the next flush may write directly before
//! it changes (`free.rs`).
//!
//! New keys whose leaf is not resident may wait in the tree's insert
//! buffer instead (`buffer.rs`); reads see them (reads of ranges through
//! a [`ReadCursor`]), and a write over a range needs [`Tree::merge`]
//! first.
//!
//! Concurrency: the caller serialises writers (`&mut Tree`) against readers
//! (`&Tree`, many at once), e.g. with an `RwLock`.

pub mod node;
pub mod page;
pub mod pager;

mod buffer;
mod check;
mod cursor;
mod entries;
mod filter;
mod free;
mod read_cursor;

use std::cmp::Ordering;
use std::sync::Arc;

use buffer::{InsertBuffer, Taken};
use entries::Entries;
pub use filter::KeyFilter;
use free::FreeSpace;
pub use free::PageSet;
use node::{cmp_key, Cell, Meta, Node, INLINE_MAX, OVERFLOW_CAPACITY};
use page::BODY_SIZE;
use pager::{DirtyPage, LoadError, Pager};

pub use check::TreeCheck;
pub use cursor::Cursor;
pub use read_cursor::ReadCursor;

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

/// The branches down to a leaf, the leaf's page and its node.
type LeafPath = (Vec<Step>, u64, Arc<Node>);

/// One branch on the way down to a leaf.
#[derive(Clone)]
struct Step {
    page: u64,
    /// Index of the child taken.
    child: usize,
    /// The child taken is the branch's last one.
    last: bool,
}

/// The way down to the leaf the last [`Tree::find`] reached, and the key
/// range that leaf covers, so that the next write to the same range (a
/// load in key order, or keys close together) skips the descent.
///
/// Valid while `shape` equals the tree's: every change of which page holds
/// which keys (a split, an unlinked page, a new or collapsed root) goes
/// through [`Tree::alloc`] or [`Tree::free_page`], which bump it. Changes
/// inside a leaf do not move its bounds: they come from the separators of
/// its parents, which only splits and unlinks change.
#[derive(Default)]
struct Route {
    /// The tree's `shape` when the route was taken; 0: no route.
    shape: u64,
    path: Vec<Step>,
    leaf: u64,
    /// Keys `>= low` (if `has_low`, else no lower bound) and `< high` (if
    /// `has_high`) belong in `leaf`. The buffers are reused.
    low: Vec<u8>,
    has_low: bool,
    high: Vec<u8>,
    has_high: bool,
}

impl Route {
    fn covers(&self, shape: u64, key: &[u8]) -> bool {
        self.shape == shape
            && (!self.has_low || cmp_key(&self.low, key) != Ordering::Greater)
            && (!self.has_high || cmp_key(key, &self.high) == Ordering::Less)
    }

    /// Forgets the route and starts a new one at the root (no bounds).
    fn restart(&mut self) {
        self.shape = 0;
        self.has_low = false;
        self.has_high = false;
    }

    /// Narrows the bounds to those of child `ci` of a branch.
    fn step(&mut self, entries: &Entries, ci: usize) {
        if ci > 0 {
            self.low.clear();
            self.low.extend_from_slice(entries.key(ci - 1));
            self.has_low = true;
        }
        if ci < entries.len() {
            self.high.clear();
            self.high.extend_from_slice(entries.key(ci));
            self.has_high = true;
        }
    }
}

/// Where a key belongs and what it holds, from [`Tree::find`]; valid for
/// the write that follows only while the tree is unchanged (`version`).
pub struct Found {
    place: Place,
    version: u64,
    /// The key's current value, if it has one.
    pub before: Option<Vec<u8>>,
}

enum Place {
    /// In this leaf (holding the key or not), at `at` (its search result
    /// there, a hint for the write).
    Leaf {
        path: Vec<Step>,
        leaf: u64,
        at: std::result::Result<usize, usize>,
    },
    /// In the insert buffer.
    Buffered,
    /// Nowhere (the filter says so), and its leaf is not resident or is
    /// clean: a new value may go to the insert buffer.
    Absent,
}

/// What [`Tree::take_flush`] hands to the write daemon.
pub struct Flush {
    pub pages: Vec<DirtyPage>,
    pub meta: Meta,
    /// Pages numbered from here on are fresh (see [`Tree::take_flush`]).
    pub fresh_from: u64,
    /// Pages allocated from those free in the tree on disk (some may be
    /// fresh too): with the fresh ones, written straight to the file.
    pub direct: PageSet,
    /// The `redo_from` asked for, before the insert buffer lowered it:
    /// the journal end the cycle makes durable, which the meta page is
    /// stamped with (recovery trusts the journal up to it).
    pub durable_to: u64,
}

pub struct Tree {
    pager: Pager,
    meta: Meta,
    /// Bumped by every change of the structure or of a leaf, so a
    /// [`Found`] taken before a change is never used after it.
    version: u64,
    /// Bumped by every change of the structure (see [`Route`]); starts at 1.
    shape: u64,
    route: Route,
    /// The page count of the meta page last handed to the write daemon:
    /// pages from here on were never part of a tree on disk.
    flushed_pages: u64,
    free: FreeSpace,
    buffer: InsertBuffer,
}

impl Tree {
    /// A new, empty tree: meta page 0 and an empty root leaf at page 1, both
    /// dirty (nothing is written until the first flush).
    pub fn create(file: Arc<dyn VfsFile>, cache_pages: usize, file_id: u32, name: &str) -> Tree {
        let pager = Pager::new(file, cache_pages);
        pager.put_new(1, Node::empty_leaf(), 0);
        Tree {
            pager,
            version: 0,
            shape: 1,
            route: Route::default(),
            flushed_pages: 0,
            free: FreeSpace::default(),
            buffer: InsertBuffer::default(),
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

    /// Opens the tree `meta` describes, reading its free list.
    pub fn open(file: Arc<dyn VfsFile>, cache_pages: usize, meta: Meta) -> Result<Tree> {
        let pager = Pager::new(file, cache_pages);
        let free = FreeSpace::load(&pager, meta.free_head, meta.page_count)?;
        Ok(Tree {
            pager,
            flushed_pages: meta.page_count,
            meta,
            version: 0,
            shape: 1,
            route: Route::default(),
            free,
            buffer: InsertBuffer::default(),
        })
    }

    /// Turns the insert buffer on, with `max_bytes` of the pool for its
    /// entries and `filter_budget` for its key filter. Only for a tree
    /// holding no key (a database just created): the filter must see every
    /// key the tree ever holds.
    pub fn enable_insert_buffer(&mut self, max_bytes: usize, filter_budget: usize) {
        assert!(
            self.buffer.is_empty() && self.meta.page_count <= 2,
            "the insert buffer is for a tree that starts empty"
        );
        self.buffer = InsertBuffer::new(max_bytes, filter_budget);
        self.account_buffer();
    }

    /// The value of `key` if it is buffered; `known_absent`: the filter
    /// already said it is not.
    fn buffered_value(&self, key: &[u8], known_absent: bool) -> Option<&[u8]> {
        if self.buffer.is_empty() || known_absent || self.buffer.absent(key) {
            return None;
        }
        self.buffer.get(key)
    }

    /// Starts an insert buffer for a tree opened from its file: its filter
    /// learns every key added from now on, while the caller adds the keys
    /// the tree holds ([`Tree::note_keys`]) and then calls
    /// [`Tree::filter_built`]; until then nothing is buffered.
    pub fn start_filter(&mut self, max_bytes: usize, filter_budget: usize) {
        self.start_buffer(InsertBuffer::building(max_bytes, filter_budget));
    }

    /// Like [`Tree::start_filter`], with a filter that has seen every key
    /// the tree holds: the buffer takes keys at once.
    pub fn start_filter_with(&mut self, max_bytes: usize, filter: KeyFilter) {
        self.start_buffer(InsertBuffer::with_filter(max_bytes, filter));
    }

    fn start_buffer(&mut self, buffer: InsertBuffer) {
        assert!(
            self.buffer.is_empty(),
            "a filter is started before any key is buffered"
        );
        self.buffer = buffer;
        self.account_buffer();
    }

    /// The key filter, if it answers (see [`InsertBuffer::answering_filter`]).
    pub fn answering_filter(&self) -> Option<&KeyFilter> {
        self.buffer.answering_filter()
    }

    pub fn note_keys<'a>(&mut self, keys: impl IntoIterator<Item = &'a [u8]>) {
        for k in keys {
            self.note_key(k);
        }
    }

    /// Adds `key` to the filter; accounts its memory if that changed,
    /// and says so when the filter saturates (the buffer is off from then
    /// on).
    fn note_key(&mut self, key: &[u8]) {
        if self.buffer.note(key) {
            self.account_buffer();
            if !self.buffer.has_answers() {
                tracing::warn!(
                    database = %self.meta.name,
                    "the insert buffer's key filter outgrew its budget; new keys whose leaf is \
                     not resident are read from their leaves again until restart"
                );
            }
        }
    }

    /// Gives up a filter that could not be built: it stops learning keys
    /// and gives its memory back.
    pub fn drop_filter(&mut self) {
        debug_assert!(self.buffer.is_empty());
        self.buffer = InsertBuffer::default();
        self.account_buffer();
    }

    pub fn filter_built(&mut self) {
        self.buffer.filter_built();
    }

    /// Whether the tree has a key filter (built or being built).
    pub fn has_filter(&self) -> bool {
        self.buffer.has_filter()
    }

    /// Whether `key` waits in the insert buffer.
    pub fn is_buffered(&self, key: &[u8]) -> bool {
        self.buffer.get(key).is_some()
    }

    /// Keys waiting in the insert buffer.
    pub fn buffered(&self) -> usize {
        self.buffer.len()
    }

    /// No later than the journal position of every buffered key.
    pub fn buffer_oldest(&self) -> Option<u64> {
        self.buffer.oldest()
    }

    /// Keys ever put in the insert buffer.
    pub fn buffer_additions(&self) -> u64 {
        self.buffer.additions()
    }

    /// The insert buffer has reached its share of the pool.
    pub fn buffer_full(&self) -> bool {
        self.buffer.full()
    }

    /// Moves up to `n` buffered keys into their leaves, in key order from
    /// where the previous merge stopped (wrapping around); returns how
    /// many it moved. Each keeps the journal position of its change as the
    /// stamp of the pages it lands in (if later than theirs). Stops early
    /// once the pool's pinned pages pass `pinned_limit` (the caller then
    /// flushes: merged keys dirty leaves).
    pub fn merge(&mut self, n: usize, pinned_limit: usize) -> Result<usize> {
        let mut moved = 0;
        while moved < n {
            let Some(taken) = self.buffer.take_next() else {
                break;
            };
            // The leaf is read before its keys leave the buffer for good:
            // a read that fails (a damaged page) puts them back, and point
            // reads still find them. One descent per leaf: every key below
            // its upper bound goes with the first.
            let found = self.path_to_leaf(taken.key()).and_then(|(path, leaf, _)| {
                let hi = self.upper_bound(&path)?;
                Ok((path, leaf, hi))
            });
            let (path, leaf, hi) = match found {
                Ok(f) => f,
                Err(e) => {
                    self.buffer.put_back(taken);
                    self.account_buffer();
                    return Err(e);
                }
            };
            // The keys after it that go to the same leaf come out with it.
            let mut run = vec![taken];
            run.extend(self.buffer.take_run(&run[0], hi.as_deref(), n - moved - 1));
            // Each key's page stamp is its own position: the leaf's, once
            // it holds them all, is the latest.
            let lsn = run.iter().map(|t| t.lsn).max().unwrap_or(0);
            let (placed, leaf, overfull) = match self.merge_into_leaf(&path, leaf, &run, lsn) {
                Ok(r) => r,
                Err(e) => {
                    for t in run {
                        self.buffer.put_back(t);
                    }
                    self.account_buffer();
                    return Err(e);
                }
            };
            moved += placed;
            // Those that did not fit before the leaf split wait for the
            // next turn of the loop (a descent to their new leaf).
            let rest = run.split_off(placed);
            for t in rest {
                self.buffer.put_back(t);
            }
            for t in run {
                self.buffer.placed(t);
            }
            if let Some(appended) = overfull {
                if let Err(e) = self.split_upwards(path, leaf, appended, lsn) {
                    self.account_buffer();
                    return Err(e);
                }
            }
            if self.pager.pinned() > pinned_limit {
                break;
            }
        }
        if moved > 0 {
            self.account_buffer();
        }
        Ok(moved)
    }

    /// Puts the buffered keys of `run` (ascending, all in `leaf`'s range)
    /// into `leaf`, stamped `lsn`, until it no longer fits. Returns how
    /// many it placed (at least one), the leaf's page (it may have moved,
    /// see [`Tree::relocate`]) and, if it must split now, whether the last
    /// key went to its right end. Nothing changes if it fails (a leaf or
    /// parent that cannot be read).
    fn merge_into_leaf(
        &mut self,
        path: &[Step],
        leaf: u64,
        run: &[Taken],
        lsn: u64,
    ) -> Result<(usize, u64, Option<bool>)> {
        self.version += 1;
        let leaf = self.relocate(path, leaf, lsn)?;
        let (placed, appended, fits) = self.pager.modify(leaf, lsn, |n| {
            let (mut placed, mut appended, mut fits) = (0, false, true);
            for t in run {
                let Node::Leaf(entries) = &mut *n else {
                    break;
                };
                // A buffered key is never in the tree too: one that is
                // stops the run here (reported below if it is the first).
                let Err(i) = entries.search(t.key()) else {
                    break;
                };
                Cell::Inline(t.value()).with_payload(|p| entries.insert(i, t.key(), p));
                appended = i + 1 == entries.len();
                placed += 1;
                fits = n.fits();
                if !fits {
                    break;
                }
            }
            (placed, appended, fits)
        })?;
        if placed == 0 {
            return Err(corrupt(
                leaf,
                "a key in the insert buffer is also in its leaf, or the page is not a leaf",
            ));
        }
        Ok((placed, leaf, (!fits).then_some(appended)))
    }

    /// The insert buffer holds more than a writer's merge leaves in it
    /// (see [`Inner::merge_full`](crate::db)).
    pub fn buffer_above_low_water(&self) -> bool {
        self.buffer.above_low_water()
    }

    /// The separator above which keys leave the leaf at the end of `path`
    /// (`None`: the leaf is the last of the tree).
    fn upper_bound(&self, path: &[Step]) -> Result<Option<Vec<u8>>> {
        let Some(step) = path.iter().rev().find(|s| !s.last) else {
            return Ok(None);
        };
        match &*self.pager.get(step.page)? {
            Node::Branch { entries, .. } => Ok(Some(entries.key(step.child).to_vec())),
            _ => Err(corrupt(step.page, "expected a branch page")),
        }
    }

    /// Tells the pool how much memory the insert buffer holds.
    fn account_buffer(&self) {
        self.pager.set_external(self.buffer.memory());
    }

    pub fn meta(&self) -> &Meta {
        &self.meta
    }

    pub fn pager(&self) -> &Pager {
        &self.pager
    }

    /// Calls `f` on the value stored under `key`, without copying it when
    /// it lives inline in a resident leaf.
    pub fn get_with<R>(&self, key: &[u8], f: impl FnOnce(&[u8]) -> R) -> Result<Option<R>> {
        if let Some(v) = self.buffered_value(key, false) {
            return Ok(Some(f(v)));
        }
        {
            // Fast path: every page on the way is resident; one shared lock
            // of the pool for the whole descent.
            let view = self.pager.view();
            let mut page = self.meta.root;
            for _ in 0..MAX_DEPTH {
                match view.get(page) {
                    Some(Node::Branch { first, entries }) => {
                        page = Node::child(*first, entries, entries.count_le(key));
                    }
                    Some(Node::Leaf(entries)) => match entries.search(key) {
                        Err(_) => return Ok(None),
                        Ok(i) => match Cell::from_payload(entries.payload(i)) {
                            Cell::Inline(v) => return Ok(Some(f(v))),
                            _ => break,
                        },
                    },
                    _ => break, // not resident, or not a tree page: slow path
                }
            }
        }
        Ok(self.get(key)?.map(|v| f(&v)))
    }

    /// The value stored under `key`.
    pub fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        if let Some(v) = self.buffered_value(key, false) {
            return Ok(Some(v.to_vec()));
        }
        let mut page = self.meta.root;
        for _ in 0..MAX_DEPTH {
            let node = self.pager.get(page)?;
            match &*node {
                Node::Branch { first, entries } => {
                    page = Node::child(*first, entries, entries.count_le(key));
                }
                Node::Leaf(entries) => {
                    return match entries.search(key) {
                        Ok(i) => Ok(Some(self.value(Cell::from_payload(entries.payload(i)))?)),
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

    /// Whether any key lies in `[from, to)`, in the tree or the insert
    /// buffer.
    pub fn any_in(&self, from: &[u8], to: &[u8]) -> Result<bool> {
        let c = self.read_seek(from)?;
        Ok(c.key().is_some_and(|k| k < to))
    }

    /// A cursor at the first key `>= key` of the tree and the insert
    /// buffer together: for reads of ranges.
    pub fn read_seek(&self, key: &[u8]) -> Result<ReadCursor> {
        ReadCursor::seek(self, key)
    }

    /// The last key `< key`, in the tree or the insert buffer.
    pub fn read_last_before(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        read_cursor::last_before(self, key)
    }

    /// A cursor at the first entry of the tree whose key is `>= key`:
    /// for writes over a range, which merge the insert buffer first.
    pub fn seek(&self, key: &[u8]) -> Result<Cursor> {
        debug_assert!(
            self.buffer.is_empty(),
            "a write over a range with keys still buffered"
        );
        Cursor::seek(self, key)
    }

    /// The bytes of a leaf value, following an overflow chain if needed.
    pub fn value(&self, cell: Cell<'_>) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        self.value_into(cell, &mut out)?;
        Ok(out)
    }

    /// Appends the bytes of a leaf value to `out` (see [`Tree::value`]).
    /// On an error `out` may hold part of the value.
    pub fn value_into(&self, cell: Cell<'_>, out: &mut Vec<u8>) -> Result<()> {
        match cell {
            Cell::Inline(v) => out.extend_from_slice(v),
            Cell::Overflow { len, first } => {
                out.reserve((len as usize).min(crate::db::MAX_VALUE));
                let start = out.len();
                let mut page = first;
                while page != 0 {
                    let node = self.pager.get(page)?;
                    let Node::Overflow { data, next } = &*node else {
                        return Err(corrupt(page, "expected an overflow page"));
                    };
                    out.extend_from_slice(data);
                    if (out.len() - start) as u64 > len {
                        return Err(corrupt(page, "overflow chain longer than its value"));
                    }
                    page = *next;
                }
                let got = out.len() - start;
                if got as u64 != len {
                    return Err(corrupt(
                        first,
                        format!("overflow chain holds {got} of {len} bytes"),
                    ));
                }
            }
        }
        Ok(())
    }

    /// Finds where `key` belongs and its current value, for a write that
    /// follows with [`Tree::put_found`] or [`Tree::delete_found`] (one
    /// descent for the read and the write).
    pub fn find(&mut self, key: &[u8]) -> Result<Found> {
        // A key the filter never saw is not buffered either. The filter is
        // asked only when its answer is needed (a lookup costs a cache
        // miss): with keys buffered, or when the leaf is not resident.
        self.buffer.prefetch_note(key);
        let mut absent = None;
        if !self.buffer.is_empty() {
            let a = self.buffer.absent(key);
            absent = Some(a);
            if let Some(v) = self.buffered_value(key, a) {
                return Ok(Found {
                    place: Place::Buffered,
                    version: self.version,
                    before: Some(v.to_vec()),
                });
            }
        }
        // Only a tree larger than its pool buffers: a smaller one soon has
        // every leaf resident, each read once.
        let buffering =
            self.buffer.enabled() && self.meta.page_count > self.pager.capacity() as u64;
        let routed = self.route.covers(self.shape, key);
        let found = self.descend_routed(key, buffering)?;
        // A new key waits in the buffer if its leaf is not resident (no
        // read needed), and also if it is resident but clean: put in the
        // leaf, it would make the next flush write the whole page for it
        // alone (a random load's resident leaves are mostly clean: merged,
        // then flushed); merged later, it shares that write with the other
        // keys of its leaf. A dirty leaf is written anyway, and a leaf the
        // last write went to (`routed`: keys in order) will take more.
        let wait = match &found {
            None => true,
            Some((_, leaf, _)) => buffering && !routed && !self.pager.is_dirty(*leaf),
        };
        if wait && absent.unwrap_or_else(|| self.buffer.absent(key)) {
            return Ok(Found {
                place: Place::Absent,
                version: self.version,
                before: None,
            });
        }
        match found {
            Some(leaf_path) => self.find_in_leaf(key, leaf_path),
            None => self.find_in_leaf(key, self.path_to_leaf(key)?),
        }
    }

    fn find_in_leaf(&self, key: &[u8], (path, leaf, node): LeafPath) -> Result<Found> {
        let Node::Leaf(entries) = &*node else {
            return Err(corrupt(leaf, "expected a leaf page"));
        };
        let at = entries.search(key);
        let before = match at {
            Ok(i) => Some(self.value(Cell::from_payload(entries.payload(i)))?),
            Err(_) => None,
        };
        Ok(Found {
            place: Place::Leaf { path, leaf, at },
            version: self.version,
            before,
        })
    }

    /// Sets `key` to `value`; pages changed are stamped with `lsn`.
    pub fn put(&mut self, key: &[u8], value: &[u8], lsn: u64) -> Result<()> {
        if self.buffered_value(key, false).is_some() {
            return self.put_buffered(key, value, lsn);
        }
        let (path, leaf, _) = self.path_to_leaf(key)?;
        self.put_in_leaf(path, leaf, key, value, lsn, None)
    }

    /// [`Tree::put`] where `found` (from [`Tree::find`] for the same key)
    /// says the key is; descends again if the tree changed since.
    pub fn put_found(&mut self, found: Found, key: &[u8], value: &[u8], lsn: u64) -> Result<()> {
        if found.version != self.version {
            return self.put(key, value, lsn);
        }
        match found.place {
            Place::Leaf { path, leaf, at } => {
                self.put_in_leaf(path, leaf, key, value, lsn, Some(at))
            }
            Place::Buffered => self.put_buffered(key, value, lsn),
            Place::Absent if value.len() <= INLINE_MAX => {
                self.version += 1;
                self.buffer.insert(key, value, lsn);
                self.account_buffer();
                Ok(())
            }
            Place::Absent => {
                let (path, leaf, _) = self.path_to_leaf(key)?;
                self.put_in_leaf(path, leaf, key, value, lsn, None)
            }
        }
    }

    /// A new value for a buffered key: in the buffer if it fits a leaf
    /// inline, else (an overflow value) in the tree.
    fn put_buffered(&mut self, key: &[u8], value: &[u8], lsn: u64) -> Result<()> {
        self.version += 1;
        if value.len() <= INLINE_MAX && self.buffer.replace(key, value) {
            self.account_buffer();
            return Ok(());
        }
        self.buffer.remove(key);
        self.account_buffer();
        let (path, leaf, _) = self.path_to_leaf(key)?;
        self.put_in_leaf(path, leaf, key, value, lsn, None)
    }

    /// Sets `key` to `value` in `leaf` (below the branches of `path`),
    /// splitting pages as needed. `at`: where an earlier search in the
    /// leaf found the key's place (checked, not trusted).
    fn put_in_leaf(
        &mut self,
        path: Vec<Step>,
        leaf: u64,
        key: &[u8],
        value: &[u8],
        lsn: u64,
        at: Option<std::result::Result<usize, usize>>,
    ) -> Result<()> {
        self.version += 1;
        let leaf = self.relocate(&path, leaf, lsn)?;
        let cell = if value.len() > INLINE_MAX {
            self.write_overflow(value, lsn)?
        } else {
            Cell::Inline(value)
        };
        // The rightmost leaf of the tree, where an ascending load appends.
        let rightmost = path.iter().all(|step| step.last);
        let (old, appended, fits, inserted) = self.pager.modify(leaf, lsn, |n| {
            let Node::Leaf(entries) = n else {
                return (None, false, true, false);
            };
            let at = entries.search_hinted(key, at);
            if rightmost
                && at == Err(entries.len())
                && !entries.is_empty()
                && entries.bytes().len() + cell.with_payload(|p| Entries::cell_len_of(key, p))
                    > BODY_SIZE
            {
                // A key past the end of a full rightmost leaf starts the
                // next leaf, as an edge split would leave it, without
                // growing this one's buffer past a page first.
                return (None, true, false, false);
            }
            let (old, appended, inserted) = match at {
                Ok(i) => {
                    let old = match Cell::from_payload(entries.payload(i)) {
                        Cell::Overflow { first, .. } => Some(first),
                        Cell::Inline(_) => None,
                    };
                    cell.with_payload(|p| entries.set_payload(i, p));
                    (old, false, false)
                }
                Err(i) => {
                    cell.with_payload(|p| entries.insert(i, key, p));
                    (None, i + 1 == entries.len(), true)
                }
            };
            (old, appended, n.fits(), inserted)
        })?;
        if inserted {
            self.note_key(key);
        }
        if let Some(first) = old {
            self.free_chain(first)?;
        }
        if fits {
            return Ok(());
        }
        if appended && !inserted {
            let right_page = self.alloc();
            let mut entries = Entries::new();
            cell.with_payload(|p| entries.insert(0, key, p));
            self.pager.put_new(right_page, Node::Leaf(entries), lsn);
            self.note_key(key);
            return self.link_upwards(path, leaf, key.to_vec(), right_page, lsn);
        }
        self.split_upwards(path, leaf, appended, lsn)
    }

    /// Splits `leaf`, which no longer fits, and then its ancestors on
    /// `path` while one does not fit. `appended`: the entry that overfilled
    /// the leaf was added at its right end.
    fn split_upwards(
        &mut self,
        path: Vec<Step>,
        leaf: u64,
        appended: bool,
        lsn: u64,
    ) -> Result<()> {
        let edge = appended && path.iter().all(|step| step.last);
        let right_page = self.alloc();
        let (sep, right) = self.pager.modify(leaf, lsn, |n| split(n, edge))?;
        self.pager.put_new(right_page, right, lsn);
        self.link_upwards(path, leaf, sep, right_page, lsn)
    }

    /// Links `right_page`, the new right sibling of `page` whose keys
    /// start at `sep`, into the parent at the end of `path` (a new root if
    /// `page` was the root), splitting ancestors while one does not fit.
    fn link_upwards(
        &mut self,
        mut path: Vec<Step>,
        mut page: u64,
        mut sep: Vec<u8>,
        mut right_page: u64,
        lsn: u64,
    ) -> Result<()> {
        loop {
            let Some(Step {
                page: parent,
                child: ci,
                ..
            }) = path.pop()
            else {
                let root = self.alloc();
                let mut entries = Entries::new();
                entries.insert(0, &sep, &[&right_page.to_le_bytes()]);
                self.pager.put_new(
                    root,
                    Node::Branch {
                        first: page,
                        entries,
                    },
                    lsn,
                );
                self.meta.root = root;
                return Ok(());
            };
            let (appended, fits) = self.pager.modify(parent, lsn, |n| {
                let Node::Branch { entries, .. } = n else {
                    return (false, true);
                };
                entries.insert(ci, &sep, &[&right_page.to_le_bytes()]);
                let appended = ci + 1 == entries.len();
                (appended, n.fits())
            })?;
            if fits {
                return Ok(());
            }
            page = parent;
            let edge = appended && path.iter().all(|step| step.last);
            right_page = self.alloc();
            let right;
            (sep, right) = self.pager.modify(page, lsn, |n| split(n, edge))?;
            self.pager.put_new(right_page, right, lsn);
        }
    }

    /// Removes `key`; returns whether it was there.
    pub fn delete(&mut self, key: &[u8], lsn: u64) -> Result<bool> {
        if self.buffer.remove(key).is_some() {
            self.version += 1;
            self.account_buffer();
            return Ok(true);
        }
        let (path, leaf, _) = self.path_to_leaf(key)?;
        self.delete_at(path, leaf, key, lsn)
    }

    /// [`Tree::delete`] where `found` (from [`Tree::find`] for the same
    /// key) says the leaf is; descends again if the tree changed since.
    pub fn delete_found(&mut self, found: Found, key: &[u8], lsn: u64) -> Result<bool> {
        if found.version != self.version {
            return self.delete(key, lsn);
        }
        match found.place {
            Place::Leaf { path, leaf, .. } => self.delete_at(path, leaf, key, lsn),
            Place::Buffered => self.delete(key, lsn),
            Place::Absent => Ok(false),
        }
    }

    fn delete_at(&mut self, mut path: Vec<Step>, leaf: u64, key: &[u8], lsn: u64) -> Result<bool> {
        self.version += 1;
        let leaf = self.relocate(&path, leaf, lsn)?;
        let removed = self.pager.modify(leaf, lsn, |n| {
            let Node::Leaf(entries) = n else {
                return None;
            };
            let i = entries.search(key).ok()?;
            let chain = match Cell::from_payload(entries.payload(i)) {
                Cell::Overflow { first, .. } => Some(first),
                Cell::Inline(_) => None,
            };
            entries.remove(i);
            Some(chain)
        })?;
        let Some(chain) = removed else {
            return Ok(false);
        };
        if let Some(first) = chain {
            self.free_chain(first)?;
        }
        // Unlink pages that became empty.
        let mut page = leaf;
        loop {
            let empty = match &*self.pager.get(page)? {
                Node::Leaf(entries) => entries.is_empty(),
                Node::Branch { first, .. } => *first == 0,
                _ => false,
            };
            if !empty {
                break;
            }
            match path.pop() {
                Some(Step {
                    page: parent,
                    child: ci,
                    ..
                }) => {
                    self.free_page(page);
                    self.pager.modify(parent, lsn, |n| {
                        if let Node::Branch { first, entries } = n {
                            // Child `ci` goes with key `ci - 1`; child 0
                            // gives way to child 1 and key 0 goes.
                            if entries.is_empty() {
                                *first = 0;
                            } else if ci == 0 {
                                *first = Node::child(*first, entries, 1);
                                entries.remove(0);
                            } else {
                                entries.remove(ci - 1);
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
        // The leaf, if still linked, or the branch that lost a child to
        // the unlinking: perhaps nearly empty.
        self.merge_underfull(&path, page, lsn)?;
        // A root branch with one child gives way to that child.
        loop {
            let root = self.meta.root;
            let child = match &*self.pager.get(root)? {
                Node::Branch { first, entries } if entries.is_empty() && *first != 0 => *first,
                _ => break,
            };
            self.free_page(root);
            self.meta.root = child;
        }
        Ok(true)
    }

    /// After a delete left `page` (the child the last step of `path`
    /// took: a leaf, or a branch that lost a cell to a merge below) under
    /// [`MERGE_BELOW`] bytes of cells: if a sibling under the same parent
    /// and it hold at most [`MERGE_UP_TO`] together, the right one's cells
    /// move to the left one (for branches, behind the parent's separator
    /// pointing at the right one's first child), and the right one leaves
    /// the tree. The parent lost a cell: it may merge in turn, up to the
    /// root's children (a root left with one child gives way to it, see
    /// `delete_at`).
    fn merge_underfull(&mut self, path: &[Step], page: u64, lsn: u64) -> Result<()> {
        let Some((parent, above)) = path.split_last() else {
            return Ok(()); // the root
        };
        let small = match &*self.pager.get(page)? {
            Node::Leaf(e) | Node::Branch { entries: e, .. } => e.bytes().len() < MERGE_BELOW,
            _ => false,
        };
        if !small {
            return Ok(());
        }
        // The left and right pages, and the parent's cell that leads to
        // the right one (separator and child).
        let (left, right, cell, sep) = match &*self.pager.get(parent.page)? {
            Node::Branch { entries, .. } if entries.is_empty() => return Ok(()),
            Node::Branch { first, entries } => {
                let cell = parent.child.saturating_sub(1);
                let (left, right) = if parent.child > 0 {
                    (Node::child(*first, entries, cell), page)
                } else {
                    (page, Node::child(*first, entries, 1))
                };
                (left, right, cell, entries.key(cell).to_vec())
            }
            _ => return Err(corrupt(parent.page, "expected a branch page")),
        };
        let moved = self.pager.get(right)?;
        let fits = match (&*self.pager.get(left)?, &*moved) {
            (Node::Leaf(l), Node::Leaf(r)) => l.bytes().len() + r.bytes().len() <= MERGE_UP_TO,
            (Node::Branch { entries: l, .. }, Node::Branch { first, entries: r }) => {
                let joint = Entries::cell_len_of(&sep, &[&first.to_le_bytes()]);
                8 + l.bytes().len() + joint + r.bytes().len() <= MERGE_UP_TO
            }
            _ => return Err(corrupt(parent.page, "siblings of different kinds")),
        };
        if !fits {
            return Ok(());
        }
        self.pager.modify(left, lsn, |n| match (n, &*moved) {
            (Node::Leaf(l), Node::Leaf(r)) => l.append(r),
            (Node::Branch { entries: l, .. }, Node::Branch { first, entries: r }) => {
                l.insert(l.len(), &sep, &[&first.to_le_bytes()]);
                l.append(r);
            }
            _ => unreachable!("both kinds checked above"),
        })?;
        self.pager.modify(parent.page, lsn, |n| {
            if let Node::Branch { entries, .. } = n {
                entries.remove(cell);
            }
        })?;
        self.free_page(right);
        self.merge_underfull(above, parent.page, lsn)
    }

    /// Hands the dirty pages and the current meta (stamped with the given
    /// recovery bounds) to the write daemon, with the page count of the
    /// previous flush's meta: pages from there on are *fresh*, in no tree
    /// on disk, so a torn write of one cannot damage what a crash leaves.
    ///
    /// `redo_from` is lowered to the oldest buffered key's journal
    /// position: buffered keys are in no page.
    pub fn take_flush(&mut self, redo_from: u64, undo_from: u64) -> Flush {
        // Once per cycle; merges leave the bound low but never wrong.
        self.buffer.recount_oldest();
        let durable_to = redo_from;
        let redo_from = self.buffer.oldest().map_or(redo_from, |o| o.min(redo_from));
        self.meta.redo_from = redo_from;
        self.meta.undo_from = undo_from;
        let direct = self.free.snapshot(
            &self.pager,
            &mut self.meta.page_count,
            &mut self.meta.free_head,
            durable_to,
        );
        let fresh_from = std::mem::replace(&mut self.flushed_pages, self.meta.page_count);
        Flush {
            pages: self.pager.take_dirty(),
            meta: self.meta.clone(),
            fresh_from,
            direct,
            durable_to,
        }
    }

    /// Verifies the whole structure; see [`TreeCheck`].
    pub fn check(&self) -> Result<TreeCheck> {
        check::check(self)
    }

    /// Branch pages from the root to the leaf where `key` belongs, then the
    /// leaf page and its node.
    fn path_to_leaf(&self, key: &[u8]) -> Result<LeafPath> {
        Ok(self
            .descend(key, false)?
            .expect("descends whatever is resident"))
    }

    /// [`Tree::descend`] that first tries the route of the last one (see
    /// [`Route`]) and leaves its own route for the next.
    fn descend_routed(&mut self, key: &[u8], resident_only: bool) -> Result<Option<LeafPath>> {
        if self.route.covers(self.shape, key) {
            let leaf = self.route.leaf;
            let node = self.pager.view().get_arc(leaf).cloned();
            if let Some(node) = node.filter(|n| matches!(**n, Node::Leaf(_))) {
                return Ok(Some((self.route.path.clone(), leaf, node)));
            }
        }
        let mut route = std::mem::take(&mut self.route);
        let found = self.descend_recording(key, resident_only, Some(&mut route));
        self.route = route;
        found
    }

    /// [`Tree::path_to_leaf`]; with `resident_only`, `None` at the first
    /// page on the way that is not in the pool.
    fn descend(&self, key: &[u8], resident_only: bool) -> Result<Option<LeafPath>> {
        self.descend_recording(key, resident_only, None)
    }

    /// [`Tree::descend`], recording in `route` the way to the leaf and its
    /// bounds when every page on the way is resident (else no route).
    fn descend_recording(
        &self,
        key: &[u8],
        resident_only: bool,
        mut route: Option<&mut Route>,
    ) -> Result<Option<LeafPath>> {
        if let Some(r) = route.as_deref_mut() {
            r.restart();
        }
        let mut path = Vec::with_capacity(4);
        let mut page = self.meta.root;
        {
            // Fast path while the pages on the way are resident: one shared
            // lock of the pool for the whole descent (as `get_with`).
            let view = self.pager.view();
            while path.len() <= MAX_DEPTH {
                match view.get_arc(page) {
                    Some(node) => match &**node {
                        Node::Branch { first, entries } => {
                            page = Self::step(&mut path, page, *first, entries, key);
                            if let Some(r) = route.as_deref_mut() {
                                r.step(entries, path.last().expect("just pushed").child);
                            }
                        }
                        Node::Leaf(_) => {
                            if let Some(r) = route {
                                r.path.clone_from(&path);
                                r.leaf = page;
                                r.shape = self.shape;
                            }
                            return Ok(Some((path, page, node.clone())));
                        }
                        _ => break,
                    },
                    None if resident_only => return Ok(None),
                    None => break,
                }
            }
        }
        loop {
            if path.len() > MAX_DEPTH {
                return Err(corrupt(
                    page,
                    "the tree is deeper than any real tree (a cycle)",
                ));
            }
            let node = self.pager.get(page)?;
            match &*node {
                Node::Branch { first, entries } => {
                    page = Self::step(&mut path, page, *first, entries, key);
                }
                Node::Leaf(_) => return Ok(Some((path, page, node))),
                _ => return Err(corrupt(page, "expected a leaf or branch page")),
            }
        }
    }

    /// Records the step down from branch `page` towards `key`; returns the
    /// child to visit.
    fn step(path: &mut Vec<Step>, page: u64, first: u64, entries: &Entries, key: &[u8]) -> u64 {
        let ci = entries.count_le(key);
        path.push(Step {
            page,
            child: ci,
            last: ci == entries.len(),
        });
        Node::child(first, entries, ci)
    }

    /// A page for a new node, which the caller puts there.
    fn alloc(&mut self) -> u64 {
        // A page joins the tree: its shape changes (see `Route`).
        self.shape += 1;
        self.free.alloc(&mut self.meta.page_count)
    }

    fn free_page(&mut self, page: u64) {
        // A page leaves the tree: its shape changes (see `Route`).
        self.shape += 1;
        self.pager.discard(page);
        self.free.release(page, self.flushed_pages);
    }

    /// Before leaf `leaf` (below the branches of `path`) changes: if the
    /// tree on disk uses its page, moves it to one the next flush writes
    /// directly (see `free.rs`), and points its parent there. Returns the
    /// leaf's page. The root stays where the meta page says it is.
    fn relocate(&mut self, path: &[Step], leaf: u64, lsn: u64) -> Result<u64> {
        let Some(parent) = path.last() else {
            return Ok(leaf);
        };
        if self.free.is_direct(leaf, self.flushed_pages) {
            return Ok(leaf);
        }
        // Both pages are read before anything changes: a failed read
        // leaves the tree as it was.
        let node = self.pager.get(leaf)?;
        let to = self.alloc();
        let child = parent.child;
        let pointed = self.pager.modify(parent.page, lsn, |n| match n {
            Node::Branch { first, entries } if Node::child(*first, entries, child) == leaf => {
                Node::set_child(first, entries, child, to);
                true
            }
            _ => false,
        });
        if !matches!(pointed, Ok(true)) {
            self.free.release(to, self.flushed_pages);
            return Err(match pointed {
                Err(e) => e.into(),
                Ok(_) => corrupt(parent.page, "parent does not point at its child"),
            });
        }
        self.pager.rename(leaf, to, node, lsn);
        // Not `free_page`: the pool's slot moved to `to`.
        self.shape += 1;
        self.free.release(leaf, self.flushed_pages);
        Ok(to)
    }

    fn write_overflow(&mut self, value: &[u8], lsn: u64) -> Result<Cell<'static>> {
        let mut next = 0;
        for chunk in value.chunks(OVERFLOW_CAPACITY).rev() {
            let page = self.alloc();
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

    fn free_chain(&mut self, first: u64) -> Result<()> {
        let mut page = first;
        while page != 0 {
            let next = match &*self.pager.get(page)? {
                Node::Overflow { next, .. } => *next,
                _ => return Err(corrupt(page, "expected an overflow page")),
            };
            self.free_page(page);
            page = next;
        }
        Ok(())
    }
}

/// A leaf or branch with fewer bytes of cells than this after a delete is
/// merged with a sibling (see [`Tree::merge_underfull`]).
const MERGE_BELOW: usize = BODY_SIZE / 4;
/// ... if the two hold at most this many together: the merged leaf keeps
/// room for a few inserts before it splits again (into halves, each far
/// above `MERGE_BELOW`).
const MERGE_UP_TO: usize = BODY_SIZE * 7 / 8;

/// Splits an overfull leaf or branch; returns the separator and the right
/// half.
///
/// Normally where the larger half is smallest. With `edge` (the entry that
/// overfilled the node was added at its right end, and the node is the
/// rightmost of its level: an ascending load), the left half keeps all it
/// held before, so appends leave full pages behind instead of half-full
/// ones. The left half then is the node as it was before the insert, which
/// fit; the right one holds one entry (two keys of a branch), which fits.
fn split(node: &mut Node, edge: bool) -> (Vec<u8>, Node) {
    match node {
        Node::Leaf(entries) => {
            let at = if edge && entries.len() >= 2 {
                entries.len() - 1
            } else {
                balanced_split(entries)
            };
            let right = entries.split_off(at);
            (right.key(0).to_vec(), Node::Leaf(right))
        }
        Node::Branch { entries, .. } => {
            // The right half needs at least one key: at <= len - 2.
            let at = if edge && entries.len() >= 3 {
                entries.len() - 2
            } else {
                balanced_split(entries).min(entries.len() - 1)
            };
            // Cell `at` holds the separator and the right half's child 0.
            let mut right = entries.split_off(at);
            let sep = right.key(0).to_vec();
            let first = Node::child(0, &right, 1);
            right.remove(0);
            (
                sep,
                Node::Branch {
                    first,
                    entries: right,
                },
            )
        }
        _ => unreachable!("only leaves and branches overflow"),
    }
}

/// The index in `1..len` that minimises the larger of the two halves
/// (in bytes of cells).
fn balanced_split(entries: &Entries) -> usize {
    let total = entries.bytes().len();
    let mut left = 0;
    let mut best = (usize::MAX, 1);
    for i in 0..entries.len() - 1 {
        left += entries.cell_len(i);
        let worst = left.max(total - left);
        if worst < best.0 {
            best = (worst, i + 1);
        }
    }
    best.1
}

#[cfg(test)]
mod tests;
