//! The collating key encoding: order, prefix and range properties against
//! the reference collation, exact bytes, decoding of hostile input.

use std::cmp::Ordering;

use proptest::prelude::*;

use super::reference::{is_self_or_ancestor, key_cmp, sub_cmp};
use super::strategies::{key, key_pair, number_pair, subscript};
use crate::model::*;

fn k(text: &str) -> Key {
    parse_key(text).unwrap()
}

fn cases(n: u32) -> ProptestConfig {
    ProptestConfig::with_cases(n)
}

proptest! {
    #![proptest_config(cases(4000))]

    #[test]
    fn encoding_order_is_collation_order((a, b) in key_pair()) {
        let expected = key_cmp(&a, &b);
        prop_assert_eq!(a.encode().cmp(&b.encode()), expected, "{} vs {}", a, b);
        prop_assert_eq!(a.cmp(&b), expected, "Ord on Key: {} vs {}", a, b);
        prop_assert_eq!(a == b, expected == Ordering::Equal);
    }

    #[test]
    fn subscript_order_is_collation_order(a in subscript(), b in subscript()) {
        let expected = sub_cmp(&a, &b);
        prop_assert_eq!(a.cmp(&b), expected, "{} vs {}", a, b);
        let (mut ea, mut eb) = (Vec::new(), Vec::new());
        encode_subscript_into(&a, &mut ea);
        encode_subscript_into(&b, &mut eb);
        prop_assert_eq!(ea.cmp(&eb), expected, "{} vs {}", a, b);
        // Prefix-free: no encoding is a proper prefix of another.
        if ea != eb {
            prop_assert!(!eb.starts_with(&ea) && !ea.starts_with(&eb));
        }
    }

    #[test]
    fn close_numbers_order_exactly((a, b) in number_pair(), flip in any::<bool>()) {
        let (a, b) = if flip { (b, a) } else { (a, b) };
        let expected = sub_cmp(&a, &b);
        prop_assert_eq!(a.cmp(&b), expected, "{} vs {}", a, b);
        let ka = Key::new("N", vec![a.clone(), Subscript::Int(1)])?;
        let kb = Key::new("N", vec![b.clone()])?;
        let cmp = ka.encode().cmp(&kb.encode());
        if expected == Ordering::Equal {
            prop_assert_eq!(cmp, Ordering::Greater);
        } else {
            prop_assert_eq!(cmp, expected, "{} vs {}", a, b);
        }
    }

    #[test]
    fn encoding_is_a_prefix_exactly_of_descendants((a, b) in key_pair()) {
        let (ea, eb) = (a.encode(), b.encode());
        prop_assert_eq!(eb.starts_with(&ea), is_self_or_ancestor(&a, &b), "{} / {}", a, b);
        prop_assert_eq!(a.is_ancestor_of(&b), is_self_or_ancestor(&a, &b) && a != b);
    }

    #[test]
    fn subtree_range_holds_exactly_the_subtree((a, b) in key_pair()) {
        let (ea, eb) = (a.encode(), b.encode());
        let end = subtree_end(&ea);
        let inside = ea <= eb && eb < end;
        prop_assert_eq!(inside, is_self_or_ancestor(&a, &b), "{} / {}", a, b);
    }

    #[test]
    fn sibling_subtrees_do_not_interleave(
        parent in key(),
        (x, y) in (subscript(), subscript()),
        tail_x in prop::collection::vec(subscript(), 0..3),
        tail_y in prop::collection::vec(subscript(), 0..3),
    ) {
        // Any descendant-or-self of ^P(x) sorts against any descendant-or-self
        // of its sibling ^P(y) as x against y.
        prop_assume!(x != y);
        let mut dx = parent.child(x.clone());
        dx.subs.extend(tail_x);
        let mut dy = parent.child(y.clone());
        dy.subs.extend(tail_y);
        prop_assert_eq!(dx.encode().cmp(&dy.encode()), sub_cmp(&x, &y), "{} vs {}", dx, dy);
    }

    #[test]
    fn decode_inverts_encode(a in key()) {
        let e = a.encode();
        prop_assert_eq!(Key::decode(&e)?, a.clone());
        prop_assert_eq!(a.encoded_len(), e.len());
        let mut buf = vec![7u8];
        a.encode_into(&mut buf);
        prop_assert_eq!(&buf[1..], &e[..]);
        prop_assert_eq!(encoded_depth(&e)?, a.depth());
        prop_assert_eq!(decode_last_subscript(&e)?, a.subs.last().cloned());
        // Ancestors are byte prefixes found by depth.
        for d in 0..=a.depth() {
            let len = prefix_len_at_depth(&e, d)?.unwrap();
            let anc = Key { global: a.global, subs: a.subs[..d].to_vec() };
            prop_assert_eq!(&e[..len], &anc.encode()[..]);
        }
        prop_assert_eq!(prefix_len_at_depth(&e, a.depth() + 1)?, None);
        // Walk subscript by subscript.
        let (name, mut pos) = decode_global(&e)?;
        prop_assert_eq!(name, a.global.as_str());
        for s in &a.subs {
            let (got, next) = decode_subscript_at(&e, pos)?;
            prop_assert_eq!(&got, s);
            prop_assert_eq!(skip_subscript(&e, pos)?, next);
            prop_assert_eq!(next - pos, subscript_encoded_len(s));
            pos = next;
        }
        prop_assert_eq!(pos, e.len());
    }

    #[test]
    fn decoding_random_bytes_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..40)) {
        if let Ok(key) = Key::decode(&bytes) {
            // Only canonical encodings decode.
            prop_assert_eq!(key.encode(), bytes.clone());
        }
        for pos in 0..=bytes.len() {
            let _ = decode_subscript_at(&bytes, pos);
            let _ = skip_subscript(&bytes, pos);
        }
        let _ = encoded_depth(&bytes);
        let _ = decode_last_subscript(&bytes);
        let _ = prefix_len_at_depth(&bytes, 2);
    }

    #[test]
    fn decoding_mutated_keys_never_panics(a in key(), at in any::<prop::sample::Index>(), byte in any::<u8>(), cut in any::<prop::sample::Index>()) {
        let mut e = a.encode();
        let i = at.index(e.len());
        e[i] = byte;
        if let Ok(key) = Key::decode(&e) {
            prop_assert_eq!(key.encode(), e.clone());
        }
        e.truncate(cut.index(e.len() + 1));
        if let Ok(key) = Key::decode(&e) {
            prop_assert_eq!(key.encode(), e);
        }
    }
}

#[test]
fn exact_bytes_of_the_documented_examples() {
    assert_eq!(encode_global_prefix("A"), b"A\x00");
    assert_eq!(Key::new("A", vec![]).unwrap().encode(), b"A\x00");
    assert_eq!(
        k("^A(1,\"b\")").encode(),
        [0x41, 0, 0x30, 0x04, 0x32, 0x00, 0x40, 0x62, 0x00, 0x01]
    );
    assert_eq!(k("^A(42)").encode(), [0x41, 0, 0x30, 0x04, 0x37, 0x50]);
    assert_eq!(k("^A(-1)").encode(), [0x41, 0, 0x10, 0xfb, 0xcd, 0xff]);
    assert_eq!(k("^A(0)").encode(), [0x41, 0, 0x20]);
    assert_eq!(
        k("^A(\"ab\")").encode(),
        [0x41, 0, 0x40, 0x61, 0x62, 0x00, 0x01]
    );
    assert_eq!(k("^A(\"\")").encode(), [0x41, 0, 0x40, 0x00, 0x01]);
    let nul = Key::new("A", vec![Subscript::Str("a\0".into())]).unwrap();
    assert_eq!(nul.encode(), [0x41, 0, 0x40, 0x61, 0x00, 0xff, 0x00, 0x01]);
    // 0.5 = 1.0 * 2^-1: exponent -1 + 1074 = 1073 = 0x0431, no fraction bits.
    assert_eq!(k("^A(0.5)").encode(), [0x41, 0, 0x30, 0x04, 0x31, 0x00]);
    assert_eq!(
        subtree_end(&k("^A(1)").encode()),
        [0x41, 0, 0x30, 0x04, 0x32, 0x00, 0x41]
    );
}

#[test]
fn a_hand_sorted_list_sorts_the_same_encoded() {
    let texts = [
        "^A",
        "^A(-1e300)",
        "^A(-9223372036854777856.0)",
        "^A(-9223372036854775808)",
        "^A(-9223372036854775807)",
        "^A(-2251799813685249)",
        "^A(-2251799813685248.5)",
        "^A(-2)",
        "^A(-1.5)",
        "^A(-1)",
        "^A(-1,\"x\")",
        "^A(-0.5)",
        "^A(-5e-324)",
        "^A(0)",
        "^A(0,0)",
        "^A(0,\"\")",
        "^A(5e-324)",
        "^A(0.1)",
        "^A(1)",
        "^A(1,-1)",
        "^A(1,2)",
        "^A(1,2,3)",
        "^A(1,\"a\")",
        "^A(1.0000000000000002)",
        "^A(1.5)",
        "^A(2)",
        "^A(42)",
        "^A(2251799813685248.5)",
        "^A(2251799813685249)",
        "^A(9223372036854775806)",
        "^A(9223372036854775807)",
        "^A(9223372036854775808.0)",
        "^A(1e300)",
        "^A(1.7976931348623157e308)",
        "^A(\"\")",
        "^A(\"\",1)",
        "^A(\"\0\")",
        "^A(\"\u{1}\")",
        "^A(\"1\")",
        "^A(\"a\")",
        "^A(\"a\",1)",
        "^A(\"a\0\")",
        "^A(\"a\0b\")",
        "^A(\"a\u{1}\")",
        "^A(\"ab\")",
        "^A(\"b\")",
        "^A(\"é\")",
        "^A(\"\u{FFFF}\")",
        "^A(\"\u{10FFFF}\")",
        "^A.B",
        "^AB",
        "^B(1)",
        "^a",
    ];
    let keys: Vec<Key> = texts.iter().map(|t| k(t)).collect();
    for w in keys.windows(2) {
        assert!(w[0].encode() < w[1].encode(), "{} < {}", w[0], w[1]);
        assert!(w[0] < w[1], "{} < {}", w[0], w[1]);
        assert_eq!(key_cmp(&w[0], &w[1]), Ordering::Less, "{} < {}", w[0], w[1]);
    }
}

#[test]
fn numbers_have_one_form() {
    assert_eq!(Subscript::from_f64(2.0).unwrap(), Subscript::Int(2));
    assert_eq!(Subscript::from_f64(-0.0).unwrap(), Subscript::Int(0));
    assert_eq!(
        Subscript::from_f64(-9_223_372_036_854_775_808.0).unwrap(),
        Subscript::Int(i64::MIN)
    );
    assert!(matches!(
        Subscript::from_f64(9_223_372_036_854_775_808.0).unwrap(),
        Subscript::Num(_)
    ));
    assert!(matches!(
        Subscript::from_f64(2.5).unwrap(),
        Subscript::Num(_)
    ));
    assert!(Real::new(3.0).is_none());
    let err = Subscript::from_f64(f64::NAN).unwrap_err();
    assert_eq!(
        err.to_string(),
        "NaN cannot be a subscript: subscripts must be finite numbers or strings"
    );
    assert!(Subscript::from_f64(f64::INFINITY).is_err());
}

#[test]
fn key_helpers() {
    let key = k("^Person(42,\"email\")");
    assert_eq!(key.depth(), 2);
    assert_eq!(key.parent(), Some(k("^Person(42)")));
    assert_eq!(k("^Person").parent(), None);
    assert_eq!(k("^Person(42)").child("email".into()), key);
    assert!(k("^Person").is_ancestor_of(&key));
    assert!(!key.is_ancestor_of(&key));
    assert!(!k("^Per").is_ancestor_of(&key));
    assert_eq!(key.last(), Some(&Subscript::Str("email".into())));
}

#[test]
fn key_size_limit() {
    let fits = Key::new("G", vec![Subscript::Str("x".repeat(MAX_ENCODED_KEY - 5))]).unwrap();
    assert_eq!(fits.encoded_len(), MAX_ENCODED_KEY);
    assert_eq!(fits.check_size(), Ok(()));
    let long = Key::new("G", vec![Subscript::Str("x".repeat(MAX_ENCODED_KEY - 4))]).unwrap();
    let err = long.check_size().unwrap_err();
    assert_eq!(
        err,
        ModelError::KeyTooLong {
            len: 1024,
            max: 1023
        }
    );
    assert_eq!(
        err.to_string(),
        "encoded key is 1024 bytes, longer than the maximum of 1023"
    );
}

#[test]
fn global_names() {
    for ok in [
        "A",
        "%",
        "%sys",
        "a1",
        "Person.Address",
        "X".repeat(31).as_str(),
    ] {
        assert!(Key::new(ok, vec![]).is_ok(), "{ok}");
    }
    let cases = [
        ("", "the name is empty"),
        ("1A", "it must start with a letter or '%'"),
        (".A", "it must start with a letter or '%'"),
        (
            "A%",
            "after the first character only letters, digits and '.' are allowed",
        ),
        (
            "A_B",
            "after the first character only letters, digits and '.' are allowed",
        ),
        ("Ünïcode", "it must start with a letter or '%'"),
        ("A.", "it must not end with '.'"),
    ];
    for (name, reason) in cases {
        let err = Key::new(name, vec![]).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("bad global name {name:?}: {reason}")
        );
    }
    let err = Key::new(&"X".repeat(32), vec![]).unwrap_err();
    assert!(
        err.to_string().ends_with("it is longer than 31 characters"),
        "{err}"
    );
}

#[test]
fn bad_key_encodings_say_where() {
    let cases: [(&[u8], ModelError); 8] = [
        (
            b"A",
            ModelError::key_enc(1, "global name is not terminated by 0x00"),
        ),
        (b"1\0", ModelError::key_enc(0, "not a valid global name")),
        (b"A\0\x07", ModelError::key_enc(2, "unknown subscript tag")),
        (
            b"A\0\x30\x04",
            ModelError::key_enc(3, "number exponent is truncated"),
        ),
        (
            b"A\0\x30\x04\x32",
            ModelError::key_enc(5, "number mantissa is truncated"),
        ),
        (
            b"A\0\x30\x04\x32\x01\x00",
            ModelError::key_enc(6, "number mantissa ends with a zero group"),
        ),
        (
            b"A\0\x40ab",
            ModelError::key_enc(5, "string subscript is not terminated"),
        ),
        (
            b"A\0\x40a\0\x07",
            ModelError::key_enc(5, "bad escape after 0x00 in string subscript"),
        ),
    ];
    for (bytes, want) in cases {
        assert_eq!(Key::decode(bytes).unwrap_err(), want, "{bytes:?}");
    }
    let err = Key::decode(b"A\0\x40\xff\0\x01").unwrap_err();
    assert_eq!(
        err.to_string(),
        "bad key encoding at byte 2: string subscript is not valid UTF-8"
    );
    // 2^64 - 1: an integer too big for i64 and too precise for f64.
    let mut e = b"A\0\x30\x04\x71".to_vec();
    e.extend_from_slice(&[0xff; 8]);
    e.push(0xfe);
    assert_eq!(
        Key::decode(&e).unwrap_err(),
        ModelError::key_enc(2, "number is neither an exact i64 nor an exact f64")
    );
    // A tenth group is never written.
    let mut e = b"A\0\x30\x04\x32".to_vec();
    e.extend_from_slice(&[0x03; 10]);
    assert_eq!(
        Key::decode(&e).unwrap_err(),
        ModelError::key_enc(14, "number mantissa is longer than 9 groups")
    );
}

/// Not a benchmark (the machine is shared); catches an accidental
/// per-subscript allocation or a quadratic loop. Run with `--ignored
/// --nocapture` to see the figure.
#[test]
#[ignore]
fn encode_speed() {
    let key = k("^Person(42,\"email\")");
    let n = 2_000_000u32;
    let t = std::time::Instant::now();
    let mut total = 0usize;
    for i in 0..n {
        let mut key = key.clone();
        key.subs[0] = Subscript::Int(i.into());
        total += std::hint::black_box(&key).encode().len();
    }
    let clone_and_encode = t.elapsed();
    let t = std::time::Instant::now();
    let mut buf = Vec::with_capacity(64);
    for _ in 0..n {
        buf.clear();
        std::hint::black_box(&key).encode_into(&mut buf);
        total += buf.len();
    }
    let encode_into = t.elapsed();
    let t = std::time::Instant::now();
    for _ in 0..n {
        total += std::hint::black_box(&key).encode().len();
    }
    let encode = t.elapsed();
    println!(
        "encode: {:?}/op, encode_into (reused buffer): {:?}/op, clone+set+encode: {:?}/op ({total})",
        encode / n,
        encode_into / n,
        clone_and_encode / n
    );
}
