//! Recovery after a crash with a given amount of journal since the last
//! checkpoint.
//!
//! The crash is simulated in process: the engine runs without a write
//! daemon and with a pool big enough that no flush cycle ever starts, so
//! every committed change exists only in the journal; the engine is then
//! leaked (`mem::forget`: no shutdown flush, exactly what a kill leaves on
//! disk, since every commit was durable) and the same folder is reopened,
//! which replays the journal from the last checkpoint. The journal's bytes
//! are still in the OS page cache, as they usually are after a process
//! (not machine) crash.

use std::time::{Duration, Instant};

use anyhow::{ensure, Result};
use redoubt_engine::{Engine, EngineOptions, Lsn};

use crate::redoubt::Redoubt;
use crate::scenarios::Ctx;
use crate::store::{Store, Writer};
use crate::workload::{self, SplitMix64};

#[derive(Debug, Clone, Copy)]
pub struct RecoveryRun {
    /// Journal bytes from the replay start to the end at the crash.
    pub replayed_bytes: u64,
    pub records: u64,
    /// `Engine::open` on the crashed folder, all of it.
    pub open: Duration,
    /// Reading and decoding the same journal span alone, afterwards.
    pub read_only: Duration,
    /// SETs/s while writing the journal (transactions of 1,000).
    pub write_sets_per_s: f64,
}

/// Writes `journal_bytes` of SETs (random keys out of `key_space`, so the
/// tree stays in the pool while the journal grows), crashes, reopens.
pub fn run(ctx: &Ctx, journal_bytes: u64, key_space: u64) -> Result<RecoveryRun> {
    let dir = ctx.fresh_dir("recovery")?;
    let opts = EngineOptions {
        cache_pages: 128 * 1024,
        flush_interval: None,
        ..EngineOptions::default()
    };
    let store = Redoubt::open(dir.path(), opts.clone())?;
    let mut writer = store.writer()?;
    let mut rng = SplitMix64::new(0xc0ffee);
    let mut keys = Vec::with_capacity(1000);
    let mut sets = 0u64;
    let started = Instant::now();
    while store.engine.journal().end_lsn().0 < journal_bytes {
        keys.clear();
        keys.extend(
            (0..1000)
                .map(|_| Redoubt::key(&workload::seq_key(rng.below(key_space as usize) as u64))),
        );
        writer.commit(&keys)?;
        sets += keys.len() as u64;
    }
    let write_sets_per_s = workload::rate(sets, started.elapsed());
    let crash_end = store.engine.journal().end_lsn();
    // The crash: no shutdown, no final checkpoint; the files stay as they are.
    std::mem::forget(writer);
    std::mem::forget(store);

    let t = Instant::now();
    let (engine, report) = Engine::open(dir.path(), opts)?;
    let open = t.elapsed();
    ensure!(
        report.replay_to < crash_end && report.records_replayed > 0,
        "recovery replayed nothing (to {}, records {})",
        report.replay_to.0,
        report.records_replayed
    );
    let read_only = read_journal(&engine, report.replay_from, crash_end)?;
    engine.close()?;
    Ok(RecoveryRun {
        replayed_bytes: crash_end.0 - report.replay_from.0,
        records: report.records_replayed,
        open,
        read_only,
        write_sets_per_s,
    })
}

/// Time to read and decode the journal from `from` to `to` with no apply.
fn read_journal(engine: &Engine, from: Lsn, to: Lsn) -> Result<Duration> {
    let t = Instant::now();
    for item in engine.journal().read_from(from)? {
        let (lsn, rec) = item?;
        std::hint::black_box(&rec);
        if lsn >= to {
            break;
        }
    }
    Ok(t.elapsed())
}
