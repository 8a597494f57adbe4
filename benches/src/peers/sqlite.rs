//! SQLite (bundled, through rusqlite) in WAL mode with `synchronous=FULL`:
//! a commit is durable when it returns. One connection per thread, a
//! `WITHOUT ROWID` table `kv(k BLOB PRIMARY KEY, v BLOB)`, one
//! `INSERT OR REPLACE` per row, `BEGIN IMMEDIATE` … `COMMIT` per
//! transaction (writers queue on the busy timeout, SQLite's real
//! behaviour with many writers).

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use rusqlite::Connection;

use crate::store::{Reader, Store, StoreConfig, Writer};
use crate::workload::{self, RawKey};

const INSERT: &str = "INSERT OR REPLACE INTO kv (k, v) VALUES (?1, ?2)";
const SELECT: &str = "SELECT v FROM kv WHERE k = ?1";
const SCAN: &str = "SELECT k, v FROM kv ORDER BY k";

pub struct Sqlite {
    path: PathBuf,
    cfg: StoreConfig,
}

impl Sqlite {
    /// A connection set up like every other one of this store.
    fn connect(&self) -> Result<Connection> {
        let conn = Connection::open(&self.path)
            .with_context(|| format!("open {}", self.path.display()))?;
        conn.busy_timeout(Duration::from_secs(120))?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        if let Some(bytes) = self.cfg.cache_bytes {
            // A negative cache_size is in KiB.
            conn.pragma_update(None, "cache_size", -((bytes / 1024) as i64))?;
        }
        Ok(conn)
    }
}

impl Store for Sqlite {
    type Key = RawKey;
    type Writer = SqliteWriter;
    type Reader = SqliteReader;
    const NAME: &'static str = "sqlite";

    fn create(dir: &Path, cfg: StoreConfig) -> Result<Self> {
        let store = Sqlite {
            path: dir.join("bench.sqlite"),
            cfg,
        };
        let conn = store.connect()?;
        let mode: String = conn.query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))?;
        anyhow::ensure!(
            mode.eq_ignore_ascii_case("wal"),
            "sqlite refused WAL mode: {mode}"
        );
        conn.execute_batch("CREATE TABLE kv (k BLOB PRIMARY KEY, v BLOB NOT NULL) WITHOUT ROWID")?;
        Ok(store)
    }

    fn key(raw: &RawKey) -> RawKey {
        *raw
    }

    fn writer(&self) -> Result<SqliteWriter> {
        Ok(SqliteWriter {
            conn: self.connect()?,
            value: workload::value(),
        })
    }

    fn reader(&self) -> Result<SqliteReader> {
        Ok(SqliteReader {
            conn: self.connect()?,
        })
    }

    fn settle(&self) -> Result<()> {
        let conn = self.connect()?;
        conn.pragma_update(None, "wal_checkpoint", "TRUNCATE")?;
        Ok(())
    }

    fn close(self) -> Result<()> {
        let conn = self.connect()?;
        conn.pragma_update(None, "wal_checkpoint", "TRUNCATE")?;
        Ok(())
    }
}

pub struct SqliteWriter {
    conn: Connection,
    value: Vec<u8>,
}

impl Writer<RawKey> for SqliteWriter {
    fn commit(&mut self, keys: &[RawKey]) -> Result<()> {
        self.conn.execute_batch("BEGIN IMMEDIATE")?;
        let result = (|| {
            let mut insert = self.conn.prepare_cached(INSERT)?;
            for k in keys {
                insert.execute((&k[..], &self.value[..]))?;
            }
            Ok::<_, rusqlite::Error>(())
        })();
        match result {
            Ok(()) => self.conn.execute_batch("COMMIT")?,
            Err(e) => {
                let _ = self.conn.execute_batch("ROLLBACK");
                return Err(e.into());
            }
        }
        Ok(())
    }
}

pub struct SqliteReader {
    conn: Connection,
}

impl Reader<RawKey> for SqliteReader {
    fn get(&mut self, key: &RawKey) -> Result<bool> {
        let mut select = self.conn.prepare_cached(SELECT)?;
        let mut rows = select.query([&key[..]])?;
        Ok(match rows.next()? {
            Some(row) => std::hint::black_box(row.get_ref(0)?.as_blob()?.len()) > 0,
            None => false,
        })
    }

    fn scan_all(&mut self) -> Result<u64> {
        let mut scan = self.conn.prepare_cached(SCAN)?;
        let mut rows = scan.query([])?;
        let (mut n, mut bytes) = (0u64, 0usize);
        while let Some(row) = rows.next()? {
            bytes += row.get_ref(0)?.as_blob()?.len() + row.get_ref(1)?.as_blob()?.len();
            n += 1;
        }
        std::hint::black_box(bytes);
        Ok(n)
    }
}
