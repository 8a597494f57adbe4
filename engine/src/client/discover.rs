//! Finding the member to talk to: try the addresses in order, follow
//! primary hints, and (with `primary_wait`) keep trying while a failover
//! completes.
//!
//! One round: a queue holding the hint (if any) and then every configured
//! address. Each address is tried at most once per round. A member of
//! another mirror (or one that refuses) is skipped with its reason; with
//! [`Target::Primary`] a member that is not the primary is skipped too, and
//! the primary its Welcome names goes to the front of the queue.

use std::collections::{HashSet, VecDeque};
use std::thread;
use std::time::{Duration, Instant};

use super::conn::{Conn, ConnectError};
use super::{ClientError, ClientOptions, Target};
use crate::wire::MemberRole;

/// Connects to the member `opts.target` asks for.
pub fn find(
    addrs: &[String],
    hint: Option<&str>,
    opts: &ClientOptions,
) -> Result<Conn, ClientError> {
    let deadline = Instant::now() + opts.primary_wait;
    let mut pause = Duration::from_millis(20);
    loop {
        let tried = match round(addrs, hint, opts) {
            Ok(c) => return Ok(c),
            Err(tried) => tried,
        };
        let now = Instant::now();
        if now >= deadline || addrs.is_empty() {
            return Err(ClientError::NoPrimary { tried });
        }
        thread::sleep(pause.min(deadline - now));
        pause = (pause * 2).min(Duration::from_millis(500));
    }
}

fn round(
    addrs: &[String],
    hint: Option<&str>,
    opts: &ClientOptions,
) -> Result<Conn, Vec<(String, String)>> {
    let mut queue: VecDeque<String> = hint.map(str::to_string).into_iter().collect();
    queue.extend(addrs.iter().cloned());
    let mut seen = HashSet::new();
    let mut tried = Vec::new();
    // Hints may name addresses outside the list; bound the walk anyway.
    let mut budget = addrs.len() + 16;
    while let Some(addr) = queue.pop_front() {
        if !seen.insert(addr.clone()) {
            continue;
        }
        if budget == 0 {
            break;
        }
        budget -= 1;
        let conn = match Conn::open(&addr, opts) {
            Ok(c) => c,
            Err(ConnectError::Refused(r)) => {
                tried.push((addr, format!("refused ({}): {}", r.code, r.reason)));
                continue;
            }
            Err(ConnectError::Failed(why)) => {
                tried.push((addr, why));
                continue;
            }
        };
        let w = &conn.welcome;
        if let Some(m) = &opts.mirror {
            if w.mirror != *m {
                tried.push((
                    addr,
                    format!("member {} serves mirror {}, not {m}", w.member, w.mirror),
                ));
                continue;
            }
        }
        if opts.target == Target::Any || w.role == MemberRole::Primary {
            tracing::debug!(%addr, member = %w.member, role = %w.role, epoch = w.epoch, "connected");
            return Ok(conn);
        }
        let mut why = format!("member {} is {} at epoch {}", w.member, w.role, w.epoch);
        if let Some(p) = &w.primary {
            why.push_str(&format!("; it names the primary {p}"));
            if !seen.contains(p) {
                queue.push_front(p.clone());
            }
        }
        tried.push((addr, why));
    }
    Err(tried)
}
