//! [`ModelError`]: everything that can go wrong building, encoding, decoding
//! or parsing keys and values.

use thiserror::Error;

/// An error from the data model.
///
/// Callers branch on the variant; the messages are written for people:
/// they name what was wrong and where (a column in a text form, a byte
/// offset in an encoding).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ModelError {
    /// A global name breaks the naming rules (see
    /// [`validate_global_name`](super::validate_global_name)).
    #[error("bad global name {name:?}: {reason}")]
    BadGlobalName {
        /// The rejected name.
        name: String,
        /// Which rule it breaks.
        reason: &'static str,
    },

    /// A number that cannot be a subscript (NaN or an infinity).
    #[error("{value} cannot be a subscript: subscripts must be finite numbers or strings")]
    BadSubscriptNumber {
        /// The number, as Rust prints it.
        value: String,
    },

    /// A text form (key or value) could not be parsed.
    ///
    /// `column` is 1-based and counts characters, not bytes; a problem at
    /// the end of the text has column `chars + 1`.
    #[error("{what} at column {column} in {text}")]
    Syntax {
        /// What was wrong, e.g. `expected ')'`.
        what: String,
        /// 1-based character column where it was found.
        column: usize,
        /// The whole text that was being parsed.
        text: String,
    },

    /// The encoded key is longer than [`MAX_ENCODED_KEY`](super::MAX_ENCODED_KEY).
    #[error("encoded key is {len} bytes, longer than the maximum of {max}")]
    KeyTooLong {
        /// Length of the encoding.
        len: usize,
        /// The limit.
        max: usize,
    },

    /// Bytes that are not a valid key encoding.
    #[error("bad key encoding at byte {pos}: {what}")]
    BadKeyEncoding {
        /// Byte offset of the problem in the encoded key.
        pos: usize,
        /// What was wrong.
        what: &'static str,
    },

    /// Bytes that are not a valid value encoding.
    #[error("bad value encoding at byte {pos}: {what}")]
    BadValueEncoding {
        /// Byte offset of the problem in the encoded value.
        pos: usize,
        /// What was wrong.
        what: &'static str,
    },
}

impl ModelError {
    pub(crate) fn key_enc(pos: usize, what: &'static str) -> ModelError {
        ModelError::BadKeyEncoding { pos, what }
    }

    pub(crate) fn value_enc(pos: usize, what: &'static str) -> ModelError {
        ModelError::BadValueEncoding { pos, what }
    }
}
