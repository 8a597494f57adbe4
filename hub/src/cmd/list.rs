//! `redoubt list --connect ADDR`: a table of the mirror's members, asked of
//! each member in turn (the first one names the others).

use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use redoubt_engine::mirror::MemberStatus;
use redoubt_engine::wire::{self, FrameLimits, Hello, Message, PeerRole};

/// Asks one member for its status.
pub fn status_of(addr: &str, timeout: Duration) -> Result<MemberStatus> {
    let sa = addr
        .to_socket_addrs()
        .with_context(|| format!("resolve {addr}"))?
        .next()
        .ok_or_else(|| anyhow!("{addr} resolves to nothing"))?;
    let mut s =
        TcpStream::connect_timeout(&sa, timeout).with_context(|| format!("connect to {addr}"))?;
    s.set_read_timeout(Some(timeout))?;
    // The admin role needs no mirror name: the Welcome tells it.
    wire::send(
        &mut s,
        &Message::Hello(Hello::new("", "redoubt-list", PeerRole::Admin)),
    )?;
    match wire::recv(&mut s, FrameLimits::default())? {
        Message::Welcome(_) => {}
        Message::Refuse(r) => bail!("{addr} refused: {}", r.reason),
        other => bail!("{addr} answered {}", other.name()),
    }
    wire::send(&mut s, &Message::Status)?;
    match wire::recv(&mut s, FrameLimits::default())? {
        Message::StatusReply(r) => {
            Ok(serde_json::from_str(&r.json).context("parse the member's status")?)
        }
        other => bail!("{addr} answered {}", other.name()),
    }
}

/// One row of `list`: name, address, kind, and the status or why not.
pub type Row = (String, String, String, Result<MemberStatus>);

/// Every member's status, or the reason it could not be had.
pub fn collect(connect: &[String]) -> Result<Vec<Row>> {
    let timeout = Duration::from_secs(2);
    let mut first_err = None;
    let mut first = None;
    for addr in connect {
        match status_of(addr, timeout) {
            Ok(s) => {
                first = Some(s);
                break;
            }
            Err(e) => first_err = Some(e),
        }
    }
    let first = first.ok_or_else(|| first_err.unwrap_or_else(|| anyhow!("no address given")))?;
    Ok(first
        .members
        .iter()
        .map(|(name, addr, kind)| {
            let st = if *name == first.member {
                Ok(first.clone())
            } else {
                status_of(addr, timeout)
            };
            (name.clone(), addr.clone(), kind.clone(), st)
        })
        .collect())
}

pub fn run(connect: &[String], json: bool) -> Result<()> {
    let rows = collect(connect)?;
    if json {
        let v: Vec<serde_json::Value> = rows
            .iter()
            .map(|(name, addr, kind, st)| match st {
                Ok(s) => serde_json::to_value(s).expect("status serialises"),
                Err(e) => serde_json::json!({"member": name, "addr": addr, "kind": kind, "role": "unreachable", "error": format!("{e:#}")}),
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    let primary_end = rows
        .iter()
        .filter_map(|(_, _, _, s)| s.as_ref().ok())
        .find(|s| s.role == "primary")
        .map(|s| s.journal_durable);
    println!(
        "{:<10} {:<22} {:<9} {:<9} {:<7} {:>6} {:>14} {:>14} {:>12}",
        "MEMBER", "ADDRESS", "KIND", "ROLE", "STATE", "EPOCH", "RECEIVED", "APPLIED", "LAG"
    );
    for (name, addr, kind, st) in &rows {
        match st {
            Ok(s) => {
                let state = if s.poisoned.is_some() {
                    "poisoned"
                } else if s.needs_seed.is_some() {
                    "reseed"
                } else if s.paused.is_some() {
                    "paused"
                } else if s.role == "backup" && s.active_backup {
                    "active"
                } else if s.role == "primary" && s.sync {
                    "sync"
                } else {
                    "ok"
                };
                let lag = match (primary_end, s.role.as_str()) {
                    (_, "primary") => "-".to_string(),
                    (Some(end), _) => format!("{} B", end.saturating_sub(s.journal_durable)),
                    (None, _) => "?".to_string(),
                };
                println!(
                    "{:<10} {:<22} {:<9} {:<9} {:<7} {:>6} {:>14} {:>14} {:>12}",
                    name, addr, kind, s.role, state, s.epoch, s.journal_durable, s.applied, lag
                );
            }
            Err(e) => println!(
                "{:<10} {:<22} {:<9} {:<9} {}",
                name,
                addr,
                kind,
                "down",
                format!("{e:#}").lines().next().unwrap_or_default()
            ),
        }
    }
    Ok(())
}
