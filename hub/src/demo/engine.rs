//! `redoubt demo --engine`: what one member's engine does, step by step, on a
//! temporary data directory. Exits non-zero if any step misbehaves.
//! (The default demo is the mirror walkthrough in `mirror.rs`.)

use std::collections::BTreeMap;
use std::io::BufReader;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use redoubt_engine::model::{parse_key, parse_value};

use crate::load;

fn step(n: u32, what: &str) {
    println!("\n[{n}] {what}");
}

pub fn run() -> Result<()> {
    let dir = tempfile::Builder::new().prefix("redoubt-demo-").tempdir()?;
    let data = dir.path().join("member");
    println!(
        "redoubt demo: one member's storage engine, in {}",
        data.display()
    );

    step(1, "open a data directory and set a global");
    let (engine, _) = load::open(&data, false)?;
    engine.create_database("USER")?;
    let mut s = engine.session();
    let key = parse_key("^myfirstglobal")?;
    s.set("USER", &key, &parse_value("\"congratulations\"")?)?;
    let got = s.get("USER", &key)?;
    println!(
        "    set ^myfirstglobal=\"congratulations\"  ->  read back {}",
        got.as_ref().map(|v| v.to_string()).unwrap_or_default()
    );
    ensure!(
        got == Some(parse_value("\"congratulations\"")?),
        "read back {got:?}"
    );

    step(2, "a transaction rolled back restores the before-images");
    let acct = parse_key("^Account(1)")?;
    s.set("USER", &acct, &parse_value("100")?)?;
    s.tstart()?;
    s.increment("USER", &acct, -30)?;
    s.set("USER", &parse_key("^Account(2)")?, &parse_value("30")?)?;
    println!(
        "    inside the transaction: ^Account(1)={}",
        s.get("USER", &acct)?.expect("set")
    );
    s.trollback(false)?;
    let after = s.get("USER", &acct)?;
    println!(
        "    after TROLLBACK:       ^Account(1)={}, ^Account(2) $DATA={}",
        after.clone().expect("set"),
        s.data("USER", &parse_key("^Account(2)")?)?
    );
    ensure!(
        after == Some(parse_value("100")?),
        "rollback left {after:?}"
    );
    drop(s);
    engine.close()?;

    step(
        3,
        "kill -9 a process in the middle of committing, then recover",
    );
    let exe = std::env::current_exe().context("find the redoubt binary")?;
    let mut child = Command::new(exe)
        .args(["write-load", "--threads", "4", "--data"])
        .arg(&data)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .context("start the write load")?;
    let stdout = child.stdout.take().expect("piped");
    let reader = std::thread::spawn(move || {
        let mut acked = BTreeMap::new();
        let n = load::parse_acks(BufReader::new(stdout), &mut acked);
        n.map(|n| (n, acked))
    });
    std::thread::sleep(Duration::from_millis(1500));
    child.kill().context("kill -9 the write load")?; // SIGKILL on Unix
    child.wait()?;
    let (n, acked) = reader.join().expect("reader thread")?;
    println!("    4 writer threads had {n} commits acknowledged when SIGKILL arrived");
    if n == 0 {
        bail!("the write load acknowledged nothing in 1.5 s");
    }
    let t = Instant::now();
    let (engine, report) = load::open(&data, false)?;
    println!(
        "    recovery took {:.0} ms: replayed {} journal records, dropped {} torn bytes, rolled back {} open transaction(s)",
        t.elapsed().as_secs_f64() * 1000.0,
        report.records_replayed,
        report.journal_dropped_bytes,
        report.rolled_back.len()
    );
    let checked = load::verify(&engine, &acked, false)?;
    println!("    all {checked} acknowledged commits are present and whole");
    for (db, c) in engine.check()? {
        println!(
            "    database {db}: {} nodes, {} leaves, depth {}: structure verified",
            c.entries, c.leaves, c.depth
        );
    }
    engine.close()?;
    println!("\ndemo finished: every step behaved");
    Ok(())
}
