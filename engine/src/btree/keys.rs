//! The sorted keys of a leaf or branch, with a search index.
//!
//! A point read compares the key it looks for with about log2(n) keys of
//! every page on its way down; each of them is a separate allocation, so
//! each comparison was a cache miss. [`Keys`] keeps, next to the keys:
//!
//! - `prefix`: a length such that every key starts with the same `prefix`
//!   bytes (often the global name and the first subscripts);
//! - `hints[i]`: the 8 bytes of key `i` after that prefix, zero-padded,
//!   read big-endian.
//!
//! Hints order like the keys they come from (a key that ends early pads
//! with zeros, and is then a prefix of the other key, so smaller or equal),
//! so a search compares hints in one contiguous array and reads a key only
//! when two hints are equal. Nothing here is stored on disk: the index is
//! rebuilt when a page is decoded.
//!
//! Invariants: `keys` strictly ascending (the callers' duty, as before);
//! `hints.len() == keys.len()`; every key is at least `prefix` bytes long
//! and starts with `keys[0][..prefix]`; `prefix == 0` when empty.

use std::cmp::Ordering;
use std::ops::Deref;

use super::node::cmp_key;

#[derive(Clone, Default)]
pub struct Keys {
    keys: Vec<Vec<u8>>,
    prefix: usize,
    hints: Vec<u64>,
}

impl Keys {
    pub const fn new() -> Keys {
        Keys {
            keys: Vec::new(),
            prefix: 0,
            hints: Vec::new(),
        }
    }

    /// Inserts `key` at `i`; the keys must stay strictly ascending.
    pub fn insert(&mut self, i: usize, key: Vec<u8>) {
        let edge = i == 0 || i == self.keys.len();
        self.keys.insert(i, key);
        // A key between two others shares their common prefix; one at
        // either end may shorten it.
        if edge && lcp(self.first(), self.last()) != self.prefix {
            self.rebuild();
        } else {
            self.hints.insert(i, hint(&self.keys[i][self.prefix..]));
        }
    }

    /// Removes and returns key `i` (the prefix stays common to the rest).
    pub fn remove(&mut self, i: usize) -> Vec<u8> {
        self.hints.remove(i);
        let k = self.keys.remove(i);
        if self.keys.is_empty() {
            self.prefix = 0;
        }
        k
    }

    /// Splits off the keys from `at` on.
    pub fn split_off(&mut self, at: usize) -> Keys {
        let right = Keys::from(self.keys.split_off(at));
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
        let n = self.keys.len();
        if n == 0 {
            return (0, false);
        }
        let p = self.prefix;
        let head = &key[..p.min(key.len())];
        match cmp_key(head, &self.keys[0][..p]) {
            Ordering::Less => return (0, false),
            Ordering::Greater => return (n, false),
            // A key shorter than the prefix is a prefix of every key.
            Ordering::Equal if key.len() < p => return (0, false),
            Ordering::Equal => {}
        }
        let rest = &key[p..];
        let h = hint(rest);
        let (mut lo, mut hi) = (0, n);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            let o = self.hints[mid]
                .cmp(&h)
                .then_with(|| cmp_key(&self.keys[mid][p..], rest));
            if o == Ordering::Less {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        let found = lo < n && self.hints[lo] == h && self.keys[lo][p..] == *rest;
        (lo, found)
    }

    fn first(&self) -> &[u8] {
        &self.keys[0]
    }

    fn last(&self) -> &[u8] {
        &self.keys[self.keys.len() - 1]
    }

    fn rebuild(&mut self) {
        self.prefix = if self.keys.is_empty() {
            0
        } else {
            lcp(self.first(), self.last())
        };
        let p = self.prefix;
        self.hints.clear();
        self.hints.extend(self.keys.iter().map(|k| hint(&k[p..])));
    }
}

impl From<Vec<Vec<u8>>> for Keys {
    fn from(keys: Vec<Vec<u8>>) -> Keys {
        let mut k = Keys {
            keys,
            prefix: 0,
            hints: Vec::new(),
        };
        k.rebuild();
        k
    }
}

impl Deref for Keys {
    type Target = [Vec<u8>];

    fn deref(&self) -> &[Vec<u8>] {
        &self.keys
    }
}

impl PartialEq for Keys {
    fn eq(&self, other: &Keys) -> bool {
        self.keys == other.keys
    }
}

impl Eq for Keys {}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.keys.fmt(f)
    }
}

/// Length of the longest common prefix. For sorted keys, that of the first
/// and the last is common to all of them.
fn lcp(a: &[u8], b: &[u8]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

/// The first 8 bytes, zero-padded, big-endian.
fn hint(rest: &[u8]) -> u64 {
    let mut b = [0u8; 8];
    let n = rest.len().min(8);
    b[..n].copy_from_slice(&rest[..n]);
    u64::from_be_bytes(b)
}

#[cfg(test)]
mod tests {
    use super::Keys;

    /// Random sorted key sets with long shared prefixes, short keys, keys
    /// that are prefixes of others and zero bytes; every search agrees with
    /// a plain binary search, through inserts, removes and splits.
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
            let mut model: Vec<Vec<u8>> = Vec::new();
            let mut keys = Keys::new();
            let base: Vec<u8> = (0..rnd(12)).map(|_| rnd(3) as u8).collect();
            for _ in 0..rnd(120) {
                let mut probe = base.clone();
                probe.truncate(rnd(base.len() as u64 + 1) as usize);
                probe.extend((0..rnd(14)).map(|_| [0u8, 1, 2, 0xff][rnd(4) as usize]));
                let i = model.binary_search(&probe);
                assert_eq!(keys.search(&probe), i, "round {round}");
                match i {
                    Ok(i) if rnd(3) == 0 => {
                        model.remove(i);
                        keys.remove(i);
                    }
                    Ok(_) => {}
                    Err(i) => {
                        model.insert(i, probe.clone());
                        keys.insert(i, probe.clone());
                    }
                }
                if rnd(40) == 0 && model.len() > 1 {
                    let at = 1 + rnd(model.len() as u64 - 1) as usize;
                    let right = keys.split_off(at);
                    let mright = model.split_off(at);
                    assert_eq!(&right[..], &mright[..]);
                    if rnd(2) == 0 {
                        keys = right;
                        model = mright;
                    }
                }
                assert_eq!(&keys[..], &model[..]);
                for q in model.iter().chain([&probe, &base, &Vec::new()]) {
                    let lt = model.partition_point(|k| k < q);
                    let le = model.partition_point(|k| k <= q);
                    assert_eq!(keys.count_lt(q), lt);
                    assert_eq!(keys.count_le(q), le);
                    let mut longer = q.clone();
                    longer.push(0);
                    assert_eq!(
                        keys.count_lt(&longer),
                        model.partition_point(|k| *k < longer)
                    );
                }
            }
        }
    }
}
