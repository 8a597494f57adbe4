//! Our engine behind the [`Store`] interface: one database `DB`, keys
//! `^B("<16 bytes>")`, values `Value::Bytes`.

use std::path::Path;

use anyhow::{Context, Result};
use redoubt_engine::{
    Engine, EngineOptions, Key, PendingCommit, Session, Subscript, Value, ValueRef,
};

use crate::store::{Probe, Reader, Store, StoreConfig, Writer};
use crate::workload::{self, RawKey};

pub const DB: &str = "DB";
pub const GLOBAL: &str = "B";
pub const PAGE_BYTES: u64 = 8192;

pub struct Redoubt {
    pub engine: Engine,
    pool_pages: usize,
}

impl Redoubt {
    /// Opens (creating) the engine in `dir` with `opts` and makes sure `DB`
    /// exists.
    pub fn open(dir: &Path, opts: EngineOptions) -> Result<Redoubt> {
        let pool_pages = opts.cache_pages;
        let (engine, _report) =
            Engine::open(dir, opts).with_context(|| format!("open engine in {}", dir.display()))?;
        if !engine.database_names().iter().any(|n| n == DB) {
            engine.create_database(DB).context("create database DB")?;
        }
        Ok(Redoubt { engine, pool_pages })
    }

    pub fn options(cfg: StoreConfig) -> EngineOptions {
        let mut opts = EngineOptions::default();
        if let Some(bytes) = cfg.cache_bytes {
            opts.cache_pages = (bytes / PAGE_BYTES) as usize;
        }
        opts
    }
}

/// The root of every benchmark key, for scans.
pub fn root() -> Key {
    Key::new(GLOBAL, Vec::new()).expect("valid global name")
}

impl Store for Redoubt {
    type Key = Key;
    type Writer = RedoubtWriter;
    type Reader = RedoubtReader;
    const NAME: &'static str = "redoubt";

    fn create(dir: &Path, cfg: StoreConfig) -> Result<Self> {
        Redoubt::open(dir, Redoubt::options(cfg))
    }

    fn key(raw: &RawKey) -> Key {
        let s = std::str::from_utf8(raw)
            .expect("benchmark keys are ASCII")
            .to_owned();
        Key::new(GLOBAL, vec![Subscript::Str(s)]).expect("valid global name")
    }

    fn writer(&self) -> Result<RedoubtWriter> {
        Ok(RedoubtWriter {
            session: self.engine.session(),
            value: Value::Bytes(workload::value()),
            pending: None,
        })
    }

    fn reader(&self) -> Result<RedoubtReader> {
        Ok(RedoubtReader {
            session: self.engine.session(),
            root: root(),
        })
    }

    fn probe(&self) -> Probe {
        Probe {
            resident_bytes: Some(self.engine.resident_pages() as u64 * PAGE_BYTES),
            pool_bound_bytes: Some(self.pool_pages as u64 * PAGE_BYTES),
            log_syncs: Some(self.engine.journal().syncs()),
        }
    }

    fn settle(&self) -> Result<()> {
        self.engine.checkpoint().context("checkpoint")
    }

    fn close(self) -> Result<()> {
        self.engine.close().context("close engine")
    }
}

pub struct RedoubtWriter {
    session: Session,
    value: Value,
    /// The last pipelined commit, not yet waited for.
    pending: Option<PendingCommit>,
}

impl Writer<Key> for RedoubtWriter {
    fn commit(&mut self, keys: &[Key]) -> Result<()> {
        let s = &mut self.session;
        if let [key] = keys {
            return Ok(s.set(DB, key, &self.value)?);
        }
        s.tstart()?;
        for key in keys {
            s.set(DB, key, &self.value)?;
        }
        s.tcommit()?;
        Ok(())
    }

    fn commit_pipelined(&mut self, keys: &[Key]) -> Result<()> {
        let s = &mut self.session;
        s.tstart()?;
        for key in keys {
            s.set(DB, key, &self.value)?;
        }
        // The previous transaction's sync ran while this one was built.
        self.finish()?;
        self.pending = Some(self.session.tcommit_pipelined()?);
        Ok(())
    }

    fn finish(&mut self) -> Result<()> {
        match self.pending.take() {
            Some(commit) => Ok(commit.wait()?),
            None => Ok(()),
        }
    }
}

pub struct RedoubtReader {
    session: Session,
    root: Key,
}

impl Reader<Key> for RedoubtReader {
    fn get(&mut self, key: &Key) -> Result<bool> {
        // Borrowed, as the peers hand out their values.
        let len = self.session.get_with(DB, key, |v| match v {
            ValueRef::Bytes(b) => b.len(),
            other => other.to_value().encoded_len(),
        })?;
        Ok(std::hint::black_box(len).is_some())
    }

    fn get_owned(&mut self, key: &Key) -> Result<bool> {
        Ok(self.session.get(DB, key)?.is_some())
    }

    fn scan_all(&mut self) -> Result<u64> {
        // Borrowed, as the peers hand out their rows.
        let mut bytes = 0usize;
        let n = self.session.scan_rows(DB, &self.root, |row| {
            bytes += row.encoded_key().len();
            if let ValueRef::Bytes(b) = row.value() {
                bytes += b.len();
            }
            true
        })?;
        std::hint::black_box(bytes);
        Ok(n)
    }

    fn scan_all_owned(&mut self) -> Result<u64> {
        let mut bytes = 0usize;
        let n = self.session.scan(DB, &self.root, |_, v| {
            if let Value::Bytes(b) = &v {
                bytes += b.len();
            }
            true
        })?;
        std::hint::black_box(bytes);
        Ok(n)
    }
}
