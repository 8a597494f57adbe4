//! The binary value encoding: round trip, exact bytes, hostile input.

use proptest::prelude::*;

use super::strategies::{same_bits, value};
use crate::model::*;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3000))]

    #[test]
    fn decode_inverts_encode(v in value()) {
        let e = v.encode();
        prop_assert_eq!(e.len(), v.encoded_len());
        let back = Value::decode(&e)?;
        prop_assert!(same_bits(&back, &v), "{:?} came back as {:?}", v, back);
        let mut buf = vec![9u8];
        v.encode_into(&mut buf);
        prop_assert_eq!(&buf[1..], &e[..]);
    }

    #[test]
    fn decoding_random_bytes_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..64)) {
        if let Ok(v) = Value::decode(&bytes) {
            prop_assert_eq!(v.encode(), bytes);
        }
    }

    #[test]
    fn decoding_mutated_values_never_panics(v in value(), at in any::<prop::sample::Index>(), byte in any::<u8>(), cut in any::<prop::sample::Index>()) {
        let mut e = v.encode();
        let i = at.index(e.len());
        e[i] = byte;
        if let Ok(d) = Value::decode(&e) {
            prop_assert_eq!(d.encode(), e.clone());
        }
        e.truncate(cut.index(e.len() + 1));
        let _ = Value::decode(&e);
    }

    /// The borrowed reading accepts exactly what the owned one does, and
    /// gives the same value.
    #[test]
    fn borrowed_decoding_agrees_with_owned(v in value(), at in any::<prop::sample::Index>(), byte in any::<u8>(), mutate in any::<bool>()) {
        let mut e = v.encode();
        if mutate {
            let i = at.index(e.len());
            e[i] = byte;
        }
        match (Value::decode(&e), ValueRef::decode(&e)) {
            (Ok(owned), Ok(borrowed)) => {
                let back = borrowed.to_value();
                prop_assert!(same_bits(&back, &owned), "{:?} vs {:?}", back, owned);
            }
            (Err(a), Err(b)) => prop_assert_eq!(a, b),
            (a, b) => prop_assert!(false, "owned {:?}, borrowed {:?}", a, b),
        }
    }
}

#[test]
fn borrowed_values_point_into_the_encoding() {
    let e = Value::Bytes(vec![7; 100]).encode();
    match ValueRef::decode(&e).unwrap() {
        ValueRef::Bytes(b) => assert_eq!(b.as_ptr(), e[5..].as_ptr()),
        other => panic!("{other:?}"),
    }
    let deep = (0..=MAX_LIST_NESTING).fold(Value::Int(1), |v, _| Value::List(vec![v]));
    assert!(ValueRef::decode(&deep.encode()).is_err(), "too deep");
}

#[test]
fn exact_bytes() {
    assert_eq!(
        Value::Str("ab".into()).encode(),
        [0x01, 2, 0, 0, 0, b'a', b'b']
    );
    assert_eq!(
        Value::Int(-2).encode(),
        [0x02, 0xfe, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]
    );
    assert_eq!(
        Value::Float(1.0).encode(),
        [0x03, 0, 0, 0, 0, 0, 0, 0xf0, 0x3f]
    );
    assert_eq!(Value::Bytes(vec![0xff]).encode(), [0x04, 1, 0, 0, 0, 0xff]);
    let list = Value::List(vec![Value::Int(1), Value::List(vec![])]);
    let mut want = vec![0x05, 14, 0, 0, 0, 0x02, 1, 0, 0, 0, 0, 0, 0, 0];
    want.extend_from_slice(&[0x05, 0, 0, 0, 0]);
    assert_eq!(list.encode(), want);
}

#[test]
fn bad_value_encodings_say_where() {
    let cases: [(&[u8], ModelError); 8] = [
        (
            b"",
            ModelError::value_enc(0, "expected a value, found the end"),
        ),
        (b"\x09", ModelError::value_enc(0, "unknown value tag")),
        (
            b"\x02\x01\x02",
            ModelError::value_enc(1, "integer is truncated"),
        ),
        (b"\x03\x01", ModelError::value_enc(1, "float is truncated")),
        (
            b"\x01\x05\0\0\0ab",
            ModelError::value_enc(1, "length runs past the end"),
        ),
        (
            b"\x01\x01\0",
            ModelError::value_enc(1, "length is truncated"),
        ),
        (
            b"\x01\x01\0\0\0\xff",
            ModelError::value_enc(5, "string is not valid UTF-8"),
        ),
        (
            b"\x04\0\0\0\0\0",
            ModelError::value_enc(5, "trailing bytes after the value"),
        ),
    ];
    for (bytes, want) in cases {
        assert_eq!(Value::decode(bytes).unwrap_err(), want, "{bytes:?}");
    }
    // An item may not run past the end of its list.
    let err = Value::decode(b"\x05\x02\0\0\0\x02\0\0\0\0\0\0\0\0").unwrap_err();
    assert_eq!(err, ModelError::value_enc(6, "integer is truncated"));
    assert_eq!(
        err.to_string(),
        "bad value encoding at byte 6: integer is truncated"
    );
}

#[test]
fn nesting_is_limited() {
    let mut v = Value::List(vec![]);
    for _ in 1..MAX_LIST_NESTING {
        v = Value::List(vec![v]);
    }
    assert_eq!(v.nesting(), MAX_LIST_NESTING);
    assert_eq!(Value::decode(&v.encode()).unwrap(), v);
    let deeper = Value::List(vec![v]);
    let err = Value::decode(&deeper.encode()).unwrap_err();
    assert_eq!(
        err,
        ModelError::value_enc(5 * MAX_LIST_NESTING, "lists nested too deeply")
    );
    // A hostile, very deep header chain is refused without recursion trouble.
    let mut hostile = Vec::new();
    for i in (0..100_000u32).rev() {
        hostile.push(0x05);
        hostile.extend_from_slice(&(5 * i).to_le_bytes());
    }
    assert!(Value::decode(&hostile).is_err());
}
