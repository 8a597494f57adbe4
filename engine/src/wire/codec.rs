//! Field encoding inside a payload: [`Enc`] writes, [`Dec`] reads.
//!
//! ```text
//!   u8 u16 u32 u64 i64   fixed width, little-endian
//!   bool                 u8: 0 false, 1 true (anything else is malformed)
//!   bytes                len: u32 LE | len bytes
//!   string               bytes, UTF-8
//!   option<T>            u8: 0 none | 1 then T
//!   list<T>              count: u32 LE | count T's
//!   key                  bytes = Key::encode (collating encoding)
//!   value                bytes = Value::encode
//!   subscript            bytes = one subscript's collating encoding
//! ```
//!
//! Keys, values and subscripts are validated by decoding them. A decoder
//! never trusts a length or count to allocate: it checks the length against
//! the bytes left, and lists grow as items decode. A payload must be used up
//! exactly; trailing bytes are malformed.

use super::WireError;
use crate::model::{decode_subscript_at, encode_subscript_into, Key, Subscript, Value};

/// Builds a payload.
#[derive(Default)]
pub struct Enc {
    pub buf: Vec<u8>,
}

impl Enc {
    pub fn new() -> Enc {
        Enc::default()
    }

    pub fn u8(&mut self, v: u8) -> &mut Enc {
        self.buf.push(v);
        self
    }

    pub fn u16(&mut self, v: u16) -> &mut Enc {
        self.buf.extend_from_slice(&v.to_le_bytes());
        self
    }

    pub fn u32(&mut self, v: u32) -> &mut Enc {
        self.buf.extend_from_slice(&v.to_le_bytes());
        self
    }

    pub fn u64(&mut self, v: u64) -> &mut Enc {
        self.buf.extend_from_slice(&v.to_le_bytes());
        self
    }

    pub fn i64(&mut self, v: i64) -> &mut Enc {
        self.buf.extend_from_slice(&v.to_le_bytes());
        self
    }

    pub fn bool(&mut self, v: bool) -> &mut Enc {
        self.u8(u8::from(v))
    }

    /// # Panics
    ///
    /// If `b` is longer than `u32::MAX` bytes (no frame could carry it).
    pub fn bytes(&mut self, b: &[u8]) -> &mut Enc {
        self.count(b.len());
        self.buf.extend_from_slice(b);
        self
    }

    pub fn str(&mut self, s: &str) -> &mut Enc {
        self.bytes(s.as_bytes())
    }

    /// A list length. Panics like [`Enc::bytes`].
    pub fn count(&mut self, n: usize) -> &mut Enc {
        let n = u32::try_from(n).expect("a wire field or list longer than u32::MAX");
        self.u32(n)
    }

    pub fn key(&mut self, k: &Key) -> &mut Enc {
        self.bytes(&k.encode())
    }

    pub fn value(&mut self, v: &Value) -> &mut Enc {
        self.bytes(&v.encode())
    }

    pub fn subscript(&mut self, s: &Subscript) -> &mut Enc {
        let mut b = Vec::new();
        encode_subscript_into(s, &mut b);
        self.bytes(&b)
    }

    /// `0`, or `1` followed by what `f` writes.
    pub fn option<T>(&mut self, v: Option<&T>, f: impl FnOnce(&mut Enc, &T)) -> &mut Enc {
        match v {
            None => self.u8(0),
            Some(t) => {
                self.u8(1);
                f(self, t);
                self
            }
        }
    }
}

/// Reads the fields of one message's payload; errors name the field.
pub struct Dec<'a> {
    kind: u8,
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Dec<'a> {
    /// A decoder for a payload of message `kind` (named in errors).
    pub fn new(kind: u8, buf: &'a [u8]) -> Dec<'a> {
        Dec { kind, buf, pos: 0 }
    }

    /// A `Malformed` error for this message.
    pub fn err(&self, reason: impl Into<String>) -> WireError {
        WireError::malformed(self.kind, reason)
    }

    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], WireError> {
        let left = self.buf.len() - self.pos;
        if n > left {
            return Err(self.err(format!(
                "{what}: needs {n} bytes at offset {}, only {left} left",
                self.pos
            )));
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    fn array<const N: usize>(&mut self, what: &str) -> Result<[u8; N], WireError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N, what)?);
        Ok(a)
    }

    pub fn u8(&mut self, what: &str) -> Result<u8, WireError> {
        Ok(self.array::<1>(what)?[0])
    }

    pub fn u16(&mut self, what: &str) -> Result<u16, WireError> {
        Ok(u16::from_le_bytes(self.array(what)?))
    }

    pub fn u32(&mut self, what: &str) -> Result<u32, WireError> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }

    pub fn u64(&mut self, what: &str) -> Result<u64, WireError> {
        Ok(u64::from_le_bytes(self.array(what)?))
    }

    pub fn i64(&mut self, what: &str) -> Result<i64, WireError> {
        Ok(i64::from_le_bytes(self.array(what)?))
    }

    pub fn bool(&mut self, what: &str) -> Result<bool, WireError> {
        match self.u8(what)? {
            0 => Ok(false),
            1 => Ok(true),
            b => Err(self.err(format!("{what}: boolean byte {b} is neither 0 nor 1"))),
        }
    }

    pub fn bytes(&mut self, what: &str) -> Result<&'a [u8], WireError> {
        let n = self.u32(what)?;
        self.take(n as usize, what)
    }

    pub fn string(&mut self, what: &str) -> Result<String, WireError> {
        let b = self.bytes(what)?;
        std::str::from_utf8(b)
            .map(str::to_owned)
            .map_err(|_| self.err(format!("{what}: not valid UTF-8")))
    }

    /// A list count; fails early if even `min_item` bytes per item cannot
    /// fit in what is left.
    pub fn count(&mut self, what: &str, min_item: usize) -> Result<u32, WireError> {
        let n = self.u32(what)?;
        let left = self.buf.len() - self.pos;
        if (n as usize).saturating_mul(min_item.max(1)) > left {
            return Err(self.err(format!(
                "{what}: {n} items cannot fit in the {left} bytes left"
            )));
        }
        Ok(n)
    }

    pub fn key(&mut self, what: &str) -> Result<Key, WireError> {
        let b = self.bytes(what)?;
        Key::decode(b).map_err(|e| self.err(format!("{what}: {e}")))
    }

    pub fn value(&mut self, what: &str) -> Result<Value, WireError> {
        let b = self.bytes(what)?;
        Value::decode(b).map_err(|e| self.err(format!("{what}: {e}")))
    }

    pub fn subscript(&mut self, what: &str) -> Result<Subscript, WireError> {
        let b = self.bytes(what)?;
        match decode_subscript_at(b, 0) {
            Ok((s, end)) if end == b.len() => Ok(s),
            Ok(_) => Err(self.err(format!("{what}: trailing bytes after the subscript"))),
            Err(e) => Err(self.err(format!("{what}: {e}"))),
        }
    }

    pub fn option<T>(
        &mut self,
        what: &str,
        f: impl FnOnce(&mut Dec<'a>) -> Result<T, WireError>,
    ) -> Result<Option<T>, WireError> {
        match self.u8(what)? {
            0 => Ok(None),
            1 => f(self).map(Some),
            b => Err(self.err(format!("{what}: option tag {b} is neither 0 nor 1"))),
        }
    }

    /// Checks the payload is used up.
    pub fn finish(self) -> Result<(), WireError> {
        let left = self.buf.len() - self.pos;
        if left == 0 {
            Ok(())
        } else {
            Err(self.err(format!(
                "{left} trailing bytes after the message at offset {}",
                self.pos
            )))
        }
    }
}

/// A type with a wire form made of the fields above.
pub trait Fields: Sized {
    fn put(&self, e: &mut Enc);
    fn get(d: &mut Dec<'_>) -> Result<Self, WireError>;
}

/// Defines a fieldless enum carried as one `u8` code, with `code`,
/// `from_code`, `as_str`, `Display` and [`Fields`].
macro_rules! code_enum {
    (
        $(#[$m:meta])*
        pub enum $name:ident {
            $( $(#[$vm:meta])* $var:ident = $code:literal => $text:literal, )*
        }
    ) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name {
            $( $(#[$vm])* $var, )*
        }

        impl $name {
            /// Every variant, in code order.
            pub const ALL: &'static [$name] = &[$($name::$var,)*];

            /// The wire code.
            pub fn code(self) -> u8 {
                match self { $( $name::$var => $code, )* }
            }

            /// The variant with this wire code.
            pub fn from_code(code: u8) -> Option<$name> {
                match code { $( $code => Some($name::$var), )* _ => None }
            }

            /// The lower-case name people read.
            pub fn as_str(self) -> &'static str {
                match self { $( $name::$var => $text, )* }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl $crate::wire::codec::Fields for $name {
            fn put(&self, e: &mut $crate::wire::codec::Enc) {
                e.u8(self.code());
            }

            fn get(
                d: &mut $crate::wire::codec::Dec<'_>,
            ) -> Result<Self, $crate::wire::WireError> {
                let c = d.u8(stringify!($name))?;
                $name::from_code(c).ok_or_else(|| {
                    d.err(format!("unknown {} code {}", stringify!($name), c))
                })
            }
        }
    };
}
pub(crate) use code_enum;
