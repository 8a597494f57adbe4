//! Reads from cache: point GETs of random loaded keys on 1..N threads, and
//! full ordered scans.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Barrier;
use std::time::{Duration, Instant};

use anyhow::{ensure, Result};

use crate::scenarios::Ctx;
use crate::store::{Reader, Store, StoreConfig, Writer};
use crate::workload::{self, RawKey, SplitMix64};

/// A store loaded with `keys` rows (random keys, committed 1,000 per
/// transaction, then settled), with the keys to look up, as raw bytes.
pub struct Loaded<S: Store> {
    _dir: tempfile::TempDir,
    store: S,
    keys: Vec<RawKey>,
}

pub fn load<S: Store>(ctx: &Ctx, rows: usize, cache_bytes: u64) -> Result<Loaded<S>> {
    let dir = ctx.fresh_dir(&format!("reads-{}", S::NAME))?;
    let store = S::create(
        dir.path(),
        StoreConfig {
            cache_bytes: Some(cache_bytes),
        },
    )?;
    let mut rng = SplitMix64::new(0x0dd_ba11);
    let keys: Vec<RawKey> = (0..rows).map(|_| workload::random_key(&mut rng)).collect();
    let mut writer = store.writer()?;
    for chunk in keys.chunks(1000) {
        let chunk: Vec<S::Key> = chunk.iter().map(S::key).collect();
        writer.commit(&chunk)?;
    }
    drop(writer);
    store.settle()?;
    Ok(Loaded {
        _dir: dir,
        store,
        keys,
    })
}

impl<S: Store> Loaded<S> {
    /// GETs/s of `threads` threads reading random loaded keys for
    /// `duration`. Each thread first scans everything once with its own
    /// reader, so per-connection caches (SQLite's) are warm too.
    pub fn gets(&self, threads: usize, duration: Duration, owned: bool) -> Result<f64> {
        workload::settle_os();
        let stop = AtomicBool::new(false);
        let ready = Barrier::new(threads + 1);
        let (start, results) = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..threads)
                .map(|t| {
                    let (stop, ready) = (&stop, &ready);
                    scope.spawn(move || self.getter(stop, ready, t as u64, owned))
                })
                .collect();
            ready.wait();
            let start = Instant::now();
            std::thread::sleep(duration);
            stop.store(true, Ordering::Relaxed);
            let results: Vec<_> = handles
                .into_iter()
                .map(|h| h.join().expect("reader panicked"))
                .collect();
            (start, results)
        });
        let (mut total, mut end) = (0u64, start);
        for r in results {
            let (n, finished) = r?;
            total += n;
            end = end.max(finished);
        }
        Ok(workload::rate(total, end - start))
    }

    fn getter(
        &self,
        stop: &AtomicBool,
        ready: &Barrier,
        seed: u64,
        owned: bool,
    ) -> Result<(u64, Instant)> {
        let reader = self
            .store
            .reader()
            .and_then(|mut r| r.scan_all().map(|_| r));
        ready.wait();
        let mut reader = reader?;
        let mut rng = SplitMix64::new(seed + 17);
        let mut n = 0u64;
        while !stop.load(Ordering::Relaxed) {
            for _ in 0..256 {
                // Each lookup builds its key from the raw bytes, as an
                // application would from a request. (Half a million
                // prebuilt key objects read at random measured mostly
                // their own cache misses: ours is a `Key` with its
                // subscripts and string on the heap, three dependent
                // reads, against the peers' 16 inline bytes.)
                let key = S::key(&self.keys[rng.below(self.keys.len())]);
                let found = if owned {
                    reader.get_owned(&key)?
                } else {
                    reader.get(&key)?
                };
                ensure!(found, "{}: a loaded key is missing", S::NAME);
            }
            n += 256;
        }
        Ok((n, Instant::now()))
    }

    /// Rows/s of one full ordered scan (rows owned, or borrowed where the
    /// store can).
    pub fn scan(&self, owned: bool) -> Result<f64> {
        let mut reader = self.store.reader()?;
        let start = Instant::now();
        let rows = if owned {
            reader.scan_all_owned()?
        } else {
            reader.scan_all()?
        };
        let elapsed = start.elapsed();
        ensure!(
            rows == self.keys.len() as u64,
            "{}: scan saw {rows} rows, loaded {}",
            S::NAME,
            self.keys.len()
        );
        Ok(workload::rate(rows, elapsed))
    }

    pub fn close(self) -> Result<()> {
        self.store.close()
    }
}
