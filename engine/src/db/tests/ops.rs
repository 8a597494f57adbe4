//! The operations on globals, one behaviour per test.

use std::time::Duration;

use super::*;
use crate::db::recovery::{WijKind, WIJ_CASES};
use crate::db::{wij_decision, Direction, WijAction};
use crate::error::EngineError;
use crate::journal::SegmentHeader;
use crate::model::Subscript;

#[test]
fn set_get_data_and_kills() {
    let fs = SimFs::new();
    let e = open(&fs);
    let mut s = e.session();
    s.set(DB, &k("^Person(42)"), &v(r#"$LB("Ada",36)"#))
        .unwrap();
    s.set(DB, &k(r#"^Person(42,"email")"#), &v(r#""ada@example.org""#))
        .unwrap();
    s.set(DB, &k(r#"^Person(43,"email")"#), &v(r#""bob@example.org""#))
        .unwrap();
    assert_eq!(
        s.get(DB, &k("^Person(42)")).unwrap(),
        Some(v(r#"$LB("Ada",36)"#))
    );
    assert_eq!(s.data(DB, &k("^Person")).unwrap(), 10);
    assert_eq!(s.data(DB, &k("^Person(42)")).unwrap(), 11);
    assert_eq!(s.data(DB, &k("^Person(43)")).unwrap(), 10);
    assert_eq!(s.data(DB, &k(r#"^Person(43,"email")"#)).unwrap(), 1);
    assert_eq!(s.data(DB, &k("^Person(44)")).unwrap(), 0);
    assert!(s.zkill(DB, &k("^Person(42)")).unwrap());
    assert_eq!(
        s.data(DB, &k("^Person(42)")).unwrap(),
        10,
        "zkill keeps children"
    );
    assert_eq!(s.kill(DB, &k("^Person(42)")).unwrap(), 1);
    assert_eq!(s.data(DB, &k("^Person(42)")).unwrap(), 0);
    assert_eq!(s.kill(DB, &k("^Person")).unwrap(), 1);
    assert_eq!(s.get(DB, &k(r#"^Person(43,"email")"#)).unwrap(), None);
    assert!(!s.zkill(DB, &k("^Person(1)")).unwrap());
}

/// Scans cross batch boundaries in order, include values in overflow
/// pages, stay inside their subtree, and stop when told.
#[test]
fn scans_walk_batches_in_order_and_stop_when_told() {
    let fs = SimFs::new();
    let e = open(&fs);
    let mut s = e.session();
    let value = |i: i64| {
        if i % 97 == 0 {
            crate::Value::Bytes(vec![i as u8; 9000])
        } else {
            crate::Value::Int(i)
        }
    };
    for i in 0..700 {
        s.set(DB, &k(&format!("^S({i})")), &value(i)).unwrap();
    }
    s.set(DB, &k("^T(1)"), &v("1")).unwrap();
    let mut seen = Vec::new();
    let n = s
        .scan(DB, &k("^S"), |key, val| {
            seen.push((key, val));
            true
        })
        .unwrap();
    assert_eq!(n, 700);
    for (i, (key, val)) in seen.iter().enumerate() {
        assert_eq!(key, &k(&format!("^S({i})")));
        assert_eq!(val, &value(i as i64));
    }
    let mut count = 0;
    let n = s
        .scan(DB, &k("^S"), |_, _| {
            count += 1;
            count < 300
        })
        .unwrap();
    assert_eq!((n, count), (300, 300));
}

/// Borrowed scans: rows in key order with their encodings, batches cut by
/// bytes (large values) as well as by rows, the same rows as the owned
/// scan, and a function that writes while the scan runs.
#[test]
fn scan_rows_borrow_each_row_and_let_the_function_write() {
    let fs = SimFs::new();
    let e = open(&fs);
    let mut s = e.session();
    let value = |i: i64| match i % 3 {
        // 20,000 bytes in overflow pages: about 13 fill a batch's bytes.
        0 if i < 120 => crate::Value::Bytes(vec![i as u8; 20_000]),
        1 => crate::Value::Str(format!("row {i}")),
        _ => crate::Value::Int(i),
    };
    for i in 0..600 {
        s.set(DB, &k(&format!(r#"^S({i},"x")"#)), &value(i))
            .unwrap();
    }
    s.set(DB, &k("^R(1)"), &v("1")).unwrap();
    s.set(DB, &k("^T(1)"), &v("1")).unwrap();
    let mut writer = e.session();
    let mut borrowed = Vec::new();
    let n = s
        .scan_rows(DB, &k("^S"), |row| {
            let key = row.key().unwrap();
            assert_eq!(row.encoded_key(), key.encode().as_slice());
            borrowed.push((key, row.value().to_value()));
            // Another session writes while the rows are borrowed: the
            // scan holds no lock, so this neither blocks nor deadlocks.
            let i = borrowed.len();
            writer.set(DB, &k(&format!("^U({i})")), &v("1")).unwrap();
            true
        })
        .unwrap();
    assert_eq!(n, 600);
    assert_eq!(s.scan(DB, &k("^U"), |_, _| true).unwrap(), 600);
    for (i, (key, val)) in borrowed.iter().enumerate() {
        assert_eq!(key, &k(&format!(r#"^S({i},"x")"#)));
        assert_eq!(val, &value(i as i64), "row {i}");
    }
    let mut owned = Vec::new();
    s.scan(DB, &k("^S"), |key, val| {
        owned.push((key, val));
        true
    })
    .unwrap();
    assert_eq!(owned, borrowed);
}

#[test]
fn get_with_reads_values_in_place() {
    let fs = SimFs::new();
    let e = open(&fs);
    let mut s = e.session();
    let big = crate::Value::Bytes(vec![5; 20_000]); // in overflow pages
    let values = [
        v(r#""text""#),
        v("42"),
        v("2.5"),
        v(r#"$LB("Ada",$LB(1,2))"#),
        big.clone(),
    ];
    for (i, value) in values.iter().enumerate() {
        s.set(DB, &k(&format!("^V({i})")), value).unwrap();
    }
    for (i, value) in values.iter().enumerate() {
        let got = s.get_with(DB, &k(&format!("^V({i})")), |r| r.to_value());
        assert_eq!(got.unwrap().as_ref(), Some(value), "^V({i})");
    }
    let len = s.get_with(DB, &k("^V(0)"), |r| match r {
        crate::ValueRef::Str(t) => t.len(),
        other => panic!("{other:?}"),
    });
    assert_eq!(len.unwrap(), Some(4));
    assert_eq!(s.get_with(DB, &k("^V(9)"), |_| ()).unwrap(), None);
}

#[test]
fn order_and_query_walk_in_collation_order() {
    let fs = SimFs::new();
    let e = open(&fs);
    let mut s = e.session();
    for key in [
        r#"^X(-5)"#,
        "^X(2)",
        "^X(10)",
        r#"^X(10,"a")"#,
        r#"^X("a")"#,
        r#"^X("b",1)"#,
    ] {
        s.set(DB, &k(key), &v("1")).unwrap();
    }
    s.set(DB, &k("^Y(1)"), &v("1")).unwrap();
    let mut subs = Vec::new();
    let mut cur = k(r#"^X("")"#);
    while let Some(sub) = s.order(DB, &cur, Direction::Forward).unwrap() {
        subs.push(sub.clone());
        cur = k("^X").child(sub);
    }
    let want: Vec<Subscript> = ["-5", "2", "10", r#""a""#, r#""b""#]
        .iter()
        .map(|t| crate::model::parse_subscript(t).unwrap())
        .collect();
    assert_eq!(subs, want);
    let mut back = Vec::new();
    let mut cur = k(r#"^X("")"#);
    while let Some(sub) = s.order(DB, &cur, Direction::Backward).unwrap() {
        back.push(sub.clone());
        cur = k("^X").child(sub);
    }
    back.reverse();
    assert_eq!(back, want);
    let mut nodes = Vec::new();
    let mut cur = k("^X");
    while let Some(next) = s.query(DB, &cur, Direction::Forward).unwrap() {
        nodes.push(next.to_string());
        cur = next;
    }
    assert_eq!(
        nodes,
        [
            "^X(-5)",
            "^X(2)",
            "^X(10)",
            r#"^X(10,"a")"#,
            r#"^X("a")"#,
            r#"^X("b",1)"#
        ]
    );
    assert_eq!(
        s.query(DB, &k("^X(2)"), Direction::Backward).unwrap(),
        Some(k("^X(-5)"))
    );
    assert_eq!(
        s.query(DB, &k("^X(-5)"), Direction::Backward).unwrap(),
        None
    );
}

#[test]
fn increment_is_atomic_across_threads() {
    let fs = SimFs::new();
    let e = open(&fs);
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let e = e.clone();
            std::thread::spawn(move || {
                let mut s = e.session();
                for _ in 0..250 {
                    s.increment(DB, &k("^Counter"), 1).unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(
        e.session().get(DB, &k("^Counter")).unwrap(),
        Some(Value::Int(1000))
    );
    let mut s = e.session();
    s.set(DB, &k("^S"), &v(r#""abc""#)).unwrap();
    let err = s.increment(DB, &k("^S"), 1).unwrap_err();
    assert!(matches!(err, EngineError::NotAnInteger { .. }), "{err}");
}

#[test]
fn nested_transactions_roll_back_by_level() {
    let fs = SimFs::new();
    let e = open(&fs);
    let mut s = e.session();
    s.set(DB, &k("^T(1)"), &v(r#""before""#)).unwrap();
    assert_eq!(s.tstart().unwrap(), 1);
    s.set(DB, &k("^T(1)"), &v(r#""level1""#)).unwrap();
    assert_eq!(s.tstart().unwrap(), 2);
    s.set(DB, &k("^T(1)"), &v(r#""level2""#)).unwrap();
    s.set(DB, &k("^T(2)"), &v(r#""new""#)).unwrap();
    s.trollback(true).unwrap();
    assert_eq!(s.tlevel(), 1);
    assert_eq!(s.get(DB, &k("^T(1)")).unwrap(), Some(v(r#""level1""#)));
    assert_eq!(s.get(DB, &k("^T(2)")).unwrap(), None);
    s.kill(DB, &k("^T")).unwrap();
    s.trollback(false).unwrap();
    assert_eq!(s.tlevel(), 0);
    assert_eq!(s.get(DB, &k("^T(1)")).unwrap(), Some(v(r#""before""#)));
    assert!(matches!(s.tcommit(), Err(EngineError::NoTransaction)));
}

#[test]
fn a_dropped_session_rolls_back_and_releases_its_locks() {
    let fs = SimFs::new();
    let e = open(&fs);
    {
        let mut s = e.session();
        assert!(s.lock(DB, &k("^L(1)"), Duration::ZERO).unwrap());
        s.tstart().unwrap();
        s.set(DB, &k("^L(1)"), &v("5")).unwrap();
        let other = e.session();
        assert!(!other.lock(DB, &k("^L"), Duration::from_millis(10)).unwrap());
    }
    let s = e.session();
    assert_eq!(s.get(DB, &k("^L(1)")).unwrap(), None);
    assert!(s.lock(DB, &k("^L"), Duration::ZERO).unwrap());
}

#[test]
fn oversize_keys_and_values_are_refused_and_nothing_changes() {
    let fs = SimFs::new();
    let e = open(&fs);
    let mut s = e.session();
    let long = Key::new("K", vec![Subscript::Str("x".repeat(2000))]).unwrap();
    let err = s.set(DB, &long, &v("1")).unwrap_err();
    assert!(err.to_string().contains("encoded key is"), "{err}");
    let huge = Value::Bytes(vec![0; super::super::MAX_VALUE + 1]);
    let err = s.set(DB, &k("^K"), &huge).unwrap_err();
    assert!(err.to_string().contains("value is"), "{err}");
    assert_eq!(s.data(DB, &k("^K")).unwrap(), 0);
    // A large value that is allowed goes to overflow pages and comes back.
    let big = Value::Bytes((0..3_000_000u32).map(|i| i as u8).collect());
    s.set(DB, &k("^K"), &big).unwrap();
    assert_eq!(s.get(DB, &k("^K")).unwrap(), Some(big));
}

#[test]
fn unknown_database_is_named() {
    let fs = SimFs::new();
    let e = open(&fs);
    let err = e.session().get("NOPE", &k("^X")).unwrap_err();
    assert_eq!(err.to_string(), r#"no database named "NOPE""#);
    assert!(e.create_database("1bad").is_err());
}

#[test]
fn a_failed_fsync_poisons_the_store() {
    let fs = SimFs::new();
    let e = open(&fs);
    let mut s = e.session();
    s.set(DB, &k("^P"), &v("1")).unwrap();
    fs.fail_next_sync();
    assert!(s.set(DB, &k("^P"), &v("2")).is_err());
    let err = s.set(DB, &k("^P"), &v("3")).unwrap_err();
    assert!(err.to_string().contains("poison"), "{err}");
    // Reads still work.
    s.get(DB, &k("^P")).unwrap();
}

#[test]
fn a_corrupt_page_is_reported_by_the_engine() {
    let fs = SimFs::new();
    {
        let e = open(&fs);
        let mut s = e.session();
        for i in 0..3000 {
            s.set(
                DB,
                &Key::new("A", vec![Subscript::Int(i)]).unwrap(),
                &v(r#""some value text""#),
            )
            .unwrap();
        }
        e.close().unwrap();
    }
    {
        // The last flush cycle (which startup compares with the write image
        // journal) touches only the first leaf and the meta page.
        let e = open(&fs);
        let mut s = e.session();
        s.set(
            DB,
            &Key::new("A", vec![Subscript::Int(0)]).unwrap(),
            &v("0"),
        )
        .unwrap();
        drop(s);
        e.close().unwrap();
    }
    let path = Path::new("/data/databases/0001-DB.rdb");
    fs.flip_bit(path, 2 * 8192 + 500, 3).unwrap();
    let e = open(&fs);
    let s = e.session();
    let err = (0..3000)
        .find_map(|i| {
            s.get(DB, &Key::new("A", vec![Subscript::Int(i)]).unwrap())
                .err()
        })
        .expect("a read reaches page 2");
    assert!(
        err.to_string()
            .contains("page 2 is corrupt: checksum mismatch"),
        "{err}"
    );
}

#[test]
fn a_clean_wij_that_disagrees_with_the_database_stops_startup() {
    let fs = SimFs::new();
    {
        let e = open(&fs);
        let mut s = e.session();
        s.set(DB, &k("^W"), &v("1")).unwrap();
        e.close().unwrap();
    }
    // Damage page 1 (the root leaf the last cycle wrote) behind the engine.
    fs.flip_bit(Path::new("/data/databases/0001-DB.rdb"), 8192 + 100, 0)
        .unwrap();
    let err = match Engine::open(Path::new("/data"), sim_opts(&fs)) {
        Err(e) => e,
        Ok(_) => panic!("startup must stop"),
    };
    assert!(err.to_string().contains("page 1"), "{err}");
}

#[test]
fn wij_decision_table_matches_every_input_exactly_once() {
    for kind in [WijKind::Empty, WijKind::Clean, WijKind::Active] {
        for images_ok in [false, true] {
            for pages_match in [false, true] {
                let n = WIJ_CASES
                    .iter()
                    .filter(|(k, i, p, _)| {
                        *k == kind
                            && i.is_none_or(|i| i == images_ok)
                            && p.is_none_or(|p| p == pages_match)
                    })
                    .count();
                assert_eq!(
                    n, 1,
                    "{kind:?} images_ok={images_ok} pages_match={pages_match}"
                );
                let _ = wij_decision(kind, images_ok, pages_match);
            }
        }
    }
    assert_eq!(
        wij_decision(WijKind::Active, true, false),
        WijAction::Restore
    );
    assert_eq!(
        wij_decision(WijKind::Clean, true, false),
        WijAction::RefuseMismatch
    );
}

#[test]
fn an_unfinished_transaction_is_rolled_back_at_recovery() {
    let fs = SimFs::new();
    let e = open(&fs);
    let mut s = e.session();
    s.set(DB, &k("^R(1)"), &v(r#""kept""#)).unwrap();
    s.tstart().unwrap();
    s.set(DB, &k("^R(1)"), &v(r#""uncommitted""#)).unwrap();
    s.set(DB, &k("^R(2)"), &v(r#""uncommitted""#)).unwrap();
    // Another session's commit makes the open transaction's records durable.
    let mut other = e.session();
    other.set(DB, &k("^R(3)"), &v(r#""other""#)).unwrap();
    fs.crash_now();
    let img = fs.crash_image(7);
    std::mem::forget(s); // the process died: no rollback on drop
    drop(other);
    drop(e);
    let (e, report) = Engine::open(Path::new("/data"), sim_opts(&img)).unwrap();
    assert_eq!(report.rolled_back.len(), 1, "{report:?}");
    let s = e.session();
    assert_eq!(s.get(DB, &k("^R(1)")).unwrap(), Some(v(r#""kept""#)));
    assert_eq!(s.get(DB, &k("^R(2)")).unwrap(), None);
    assert_eq!(s.get(DB, &k("^R(3)")).unwrap(), Some(v(r#""other""#)));
    e.check().unwrap();
}

#[test]
fn damaged_journal_tails_keep_exactly_the_committed_prefix() {
    let seg = Path::new("/data/journal/00000000000000000000.jrn");
    for damage in ["garbage", "half record", "zeros"] {
        let fs = SimFs::new();
        let e = open(&fs);
        let mut s = e.session();
        for i in 0..50 {
            s.set(
                DB,
                &Key::new("A", vec![Subscript::Int(i)]).unwrap(),
                &v("7"),
            )
            .unwrap();
        }
        let want = contents(&e);
        let records_end = SegmentHeader::LEN + e.journal().end_lsn().0;
        std::mem::forget(s);
        fs.crash_now();
        drop(e);
        let img = fs.crash_image(1);
        // The damage goes right after the last record, over the zeros the
        // journal reserved ahead.
        let len = img.file_bytes(seg).unwrap().len() as u64;
        assert!(len > records_end, "space reserved ahead of the records");
        let tail: Vec<u8> = match damage {
            "garbage" => (0..3000u32)
                .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
                .collect(),
            // A record header claiming 200 bytes, followed by only 20.
            "half record" => [&200u32.to_le_bytes()[..], &[1], &[9; 4], &[5; 20]].concat(),
            _ => vec![0; 5000],
        };
        img.write_raw(seg, records_end, &tail).unwrap();
        let (e, report) = Engine::open(Path::new("/data"), sim_opts(&img)).unwrap();
        assert_eq!(contents(&e), want, "{damage}");
        // Zeros are a clean end; anything else is cut with what follows.
        let dropped = if damage == "zeros" {
            0
        } else {
            len.max(records_end + tail.len() as u64) - records_end
        };
        assert_eq!(report.journal_dropped_bytes, dropped, "{damage}");
        // Appends continue the chain where the valid log ended.
        let mut s = e.session();
        s.set(DB, &k("^B(1)"), &v("1")).unwrap();
        drop(s);
        e.close().unwrap();
        let e = open(&img);
        assert_eq!(e.session().get(DB, &k("^B(1)")).unwrap(), Some(v("1")));
    }
}

#[test]
fn a_flipped_bit_before_the_checkpoint_stops_startup_and_says_where() {
    let fs = SimFs::new();
    let e = open(&fs);
    let mut s = e.session();
    for i in 0..200 {
        s.set(
            DB,
            &Key::new("A", vec![Subscript::Int(i)]).unwrap(),
            &v(r#""x""#),
        )
        .unwrap();
    }
    drop(s);
    e.checkpoint().unwrap();
    std::mem::forget(e);
    let seg = Path::new("/data/journal/00000000000000000000.jrn");
    fs.flip_bit(seg, 64 + 500, 2).unwrap();
    let err = match Engine::open(Path::new("/data"), sim_opts(&fs)) {
        Err(e) => e.to_string(),
        Ok(_) => panic!("a corrupt journal before the checkpoint must stop startup"),
    };
    assert!(err.contains("journal corrupt at lsn"), "{err}");
    assert!(err.contains("00000000000000000000.jrn"), "{err}");
}

#[test]
fn cycles_purge_the_journal_recovery_no_longer_needs() {
    let fs = SimFs::new();
    let e = open(&fs); // keeps no journal beyond what recovery needs
    let mut s = e.session();
    // A transaction open across the cycles: its records must stay.
    let mut t = e.session();
    t.tstart().unwrap();
    t.set(DB, &k("^B(1)"), &v("1")).unwrap();
    let txn_start = e.journal().oldest_lsn();
    for i in 0..3000 {
        s.set(
            DB,
            &k(&format!("^A({i})")),
            &v(&format!("\"{}\"", "x".repeat(80))),
        )
        .unwrap();
    }
    e.checkpoint().unwrap();
    assert_eq!(
        e.journal().oldest_lsn(),
        txn_start,
        "kept for the open transaction"
    );
    t.tcommit().unwrap();
    // A follower's floor holds what it has not made durable yet.
    let floor = e.journal().end_lsn();
    e.set_journal_floor(Some(floor));
    for i in 0..3000 {
        s.set(DB, &k(&format!("^A({i})")), &v("2")).unwrap();
    }
    e.checkpoint().unwrap();
    let oldest = e.journal().oldest_lsn();
    assert!(
        oldest > txn_start && oldest <= floor,
        "{oldest} vs floor {floor}"
    );
    e.set_journal_floor(None);
    e.checkpoint().unwrap();
    s.set(DB, &k("^A(0)"), &v("3")).unwrap();
    e.checkpoint().unwrap();
    assert!(
        e.journal().oldest_lsn() > floor,
        "purged once the floor went"
    );
    // A crash now recovers from what is left.
    let want = contents(&e);
    drop(s);
    fs.crash_now();
    drop(e);
    let img = fs.crash_image(3);
    let e = open(&img);
    assert_eq!(contents(&e), want);
    e.check().unwrap();
}
