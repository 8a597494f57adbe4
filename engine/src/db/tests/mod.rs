//! Engine tests: operations, a model-based comparison with a `BTreeMap`, and
//! crash images cut at every sync.

mod commit_path;
mod crash;
mod insert_buffer;
mod model_based;
mod ops;
mod pipelined;
mod regressions;
mod seed;

use std::path::Path;
use std::sync::Arc;

use super::{Engine, EngineOptions};
use crate::journal::JournalOptions;
use crate::model::{parse_key, parse_value, Key, Value};
use crate::storage::sim::SimFs;

pub(super) const DB: &str = "DB";

/// Options for a simulated disk: small pool and segments so that flush
/// cycles and segment rolls happen often; no background daemon, so every
/// sync happens at a deterministic point; no journal kept beyond what
/// recovery needs, so cycles purge segments (and the crash tests check
/// that recovery never needs a purged one).
pub(super) fn sim_opts(fs: &SimFs) -> EngineOptions {
    EngineOptions {
        vfs: Arc::new(fs.clone()),
        cache_pages: 24,
        dirty_fraction: 0.5,
        journal: JournalOptions {
            segment_bytes: 64 * 1024,
            // Crash tests cut the disk at a counted sync: no thread may
            // sync at varying moments.
            zero_fill_thread: false,
            ..JournalOptions::default()
        },
        flush_interval: None,
        journal_keep_bytes: 0,
        ..EngineOptions::default()
    }
}

pub(super) fn open(fs: &SimFs) -> Engine {
    open_with(sim_opts(fs))
}

/// [`open`] with other options (on the file system they name).
pub(super) fn open_with(opts: EngineOptions) -> Engine {
    let (e, _) = Engine::open(Path::new("/data"), opts).expect("open engine");
    if !e.database_names().iter().any(|n| n == DB) {
        e.create_database(DB).expect("create database");
    }
    e
}

pub(super) fn k(text: &str) -> Key {
    parse_key(text).expect("test key parses")
}

pub(super) fn v(text: &str) -> Value {
    parse_value(text).expect("test value parses")
}

/// Every node of every global the tests use, as (encoded key, value).
pub(super) fn contents(e: &Engine) -> Vec<(Vec<u8>, Value)> {
    let s = e.session();
    let mut out = Vec::new();
    for g in ["^A", "^B", "^C"] {
        s.scan(DB, &k(g), |key, value| {
            out.push((key.encode(), value));
            true
        })
        .expect("scan");
    }
    out
}

/// What a follower's receiver does, from `p`'s journal start to `end`:
/// the primary's bytes into `f`'s journal in chunks, made durable, then
/// applied; `after` runs after each chunk.
pub(super) fn replicate(p: &Engine, f: &Engine, end: crate::Lsn, mut after: impl FnMut(&Engine)) {
    let mut pos = crate::Lsn::ZERO;
    while pos < end {
        let (bytes, e) = p.journal().read_raw(pos, 16 << 10).unwrap();
        let records =
            crate::journal::Journal::decode_raw(pos, f.journal().last_crc(), &bytes).unwrap();
        f.journal().append_raw(pos, &bytes).unwrap();
        f.journal().wait_durable(e).unwrap();
        f.apply_received(records, e).unwrap();
        after(f);
        pos = e;
    }
}

/// A primary mirror member alone (no backup: commits wait only for the
/// local sync), on a simulated disk.
pub(super) fn member_primary(fs: &SimFs) -> Engine {
    let opts = EngineOptions {
        mirrored: true,
        ..sim_opts(fs)
    };
    let (e, _) = Engine::open(Path::new("/data"), opts).expect("open");
    e.become_primary(1).expect("become primary");
    e.create_database(DB).expect("create database");
    e
}
