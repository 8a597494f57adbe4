//! The collating byte encoding of keys: storage compares encoded keys with
//! `memcmp`, and that order is the collation order of [`Key`](super::Key).
//!
//! # Key
//!
//! ```text
//!     +-------------------+------+-------------+-------------+-----
//!     | global name bytes | 0x00 | subscript 1 | subscript 2 | ...
//!     +-------------------+------+-------------+-------------+-----
//!       ASCII [A-Za-z0-9.%], 1..=31 bytes, never 0x00
//! ```
//!
//! # Subscript (self-delimiting; the first byte is a tag)
//!
//! ```text
//!     negative number  0x10 | !exp_hi | !exp_lo | !g1 | ... | !gn     (all bytes after
//!     zero             0x20                                          the tag inverted)
//!     positive number  0x30 |  exp_hi |  exp_lo |  g1 | ... |  gn
//!     string           0x40 | UTF-8 bytes, each 0x00 written as 0x00 0xFF | 0x00 0x01
//! ```
//!
//! A number `v != 0` is `|v| = (1 + frac/2^64) * 2^exp` exactly (see
//! [`number`](super::number)):
//!
//! * `exp_hi exp_lo` = `exp + 1074` as a big-endian `u16` (`0..=2097`);
//! * `g1..gn` carry `frac` 7 bits at a time, most significant first:
//!
//!   ```text
//!       gi = (bits 63-7(i-1) .. 57-7(i-1) of frac) << 1 | more
//!       more = 1 on every group but the last, 0 on the last
//!   ```
//!
//!   `n` is the fewest groups that hold every set bit of `frac` (1..=9;
//!   `frac == 0` is the single group `0x00`), so a group list never ends
//!   with an all-zero group after the first.
//!
//! Examples: `1` = `30 04 32 00`, `42` = `30 04 37 50` (42 = 1.3125 * 2^5,
//! frac bits `0101`), `-1` = `10 fb cd ff`, `"ab"` = `40 61 62 00 01`,
//! `^A(1,"b")` = `41 00 30 04 32 00 40 62 00 01`.
//!
//! # Why the order and the prefix rules hold
//!
//! * Every subscript encoding is **prefix-free** (no encoding is a proper
//!   prefix of another): numbers end at the first group whose `more` bit
//!   is clear; strings end at the first `0x00` not followed by `0xFF`.
//!   With the global name ended by `0x00` (which no name byte is), a key's
//!   encoding is a prefix of exactly its own and its descendants'
//!   encodings, and comparing two keys' encodings is decided inside the
//!   first subscript where they differ, or by length if one key is an
//!   ancestor of the other (the ancestor, shorter, sorts first).
//! * Within one subscript position the bytes sort like the subscripts:
//!   tags order negative < zero < positive < string; positive magnitudes
//!   order by `exp`, then by `frac` bit-string (a group with more bits set
//!   beats one that stops, because the data bits sit above the `more` bit
//!   and a stopping group's remaining bits are zero); negative numbers use
//!   the same bytes inverted, which reverses a prefix-free order. Strings:
//!   a NUL (`00 ff`) sorts below any other byte, and the end (`00 01`)
//!   below both, so shorter prefixes come first.
//! * So for keys `A < B` that are not ancestor and descendant, the
//!   encodings already differ inside `A`'s bytes, and every descendant of
//!   `A` also sorts before `B`: subtrees never interleave.
//!
//! # Subtree ranges
//!
//! Every subscript starts with a tag `<= 0x40`, so the descendants of an
//! encoded key `k` are exactly the valid keys in `(k, k ++ [0x41])`;
//! [`subtree_end`] returns `k ++ [0x41]`, the smallest one-byte extension of
//! `k` greater than every descendant.

use super::number::{Magnitude, MAX_EXP, MIN_EXP};
use super::subscript::Subscript;
use super::{validate_global_name, ModelError};

/// Tag of a negative number subscript.
pub const TAG_NEG: u8 = 0x10;
/// Tag of the subscript zero.
pub const TAG_ZERO: u8 = 0x20;
/// Tag of a positive number subscript.
pub const TAG_POS: u8 = 0x30;
/// Tag of a string subscript.
pub const TAG_STR: u8 = 0x40;
/// Byte ending the global name.
pub const GLOBAL_END: u8 = 0x00;

/// Added to a number's binary exponent to make it a `u16`.
const EXP_BIAS: i32 = -MIN_EXP;
/// Most 7-bit groups a number has (63 fraction bits).
const MAX_GROUPS: usize = 9;

/// The encoding of `^global` with no subscripts (`global` bytes then
/// `0x00`); equal to `Key { global, subs: [] }.encode()`. Does not validate
/// the name.
pub fn encode_global_prefix(global: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(global.len() + 1);
    out.extend_from_slice(global.as_bytes());
    out.push(GLOBAL_END);
    out
}

/// The exclusive upper bound of the subtree of an encoded key: the range
/// `[encoded_key, subtree_end(encoded_key))` holds exactly the key and its
/// descendants. It is `encoded_key ++ [0x41]`, greater than every
/// descendant (all subscript tags are `<= 0x40`) and smaller than every
/// following key that is not a descendant.
pub fn subtree_end(encoded_key: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(encoded_key.len() + 1);
    out.extend_from_slice(encoded_key);
    out.push(TAG_STR + 1);
    out
}

/// Appends the collating encoding of one subscript.
pub fn encode_subscript_into(s: &Subscript, out: &mut Vec<u8>) {
    match s {
        Subscript::Int(0) => out.push(TAG_ZERO),
        Subscript::Int(n) => encode_number(*n < 0, Magnitude::of_int(n.unsigned_abs()), out),
        Subscript::Num(r) => {
            let x = r.get();
            encode_number(x < 0.0, Magnitude::of_float(x), out);
        }
        Subscript::Str(s) => {
            out.push(TAG_STR);
            if !s.as_bytes().contains(&0) {
                // The common case: nothing to escape.
                out.extend_from_slice(s.as_bytes());
                out.extend_from_slice(&[0x00, 0x01]);
                return;
            }
            let mut chunks = s.as_bytes().split(|&b| b == 0);
            if let Some(first) = chunks.next() {
                out.extend_from_slice(first);
            }
            for chunk in chunks {
                out.extend_from_slice(&[0x00, 0xFF]);
                out.extend_from_slice(chunk);
            }
            out.extend_from_slice(&[0x00, 0x01]);
        }
    }
}

/// Length of [`encode_subscript_into`]'s output for `s`.
pub fn subscript_encoded_len(s: &Subscript) -> usize {
    match s {
        Subscript::Int(0) => 1,
        Subscript::Int(n) => 3 + group_count(Magnitude::of_int(n.unsigned_abs()).frac),
        Subscript::Num(r) => 3 + group_count(Magnitude::of_float(r.get()).frac),
        Subscript::Str(s) => 3 + s.len() + s.bytes().filter(|&b| b == 0).count(),
    }
}

/// An upper bound of [`subscript_encoded_len`] that does not look inside
/// strings (a NUL costs one more byte than this counts).
pub(crate) fn subscript_len_estimate(s: &Subscript) -> usize {
    match s {
        Subscript::Str(s) => 3 + s.len(),
        _ => 3 + MAX_GROUPS,
    }
}

fn group_count(frac: u64) -> usize {
    if frac == 0 {
        1
    } else {
        let used = 64 - frac.trailing_zeros() as usize;
        used.div_ceil(7)
    }
}

fn encode_number(negative: bool, m: Magnitude, out: &mut Vec<u8>) {
    let mask = if negative { 0xFF } else { 0x00 };
    let [hi, lo] = ((m.exp + EXP_BIAS) as u16).to_be_bytes();
    out.extend_from_slice(&[
        if negative { TAG_NEG } else { TAG_POS },
        hi ^ mask,
        lo ^ mask,
    ]);
    let n = group_count(m.frac);
    for i in 0..n {
        let data = (m.frac >> (57 - 7 * i)) as u8 & 0x7F;
        let more = u8::from(i + 1 < n);
        out.push(((data << 1) | more) ^ mask);
    }
}

/// Splits an encoded key into its global name and the offset of its first
/// subscript (one past the `0x00` that ends the name). Validates the name.
pub fn decode_global(encoded: &[u8]) -> Result<(&str, usize), ModelError> {
    let end = encoded
        .iter()
        .position(|&b| b == GLOBAL_END)
        .ok_or(ModelError::key_enc(
            encoded.len(),
            "global name is not terminated by 0x00",
        ))?;
    let name = std::str::from_utf8(&encoded[..end])
        .ok()
        .filter(|name| validate_global_name(name).is_ok())
        .ok_or(ModelError::key_enc(0, "not a valid global name"))?;
    Ok((name, end + 1))
}

/// Decodes the subscript that starts at byte `pos` of an encoded key;
/// returns it and the offset just past it.
pub fn decode_subscript_at(encoded: &[u8], pos: usize) -> Result<(Subscript, usize), ModelError> {
    let tag = *encoded.get(pos).ok_or(ModelError::key_enc(
        pos,
        "expected a subscript, found the end of the key",
    ))?;
    match tag {
        TAG_ZERO => Ok((Subscript::Int(0), pos + 1)),
        TAG_NEG | TAG_POS => {
            let negative = tag == TAG_NEG;
            let (m, next) = decode_magnitude(encoded, pos + 1, negative)?;
            let s = match m.to_number(negative) {
                Some(Ok(n)) => Subscript::Int(n),
                Some(Err(r)) => Subscript::Num(r),
                None => {
                    return Err(ModelError::key_enc(
                        pos,
                        "number is neither an exact i64 nor an exact f64",
                    ))
                }
            };
            Ok((s, next))
        }
        TAG_STR => {
            let (bytes, next) = decode_string_bytes(encoded, pos + 1)?;
            let s = String::from_utf8(bytes)
                .map_err(|_| ModelError::key_enc(pos, "string subscript is not valid UTF-8"))?;
            Ok((Subscript::Str(s), next))
        }
        _ => Err(ModelError::key_enc(pos, "unknown subscript tag")),
    }
}

/// The offset just past the subscript starting at `pos`, checking only its
/// framing (not that a number is representable or a string is UTF-8).
/// Does not allocate.
pub fn skip_subscript(encoded: &[u8], pos: usize) -> Result<usize, ModelError> {
    let tag = *encoded.get(pos).ok_or(ModelError::key_enc(
        pos,
        "expected a subscript, found the end of the key",
    ))?;
    match tag {
        TAG_ZERO => Ok(pos + 1),
        TAG_NEG | TAG_POS => Ok(decode_magnitude(encoded, pos + 1, tag == TAG_NEG)?.1),
        TAG_STR => scan_string(encoded, pos + 1, |_| {}),
        _ => Err(ModelError::key_enc(pos, "unknown subscript tag")),
    }
}

/// Number of subscripts of an encoded key.
pub fn encoded_depth(encoded: &[u8]) -> Result<usize, ModelError> {
    let (_, mut pos) = decode_global(encoded)?;
    let mut depth = 0;
    while pos < encoded.len() {
        pos = skip_subscript(encoded, pos)?;
        depth += 1;
    }
    Ok(depth)
}

/// Length of the encoding of the ancestor of `encoded` that has `depth`
/// subscripts (`0` = the bare global), i.e. `encoded[..len]` is that
/// ancestor's encoding. `None` if the key has fewer than `depth` subscripts.
///
/// Use: after a seek lands on some descendant of a parent `p`, the child of
/// `p` it belongs to is `encoded[..prefix_len_at_depth(encoded, depth(p) + 1)]`.
pub fn prefix_len_at_depth(encoded: &[u8], depth: usize) -> Result<Option<usize>, ModelError> {
    let (_, mut pos) = decode_global(encoded)?;
    for _ in 0..depth {
        if pos >= encoded.len() {
            return Ok(None);
        }
        pos = skip_subscript(encoded, pos)?;
    }
    Ok(Some(pos))
}

/// The last subscript of an encoded key, `None` for a bare global.
pub fn decode_last_subscript(encoded: &[u8]) -> Result<Option<Subscript>, ModelError> {
    let (_, mut pos) = decode_global(encoded)?;
    let mut last = None;
    while pos < encoded.len() {
        let next = skip_subscript(encoded, pos)?;
        last = Some(pos);
        pos = next;
    }
    match last {
        None => Ok(None),
        Some(start) => Ok(Some(decode_subscript_at(encoded, start)?.0)),
    }
}

/// Reads exponent and groups after a number tag; `pos` is the first byte
/// after the tag. Rejects non-canonical group lists.
fn decode_magnitude(
    b: &[u8],
    pos: usize,
    negative: bool,
) -> Result<(Magnitude, usize), ModelError> {
    let mask = if negative { 0xFF } else { 0x00 };
    let (Some(&hi), Some(&lo)) = (b.get(pos), b.get(pos + 1)) else {
        return Err(ModelError::key_enc(pos, "number exponent is truncated"));
    };
    let biased = i32::from(u16::from_be_bytes([hi ^ mask, lo ^ mask]));
    if biased > MAX_EXP + EXP_BIAS {
        return Err(ModelError::key_enc(pos, "number exponent out of range"));
    }
    let mut frac = 0u64;
    let mut p = pos + 2;
    for i in 0..MAX_GROUPS {
        let Some(&raw) = b.get(p) else {
            return Err(ModelError::key_enc(p, "number mantissa is truncated"));
        };
        let g = raw ^ mask;
        frac |= u64::from(g >> 1) << (57 - 7 * i);
        p += 1;
        if g & 1 == 0 {
            if i > 0 && g >> 1 == 0 {
                return Err(ModelError::key_enc(
                    p - 1,
                    "number mantissa ends with a zero group",
                ));
            }
            let exp = biased - EXP_BIAS;
            return Ok((Magnitude { exp, frac }, p));
        }
    }
    Err(ModelError::key_enc(
        p,
        "number mantissa is longer than 9 groups",
    ))
}

/// Walks an escaped string body starting at `pos` (after the tag), handing
/// each unescaped segment (NULs included) to `sink`; returns the offset just
/// past the `00 01` terminator.
fn scan_string(b: &[u8], mut pos: usize, mut sink: impl FnMut(&[u8])) -> Result<usize, ModelError> {
    loop {
        let Some(z) = b[pos.min(b.len())..].iter().position(|&x| x == 0x00) else {
            return Err(ModelError::key_enc(
                b.len(),
                "string subscript is not terminated",
            ));
        };
        let z = pos + z;
        match b.get(z + 1) {
            Some(0x01) => {
                sink(&b[pos..z]);
                return Ok(z + 2);
            }
            Some(0xFF) => {
                sink(&b[pos..=z]);
                pos = z + 2;
            }
            Some(_) => {
                return Err(ModelError::key_enc(
                    z + 1,
                    "bad escape after 0x00 in string subscript",
                ))
            }
            None => {
                return Err(ModelError::key_enc(
                    b.len(),
                    "string subscript is not terminated",
                ))
            }
        }
    }
}

fn decode_string_bytes(b: &[u8], pos: usize) -> Result<(Vec<u8>, usize), ModelError> {
    let mut bytes = Vec::new();
    let next = scan_string(b, pos, |seg| bytes.extend_from_slice(seg))?;
    Ok((bytes, next))
}
