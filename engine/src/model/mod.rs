//! Global keys and values: the data model of DESIGN.md §2.
//!
//! ```text
//!     ^Person(42)          = $LB("Ada",36)
//!     ^Person(42,"email")  = "ada@example.org"
//! ```
//!
//! - [`Key`] (`^Person(42,"email")`) = a global name + [`Subscript`]s
//!   (integers, non-integer numbers, strings). Keys have a collating byte
//!   encoding ([`Key::encode`], format in [`encoding`]) whose `memcmp` order
//!   is the collation order (`Ord` on [`Key`]): numbers before strings,
//!   numbers numerically, strings by code point, parents before children,
//!   sibling subtrees contiguous; the encoding of a key is a byte prefix of
//!   exactly its descendants' encodings, and [`subtree_end`] bounds a
//!   subtree's byte range.
//! - [`Value`] = string, integer, float, bytes or `$LB` list, with a compact
//!   tagged binary encoding ([`Value::encode`], format in [`value`]).
//! - Both have a text form ([`text`]): `Display` prints it canonically,
//!   `FromStr` / [`parse_key`] / [`parse_value`] read it back, with errors
//!   that name the problem and its column.
//!
//! Files: [`subscript`] and [`number`] (collation of subscripts), [`key`],
//! [`encoding`] (key bytes), [`value`] (value type and bytes), [`text`],
//! [`error`].

pub mod encoding;
pub mod error;
pub mod global;
pub mod key;
pub mod number;
pub mod subscript;
pub mod text;
pub mod value;

#[cfg(test)]
mod tests;

pub use encoding::{
    decode_global, decode_last_subscript, decode_subscript_at, encode_global_prefix,
    encode_subscript_into, encoded_depth, prefix_len_at_depth, skip_subscript,
    subscript_encoded_len, subtree_end,
};
pub use error::ModelError;
pub use global::GlobalName;
pub use key::{validate_global_name, Key, MAX_GLOBAL_NAME};
pub use number::Real;
pub use subscript::Subscript;
pub use text::{parse_key, parse_subscript, parse_value};
pub use value::{Value, ValueRef, MAX_LIST_NESTING, MAX_VALUE_PART};

/// Longest key encoding storage accepts, in bytes. [`Key::encode`] does not
/// enforce it; writers call [`Key::check_size`].
pub const MAX_ENCODED_KEY: usize = 1023;
