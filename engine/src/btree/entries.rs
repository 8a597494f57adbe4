//! The entries of a leaf or branch page: cells packed in one buffer, in key
//! order, with an offset index and a search index.
//!
//! `buf` holds the cells exactly as the page body stores them (see
//! `node.rs`), back to back:
//!
//! ```text
//! cell: klen u16 | plen u16 | key (klen bytes) | payload (plen bytes)
//! ```
//!
//! so loading a page copies its cells in one piece and flushing one copies
//! them out again: there is no allocation per key or per value. Next to the
//! cells:
//!
//! - `offs[i]`: where cell `i` starts in `buf`;
//! - `prefix`: a length such that every key starts with the same `prefix`
//!   bytes (often the global name and the first subscripts);
//! - `head`: those prefix bytes, when there are at most [`HEAD_MAX`], so a
//!   search checks the prefix without reading the cells;
//! - `hints[i]`: the 8 bytes of key `i` after that prefix, zero-padded,
//!   read big-endian.
//!
//! Hints order like the keys they come from (a key that ends early pads
//! with zeros, and is then a prefix of the other key, so smaller or equal),
//! so a search compares hints in one contiguous array and reads a key only
//! when two hints are equal. The indexes are not stored on disk: they are
//! rebuilt when a page is loaded.
//!
//! Invariants: keys strictly ascending (checked when a page is loaded, the
//! callers' duty otherwise); `offs.len() == hints.len()` = number of cells;
//! `offs` ascending, `offs[0] == 0`, each cell ends where the next starts
//! and the last one at `buf.len()`; every key is at least `prefix` bytes
//! long and starts with the first key's `prefix` bytes; `prefix == 0` when
//! empty.

use std::cmp::Ordering;

use super::node::cmp_key;

/// Bytes of a cell before its key.
const CELL_HEAD: usize = 4;
/// Longest prefix kept in `head`.
const HEAD_MAX: usize = 24;
/// Capacity `buf` gets when it must grow: about a page body, so a page
/// filling up (or loaded, then changed) does not reallocate again and again.
const BUF_CAPACITY: usize = 8192;
/// Room for more cells that `offs` and `hints` get when they must grow.
const INDEX_SLACK: usize = 16;

#[derive(Clone, Default)]
pub struct Entries {
    buf: Vec<u8>,
    offs: Vec<u32>,
    prefix: usize,
    head: [u8; HEAD_MAX],
    hints: Vec<u64>,
}

impl Entries {
    pub const fn new() -> Entries {
        Entries {
            buf: Vec::new(),
            offs: Vec::new(),
            prefix: 0,
            head: [0; HEAD_MAX],
            hints: Vec::new(),
        }
    }

    /// Rebuilds entries from `n` cells at the start of `body` (a page body
    /// after any fixed fields). `check` vets each payload. Errors say what
    /// is wrong; nothing here panics on bad input.
    pub fn decode(
        body: &[u8],
        n: usize,
        check: impl Fn(&[u8]) -> Result<(), String>,
    ) -> Result<Entries, String> {
        let mut offs = Vec::with_capacity(n + INDEX_SLACK);
        let mut pos = 0usize;
        let mut prev: Option<&[u8]> = None;
        for i in 0..n {
            let head = body.get(pos..pos + CELL_HEAD).ok_or_else(|| {
                format!("cell {i} at body offset {pos} passes the end of the page")
            })?;
            let klen = usize::from(u16::from_le_bytes([head[0], head[1]]));
            let plen = usize::from(u16::from_le_bytes([head[2], head[3]]));
            let end = pos + CELL_HEAD + klen + plen;
            if end > body.len() {
                return Err(format!(
                    "cell {i} at body offset {pos} ({klen} + {plen} bytes) passes the end of the page"
                ));
            }
            let key = &body[pos + CELL_HEAD..pos + CELL_HEAD + klen];
            if prev.is_some_and(|p| cmp_key(p, key) != Ordering::Less) {
                return Err("keys out of order".into());
            }
            check(&body[pos + CELL_HEAD + klen..end]).map_err(|e| format!("cell {i}: {e}"))?;
            prev = Some(key);
            offs.push(pos as u32);
            pos = end;
        }
        let mut buf = Vec::with_capacity(BUF_CAPACITY.max(pos));
        buf.extend_from_slice(&body[..pos]);
        let mut e = Entries {
            buf,
            offs,
            ..Entries::new()
        };
        e.rebuild();
        Ok(e)
    }

    /// The address of the hint a search reads first (the middle one: the
    /// binary search's first probe), 0 if there is none. An address only,
    /// for [`prefetch_addr`]: it goes stale when the index grows, and a
    /// stale one costs a useless prefetch, nothing else.
    pub fn first_probe(&self) -> usize {
        if self.hints.is_empty() {
            return 0;
        }
        self.hints.as_ptr() as usize + self.hints.len() / 2 * std::mem::size_of::<u64>()
    }

    /// Heap bytes these entries hold: the cells' buffer and both indexes,
    /// as allocated (not as filled).
    pub fn heap_bytes(&self) -> usize {
        self.buf.capacity()
            + self.offs.capacity() * std::mem::size_of::<u32>()
            + self.hints.capacity() * std::mem::size_of::<u64>()
    }

    /// Bytes allocated for the cells.
    #[cfg(test)]
    pub fn cells_capacity(&self) -> usize {
        self.buf.capacity()
    }

    /// The cells, as the page body stores them.
    pub fn bytes(&self) -> &[u8] {
        &self.buf
    }

    pub fn len(&self) -> usize {
        self.offs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.offs.is_empty()
    }

    /// Bytes of cell `i`, head included.
    pub fn cell_len(&self, i: usize) -> usize {
        let end = self.offs.get(i + 1).map_or(self.buf.len(), |&o| o as usize);
        end - self.offs[i] as usize
    }

    fn lens(&self, i: usize) -> (usize, usize, usize) {
        let at = self.offs[i] as usize;
        let b = &self.buf[at..at + CELL_HEAD];
        let klen = usize::from(u16::from_le_bytes([b[0], b[1]]));
        let plen = usize::from(u16::from_le_bytes([b[2], b[3]]));
        (at, klen, plen)
    }

    pub fn key(&self, i: usize) -> &[u8] {
        let (at, klen, _) = self.lens(i);
        &self.buf[at + CELL_HEAD..at + CELL_HEAD + klen]
    }

    pub fn payload(&self, i: usize) -> &[u8] {
        let (at, klen, plen) = self.lens(i);
        let start = at + CELL_HEAD + klen;
        &self.buf[start..start + plen]
    }

    pub fn first_key(&self) -> Option<&[u8]> {
        (!self.is_empty()).then(|| self.key(0))
    }

    pub fn last_key(&self) -> Option<&[u8]> {
        self.len().checked_sub(1).map(|i| self.key(i))
    }

    pub fn keys(&self) -> impl Iterator<Item = &[u8]> + '_ {
        (0..self.len()).map(|i| self.key(i))
    }

    /// Inserts a cell for `key` at `i` whose payload is the concatenation
    /// of `payload`; the keys must stay strictly ascending.
    pub fn insert(&mut self, i: usize, key: &[u8], payload: &[&[u8]]) {
        let plen: usize = payload.iter().map(|p| p.len()).sum();
        let at = self.offs.get(i).map_or(self.buf.len(), |&o| o as usize);
        let len = CELL_HEAD + key.len() + plen;
        self.open_gap(at, len);
        let mut w = at;
        for part in [
            &(key.len() as u16).to_le_bytes()[..],
            &(plen as u16).to_le_bytes()[..],
            key,
        ]
        .into_iter()
        .chain(payload.iter().copied())
        {
            self.buf[w..w + part.len()].copy_from_slice(part);
            w += part.len();
        }
        for o in &mut self.offs[i..] {
            *o += len as u32;
        }
        if self.offs.len() == self.offs.capacity() {
            // Doubling: a page filled one key at a time grows its
            // indexes a few times, not once per INDEX_SLACK keys.
            let more = self.offs.len().max(INDEX_SLACK);
            self.offs.reserve(more);
            self.hints.reserve(more + 1);
        }
        self.offs.insert(i, at as u32);
        let n = self.len();
        // A key between two others shares their common prefix. One at
        // either end keeps it if it starts with it (for sorted keys the
        // first and the last cannot share more than before), else
        // shortens it.
        let edge = i == 0 || i + 1 == n;
        let keeps_prefix = n > 1 && {
            let p = self.prefix;
            let other = if i == 0 { n - 1 } else { 0 };
            let common = match self.head.get(..p) {
                Some(h) => h,
                None => &self.key(other)[..p],
            };
            key.get(..p) == Some(common)
        };
        if edge && !keeps_prefix {
            self.rebuild();
        } else {
            self.hints.insert(i, hint(&key[self.prefix..]));
        }
    }

    /// Bytes a cell for `key` with the concatenation of `payload` takes.
    pub fn cell_len_of(key: &[u8], payload: &[&[u8]]) -> usize {
        CELL_HEAD + key.len() + payload.iter().map(|p| p.len()).sum::<usize>()
    }

    /// Replaces the payload of cell `i` (its key stays).
    pub fn set_payload(&mut self, i: usize, payload: &[&[u8]]) {
        let plen: usize = payload.iter().map(|p| p.len()).sum();
        let (at, klen, old) = self.lens(i);
        let start = at + CELL_HEAD + klen;
        if plen > old {
            self.open_gap(start + old, plen - old);
        } else if plen < old {
            self.close_gap(start + plen, old - plen);
        }
        for o in &mut self.offs[i + 1..] {
            *o = (*o as usize + plen - old) as u32;
        }
        self.buf[at + 2..at + 4].copy_from_slice(&(plen as u16).to_le_bytes());
        let mut w = start;
        for part in payload {
            self.buf[w..w + part.len()].copy_from_slice(part);
            w += part.len();
        }
    }

    /// Removes cell `i` (the prefix stays common to the rest).
    pub fn remove(&mut self, i: usize) {
        let (at, len) = (self.offs[i] as usize, self.cell_len(i));
        self.close_gap(at, len);
        self.offs.remove(i);
        for o in &mut self.offs[i..] {
            *o -= len as u32;
        }
        self.hints.remove(i);
        if self.is_empty() {
            self.prefix = 0;
        }
    }

    /// Appends the cells of `other`, whose keys all sort after these.
    pub fn append(&mut self, other: &Entries) {
        let base = self.buf.len();
        let need = base + other.buf.len();
        if self.buf.capacity() < need {
            self.buf.reserve_exact(BUF_CAPACITY.max(need) - base);
        }
        self.buf.extend_from_slice(&other.buf);
        self.offs
            .extend(other.offs.iter().map(|&o| o + base as u32));
        self.rebuild();
    }

    /// Splits off the cells from `at` on.
    pub fn split_off(&mut self, at: usize) -> Entries {
        let base = self.offs.get(at).map_or(self.buf.len(), |&o| o as usize);
        let mut right = Entries {
            buf: self.buf.split_off(base),
            offs: self.offs.split_off(at),
            ..Entries::new()
        };
        for o in &mut right.offs {
            *o -= base as u32;
        }
        right.rebuild();
        self.hints.truncate(at);
        self.rebuild();
        right
    }

    /// `Ok(i)` if key `i` equals `key`, else `Err(i)` where it would go.
    pub fn search(&self, key: &[u8]) -> Result<usize, usize> {
        let (i, found) = self.rank(key);
        if found {
            Ok(i)
        } else {
            Err(i)
        }
    }

    /// [`Entries::search`], answered by `hint` (an earlier search's answer
    /// for `key`) when it still holds, which two key comparisons at most
    /// confirm.
    pub fn search_hinted(
        &self,
        key: &[u8],
        hint: Option<Result<usize, usize>>,
    ) -> Result<usize, usize> {
        let n = self.len();
        let holds = match hint {
            Some(Ok(i)) => i < n && self.key(i) == key,
            Some(Err(i)) => {
                i <= n
                    && (i == 0 || cmp_key(self.key(i - 1), key) == Ordering::Less)
                    && (i == n || cmp_key(key, self.key(i)) == Ordering::Less)
            }
            None => false,
        };
        match hint {
            Some(h) if holds => h,
            _ => self.search(key),
        }
    }

    /// How many keys are `< key`.
    pub fn count_lt(&self, key: &[u8]) -> usize {
        self.rank(key).0
    }

    /// How many keys are `<= key`.
    pub fn count_le(&self, key: &[u8]) -> usize {
        let (i, found) = self.rank(key);
        i + usize::from(found)
    }

    /// (how many keys are `< key`, whether the next one equals it).
    fn rank(&self, key: &[u8]) -> (usize, bool) {
        let n = self.len();
        if n == 0 {
            return (0, false);
        }
        let p = self.prefix;
        let head = &key[..p.min(key.len())];
        let prefix = match self.head.get(..p) {
            Some(h) => h,
            None => &self.key(0)[..p],
        };
        match cmp_key(head, prefix) {
            Ordering::Less => return (0, false),
            Ordering::Greater => return (n, false),
            // A key shorter than the prefix is a prefix of every key.
            Ordering::Equal if key.len() < p => return (0, false),
            Ordering::Equal => {}
        }
        let rest = &key[p..];
        let h = hint(rest);
        // Start loading every line of the search index at once: the
        // binary search below then waits for memory about once instead of
        // once per probe (a page not touched lately is not in cache).
        prefetch(&self.hints);
        prefetch(&self.offs);
        // Hints order like their keys, so the keys below `key` are those
        // with a smaller hint, then those in the run of hints equal to
        // `h` that compare smaller in full. The first search reads only
        // the hint array; cells are read only inside that run.
        let hints = &self.hints[..];
        let lo = hints.partition_point(|&x| x < h);
        if lo == n || hints[lo] != h {
            return (lo, false);
        }
        let hi = lo + hints[lo..].partition_point(|&x| x == h);
        let (mut a, mut b) = (lo, hi);
        while a < b {
            let mid = a + (b - a) / 2;
            if cmp_key(&self.key(mid)[p..], rest) == Ordering::Less {
                a = mid + 1;
            } else {
                b = mid;
            }
        }
        let found = a < hi && self.key(a)[p..] == *rest;
        (a, found)
    }

    /// Makes `len` bytes of room at `at`, moving what follows.
    fn open_gap(&mut self, at: usize, len: usize) {
        let old = self.buf.len();
        if self.buf.capacity() < old + len {
            // Exactly: past a page body the node is about to be split,
            // and a doubled buffer would stay with its left half, twice
            // the memory the pool counts for a page.
            self.buf.reserve_exact(BUF_CAPACITY.max(old + len) - old);
        }
        self.buf.resize(old + len, 0);
        self.buf.copy_within(at..old, at + len);
    }

    /// Removes `len` bytes at `at`, moving what follows.
    fn close_gap(&mut self, at: usize, len: usize) {
        let old = self.buf.len();
        self.buf.copy_within(at + len..old, at);
        self.buf.truncate(old - len);
    }

    fn rebuild(&mut self) {
        self.prefix = match (self.first_key(), self.last_key()) {
            (Some(a), Some(b)) => lcp(a, b),
            _ => 0,
        };
        let p = self.prefix;
        if p <= HEAD_MAX && !self.is_empty() {
            let mut head = [0; HEAD_MAX];
            head[..p].copy_from_slice(&self.key(0)[..p]);
            self.head = head;
        }
        let mut hints = std::mem::take(&mut self.hints);
        hints.clear();
        hints.reserve(self.len() + INDEX_SLACK);
        hints.extend((0..self.len()).map(|i| hint(&self.key(i)[p..])));
        self.hints = hints;
    }
}

impl PartialEq for Entries {
    fn eq(&self, other: &Entries) -> bool {
        self.buf == other.buf
    }
}

impl Eq for Entries {}

impl std::fmt::Debug for Entries {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries((0..self.len()).map(|i| (self.key(i), self.payload(i))))
            .finish()
    }
}

/// Length of the longest common prefix. For sorted keys, that of the first
/// and the last is common to all of them.
fn lcp(a: &[u8], b: &[u8]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

/// Asks the CPU to start loading the cache lines a binary search over
/// `items` reads first, without waiting for them: all of them for a short
/// array; for a long one, the lines at each eighth, which are the first
/// three probes of any search (loading the whole array would cost more
/// than the misses it saves, and push useful lines out of the cache).
#[inline]
/// Starts loading the cache line at `addr` (any address: a prefetch never
/// faults; 0 is skipped).
pub(super) fn prefetch_addr(addr: usize) {
    #[cfg(target_arch = "x86_64")]
    if addr != 0 {
        use core::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        // SAFETY: a prefetch is only a hint to the cache: it never faults
        // and never reads memory into anything Rust can see.
        unsafe { _mm_prefetch::<_MM_HINT_T0>(addr as *const i8) };
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = addr;
}

pub(super) fn prefetch<T>(items: &[T]) {
    #[cfg(target_arch = "x86_64")]
    {
        use core::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        const LINE: usize = 64;
        const MAX_LINES: usize = 8;
        let start = items.as_ptr() as usize;
        let bytes = std::mem::size_of_val(items);
        let (mut at, step) = if bytes <= MAX_LINES * LINE {
            (start & !(LINE - 1), LINE)
        } else {
            (start + bytes / MAX_LINES, bytes / MAX_LINES)
        };
        let end = start + bytes;
        while at < end {
            // SAFETY: a prefetch is only a hint to the cache: it never
            // faults and never reads memory into anything Rust can see, so
            // any address is fine (these lie within `items` anyway).
            unsafe { _mm_prefetch::<_MM_HINT_T0>(at as *const i8) };
            at += step;
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = items;
}

/// The first 8 bytes, zero-padded, big-endian.
fn hint(rest: &[u8]) -> u64 {
    if let Some(b) = rest.first_chunk::<8>() {
        return u64::from_be_bytes(*b);
    }
    let mut b = [0u8; 8];
    let n = rest.len().min(8);
    b[..n].copy_from_slice(&rest[..n]);
    u64::from_be_bytes(b)
}

#[cfg(test)]
mod tests {
    use super::Entries;

    fn keys_of(e: &Entries) -> Vec<Vec<u8>> {
        e.keys().map(<[u8]>::to_vec).collect()
    }

    /// Random sorted key sets with long shared prefixes, short keys, keys
    /// that are prefixes of others and zero bytes; every search agrees with
    /// a plain binary search, and payloads stay with their keys, through
    /// inserts, payload changes, removes and splits; the bytes decode back
    /// to the same entries.
    #[test]
    fn the_first_probe_is_the_middle_hint() {
        let mut e = Entries::new();
        assert_eq!(e.first_probe(), 0);
        for i in 0..41u8 {
            e.insert(usize::from(i), &[b'k', i], &[b"v"]);
            let mid = &e.hints[e.hints.len() / 2];
            assert_eq!(e.first_probe(), mid as *const u64 as usize, "{i}");
        }
    }

    #[test]
    fn searches_agree_with_a_plain_binary_search() {
        let mut x = 0x2545_f491_4f6c_dd1du64;
        let mut rnd = move |m: u64| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x % m
        };
        for round in 0..300 {
            let mut model: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
            let mut keys = Entries::new();
            let base: Vec<u8> = (0..rnd(12)).map(|_| rnd(3) as u8).collect();
            for _ in 0..rnd(120) {
                let mut probe = base.clone();
                probe.truncate(rnd(base.len() as u64 + 1) as usize);
                probe.extend((0..rnd(14)).map(|_| [0u8, 1, 2, 0xff][rnd(4) as usize]));
                let payload: Vec<u8> = (0..rnd(20)).map(|_| rnd(256) as u8).collect();
                let i = model.binary_search_by(|(k, _)| k.cmp(&probe));
                assert_eq!(keys.search(&probe), i, "round {round}");
                // A hint is used only when it holds: right, wrong or none.
                let n = model.len() as u64;
                let wrong = match rnd(2) {
                    0 => Ok(rnd(n + 2) as usize),
                    _ => Err(rnd(n + 2) as usize),
                };
                for hint in [Some(i), Some(wrong), None] {
                    assert_eq!(
                        keys.search_hinted(&probe, hint),
                        i,
                        "round {round}, {hint:?}"
                    );
                }
                match i {
                    Ok(i) if rnd(3) == 0 => {
                        model.remove(i);
                        keys.remove(i);
                    }
                    Ok(i) => {
                        let (a, b) = payload.split_at(payload.len() / 2);
                        keys.set_payload(i, &[a, b]);
                        model[i].1 = payload;
                    }
                    Err(i) => {
                        keys.insert(i, &probe, &[&payload]);
                        model.insert(i, (probe.clone(), payload));
                    }
                }
                if rnd(40) == 0 && model.len() > 1 {
                    let at = 1 + rnd(model.len() as u64 - 1) as usize;
                    let right = keys.split_off(at);
                    let mright = model.split_off(at);
                    assert_eq!(
                        keys_of(&right),
                        mright.iter().map(|m| m.0.clone()).collect::<Vec<_>>()
                    );
                    if rnd(2) == 0 {
                        keys = right;
                        model = mright;
                    }
                }
                let mkeys: Vec<Vec<u8>> = model.iter().map(|m| m.0.clone()).collect();
                assert_eq!(keys_of(&keys), mkeys);
                for (i, (_, p)) in model.iter().enumerate() {
                    assert_eq!(keys.payload(i), &p[..]);
                }
                let again = Entries::decode(keys.bytes(), keys.len(), |_| Ok(())).unwrap();
                assert_eq!(keys_of(&again), mkeys);
                for q in mkeys.iter().chain([&probe, &base, &Vec::new()]) {
                    let lt = mkeys.partition_point(|k| k < q);
                    let le = mkeys.partition_point(|k| k <= q);
                    assert_eq!(keys.count_lt(q), lt);
                    assert_eq!(keys.count_le(q), le);
                    assert_eq!(again.count_le(q), le);
                    let mut longer = q.clone();
                    longer.push(0);
                    assert_eq!(
                        keys.count_lt(&longer),
                        mkeys.partition_point(|k| *k < longer)
                    );
                }
            }
        }
    }
}
