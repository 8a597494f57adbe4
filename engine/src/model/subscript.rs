//! [`Subscript`]: one typed component of a global key, and its collation.

use std::cmp::Ordering;

use super::number::{cmp_int_real, Real};
use super::ModelError;

/// One subscript of a global key: a number or a string.
///
/// # Collation (the [`Ord`] impl)
///
/// ```text
///     every number  <  every string
///     numbers:  numerically, Int and Num interleaved exactly
///               (-1e300 < i64::MIN < -1.5 < -1 < 0 < 0.5 < 1 < i64::MAX < 1e19)
///     strings:  by Unicode code point, a proper prefix first
///               ("" < "\0" < "a" < "a\0" < "ab" < "b" < "é")
/// ```
///
/// The collating encoding ([`encode_subscript_into`](super::encode_subscript_into))
/// sorts byte-wise in exactly this order.
///
/// # Invariant
///
/// Each number has one form: an integer that fits `i64` is always `Int`,
/// never `Num` ([`Real`] cannot hold one). Build numeric subscripts from an
/// `f64` with [`Subscript::from_f64`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Subscript {
    /// An integer.
    Int(i64),
    /// A finite number that is not an `i64`: fractional (`2.5`) or beyond
    /// the `i64` range (`1e20`).
    Num(Real),
    /// A string; any `char`, including NUL. The empty string is allowed.
    Str(String),
}

impl Subscript {
    /// The subscript for a number: `Int` if `x` is an exact `i64` (so
    /// `2.0` gives `Int(2)` and `-0.0` gives `Int(0)`), else `Num`.
    /// NaN and infinities are rejected.
    pub fn from_f64(x: f64) -> Result<Subscript, ModelError> {
        if !x.is_finite() {
            return Err(ModelError::BadSubscriptNumber {
                value: format!("{x}"),
            });
        }
        // A finite number is either a `Real` or an exact `i64`.
        Ok(match Real::new(x) {
            Some(r) => Subscript::Num(r),
            None => Subscript::Int(x as i64),
        })
    }

    /// True for `Int` and `Num`.
    pub fn is_number(&self) -> bool {
        !matches!(self, Subscript::Str(_))
    }

    /// The string, if this is a string subscript.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Subscript::Str(s) => Some(s),
            _ => None,
        }
    }

    /// The integer, if this is an integer subscript.
    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Subscript::Int(n) => Some(*n),
            _ => None,
        }
    }
}

impl PartialOrd for Subscript {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Subscript {
    fn cmp(&self, other: &Self) -> Ordering {
        use Subscript::{Int, Num, Str};
        match (self, other) {
            (Int(a), Int(b)) => a.cmp(b),
            (Int(a), Num(b)) => cmp_int_real(*a, *b),
            (Num(a), Int(b)) => cmp_int_real(*b, *a).reverse(),
            (Num(a), Num(b)) => a.cmp(b),
            // `str` orders by bytes; UTF-8 byte order is code-point order.
            (Str(a), Str(b)) => a.cmp(b),
            (Str(_), _) => Ordering::Greater,
            (_, Str(_)) => Ordering::Less,
        }
    }
}

impl From<i64> for Subscript {
    fn from(n: i64) -> Self {
        Subscript::Int(n)
    }
}

impl From<i32> for Subscript {
    fn from(n: i32) -> Self {
        Subscript::Int(n.into())
    }
}

impl From<&str> for Subscript {
    fn from(s: &str) -> Self {
        Subscript::Str(s.to_owned())
    }
}

impl From<String> for Subscript {
    fn from(s: String) -> Self {
        Subscript::Str(s)
    }
}

impl From<Real> for Subscript {
    fn from(r: Real) -> Self {
        Subscript::Num(r)
    }
}
