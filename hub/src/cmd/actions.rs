//! `redoubt switchover` and `redoubt failover`: operator actions, sent to
//! the members' HTTP admin APIs, then watched until they took effect.

use std::io::{BufRead, IsTerminal, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};

use super::list::{collect, status_of};

/// POSTs to `http://addr/path`; returns (status code, body).
fn post(addr: &str, path: &str) -> Result<(u16, String)> {
    let mut s =
        TcpStream::connect(addr).with_context(|| format!("connect to the admin API at {addr}"))?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    write!(
        s,
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )?;
    let mut text = String::new();
    s.read_to_string(&mut text)?;
    let code = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| anyhow!("malformed answer from {addr}"))?;
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.trim().to_string())
        .unwrap_or_default();
    Ok((code, body))
}

fn wait_primary(addr: &str, name: &str, timeout: Duration) -> Result<u64> {
    let t0 = Instant::now();
    while t0.elapsed() < timeout {
        if let Ok(s) = status_of(addr, Duration::from_millis(500)) {
            if s.role == "primary" && s.paused.is_none() {
                return Ok(s.epoch);
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    bail!("{name} did not become primary within {timeout:?}; see its log and `redoubt list`")
}

pub fn switchover(connect: &[String]) -> Result<()> {
    let rows = collect(connect)?;
    let primary = rows
        .iter()
        .find_map(|(_, _, _, s)| s.as_ref().ok().filter(|s| s.role == "primary").cloned())
        .ok_or_else(|| anyhow!("no member is primary now; nothing to switch over"))?;
    let backup = rows
        .iter()
        .find_map(|(_, _, _, s)| s.as_ref().ok().filter(|s| s.role == "backup").cloned())
        .ok_or_else(|| anyhow!("the mirror has no backup to switch over to"))?;
    let admin = primary.admin.clone().ok_or_else(|| {
        anyhow!(
            "the primary {} has no admin API configured (admin = ...)",
            primary.member
        )
    })?;
    let (code, body) = post(&admin, "/switchover")?;
    if code != 200 {
        bail!("switchover refused by {}: {body}", primary.member);
    }
    println!("{}: {body}", primary.member);
    let epoch = wait_primary(&backup.addr, &backup.member, Duration::from_secs(20))?;
    println!(
        "{} is primary (epoch {epoch}); {} follows it as backup",
        backup.member, primary.member
    );
    Ok(())
}

pub fn failover(connect: &[String], to: &str, yes: bool) -> Result<()> {
    let rows = collect(connect)?;
    let (_, addr, _, st) = rows
        .iter()
        .find(|(name, ..)| name == to)
        .ok_or_else(|| anyhow!("{to} is not a member of this mirror"))?;
    let target = st
        .as_ref()
        .map_err(|e| anyhow!("{to} is unreachable: {e:#}"))?;
    if target.role == "primary" {
        bail!("{to} is already the primary");
    }
    if let Some((name, ..)) = rows
        .iter()
        .find(|(n, _, _, s)| n != to && s.as_ref().is_ok_and(|s| s.role == "primary"))
    {
        bail!("{name} is primary and reachable; a failover now would make two primaries' worth of trouble — use `redoubt switchover`, or stop {name} first");
    }
    println!("failover to {to}:");
    if target.active_backup {
        println!(
            "  {to} was the active backup: it holds every acknowledged write. Nothing is lost."
        );
    } else {
        println!(
            "  {to} was NOT the active backup (journal to position {}): writes the old primary acknowledged after that are LOST,",
            target.journal_durable
        );
        println!("  and the old primary will have to rewind them when it returns.");
    }
    if !yes {
        if !std::io::stdin().is_terminal() {
            bail!("not confirmed: pass --yes to fail over without a prompt");
        }
        print!("proceed? [y/N] ");
        std::io::stdout().flush()?;
        let mut answer = String::new();
        std::io::stdin().lock().read_line(&mut answer)?;
        if !matches!(answer.trim(), "y" | "Y" | "yes") {
            bail!("not confirmed; nothing changed");
        }
    }
    let admin = target
        .admin
        .clone()
        .ok_or_else(|| anyhow!("{to} has no admin API configured (admin = ...)"))?;
    let (code, body) = post(&admin, "/failover")?;
    if code != 200 {
        bail!("{to} refused: {body}");
    }
    println!("{to}: {body}");
    let epoch = wait_primary(addr, to, Duration::from_secs(20))?;
    println!("{to} is primary (epoch {epoch})");
    Ok(())
}
