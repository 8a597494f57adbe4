//! Durable commits: N threads, each with its own writer, each commit one
//! SET of a random 16-byte key and a 100-byte value, for a fixed time.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Barrier;
use std::time::{Duration, Instant};

use anyhow::Result;

use crate::scenarios::Ctx;
use crate::store::{Store, StoreConfig, Writer};
use crate::workload::{self, percentile_ms, SplitMix64};

/// One run of one store at one concurrency.
#[derive(Debug, Clone, Copy)]
pub struct CommitRun {
    pub commits_per_s: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    /// Log fsyncs per commit, if the store counts them.
    pub syncs_per_commit: Option<f64>,
}

/// Each figure's median over several runs.
pub fn median_run(runs: &[CommitRun]) -> CommitRun {
    let m = |f: fn(&CommitRun) -> f64| workload::median(&runs.iter().map(f).collect::<Vec<_>>());
    CommitRun {
        commits_per_s: m(|r| r.commits_per_s),
        p50_ms: m(|r| r.p50_ms),
        p99_ms: m(|r| r.p99_ms),
        syncs_per_commit: runs
            .iter()
            .all(|r| r.syncs_per_commit.is_some())
            .then(|| m(|r| r.syncs_per_commit.unwrap_or(f64::NAN))),
    }
}

/// Runs `threads` committers on a fresh store for `duration`.
pub fn run<S: Store>(
    ctx: &Ctx,
    threads: usize,
    duration: Duration,
    seed: u64,
) -> Result<CommitRun> {
    let dir = ctx.fresh_dir(&format!("commits-{}", S::NAME))?;
    let store = S::create(dir.path(), StoreConfig { cache_bytes: None })?;
    let stop = AtomicBool::new(false);
    let ready = Barrier::new(threads + 1);
    let (start, syncs_before, per_thread) = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let (store, stop, ready) = (&store, &stop, &ready);
                scope.spawn(move || committer(store, stop, ready, seed ^ ((t as u64 + 1) << 32)))
            })
            .collect();
        // Every writer is connected before the clock starts.
        ready.wait();
        let syncs_before = store.probe().log_syncs;
        let start = Instant::now();
        std::thread::sleep(duration);
        stop.store(true, Ordering::Relaxed);
        let results: Vec<_> = handles
            .into_iter()
            .map(|h| h.join().expect("committer thread panicked"))
            .collect();
        (start, syncs_before, results)
    });
    let syncs_after = store.probe().log_syncs;
    let mut latencies = Vec::new();
    let mut end = start;
    for r in per_thread {
        let (lat, finished) = r?;
        latencies.extend(lat);
        end = end.max(finished);
    }
    store.close()?;
    let commits = latencies.len() as u64;
    Ok(CommitRun {
        commits_per_s: workload::rate(commits, end - start),
        p50_ms: percentile_ms(&mut latencies, 50.0),
        p99_ms: percentile_ms(&mut latencies, 99.0),
        syncs_per_commit: match (syncs_before, syncs_after) {
            (Some(a), Some(b)) if commits > 0 => Some((b - a) as f64 / commits as f64),
            _ => None,
        },
    })
}

/// One committer: commit latencies in nanoseconds and when it stopped.
/// A failed writer still lets the others start (it waits at the barrier).
fn committer<S: Store>(
    store: &S,
    stop: &AtomicBool,
    ready: &Barrier,
    seed: u64,
) -> Result<(Vec<u64>, Instant)> {
    let writer = store.writer();
    ready.wait();
    let mut writer = writer?;
    let mut rng = SplitMix64::new(seed);
    let mut latencies = Vec::with_capacity(1 << 14);
    while !stop.load(Ordering::Relaxed) {
        let key = S::key(&workload::random_key(&mut rng));
        let t = Instant::now();
        writer.commit(std::slice::from_ref(&key))?;
        latencies.push(t.elapsed().as_nanos() as u64);
    }
    Ok((latencies, Instant::now()))
}
