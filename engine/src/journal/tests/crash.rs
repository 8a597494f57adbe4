//! Crash images: the simulated disk dies at the n-th sync point, keeps what
//! was synced plus a random keep/drop/tear of what was not, and the journal
//! is reopened from that image.
//!
//! Invariants checked after every crash:
//! - open never refuses a crash image, even told that every acknowledged
//!   position is durable (`known_durable` = the last acknowledged end);
//! - every acknowledged record is present;
//! - the log is a prefix of what was appended, record for record;
//! - appends continue, and a second reopen reads everything.
//!
//! `REDOUBT_LONG_TESTS=1` runs many more (sync point, seed) combinations.

use std::path::Path;
use std::sync::Arc;

use parking_lot::Mutex;

use super::{read_all, sim_dir, tagged};
use crate::journal::{Journal, JournalOptions, Record};
use crate::storage::sim::{CrashFate, SimFs};
use crate::storage::Vfs;
use crate::Lsn;

fn long_tests() -> bool {
    std::env::var("REDOUBT_LONG_TESTS").is_ok_and(|v| v == "1")
}

/// A workload: `threads` writers, each appending `per_thread` records;
/// writer `t` commits every `1 + t % 3 + longer` records (so batches mix
/// single commits and groups). With `opts.write_ahead_bytes` set, writers
/// call [`Journal::write_ahead`] after every append, as a session in a
/// transaction does.
#[derive(Clone, Copy)]
struct Workload {
    threads: u32,
    per_thread: u32,
    longer: u32,
    opts: JournalOptions,
}

/// What the writers saw before the crash.
#[derive(Default)]
struct Seen {
    /// Every append that returned Ok: (start, record).
    appended: Vec<(Lsn, Record)>,
    /// End of every record whose wait_durable returned Ok.
    acked: Vec<Lsn>,
    /// Times a write-ahead left records written and not synced.
    written_ahead: usize,
}

/// Runs the workload on `sim` until it finishes or the disk dies.
fn run(sim: &SimFs, dir: &Path, w: Workload) -> Seen {
    let seen = Arc::new(Mutex::new(Seen::default()));
    let vfs: Arc<dyn Vfs> = Arc::new(sim.clone());
    let Ok((j, _)) = Journal::open(vfs, dir, w.opts, Lsn::ZERO) else {
        return Seen::default(); // died while creating the journal
    };
    let j = Arc::new(j);
    let handles: Vec<_> = (0..w.threads)
        .map(|t| {
            let (j, seen) = (j.clone(), seen.clone());
            std::thread::spawn(move || {
                let group = 1 + t % 3 + w.longer;
                let mut unacked = Vec::new();
                for i in 0..w.per_thread {
                    let rec = tagged(t, i, 10 + ((i * 37 + t * 11) % 180) as usize);
                    let Ok((start, end)) = j.append_with_start(&rec) else {
                        return;
                    };
                    seen.lock().appended.push((start, rec));
                    unacked.push(end);
                    if w.opts.write_ahead_bytes > 0 {
                        if j.write_ahead().is_err() {
                            return;
                        }
                        if j.written_lsn() > j.durable_lsn() {
                            seen.lock().written_ahead += 1;
                        }
                    }
                    if unacked.len() as u32 == group || i + 1 == w.per_thread {
                        if j.wait_durable(end).is_err() {
                            return;
                        }
                        seen.lock().acked.append(&mut unacked);
                    }
                }
            })
        })
        .collect();
    for h in handles {
        h.join().expect("writer thread");
    }
    drop(j);
    Arc::try_unwrap(seen)
        .ok()
        .expect("writers are done")
        .into_inner()
}

/// Opens the crash image and checks the invariants. True if open had to
/// cut a torn tail.
fn check_image(image: SimFs, dir: &Path, w: Workload, seen: &Seen, what: &str) -> bool {
    let known_durable = seen.acked.iter().copied().max().unwrap_or(Lsn::ZERO);
    let vfs: Arc<dyn Vfs> = Arc::new(image);
    let (j, report) = Journal::open(vfs.clone(), dir, w.opts, known_durable)
        .unwrap_or_else(|e| panic!("{what}: open refused a crash image: {e}"));
    let got = read_all(&j);
    let mut appended: Vec<&(Lsn, Record)> = seen.appended.iter().collect();
    appended.sort_by_key(|(lsn, _)| *lsn);
    assert!(
        got.len() <= appended.len(),
        "{what}: more records than appended"
    );
    for (i, (g, a)) in got.iter().zip(&appended).enumerate() {
        assert_eq!(g, *a, "{what}: record {i} differs ({report:?})");
    }
    assert!(
        j.durable_lsn() >= known_durable,
        "{what}: acknowledged records lost ({report:?})"
    );
    // The journal goes on from the recovered end.
    let extra = tagged(99, 0, 50);
    let end = j.append(&extra).unwrap();
    j.wait_durable(end).unwrap();
    drop(j);
    let (j, report2) =
        Journal::open(vfs, dir, w.opts, end).unwrap_or_else(|e| panic!("{what}: second open: {e}"));
    assert_eq!(report2.repair, None, "{what}");
    let again = read_all(&j);
    assert_eq!(again.len(), got.len() + 1, "{what}");
    assert_eq!(again[..got.len()], got[..], "{what}");
    assert_eq!(again[got.len()].1, extra, "{what}");
    report.repair.is_some()
}

/// Crashes at sync points `1..=points` with each seed. Returns the number
/// of seeded images and how many of them needed a repair.
fn crash_matrix(w: Workload, points: u64, seeds: u64) -> (usize, usize) {
    let dir = sim_dir();
    let (mut runs, mut repairs) = (0, 0);
    for n in 1..=points {
        let sim = SimFs::new();
        sim.crash_at_sync(n);
        let seen = run(&sim, &dir, w);
        for seed in 0..seeds {
            let what = format!("crash at sync {n}, seed {seed}");
            repairs += usize::from(check_image(sim.crash_image(seed), &dir, w, &seen, &what));
            runs += 1;
        }
        check_image(
            sim.crash_image_with(CrashFate::DropAll),
            &dir,
            w,
            &seen,
            &format!("crash at sync {n}, drop all"),
        );
        check_image(
            sim.crash_image_with(CrashFate::KeepAll),
            &dir,
            w,
            &seen,
            &format!("crash at sync {n}, keep all"),
        );
    }
    (runs, repairs)
}

/// Sync points a healthy run of the workload takes (about: threads vary it).
fn sync_points(w: Workload) -> u64 {
    let sim = SimFs::new();
    run(&sim, &sim_dir(), w);
    sim.syncs()
}

#[test]
fn crash_images_keep_every_acknowledged_record_concurrent() {
    let w = Workload {
        threads: 4,
        per_thread: if long_tests() { 60 } else { 15 },
        longer: 0,
        opts: JournalOptions {
            segment_bytes: 3000,
            max_batch_bytes: 700,
            zero_fill_thread: false,
            ..JournalOptions::default()
        },
    };
    let points = sync_points(w) + 2;
    let seeds = if long_tests() { 24 } else { 5 };
    let (runs, repairs) = crash_matrix(w, points, seeds);
    eprintln!("concurrent crash images: {runs} (sync point, seed) combinations over {points} sync points, {repairs} torn tails cut");
    assert!(runs >= 100, "{runs}");
    assert!(
        repairs > 0,
        "no crash image had a torn tail: the test does not test recovery"
    );
}

#[test]
fn crash_images_keep_every_acknowledged_record_rolling() {
    // One writer, tiny segments: crashes land in rolls (segment creation,
    // header sync, folder sync) as well as in batches.
    let w = Workload {
        threads: 1,
        per_thread: if long_tests() { 150 } else { 50 },
        longer: 0,
        opts: JournalOptions {
            segment_bytes: 500,
            max_batch_bytes: 300,
            zero_fill_thread: false,
            ..JournalOptions::default()
        },
    };
    let points = sync_points(w) + 2;
    let seeds = if long_tests() { 24 } else { 3 };
    let (runs, repairs) = crash_matrix(w, points, seeds);
    eprintln!("rolling crash images: {runs} (sync point, seed) combinations over {points} sync points, {repairs} torn tails cut");
    assert!(runs >= 100, "{runs}");
    assert!(
        repairs > 0,
        "no crash image had a torn tail: the test does not test recovery"
    );
}

#[test]
fn crash_images_with_big_batches() {
    // Many records per batch, some larger than a batch: tears hit the
    // middle of batches and single oversized records.
    let w = Workload {
        threads: 8,
        per_thread: if long_tests() { 40 } else { 10 },
        longer: 0,
        opts: JournalOptions {
            segment_bytes: 1 << 20,
            max_batch_bytes: 150,
            zero_fill_thread: false,
            ..JournalOptions::default()
        },
    };
    let points = sync_points(w) + 2;
    let seeds = if long_tests() { 24 } else { 4 };
    let (runs, repairs) = crash_matrix(w, points, seeds);
    eprintln!("big-batch crash images: {runs} combinations over {points} sync points, {repairs} torn tails cut");
    assert!(
        repairs > 0,
        "no crash image had a torn tail: the test does not test recovery"
    );
}

#[test]
fn crash_images_with_records_written_ahead_of_their_commits() {
    // Writers commit every 5 to 7 records and write ahead past 150 bytes:
    // crashes land with records written and not synced, across rolls, and
    // with the unsynced bytes at their limit (one batch).
    let w = Workload {
        threads: 3,
        per_thread: if long_tests() { 80 } else { 24 },
        longer: 4,
        opts: JournalOptions {
            segment_bytes: 3000,
            max_batch_bytes: 700,
            zero_fill_thread: false,
            write_ahead_bytes: 150,
        },
    };
    let healthy = SimFs::new();
    let seen = run(&healthy, &sim_dir(), w);
    assert!(
        seen.written_ahead > 10,
        "records were written ahead {} times: the test does not test it",
        seen.written_ahead
    );
    let points = healthy.syncs() + 2;
    let seeds = if long_tests() { 24 } else { 5 };
    let (runs, repairs) = crash_matrix(w, points, seeds);
    eprintln!("write-ahead crash images: {runs} combinations over {points} sync points, {repairs} torn tails cut");
    assert!(runs >= 100, "{runs}");
    assert!(
        repairs > 0,
        "no crash image had a torn tail: the test does not test recovery"
    );
}

/// A purge cut at any of its syncs (one per segment removed) leaves a
/// journal that opens, whatever the crash image kept of the removals not
/// yet synced, and that holds every record from the purge position on:
/// the segments not removed yet form a run without a hole. (With one
/// folder sync after all removals, an image could keep an old segment
/// and lose the ones after it, and open refused the hole.)
#[test]
fn a_purge_cut_at_any_sync_leaves_a_journal_that_opens() {
    let dir = sim_dir();
    let opts = super::small_opts();
    let base = SimFs::new();
    let (j, _) = Journal::open(Arc::new(base.clone()), &dir, opts, Lsn::ZERO).unwrap();
    let recs: Vec<Record> = (0..300).map(|i| tagged(1, i, 80)).collect();
    let positions = super::append_all(&j, &recs);
    let segments = j.segments();
    assert!(segments.len() >= 6, "{} segments", segments.len());
    drop(j);
    // Keep the last two segments.
    let keep = segments[segments.len() - 2].0;
    let kept = positions.iter().position(|p| p.0 >= keep).unwrap();
    let seeds = if long_tests() { 40 } else { 8 };
    for cut in 1..=segments.len() as u64 {
        for seed in 0..seeds {
            let sim = base.crash_image_with(CrashFate::KeepAll);
            let (j, _) = Journal::open(Arc::new(sim.clone()), &dir, opts, Lsn::ZERO).unwrap();
            sim.crash_at_sync(cut);
            let _ = j.purge_before(keep);
            drop(j);
            let image = sim.crash_image(seed);
            let (j, _) = Journal::open(Arc::new(image), &dir, opts, keep)
                .unwrap_or_else(|e| panic!("cut {cut} seed {seed}: {e}"));
            let held = read_all(&j);
            assert!(held.first().unwrap().0 <= keep, "cut {cut} seed {seed}");
            let from = held.iter().position(|r| r.0 == keep).unwrap();
            let got: Vec<Record> = held[from..].iter().map(|r| r.1.clone()).collect();
            assert_eq!(got, recs[kept..].to_vec(), "cut {cut} seed {seed}");
        }
    }
}
