//! Reference collation, written from the rules alone: it never looks at an
//! encoding and does not call `Ord for Subscript`.

use std::cmp::Ordering;

use crate::model::{Key, Subscript};

/// Exact comparison of two numeric subscripts.
fn num_cmp(a: &Subscript, b: &Subscript) -> Ordering {
    match (a, b) {
        (Subscript::Int(x), Subscript::Int(y)) => i128::from(*x).cmp(&i128::from(*y)),
        (Subscript::Num(x), Subscript::Num(y)) => x.get().partial_cmp(&y.get()).expect("finite"),
        (Subscript::Int(n), Subscript::Num(x)) => int_float_cmp(*n, x.get()),
        (Subscript::Num(x), Subscript::Int(n)) => int_float_cmp(*n, x.get()).reverse(),
        _ => unreachable!("numbers only"),
    }
}

/// Rounding is monotonic, so if `n` rounded differs from `x` it is on the
/// same side as `n`; if they are equal, `x` is an integer-valued float no
/// larger than 2^63 in magnitude, exact in `i128`.
fn int_float_cmp(n: i64, x: f64) -> Ordering {
    let r = n as f64;
    if r < x {
        Ordering::Less
    } else if r > x {
        Ordering::Greater
    } else {
        i128::from(n).cmp(&(x as i128))
    }
}

/// Collation of subscripts: numbers before strings; strings by code point.
pub fn sub_cmp(a: &Subscript, b: &Subscript) -> Ordering {
    match (a.as_str(), b.as_str()) {
        (Some(x), Some(y)) => x.chars().cmp(y.chars()),
        (Some(_), None) => Ordering::Greater,
        (None, Some(_)) => Ordering::Less,
        (None, None) => num_cmp(a, b),
    }
}

/// Collation of keys: global name by characters, then subscripts, then an
/// ancestor before its descendants.
pub fn key_cmp(a: &Key, b: &Key) -> Ordering {
    let by_name = a.global.chars().cmp(b.global.chars());
    if by_name != Ordering::Equal {
        return by_name;
    }
    for (x, y) in a.subs.iter().zip(&b.subs) {
        let c = sub_cmp(x, y);
        if c != Ordering::Equal {
            return c;
        }
    }
    a.subs.len().cmp(&b.subs.len())
}

/// `a` is `b` or an ancestor of `b`.
pub fn is_self_or_ancestor(a: &Key, b: &Key) -> bool {
    a.global == b.global && b.subs.starts_with(&a.subs)
}
