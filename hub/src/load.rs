//! A write load that reports every acknowledged commit, and its checker:
//! the pieces of the kill -9 test and of `redoubt demo`.
//!
//! The loader prints one line per acknowledged commit, after the commit
//! returned: `ack <thread> <seq> <writes ahead>` (the last: how many times
//! the journal has written a transaction's records ahead of its commit). A commit is either one SET of
//! `^Load(thread,seq)` (even `seq`) or a transaction that sets
//! `^Load(thread,seq)` and `^Load(thread,seq,"t",1..=n)` together (odd
//! `seq`; `n` is 3, or [`BIG_TXN`] for every fiftieth, whose records the
//! journal writes ahead of the commit). Whatever the loader printed before
//! it was killed must be in the database after recovery, whole; a
//! transaction it had not acknowledged is there whole or not at all, and
//! nothing after it.
//!
//! With `pipelined`, every commit is a transaction committed with
//! `Session::tcommit_pipelined`, and commit `seq` is acknowledged (waited
//! for, then printed) only after transaction `seq + 1` is built: the
//! printed line follows `PendingCommit::wait`, never the commit call.
//!
//! With `scatter`, the engine's pool is [`SCATTER_POOL_PAGES`], which the
//! database soon outgrows, and every commit is a transaction that also
//! sets `^Scatter(<hash of thread and seq>)`: a new key far from the last
//! one written, whose leaf is not resident or is clean, so it waits in
//! the insert buffer (`btree/buffer.rs`) until a merge. The ack line then
//! ends with the keys buffered when the commit returned, so a test can
//! tell that the crashes met buffered keys.

use std::collections::BTreeMap;
use std::io::{BufRead, Write};
use std::path::Path;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use redoubt_engine::model::{Key, Subscript, Value};
use redoubt_engine::{Engine, EngineOptions, PendingCommit};

pub const DB: &str = "LOAD";

/// Nodes of a big transaction: over 64 KiB of journal records, so the
/// journal writes them ahead of the commit (`Journal::write_ahead`).
pub const BIG_TXN: i64 = 2000;

/// Extra nodes the commit `seq` sets under `^Load(thread,seq,"t")`. Big
/// transactions are rare, so that most commits are small and quick.
fn extra_nodes(seq: u64) -> i64 {
    match seq {
        s if s % 2 == 0 => 0,
        s if s % 50 == 25 => BIG_TXN,
        _ => 3,
    }
}

fn key(thread: u32, seq: u64, sub: Option<i64>) -> Key {
    let mut subs = vec![Subscript::Int(thread as i64), Subscript::Int(seq as i64)];
    if let Some(s) = sub {
        subs.push(Subscript::Str("t".into()));
        subs.push(Subscript::Int(s));
    }
    Key::new("Load", subs).expect("valid key")
}

fn value(thread: u32, seq: u64) -> Value {
    Value::Str(format!(
        "value of {thread}/{seq} {}",
        "x".repeat((seq % 50) as usize)
    ))
}

/// The pool of a scattered load (see the module docs): 512 KiB.
pub const SCATTER_POOL_PAGES: usize = 64;

/// The key a scattered load's commit `seq` of `thread` also sets.
fn scatter_key(thread: u32, seq: u64) -> Key {
    // SplitMix64's finalizer: neighbouring commits land far apart.
    let mut z = (u64::from(thread) << 48 ^ seq).wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^= z >> 31;
    Key::new("Scatter", vec![Subscript::Str(format!("{z:016x}"))]).expect("valid key")
}

/// Opens the engine at `data` (with a pool of [`SCATTER_POOL_PAGES`] if
/// `scatter`), creating the load database if needed.
pub fn open(data: &Path, scatter: bool) -> Result<(Engine, redoubt_engine::RecoveryReport)> {
    let mut opts = EngineOptions::default();
    if scatter {
        opts.cache_pages = SCATTER_POOL_PAGES;
    }
    let (engine, report) = Engine::open(data, opts)
        .with_context(|| format!("open data directory {}", data.display()))?;
    if !engine.database_names().iter().any(|d| d == DB) {
        engine.create_database(DB)?;
    }
    Ok((engine, report))
}

/// How the loader commits (see the module docs).
#[derive(Debug, Clone, Copy, Default)]
pub struct LoadShape {
    pub pipelined: bool,
    pub scatter: bool,
}

/// Runs `threads` writers until killed (or `commits` per thread are done),
/// printing each acknowledged commit on stdout. Each thread resumes after
/// the highest sequence number already stored for it.
pub fn run_writers(data: &Path, threads: u32, commits: u64, shape: LoadShape) -> Result<()> {
    let LoadShape { pipelined, scatter } = shape;
    let (engine, _) = open(data, scatter)?;
    let out = Arc::new(std::sync::Mutex::new(std::io::stdout()));
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let engine = engine.clone();
            let out = out.clone();
            std::thread::spawn(move || -> Result<()> {
                let mut s = engine.session();
                let start = s
                    .order(
                        DB,
                        &key(t, 0, None)
                            .parent()
                            .expect("has parent")
                            .child(Subscript::Str(String::new())),
                        redoubt_engine::Direction::Backward,
                    )?
                    .and_then(|sub| sub.as_i64())
                    .map_or(0, |n| n as u64 + 1);
                let ack = |seq: u64| -> Result<()> {
                    let ahead = engine.journal().writes_ahead();
                    let buffered = if scatter { engine.buffered_keys() } else { 0 };
                    let mut o = out.lock().expect("stdout lock");
                    writeln!(o, "ack {t} {seq} {ahead} {buffered}")?;
                    o.flush()?;
                    Ok(())
                };
                let mut pending: Option<(u64, PendingCommit)> = None;
                for seq in start..start + commits {
                    let txn = pipelined || scatter || seq % 2 == 1;
                    if txn {
                        s.tstart()?;
                    }
                    s.set(DB, &key(t, seq, None), &value(t, seq))?;
                    if scatter {
                        s.set(DB, &scatter_key(t, seq), &value(t, seq))?;
                    }
                    for sub in 1..=extra_nodes(seq) {
                        s.set(DB, &key(t, seq, Some(sub)), &Value::Int(sub))?;
                    }
                    if pipelined {
                        // The previous commit synced while this one was
                        // built; only now is it acknowledged.
                        if let Some((previous, commit)) = pending.take() {
                            commit.wait()?;
                            ack(previous)?;
                        }
                        pending = Some((seq, s.tcommit_pipelined()?));
                        continue;
                    }
                    if txn {
                        s.tcommit()?;
                    }
                    ack(seq)?;
                }
                if let Some((previous, commit)) = pending {
                    commit.wait()?;
                    ack(previous)?;
                }
                Ok(())
            })
        })
        .collect();
    for h in handles {
        h.join().expect("writer thread panicked")?;
    }
    Ok(())
}

/// The highest acknowledged sequence number per thread, from the lines a
/// loader printed (a torn last line is ignored). Returns the number of
/// acknowledged commits.
pub fn parse_acks(reader: impl BufRead, acked: &mut BTreeMap<u32, u64>) -> Result<u64> {
    parse_load_output(reader, acked).map(|o| o.acks)
}

/// What a loader printed, besides the acknowledged sequence numbers.
#[derive(Debug, Clone, Copy, Default)]
pub struct LoadOutput {
    /// Acknowledged commits.
    pub acks: u64,
    /// Writes of transactions' records ahead of their commits, as the
    /// last ack line counted them.
    pub writes_ahead: u64,
    /// The most keys any ack line saw waiting in the insert buffer.
    pub buffered: u64,
}

/// [`parse_acks`], also reading the writes-ahead count.
pub fn parse_load_output(
    reader: impl BufRead,
    acked: &mut BTreeMap<u32, u64>,
) -> Result<LoadOutput> {
    let mut out = LoadOutput::default();
    let n = &mut out.acks;
    for line in reader.lines() {
        let line = line?;
        let mut parts = line.split_whitespace();
        if parts.next() != Some("ack") {
            continue;
        }
        let (Some(t), Some(seq)) = (parts.next(), parts.next()) else {
            continue;
        };
        let (Ok(t), Ok(seq)) = (t.parse::<u32>(), seq.parse::<u64>()) else {
            continue;
        };
        let e = acked.entry(t).or_insert(0);
        *e = (*e).max(seq);
        *n += 1;
        if let Some(Ok(ahead)) = parts.next().map(str::parse::<u64>) {
            out.writes_ahead = out.writes_ahead.max(ahead);
        }
        if let Some(Ok(buffered)) = parts.next().map(str::parse::<u64>) {
            out.buffered = out.buffered.max(buffered);
        }
    }
    Ok(out)
}

/// Checks that every acknowledged commit is present and whole: for each
/// thread, every sequence up to its highest ack, with the transaction's
/// extra nodes for odd sequences (and its `^Scatter` key if `scatter`);
/// and that the commit after the last acknowledged one (perhaps cut off
/// mid-transaction) is whole or absent. Returns the number checked.
pub fn verify(engine: &Engine, acked: &BTreeMap<u32, u64>, scatter: bool) -> Result<u64> {
    let s = engine.session();
    let mut checked = 0;
    // Whether commit `seq`'s scattered key is there (true when not
    // scattered: nothing to miss).
    let scattered = |t: u32, seq: u64| -> Result<bool> {
        Ok(!scatter || s.get(DB, &scatter_key(t, seq))? == Some(value(t, seq)))
    };
    for (&t, &max) in acked {
        for seq in 0..=max {
            let got = s.get(DB, &key(t, seq, None))?;
            if got != Some(value(t, seq)) {
                bail!("acknowledged commit ^Load({t},{seq}) is missing after recovery (found {got:?})");
            }
            if present_nodes(&s, t, seq)? != extra_nodes(seq) || !scattered(t, seq)? {
                bail!("transaction ^Load({t},{seq}) is only partly present after recovery");
            }
            checked += 1;
        }
        // Past the last acknowledged commit: commits the loader made and
        // had not printed (a restarted loader resumes after the last one
        // stored), each whole, then nothing: a commit present after an
        // absent one would mean the journal's order was not kept.
        let mut next = max + 1;
        loop {
            let head = s.get(DB, &key(t, next, None))?.is_some();
            let nodes = present_nodes(&s, t, next)?;
            let far = scatter && scattered(t, next)?;
            if !head && nodes == 0 && !far {
                break;
            }
            if !head || nodes != extra_nodes(next) || !scattered(t, next)? {
                bail!("unacknowledged transaction ^Load({t},{next}) is partly present after recovery ({nodes} of {} nodes)", extra_nodes(next));
            }
            next += 1;
        }
        let after = next + 1;
        if s.get(DB, &key(t, after, None))?.is_some()
            || present_nodes(&s, t, after)? > 0
            || (scatter && scattered(t, after)?)
        {
            bail!("^Load({t},{after}) is present after recovery, though ^Load({t},{next}) is not");
        }
    }
    Ok(checked)
}

/// How many of commit `seq`'s extra nodes hold their value.
fn present_nodes(s: &redoubt_engine::Session, t: u32, seq: u64) -> Result<i64> {
    let mut n = 0;
    for sub in 1..=extra_nodes(seq).max(3) {
        if s.get(DB, &key(t, seq, Some(sub)))? == Some(Value::Int(sub)) {
            n += 1;
        }
    }
    Ok(n)
}
