//! What the mirror needs from the journal: raw reads for streaming, raw
//! appends on a member, chain values, truncate, reset, waiting for new
//! durable bytes, and crashes during raw appends and truncates.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::Rng;

use super::{
    append_all, random_record, read_all, read_from, records_of, rng, small_opts, tagged, Env,
};
use crate::journal::{
    parse_segment_file_name, FrameHeader, Journal, JournalError, JournalOptions, Record,
    SegmentHeader,
};
use crate::storage::sim::{CrashFate, SimFs};
use crate::storage::{OpenMode, Vfs};
use crate::Lsn;

/// The framed records as the writer stores them after `prev_crc`, and the
/// last stored crc.
fn encode_stream(prev_crc: u32, recs: &[Record]) -> (Vec<u8>, u32) {
    let mut out = Vec::new();
    let mut crc = prev_crc;
    for rec in recs {
        let mut payload = Vec::new();
        rec.encode_into(&mut payload);
        let h = FrameHeader::new(crc, rec.kind(), &payload);
        out.extend_from_slice(&h.to_bytes());
        out.extend_from_slice(&payload);
        crc = h.crc;
    }
    (out, crc)
}

/// The segment files' bytes after their headers, concatenated: the record
/// stream as stored.
/// The record bytes the segment files hold after their headers, up to
/// `end` (the last segment may go on with zeros reserved ahead).
fn stored_stream(vfs: &dyn Vfs, dir: &Path, end: Lsn) -> Vec<u8> {
    let mut out = stored_bytes(vfs, dir);
    let first = vfs
        .list(dir)
        .unwrap()
        .iter()
        .filter_map(|p| parse_segment_file_name(p.file_name()?.to_str()?))
        .min()
        .unwrap_or(Lsn::ZERO);
    let keep = (end.0 - first.0) as usize;
    assert!(
        out[keep..].iter().all(|b| *b == 0),
        "only reserved zeros follow the end"
    );
    out.truncate(keep);
    out
}

fn stored_bytes(vfs: &dyn Vfs, dir: &Path) -> Vec<u8> {
    let mut paths: Vec<PathBuf> = vfs
        .list(dir)
        .unwrap()
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "jrn"))
        .collect();
    paths.sort();
    let mut out = Vec::new();
    for p in paths {
        let f = vfs.open(&p, OpenMode::Existing).unwrap();
        let len = f.len().unwrap();
        let mut b = vec![0u8; (len - SegmentHeader::LEN) as usize];
        f.read_exact_at(&mut b, SegmentHeader::LEN).unwrap();
        out.extend_from_slice(&b);
    }
    out
}

/// A second journal folder next to `env.dir`, on the same file system.
fn member_env(env: &Env) -> Env {
    Env {
        vfs: env.vfs.clone(),
        dir: env.dir.with_file_name("member"),
        sim: env.sim.clone(),
        _tmp: None,
    }
}

/// Records of varied sizes, some larger than `small_opts().max_batch_bytes`.
fn mixed_records(seed: u64, n: usize) -> Vec<Record> {
    let mut r = rng(seed);
    (0..n)
        .map(|i| {
            if i % 37 == 5 {
                tagged(3, i as u32, 1500)
            } else {
                random_record(&mut r, 120)
            }
        })
        .collect()
}

/// A journal holding `recs` over several segments (committed in chunks).
fn primary_with(env: &Env, recs: &[Record]) -> (Journal, Vec<(Lsn, Lsn)>) {
    let (j, _) = env.open(small_opts(), Lsn::ZERO);
    let mut pos = Vec::new();
    for chunk in recs.chunks(9) {
        pos.extend(append_all(&j, chunk));
    }
    (j, pos)
}

/// The record boundaries in a stream of frames starting at `start`.
fn boundaries(start: Lsn, bytes: &[u8]) -> Vec<Lsn> {
    let mut out = vec![start];
    let mut p = 0usize;
    while p < bytes.len() {
        let mut hb = [0u8; FrameHeader::LEN];
        hb.copy_from_slice(&bytes[p..p + FrameHeader::LEN]);
        p += FrameHeader::from_bytes(&hb).frame_len() as usize;
        out.push(start.offset(p as u64));
    }
    assert_eq!(p, bytes.len(), "frames fill the bytes exactly");
    out
}

fn expect_err<T: std::fmt::Debug>(r: Result<T, JournalError>, what: &str) -> JournalError {
    match r {
        Ok(v) => panic!("{what}: expected an error, got {v:?}"),
        Err(e) => e,
    }
}

/// (end, durable, last_crc, records read) of a journal.
fn state(j: &Journal) -> (Lsn, Lsn, u32, Vec<(Lsn, Record)>) {
    (
        j.end_lsn(),
        j.durable_lsn(),
        j.last_crc(),
        read_from(j, j.oldest_lsn()),
    )
}

#[test]
fn read_raw_crosses_segments_and_decodes_like_read_from() {
    for env in Env::both() {
        let name = env.name();
        let recs = mixed_records(1, 400);
        let (j, pos) = primary_with(&env, &recs);
        assert!(
            j.segments().len() >= 5,
            "{name}: {} segments",
            j.segments().len()
        );
        let (expected, last_crc) = encode_stream(0, &recs);
        assert_eq!(last_crc, j.last_crc());
        let durable = j.durable_lsn();
        assert_eq!(durable.0, expected.len() as u64);
        // The files hold exactly this stream after their headers.
        assert_eq!(
            stored_stream(&*env.vfs, &env.dir, j.durable_lsn()),
            expected,
            "{name}"
        );

        // Everything at once.
        let (all, end) = j.read_raw(Lsn::ZERO, usize::MAX).unwrap();
        assert_eq!(end, durable);
        assert_eq!(all, expected, "{name}");
        let decoded = Journal::decode_raw(Lsn::ZERO, 0, &all).unwrap();
        assert_eq!(decoded, read_all(&j), "{name}");

        // In pieces of random size: whole records, at most max_bytes unless
        // one record is larger, and together the same stream.
        let bounds = boundaries(Lsn::ZERO, &expected);
        let mut r = rng(2);
        let mut at = Lsn::ZERO;
        let mut joined = Vec::new();
        let mut calls = 0;
        while at < durable {
            let max = r.gen_range(0..3000usize);
            let (bytes, end) = j.read_raw(at, max).unwrap();
            assert!(!bytes.is_empty(), "{name}: nothing from {at}");
            assert_eq!(end, at.offset(bytes.len() as u64));
            assert!(
                bounds.binary_search(&end).is_ok(),
                "{name}: {end} is not a boundary"
            );
            let one = boundaries(at, &bytes);
            assert!(
                bytes.len() <= max || one.len() == 2,
                "{name}: {} bytes for max {max}",
                bytes.len()
            );
            // Not shorter than needed: the next record would not have fit.
            if end < durable {
                let next = bounds[bounds.binary_search(&end).unwrap() + 1];
                assert!(next.0 - at.0 > max as u64, "{name}: stopped early at {end}");
            }
            assert_eq!(
                Journal::decode_raw(at, j.crc_before(at).unwrap(), &bytes).unwrap(),
                read_from(&j, at)[..one.len() - 1].to_vec()
            );
            joined.extend_from_slice(&bytes);
            at = end;
            calls += 1;
        }
        assert!(calls > 20, "{name}: {calls}");
        assert_eq!(joined, expected, "{name}");

        // From every few boundaries, on a fresh handle (no cached
        // positions): the suffix, and the chain value before it.
        drop(j);
        let (j, _) = env.open(small_opts(), Lsn::ZERO);
        let mut prev = 0u32;
        let mut crcs = Vec::new();
        for rec in &recs {
            let (_, c) = encode_stream(prev, std::slice::from_ref(rec));
            crcs.push(prev);
            prev = c;
        }
        for k in (0..recs.len()).rev().step_by(17) {
            let start = pos[k].0;
            assert_eq!(
                j.crc_before(start).unwrap(),
                crcs[k],
                "{name}: crc before {start}"
            );
            let (bytes, end) = j.read_raw(start, usize::MAX).unwrap();
            assert_eq!(end, durable);
            assert_eq!(bytes, expected[start.0 as usize..], "{name}: from {start}");
        }
        // Every segment start: its header's seed.
        for (start, seg) in j.segments() {
            let f = env
                .vfs
                .open(&env.dir.join(&seg), OpenMode::Existing)
                .unwrap();
            let h = SegmentHeader::read(&*f).unwrap().unwrap();
            assert_eq!(j.crc_before(start).unwrap(), h.prev_crc, "{name}: {seg}");
        }
        assert_eq!(j.crc_before(durable).unwrap(), j.last_crc());

        // A record larger than max_bytes comes alone.
        let big = recs.iter().position(|r| r.payload_len() > 1000).unwrap();
        let (bytes, end) = j.read_raw(pos[big].0, 10).unwrap();
        assert_eq!(end, pos[big].1);
        assert_eq!(
            bytes,
            expected[pos[big].0 .0 as usize..pos[big].1 .0 as usize]
        );

        // Nothing after the durable position; appended is not durable.
        assert_eq!(j.read_raw(durable, 100).unwrap(), (Vec::new(), durable));
        let extra_end = j.append(&tagged(9, 9, 20)).unwrap();
        assert_eq!(j.read_raw(durable, 100).unwrap(), (Vec::new(), durable));
        assert_eq!(j.crc_before(extra_end).unwrap(), j.last_crc());
        assert!(matches!(
            j.read_raw(extra_end, 100),
            Err(JournalError::BeyondDurable { .. })
        ));
        j.flush().unwrap();
        let (bytes, end) = j.read_raw(durable, 100).unwrap();
        assert_eq!(end, extra_end);
        assert_eq!(
            records_of(&Journal::decode_raw(durable, last_crc, &bytes).unwrap()),
            vec![tagged(9, 9, 20)]
        );

        // Positions that are not record boundaries.
        for bad in [
            pos[3].0.offset(1),
            pos[200].0.offset(8),
            pos[399].0.offset(9),
        ] {
            let e = expect_err(j.read_raw(bad, 100), name);
            assert!(
                matches!(e, JournalError::NotBoundary { from, .. } if from == bad),
                "{name}: {e}"
            );
            let e = expect_err(j.crc_before(bad), name);
            assert!(matches!(e, JournalError::NotBoundary { .. }), "{name}: {e}");
        }
        let beyond = j.durable_lsn().offset(1);
        assert!(matches!(
            j.read_raw(beyond, 1),
            Err(JournalError::BeyondDurable { .. })
        ));
        assert!(matches!(
            j.crc_before(beyond),
            Err(JournalError::BeyondDurable { .. })
        ));
        assert_eq!(j.oldest_lsn(), Lsn::ZERO);
    }
}

#[test]
fn read_raw_verifies_what_it_returns_even_from_a_known_position() {
    for env in Env::both() {
        let name = env.name();
        let recs: Vec<Record> = (0..60).map(|i| tagged(1, i, 50)).collect();
        let opts = JournalOptions {
            segment_bytes: 1 << 20,
            max_batch_bytes: 1024,
            zero_fill_thread: false,
            ..JournalOptions::default()
        };
        let (j, _) = env.open(opts, Lsn::ZERO);
        let pos = append_all(&j, &recs);
        // Walk it in small reads so many positions are known.
        let mut at = Lsn::ZERO;
        while at < j.durable_lsn() {
            at = j.read_raw(at, 200).unwrap().1;
        }
        // Damage record 40's payload on disk.
        let seg = env.last_segment();
        env.flip_bit(&seg, SegmentHeader::LEN + pos[40].0 .0 + 20, 3);
        let e = expect_err(j.read_raw(pos[30].0, usize::MAX), name);
        match e {
            JournalError::Corrupt { lsn, .. } => assert_eq!(lsn, pos[40].0, "{name}"),
            other => panic!("{name}: {other}"),
        }
        // Before it, still fine.
        let (bytes, end) = j
            .read_raw(pos[30].0, (pos[40].0 .0 - pos[30].0 .0) as usize)
            .unwrap();
        assert_eq!(end, pos[40].0);
        assert_eq!(bytes.len() as u64, pos[40].0 .0 - pos[30].0 .0);
    }
}

/// Feeds `member` from `primary` by read_raw / decode_raw / append_raw, in
/// random pieces cut at record boundaries, committing now and then.
/// Returns the number of append_raw calls.
fn replicate(primary: &Journal, member: &Journal, seed: u64) -> usize {
    let all = read_all(primary);
    let index = |at: Lsn| all.binary_search_by_key(&at, |(l, _)| *l).unwrap();
    let mut r = rng(seed);
    let mut calls = 0;
    while member.end_lsn() < primary.durable_lsn() {
        let from = member.end_lsn();
        let (bytes, end) = primary.read_raw(from, r.gen_range(1..4000)).unwrap();
        // Split it again at random record boundaries.
        let bounds = boundaries(from, &bytes);
        let mut cuts: Vec<Lsn> = bounds[1..bounds.len() - 1]
            .iter()
            .copied()
            .filter(|_| r.gen_bool(0.3))
            .collect();
        cuts.push(end);
        let mut at = from;
        for cut in cuts {
            let piece = &bytes[(at.0 - from.0) as usize..(cut.0 - from.0) as usize];
            let recs = Journal::decode_raw(at, member.last_crc(), piece).unwrap();
            let i = index(at);
            assert_eq!(recs, all[i..i + recs.len()].to_vec());
            let new_end = member.append_raw(at, piece).unwrap();
            assert_eq!(new_end, cut);
            calls += 1;
            if r.gen_bool(0.4) {
                member.wait_durable(new_end).unwrap();
            }
            at = cut;
        }
    }
    member.flush().unwrap();
    calls
}

#[test]
fn append_raw_makes_a_byte_identical_journal() {
    for env in Env::both() {
        let name = env.name();
        let recs = mixed_records(3, 300);
        let (primary, _) = primary_with(&env, &recs);
        let menv = member_env(&env);
        let (member, _) = menv.open(small_opts(), Lsn::ZERO);
        let calls = replicate(&primary, &member, 4);
        assert!(calls > 20, "{name}: {calls}");
        assert_eq!(member.end_lsn(), primary.durable_lsn());
        assert_eq!(member.durable_lsn(), primary.durable_lsn());
        assert_eq!(member.last_crc(), primary.last_crc());
        assert_eq!(read_all(&member), read_all(&primary), "{name}");
        assert_eq!(
            stored_stream(&*env.vfs, &menv.dir, member.durable_lsn()),
            stored_stream(&*env.vfs, &env.dir, primary.durable_lsn()),
            "{name}"
        );
        assert!(
            member.segments().len() >= 5,
            "{name}: the member rolled too"
        );
        drop(member);

        // Reopens cleanly, and replication goes on from where it stopped.
        let (member, report) = menv.open(small_opts(), primary.durable_lsn());
        assert_eq!(report.repair, None, "{name}");
        assert_eq!(report.end, primary.durable_lsn());
        let more = mixed_records(5, 80);
        append_all(&primary, &more);
        replicate(&primary, &member, 6);
        assert_eq!(read_all(&member), read_all(&primary), "{name}");
        assert_eq!(
            stored_stream(&*env.vfs, &menv.dir, member.durable_lsn()),
            stored_stream(&*env.vfs, &env.dir, primary.durable_lsn()),
            "{name}"
        );
        // The member can serve the same stream in turn.
        assert_eq!(
            member.read_raw(Lsn::ZERO, usize::MAX).unwrap(),
            primary.read_raw(Lsn::ZERO, usize::MAX).unwrap()
        );
    }
}

#[test]
fn append_raw_refuses_bad_chunks_and_changes_nothing() {
    for env in Env::both() {
        let name = env.name();
        let recs = mixed_records(7, 120);
        let (primary, pos) = primary_with(&env, &recs);
        let menv = member_env(&env);
        let (member, _) = menv.open(small_opts(), Lsn::ZERO);
        // The member holds the first 50 records.
        let k = 50;
        let (head, _) = primary.read_raw(Lsn::ZERO, pos[k].0 .0 as usize).unwrap();
        assert_eq!(member.append_raw(Lsn::ZERO, &head).unwrap(), pos[k].0);
        member.flush().unwrap();
        let at = member.end_lsn();
        let before = state(&member);
        // The next 10 records.
        let (chunk, chunk_end) = primary
            .read_raw(at, (pos[k + 10].0 .0 - at.0) as usize)
            .unwrap();
        assert_eq!(chunk_end, pos[k + 10].0);
        let off = |i: usize| (pos[k + i].0 .0 - at.0) as usize;

        let check = |bytes: &[u8], start: Lsn, what: &str| -> JournalError {
            let e = expect_err(member.append_raw(start, bytes), &format!("{name}: {what}"));
            assert_eq!(state(&member), before, "{name}: {what} changed the journal");
            e
        };
        let bad_at = |e: &JournalError, want: Lsn, what: &str| match e {
            JournalError::BadStream { lsn, .. } => {
                assert_eq!(*lsn, want, "{name}: {what}: {e}");
                assert!(e.to_string().contains(&want.to_string()), "{e}");
            }
            other => panic!("{name}: {what}: {other}"),
        };

        // A flipped bit in the payload of the third record.
        let mut b = chunk.clone();
        b[off(2) + FrameHeader::LEN + 3] ^= 0x10;
        let e = check(&b, at, "payload bit");
        bad_at(&e, pos[k + 2].0, "payload bit");
        assert!(e.to_string().contains("checksum mismatch"), "{e}");
        // A flipped bit in a stored crc, in a length, a bad kind.
        let mut b = chunk.clone();
        b[off(4) + 6] ^= 1;
        bad_at(&check(&b, at, "crc bit"), pos[k + 4].0, "crc bit");
        let mut b = chunk.clone();
        b[off(5) + 3] ^= 0x80;
        bad_at(&check(&b, at, "length bit"), pos[k + 5].0, "length bit");
        let mut b = chunk.clone();
        b[off(6) + 1] ^= 0x01;
        bad_at(
            &check(&b, at, "small length change"),
            pos[k + 6].0,
            "small length change",
        );
        let mut b = chunk.clone();
        b[off(7) + 4] = 0;
        let e = check(&b, at, "kind 0");
        bad_at(&e, pos[k + 7].0, "kind 0");
        assert!(e.to_string().contains("kind"), "{e}");
        // Cut inside a record, inside a header.
        bad_at(
            &check(&chunk[..off(3) + 20], at, "cut payload"),
            pos[k + 3].0,
            "cut payload",
        );
        bad_at(
            &check(&chunk[..off(3) + 4], at, "cut header"),
            pos[k + 3].0,
            "cut header",
        );
        // A broken chain: records that skip one, or replay an old one.
        bad_at(
            &check(&chunk[off(1)..], at, "skipped record"),
            at,
            "skipped record",
        );
        let (old, _) = primary.read_raw(pos[k - 1].0, 1).unwrap();
        bad_at(&check(&old, at, "replayed record"), at, "replayed record");
        // Records from another journal (same positions, other chain).
        let other = Env::sim();
        let oj = Journal::reset(other.vfs.clone(), &other.dir, small_opts(), Lsn::ZERO, 1).unwrap();
        append_all(&oj, &recs[..k + 3]);
        let (foreign, _) = oj.read_raw(at, usize::MAX).unwrap();
        let e = check(&foreign, at, "foreign");
        bad_at(&e, at, "foreign");
        assert!(e.to_string().contains("chain"), "{e}");
        // A wrong start, before and after the end.
        for start in [pos[k + 1].0, pos[k - 1].0, Lsn::ZERO] {
            match check(&chunk, start, "wrong start") {
                JournalError::WrongStart { start: s, end } => {
                    assert_eq!((s, end), (start, at), "{name}");
                }
                other => panic!("{name}: wrong start: {other}"),
            }
        }
        let e = member.append_raw(pos[k + 1].0, &chunk).unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.contains(&pos[k + 1].0.to_string()) && msg.contains(&at.to_string()),
            "{msg}"
        );

        // The good chunk still appends, and the rest after it.
        assert_eq!(member.append_raw(at, &chunk).unwrap(), chunk_end);
        assert_eq!(member.append_raw(chunk_end, &[]).unwrap(), chunk_end);
        replicate(&primary, &member, 9);
        assert_eq!(read_all(&member), read_all(&primary), "{name}");
        drop(member);
        let (member, report) = menv.open(small_opts(), primary.durable_lsn());
        assert_eq!(report.repair, None);
        assert_eq!(read_all(&member), read_all(&primary), "{name}");
    }
}

#[test]
fn decode_raw_checks_payloads_and_chain() {
    let recs = super::every_kind();
    let (bytes, _) = encode_stream(77, &recs);
    let got = Journal::decode_raw(Lsn(1000), 77, &bytes).unwrap();
    assert_eq!(records_of(&got), recs);
    assert_eq!(got[0].0, Lsn(1000));
    assert!(Journal::decode_raw(Lsn(5), 3, &[]).unwrap().is_empty());
    // Wrong seed: the first record.
    let e = Journal::decode_raw(Lsn(1000), 78, &bytes).unwrap_err();
    assert!(
        matches!(e, JournalError::BadStream { lsn: Lsn(1000), .. }),
        "{e}"
    );
    // A payload with a valid crc but undecodable content.
    let payload = [1u8, 2, 3];
    let h = FrameHeader {
        len: 3,
        kind: 4,
        crc: crate::journal::frame::frame_crc(5, 3, 4, &payload),
    };
    let mut b = h.to_bytes().to_vec();
    b.extend_from_slice(&payload);
    let e = Journal::decode_raw(Lsn(9), 5, &b).unwrap_err();
    assert!(
        matches!(e, JournalError::BadStream { lsn: Lsn(9), .. }),
        "{e}"
    );
    assert!(e.to_string().contains("undecodable"), "{e}");
}

#[test]
fn truncate_cuts_back_and_appends_continue_the_chain() {
    for env in Env::both() {
        let name = env.name();
        let recs = mixed_records(11, 300);
        let (j, pos) = primary_with(&env, &recs);
        let segs = j.segments();
        assert!(segs.len() >= 6, "{name}");
        // Learn many positions (fills the boundary cache past the cut).
        let mut at = Lsn::ZERO;
        while at < j.durable_lsn() {
            at = j.read_raw(at, 500).unwrap().1;
        }

        // Refusals change nothing.
        let before = state(&j);
        let e = expect_err(j.truncate(pos[10].0.offset(3)), name);
        assert!(matches!(e, JournalError::NotBoundary { .. }), "{name}: {e}");
        let e = expect_err(j.truncate(j.end_lsn().offset(9)), name);
        assert!(matches!(e, JournalError::BeyondEnd { .. }), "{name}: {e}");
        assert_eq!(state(&j), before);
        // Pending records: refused until flushed.
        let pending_end = j.append(&tagged(5, 5, 5)).unwrap();
        let e = expect_err(j.truncate(pos[100].0), name);
        assert!(
            matches!(e, JournalError::TruncateBusy { end, .. } if end == pending_end),
            "{name}: {e}"
        );
        assert_eq!(j.end_lsn(), pending_end);
        j.flush().unwrap();
        let mut all = recs.clone();
        all.push(tagged(5, 5, 5));

        // Cut in the middle of an early segment: later segments go.
        let k = 100;
        let cut = pos[k].0;
        j.truncate(cut).unwrap();
        assert_eq!((j.end_lsn(), j.durable_lsn()), (cut, cut), "{name}");
        let (_, crc) = encode_stream(0, &recs[..k]);
        assert_eq!(j.last_crc(), crc);
        assert_eq!(j.crc_before(cut).unwrap(), crc);
        assert!(j.segments().iter().all(|(s, _)| *s <= cut), "{name}");
        assert!(j.segments().len() < segs.len());
        assert_eq!(
            env.segment_paths().len(),
            j.segments().len(),
            "{name}: files removed"
        );
        assert_eq!(records_of(&read_all(&j)), recs[..k].to_vec());
        assert_eq!(j.read_raw(cut, 100).unwrap(), (Vec::new(), cut));
        // The old positions after the cut are gone from the cache too.
        assert!(matches!(
            j.read_raw(pos[200].0, 1),
            Err(JournalError::BeyondDurable { .. })
        ));

        // Appends continue the chain (other records at the same positions).
        let new: Vec<Record> = (0..150).map(|i| tagged(7, i, 60)).collect();
        let new_pos = append_all(&j, &new);
        assert_eq!(new_pos[0].0, cut);
        let want = [recs[..k].to_vec(), new.clone()].concat();
        assert_eq!(records_of(&read_all(&j)), want);
        let (stream, _) = encode_stream(0, &want);
        assert_eq!(
            j.read_raw(Lsn::ZERO, usize::MAX).unwrap().0,
            stream,
            "{name}"
        );
        // Positions learned before the cut are not trusted: read from a
        // new record boundary that was not one before, and an old boundary
        // that is no longer one.
        let (bytes, _) = j.read_raw(new_pos[60].0, 300).unwrap();
        assert_eq!(bytes, stream[new_pos[60].0 .0 as usize..][..bytes.len()]);
        let old_only = pos[k + 1..]
            .iter()
            .map(|p| p.0)
            .find(|p| *p < j.durable_lsn() && new_pos.iter().all(|n| n.0 != *p))
            .unwrap();
        assert!(matches!(
            j.read_raw(old_only, 10),
            Err(JournalError::NotBoundary { .. })
        ));
        drop(j);
        let (j, report) = env.open(small_opts(), new_pos.last().unwrap().1);
        assert_eq!(report.repair, None, "{name}");
        assert_eq!(records_of(&read_all(&j)), want);
        assert_eq!(
            stored_stream(&*env.vfs, &env.dir, j.durable_lsn()),
            stream,
            "{name}"
        );

        // Cut exactly at a segment start, then to the very beginning.
        let (s, _) = j.segments()[2].clone();
        j.truncate(s).unwrap();
        assert_eq!(j.segments().len(), 3);
        assert_eq!(j.end_lsn(), s);
        let more = append_all(&j, &[tagged(1, 1, 10)]);
        assert_eq!(more[0].0, s);
        j.truncate(Lsn::ZERO).unwrap();
        assert_eq!(
            (j.end_lsn(), j.durable_lsn(), j.last_crc()),
            (Lsn::ZERO, Lsn::ZERO, 0)
        );
        assert!(read_all(&j).is_empty());
        append_all(&j, &recs[..5]);
        drop(j);
        let (j, _) = env.open(small_opts(), Lsn::ZERO);
        assert_eq!(records_of(&read_all(&j)), recs[..5].to_vec(), "{name}");
        // Truncating to the end is a no-op.
        let end = j.end_lsn();
        j.truncate(end).unwrap();
        assert_eq!(j.end_lsn(), end);
    }
}

#[test]
fn truncate_waits_for_a_running_flush() {
    // Many committers while another thread truncates to the durable
    // position it sees: either truncate is refused (records pending) or it
    // ran between batches; the log always reopens.
    let env = Env::sim();
    let (j, _) = env.open(small_opts(), Lsn::ZERO);
    let j = Arc::new(j);
    append_all(&j, &(0..20).map(|i| tagged(0, i, 30)).collect::<Vec<_>>());
    let writer = {
        let j = j.clone();
        std::thread::spawn(move || {
            for i in 0..300 {
                let end = j.append(&tagged(1, i, 40)).unwrap();
                // A truncate may cut a record after it became durable; the
                // position then lies beyond the end or holds other bytes.
                match j.wait_durable(end) {
                    Ok(()) | Err(JournalError::BeyondEnd { .. }) => {}
                    Err(e) => panic!("{e}"),
                }
            }
        })
    };
    let (mut ok, mut busy) = (0, 0);
    for _ in 0..200 {
        let d = j.durable_lsn();
        match j.truncate(d) {
            Ok(()) => ok += 1,
            Err(JournalError::TruncateBusy { .. }) => busy += 1,
            Err(e) => panic!("{e}"),
        }
    }
    writer.join().unwrap();
    j.flush().unwrap();
    assert_eq!(ok + busy, 200);
    let end = j.end_lsn();
    let n = read_all(&j).len();
    drop(j);
    let (j, report) = env.open(small_opts(), end);
    assert_eq!(report.repair, None);
    assert_eq!(read_all(&j).len(), n);
}

#[test]
fn reset_starts_a_journal_at_a_given_position() {
    for env in Env::both() {
        let name = env.name();
        // An old journal that reset throws away.
        {
            let (j, _) = env.open(small_opts(), Lsn::ZERO);
            append_all(&j, &mixed_records(13, 100));
        }
        let start = Lsn(12345);
        let seed = 0xdead_beef;
        let j = Journal::reset(env.vfs.clone(), &env.dir, small_opts(), start, seed).unwrap();
        assert_eq!(env.segment_paths().len(), 1, "{name}");
        assert_eq!(j.oldest_lsn(), start);
        assert_eq!(
            (j.end_lsn(), j.durable_lsn(), j.last_crc()),
            (start, start, seed)
        );
        assert_eq!(j.crc_before(start).unwrap(), seed);
        assert!(read_from(&j, start).is_empty());
        assert!(matches!(
            j.read_from(Lsn::ZERO),
            Err(JournalError::NotHeld { .. })
        ));
        assert!(matches!(
            j.read_raw(Lsn(100), 10),
            Err(JournalError::NotHeld { .. })
        ));
        let recs = mixed_records(14, 200);
        let pos = append_all(&j, &recs);
        assert_eq!(pos[0].0, start);
        assert!(j.segments().len() >= 3, "{name}");
        assert_eq!(records_of(&read_from(&j, start)), recs);
        let (stream, last) = encode_stream(seed, &recs);
        assert_eq!(j.read_raw(start, usize::MAX).unwrap().0, stream);
        assert_eq!(
            stored_stream(&*env.vfs, &env.dir, j.durable_lsn()),
            stream,
            "{name}"
        );
        drop(j);
        let (j, report) = env.open(small_opts(), pos.last().unwrap().1);
        assert_eq!(
            (report.start, report.repair.clone()),
            (start, None),
            "{name}"
        );
        assert_eq!(j.last_crc(), last);
        assert_eq!(records_of(&read_from(&j, start)), recs, "{name}");
        assert!(matches!(
            j.truncate(Lsn(12000)),
            Err(JournalError::NotHeld { .. })
        ));
        j.truncate(start).unwrap();
        assert_eq!(j.last_crc(), seed);
    }
}

#[test]
fn a_member_seeded_mid_stream_matches_the_primary_from_there() {
    for env in Env::both() {
        let name = env.name();
        let recs = mixed_records(15, 250);
        let (primary, pos) = primary_with(&env, &recs);
        let from = pos[90].0;
        let menv = member_env(&env);
        let member = Journal::reset(
            env.vfs.clone(),
            &menv.dir,
            small_opts(),
            from,
            primary.crc_before(from).unwrap(),
        )
        .unwrap();
        replicate(&primary, &member, 16);
        assert_eq!(
            read_from(&member, from),
            read_from(&primary, from),
            "{name}"
        );
        assert_eq!(
            member.read_raw(from, usize::MAX).unwrap(),
            primary.read_raw(from, usize::MAX).unwrap()
        );
        drop(member);
        let (member, report) = menv.open(small_opts(), primary.durable_lsn());
        assert_eq!(report.repair, None);
        assert_eq!(
            read_from(&member, from),
            read_from(&primary, from),
            "{name}"
        );
    }
}

#[test]
fn wait_durable_beyond_wakes_on_a_commit_and_times_out_otherwise() {
    for env in Env::both() {
        let (j, _) = env.open(small_opts(), Lsn::ZERO);
        let j = Arc::new(j);
        append_all(&j, &[tagged(1, 0, 10)]);
        let d = j.durable_lsn();
        // Already beyond: at once.
        let t = Instant::now();
        assert_eq!(j.wait_durable_beyond(Lsn::ZERO, Duration::from_secs(30)), d);
        assert!(t.elapsed() < Duration::from_secs(5));
        // Nothing happens: the timeout.
        let t = Instant::now();
        assert_eq!(j.wait_durable_beyond(d, Duration::from_millis(150)), d);
        assert!(t.elapsed() >= Duration::from_millis(150));
        // An append that is not committed does not wake it either.
        j.append(&tagged(1, 1, 10)).unwrap();
        assert_eq!(j.wait_durable_beyond(d, Duration::from_millis(50)), d);
        // A commit from another thread wakes it.
        let waiter = {
            let j = j.clone();
            std::thread::spawn(move || {
                let t = Instant::now();
                let got = j.wait_durable_beyond(d, Duration::from_secs(60));
                (got, t.elapsed())
            })
        };
        std::thread::sleep(Duration::from_millis(100));
        let end = j.append(&tagged(1, 2, 10)).unwrap();
        j.wait_durable(end).unwrap();
        let (got, took) = waiter.join().unwrap();
        assert!(got > d && got <= end, "{got}");
        assert!(took < Duration::from_secs(30), "{took:?}");
        // A member's raw append, committed, wakes it too.
        let menv = member_env(&env);
        let (m, _) = menv.open(small_opts(), Lsn::ZERO);
        let m = Arc::new(m);
        let waiter = {
            let m = m.clone();
            std::thread::spawn(move || m.wait_durable_beyond(Lsn::ZERO, Duration::from_secs(60)))
        };
        std::thread::sleep(Duration::from_millis(50));
        let (bytes, e) = j.read_raw(Lsn::ZERO, usize::MAX).unwrap();
        m.append_raw(Lsn::ZERO, &bytes).unwrap();
        m.flush().unwrap();
        assert_eq!(waiter.join().unwrap(), e);
        // A huge timeout does not overflow.
        assert_eq!(m.wait_durable_beyond(Lsn::ZERO, Duration::MAX), e);
    }
}

/// The primary's stream, built on its own healthy file system.
fn primary_stream(recs: &[Record]) -> (Journal, Vec<u8>) {
    let env = Env::sim();
    let (primary, _) = primary_with(&env, recs);
    let (stream, _) = primary.read_raw(Lsn::ZERO, usize::MAX).unwrap();
    (primary, stream)
}

#[test]
fn a_crash_during_append_raw_leaves_a_prefix() {
    let recs = mixed_records(17, 150);
    let (primary, stream) = primary_stream(&recs);
    let all = read_all(&primary);
    let opts = JournalOptions {
        segment_bytes: 2000,
        max_batch_bytes: 700,
        zero_fill_thread: false,
        ..JournalOptions::default()
    };
    let dir = super::sim_dir();
    let feed = |sim: &SimFs| -> Lsn {
        // Returns the last acknowledged position.
        let mut acked = Lsn::ZERO;
        let Ok((m, _)) = Journal::open(Arc::new(sim.clone()), &dir, opts, Lsn::ZERO) else {
            return acked;
        };
        let mut r = rng(18);
        while m.end_lsn() < primary.durable_lsn() {
            let from = m.end_lsn();
            let Ok((bytes, _)) = primary.read_raw(from, r.gen_range(1..1500)) else {
                panic!("primary read");
            };
            let Ok(end) = m.append_raw(from, &bytes) else {
                return acked;
            };
            if r.gen_bool(0.5) {
                if m.wait_durable(end).is_err() {
                    return acked;
                }
                acked = end;
            }
        }
        if m.flush().is_ok() {
            acked = m.end_lsn();
        }
        acked
    };
    let healthy = SimFs::new();
    assert_eq!(feed(&healthy), primary.durable_lsn());
    let points = healthy.syncs() + 2;
    let mut runs = 0;
    let mut repairs = 0;
    for n in 1..=points {
        let sim = SimFs::new();
        sim.crash_at_sync(n);
        let acked = feed(&sim);
        let fates = (0..4)
            .map(CrashFate::Seeded)
            .chain([CrashFate::DropAll, CrashFate::KeepAll]);
        for fate in fates {
            let what = format!("crash at sync {n}, {fate:?}");
            let image = sim.crash_image_with(fate);
            let vfs: Arc<dyn Vfs> = Arc::new(image);
            let (m, report) = Journal::open(vfs.clone(), &dir, opts, acked)
                .unwrap_or_else(|e| panic!("{what}: open refused: {e}"));
            repairs += usize::from(report.repair.is_some());
            runs += 1;
            let got = read_all(&m);
            assert!(m.durable_lsn() >= acked, "{what}: acknowledged bytes lost");
            assert_eq!(got[..], all[..got.len()], "{what}: not a prefix");
            let held = stored_stream(&*vfs, &dir, m.durable_lsn());
            assert_eq!(held[..], stream[..held.len()], "{what}: bytes differ");
            // Replication resumes from the recovered end.
            replicate(&primary, &m, n);
            assert_eq!(read_all(&m), all, "{what}");
            drop(m);
            let (m, report) =
                Journal::open(vfs.clone(), &dir, opts, primary.durable_lsn()).unwrap();
            assert_eq!(report.repair, None, "{what}");
            assert_eq!(
                stored_stream(&*vfs, &dir, m.durable_lsn()),
                stream,
                "{what}"
            );
            drop(m);
        }
    }
    assert!(runs >= 60, "{runs}");
    assert!(repairs > 0, "no crash image had a torn tail");
}

#[test]
fn a_crash_during_truncate_leaves_a_valid_log() {
    let recs = mixed_records(19, 200);
    let dir = super::sim_dir();
    let opts = small_opts();
    let build = |sim: &SimFs| -> (Journal, Vec<(Lsn, Lsn)>) {
        let (j, _) = Journal::open(Arc::new(sim.clone()), &dir, opts, Lsn::ZERO).unwrap();
        let mut pos = Vec::new();
        for chunk in recs.chunks(9) {
            pos.extend(append_all(&j, chunk));
        }
        (j, pos)
    };
    let healthy = SimFs::new();
    let (j, pos) = build(&healthy);
    let cut = pos[40].0;
    let old_end = j.end_lsn();
    let before = healthy.syncs();
    j.truncate(cut).unwrap();
    let points = healthy.syncs() - before;
    assert!(points >= 3, "{points}");
    drop(j);
    for n in 1..=points + 1 {
        let sim = SimFs::new();
        let (j, _) = build(&sim);
        sim.crash_at_sync(n);
        let result = j.truncate(cut);
        drop(j);
        for seed in 0..6 {
            let what = format!("crash at sync {n} of truncate, seed {seed}: {result:?}");
            let vfs: Arc<dyn Vfs> = Arc::new(sim.crash_image(seed));
            let (j, report) = Journal::open(vfs.clone(), &dir, opts, cut)
                .unwrap_or_else(|e| panic!("{what}: open refused: {e}"));
            assert_eq!(report.repair, None, "{what}");
            let got = records_of(&read_all(&j));
            assert!(j.end_lsn() >= cut && j.end_lsn() <= old_end, "{what}");
            assert_eq!(got[..], recs[..got.len()], "{what}");
            // Redoing the truncate finishes the job.
            j.truncate(cut).unwrap();
            drop(j);
            let (j, _) = Journal::open(vfs, &dir, opts, cut).unwrap();
            assert_eq!(records_of(&read_all(&j)), recs[..40].to_vec(), "{what}");
        }
    }
}

#[test]
fn read_raw_and_append_raw_with_concurrent_writers() {
    // The primary commits from several threads while a streaming thread
    // follows it with wait_durable_beyond + read_raw into a member.
    let env = Env::sim();
    let (primary, _) = env.open(small_opts(), Lsn::ZERO);
    let primary = Arc::new(primary);
    let menv = member_env(&env);
    let (member, _) = menv.open(small_opts(), Lsn::ZERO);
    let writers: Vec<_> = (0..4)
        .map(|t| {
            let p = primary.clone();
            std::thread::spawn(move || {
                for i in 0..100 {
                    let end = p.append(&tagged(t, i, 20 + (i as usize * 7) % 90)).unwrap();
                    if i % 3 == 0 {
                        p.wait_durable(end).unwrap();
                    }
                }
                p.flush().unwrap();
            })
        })
        .collect();
    let total: u64 = (0..4u32)
        .flat_map(|t| {
            (0..100u32).map(move |i| 9 + tagged(t, i, 20 + (i as usize * 7) % 90).payload_len())
        })
        .sum();
    let deadline = Instant::now() + Duration::from_secs(60);
    while member.end_lsn().0 < total {
        assert!(Instant::now() < deadline, "streaming stalled");
        let at = member.end_lsn();
        primary.wait_durable_beyond(at, Duration::from_millis(200));
        let (bytes, end) = primary.read_raw(at, 700).unwrap();
        if !bytes.is_empty() {
            assert_eq!(member.append_raw(at, &bytes).unwrap(), end);
            member.wait_durable(end).unwrap();
        }
    }
    for w in writers {
        w.join().unwrap();
    }
    assert_eq!(read_all(&member), read_all(&primary));
}
