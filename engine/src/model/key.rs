//! [`Key`]: a global reference such as `^Person(42,"email")`, and the rules
//! for global names.

use super::encoding::{
    decode_global, decode_subscript_at, encode_subscript_into, subscript_encoded_len,
    subscript_len_estimate, GLOBAL_END,
};
use super::global::GlobalName;
use super::subscript::Subscript;
use super::{ModelError, MAX_ENCODED_KEY};

/// Longest global name, in characters (= bytes: names are ASCII).
pub const MAX_GLOBAL_NAME: usize = 31;

/// A global name plus zero or more subscripts: `^Person(42,"email")` is
/// `Key { global: "Person", subs: [Int(42), Str("email")] }`.
///
/// Invariants: `global` is a valid name ([`validate_global_name`]); [`Key::new`],
/// [`Key::decode`] and the parser check it, code that fills the fields
/// directly must keep it. A key may be longer than [`MAX_ENCODED_KEY`] bytes
/// encoded; storage rejects such keys with [`Key::check_size`].
///
/// The derived [`Ord`] (global name by bytes, then subscripts in
/// [`Subscript`] collation, an ancestor before its descendants) is exactly
/// the byte order of [`Key::encode`].
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Key {
    /// Global name without the `^`.
    pub global: GlobalName,
    /// Subscripts, outermost first.
    pub subs: Vec<Subscript>,
}

/// Checks a global name (without `^`): 1 to 31 characters, the first an
/// ASCII letter or `%`, the rest ASCII letters, digits or `.`, not ending
/// with `.`.
pub fn validate_global_name(name: &str) -> Result<(), ModelError> {
    let bad = |reason| {
        Err(ModelError::BadGlobalName {
            name: name.to_owned(),
            reason,
        })
    };
    let bytes = name.as_bytes();
    let Some(&first) = bytes.first() else {
        return bad("the name is empty");
    };
    if !(first.is_ascii_alphabetic() || first == b'%') {
        return bad("it must start with a letter or '%'");
    }
    if !bytes[1..]
        .iter()
        .all(|b| b.is_ascii_alphanumeric() || *b == b'.')
    {
        return bad("after the first character only letters, digits and '.' are allowed");
    }
    if name.len() > MAX_GLOBAL_NAME {
        return bad("it is longer than 31 characters");
    }
    if name.ends_with('.') {
        return bad("it must not end with '.'");
    }
    Ok(())
}

impl Key {
    /// A key for `^global(subs...)`; checks the global name.
    pub fn new(global: &str, subs: Vec<Subscript>) -> Result<Key, ModelError> {
        Ok(Key {
            global: GlobalName::new(global)?,
            subs,
        })
    }

    /// The collating encoding (see [`encoding`](super::encoding)).
    pub fn encode(&self) -> Vec<u8> {
        let estimate =
            self.global.len() + 1 + self.subs.iter().map(subscript_len_estimate).sum::<usize>();
        let mut out = Vec::with_capacity(estimate);
        self.encode_into(&mut out);
        out
    }

    /// Appends the collating encoding to `out`.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self.global.as_bytes());
        out.push(GLOBAL_END);
        for s in &self.subs {
            encode_subscript_into(s, out);
        }
    }

    /// Exact length of [`Key::encode`]'s output, without encoding.
    pub fn encoded_len(&self) -> usize {
        self.global.len() + 1 + self.subs.iter().map(subscript_encoded_len).sum::<usize>()
    }

    /// `Err(KeyTooLong)` if the encoding is longer than [`MAX_ENCODED_KEY`].
    pub fn check_size(&self) -> Result<(), ModelError> {
        let len = self.encoded_len();
        if len > MAX_ENCODED_KEY {
            Err(ModelError::KeyTooLong {
                len,
                max: MAX_ENCODED_KEY,
            })
        } else {
            Ok(())
        }
    }

    /// Decodes a whole encoded key. Rejects anything [`Key::encode`] would
    /// not produce, so `Key::decode(b)?.encode() == b`.
    pub fn decode(bytes: &[u8]) -> Result<Key, ModelError> {
        let (global, mut pos) = decode_global(bytes)?;
        let mut subs = Vec::new();
        while pos < bytes.len() {
            let (s, next) = decode_subscript_at(bytes, pos)?;
            subs.push(s);
            pos = next;
        }
        Ok(Key {
            // `decode_global` checked it.
            global: GlobalName::from_checked(global),
            subs,
        })
    }

    /// This key with one more subscript.
    pub fn child(&self, s: Subscript) -> Key {
        let mut subs = Vec::with_capacity(self.subs.len() + 1);
        subs.extend_from_slice(&self.subs);
        subs.push(s);
        Key {
            global: self.global,
            subs,
        }
    }

    /// This key without its last subscript; `None` for a bare global.
    pub fn parent(&self) -> Option<Key> {
        let (_, init) = self.subs.split_last()?;
        Some(Key {
            global: self.global,
            subs: init.to_vec(),
        })
    }

    /// Number of subscripts (`^G` is 0, `^G(1,2)` is 2).
    pub fn depth(&self) -> usize {
        self.subs.len()
    }

    /// The last subscript, `None` for a bare global.
    pub fn last(&self) -> Option<&Subscript> {
        self.subs.last()
    }

    /// True if `other` is a strict descendant of `self` (same global,
    /// `self.subs` a proper prefix of `other.subs`).
    pub fn is_ancestor_of(&self, other: &Key) -> bool {
        self.global == other.global
            && self.subs.len() < other.subs.len()
            && other.subs.starts_with(&self.subs)
    }
}
