//! `redoubt demo`: the seed's "Try It!" walkthrough on one machine. An
//! arbiter, two failover members and a DR async member start as separate
//! processes on loopback; the demo writes on the primary, reads on the
//! backup, is refused a write there, kills the primary, watches the backup
//! take over, writes again, restarts the old primary (which rejoins as
//! backup) and lists the members.

use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use redoubt_engine::client::{Client, ClientError, ClientOptions, Target};
use redoubt_engine::model::{parse_key, parse_value, Key, Value};

use crate::cluster::{LocalCluster, Plan};

const DB: &str = "USER";

fn step(n: u32, what: &str) {
    println!("\n[{n}] {what}");
}

fn client_of(addrs: &[String], target: Target) -> Result<Client> {
    let opts = ClientOptions {
        name: "redoubt-demo".into(),
        target,
        primary_wait: Duration::from_secs(10),
        io_timeout: Duration::from_secs(10),
        ..ClientOptions::default()
    };
    Ok(Client::connect(addrs, opts)?)
}

/// Reads `key` on one member until it equals `want` (or times out).
fn read_on(cluster: &LocalCluster, member: &str, key: &Key, want: &Value) -> Result<Duration> {
    let t0 = Instant::now();
    let mut c = client_of(&[cluster.addr(member)], Target::Any)?;
    loop {
        let got = c.get(DB, key)?;
        if got.as_ref() == Some(want) {
            return Ok(t0.elapsed());
        }
        if t0.elapsed() > Duration::from_secs(10) {
            bail!("{member} still has {key}={got:?}, expected {want}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn refused_write(cluster: &LocalCluster, member: &str, key: &Key) -> Result<String> {
    let mut c = client_of(&[cluster.addr(member)], Target::Any)?;
    match c.set(DB, key, &Value::Str("not allowed".into())) {
        Err(ClientError::Remote(e)) => Ok(e.to_string()),
        Err(other) => bail!("the write on {member} failed oddly: {other}"),
        Ok(()) => bail!("{member} accepted a write although it is not the primary"),
    }
}

pub fn run() -> Result<()> {
    let dir = tempfile::Builder::new().prefix("redoubt-demo-").tempdir()?;
    let exe = std::env::current_exe().context("find the redoubt binary")?;
    let plan = Plan::new(&["a", "b"], &["dr"], true, 2000);
    println!("redoubt demo: a mirror of two failover members (a, b), a DR async member (dr)");
    println!(
        "and an arbiter, as separate processes on loopback, in {}",
        dir.path().display()
    );
    let result = walk(&exe, dir.path(), plan);
    if std::env::var("REDOUBT_DEMO_KEEP").is_ok() {
        let kept = dir.keep();
        eprintln!("kept {}", kept.display());
        return result;
    }
    if result.is_err() {
        for name in ["a", "b", "dr", "arbiter"] {
            let path = dir.path().join(format!("{name}.log"));
            eprintln!("(logs in {})", path.display());
            if let Ok(text) = std::fs::read_to_string(&path) {
                let lines: Vec<&str> = text.lines().collect();
                eprintln!("--- last lines of {name}.log ---");
                for l in &lines[lines.len().saturating_sub(8)..] {
                    eprintln!("{l}");
                }
            }
        }
    }
    result
}

fn walk(exe: &std::path::Path, dir: &std::path::Path, plan: Plan) -> Result<()> {
    let mut cluster = LocalCluster::start(exe, dir, plan)?;
    let key = parse_key("^myfirstglobal")?;

    step(
        1,
        "start the mirror and wait for a primary and an active backup",
    );
    let took = cluster.wait_until(
        Duration::from_secs(20),
        "a primary with an active backup",
        |c| {
            let st: Vec<_> = ["a", "b"].iter().filter_map(|m| c.status(m).ok()).collect();
            st.iter().any(|s| s.role == "primary" && s.sync)
                && st.iter().any(|s| s.role == "backup" && s.active_backup)
        },
    )?;
    let primary = cluster.primary().context("no primary")?;
    let backup = if primary == "a" { "b" } else { "a" }.to_string();
    println!(
        "    after {:.1} s: {primary} is primary, {backup} is its active backup",
        took.as_secs_f64()
    );

    step(2, "set ^myfirstglobal=\"congratulations\" on the primary");
    let mut app = client_of(&cluster.addrs(), Target::Primary)?;
    let v1 = parse_value("\"congratulations\"")?;
    app.set(DB, &key, &v1)?;
    println!(
        "    written through {} (the client found the primary by itself)",
        app.server().unwrap_or("?")
    );

    step(3, "read it on the backup");
    let t = read_on(&cluster, &backup, &key, &v1)?;
    println!(
        "    {backup} has ^myfirstglobal={v1} (visible after {} ms)",
        t.as_millis()
    );

    step(4, "a write on the backup is refused");
    println!(
        "    {backup} said: {}",
        refused_write(&cluster, &backup, &key)?
    );

    step(
        5,
        "stop the primary (kill -9) and watch the backup take over",
    );
    let t0 = Instant::now();
    cluster.kill(&primary)?;
    cluster.wait_until(
        Duration::from_secs(15),
        "the backup becoming primary",
        |c| c.primary().as_deref() == Some(backup.as_str()),
    )?;
    println!(
        "    {backup} became primary {} ms after the kill",
        t0.elapsed().as_millis()
    );

    step(6, "write \"what next?\" on the new primary");
    let v2 = parse_value("\"what next?\"")?;
    let mut app = client_of(&cluster.addrs(), Target::Primary)?;
    app.set(DB, &key, &v2)?;
    println!("    written through {}", app.server().unwrap_or("?"));
    ensure!(
        app.get(DB, &key)? == Some(v2.clone()),
        "the new primary does not read back its write"
    );

    step(7, "restart the old primary: it rejoins as backup");
    cluster.start_one(&primary)?;
    cluster.wait_until(
        Duration::from_secs(15),
        "the old primary rejoining as backup",
        |c| c.status(&primary).is_ok_and(|s| s.role == "backup"),
    )?;
    let t = read_on(&cluster, &primary, &key, &v2)?;
    println!(
        "    {primary} is backup again and has ^myfirstglobal={v2} (after {} ms)",
        t.as_millis()
    );
    println!(
        "    a write there: {}",
        refused_write(&cluster, &primary, &key)?
    );

    step(8, "the DR async member followed the new primary");
    read_on(&cluster, "dr", &key, &v2)?;
    println!("    dr has ^myfirstglobal={v2}");

    step(9, "redoubt list");
    cluster.wait_until(
        Duration::from_secs(10),
        "the rejoined backup becoming active",
        |c| c.status(&primary).is_ok_and(|s| s.active_backup),
    )?;
    crate::cmd::list::run(&cluster.addrs(), false)?;

    cluster.shutdown();
    println!("\ndemo finished: every step behaved");
    Ok(())
}
