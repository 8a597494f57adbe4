//! A filter of the keys a tree has ever held: "certainly absent" or
//! "perhaps present". It lets the insert buffer (`buffer.rs`) take a new
//! key without reading its leaf: the journal needs each SET's before-image,
//! and for a key the filter has never seen, that is "none".
//!
//! A blocked Bloom filter: each key sets [`PROBES`] bits inside one 512-bit
//! block (one cache line), so a lookup costs one memory access. The filter
//! grows by layers (the first sized from the budget), each twice the keys
//! of the one before, at
//! [`BITS_PER_KEY`] bits per key (about 1% false positives per layer); a
//! key is looked up in every layer and added to the newest. Keys are never
//! removed: a key killed since stays "perhaps present", which costs a leaf
//! read, never a wrong answer.
//!
//! The filter's memory counts against the buffer pool. When the next layer
//! would pass its budget the filter stops growing and says "perhaps
//! present" for every key from then on ([`KeyFilter::saturated`]): the tree
//! then reads leaves as it did without one.

/// Bits per key a layer is sized for.
const BITS_PER_KEY: usize = 10;
/// Bits set per key, all in one block.
const PROBES: u32 = 7;
/// The first layer takes this share (1/n) of the budget: layers double,
/// so a filter that fills its budget has about four layers.
const FIRST_LAYER_SHARE: usize = 16;
/// One block: 8 words of 64 bits, one cache line.
const BLOCK_WORDS: usize = 8;

pub struct KeyFilter {
    layers: Vec<Layer>,
    /// Bytes the filter may use.
    budget: usize,
    saturated: bool,
}

struct Layer {
    blocks: Vec<[u64; BLOCK_WORDS]>,
    /// Keys added, and how many the layer is sized for.
    keys: usize,
    capacity: usize,
}

impl Layer {
    fn new(capacity: usize) -> Layer {
        let blocks = (capacity * BITS_PER_KEY).div_ceil(BLOCK_WORDS * 64).max(1);
        Layer {
            blocks: vec![[0; BLOCK_WORDS]; blocks],
            keys: 0,
            capacity,
        }
    }

    fn bytes(&self) -> usize {
        self.blocks.len() * BLOCK_WORDS * 8
    }

    /// The block and the bit positions (0..512) in it for hash `h`.
    fn probes(&self, h: u64) -> (usize, impl Iterator<Item = u32>) {
        // The high half picks the block (Lemire's multiply-shift), the low
        // half the bits, by double hashing.
        let block = (((h >> 32) * self.blocks.len() as u64) >> 32) as usize;
        let (a, b) = (h as u32, (h as u32).rotate_left(16) | 1);
        let bits = (0..PROBES).map(move |i| a.wrapping_add(i.wrapping_mul(b)) % 512);
        (block, bits)
    }

    fn add(&mut self, h: u64) {
        let (block, bits) = self.probes(h);
        let words = &mut self.blocks[block];
        for bit in bits {
            words[(bit / 64) as usize] |= 1 << (bit % 64);
        }
        self.keys += 1;
    }

    fn may_contain(&self, h: u64) -> bool {
        let (block, mut bits) = self.probes(h);
        let words = &self.blocks[block];
        bits.all(|bit| words[(bit / 64) as usize] & (1 << (bit % 64)) != 0)
    }
}

impl KeyFilter {
    /// An empty filter (of an empty tree) that may use `budget` bytes.
    pub fn new(budget: usize) -> KeyFilter {
        let keys = (budget / FIRST_LAYER_SHARE * 8 / BITS_PER_KEY).max(64);
        let first = Layer::new(keys);
        let saturated = first.bytes() > budget;
        KeyFilter {
            layers: if saturated { Vec::new() } else { vec![first] },
            budget,
            saturated,
        }
    }

    /// Whether `key` was certainly never added.
    pub fn absent(&self, key: &[u8]) -> bool {
        if self.saturated {
            return false;
        }
        let h = hash(key);
        !self.layers.iter().any(|l| l.may_contain(h))
    }

    /// Adds `key`; true if the filter's memory changed (a new layer, or
    /// saturation, which lets every layer go).
    pub fn add(&mut self, key: &[u8]) -> bool {
        if self.saturated {
            return false;
        }
        let last = self
            .layers
            .last()
            .expect("a filter that is not saturated has a layer");
        let mut grew = false;
        if last.keys >= last.capacity {
            let next = Layer::new(last.capacity * 2);
            if self.bytes() + next.bytes() > self.budget {
                // Stop here: every key is "perhaps present" from now on.
                self.saturated = true;
                self.layers = Vec::new();
                return true;
            }
            self.layers.push(next);
            grew = true;
        }
        self.layers.last_mut().expect("pushed above").add(hash(key));
        grew
    }

    /// Starts loading the cache line [`KeyFilter::add`] will write for
    /// `key`: a filter of megabytes is out of cache, and the caller has a
    /// leaf to search in the meantime.
    pub fn prefetch_add(&self, key: &[u8]) {
        if let Some(last) = self.layers.last() {
            let (block, _) = last.probes(hash(key));
            super::entries::prefetch(std::slice::from_ref(&last.blocks[block]));
        }
    }

    /// The filter no longer tells anything (it outgrew its budget).
    pub fn saturated(&self) -> bool {
        self.saturated
    }

    pub fn bytes(&self) -> usize {
        self.layers.iter().map(Layer::bytes).sum()
    }

    /// The layers as bytes, for a file (`db/filter_file.rs`); a saturated
    /// filter has none to keep.
    ///
    /// ```text
    /// layers u32 | per layer: capacity u64 | keys u64 | blocks u64 | blocks x 64 bytes
    /// ```
    pub fn encode(&self, out: &mut Vec<u8>) {
        debug_assert!(!self.saturated);
        out.extend_from_slice(&(self.layers.len() as u32).to_le_bytes());
        for l in &self.layers {
            for n in [l.capacity, l.keys, l.blocks.len()] {
                out.extend_from_slice(&(n as u64).to_le_bytes());
            }
            for w in l.blocks.iter().flatten() {
                out.extend_from_slice(&w.to_le_bytes());
            }
        }
    }

    /// A filter of `budget` bytes from [`KeyFilter::encode`]'s bytes, if
    /// they describe exactly the filter that budget grows (its first
    /// layer's size, each next one twice the last, all full but the last,
    /// within the budget). Errors say what differs.
    pub fn decode(bytes: &[u8], budget: usize) -> Result<KeyFilter, String> {
        let mut at = 0usize;
        let mut next = |n: usize| -> Result<&[u8], String> {
            let b = bytes
                .get(at..at + n)
                .ok_or_else(|| format!("ends at byte {at} of a layer"))?;
            at += n;
            Ok(b)
        };
        let u64_of = |b: &[u8]| u64::from_le_bytes(b.try_into().expect("8 bytes"));
        let count = u32::from_le_bytes(next(4)?.try_into().expect("4 bytes")) as usize;
        let mut f = KeyFilter::new(budget);
        if f.saturated || count == 0 {
            return Err(format!("{count} layers for a budget of {budget} bytes"));
        }
        let mut capacity = f.layers[0].capacity;
        f.layers.clear();
        for i in 0..count {
            let (cap, keys, blocks) = (
                u64_of(next(8)?) as usize,
                u64_of(next(8)?) as usize,
                u64_of(next(8)?) as usize,
            );
            let mut layer = Layer::new(capacity);
            let full = i + 1 == count || keys == cap;
            if cap != capacity || blocks != layer.blocks.len() || keys > cap || !full {
                return Err(format!(
                    "layer {i}: {keys} keys of {cap} in {blocks} blocks, expected {} blocks of {capacity}",
                    layer.blocks.len()
                ));
            }
            for block in &mut layer.blocks {
                let raw = next(BLOCK_WORDS * 8)?;
                for (w, b) in block.iter_mut().zip(raw.chunks_exact(8)) {
                    *w = u64_of(b);
                }
            }
            layer.keys = keys;
            f.layers.push(layer);
            capacity *= 2;
        }
        if at != bytes.len() {
            return Err(format!("{} bytes after the last layer", bytes.len() - at));
        }
        if f.bytes() > budget {
            return Err(format!("{} bytes over a budget of {budget}", f.bytes()));
        }
        Ok(f)
    }
}

/// A 64-bit hash of the key's bytes: 8 bytes at a time through a
/// multiply-rotate step, then SplitMix64's finalizer. Keys are not chosen
/// to defeat it (a collision only costs a leaf read).
fn hash(key: &[u8]) -> u64 {
    const K: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut h = (key.len() as u64).wrapping_mul(K);
    let mut chunks = key.chunks_exact(8);
    for c in &mut chunks {
        let w = u64::from_le_bytes(c.try_into().expect("8 bytes"));
        h = (h ^ w).wrapping_mul(K).rotate_left(29);
    }
    let mut tail = [0u8; 8];
    tail[..chunks.remainder().len()].copy_from_slice(chunks.remainder());
    h = (h ^ u64::from_le_bytes(tail)).wrapping_mul(K);
    h ^= h >> 30;
    h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h ^= h >> 27;
    h = h.wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(i: u64) -> Vec<u8> {
        format!("^B(\"{i:016x}\")").into_bytes()
    }

    #[test]
    fn an_added_key_is_never_absent_and_few_others_look_present() {
        let mut f = KeyFilter::new(4 << 20);
        let n = 300_000;
        for i in 0..n {
            f.add(&key(i));
        }
        assert!((0..n).all(|i| !f.absent(&key(i))), "a false negative");
        let present = (n..2 * n).filter(|&i| !f.absent(&key(i))).count();
        let rate = present as f64 / n as f64;
        // Two layers at about 1% each.
        assert_eq!(f.layers.len(), 2);
        assert!(rate < 0.03, "false positive rate {rate}");
        assert!(!f.saturated());
        assert!(f.bytes() <= 4 << 20);
    }

    #[test]
    fn a_filter_read_back_answers_as_it_did_and_other_budgets_are_refused() {
        let mut f = KeyFilter::new(1 << 20);
        for i in 0..100_000 {
            f.add(&key(i));
        }
        assert!(f.layers.len() > 1);
        let mut bytes = Vec::new();
        f.encode(&mut bytes);
        let g = KeyFilter::decode(&bytes, 1 << 20).unwrap();
        assert!((0..100_000).all(|i| !g.absent(&key(i))));
        let same = (100_000..200_000).all(|i| f.absent(&key(i)) == g.absent(&key(i)));
        assert!(same && g.bytes() == f.bytes());
        // It goes on growing as the original would.
        let (mut f, mut g) = (f, g);
        for i in 100_000..200_000 {
            assert_eq!(f.add(&key(i)), g.add(&key(i)));
        }
        assert_eq!(f.layers.len(), g.layers.len());
        let err = KeyFilter::decode(&bytes, 2 << 20).err().unwrap();
        assert!(err.contains("expected"), "{err}");
        assert!(KeyFilter::decode(&bytes[..bytes.len() - 1], 1 << 20).is_err());
    }

    #[test]
    fn past_its_budget_the_filter_says_perhaps_for_every_key() {
        let mut f = KeyFilter::new(100 * 1024);
        for i in 0..100_000 {
            f.add(&key(i));
        }
        assert!(f.saturated());
        assert_eq!(f.bytes(), 0);
        assert!(!f.absent(&key(1 << 40)));
        assert!(!f.absent(&key(3)));
        // Too small for even one layer: saturated from the start.
        assert!(KeyFilter::new(10).saturated());
    }

    #[test]
    fn keys_differing_in_one_byte_hash_apart() {
        let a = hash(b"^B(\"0000000000000000\")");
        let b = hash(b"^B(\"0000000000000001\")");
        assert_ne!(a, b);
        assert_ne!(hash(b""), hash(b"\0"));
    }
}
