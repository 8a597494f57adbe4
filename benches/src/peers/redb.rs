//! redb with `Durability::Immediate`: one write transaction per commit,
//! durable when `commit` returns. redb runs one write transaction at a
//! time; concurrent committers queue in `begin_write` (its real behaviour).

use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result};
use redb::{Database, Durability, ReadOnlyTable, ReadableDatabase, ReadableTable, TableDefinition};

use crate::store::{Reader, Store, StoreConfig, Writer};
use crate::workload::{self, RawKey};

const TABLE: TableDefinition<&[u8], &[u8]> = TableDefinition::new("kv");

pub struct Redb {
    db: Arc<Database>,
}

impl Store for Redb {
    type Key = RawKey;
    type Writer = RedbWriter;
    type Reader = RedbReader;
    const NAME: &'static str = "redb";

    fn create(dir: &Path, cfg: StoreConfig) -> Result<Self> {
        let path = dir.join("bench.redb");
        let mut builder = Database::builder();
        if let Some(bytes) = cfg.cache_bytes {
            builder.set_cache_size(bytes as usize);
        }
        let db = builder
            .create(&path)
            .with_context(|| format!("create {}", path.display()))?;
        let txn = db.begin_write()?;
        txn.open_table(TABLE)?;
        txn.commit()?;
        Ok(Redb { db: Arc::new(db) })
    }

    fn key(raw: &RawKey) -> RawKey {
        *raw
    }

    fn writer(&self) -> Result<RedbWriter> {
        Ok(RedbWriter {
            db: self.db.clone(),
            value: workload::value(),
        })
    }

    fn reader(&self) -> Result<RedbReader> {
        let txn = self.db.begin_read()?;
        Ok(RedbReader {
            table: txn.open_table(TABLE)?,
        })
    }

    fn close(self) -> Result<()> {
        Ok(())
    }
}

pub struct RedbWriter {
    db: Arc<Database>,
    value: Vec<u8>,
}

impl Writer<RawKey> for RedbWriter {
    fn commit(&mut self, keys: &[RawKey]) -> Result<()> {
        let mut txn = self.db.begin_write()?;
        txn.set_durability(Durability::Immediate)?;
        {
            let mut table = txn.open_table(TABLE)?;
            for k in keys {
                table.insert(&k[..], &self.value[..])?;
            }
        }
        txn.commit()?;
        Ok(())
    }
}

pub struct RedbReader {
    table: ReadOnlyTable<&'static [u8], &'static [u8]>,
}

impl Reader<RawKey> for RedbReader {
    fn get(&mut self, key: &RawKey) -> Result<bool> {
        Ok(match self.table.get(&key[..])? {
            Some(v) => std::hint::black_box(v.value().len()) > 0,
            None => false,
        })
    }

    fn scan_all(&mut self) -> Result<u64> {
        let (mut n, mut bytes) = (0u64, 0usize);
        for row in self.table.iter()? {
            let (k, v) = row?;
            bytes += k.value().len() + v.value().len();
            n += 1;
        }
        std::hint::black_box(bytes);
        Ok(n)
    }
}
