//! Numbers: [`Real`] (the non-integer numeric subscript), the exact binary
//! decomposition the collating encoding is built on, exact integer/float
//! comparison, and the canonical text form of an `f64`.
//!
//! # The exact decomposition
//!
//! Every numeric subscript is either an `i64` or a finite `f64`. Every
//! non-zero such number `v` is exactly
//!
//! ```text
//!     |v| = (1 + frac / 2^64) * 2^exp
//!
//!     exp  : -1074 ..= 1023   (i64 magnitudes use 0..=63)
//!     frac : u64, the bits after the leading 1, left-aligned (bit 63 is the
//!            first bit after the binary point); at most 63 bits are ever
//!            used (an i64 magnitude has at most 63 bits after its leading
//!            one, an f64 at most 52), so bit 0 is always 0
//! ```
//!
//! and `(exp, frac)` compared lexicographically orders magnitudes. Because
//! both kinds map into the same exact space, an `i64` and an `f64` compare
//! exactly, with no rounding through either type.

use std::cmp::Ordering;
use std::hash::{Hash, Hasher};

/// 2^63 as an `f64` (exact).
const TWO_POW_63: f64 = 9_223_372_036_854_775_808.0;

/// Smallest exponent of a non-zero finite `f64` (the least subnormal).
pub(crate) const MIN_EXP: i32 = -1074;
/// Largest exponent of a finite `f64`.
pub(crate) const MAX_EXP: i32 = 1023;
/// Smallest exponent of a normal `f64`.
const MIN_NORMAL_EXP: i32 = -1022;

/// A finite `f64` that is *not* exactly equal to any `i64`: either it has a
/// fractional part (`2.5`, `-0.001`) or it lies outside the `i64` range
/// (`1e20`, `-1e300`).
///
/// Invariant (enforced by [`Real::new`], the only constructor): finite, and
/// `Real::new(x)` is `None` whenever `x` equals some `i64` (so `-0.0`, `2.0`
/// and `-2^63` are not `Real`s). This keeps every number with exactly one
/// subscript form: integers are always [`Subscript::Int`](super::Subscript).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Real(f64);

impl Real {
    /// `Some` if `x` is finite and not exactly an `i64`.
    pub fn new(x: f64) -> Option<Real> {
        if !x.is_finite() || exact_i64(x).is_some() {
            None
        } else {
            Some(Real(x))
        }
    }

    /// The number.
    pub fn get(self) -> f64 {
        self.0
    }
}

// Sound: a `Real` is never NaN.
impl Eq for Real {}

impl Hash for Real {
    fn hash<H: Hasher>(&self, state: &mut H) {
        // Equal reals have equal bits: no NaN, and -0.0 is not a `Real`.
        self.0.to_bits().hash(state);
    }
}

impl PartialOrd for Real {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Real {
    fn cmp(&self, other: &Self) -> Ordering {
        // For finite values other than -0.0 the IEEE total order is the
        // numeric order.
        self.0.total_cmp(&other.0)
    }
}

/// `Some(n)` if `x` is exactly the integer `n` (`-0.0` gives `Some(0)`).
pub(crate) fn exact_i64(x: f64) -> Option<i64> {
    if x.fract() == 0.0 && (-TWO_POW_63..TWO_POW_63).contains(&x) {
        Some(x as i64)
    } else {
        None
    }
}

/// Exact comparison of an integer with a [`Real`].
pub(crate) fn cmp_int_real(a: i64, b: Real) -> Ordering {
    let x = b.0;
    if x >= TWO_POW_63 {
        return Ordering::Less;
    }
    if x < -TWO_POW_63 {
        return Ordering::Greater;
    }
    // Inside the i64 range a Real has a fractional part, so floor(x) < x and
    // floor(x) is an exact i64.
    let floor = x.floor() as i64;
    if a <= floor {
        Ordering::Less
    } else {
        Ordering::Greater
    }
}

/// `|v| = (1 + frac/2^64) * 2^exp`, see the module docs. Never zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Magnitude {
    pub exp: i32,
    pub frac: u64,
}

impl Magnitude {
    /// Magnitude of a non-zero unsigned integer.
    pub fn of_int(m: u64) -> Magnitude {
        debug_assert!(m != 0);
        let lz = m.leading_zeros();
        Magnitude {
            exp: 63 - lz as i32,
            // Shift the leading one out (in two steps: lz + 1 may be 64).
            frac: (m << lz) << 1,
        }
    }

    /// Magnitude of a finite, non-zero `f64` (its sign is ignored).
    pub fn of_float(x: f64) -> Magnitude {
        debug_assert!(x.is_finite() && x != 0.0);
        let bits = x.to_bits() & !(1u64 << 63);
        let biased = (bits >> 52) as i32;
        let mant = bits & ((1u64 << 52) - 1);
        if biased == 0 {
            // Subnormal: value = mant * 2^-1074, mant != 0.
            let lz = mant.leading_zeros();
            Magnitude {
                exp: 63 - lz as i32 + MIN_EXP,
                frac: (mant << lz) << 1,
            }
        } else {
            Magnitude {
                exp: biased - 1023,
                frac: mant << 12,
            }
        }
    }

    /// The number `±self` as an `i64` if it is one, else as a [`Real`] if it
    /// is an exact `f64`; `None` if it is neither.
    pub fn to_number(self, negative: bool) -> Option<Result<i64, Real>> {
        if (0..=63).contains(&self.exp) {
            let e = self.exp as u32;
            if self.frac << e == 0 {
                // An integer: the leading one and the top `e` fraction bits.
                let low = if e == 0 { 0 } else { self.frac >> (64 - e) };
                let m = (1u64 << e) | low;
                if !negative && m <= i64::MAX as u64 {
                    return Some(Ok(m as i64));
                }
                if negative && m <= 1u64 << 63 {
                    return Some(Ok(0i64.wrapping_sub(m as i64)));
                }
            }
        }
        if !(MIN_EXP..=MAX_EXP).contains(&self.exp) {
            return None;
        }
        let bits = if self.exp >= MIN_NORMAL_EXP {
            if self.frac << 52 != 0 {
                return None; // more than 52 fraction bits
            }
            (((self.exp + 1023) as u64) << 52) | (self.frac >> 12)
        } else {
            // Subnormal: the leading one sits at bit `keep` of the mantissa.
            let keep = (self.exp - MIN_EXP) as u32; // 0..=51
            if self.frac << keep != 0 {
                return None;
            }
            let low = if keep == 0 {
                0
            } else {
                self.frac >> (64 - keep)
            };
            (1u64 << keep) | low
        };
        let x = f64::from_bits(bits);
        Real::new(if negative { -x } else { x }).map(Err)
    }
}

/// Writes the canonical text of a finite `f64`: the shortest decimal that
/// reads back as the same number, always with a `.` or an exponent.
///
/// ```text
///     1e-5 <= |x| < 1e17   positional:  2.0  -0.5  0.00001  1234.5
///     otherwise            scientific:  1e17  2.5e-7  -1.7976931348623157e308
/// ```
///
/// `-0.0` prints as `-0.0`.
pub(crate) fn write_float(out: &mut impl std::fmt::Write, x: f64) -> std::fmt::Result {
    debug_assert!(x.is_finite());
    if x.is_sign_negative() {
        out.write_char('-')?;
    }
    if x == 0.0 {
        return out.write_str("0.0");
    }
    // `{:e}` gives the shortest round-trip digits: "d[.ddd]e[-]x".
    let sci = format!("{:e}", x.abs());
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    if !(-5..17).contains(&exp) {
        let (first, rest) = digits.split_at(1);
        out.write_str(first)?;
        if !rest.is_empty() {
            out.write_char('.')?;
            out.write_str(rest)?;
        }
        return write!(out, "e{exp}");
    }
    if exp < 0 {
        out.write_str("0.")?;
        for _ in 0..(-exp - 1) {
            out.write_char('0')?;
        }
        return out.write_str(&digits);
    }
    let int_len = exp as usize + 1;
    if digits.len() <= int_len {
        out.write_str(&digits)?;
        for _ in digits.len()..int_len {
            out.write_char('0')?;
        }
        out.write_str(".0")
    } else {
        let (int, frac) = digits.split_at(int_len);
        write!(out, "{int}.{frac}")
    }
}

/// What a decimal literal is, exactly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DecimalClass {
    /// Exactly this integer.
    Int(i64),
    /// An integer outside the `i64` range.
    BigInt,
    /// Has a non-zero fractional part.
    Fraction,
}

/// Classifies the decimal `±int_digits.frac_digits × 10^exp` exactly.
/// Digit strings hold only ASCII digits.
pub(crate) fn classify_decimal(
    negative: bool,
    int_digits: &str,
    frac_digits: &str,
    exp: i64,
) -> DecimalClass {
    let all = int_digits.bytes().chain(frac_digits.bytes());
    let sig: Vec<u8> = all.skip_while(|&d| d == b'0').collect();
    let trailing = sig.iter().rev().take_while(|&&d| d == b'0').count();
    let sig = &sig[..sig.len() - trailing];
    if sig.is_empty() {
        return DecimalClass::Int(0);
    }
    let scale = exp
        .saturating_sub(frac_digits.len() as i64)
        .saturating_add(trailing as i64);
    if scale < 0 {
        return DecimalClass::Fraction;
    }
    // 10^19 > 2^63, so anything with more than 19 digits is out of range.
    if sig.len() as i64 + scale > 19 {
        return DecimalClass::BigInt;
    }
    let mut m: u128 = 0;
    for &d in sig {
        m = m * 10 + u128::from(d - b'0');
    }
    for _ in 0..scale {
        m *= 10;
    }
    if !negative && m <= i64::MAX as u128 {
        DecimalClass::Int(m as i64)
    } else if negative && m <= 1u128 << 63 {
        DecimalClass::Int(0i64.wrapping_sub(m as i64))
    } else {
        DecimalClass::BigInt
    }
}
