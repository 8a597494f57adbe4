//! Workload building blocks shared by scenarios: the keys and values every
//! store receives (byte for byte the same), a cheap deterministic random
//! source, and the statistics the reports use.

use std::time::Duration;

/// Every key is 16 ASCII bytes, so each store gets exactly the same bytes
/// (our engine as a 16-character string subscript, the peers as a blob).
pub type RawKey = [u8; 16];

/// Length of every value written by the benchmarks.
pub const VALUE_LEN: usize = 100;

/// The value written everywhere: 100 bytes of a fixed pattern.
pub fn value() -> Vec<u8> {
    (0..VALUE_LEN).map(|i| (i * 7 + 3) as u8).collect()
}

/// The `i`-th key in collation order: 16 decimal digits, zero padded.
pub fn seq_key(mut i: u64) -> RawKey {
    let mut k = [b'0'; 16];
    for slot in k.iter_mut().rev() {
        *slot = b'0' + (i % 10) as u8;
        i /= 10;
    }
    k
}

/// A uniformly random key: 16 lowercase hex digits of a random `u64`.
pub fn random_key(rng: &mut SplitMix64) -> RawKey {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut x = rng.next_u64();
    let mut k = [0u8; 16];
    for slot in k.iter_mut() {
        *slot = HEX[(x & 15) as usize];
        x >>= 4;
    }
    k
}

/// SplitMix64: a tiny, fast, seedable generator, good enough to pick keys
/// (the benchmark must not measure its random number generator).
#[derive(Clone)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    pub fn new(seed: u64) -> Self {
        SplitMix64(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (n > 0); the modulo bias is irrelevant here.
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
}

/// The median of a non-empty list (mean of the middle two for even lengths).
pub fn median(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n == 0 {
        return f64::NAN;
    }
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// The `p`-th percentile (0..=100, nearest rank) of latencies in
/// nanoseconds, sorting them in place; in milliseconds.
pub fn percentile_ms(sorted_or_not: &mut [u64], p: f64) -> f64 {
    if sorted_or_not.is_empty() {
        return f64::NAN;
    }
    sorted_or_not.sort_unstable();
    let rank = ((p / 100.0) * sorted_or_not.len() as f64).ceil() as usize;
    let i = rank.clamp(1, sorted_or_not.len()) - 1;
    sorted_or_not[i] as f64 / 1e6
}

/// Operations per second.
pub fn rate(ops: u64, elapsed: Duration) -> f64 {
    ops as f64 / elapsed.as_secs_f64().max(1e-9)
}

/// Starts measuring this process's peak resident memory afresh: gives
/// mimalloc's free memory back to the OS, then resets the kernel's
/// high-water mark (`VmHWM`, reset by writing 5 to
/// `/proc/self/clear_refs`). False where that is not possible.
pub fn reset_peak_rss() -> bool {
    redoubt_hub::allocator::release_free_memory();
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

/// This process's peak resident memory since [`reset_peak_rss`]
/// (`VmHWM` of `/proc/self/status`), in bytes.
pub fn peak_rss() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/self/status").ok()?;
    let kib: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))?
        .trim()
        .strip_suffix("kB")?
        .trim()
        .parse()
        .ok()?;
    Some(kib * 1024)
}

/// Total size of the regular files under `dir`, recursively.
pub fn dir_bytes(dir: &std::path::Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_bytes(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

/// Writes back every dirty page the OS holds (`sync(2)`), so a measurement
/// does not share the machine with the writeback of what earlier runs (of
/// any store) wrote: on two cores the kernel's flusher threads take a
/// visible share of one.
pub fn settle_os() {
    // SAFETY: sync(2) takes no arguments and cannot fail.
    unsafe { libc::sync() };
}

/// Bytes this process has passed to `write`-family system calls so far
/// (`wchar` of `/proc/self/io`; `None` where that file does not exist).
/// Only one store runs at a time, so a difference is that store's writes.
pub fn process_written_bytes() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/self/io").ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("wchar:"))
        .and_then(|v| v.trim().parse().ok())
}

pub const MIB: f64 = (1u64 << 20) as f64;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seq_keys_sort_like_their_numbers() {
        assert_eq!(&seq_key(42), b"0000000000000042");
        assert!(seq_key(9) < seq_key(10));
    }

    #[test]
    fn random_keys_are_ascii_hex() {
        let mut rng = SplitMix64::new(1);
        let k = random_key(&mut rng);
        assert!(k.iter().all(|b| b.is_ascii_hexdigit()));
        assert_ne!(k, random_key(&mut rng));
    }

    #[test]
    fn peak_rss_sees_memory_touched_after_the_reset() {
        if !reset_peak_rss() {
            return; // not Linux, or no /proc
        }
        let before = peak_rss().expect("VmHWM where clear_refs exists");
        let block = vec![1u8; 64 << 20];
        std::hint::black_box(&block);
        let after = peak_rss().unwrap();
        assert!(
            after >= before + (60 << 20),
            "peak {after} after touching 64 MiB, {before} before"
        );
    }

    #[test]
    fn statistics() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
        let mut lat: Vec<u64> = (1..=100).map(|i| i * 1_000_000).collect();
        assert_eq!(percentile_ms(&mut lat, 50.0), 50.0);
        assert_eq!(percentile_ms(&mut lat, 99.0), 99.0);
    }
}
