//! CRC-32C arithmetic for chaining a record's crc to its predecessor's
//! without reading the payload again.
//!
//! A frame's crc is `crc32c(prefix | payload)` where the 9-byte prefix holds
//! the previous record's crc, known only under the journal's append lock.
//! The payload's own crc is computed outside the lock; under it, the two are
//! combined with [`Shift::combine`]: `crc32c(a | b) = crc(a) * x^(8 len(b))
//! mod P  xor  crc(b)` (zlib's `crc32_combine_op`, the pre- and
//! post-conditioning cancel out). The multiplier depends only on the payload
//! length, so it is also computed outside the lock ([`Shift::for_len`]);
//! the combine itself is one 32-step carry-less multiplication, tens of
//! nanoseconds, whatever the payload size.

/// CRC-32C (Castagnoli) polynomial, bit-reflected.
const POLY: u32 = 0x82F6_3B78;

/// `a * b mod P` in the reflected representation (bit 31 is x^0).
const fn mul_mod_p(a: u32, mut b: u32) -> u32 {
    let mut m = 1u32 << 31;
    let mut p = 0u32;
    loop {
        if a & m != 0 {
            p ^= b;
            if a & (m - 1) == 0 {
                return p;
            }
        }
        m >>= 1;
        b = if b & 1 != 0 { (b >> 1) ^ POLY } else { b >> 1 };
    }
}

/// `X2N[k] = x^(2^k) mod P`.
const X2N: [u32; 32] = {
    let mut t = [0u32; 32];
    t[0] = 1 << 30; // x^1
    let mut k = 1;
    while k < 32 {
        t[k] = mul_mod_p(t[k - 1], t[k - 1]);
        k += 1;
    }
    t
};

/// Multiplication by `x^(8 len) mod P`: appends `len` zero bytes' worth of
/// shift to a crc, so it can be combined with the crc of `len` bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shift(u32);

impl Shift {
    /// The shift for a second part of `len` bytes.
    pub const fn for_len(len: u64) -> Shift {
        // x^(8 len) = x^(len * 2^3): walk the bits of len from X2N[3].
        let mut n = len;
        let mut k = 3usize;
        let mut p = 1u32 << 31; // x^0
        while n != 0 {
            if n & 1 != 0 {
                p = mul_mod_p(X2N[k & 31], p);
            }
            n >>= 1;
            k += 1;
        }
        Shift(p)
    }

    /// `crc32c(a | b)` from `crc_a = crc32c(a)` and `crc_b = crc32c(b)`,
    /// where this shift is `Shift::for_len(b.len())`.
    pub const fn combine(self, crc_a: u32, crc_b: u32) -> u32 {
        mul_mod_p(self.0, crc_a) ^ crc_b
    }
}

/// Inputs up to this many bytes take [`append`]'s short path.
const SHORT: usize = 1024;

/// `crc32c_append(crc, data)`. Short inputs (a record's header, a small
/// payload) take one hardware step per 8 bytes: the `crc32c` crate's
/// routine is built for long buffers (three interleaved streams), and its
/// set-up was most of the time spent checksumming a 160-byte record
/// (355 instructions per record, now about 60).
pub fn append(crc: u32, data: &[u8]) -> u32 {
    #[cfg(target_arch = "x86_64")]
    if data.len() <= SHORT && std::arch::is_x86_feature_detected!("sse4.2") {
        // SAFETY: the CPU has SSE4.2, checked just above.
        return unsafe { append_sse42(crc, data) };
    }
    crc32c::crc32c_append(crc, data)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "sse4.2")]
fn append_sse42(crc: u32, data: &[u8]) -> u32 {
    use std::arch::x86_64::{_mm_crc32_u64, _mm_crc32_u8};
    let (words, rest) = data.as_chunks::<8>();
    let mut c = u64::from(!crc);
    for w in words {
        c = _mm_crc32_u64(c, u64::from_le_bytes(*w));
    }
    let mut c = c as u32;
    for &b in rest {
        c = _mm_crc32_u8(c, b);
    }
    !c
}

#[cfg(test)]
mod tests {
    use super::Shift;

    #[test]
    fn the_short_path_matches_the_crate() {
        let data: Vec<u8> = (0..3100u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 11) as u8)
            .collect();
        for len in (0..300).chain([1023, 1024, 1025, 2999]) {
            for (start, seed) in [(0, 0u32), (3, 0xdead_beef), (7, u32::MAX)] {
                let d = &data[start..start + len];
                assert_eq!(
                    super::append(seed, d),
                    crc32c::crc32c_append(seed, d),
                    "len {len}, seed {seed:#x}"
                );
            }
        }
    }

    #[test]
    fn combine_matches_append_for_many_lengths() {
        let data: Vec<u8> = (0..20_200u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        let lens = (0..300).chain([511, 512, 513, 4096, 8191, 8192, 19_999]);
        for (i, len) in lens.enumerate() {
            let a = &data[..i % 17];
            let b = &data[100..100 + len];
            let want = crc32c::crc32c_append(crc32c::crc32c(a), b);
            let got = Shift::for_len(b.len() as u64).combine(crc32c::crc32c(a), crc32c::crc32c(b));
            assert_eq!(got, want, "len {len}");
        }
    }
}
