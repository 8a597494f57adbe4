//! A write load that reports every acknowledged commit, and its checker:
//! the pieces of the kill -9 test and of `redoubt demo`.
//!
//! The loader prints one line per acknowledged commit, after the commit
//! returned: `ack <thread> <seq>`. A commit is either one SET of
//! `^Load(thread,seq)` or a transaction that sets `^Load(thread,seq)` and
//! `^Load(thread,seq,"t",1..=3)` together. Whatever the loader printed before
//! it was killed must be in the database after recovery.

use std::collections::BTreeMap;
use std::io::{BufRead, Write};
use std::path::Path;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use redoubt_engine::model::{Key, Subscript, Value};
use redoubt_engine::{Engine, EngineOptions};

pub const DB: &str = "LOAD";

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

/// Opens the engine at `data`, creating the load database if needed.
pub fn open(data: &Path) -> Result<(Engine, redoubt_engine::RecoveryReport)> {
    let (engine, report) = Engine::open(data, EngineOptions::default())
        .with_context(|| format!("open data directory {}", data.display()))?;
    if !engine.database_names().iter().any(|d| d == DB) {
        engine.create_database(DB)?;
    }
    Ok((engine, report))
}

/// Runs `threads` writers until killed (or `commits` per thread are done),
/// printing each acknowledged commit on stdout. Each thread resumes after
/// the highest sequence number already stored for it.
pub fn run_writers(data: &Path, threads: u32, commits: u64) -> Result<()> {
    let (engine, _) = open(data)?;
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
                for seq in start..start + commits {
                    if seq % 2 == 0 {
                        s.set(DB, &key(t, seq, None), &value(t, seq))?;
                    } else {
                        s.tstart()?;
                        s.set(DB, &key(t, seq, None), &value(t, seq))?;
                        for sub in 1..=3 {
                            s.set(DB, &key(t, seq, Some(sub)), &Value::Int(sub))?;
                        }
                        s.tcommit()?;
                    }
                    let mut o = out.lock().expect("stdout lock");
                    writeln!(o, "ack {t} {seq}")?;
                    o.flush()?;
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
/// loader printed (a torn last line is ignored).
pub fn parse_acks(reader: impl BufRead, acked: &mut BTreeMap<u32, u64>) -> Result<u64> {
    let mut n = 0;
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
        n += 1;
    }
    Ok(n)
}

/// Checks that every acknowledged commit is present and whole: for each
/// thread, every sequence up to its highest ack, with the transaction's
/// three extra nodes for odd sequences. Returns the number checked.
pub fn verify(engine: &Engine, acked: &BTreeMap<u32, u64>) -> Result<u64> {
    let s = engine.session();
    let mut checked = 0;
    for (&t, &max) in acked {
        for seq in 0..=max {
            let got = s.get(DB, &key(t, seq, None))?;
            if got != Some(value(t, seq)) {
                bail!("acknowledged commit ^Load({t},{seq}) is missing after recovery (found {got:?})");
            }
            if seq % 2 == 1 {
                for sub in 1..=3 {
                    if s.get(DB, &key(t, seq, Some(sub)))? != Some(Value::Int(sub)) {
                        bail!("transaction ^Load({t},{seq}) is only partly present after recovery");
                    }
                }
            }
            checked += 1;
        }
    }
    Ok(checked)
}
