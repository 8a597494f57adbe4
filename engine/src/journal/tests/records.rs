//! Payload and frame encoding.

use proptest::prelude::*;

use super::{every_kind, random_record, rng};
use crate::journal::{FrameHeader, Record, RecordError, RecordKind, MAX_RECORD};
use crate::Lsn;

fn encode(r: &Record) -> Vec<u8> {
    let mut v = Vec::new();
    r.encode_into(&mut v);
    v
}

#[test]
fn every_kind_round_trips() {
    for rec in every_kind() {
        let payload = encode(&rec);
        assert_eq!(payload.len() as u64, rec.payload_len(), "{rec:?}");
        let back = Record::decode(rec.kind().as_u8(), &payload).unwrap();
        assert_eq!(back, rec);
    }
    let kinds: std::collections::HashSet<RecordKind> =
        every_kind().iter().map(Record::kind).collect();
    assert_eq!(kinds.len(), RecordKind::ALL.len(), "every kind is covered");
}

/// What the write path journals by reference decodes as the record it
/// stands for, with exact lengths.
#[test]
fn change_refs_decode_as_their_records() {
    use crate::journal::ChangeRef;
    let key = b"\x01B\x00\x02k".to_vec();
    let changes = [
        ChangeRef::set(4, 5, "DB", &key, b"new", None),
        ChangeRef::set(4, 5, "DB", &key, b"new", Some(b"old")),
        ChangeRef::set(0, 0, "", &[], &[], Some(&[])),
        ChangeRef::kill(9, 10, "USER", &key, b"gone"),
    ];
    for c in changes {
        let mut payload = Vec::new();
        c.encode_into(&mut payload);
        assert_eq!(payload.len() as u64, c.payload_len(), "{c:?}");
        let rec = Record::decode(c.kind().as_u8(), &payload).unwrap();
        assert_eq!(rec.kind(), c.kind());
        let mut again = Vec::new();
        rec.as_change().expect("a change").encode_into(&mut again);
        assert_eq!(again, payload, "{rec:?}");
    }
}

#[test]
fn kind_bytes_are_stable() {
    // On-disk values: changing one is a format change.
    let expect = [
        (RecordKind::Set, 1),
        (RecordKind::Kill, 2),
        (RecordKind::TxnBegin, 3),
        (RecordKind::TxnCommit, 4),
        (RecordKind::TxnRollback, 5),
        (RecordKind::Checkpoint, 6),
        (RecordKind::Epoch, 7),
        (RecordKind::Database, 8),
    ];
    for (kind, byte) in expect {
        assert_eq!(kind.as_u8(), byte);
        assert_eq!(RecordKind::from_u8(byte), Some(kind));
    }
    assert_eq!(RecordKind::from_u8(0), None);
    assert_eq!(RecordKind::from_u8(9), None);
    assert_eq!(RecordKind::from_u8(255), None);
}

#[test]
fn payload_layout_is_little_endian_and_length_prefixed() {
    let rec = Record::Kill {
        txn: 0x0102,
        time_us: 3,
        db: "D".into(),
        key: vec![9, 8],
        before: vec![7],
    };
    let mut expect = Vec::new();
    expect.extend_from_slice(&0x0102u64.to_le_bytes());
    expect.extend_from_slice(&3u64.to_le_bytes());
    expect.extend_from_slice(&[1, 0, 0, 0, b'D']);
    expect.extend_from_slice(&[2, 0, 0, 0, 9, 8]);
    expect.extend_from_slice(&[1, 0, 0, 0, 7]);
    assert_eq!(encode(&rec), expect);
}

#[test]
fn every_truncation_and_extension_is_an_error() {
    for rec in every_kind() {
        let payload = encode(&rec);
        for cut in 0..payload.len() {
            assert!(
                Record::decode(rec.kind().as_u8(), &payload[..cut]).is_err(),
                "{rec:?} cut at {cut}"
            );
        }
        let mut longer = payload.clone();
        longer.push(0);
        assert_eq!(
            Record::decode(rec.kind().as_u8(), &longer),
            Err(RecordError::TrailingBytes(1))
        );
    }
}

#[test]
fn hostile_lengths_do_not_allocate_or_panic() {
    // A checkpoint claiming 2^32-1 open transactions in a 20-byte payload.
    let mut p = Vec::new();
    p.extend_from_slice(&0u64.to_le_bytes());
    p.extend_from_slice(&u32::MAX.to_le_bytes());
    p.extend_from_slice(&0u64.to_le_bytes());
    assert!(matches!(
        Record::decode(RecordKind::Checkpoint.as_u8(), &p),
        Err(RecordError::FieldTooLong {
            field: "open_txns",
            ..
        })
    ));
    // A SET whose db length is 4 GiB.
    let mut p = vec![0u8; 16];
    p.extend_from_slice(&u32::MAX.to_le_bytes());
    assert!(matches!(
        Record::decode(RecordKind::Set.as_u8(), &p),
        Err(RecordError::FieldTooLong { field: "db", .. })
    ));
    // Bad flag and bad UTF-8.
    let mut rec = encode(&Record::TxnRollback {
        txn: 1,
        to: Lsn(2),
        full: true,
        time_us: 3,
    });
    rec[16] = 2;
    assert_eq!(
        Record::decode(RecordKind::TxnRollback.as_u8(), &rec),
        Err(RecordError::BadFlag {
            field: "full",
            value: 2
        })
    );
    let mut rec = encode(&Record::Epoch {
        epoch: 1,
        time_us: 1,
    });
    assert_eq!(Record::decode(0, &rec), Err(RecordError::UnknownKind(0)));
    rec.clear();
    let mut p = vec![0u8; 16];
    p.extend_from_slice(&[2, 0, 0, 0, 0xc3, 0x28]);
    assert_eq!(
        Record::decode(RecordKind::Kill.as_u8(), &p),
        Err(RecordError::BadUtf8 { field: "db" })
    );
}

#[test]
fn oversized_records_are_rejected_before_encoding() {
    let rec = Record::Set {
        txn: 0,
        time_us: 0,
        db: "DB".into(),
        key: Vec::new(),
        value: vec![0; MAX_RECORD as usize],
        before: None,
    };
    assert!(matches!(
        rec.check_size(),
        Err(RecordError::TooLarge { .. })
    ));
    let fits = Record::Set {
        txn: 0,
        time_us: 0,
        db: "DB".into(),
        key: Vec::new(),
        value: vec![0; MAX_RECORD as usize - 100],
        before: None,
    };
    assert_eq!(u64::from(fits.check_size().unwrap()), fits.payload_len());
}

#[test]
fn frame_header_layout_and_chain() {
    let payload = b"hello";
    let h = FrameHeader::new(0xdead_beef, RecordKind::Epoch, payload);
    let b = h.to_bytes();
    assert_eq!(&b[0..4], &5u32.to_le_bytes());
    assert_eq!(b[4], 7);
    // crc = crc32c(prev_crc LE | len LE | kind | payload)
    let mut covered = Vec::new();
    covered.extend_from_slice(&0xdead_beefu32.to_le_bytes());
    covered.extend_from_slice(&5u32.to_le_bytes());
    covered.push(7);
    covered.extend_from_slice(payload);
    assert_eq!(&b[5..9], &crc32c::crc32c(&covered).to_le_bytes());
    assert_eq!(FrameHeader::parse(&b), Ok(h));
    assert!(h.check(0xdead_beef, payload).is_ok());
    assert!(
        h.check(0xdead_beee, payload).is_err(),
        "another predecessor breaks the chain"
    );
    assert!(h.check(0xdead_beef, b"hellp").is_err());
    // The crc computed outside a lock from the payload crc is the same.
    let combined =
        FrameHeader::from_payload_crc(0xdead_beef, RecordKind::Epoch, 5, crc32c::crc32c(payload));
    assert_eq!(combined, h);
    // And the appenders' path, for small and large payloads.
    use crate::journal::frame::{PayloadSum, SMALL_PAYLOAD};
    for n in [0, 5, SMALL_PAYLOAD, SMALL_PAYLOAD + 1, 70_000] {
        let p: Vec<u8> = (0..n).map(|i| (i * 31 + i / 7) as u8).collect();
        let chained = FrameHeader::chained(0xdead_beef, RecordKind::Set, &p, PayloadSum::of(&p));
        assert_eq!(
            chained,
            FrameHeader::new(0xdead_beef, RecordKind::Set, &p),
            "{n} bytes"
        );
    }
}

#[test]
fn frame_header_rejects_zeros_lengths_and_kinds() {
    use crate::journal::Damage;
    assert_eq!(FrameHeader::parse(&[0; 9]), Err(Damage::ZeroFilled));
    let mut b = FrameHeader::new(0, RecordKind::Set, b"x").to_bytes();
    b[4] = 0;
    assert_eq!(FrameHeader::parse(&b), Err(Damage::BadKind { kind: 0 }));
    b[4] = 9;
    assert_eq!(FrameHeader::parse(&b), Err(Damage::BadKind { kind: 9 }));
    let mut b = FrameHeader::new(0, RecordKind::Set, b"x").to_bytes();
    b[0..4].copy_from_slice(&(MAX_RECORD + 1).to_le_bytes());
    assert!(matches!(
        FrameHeader::parse(&b),
        Err(Damage::BadLength { .. })
    ));
}

#[test]
fn random_records_round_trip_seeded() {
    let mut r = rng(1);
    for _ in 0..2000 {
        let rec = random_record(&mut r, 64);
        assert_eq!(
            Record::decode(rec.kind().as_u8(), &encode(&rec)).unwrap(),
            rec
        );
    }
}

fn any_bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(any::<u8>(), 0..max)
}

pub(super) fn any_record() -> impl Strategy<Value = Record> {
    prop_oneof![
        (
            any::<u64>(),
            any::<u64>(),
            "[a-zA-Z0-9é]{0,12}",
            any_bytes(40),
            any_bytes(200),
            proptest::option::of(any_bytes(200))
        )
            .prop_map(|(txn, time_us, db, key, value, before)| Record::Set {
                txn,
                time_us,
                db,
                key,
                value,
                before
            }),
        (
            any::<u64>(),
            any::<u64>(),
            "[a-zA-Z0-9]{0,12}",
            any_bytes(40),
            any_bytes(200)
        )
            .prop_map(|(txn, time_us, db, key, before)| Record::Kill {
                txn,
                time_us,
                db,
                key,
                before
            }),
        (any::<u64>(), any::<u8>(), any::<u64>()).prop_map(|(txn, level, time_us)| {
            Record::TxnBegin {
                txn,
                level,
                time_us,
            }
        }),
        (any::<u64>(), any::<u64>()).prop_map(|(txn, time_us)| Record::TxnCommit { txn, time_us }),
        (any::<u64>(), any::<u64>(), any::<bool>(), any::<u64>()).prop_map(
            |(txn, to, full, time_us)| Record::TxnRollback {
                txn,
                to: Lsn(to),
                full,
                time_us
            }
        ),
        (
            any::<u64>(),
            proptest::collection::vec((any::<u64>(), any::<u64>()), 0..6),
            any::<u64>()
        )
            .prop_map(|(redo_from, open, time_us)| Record::Checkpoint {
                redo_from: Lsn(redo_from),
                open_txns: open.into_iter().map(|(t, l)| (t, Lsn(l))).collect(),
                time_us,
            }),
        (any::<u64>(), any::<u64>()).prop_map(|(epoch, time_us)| Record::Epoch { epoch, time_us }),
        ("[A-Z][A-Z0-9]{0,8}", any::<u64>())
            .prop_map(|(name, time_us)| Record::Database { name, time_us }),
    ]
}

proptest! {
    #[test]
    fn prop_record_round_trip(rec in any_record()) {
        let payload = encode(&rec);
        prop_assert_eq!(payload.len() as u64, rec.payload_len());
        prop_assert_eq!(Record::decode(rec.kind().as_u8(), &payload).unwrap(), rec);
    }

    #[test]
    fn prop_decode_never_panics(kind in any::<u8>(), payload in any_bytes(300)) {
        let _ = Record::decode(kind, &payload);
    }

    #[test]
    fn prop_damaged_payload_never_panics(rec in any_record(), at in any::<usize>(), byte in any::<u8>()) {
        let mut payload = encode(&rec);
        if !payload.is_empty() {
            let i = at % payload.len();
            payload[i] = byte;
        }
        let _ = Record::decode(rec.kind().as_u8(), &payload);
    }
}
