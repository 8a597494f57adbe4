//! The one interface every benchmarked store sits behind, so a workload is
//! written once and runs, unchanged, on our engine and on each peer.
//!
//! A store lives in its own fresh folder. Handles are per thread: a
//! [`Writer`] is what one committer (one connection, one session) holds,
//! a [`Reader`] what one reading thread holds.

use std::path::Path;

use anyhow::Result;

use crate::workload::RawKey;

/// How a store is set up for a run.
#[derive(Debug, Clone, Copy)]
pub struct StoreConfig {
    /// Page cache / buffer pool to give the store, in bytes (`None`: the
    /// store's default).
    pub cache_bytes: Option<u64>,
}

pub trait Store: Sync + Sized {
    /// The store's own form of a key, built once from the raw 16 bytes as a
    /// user of that store would.
    type Key: Send + Sync;
    type Writer: Writer<Self::Key>;
    type Reader: Reader<Self::Key>;

    /// Short name used in reports ("redoubt", "sqlite", "redb").
    const NAME: &'static str;

    /// Creates an empty store in `dir` (an empty folder).
    fn create(dir: &Path, cfg: StoreConfig) -> Result<Self>;

    fn key(raw: &RawKey) -> Self::Key;

    /// A handle for one committing thread.
    fn writer(&self) -> Result<Self::Writer>;

    /// A handle for one reading thread.
    fn reader(&self) -> Result<Self::Reader>;

    /// What the store can tell about itself mid-run (for our engine:
    /// resident pool pages and journal fsyncs).
    fn probe(&self) -> Probe {
        Probe::default()
    }

    /// Finishes deferred work (flushes, log checkpoints) so a read
    /// benchmark that follows measures reads only.
    fn settle(&self) -> Result<()> {
        Ok(())
    }

    /// Shuts the store down cleanly (flushing what it defers).
    fn close(self) -> Result<()>;
}

#[derive(Debug, Clone, Copy, Default)]
pub struct Probe {
    /// Bytes of pages resident in the buffer pool.
    pub resident_bytes: Option<u64>,
    /// The configured bound of the buffer pool.
    pub pool_bound_bytes: Option<u64>,
    /// fsyncs of the log since the store was created.
    pub log_syncs: Option<u64>,
}

pub trait Writer<K> {
    /// Writes every key with the benchmark value in ONE transaction and
    /// returns when it is durable. One key = one autocommitted write where
    /// the store has that notion (a SET outside a transaction for us).
    fn commit(&mut self, keys: &[K]) -> Result<()>;

    /// Like [`Writer::commit`], but may return before this transaction is
    /// durable: only the previous one must be durable when it returns, and
    /// [`Writer::finish`] waits for the last. A store without such a
    /// commit commits synchronously (the default).
    fn commit_pipelined(&mut self, keys: &[K]) -> Result<()> {
        self.commit(keys)
    }

    /// Returns once every commit made through this writer is durable.
    fn finish(&mut self) -> Result<()> {
        Ok(())
    }
}

pub trait Reader<K> {
    /// Reads one key, borrowing its value where the store can; whether it
    /// was there.
    fn get(&mut self, key: &K) -> Result<bool>;

    /// Reads one key into an owned value (for a store whose plain read
    /// copies anyway, the same as [`Reader::get`]).
    fn get_owned(&mut self, key: &K) -> Result<bool> {
        self.get(key)
    }

    /// Reads every row in key order, borrowing keys and values where the
    /// store can, returning how many.
    fn scan_all(&mut self) -> Result<u64>;

    /// Like [`Reader::scan_all`], with each row's key and value owned (the
    /// same as `scan_all` for a store whose scan copies anyway).
    fn scan_all_owned(&mut self) -> Result<u64> {
        self.scan_all()
    }
}
