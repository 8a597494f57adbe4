//! proptest generators, biased towards collisions and edge cases.

use proptest::prelude::*;

use crate::model::{Key, Subscript, Value};

/// Integers, dense near the places where encodings change shape.
pub fn int() -> impl Strategy<Value = i64> {
    prop_oneof![
        any::<i64>(),
        -3i64..=3,
        // Few significant bits at any scale: equal exponents with different
        // mantissa lengths.
        (any::<u16>(), 0u32..48, any::<bool>()).prop_map(|(bits, shift, neg)| {
            let m = i64::from(bits) << shift;
            if neg {
                -m
            } else {
                m
            }
        }),
        (0u32..64, -2i64..=2, any::<bool>()).prop_map(|(k, d, neg)| {
            let p = (1i64 << k.min(62)).wrapping_add(d);
            if neg {
                p.wrapping_neg()
            } else {
                p
            }
        }),
        Just(i64::MIN),
        Just(i64::MAX),
        Just(i64::MIN + 1),
        Just(i64::MAX - 1),
    ]
}

/// Finite floats, many of them next to integers or beyond the i64 range.
pub fn finite_float() -> impl Strategy<Value = f64> {
    prop_oneof![
        any::<f64>().prop_filter("finite", |x| x.is_finite()),
        (int(), 0u32..70).prop_map(|(n, k)| n as f64 / 2f64.powi(k as i32)),
        (int(), -1i32..=1).prop_map(|(n, d)| n as f64 + f64::from(d) * 0.5),
        prop_oneof![
            Just(9_223_372_036_854_775_808.0),
            Just(-9_223_372_036_854_777_856.0),
            Just(1e300),
            Just(-1e300),
            Just(f64::MAX),
            Just(f64::MIN),
            Just(f64::MIN_POSITIVE),
            Just(5e-324),
            Just(-5e-324),
            Just(0.1),
            Just(-0.5),
        ],
    ]
}

/// Strings over a small alphabet (to get shared prefixes and equal
/// strings) with NUL, 0x01, DEL, multi-byte and astral characters, or any
/// string at all.
pub fn string() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => "[\u{0}\u{1}ab\"\u{7f}\u{80}é\u{FFFF}\u{10FFFF}]{0,4}",
        1 => any::<String>(),
    ]
}

pub fn subscript() -> impl Strategy<Value = Subscript> {
    prop_oneof![
        3 => int().prop_map(Subscript::Int),
        2 => finite_float().prop_map(|x| Subscript::from_f64(x).expect("finite")),
        3 => string().prop_map(Subscript::Str),
    ]
}

/// Valid global names, often sharing prefixes.
pub fn global() -> impl Strategy<Value = String> {
    prop_oneof![
        "[AB][AB.]{0,2}[AB]?",
        "%[a-z0-9.]{0,3}[a-z]",
        "[A-Za-z%][A-Za-z0-9]{0,30}",
    ]
    .prop_filter("valid name", |n| {
        crate::model::validate_global_name(n).is_ok()
    })
}

pub fn key() -> impl Strategy<Value = Key> {
    (global(), prop::collection::vec(subscript(), 0..5))
        .prop_map(|(global, subs)| Key::new(&global, subs).expect("valid name"))
}

/// Pairs of keys that often share a global and a run of subscripts, so that
/// ancestor/descendant and sibling relations come up.
pub fn key_pair() -> impl Strategy<Value = (Key, Key)> {
    prop_oneof![
        (key(), key()),
        (key(), prop::collection::vec(subscript(), 0..4), 0usize..5).prop_map(|(a, tail, keep)| {
            let mut b = a.clone();
            b.subs.truncate(keep.min(a.subs.len()));
            b.subs.extend(tail);
            (a, b)
        }),
    ]
}

pub fn value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        string().prop_map(Value::Str),
        int().prop_map(Value::Int),
        prop_oneof![
            any::<f64>(),
            finite_float(),
            Just(f64::NAN),
            Just(f64::INFINITY),
            Just(f64::NEG_INFINITY),
            Just(-0.0),
        ]
        .prop_map(Value::Float),
        prop::collection::vec(any::<u8>(), 0..8).prop_map(Value::Bytes),
    ];
    leaf.prop_recursive(4, 32, 5, |inner| {
        prop::collection::vec(inner, 0..5).prop_map(Value::List)
    })
}

/// Equality that also tells NaN from NaN and 0.0 from -0.0 by bits.
pub fn same_bits(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Float(x), Value::Float(y)) => x.to_bits() == y.to_bits(),
        (Value::List(x), Value::List(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(p, q)| same_bits(p, q))
        }
        _ => a == b,
    }
}

/// Equality of values as the text form keeps them: exact bits, except that
/// every NaN is one NaN.
pub fn same_text_value(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Float(x), Value::Float(y)) if x.is_nan() => y.is_nan(),
        (Value::Float(x), Value::Float(y)) => x.to_bits() == y.to_bits(),
        (Value::List(x), Value::List(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(p, q)| same_text_value(p, q))
        }
        _ => a == b,
    }
}

/// Pairs of numbers that share most of their bits (low bits cleared or one
/// bit flipped, neighbouring floats, an integer and a float beside it), so
/// their encodings share an exponent and differ late in the mantissa.
pub fn number_pair() -> impl Strategy<Value = (Subscript, Subscript)> {
    let num = |x: f64| Subscript::from_f64(x).expect("finite");
    prop_oneof![
        (int(), 0u32..64, 0u8..3).prop_map(|(a, k, mode)| {
            let b = match mode {
                0 => a & !(1i64 << k).wrapping_sub(1),
                1 => a ^ (1i64 << k),
                _ => a.wrapping_add(1),
            };
            (Subscript::Int(a), Subscript::Int(b))
        }),
        (finite_float(), 0u32..64, 0u8..3).prop_filter_map("finite", move |(x, k, mode)| {
            let bits = x.to_bits();
            let y = f64::from_bits(match mode {
                0 => bits & !((1u64 << k) - 1),
                1 => bits ^ (1u64 << (k % 52)),
                _ => bits.wrapping_add(1),
            });
            y.is_finite().then(|| (num(x), num(y)))
        }),
        (
            int(),
            prop_oneof![Just(0.5), Just(-0.5), Just(0.25), Just(1e-3)]
        )
            .prop_map(move |(a, d)| { (Subscript::Int(a), num(a as f64 + d)) }),
    ]
}
