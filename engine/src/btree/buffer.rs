//! The insert buffer: new keys whose leaf is not in the pool (or is, but
//! clean: see `Tree::find`) wait here, sorted, and reach their leaves
//! later in key order, many per leaf read and per page written (as
//! InnoDB's change buffer, but for unique keys).
//!
//! Why it is sound to skip the leaf:
//! - a SET journals the key's before-image, so the engine must know
//!   whether the key exists. A key the tree's [`KeyFilter`] has never seen
//!   does not, in the tree or here: its before-image is "none" without a
//!   leaf read;
//! - a key is in the buffer or in the tree, never both. A buffered key's
//!   later changes (SET, ZKILL, rollback) change or remove its entry here;
//! - reads of one key look here first; reads of ranges (`$ORDER`,
//!   `$QUERY`, `$DATA`, scans) walk the tree and this buffer side by side
//!   (`btree/read_cursor.rs`); a KILL merges the buffer into the tree
//!   first (`db/merge.rs`);
//! - buffered entries are in no page: a flush cycle stamps the meta page
//!   with a `redo_from` no later than the oldest buffered entry's journal
//!   position, so recovery replays them from the journal.
//!
//! The entries' memory and the filter's count against the buffer pool
//! (the pool makes room for them as for its own pages).

use std::borrow::Borrow;
use std::cmp::Ordering;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::hash::BuildHasherDefault;

use super::filter::KeyFilter;
use super::pager::PageHasher;

/// A buffered entry: its key and value in one allocation,
///
/// ```text
/// bytes: klen u16 LE | key (klen bytes) | value (the rest)
/// ```
///
/// and the key's first 16 bytes inline (big-endian, zero padded): most
/// comparisons in the map end there, without following the pointer to the
/// key's bytes (a cache miss per comparison otherwise). One allocation
/// instead of two (key, value) takes about 16% less memory per entry
/// (measured with mimalloc: about 200 against 238 bytes for a 20-byte key
/// and a 101-byte value), so as many more keys wait for their leaves in the same
/// share of the pool, and a SET allocates once.
struct BufKey {
    head: u128,
    bytes: Box<[u8]>,
}

impl BufKey {
    fn new(key: &[u8], value: &[u8]) -> BufKey {
        let klen = u16::try_from(key.len()).expect("keys are shorter than 64 KiB");
        let mut bytes = Vec::with_capacity(2 + key.len() + value.len());
        bytes.extend_from_slice(&klen.to_le_bytes());
        bytes.extend_from_slice(key);
        bytes.extend_from_slice(value);
        BufKey {
            head: head(key),
            bytes: bytes.into_boxed_slice(),
        }
    }

    fn key_end(&self) -> usize {
        2 + usize::from(u16::from_le_bytes([self.bytes[0], self.bytes[1]]))
    }

    fn key(&self) -> &[u8] {
        &self.bytes[2..self.key_end()]
    }

    fn value(&self) -> &[u8] {
        &self.bytes[self.key_end()..]
    }

    /// What the entry costs in memory, as counted against the pool.
    fn cost(&self) -> usize {
        self.bytes.len() + ENTRY_OVERHEAD
    }
}

fn head(key: &[u8]) -> u128 {
    let mut b = [0u8; 16];
    let n = key.len().min(16);
    b[..n].copy_from_slice(&key[..n]);
    u128::from_be_bytes(b)
}

/// A key to compare with: a stored [`BufKey`] or a borrowed probe. Heads
/// order as the bytes do: where two zero-padded heads first differ, either
/// both keys have a byte there, or the one with the padding is the shorter
/// and a prefix of the other. The whole key is asked for only when the
/// heads tie: a stored key's bytes (and its length before them) are
/// behind a pointer, a cache miss away.
trait AsKey {
    fn head(&self) -> u128;
    fn whole(&self) -> &[u8];
}

impl AsKey for BufKey {
    fn head(&self) -> u128 {
        self.head
    }

    fn whole(&self) -> &[u8] {
        self.key()
    }
}

impl AsKey for (u128, &[u8]) {
    fn head(&self) -> u128 {
        self.0
    }

    fn whole(&self) -> &[u8] {
        self.1
    }
}

impl<'a> Borrow<dyn AsKey + 'a> for BufKey {
    fn borrow(&self) -> &(dyn AsKey + 'a) {
        self
    }
}

impl Ord for dyn AsKey + '_ {
    fn cmp(&self, other: &Self) -> Ordering {
        self.head()
            .cmp(&other.head())
            .then_with(|| self.whole().cmp(other.whole()))
    }
}

impl PartialOrd for dyn AsKey + '_ {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for dyn AsKey + '_ {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for dyn AsKey + '_ {}

impl Ord for BufKey {
    fn cmp(&self, other: &Self) -> Ordering {
        (self as &dyn AsKey).cmp(other as &dyn AsKey)
    }
}

impl PartialOrd for BufKey {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for BufKey {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for BufKey {}

fn probe(key: &[u8]) -> (u128, &[u8]) {
    (head(key), key)
}

/// Bytes an entry costs besides its `bytes`: its share of the map's nodes
/// (a head, a box, a journal position: 65 bytes measured after random
/// inserts) and the allocator's rounding of nodes and entries to its size
/// classes (nodes by about a tenth, a 123-byte entry to 128): about 76
/// bytes. The queue of journal positions and the positions that
/// left out of order are counted as allocated
/// ([`InsertBuffer::positions_memory`]).
const ENTRY_OVERHEAD: usize = 76;

/// A writer that fills the buffer merges until it is this fraction
/// (1/64) of its share below the share, from where the last merge stopped:
/// a short stall, and each region of keys still waits a whole turn, as
/// long as a merge of everything would have let it (keys per leaf written
/// stay the same). A sixteenth until session 16; a sixty-fourth made
/// the random load's slowest 1,000-SET transactions (p99) 13–14 ms
/// instead of 32–33 ms at the same rate (throwaway driver, three pairs:
/// 241k/231k/243k SETs/s against 218k/231k/225k), the median one 2.9–3.1
/// instead of 2.5 ms (more of them include a merge). A 256th: p99 12–13
/// ms, median 3.6–3.7 ms.
const LOW_WATER: usize = 64;

/// An entry taken out of the buffer by a merge ([`InsertBuffer::take_next`]).
pub struct Taken {
    entry: BufKey,
    /// The journal position of the change that first buffered the key.
    pub lsn: u64,
}

impl Taken {
    pub fn key(&self) -> &[u8] {
        self.entry.key()
    }

    /// The value: a leaf's inline cell.
    pub fn value(&self) -> &[u8] {
        self.entry.value()
    }
}

#[derive(Default)]
pub struct InsertBuffer {
    /// Each entry with the journal position of the change that first
    /// buffered its key.
    entries: BTreeMap<BufKey, u64>,
    /// Estimated memory of `entries`.
    bytes: usize,
    /// The journal positions of the entries in the order they came, with
    /// those of entries that left still queued behind the front: the
    /// front is the oldest (unless `out_of_order`).
    order: VecDeque<u64>,
    /// Positions queued in `order` (not at its front) whose entries left.
    gone: HashMap<u64, u32, BuildHasherDefault<PageHasher>>,
    /// An entry came with an earlier journal position than the one
    /// before it (entries come in journal order as writes do): `oldest` is
    /// the bound until [`InsertBuffer::recount_oldest`] sorts `order`.
    out_of_order: bool,
    /// No later than the journal position of any entry, while
    /// `out_of_order`.
    oldest: Option<u64>,
    /// `None`: the buffer is off (the tree was opened from a file, whose
    /// keys no filter has seen).
    filter: Option<KeyFilter>,
    /// Entries' memory past which the buffer is [`InsertBuffer::full`].
    max_bytes: usize,
    /// Keys ever buffered (for telling an idle buffer).
    additions: u64,
    /// The filter is being built from the tree's keys (`db/filter_build.rs`):
    /// it learns new keys but answers nothing yet.
    building: bool,
    /// The last key a merge placed: the next merge goes on after it (and
    /// wraps around), so partial merges visit the whole key range in turn.
    cursor: Option<BufKey>,
    /// Entries taken out by a merge and not yet placed or put back: their
    /// journal positions are still tracked in `order`.
    taken: usize,
}

impl InsertBuffer {
    /// A buffer for a tree that holds no key yet, which may use
    /// `max_bytes` for entries and `filter_budget` for its filter.
    pub fn new(max_bytes: usize, filter_budget: usize) -> InsertBuffer {
        InsertBuffer {
            filter: Some(KeyFilter::new(filter_budget)),
            max_bytes,
            ..InsertBuffer::default()
        }
    }

    /// A buffer for a tree that holds keys already: its filter learns
    /// every key added from now on, and answers once the caller has
    /// added the tree's existing keys and called
    /// [`InsertBuffer::filter_built`].
    pub fn building(max_bytes: usize, filter_budget: usize) -> InsertBuffer {
        InsertBuffer {
            building: true,
            ..InsertBuffer::new(max_bytes, filter_budget)
        }
    }

    pub fn filter_built(&mut self) {
        self.building = false;
    }

    /// A buffer for a tree that holds keys already, with a filter that has
    /// seen all of them (kept from the last clean shutdown).
    pub fn with_filter(max_bytes: usize, filter: KeyFilter) -> InsertBuffer {
        InsertBuffer {
            filter: Some(filter),
            max_bytes,
            ..InsertBuffer::default()
        }
    }

    /// The filter, if it answers (built, not saturated): worth keeping.
    pub fn answering_filter(&self) -> Option<&KeyFilter> {
        self.filter
            .as_ref()
            .filter(|f| !self.building && !f.saturated())
    }

    /// Whether the buffer has a filter (built or being built).
    pub fn has_filter(&self) -> bool {
        self.filter.is_some()
    }

    /// Whether the filter still tells absent keys (it has not saturated).
    pub fn has_answers(&self) -> bool {
        self.filter.as_ref().is_some_and(|f| !f.saturated())
    }

    /// Whether a new key may be buffered at all (see [`InsertBuffer::absent`]).
    pub fn enabled(&self) -> bool {
        !self.building && self.filter.as_ref().is_some_and(|f| !f.saturated())
    }

    /// Whether `key` is certainly neither in the tree nor here.
    pub fn absent(&self, key: &[u8]) -> bool {
        !self.building && self.filter.as_ref().is_some_and(|f| f.absent(key))
    }

    /// Prepares [`InsertBuffer::note`] of `key` (see
    /// [`KeyFilter::prefetch_add`]).
    pub fn prefetch_note(&self, key: &[u8]) {
        if let Some(f) = &self.filter {
            f.prefetch_add(key);
        }
    }

    /// Records that the tree now holds `key`; true if the filter's memory
    /// changed (it grew a layer, or saturated and let its layers go).
    pub fn note(&mut self, key: &[u8]) -> bool {
        self.filter.as_mut().is_some_and(|f| f.add(key))
    }

    /// Keys ever buffered.
    pub fn additions(&self) -> u64 {
        self.additions
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn get(&self, key: &[u8]) -> Option<&[u8]> {
        if self.entries.is_empty() {
            return None;
        }
        self.entries
            .get_key_value(&probe(key) as &dyn AsKey)
            .map(|(e, _)| e.value())
    }

    /// Buffers `key`, which must be [`InsertBuffer::absent`].
    pub fn insert(&mut self, key: &[u8], value: &[u8], lsn: u64) {
        self.note(key);
        self.additions += 1;

        self.oldest = Some(self.oldest.map_or(lsn, |o| o.min(lsn)));
        if self.order.back().is_some_and(|&b| lsn < b) {
            self.out_of_order = true;
        }
        self.order.push_back(lsn);
        let entry = BufKey::new(key, value);
        self.bytes += entry.cost();
        let old = self.entries.insert(entry, lsn);
        debug_assert!(old.is_none(), "a buffered key was buffered again");
    }

    /// Gives the buffered `key` a new value; false if it is not buffered.
    /// The entry keeps its journal position: replay from there sets the
    /// key again, and then to this value.
    pub fn replace(&mut self, key: &[u8], value: &[u8]) -> bool {
        // The value shares the key's allocation, which the map does not
        // let change in place: the entry goes out and comes back.
        let Some((old, lsn)) = self.entries.remove_entry(&probe(key) as &dyn AsKey) else {
            return false;
        };
        let entry = BufKey::new(key, value);
        self.bytes = self.bytes + entry.cost() - old.cost();
        self.entries.insert(entry, lsn);
        true
    }

    /// Takes `key` out; its journal position if it was buffered.
    pub fn remove(&mut self, key: &[u8]) -> Option<u64> {
        if self.entries.is_empty() {
            return None;
        }
        let (entry, lsn) = self.entries.remove_entry(&probe(key) as &dyn AsKey)?;
        self.bytes -= entry.cost();
        self.after_removal(lsn);
        Some(lsn)
    }

    /// Takes out the entry a merge places next: the first after the
    /// cursor, or the smallest once none is left after it (the merge goes
    /// around). Hand it back with [`InsertBuffer::placed`] or
    /// [`InsertBuffer::put_back`].
    pub fn take_next(&mut self) -> Option<Taken> {
        use std::ops::Bound;
        let after = match &self.cursor {
            Some(c) => self
                .entries
                .extract_if((Bound::Excluded(c), Bound::Unbounded), |_, _| true)
                .next(),
            None => None,
        };
        let (entry, lsn) = match after {
            Some(e) => e,
            None => self.entries.pop_first()?,
        };
        self.bytes -= entry.cost();
        self.taken += 1;
        Some(Taken { entry, lsn })
    }

    /// Takes out, after [`InsertBuffer::take_next`] took `first`, up to
    /// `max` entries that follow it and are below `below` (`None`: no
    /// bound): the rest of what goes to `first`'s leaf. Hand each back as
    /// `take_next`'s.
    pub fn take_run(&mut self, first: &Taken, below: Option<&[u8]>, max: usize) -> Vec<Taken> {
        use std::ops::Bound;
        if below.is_some_and(|b| b <= first.key()) {
            return Vec::new();
        }
        let bound = below.map(|b| BufKey::new(b, &[]));
        let end = match &bound {
            Some(b) => Bound::Excluded(b),
            None => Bound::Unbounded,
        };
        let run: Vec<Taken> = self
            .entries
            .extract_if((Bound::Excluded(&first.entry), end), |_, _| true)
            .take(max)
            .map(|(entry, lsn)| Taken { entry, lsn })
            .collect();
        for t in &run {
            self.bytes -= t.entry.cost();
        }
        self.taken += run.len();
        run
    }

    /// The entry taken out is in its leaf: the next merge goes on after it.
    pub fn placed(&mut self, taken: Taken) {
        self.taken -= 1;
        self.after_removal(taken.lsn);
        self.cursor = Some(taken.entry);
    }

    /// The entry taken out could not be placed (its leaf could not be
    /// read): it waits here again, as before.
    pub fn put_back(&mut self, taken: Taken) {
        self.taken -= 1;
        self.bytes += taken.entry.cost();
        self.entries.insert(taken.entry, taken.lsn);
    }

    /// The entry of journal position `lsn` left.
    fn after_removal(&mut self, lsn: u64) {
        // Empty, with none taken out either: nothing is left to track.
        if self.entries.is_empty() && self.taken == 0 {
            self.oldest = None;
            // Given back, not only cleared: a merge of a large buffer
            // leaves both at the size of the whole buffer.
            self.order = VecDeque::new();
            self.gone = HashMap::default();
            self.out_of_order = false;
            return;
        }
        if self.order.front() != Some(&lsn) {
            *self.gone.entry(lsn).or_default() += 1;
            return;
        }
        self.order.pop_front();
        while let Some(&front) = self.order.front() {
            let Some(n) = self.gone.get_mut(&front) else {
                break;
            };
            *n -= 1;
            if *n == 0 {
                self.gone.remove(&front);
            }
            self.order.pop_front();
        }
    }

    /// Makes [`InsertBuffer::oldest`] exact again after entries came out
    /// of journal order (one pass over the entries); otherwise it is.
    pub fn recount_oldest(&mut self) {
        if !self.out_of_order {
            return;
        }
        let mut lsns: Vec<u64> = self.entries.values().copied().collect();
        lsns.sort_unstable();
        self.oldest = lsns.first().copied();
        self.order = lsns.into();
        self.gone.clear();
        self.out_of_order = false;
    }

    /// No later than the journal position of every entry (exact unless
    /// entries came out of journal order since the last
    /// [`InsertBuffer::recount_oldest`]); `None` if empty.
    pub fn oldest(&self) -> Option<u64> {
        if self.out_of_order {
            self.oldest
        } else {
            self.order.front().copied()
        }
    }

    /// The entries have reached their share of the pool: time to merge.
    pub fn full(&self) -> bool {
        self.bytes > self.max_bytes
    }

    /// The entries hold more than a writer's merge leaves behind
    /// ([`LOW_WATER`] below the share).
    pub fn above_low_water(&self) -> bool {
        self.bytes > self.max_bytes - self.max_bytes / LOW_WATER
    }

    /// Memory of the entries, their journal positions and the filter, in
    /// bytes.
    pub fn memory(&self) -> usize {
        self.bytes + self.positions_memory() + self.filter.as_ref().map_or(0, KeyFilter::bytes)
    }

    /// Memory of the queue of journal positions and of the positions that
    /// left out of order, as allocated. A merge takes entries in key
    /// order, so most leave out of journal order: during a random load the
    /// second table held about as many positions as the buffer has
    /// entries (13 MiB at its peak, heaptrack, session 13), which the
    /// pool's bound did not see.
    pub fn positions_memory(&self) -> usize {
        // A table slot: the key, the count, a control byte.
        let slot = std::mem::size_of::<(u64, u32)>() + 1;
        self.order.capacity() * std::mem::size_of::<u64>() + self.gone.capacity() * slot
    }

    /// The first buffered entry whose key is at or after `from` (after
    /// it, if `!inclusive`): its key and value.
    pub fn first_from(&self, from: &[u8], inclusive: bool) -> Option<(&[u8], &[u8])> {
        use std::ops::Bound;
        if self.entries.is_empty() {
            return None;
        }
        let p = probe(from);
        let p = &p as &dyn AsKey;
        let start = if inclusive {
            Bound::Included(p)
        } else {
            Bound::Excluded(p)
        };
        let (e, _) = self
            .entries
            .range::<dyn AsKey, _>((start, Bound::Unbounded))
            .next()?;
        Some((e.key(), e.value()))
    }

    /// The last buffered key before `key`.
    pub fn last_before(&self, key: &[u8]) -> Option<&[u8]> {
        use std::ops::Bound;
        if self.entries.is_empty() {
            return None;
        }
        let p = probe(key);
        let p = &p as &dyn AsKey;
        let (e, _) = self
            .entries
            .range::<dyn AsKey, _>((Bound::Unbounded, Bound::Excluded(p)))
            .next_back()?;
        Some(e.key())
    }

    /// The buffered keys in order.
    pub fn keys(&self) -> impl Iterator<Item = &[u8]> {
        self.entries.keys().map(BufKey::key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_come_out_in_key_order_and_account_their_memory() {
        let mut b = InsertBuffer::new(1 << 20, 1 << 20);
        let filter = b.memory();
        assert!(b.enabled() && b.is_empty());
        for (i, k) in [b"m", b"c", b"x", b"a"].iter().enumerate() {
            assert!(b.absent(*k));
            b.insert(*k, b"value", 100 + i as u64);
            assert!(!b.absent(*k));
        }
        let positions = b.positions_memory();
        assert!(positions >= 4 * 8, "{positions}");
        assert_eq!(
            b.memory(),
            filter + 4 * (2 + 1 + 5 + ENTRY_OVERHEAD) + positions
        );
        assert_eq!(b.oldest(), Some(100));
        assert!(b.replace(b"c", b"longer value"));
        assert!(!b.replace(b"q", b"v"));
        assert_eq!(b.get(b"c"), Some(&b"longer value"[..]));
        assert_eq!(b.remove(b"m"), Some(100));
        assert_eq!(b.oldest(), Some(101));
        let mut order = Vec::new();
        while let Some(t) = b.take_next() {
            order.push(t.key().to_vec());
            b.placed(t);
        }
        assert_eq!(order, [b"a", b"c", b"x"]);
        assert_eq!((b.memory(), b.oldest()), (filter, None));
    }

    #[test]
    fn the_oldest_position_follows_every_removal() {
        // Entries come in journal order, except a few (as a replay might);
        // they leave by key (removals, merges). `oldest` is exact in
        // order, a lower bound out of it, exact again once recounted.
        let mut b = InsertBuffer::new(1 << 30, 1 << 20);
        let mut model: BTreeMap<Vec<u8>, u64> = BTreeMap::new();
        let mut x = 0x2545_f491_4f6c_dd1du64;
        let mut lsn = 1000;
        let mut unordered = 0;
        for step in 0..20_000u32 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let key = format!("{:04}", x % 3000).into_bytes();
            match x % 5 {
                0..=2 if !model.contains_key(&key) => {
                    // Positions are unique, as records' are: even in
                    // order, odd out of it.
                    lsn += 2 * (1 + x % 3);
                    let at = if step % 997 == 0 { lsn - 501 } else { lsn };
                    b.insert(&key, b"v", at);
                    model.insert(key, at);
                }
                3 => {
                    let got = b.remove(&key);
                    assert_eq!(got, model.remove(&key));
                }
                _ => {
                    if let Some(t) = b.take_next() {
                        assert_eq!(model.remove(t.key()), Some(t.lsn));
                        b.placed(t);
                    }
                }
            }
            let exact = model.values().min().copied();
            let got = b.oldest();
            assert!(
                got.is_some() == exact.is_some() && got <= exact,
                "step {step}: {got:?}, {exact:?}"
            );
            if !b.out_of_order {
                assert_eq!(got, exact, "step {step}");
            } else {
                unordered += 1;
            }
            if step % 100 == 0 {
                b.recount_oldest();
                assert_eq!(b.oldest(), exact, "step {step}");
            }
        }
        assert!(unordered > 0, "entries came out of order at times");
    }

    /// Entries that leave in key order leave out of journal order: the
    /// positions kept for them count in the buffer's memory, and are
    /// given back once the buffer is empty.
    #[test]
    fn positions_that_left_out_of_order_count_in_memory() {
        let mut b = InsertBuffer::new(1 << 30, 1 << 20);
        // Journal order is the reverse of key order.
        for i in 0..1000u32 {
            b.insert(format!("{:04}", 1000 - i).as_bytes(), b"v", u64::from(i));
        }
        let before = b.positions_memory();
        assert!(before >= 1000 * 8, "{before}");
        for _ in 0..500 {
            let t = b.take_next().unwrap();
            b.placed(t);
        }
        let after = b.positions_memory();
        assert!(after >= before + 500 * 12, "{before} then {after}");
        assert!(b.memory() > after, "the buffer's memory counts them");
        while let Some(t) = b.take_next() {
            b.placed(t);
        }
        assert_eq!(b.positions_memory(), 0);
    }

    #[test]
    fn merges_go_on_from_where_the_last_one_stopped_and_wrap_around() {
        let mut b = InsertBuffer::new(1 << 20, 1 << 20);
        for k in [b"a", b"b", b"c", b"d", b"e"] {
            b.insert(k, b"v", 1);
        }
        let take = |b: &mut InsertBuffer| {
            let t = b.take_next().unwrap();
            let got = t.key().to_vec();
            b.placed(t);
            got
        };
        // No cursor yet: from the smallest.
        assert_eq!(take(&mut b), b"a");
        // One that could not be placed goes back, and the cursor stays.
        let t = b.take_next().unwrap();
        assert_eq!(t.key(), b"b");
        b.put_back(t);
        assert_eq!(take(&mut b), b"b");
        // The next after the cursor, then around.
        assert_eq!(take(&mut b), b"c");
        b.insert(b"a", b"v", 2);
        assert_eq!(take(&mut b), b"d");
        assert_eq!(take(&mut b), b"e");
        assert_eq!(take(&mut b), b"a", "around to the smallest");
        assert!(b.take_next().is_none());
        assert_eq!(b.oldest(), None);
        assert_eq!(b.memory(), b.filter.as_ref().map_or(0, KeyFilter::bytes));
    }

    #[test]
    fn a_run_stops_at_its_bound_and_its_count() {
        let mut b = InsertBuffer::new(1 << 20, 1 << 20);
        for k in [b"a", b"b", b"c", b"d", b"e", b"f"] {
            b.insert(k, b"v", 1);
        }
        let bytes = b.memory();
        let keys = |run: &[Taken]| run.iter().map(|t| t.key().to_vec()).collect::<Vec<_>>();
        let first = b.take_next().unwrap();
        assert_eq!(first.key(), b"a");
        // Below "d": b and c, not a again.
        let run = b.take_run(&first, Some(b"d"), 10);
        assert_eq!(keys(&run), [b"b", b"c"]);
        // A bound at or before the first key takes nothing.
        assert!(b.take_run(&first, Some(b"a"), 10).is_empty());
        // No bound: up to the count.
        let more = b.take_run(&first, None, 2);
        assert_eq!(keys(&more), [b"d", b"e"]);
        assert_eq!(b.len(), 1);
        assert_eq!(b.memory(), bytes - 5 * (2 + 1 + 1 + ENTRY_OVERHEAD));
        b.placed(first);
        for t in run {
            b.placed(t);
        }
        for t in more {
            b.put_back(t);
        }
        // The cursor is after c: d comes next.
        assert_eq!(b.take_next().unwrap().key(), b"d");
    }

    /// A merge that takes out every entry, places some and puts the rest
    /// back keeps the oldest journal position of those put back. A buffer
    /// found empty at a placement used to forget every position, theirs
    /// too: the flush cycle's `redo_from` then passed them, and a crash
    /// lost them (found by the model-based test, in CI).
    #[test]
    fn entries_put_back_after_a_run_keep_their_journal_positions() {
        let mut b = InsertBuffer::new(1 << 20, 1 << 20);
        for (i, k) in [b"a", b"b", b"c", b"d"].iter().enumerate() {
            b.insert(*k, b"v", 10 + i as u64);
        }
        let first = b.take_next().unwrap();
        let mut run = vec![first];
        run.extend(b.take_run(&run[0], None, 10));
        assert!(b.is_empty());
        // Placed first, then put back: the order a merge once used.
        let rest = run.split_off(2);
        for t in run {
            b.placed(t);
        }
        for t in rest {
            b.put_back(t);
        }
        assert_eq!(b.oldest(), Some(12), "c is the oldest left");
        b.recount_oldest();
        assert_eq!(b.oldest(), Some(12));
    }

    #[test]
    fn ranges_find_the_neighbours_of_any_key() {
        let mut b = InsertBuffer::new(1 << 20, 1 << 20);
        assert_eq!(b.first_from(b"", true), None);
        assert_eq!(b.last_before(b"z"), None);
        for k in [&b"b"[..], b"d", b"d\0", b"f"] {
            b.insert(k, k, 1);
        }
        let first = |from: &[u8], inclusive| {
            b.first_from(from, inclusive).map(|(k, v)| {
                assert_eq!(k, v);
                k.to_vec()
            })
        };
        assert_eq!(first(b"", true), Some(b"b".to_vec()));
        assert_eq!(first(b"b", true), Some(b"b".to_vec()));
        assert_eq!(first(b"b", false), Some(b"d".to_vec()));
        assert_eq!(first(b"d", false), Some(b"d\0".to_vec()));
        assert_eq!(first(b"d\0", false), Some(b"f".to_vec()));
        assert_eq!(first(b"f", false), None);
        assert_eq!(first(b"g", true), None);
        assert_eq!(b.last_before(b"b"), None);
        assert_eq!(b.last_before(b"b\0"), Some(&b"b"[..]));
        assert_eq!(b.last_before(b"d\0"), Some(&b"d"[..]));
        assert_eq!(b.last_before(b"zz"), Some(&b"f"[..]));
    }

    #[test]
    fn a_writers_merge_stops_a_low_water_fraction_below_the_share() {
        let mut b = InsertBuffer::new(LOW_WATER * (2 + 4 + 100 + ENTRY_OVERHEAD), 1 << 20);
        let mut i = 0u32;
        while !b.full() {
            b.insert(&i.to_be_bytes(), &[0; 100], 1);
            i += 1;
        }
        assert!(b.above_low_water());
        b.take_next();
        assert!(
            b.above_low_water(),
            "LOW_WATER entries of LOW_WATER + 1 are still above"
        );
        b.take_next();
        assert!(!b.above_low_water());
    }

    #[test]
    fn heads_order_keys_as_their_bytes() {
        let keys: [&[u8]; 9] = [
            b"",
            b"\0",
            b"a",
            b"a\0",
            b"a\0\0",
            b"abcdefghijklmnop",
            b"abcdefghijklmnop\0",
            b"abcdefghijklmnopq",
            b"abcdefghijklmnoq",
        ];
        for a in keys {
            for b in keys {
                let (ka, kb) = (probe(a), probe(b));
                assert_eq!(
                    (&ka as &dyn AsKey).cmp(&kb as &dyn AsKey),
                    a.cmp(b),
                    "{a:?} {b:?}"
                );
            }
        }
    }

    #[test]
    fn a_buffer_without_a_filter_takes_nothing() {
        let b = InsertBuffer::default();
        assert!(!b.enabled());
        assert!(!b.absent(b"k"));
    }

    #[test]
    fn a_filter_being_built_learns_keys_and_answers_nothing() {
        let mut b = InsertBuffer::building(1 << 20, 1 << 20);
        b.note(b"old");
        assert!(!b.enabled() && !b.absent(b"new"));
        b.filter_built();
        assert!(b.enabled() && b.absent(b"new"));
        assert!(!b.absent(b"old"));
    }

    #[test]
    fn full_past_its_share() {
        let mut b = InsertBuffer::new(1000, 1 << 20);
        let mut i = 0u32;
        while !b.full() {
            b.insert(&i.to_be_bytes(), &[0; 100], 1);
            i += 1;
        }
        assert_eq!(i as usize, 1000 / (2 + 4 + 100 + ENTRY_OVERHEAD) + 1);
    }
}
