//! Tests of the data model.
//!
//! - [`strategies`]: proptest generators for keys, subscripts and values,
//!   biased towards the hard cases (shared prefixes, NULs, numbers that sit
//!   next to each other across the `i64`/`f64` boundary).
//! - [`reference`]: collation written directly from the rules, without the
//!   encoding or `Subscript`'s `Ord`, that both are checked against.
//! - [`key_encoding`], [`value_encoding`], [`text`]: the properties and the
//!   unit tests of each part.

mod key_encoding;
mod reference;
mod strategies;
mod text;
mod value_encoding;
