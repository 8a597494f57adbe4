//! Damaged tails and corruption found at open (fjall's `journal_truncation_*`
//! idea), and the decision table.

use rand::RngCore;

use super::{append_all, read_all, records_of, rng, tagged, Env};
use crate::journal::recovery::{decide, Facts, Outcome, Spot, DECISIONS};
use crate::journal::{FrameHeader, JournalError, JournalOptions, Record, SegmentHeader};
use crate::Lsn;

/// One segment big enough for everything, small batches.
fn one_segment() -> JournalOptions {
    JournalOptions {
        segment_bytes: 1 << 20,
        max_batch_bytes: 1024,
        zero_fill_thread: false,
        ..JournalOptions::default()
    }
}

/// Writes `n` records (committing every few) and closes the journal.
/// Returns the records, their (start, end) positions and the last crc.
fn write_log(env: &Env, opts: JournalOptions, n: u32) -> (Vec<Record>, Vec<(Lsn, Lsn)>, u32) {
    let (j, _) = env.open(opts, Lsn::ZERO);
    let recs: Vec<Record> = (0..n)
        .map(|i| tagged(1, i, 40 + (i % 13) as usize))
        .collect();
    let mut pos = Vec::new();
    for chunk in recs.chunks(5) {
        pos.extend(append_all(&j, chunk));
    }
    (recs, pos, j.last_crc())
}

/// The framed bytes of `rec` as the writer would append it after `prev_crc`.
fn frame(rec: &Record, prev_crc: u32) -> Vec<u8> {
    let mut payload = Vec::new();
    rec.encode_into(&mut payload);
    let mut out = FrameHeader::new(prev_crc, rec.kind(), &payload)
        .to_bytes()
        .to_vec();
    out.extend_from_slice(&payload);
    out
}

/// Opens after tail damage: exactly the valid prefix survives, `dropped`
/// bytes were cut, and appends then continue (checked by another reopen).
fn expect_repaired(env: &Env, opts: JournalOptions, recs: &[Record], dropped: u64, reason: &str) {
    let (j, report) = env.open(opts, Lsn::ZERO);
    let repair = report
        .repair
        .clone()
        .unwrap_or_else(|| panic!("{}: expected a repair, got {report:?}", env.name()));
    assert_eq!(report.dropped_bytes, dropped, "{}: {repair:?}", env.name());
    assert!(
        repair.reason.starts_with(reason),
        "{}: reason {:?}, expected {reason:?}",
        env.name(),
        repair.reason
    );
    assert_eq!(records_of(&read_all(&j)), recs, "{}", env.name());
    let more: Vec<Record> = (0..20).map(|i| tagged(2, i, 30)).collect();
    append_all(&j, &more);
    drop(j);
    let (j, report) = env.open(opts, Lsn::ZERO);
    assert_eq!(
        report.repair,
        None,
        "{}: the repaired journal is clean",
        env.name()
    );
    assert_eq!(
        records_of(&read_all(&j)),
        [recs.to_vec(), more].concat(),
        "{}",
        env.name()
    );
}

#[test]
fn garbage_after_the_end_is_cut() {
    for env in Env::both() {
        let (recs, _, _) = write_log(&env, one_segment(), 30);
        let mut garbage = vec![0u8; 100];
        rng(5).fill_bytes(&mut garbage);
        garbage[4] = 200; // an unknown kind, whatever the rest says
        env.append_bytes(&env.last_segment(), &garbage);
        expect_repaired(&env, one_segment(), &recs, 100, "");
    }
}

#[test]
fn half_a_record_is_cut() {
    for env in Env::both() {
        let (recs, _, crc) = write_log(&env, one_segment(), 30);
        let f = frame(&tagged(1, 99, 200), crc);
        env.append_bytes(&env.last_segment(), &f[..f.len() / 2]);
        expect_repaired(
            &env,
            one_segment(),
            &recs,
            (f.len() / 2) as u64,
            "truncated payload",
        );
    }
}

#[test]
fn half_a_header_is_cut() {
    for env in Env::both() {
        let (recs, _, crc) = write_log(&env, one_segment(), 30);
        let f = frame(&tagged(1, 99, 200), crc);
        env.append_bytes(&env.last_segment(), &f[..4]);
        expect_repaired(&env, one_segment(), &recs, 4, "truncated record header");
    }
}

#[test]
fn zeros_after_the_end_are_a_clean_end_and_stay() {
    // What the writer reserves ahead of its records (RESERVE_BYTES), or a
    // batch none of whose sectors was written: nothing to repair.
    for env in Env::both() {
        let (recs, _, _) = write_log(&env, one_segment(), 30);
        let seg = env.last_segment();
        env.append_bytes(&seg, &[0u8; 700]);
        let len = env.file_len(&seg);
        let (j, report) = env.open(one_segment(), Lsn::ZERO);
        assert!(report.repair.is_none(), "{report:?}");
        assert_eq!(report.records, recs.len() as u64);
        assert_eq!(env.file_len(&seg), len, "the zeros stay while open");
        // The next batch writes over them.
        j.append(&recs[0]).unwrap();
        j.flush().unwrap();
        drop(j);
        let (_, report) = env.open(one_segment(), Lsn::ZERO);
        assert!(report.repair.is_none());
        assert_eq!(report.records, recs.len() as u64 + 1);
    }
}

#[test]
fn a_repeated_last_record_is_cut() {
    for env in Env::both() {
        let (recs, pos, _) = write_log(&env, one_segment(), 30);
        let (start, end) = *pos.last().unwrap();
        let seg = env.last_segment();
        let bytes = env.read_file(&seg);
        let last =
            &bytes[(SegmentHeader::LEN + start.0) as usize..(SegmentHeader::LEN + end.0) as usize];
        env.append_bytes(&seg, last);
        expect_repaired(
            &env,
            one_segment(),
            &recs,
            end.0 - start.0,
            "checksum mismatch",
        );
    }
}

#[test]
fn a_torn_last_batch_is_cut_even_with_valid_records_after_the_tear() {
    // The last batch: three records, the first torn; the two after it still
    // chain, but all lie within one batch of the damage.
    for env in Env::both() {
        let (j, _) = env.open(one_segment(), Lsn::ZERO);
        let kept: Vec<Record> = (0..30).map(|i| tagged(1, i, 40)).collect();
        append_all(&j, &kept);
        let batch = append_all(
            &j,
            &[tagged(3, 0, 100), tagged(3, 1, 100), tagged(3, 2, 100)],
        );
        drop(j);
        env.flip_bit(
            &env.last_segment(),
            SegmentHeader::LEN + batch[0].0 .0 + 20,
            2,
        );
        expect_repaired(
            &env,
            one_segment(),
            &kept,
            batch[2].1 .0 - batch[0].0 .0,
            "checksum mismatch",
        );
    }
}

#[test]
fn long_garbage_without_valid_records_is_cut() {
    // Garbage longer than a batch, but nothing in it chains: a torn tail
    // (recovery judges by valid-looking records, not by raw length).
    let env = Env::sim();
    let (recs, _, _) = write_log(&env, one_segment(), 30);
    let mut garbage = vec![0u8; 5000];
    rng(7).fill_bytes(&mut garbage);
    garbage[4] = 0;
    env.append_bytes(&env.last_segment(), &garbage);
    expect_repaired(&env, one_segment(), &recs, 5000, "");
}

#[test]
fn torn_segment_creations_are_removed() {
    for env in Env::both() {
        let opts = one_segment();
        let (recs, pos, crc) = write_log(&env, opts, 30);
        let end = pos.last().unwrap().1;
        let name = crate::journal::segment_file_name(end);
        let header = SegmentHeader {
            start: end,
            prev_crc: crc,
        }
        .to_bytes();
        for torn in [&header[..0], &header[..20], &header[..64]] {
            let mut damaged = torn.to_vec();
            if damaged.len() == 64 {
                damaged[30] ^= 1; // whole but fails its checksum
            }
            let path = env.dir.join(&name);
            let f = env
                .vfs
                .open(&path, crate::storage::OpenMode::CreateIfMissing)
                .unwrap();
            f.write_all_at(&damaged, 0).unwrap();
            f.sync().unwrap();
            env.vfs.sync_dir(&env.dir).unwrap();
            let (j, report) = env.open(opts, Lsn::ZERO);
            let repair = report.repair.expect("a repair");
            assert!(repair.segment_removed, "{repair:?}");
            assert_eq!(repair.segment, name);
            assert!(
                repair.reason.starts_with("bad segment header"),
                "{}",
                repair.reason
            );
            assert!(!env.vfs.exists(&path));
            assert_eq!(records_of(&read_all(&j)), recs);
        }
        // A header with records after it was synced: damage there is corruption.
        let path = env.dir.join(&name);
        let f = env
            .vfs
            .open(&path, crate::storage::OpenMode::CreateIfMissing)
            .unwrap();
        let mut bad = header.to_vec();
        bad[30] ^= 1;
        bad.extend_from_slice(&frame(&tagged(1, 1, 1), crc));
        f.write_all_at(&bad, 0).unwrap();
        f.sync().unwrap();
        expect_corrupt(&env, opts, Lsn::ZERO, end, &name, 0, "bad segment header");
    }
}

/// Opening must fail with `Corrupt` naming exactly this spot.
fn expect_corrupt(
    env: &Env,
    opts: JournalOptions,
    known_durable: Lsn,
    lsn: Lsn,
    segment: &str,
    offset: u64,
    reason: &str,
) {
    match crate::journal::Journal::open(env.vfs.clone(), &env.dir, opts, known_durable) {
        Err(e) => {
            let JournalError::Corrupt {
                lsn: l,
                segment: s,
                offset: o,
                reason: r,
            } = &e
            else {
                panic!("{}: expected Corrupt, got {e}", env.name());
            };
            assert_eq!(
                (*l, s.as_str(), *o),
                (lsn, segment, offset),
                "{}: {e}",
                env.name()
            );
            assert!(r.starts_with(reason), "{}: {e}", env.name());
            let msg = e.to_string();
            let head = format!(
                "journal corrupt at lsn {lsn} (segment {segment}, file offset {offset}): {reason}"
            );
            assert!(msg.starts_with(&head), "{}: {msg}", env.name());
        }
        Ok((_, report)) => panic!("{}: expected Corrupt, opened with {report:?}", env.name()),
    }
}

const SEG0: &str = "00000000000000000000.jrn";

#[test]
fn a_flipped_bit_in_the_middle_is_corruption() {
    // ~27 KiB of records; damage at record 200 has far more than one batch
    // (1 KiB) of valid records after it. Every field of the frame.
    let cases: [(&str, u64, u8, &str); 7] = [
        ("payload", 30, 4, "checksum mismatch"),
        ("payload end", 57, 0, "checksum mismatch"),
        ("len low bit", 0, 3, "checksum mismatch"),
        ("len high bit", 3, 7, "record length"),
        ("kind", 4, 3, "unknown record kind"),
        ("crc", 6, 5, "checksum mismatch"),
        ("crc last byte", 8, 7, "checksum mismatch"),
    ];
    for env in Env::both() {
        let (_, pos, _) = write_log(&env, one_segment(), 400);
        let lsn = pos[200].0;
        let offset = SegmentHeader::LEN + lsn.0;
        for (what, at, bit, reason) in cases {
            env.flip_bit(&env.last_segment(), offset + at, bit);
            expect_corrupt(&env, one_segment(), Lsn::ZERO, lsn, SEG0, offset, reason);
            let e =
                crate::journal::Journal::open(env.vfs.clone(), &env.dir, one_segment(), Lsn::ZERO)
                    .unwrap_err();
            assert!(
                e.to_string().contains("farther than one batch"),
                "{what}: {e}"
            );
            env.flip_bit(&env.last_segment(), offset + at, bit); // undo
        }
        // Undone, it opens cleanly.
        let (_, report) = env.open(one_segment(), Lsn::ZERO);
        assert_eq!(report.repair, None);
    }
}

#[test]
fn damage_before_known_durable_is_corruption() {
    for env in Env::both() {
        let (recs, pos, _) = write_log(&env, one_segment(), 30);
        let end = pos.last().unwrap().1;
        // Damage in the last record: within a batch of the end, so only
        // known_durable tells it from a torn write.
        let (lsn, _) = pos[29];
        let offset = SegmentHeader::LEN + lsn.0;
        env.flip_bit(&env.last_segment(), offset + 20, 0);
        expect_corrupt(
            &env,
            one_segment(),
            end,
            lsn,
            SEG0,
            offset,
            "checksum mismatch",
        );
        let e = crate::journal::Journal::open(env.vfs.clone(), &env.dir, one_segment(), end)
            .unwrap_err();
        assert!(
            e.to_string().contains("before a position known durable"),
            "{e}"
        );
        // Nothing was changed by the refusal; without that knowledge it is
        // a torn tail (the best recovery can tell).
        expect_repaired(
            &env,
            one_segment(),
            &recs[..29],
            end.0 - lsn.0,
            "checksum mismatch",
        );
    }
}

#[test]
fn a_log_ending_before_known_durable_is_corruption() {
    for env in Env::both() {
        let (_, pos, _) = write_log(&env, one_segment(), 10);
        let end = pos.last().unwrap().1;
        expect_corrupt(
            &env,
            one_segment(),
            end.offset(1),
            end,
            SEG0,
            SegmentHeader::LEN + end.0,
            "journal ends at lsn",
        );
        let (_, report) = env.open(one_segment(), end);
        assert_eq!(report.end, end);
    }
    let env = Env::sim();
    match crate::journal::Journal::open(env.vfs.clone(), &env.dir, one_segment(), Lsn(5)) {
        Err(e @ JournalError::Corrupt { .. }) => {
            assert!(e.to_string().contains("no segment"), "{e}")
        }
        other => panic!("expected Corrupt, got {other:?}"),
    }
}

#[test]
fn damage_in_an_earlier_segment_is_corruption() {
    let opts = JournalOptions {
        segment_bytes: 2048,
        max_batch_bytes: 1024,
        zero_fill_thread: false,
        ..JournalOptions::default()
    };
    for env in Env::both() {
        let (_, pos, _) = write_log(&env, opts, 120);
        let segs = env.segment_paths();
        assert!(segs.len() >= 3);
        // The last record of the second segment: at the very end of its file,
        // but a later segment proves it was synced.
        let start1 = crate::journal::parse_segment_file_name(
            &segs[1].file_name().unwrap().to_string_lossy(),
        )
        .unwrap();
        let start2 = crate::journal::parse_segment_file_name(
            &segs[2].file_name().unwrap().to_string_lossy(),
        )
        .unwrap();
        let (lsn, _) = *pos.iter().rfind(|(s, _)| *s < start2).unwrap();
        let name1 = crate::journal::segment_file_name(start1);
        let offset = SegmentHeader::LEN + (lsn.0 - start1.0);
        env.flip_bit(&segs[1], offset + 12, 6);
        expect_corrupt(
            &env,
            opts,
            Lsn::ZERO,
            lsn,
            &name1,
            offset,
            "checksum mismatch",
        );
        let e =
            crate::journal::Journal::open(env.vfs.clone(), &env.dir, opts, Lsn::ZERO).unwrap_err();
        assert!(e.to_string().contains("a later segment exists"), "{e}");
        env.flip_bit(&segs[1], offset + 12, 6);
        // A damaged header of a middle segment.
        env.flip_bit(&segs[1], 17, 0);
        expect_corrupt(
            &env,
            opts,
            Lsn::ZERO,
            start1,
            &name1,
            0,
            "bad segment header",
        );
        env.flip_bit(&segs[1], 17, 0);
        // A segment that is missing: the next one does not continue the log.
        let bytes = env.read_file(&segs[1]);
        env.vfs.remove(&segs[1]).unwrap();
        let name2 = crate::journal::segment_file_name(start2);
        expect_corrupt(
            &env,
            opts,
            Lsn::ZERO,
            start2,
            &name2,
            0,
            "segment does not continue the journal",
        );
        let f = env
            .vfs
            .open(&segs[1], crate::storage::OpenMode::CreateIfMissing)
            .unwrap();
        f.write_all_at(&bytes, 0).unwrap();
        let (_, report) = env.open(opts, Lsn::ZERO);
        assert_eq!(report.repair, None);
    }
}

#[test]
fn spliced_valid_records_after_the_end_are_corruption() {
    // A copy of the log pasted after its end: the first copied record breaks
    // the chain, but the copies chain among themselves for more than a batch.
    let env = Env::sim();
    let (_, pos, _) = write_log(&env, one_segment(), 100);
    let end = pos.last().unwrap().1;
    let seg = env.last_segment();
    let bytes = env.read_file(&seg);
    env.append_bytes(&seg, &bytes[SegmentHeader::LEN as usize..]);
    expect_corrupt(
        &env,
        one_segment(),
        Lsn::ZERO,
        end,
        SEG0,
        SegmentHeader::LEN + end.0,
        "checksum mismatch",
    );
}

#[test]
fn sim_flip_bit_reports_lsn_segment_and_offset() {
    // The message format the operator sees.
    let env = Env::sim();
    let (_, pos, _) = write_log(&env, one_segment(), 300);
    let lsn = pos[100].0;
    let offset = SegmentHeader::LEN + lsn.0;
    env.sim
        .as_ref()
        .unwrap()
        .flip_bit(&env.last_segment(), offset + 15, 3)
        .unwrap();
    let e = crate::journal::Journal::open(env.vfs.clone(), &env.dir, one_segment(), Lsn::ZERO)
        .unwrap_err();
    let want = format!(
        "journal corrupt at lsn {lsn} (segment {SEG0}, file offset {offset}): checksum mismatch"
    );
    assert!(e.to_string().starts_with(&want), "{e}");
}

#[test]
fn every_combination_of_facts_falls_into_exactly_one_case() {
    let spots = [
        Spot::End,
        Spot::Header,
        Spot::Mismatch,
        Spot::Record,
        Spot::Zeros,
    ];
    let mut combos = 0;
    for spot in spots {
        for last_segment in [false, true] {
            for before_durable in [false, true] {
                for beyond_batch in [false, true] {
                    let f = Facts {
                        spot,
                        last_segment,
                        before_durable,
                        beyond_batch,
                    };
                    let n = DECISIONS.iter().filter(|r| r.matches(&f)).count();
                    assert_eq!(n, 1, "{f:?} matches {n} rows");
                    combos += 1;
                }
            }
        }
    }
    assert_eq!(combos, 40);
    // Every row is reachable.
    for (i, row) in DECISIONS.iter().enumerate() {
        let reachable = spots.iter().any(|&spot| {
            [false, true].iter().any(|&l| {
                [false, true].iter().any(|&d| {
                    [false, true].iter().any(|&b| {
                        row.matches(&Facts {
                            spot,
                            last_segment: l,
                            before_durable: d,
                            beyond_batch: b,
                        })
                    })
                })
            })
        });
        assert!(reachable, "row {} is dead", i + 1);
    }
}

#[test]
fn the_only_repairs_are_in_the_last_segment_after_durable_points() {
    let f = |spot, last_segment, before_durable, beyond_batch| {
        decide(Facts {
            spot,
            last_segment,
            before_durable,
            beyond_batch,
        })
    };
    assert_eq!(f(Spot::Record, true, false, false), Outcome::TruncateTail);
    assert_eq!(f(Spot::Header, true, false, false), Outcome::DropSegment);
    assert_eq!(f(Spot::End, true, false, true), Outcome::CleanEnd);
    assert_eq!(f(Spot::End, false, true, false), Outcome::NextSegment);
    // Reserved zeros end the last segment, and never hide a durable point.
    assert_eq!(f(Spot::Zeros, true, false, false), Outcome::CleanEnd);
    assert!(matches!(
        f(Spot::Zeros, true, true, false),
        Outcome::Corrupt(_)
    ));
    assert!(matches!(
        f(Spot::Zeros, false, false, false),
        Outcome::Corrupt(_)
    ));
    for spot in [Spot::Record, Spot::Header, Spot::Mismatch, Spot::Zeros] {
        for l in [false, true] {
            for d in [false, true] {
                for b in [false, true] {
                    let repair = matches!(
                        f(spot, l, d, b),
                        Outcome::TruncateTail | Outcome::DropSegment
                    );
                    assert_eq!(
                        repair,
                        !matches!(spot, Spot::Mismatch | Spot::Zeros) && l && !d && !b,
                        "{spot:?} {l} {d} {b}"
                    );
                }
            }
        }
    }
}
