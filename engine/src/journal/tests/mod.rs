//! Journal tests, on the simulated file system ([`SimFs`]) and on real files
//! ([`OsFs`] in a temporary folder).
//!
//! - `records`: payload and frame encoding, decoding of hostile bytes.
//! - `journal`: appends, reads, group commit, rolling, poisoning.
//! - `tails`: torn tails and corruption at open (fjall-style), the decision
//!   table.
//! - `replication`: raw reads and appends, chain values, truncate, reset,
//!   waiting for durable bytes, crashes during raw appends and truncates.
//! - `crash`: crash images at every sync point (`REDOUBT_LONG_TESTS=1` for
//!   more).

mod crash;
mod journal;
mod records;
mod replication;
mod tails;
mod zero_fill;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::{Journal, JournalOptions, OpenReport, Record};
use crate::storage::os::OsFs;
use crate::storage::sim::SimFs;
use crate::storage::{OpenMode, Vfs};
use crate::Lsn;

/// The journal folder used on a `SimFs`.
fn sim_dir() -> PathBuf {
    PathBuf::from("/db/journal")
}

/// Small sizes so tests roll segments and cut batches.
fn small_opts() -> JournalOptions {
    JournalOptions {
        segment_bytes: 4096,
        max_batch_bytes: 1024,
        // Off: these tests count syncs and fail or cut chosen ones; the
        // thread is tested on its own (`zero_fill`).
        zero_fill_thread: false,
        ..JournalOptions::default()
    }
}

/// Where a test runs: a file system and a journal folder on it.
struct Env {
    vfs: Arc<dyn Vfs>,
    dir: PathBuf,
    sim: Option<SimFs>,
    _tmp: Option<tempfile::TempDir>,
}

impl Env {
    fn sim() -> Env {
        let sim = SimFs::new();
        Env {
            vfs: Arc::new(sim.clone()),
            dir: sim_dir(),
            sim: Some(sim),
            _tmp: None,
        }
    }

    fn os() -> Env {
        let tmp = tempfile::tempdir().expect("temporary folder");
        Env {
            vfs: Arc::new(OsFs),
            dir: tmp.path().join("journal"),
            sim: None,
            _tmp: Some(tmp),
        }
    }

    /// Both kinds, for tests that run on each.
    fn both() -> [Env; 2] {
        [Env::sim(), Env::os()]
    }

    fn name(&self) -> &'static str {
        if self.sim.is_some() {
            "sim"
        } else {
            "os"
        }
    }

    fn open(&self, opts: JournalOptions, known_durable: Lsn) -> (Journal, OpenReport) {
        match Journal::open(self.vfs.clone(), &self.dir, opts, known_durable) {
            Ok(x) => x,
            Err(e) => panic!("open journal on {}: {e}", self.name()),
        }
    }

    /// Paths of the segment files, oldest first.
    fn segment_paths(&self) -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = self
            .vfs
            .list(&self.dir)
            .expect("list journal folder")
            .into_iter()
            .filter(|p| p.extension().is_some_and(|e| e == "jrn"))
            .collect();
        v.sort();
        v
    }

    fn last_segment(&self) -> PathBuf {
        self.segment_paths().pop().expect("a segment")
    }

    fn file_len(&self, path: &Path) -> u64 {
        self.vfs
            .open(path, OpenMode::Existing)
            .unwrap()
            .len()
            .unwrap()
    }

    fn read_file(&self, path: &Path) -> Vec<u8> {
        let f = self.vfs.open(path, OpenMode::Existing).unwrap();
        let mut b = vec![0u8; f.len().unwrap() as usize];
        f.read_exact_at(&mut b, 0).unwrap();
        b
    }

    /// Writes bytes into a file and syncs, as a bad disk or a stray program would.
    fn write_at(&self, path: &Path, offset: u64, bytes: &[u8]) {
        let f = self.vfs.open(path, OpenMode::Existing).unwrap();
        f.write_all_at(bytes, offset).unwrap();
        f.sync().unwrap();
    }

    fn append_bytes(&self, path: &Path, bytes: &[u8]) {
        let len = self.file_len(path);
        self.write_at(path, len, bytes);
    }

    fn flip_bit(&self, path: &Path, offset: u64, bit: u8) {
        match &self.sim {
            Some(sim) => sim.flip_bit(path, offset, bit).unwrap(),
            None => {
                let mut b = [0u8; 1];
                let f = self.vfs.open(path, OpenMode::Existing).unwrap();
                f.read_exact_at(&mut b, offset).unwrap();
                b[0] ^= 1 << bit;
                f.write_all_at(&b, offset).unwrap();
                f.sync().unwrap();
            }
        }
    }
}

/// One record of every kind, plus edge cases (empty strings, no before
/// image, many open transactions, non-ASCII names).
fn every_kind() -> Vec<Record> {
    vec![
        Record::Set {
            txn: 7,
            time_us: 1_700_000_000_000_000,
            db: "DB".into(),
            key: b"\x01Person\x00\x02*".to_vec(),
            value: b"Ada".to_vec(),
            before: None,
        },
        Record::Set {
            txn: 0,
            time_us: 1,
            db: String::new(),
            key: Vec::new(),
            value: Vec::new(),
            before: Some(Vec::new()),
        },
        Record::Set {
            txn: u64::MAX,
            time_us: u64::MAX,
            db: "Datenbank-é".into(),
            key: vec![0xff; 300],
            value: vec![0xab; 1000],
            before: Some(vec![1, 2, 3]),
        },
        Record::Kill {
            txn: 3,
            time_us: 2,
            db: "DB".into(),
            key: b"k".to_vec(),
            before: b"old".to_vec(),
        },
        Record::TxnBegin {
            txn: 3,
            level: 1,
            time_us: 3,
        },
        Record::TxnBegin {
            txn: 3,
            level: 255,
            time_us: 4,
        },
        Record::TxnCommit { txn: 3, time_us: 5 },
        Record::TxnRollback {
            txn: 4,
            to: Lsn(12345),
            full: true,
            time_us: 6,
        },
        Record::TxnRollback {
            txn: 4,
            to: Lsn(0),
            full: false,
            time_us: 7,
        },
        Record::Checkpoint {
            redo_from: Lsn(999),
            open_txns: vec![(1, Lsn(10)), (2, Lsn(20)), (u64::MAX, Lsn(u64::MAX))],
            time_us: 8,
        },
        Record::Checkpoint {
            redo_from: Lsn(0),
            open_txns: Vec::new(),
            time_us: 9,
        },
        Record::Epoch {
            epoch: 42,
            time_us: 10,
        },
        Record::Database {
            name: "USER".into(),
            time_us: 11,
        },
    ]
}

/// A random record; values up to `max_value` bytes.
fn random_record(rng: &mut impl Rng, max_value: usize) -> Record {
    let bytes = |rng: &mut dyn rand::RngCore, max: usize| {
        let n = rng.gen_range(0..=max);
        let mut v = vec![0u8; n];
        rng.fill_bytes(&mut v);
        v
    };
    match rng.gen_range(0..7) {
        0 => Record::Set {
            txn: rng.gen(),
            time_us: rng.gen(),
            db: format!("DB{}", rng.gen_range(0..5)),
            key: bytes(rng, 40),
            value: bytes(rng, max_value),
            before: if rng.gen() {
                Some(bytes(rng, max_value))
            } else {
                None
            },
        },
        1 => Record::Kill {
            txn: rng.gen(),
            time_us: rng.gen(),
            db: "DB".into(),
            key: bytes(rng, 40),
            before: bytes(rng, max_value),
        },
        2 => Record::TxnBegin {
            txn: rng.gen(),
            level: rng.gen(),
            time_us: rng.gen(),
        },
        3 => Record::TxnCommit {
            txn: rng.gen(),
            time_us: rng.gen(),
        },
        4 => Record::TxnRollback {
            txn: rng.gen(),
            to: Lsn(rng.gen()),
            full: rng.gen(),
            time_us: rng.gen(),
        },
        5 => Record::Checkpoint {
            redo_from: Lsn(rng.gen()),
            open_txns: (0..rng.gen_range(0..4))
                .map(|_| (rng.gen(), Lsn(rng.gen())))
                .collect(),
            time_us: rng.gen(),
        },
        _ => Record::Epoch {
            epoch: rng.gen(),
            time_us: rng.gen(),
        },
    }
}

fn rng(seed: u64) -> StdRng {
    StdRng::seed_from_u64(seed)
}

/// A SET whose key says which writer wrote it and its sequence number.
fn tagged(writer: u32, seq: u32, value_len: usize) -> Record {
    Record::Set {
        txn: u64::from(writer),
        time_us: u64::from(seq),
        db: "DB".into(),
        key: format!("w{writer}/{seq}").into_bytes(),
        value: vec![(seq % 251) as u8; value_len],
        before: None,
    }
}

/// Every durable record, in order, checking positions are contiguous.
fn read_all(j: &Journal) -> Vec<(Lsn, Record)> {
    read_from(j, j.segments()[0].0)
}

fn read_from(j: &Journal, from: Lsn) -> Vec<(Lsn, Record)> {
    let reader = j
        .read_from(from)
        .unwrap_or_else(|e| panic!("read from {from}: {e}"));
    let limit = reader.limit();
    let out: Vec<(Lsn, Record)> = reader
        .map(|r| r.unwrap_or_else(|e| panic!("read: {e}")))
        .collect();
    let mut at = from;
    for (lsn, rec) in &out {
        assert_eq!(*lsn, at, "records are contiguous");
        at = lsn.offset(9 + rec.payload_len());
    }
    assert_eq!(at, limit, "the reader reached its limit");
    out
}

/// Appends and makes durable; returns (start, end) of each record.
fn append_all(j: &Journal, recs: &[Record]) -> Vec<(Lsn, Lsn)> {
    let pos: Vec<(Lsn, Lsn)> = recs
        .iter()
        .map(|r| j.append_with_start(r).unwrap())
        .collect();
    j.flush().unwrap();
    pos
}

fn records_of(v: &[(Lsn, Record)]) -> Vec<Record> {
    v.iter().map(|(_, r)| r.clone()).collect()
}
