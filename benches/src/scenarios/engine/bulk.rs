//! Bulk load: one thread, one transaction per 1,000 SETs, sequential or
//! random keys, into a store whose cache is a quarter of the data; each
//! commit waited for before the next transaction starts, or pipelined (the
//! loader builds transaction N+1 while N syncs; ours only, see
//! `redoubt_engine::PendingCommit`).

use std::time::{Duration, Instant};

use anyhow::Result;

use crate::scenarios::Ctx;
use crate::store::{Store, StoreConfig, Writer};
use crate::workload::{self, SplitMix64};

pub const BATCH: usize = 1000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Order {
    Sequential,
    Random,
}

/// How the loader waits for its commits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Commits {
    /// Each commit returns once durable: the next transaction waits.
    Synchronous,
    /// Each commit returns at once; the loader waits for it after building
    /// the next transaction (at most one unacknowledged at a time).
    Pipelined,
}

impl Order {
    pub fn label(self) -> &'static str {
        match self {
            Order::Sequential => "sequential",
            Order::Random => "random",
        }
    }
}

#[derive(Debug, Clone, Copy)]
pub struct BulkRun {
    pub sets_per_s: f64,
    /// Largest pool residency seen after any transaction, if reported.
    pub max_resident_bytes: Option<u64>,
    pub pool_bound_bytes: Option<u64>,
    /// Bytes handed to write system calls per row during the load (page
    /// writes, journal, write image journal), if the OS tells.
    pub written_per_row: Option<f64>,
    /// Peak resident memory of the whole process during the load (from
    /// the store's creation to the last commit), if the OS tells.
    pub peak_rss_bytes: Option<u64>,
    /// Time of the clean shutdown after the load (deferred flushing).
    pub close: Duration,
    /// Size of the store's files after the shutdown.
    pub file_bytes: u64,
}

/// Loads `rows` rows in transactions of [`BATCH`] into a fresh store with a
/// `cache_bytes` cache, committing as `commits` says. Timed from the first
/// SET until the last commit is durable.
pub fn run<S: Store>(
    ctx: &Ctx,
    order: Order,
    commits: Commits,
    rows: u64,
    cache_bytes: u64,
) -> Result<BulkRun> {
    let dir = ctx.fresh_dir(&format!("bulk-{}", S::NAME))?;
    let measures_rss = workload::reset_peak_rss();
    let store = S::create(
        dir.path(),
        StoreConfig {
            cache_bytes: Some(cache_bytes),
        },
    )?;
    let mut writer = store.writer()?;
    let mut rng = SplitMix64::new(0x5eed_b01c);
    workload::settle_os();
    let mut keys: Vec<S::Key> = Vec::with_capacity(BATCH);
    let mut max_resident = None;
    let written_before = workload::process_written_bytes();
    let start = Instant::now();
    let mut next = 0u64;
    while next < rows {
        keys.clear();
        let n = (rows - next).min(BATCH as u64);
        for i in next..next + n {
            let raw = match order {
                Order::Sequential => workload::seq_key(i),
                Order::Random => workload::random_key(&mut rng),
            };
            keys.push(S::key(&raw));
        }
        next += n;
        match commits {
            Commits::Synchronous => writer.commit(&keys)?,
            Commits::Pipelined => writer.commit_pipelined(&keys)?,
        }
        if let Some(r) = store.probe().resident_bytes {
            max_resident = Some(max_resident.unwrap_or(0).max(r));
        }
    }
    writer.finish()?;
    let elapsed = start.elapsed();
    let peak_rss_bytes = workload::peak_rss().filter(|_| measures_rss);
    let written_per_row = match (written_before, workload::process_written_bytes()) {
        (Some(a), Some(b)) => Some((b - a) as f64 / rows as f64),
        _ => None,
    };
    let pool_bound_bytes = store.probe().pool_bound_bytes;
    drop(writer);
    let closing = Instant::now();
    store.close()?;
    let close = closing.elapsed();
    Ok(BulkRun {
        sets_per_s: workload::rate(rows, elapsed),
        max_resident_bytes: max_resident,
        pool_bound_bytes,
        written_per_row,
        peak_rss_bytes,
        close,
        file_bytes: workload::dir_bytes(dir.path()),
    })
}

/// The run of median rate (its other figures with it), except that the
/// resident pool and the process's peak memory are the largest any run
/// saw. `runs` is not empty.
pub fn median_run(mut runs: Vec<BulkRun>) -> BulkRun {
    let max_resident = runs.iter().filter_map(|r| r.max_resident_bytes).max();
    let peak_rss = runs.iter().filter_map(|r| r.peak_rss_bytes).max();
    runs.sort_by(|a, b| a.sets_per_s.total_cmp(&b.sets_per_s));
    let mut mid = runs.swap_remove(runs.len() / 2);
    mid.max_resident_bytes = max_resident;
    mid.peak_rss_bytes = peak_rss;
    mid
}

/// Every run's rate, for the progress log.
pub fn rates(runs: &[BulkRun]) -> String {
    let each: Vec<String> = runs
        .iter()
        .map(|r| format!("{:.0}", r.sets_per_s))
        .collect();
    each.join(" / ")
}
