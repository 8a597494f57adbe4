//! [`Value`]: what a global node holds, and its binary encoding.
//!
//! # Encoding
//!
//! A tag byte, then a payload; integers are fixed-width little-endian.
//! Values are never compared as bytes, so this encoding only has to be
//! compact and unambiguous.
//!
//! ```text
//!     Str    0x01 | len: u32 LE | len bytes of UTF-8
//!     Int    0x02 | i64 LE (8 bytes)
//!     Float  0x03 | f64 bits LE (8 bytes; any bits, NaN payloads kept)
//!     Bytes  0x04 | len: u32 LE | len bytes
//!     List   0x05 | len: u32 LE | len bytes = the items' encodings, back to back
//! ```
//!
//! A stored value is exactly one encoding with nothing after it. Lists nest
//! at most [`MAX_LIST_NESTING`] deep, which decoding and parsing enforce so
//! that hostile input cannot exhaust the stack. [`Value::decode`] never
//! panics, whatever the bytes.

use super::ModelError;

/// Deepest list nesting accepted by [`Value::decode`] and the parser
/// (`$LB()` has nesting 1, `$LB($LB())` 2).
pub const MAX_LIST_NESTING: usize = 64;

/// Largest length of one string, byte string or list payload: lengths are
/// stored as `u32`.
pub const MAX_VALUE_PART: usize = u32::MAX as usize;

const TAG_STR: u8 = 0x01;
const TAG_INT: u8 = 0x02;
const TAG_FLOAT: u8 = 0x03;
const TAG_BYTES: u8 = 0x04;
const TAG_LIST: u8 = 0x05;

/// The value of a global node.
///
/// Equality is Rust's: `Float` compares as `f64` (so `NaN != NaN` and
/// `0.0 == -0.0`), although encoding and text keep the exact bits (text:
/// NaN payloads excepted).
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// A string.
    Str(String),
    /// An integer.
    Int(i64),
    /// A floating-point number (any `f64`, including NaN and infinities).
    Float(f64),
    /// Raw bytes.
    Bytes(Vec<u8>),
    /// A list, `$LB(...)`; items may be lists.
    List(Vec<Value>),
}

impl Value {
    /// The binary encoding.
    ///
    /// # Panics
    ///
    /// If a string, byte string or list payload is longer than
    /// [`MAX_VALUE_PART`] bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.encoded_len());
        self.encode_into(&mut out);
        out
    }

    /// Appends the binary encoding to `out`. Panics like [`Value::encode`].
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        match self {
            Value::Str(s) => put_bytes(out, TAG_STR, s.as_bytes()),
            Value::Int(n) => {
                out.push(TAG_INT);
                out.extend_from_slice(&n.to_le_bytes());
            }
            Value::Float(x) => {
                out.push(TAG_FLOAT);
                out.extend_from_slice(&x.to_bits().to_le_bytes());
            }
            Value::Bytes(b) => put_bytes(out, TAG_BYTES, b),
            Value::List(items) => {
                out.push(TAG_LIST);
                let len_at = out.len();
                out.extend_from_slice(&[0; 4]);
                for item in items {
                    item.encode_into(out);
                }
                let len = part_len(out.len() - len_at - 4);
                out[len_at..len_at + 4].copy_from_slice(&len.to_le_bytes());
            }
        }
    }

    /// Exact length of [`Value::encode`]'s output.
    pub fn encoded_len(&self) -> usize {
        match self {
            Value::Str(s) => 5 + s.len(),
            Value::Int(_) | Value::Float(_) => 9,
            Value::Bytes(b) => 5 + b.len(),
            Value::List(items) => 5 + items.iter().map(Value::encoded_len).sum::<usize>(),
        }
    }

    /// Decodes exactly one value that fills all of `bytes`.
    pub fn decode(bytes: &[u8]) -> Result<Value, ModelError> {
        let (v, next) = decode_at(bytes, 0, 0)?;
        if next != bytes.len() {
            return Err(ModelError::value_enc(
                next,
                "trailing bytes after the value",
            ));
        }
        Ok(v)
    }

    /// List nesting depth: 0 for a scalar, 1 + the deepest item for a list.
    pub fn nesting(&self) -> usize {
        match self {
            Value::List(items) => 1 + items.iter().map(Value::nesting).max().unwrap_or(0),
            _ => 0,
        }
    }
}

fn part_len(len: usize) -> u32 {
    u32::try_from(len).expect("value part longer than MAX_VALUE_PART (4 GiB)")
}

fn put_bytes(out: &mut Vec<u8>, tag: u8, b: &[u8]) {
    out.push(tag);
    out.extend_from_slice(&part_len(b.len()).to_le_bytes());
    out.extend_from_slice(b);
}

/// Reads `N` bytes at `pos`.
fn fixed<const N: usize>(b: &[u8], pos: usize, what: &'static str) -> Result<[u8; N], ModelError> {
    b.get(pos..pos.saturating_add(N))
        .and_then(|s| s.try_into().ok())
        .ok_or(ModelError::value_enc(pos, what))
}

/// Reads a `u32 LE` length at `pos` and the payload after it; returns the
/// payload's range.
fn part(b: &[u8], pos: usize) -> Result<std::ops::Range<usize>, ModelError> {
    let len = u32::from_le_bytes(fixed(b, pos, "length is truncated")?) as usize;
    let start = pos + 4;
    let end = start
        .checked_add(len)
        .filter(|&end| end <= b.len())
        .ok_or(ModelError::value_enc(pos, "length runs past the end"))?;
    Ok(start..end)
}

/// Decodes one value at `pos` of `b` (`b` ends where the enclosing list
/// ends); `depth` is the number of enclosing lists.
fn decode_at(b: &[u8], pos: usize, depth: usize) -> Result<(Value, usize), ModelError> {
    if b.get(pos) != Some(&TAG_LIST) {
        let (v, next) = decode_ref_at(b, pos, depth)?;
        return Ok((v.to_value(), next));
    }
    if depth >= MAX_LIST_NESTING {
        return Err(ModelError::value_enc(pos, "lists nested too deeply"));
    }
    let r = part(b, pos + 1)?;
    let inner = &b[..r.end];
    let mut items = Vec::new();
    let mut p = r.start;
    while p < r.end {
        let (item, next) = decode_at(inner, p, depth + 1)?;
        items.push(item);
        p = next;
    }
    Ok((Value::List(items), r.end))
}

/// Like [`decode_at`], borrowing from `b`; a list is checked whole (every
/// item, at every depth) without allocating.
fn decode_ref_at(b: &[u8], pos: usize, depth: usize) -> Result<(ValueRef<'_>, usize), ModelError> {
    let tag = *b.get(pos).ok_or(ModelError::value_enc(
        pos,
        "expected a value, found the end",
    ))?;
    let body = pos + 1;
    match tag {
        TAG_STR => {
            let r = part(b, body)?;
            let s = std::str::from_utf8(&b[r.clone()])
                .map_err(|_| ModelError::value_enc(r.start, "string is not valid UTF-8"))?;
            Ok((ValueRef::Str(s), r.end))
        }
        TAG_INT => {
            let n = i64::from_le_bytes(fixed(b, body, "integer is truncated")?);
            Ok((ValueRef::Int(n), body + 8))
        }
        TAG_FLOAT => {
            let bits = u64::from_le_bytes(fixed(b, body, "float is truncated")?);
            Ok((ValueRef::Float(f64::from_bits(bits)), body + 8))
        }
        TAG_BYTES => {
            let r = part(b, body)?;
            Ok((ValueRef::Bytes(&b[r.clone()]), r.end))
        }
        TAG_LIST => {
            if depth >= MAX_LIST_NESTING {
                return Err(ModelError::value_enc(pos, "lists nested too deeply"));
            }
            let r = part(b, body)?;
            let inner = &b[..r.end];
            let mut p = r.start;
            while p < r.end {
                p = decode_ref_at(inner, p, depth + 1)?.1;
            }
            Ok((ValueRef::List(&b[pos..r.end]), r.end))
        }
        _ => Err(ModelError::value_enc(pos, "unknown value tag")),
    }
}

/// A value read in place, borrowing the bytes it is stored as (see
/// `Session::get_with`): a string or byte string is not copied. A list
/// stays encoded until [`ValueRef::to_value`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ValueRef<'a> {
    Str(&'a str),
    Int(i64),
    Float(f64),
    Bytes(&'a [u8]),
    /// A list's whole encoding, already checked.
    List(&'a [u8]),
}

impl<'a> ValueRef<'a> {
    /// Reads exactly one value that fills all of `bytes`, checking all of
    /// it as [`Value::decode`] does (never panics, whatever the bytes).
    pub fn decode(bytes: &'a [u8]) -> Result<ValueRef<'a>, ModelError> {
        let (v, next) = decode_ref_at(bytes, 0, 0)?;
        if next != bytes.len() {
            return Err(ModelError::value_enc(
                next,
                "trailing bytes after the value",
            ));
        }
        Ok(v)
    }

    /// The owned value.
    pub fn to_value(&self) -> Value {
        match *self {
            ValueRef::Str(s) => Value::Str(s.to_owned()),
            ValueRef::Int(n) => Value::Int(n),
            ValueRef::Float(x) => Value::Float(x),
            ValueRef::Bytes(b) => Value::Bytes(b.to_vec()),
            // Checked when this was decoded, with at least as many
            // enclosing lists as now: decoding it again cannot fail.
            ValueRef::List(enc) => Value::decode(enc).unwrap_or(Value::List(Vec::new())),
        }
    }
}

impl From<i64> for Value {
    fn from(n: i64) -> Self {
        Value::Int(n)
    }
}

impl From<f64> for Value {
    fn from(x: f64) -> Self {
        Value::Float(x)
    }
}

impl From<&str> for Value {
    fn from(s: &str) -> Self {
        Value::Str(s.to_owned())
    }
}

impl From<String> for Value {
    fn from(s: String) -> Self {
        Value::Str(s)
    }
}
