//! Appends, reads, group commit, segment rolling, poisoning.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::{Condvar, Mutex};
use proptest::prelude::*;

use super::records::any_record;
use super::{
    append_all, every_kind, random_record, read_all, read_from, records_of, rng, small_opts,
    tagged, Env,
};
use crate::journal::{Journal, JournalError, JournalOptions, Record, SegmentHeader};
use crate::storage::sim::SimFs;
use crate::storage::{OpenMode, Vfs, VfsFile};
use crate::Lsn;

#[test]
fn journal_and_reader_are_shareable() {
    fn send_sync<T: Send + Sync>() {}
    fn send<T: Send>() {}
    send_sync::<Journal>();
    send::<crate::journal::JournalReader>();
}

#[test]
fn every_kind_round_trips_through_the_journal() {
    for env in Env::both() {
        let recs = every_kind();
        let (j, report) = env.open(JournalOptions::default(), Lsn::ZERO);
        assert!(report.created);
        assert_eq!(
            (report.end, j.end_lsn(), j.durable_lsn()),
            (Lsn::ZERO, Lsn::ZERO, Lsn::ZERO)
        );
        let pos = append_all(&j, &recs);
        let read = read_all(&j);
        assert_eq!(records_of(&read), recs, "{}", env.name());
        for ((lsn, _), (start, _)) in read.iter().zip(&pos) {
            assert_eq!(lsn, start);
        }
        assert_eq!(j.durable_lsn(), pos.last().unwrap().1);
        drop(j);

        let (j, report) = env.open(JournalOptions::default(), Lsn::ZERO);
        assert!(!report.created);
        assert_eq!(report.records, recs.len() as u64);
        assert_eq!(report.dropped_bytes, 0);
        assert_eq!(report.end, pos.last().unwrap().1);
        assert_eq!(records_of(&read_all(&j)), recs);
    }
}

#[test]
fn positions_count_record_bytes_only() {
    let env = Env::sim();
    let (j, _) = env.open(small_opts(), Lsn::ZERO);
    let mut expect = Lsn::ZERO;
    for i in 0..200u32 {
        let rec = tagged(1, i, (i % 50) as usize);
        let (start, end) = j.append_with_start(&rec).unwrap();
        assert_eq!(start, expect);
        assert_eq!(end, start.offset(9 + rec.payload_len()));
        expect = end;
    }
    j.flush().unwrap();
    let total = || -> u64 { env.segment_paths().iter().map(|p| env.file_len(p)).sum() };
    let exact = expect.0 + SegmentHeader::LEN * env.segment_paths().len() as u64;
    // While open, the last segment is zero-filled ahead of its records.
    assert!(total() > exact);
    drop(j);
    // Closed, the files hold the records plus one 64-byte header each.
    assert_eq!(total(), exact);
}

#[test]
fn segments_roll_and_reads_cross_them() {
    for env in Env::both() {
        let opts = small_opts();
        let (j, _) = env.open(opts, Lsn::ZERO);
        let recs: Vec<Record> = (0..300).map(|i| tagged(1, i, 80)).collect();
        let mut pos = Vec::new();
        for chunk in recs.chunks(7) {
            pos.extend(append_all(&j, chunk));
        }
        let segs = j.segments();
        assert!(segs.len() >= 5, "{} segments", segs.len());
        for (i, (start, name)) in segs.iter().enumerate() {
            assert_eq!(name, &crate::journal::segment_file_name(*start));
            let len = env.file_len(&env.dir.join(name));
            if i + 1 < segs.len() {
                // Rolled once past segment_bytes; at most one batch more.
                assert!(len >= opts.segment_bytes, "segment {name} is {len} bytes");
                assert!(len <= opts.segment_bytes + opts.max_batch_bytes + SegmentHeader::LEN);
                assert_eq!(segs[i + 1].0 .0 - start.0, len - SegmentHeader::LEN);
            }
        }
        assert_eq!(records_of(&read_all(&j)), recs);
        // Reading from any boundary gives the suffix, across segments.
        for k in (0..recs.len()).step_by(13) {
            let got = read_from(&j, pos[k].0);
            assert_eq!(records_of(&got), recs[k..].to_vec());
        }
        // The end is a valid (empty) start.
        assert!(read_from(&j, j.durable_lsn()).is_empty());
        drop(j);
        let (j, report) = env.open(opts, Lsn::ZERO);
        assert_eq!(report.segments, segs.len());
        assert_eq!(records_of(&read_all(&j)), recs);
        // Appends go on in the last segment and roll again later.
        let more: Vec<Record> = (300..400).map(|i| tagged(1, i, 80)).collect();
        append_all(&j, &more);
        assert!(j.segments().len() > segs.len());
        drop(j);
        let (j, _) = env.open(opts, Lsn::ZERO);
        assert_eq!(records_of(&read_all(&j)), [recs, more].concat());
    }
}

#[test]
fn reads_stop_at_durable_and_check_boundaries() {
    let env = Env::sim();
    let (j, _) = env.open(small_opts(), Lsn::ZERO);
    let pos = append_all(&j, &every_kind());
    let not_yet = j.append(&tagged(9, 9, 10)).unwrap();
    assert!(not_yet > j.durable_lsn());
    let r = j.read_from(Lsn::ZERO).unwrap();
    assert_eq!(r.limit(), j.durable_lsn());
    assert_eq!(
        r.count(),
        every_kind().len(),
        "records not yet durable are not read"
    );

    match j.read_from(pos[3].0.offset(1)) {
        Err(JournalError::NotBoundary { from, .. }) => assert_eq!(from, pos[3].0.offset(1)),
        other => panic!("expected NotBoundary, got {other:?}"),
    }
    match j.read_from(not_yet) {
        Err(e @ JournalError::BeyondDurable { .. }) => {
            assert!(e.to_string().contains("durable only up to"))
        }
        other => panic!("expected BeyondDurable, got {other:?}"),
    }
    j.wait_durable(not_yet).unwrap();
    let rest = read_from(&j, pos.last().unwrap().1);
    assert_eq!(records_of(&rest), vec![tagged(9, 9, 10)]);
    // A reader made earlier keeps its own limit; a new one from its
    // position follows the journal.
    let mut r = j.read_from(Lsn::ZERO).unwrap();
    while r.next().is_some() {}
    assert_eq!(r.position(), not_yet);
    assert!(matches!(
        j.wait_durable(not_yet.offset(1)),
        Err(JournalError::BeyondEnd { .. })
    ));
}

#[test]
fn reopen_continues_the_chain() {
    for env in Env::both() {
        let mut all = Vec::new();
        for round in 0..4u32 {
            let (j, report) = env.open(small_opts(), Lsn::ZERO);
            assert_eq!(report.dropped_bytes, 0);
            assert_eq!(j.last_crc(), report.last_crc);
            assert_eq!(records_of(&read_all(&j)), all);
            let recs: Vec<Record> = (0..25).map(|i| tagged(round, i, 30)).collect();
            append_all(&j, &recs);
            all.extend(recs);
        }
        let (j, _) = env.open(small_opts(), Lsn::ZERO);
        assert_eq!(records_of(&read_all(&j)), all);
    }
}

#[test]
fn a_record_larger_than_a_batch_is_written_alone() {
    let env = Env::sim();
    let (j, _) = env.open(small_opts(), Lsn::ZERO);
    let recs = vec![
        tagged(1, 1, 10),
        tagged(1, 2, 5000),
        tagged(1, 3, 10),
        tagged(1, 4, 9000),
    ];
    append_all(&j, &recs);
    assert_eq!(records_of(&read_all(&j)), recs);
    drop(j);
    let (j, report) = env.open(small_opts(), Lsn::ZERO);
    assert_eq!(report.dropped_bytes, 0);
    assert_eq!(records_of(&read_all(&j)), recs);
}

#[test]
fn oversized_records_are_refused_without_harm() {
    let env = Env::sim();
    let (j, _) = env.open(small_opts(), Lsn::ZERO);
    let huge = Record::Kill {
        txn: 0,
        time_us: 0,
        db: "DB".into(),
        key: Vec::new(),
        before: vec![0; crate::journal::MAX_RECORD as usize + 1],
    };
    let err = j.append(&huge).unwrap_err();
    assert!(err.to_string().contains("more than the maximum"), "{err}");
    assert!(!j.is_poisoned());
    append_all(&j, &[tagged(1, 1, 1)]);
    assert_eq!(read_all(&j).len(), 1);
}

#[test]
fn random_workloads_read_back_seeded() {
    for seed in 0..8 {
        let env = Env::sim();
        let mut r = rng(seed);
        let opts = JournalOptions {
            segment_bytes: 2000 + seed * 300,
            max_batch_bytes: 300 + seed * 100,
            zero_fill_thread: false,
            ..JournalOptions::default()
        };
        let (j, _) = env.open(opts, Lsn::ZERO);
        let mut recs = Vec::new();
        for _ in 0..150 {
            let rec = random_record(&mut r, 400);
            j.append(&rec).unwrap();
            recs.push(rec);
            if rand::Rng::gen_ratio(&mut r, 1, 5) {
                j.flush().unwrap();
            }
        }
        j.flush().unwrap();
        assert_eq!(records_of(&read_all(&j)), recs);
        drop(j);
        let (j, _) = env.open(opts, Lsn::ZERO);
        assert_eq!(records_of(&read_all(&j)), recs, "seed {seed}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]
    #[test]
    fn prop_records_survive_the_journal(recs in proptest::collection::vec(any_record(), 1..40)) {
        let env = Env::sim();
        let (j, _) = env.open(small_opts(), Lsn::ZERO);
        append_all(&j, &recs);
        drop(j);
        let (j, _) = env.open(small_opts(), Lsn::ZERO);
        prop_assert_eq!(records_of(&read_all(&j)), recs);
    }
}

/// A `Vfs` whose file syncs take time, like a disk, and can be held shut.
struct SlowFs {
    inner: SimFs,
    gate: Arc<Gate>,
}

struct Gate {
    delay: Duration,
    open: Mutex<bool>,
    cv: Condvar,
    in_sync: AtomicBool,
}

impl Gate {
    fn pass(&self) {
        self.in_sync.store(true, Ordering::SeqCst);
        let mut open = self.open.lock();
        while !*open {
            self.cv.wait(&mut open);
        }
        drop(open);
        std::thread::sleep(self.delay);
        self.in_sync.store(false, Ordering::SeqCst);
    }

    fn set_open(&self, v: bool) {
        *self.open.lock() = v;
        self.cv.notify_all();
    }
}

struct SlowFile {
    inner: Arc<dyn VfsFile>,
    gate: Arc<Gate>,
}

impl Vfs for SlowFs {
    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Arc<dyn VfsFile>> {
        Ok(Arc::new(SlowFile {
            inner: self.inner.open(path, mode)?,
            gate: self.gate.clone(),
        }))
    }
    fn remove(&self, path: &Path) -> io::Result<()> {
        self.inner.remove(path)
    }
    fn exists(&self, path: &Path) -> bool {
        self.inner.exists(path)
    }
    fn list(&self, dir: &Path) -> io::Result<Vec<PathBuf>> {
        self.inner.list(dir)
    }
    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        self.inner.create_dir_all(dir)
    }
    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        self.inner.sync_dir(dir)
    }
}

impl VfsFile for SlowFile {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        self.inner.read_at(buf, offset)
    }
    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.inner.write_all_at(buf, offset)
    }
    fn sync(&self) -> io::Result<()> {
        self.gate.pass();
        self.inner.sync()
    }
    fn len(&self) -> io::Result<u64> {
        self.inner.len()
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        self.inner.set_len(len)
    }
}

fn slow_fs(delay: Duration) -> (Arc<SlowFs>, Arc<Gate>) {
    let gate = Arc::new(Gate {
        delay,
        open: Mutex::new(true),
        cv: Condvar::new(),
        in_sync: AtomicBool::new(false),
    });
    (
        Arc::new(SlowFs {
            inner: SimFs::new(),
            gate: gate.clone(),
        }),
        gate,
    )
}

/// What [`concurrent_commits`] counted.
#[derive(Debug)]
struct CommitCounts {
    commits: u64,
    /// Segment syncs during the run.
    syncs: u64,
    /// Group-commit batches (flushes that wrote bytes) during the run.
    batches: u64,
    /// Segments started during the run (each syncs its header).
    rolls: u64,
}

/// 16 threads append and commit concurrently: every record is read back in
/// order, each thread's records in its own order, and every sync made new
/// bytes durable: one per batch that wrote records, one per new segment, and
/// never more batches than commits (how far below depends on the disk).
fn concurrent_commits(
    vfs: Arc<dyn Vfs>,
    dir: &Path,
    threads: u32,
    per_thread: u32,
) -> CommitCounts {
    let (j, _) = Journal::open(vfs.clone(), dir, small_opts(), Lsn::ZERO).unwrap();
    let j = Arc::new(j);
    let syncs_before = j.syncs();
    let batches_before = j.batches();
    let segments_before = j.segments().len();
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let j = j.clone();
            std::thread::spawn(move || {
                let mut mine = Vec::new();
                for i in 0..per_thread {
                    let (start, end) = j
                        .append_with_start(&tagged(t, i, 20 + (i % 7) as usize))
                        .unwrap();
                    j.wait_durable(end).unwrap();
                    assert!(j.durable_lsn() >= end);
                    mine.push(start);
                }
                mine
            })
        })
        .collect();
    let starts: Vec<Vec<Lsn>> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    let commits = u64::from(threads * per_thread);
    let counts = CommitCounts {
        commits,
        syncs: j.syncs() - syncs_before,
        batches: j.batches() - batches_before,
        rolls: (j.segments().len() - segments_before) as u64,
    };
    // A roll syncs the new segment, and the old one first if it had
    // reserved zeros to cut (it has none when its last batch ended exactly
    // where the zeros did, which the batch sizes of racing committers make
    // possible now and then).
    assert!(
        (counts.batches + counts.rolls..=counts.batches + 2 * counts.rolls).contains(&counts.syncs),
        "a sync that made nothing new durable: {counts:?}"
    );
    assert!(
        counts.batches <= commits,
        "more batches than commits: {counts:?}"
    );
    let read = read_all(&j);
    assert_eq!(read.len() as u64, commits);
    let mut next = vec![0u32; threads as usize];
    for (lsn, rec) in &read {
        let Record::Set { txn, time_us, .. } = rec else {
            panic!("{rec:?}")
        };
        let t = *txn as usize;
        assert_eq!(
            *time_us,
            u64::from(next[t]),
            "thread {t}'s records in order"
        );
        assert_eq!(starts[t][next[t] as usize], *lsn);
        next[t] += 1;
    }
    drop(j);
    let (j, _) = Journal::open(vfs, dir, small_opts(), Lsn::ZERO).unwrap();
    assert_eq!(read_all(&j).len() as u64, commits);
    counts
}

#[test]
fn group_commit_shares_syncs_between_threads() {
    // Syncs that take as long as a fast disk's make batching visible.
    let (fs, _) = slow_fs(Duration::from_micros(500));
    let c = concurrent_commits(fs, Path::new("/j"), 16, 100);
    eprintln!("group commit (slow sim): {c:?}");
    assert!(c.batches * 3 < c.commits, "no batching: {c:?}");
}

#[test]
fn group_commit_on_real_files() {
    let env = Env::os();
    let c = concurrent_commits(env.vfs.clone(), &env.dir, 16, 40);
    eprintln!("group commit (os): {c:?}");
    assert!(c.batches < c.commits, "no batching: {c:?}");
}

#[test]
fn group_commit_on_the_plain_sim() {
    // Syncs take no time here, so batching depends on the scheduler: a
    // batch may hold a single record. What holds regardless is checked by
    // concurrent_commits: no sync without new bytes, batches <= commits.
    // (The 4 KiB segments roll about 25 times, each syncing its header, so
    // syncs alone may exceed commits.)
    let env = Env::sim();
    let c = concurrent_commits(env.vfs.clone(), &env.dir, 16, 100);
    eprintln!("group commit (sim): {c:?}");
}

#[test]
fn commits_already_durable_do_not_sync() {
    let env = Env::sim();
    let (j, _) = Journal::open(env.vfs.clone(), &env.dir, small_opts(), Lsn::ZERO).unwrap();
    let j = Arc::new(j);
    let first = j.append(&tagged(0, 0, 10)).unwrap();
    j.wait_durable(first).unwrap();
    let syncs = j.syncs();
    // Nothing new: neither a flush nor a commit of a durable position syncs.
    j.flush().unwrap();
    j.wait_durable(first).unwrap();
    assert_eq!(j.syncs(), syncs);
    let second = j.append(&tagged(0, 1, 10)).unwrap();
    j.wait_durable(first).unwrap();
    assert_eq!(j.syncs(), syncs, "first was durable: second is not synced");
    assert_eq!(j.durable_lsn(), first);

    // A committer that saw its position not durable, then finds no flush
    // running because the flush that covered it has just ended, returns
    // without leading (which would sync records appended since).
    let inner = &*j.inner;
    let leading = inner.leader.lock();
    let committer = {
        let j = j.clone();
        std::thread::spawn(move || j.wait_durable(second))
    };
    // Let the committer check `durable` and block on the leader lock (if it
    // is slower, it finds `second` durable on its first check: no harm).
    std::thread::sleep(Duration::from_millis(50));
    // The flush that makes `second` durable ends; then a third record.
    inner.flush_batch(&mut inner.active.lock()).unwrap();
    assert_eq!(j.durable_lsn(), second);
    let syncs = j.syncs();
    let third = j.append(&tagged(0, 2, 10)).unwrap();
    drop(leading);
    committer.join().unwrap().unwrap();
    assert_eq!(
        j.syncs(),
        syncs,
        "the committer led a flush it did not need"
    );
    assert_eq!(j.durable_lsn(), second);
    j.wait_durable(third).unwrap();
    assert_eq!(j.syncs(), syncs + 1);
    assert_eq!(j.batches(), 3);
}

#[test]
fn appends_do_not_wait_for_a_running_sync() {
    let (fs, gate) = slow_fs(Duration::ZERO);
    let (j, _) = Journal::open(fs, Path::new("/j"), small_opts(), Lsn::ZERO).unwrap();
    let j = Arc::new(j);
    gate.set_open(false);
    let first = j.append(&tagged(0, 0, 10)).unwrap();
    let committer = {
        let j = j.clone();
        std::thread::spawn(move || j.wait_durable(first))
    };
    while !gate.in_sync.load(Ordering::SeqCst) {
        std::thread::yield_now();
    }
    // The leader is stuck in its sync; appends still go through.
    let mut last = first;
    for i in 1..200 {
        last = j.append(&tagged(0, i, 10)).unwrap();
    }
    assert!(
        gate.in_sync.load(Ordering::SeqCst),
        "the sync is still held"
    );
    assert_eq!(j.durable_lsn(), Lsn::ZERO);
    gate.set_open(true);
    committer.join().unwrap().unwrap();
    j.wait_durable(last).unwrap();
    assert_eq!(read_all(&j).len(), 200);
}

#[test]
fn a_failed_sync_poisons_the_journal() {
    let sim = SimFs::new();
    let dir = PathBuf::from("/j");
    let (j, _) = Journal::open(Arc::new(sim.clone()), &dir, small_opts(), Lsn::ZERO).unwrap();
    append_all(&j, &[tagged(1, 0, 10)]);
    let end = j.append(&tagged(1, 1, 10)).unwrap();
    sim.fail_next_sync();
    let err = j.wait_durable(end).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, JournalError::Poisoned { .. }), "{msg}");
    assert!(
        msg.contains("sync of journal segment 00000000000000000000.jrn failed"),
        "{msg}"
    );
    assert!(j.is_poisoned());
    // Everything after fails with the original cause; the sync is never retried.
    let syncs = sim.syncs();
    let again = j.append(&tagged(1, 2, 10)).unwrap_err();
    assert_eq!(again.to_string(), msg);
    assert!(matches!(
        j.wait_durable(end),
        Err(JournalError::Poisoned { .. })
    ));
    assert!(matches!(j.flush(), Err(JournalError::Poisoned { .. })));
    assert_eq!(sim.syncs(), syncs, "no sync after the failure");
    assert!(j.durable_lsn() < end);
    // What was durable before stays readable.
    assert_eq!(read_all(&j).len(), 1);
}

#[test]
fn a_failed_write_poisons_every_waiter() {
    let sim = SimFs::new();
    let dir = PathBuf::from("/j");
    let (j, _) = Journal::open(Arc::new(sim.clone()), &dir, small_opts(), Lsn::ZERO).unwrap();
    let j = Arc::new(j);
    sim.crash_now();
    let handles: Vec<_> = (0..8)
        .map(|t| {
            let j = j.clone();
            std::thread::spawn(move || {
                let end = j.append(&tagged(t, 0, 10))?;
                j.wait_durable(end)
            })
        })
        .collect();
    for h in handles {
        let err = h.join().unwrap().unwrap_err();
        assert!(matches!(err, JournalError::Poisoned { .. }), "{err}");
    }
    assert!(j.is_poisoned());
}
