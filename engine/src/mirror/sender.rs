//! The primary's side of journal streaming: one thread per follower sends
//! whole journal records as soon as they are durable here, and heartbeats
//! when idle; a second thread reads the follower's acknowledgements.
//!
//! For the failover peer the acknowledgements drive synchronous commits:
//! once it is nearly caught up, commits start waiting for it; once it has
//! acknowledged everything written before that moment, the failover state
//! machine is told (it then marks the backup active at the arbiter). So
//! by the time the arbiter may let the backup take over, every commit ever
//! acknowledged is on the backup.

use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::failover::Event;
use super::member::{FollowerView, Msg, Shared};
use crate::db::Access;
use crate::journal::JournalError;
use crate::wire::{
    self, Diverged, FrameLimits, Handoff, Heartbeat, JournalChunk, Message, SeedNeeded, StreamFrom,
};
use crate::Lsn;

/// Largest chunk of journal per message.
const CHUNK: usize = 1 << 20;
/// A backup this close to our durable end starts to hold commits.
const NEAR: u64 = 256 << 10;

pub(crate) fn serve_follower(
    shared: Arc<Shared>,
    mut s: TcpStream,
    name: String,
    from: StreamFrom,
) -> Result<(), String> {
    let engine = &shared.engine;
    let journal = engine.journal();
    if !matches!(engine.access(), Access::Primary { .. }) {
        return Err("asked to stream but this member is not primary".into());
    }
    let send = |s: &mut TcpStream, m: Message| wire::send(s, &m).map_err(|e| e.to_string());
    // The follower's epoch history follows its StreamFrom.
    let theirs = match wire::recv(&mut s, FrameLimits::MEMBER).map_err(|e| e.to_string())? {
        Message::History(h) => h.epochs,
        other => return Err(format!("expected {name}'s History, got {}", other.name())),
    };
    let mine = engine.epoch_history();
    let my_last = mine.last().map_or(0, |(e, _)| *e);
    let their_last = theirs.last().map_or(0, |(e, _)| *e);
    if their_last > my_last {
        // The follower has seen a newer tenure than ours: we are a stale
        // primary and must not tell anyone to rewind.
        return Err(format!(
            "{name} has records of epoch {their_last}, newer than ours ({my_last}); not streaming"
        ));
    }
    // A follower may hold bytes we wrote but have not synced yet (we
    // stream before our own sync): let that sync finish before comparing.
    let deadline = Instant::now() + qos_of(&shared);
    while from.lsn > journal.durable_lsn().0
        && from.lsn <= journal.written_lsn().0
        && Instant::now() < deadline
    {
        journal.wait_durable_beyond(journal.durable_lsn(), Duration::from_millis(10));
    }
    let durable = journal.durable_lsn();
    let common = common_point(&mine, durable, &theirs, from.lsn);
    if common == from.lsn {
        match journal.crc_before(Lsn(from.lsn)) {
            Ok(crc) if crc == from.crc => {}
            Err(JournalError::NotHeld { .. }) => {
                send(
                    &mut s,
                    Message::SeedNeeded(SeedNeeded {
                        reason: format!("the primary no longer holds journal from {}", from.lsn),
                    }),
                )?;
                return Err(format!("{name} needs a seed"));
            }
            _ => {
                // Same epochs, different bytes: not a tail to rewind but a
                // copy that cannot be trusted.
                send(
                    &mut s,
                    Message::SeedNeeded(SeedNeeded {
                        reason: format!(
                            "{name}'s journal differs from the primary's within epoch {their_last} at {}: \
                             restart it with `redoubt member --reseed` to take a fresh copy",
                            from.lsn
                        ),
                    }),
                )?;
                return Err(format!("{name}'s journal differs from ours"));
            }
        }
    } else {
        send(
            &mut s,
            Message::Diverged(Diverged {
                common,
                reason: format!(
                    "{name} has journal to {} (last epoch {their_last}); this mirror's history and its part at {common}",
                    from.lsn
                ),
            }),
        )?;
        return Err(format!("{name} diverged from our history at {common}"));
    }
    let is_peer = shared.cfg.failover_peer().is_some_and(|p| p.name == name);
    tracing::info!(follower = %name, from = from.lsn, is_peer, "streaming journal");
    let dead = Arc::new(AtomicBool::new(false));
    let reader = {
        let mut r = s.try_clone().map_err(|e| e.to_string())?;
        let (shared, name, dead) = (shared.clone(), name.clone(), dead.clone());
        std::thread::Builder::new()
            .name("redoubt-acks".into())
            .spawn(move || {
                let armed = read_acks(&shared, &mut r, &name, is_peer);
                dead.store(true, Ordering::SeqCst);
                armed
            })
            .map_err(|e| e.to_string())?
    };
    let qos = shared.qos();
    let _ = s.set_write_timeout(Some(qos));
    let started = Instant::now();
    let mut pos = Lsn(from.lsn);
    let mut last_heartbeat = Instant::now() - qos;
    let result = (|| -> Result<(), String> {
        while !dead.load(Ordering::SeqCst) && !shared.stopping() {
            if is_peer {
                let handoff = shared.view.lock().handoff;
                if let Some(epoch) = handoff {
                    send(
                        &mut s,
                        Message::Handoff(Handoff {
                            epoch,
                            end: journal.end_lsn().0,
                        }),
                    )?;
                    shared.view.lock().handoff_sent = true;
                    return Ok(());
                }
            }
            if !matches!(engine.access(), Access::Primary { .. }) {
                return Err("no longer primary".into());
            }
            // A backup that stopped acknowledging (its disk full, its
            // journal poisoned) while its connections stay up would hold
            // every commit forever: count it lost.
            if is_peer {
                let (acked, last) = shared
                    .view
                    .lock()
                    .followers
                    .get(&name)
                    .map_or((from.lsn, started), |f| (f.durable, f.last_ack));
                if journal.durable_lsn().0 > acked && last.elapsed() > qos {
                    shared.send(Msg::Sm(Event::BackupFellBehind));
                    return Err(format!("{name} acknowledged nothing for the QoS timeout"));
                }
            }
            // Heartbeats go out at least every QoS/4 even while data flows:
            // they tell the backup whether it is active.
            if last_heartbeat.elapsed() >= qos / 4 {
                let (epoch, active) = {
                    let v = shared.view.lock();
                    (v.epoch, is_peer && v.backup_active)
                };
                send(
                    &mut s,
                    Message::Heartbeat(Heartbeat {
                        epoch,
                        end: journal.end_lsn().0,
                        durable: journal.durable_lsn().0,
                        time_us: crate::db::now_us(),
                        active,
                    }),
                )?;
                last_heartbeat = Instant::now();
            }
            let (bytes, end) = journal
                .read_raw_written(pos, CHUNK)
                .map_err(|e| e.to_string())?;
            if !bytes.is_empty() {
                send(
                    &mut s,
                    Message::Journal(JournalChunk {
                        start: pos.0,
                        bytes,
                    }),
                )?;
                pos = end;
                continue;
            }
            journal.wait_written_beyond(pos, (qos / 4).min(Duration::from_millis(50)));
        }
        Ok(())
    })();
    let _ = s.shutdown(std::net::Shutdown::Both);
    let armed = reader.join().unwrap_or(None);
    shared.view.lock().followers.remove(&name);
    keep_journal_for_followers(&shared);
    if is_peer {
        shared.send(Msg::StreamEnded {
            follower: name,
            armed,
        });
    }
    result
}

/// Journal purges keep what the connected followers have not made durable
/// yet (followers that are away are covered by `journal_keep_bytes`).
fn keep_journal_for_followers(shared: &Shared) {
    let floor = shared
        .view
        .lock()
        .followers
        .values()
        .map(|f| f.durable)
        .min();
    shared.engine.set_journal_floor(floor.map(Lsn));
}

/// Reads acknowledgements until the stream fails; returns the synchronous
/// commit generation it armed, if any.
fn read_acks(shared: &Shared, r: &mut TcpStream, name: &str, is_peer: bool) -> Option<u64> {
    let engine = &shared.engine;
    let journal = engine.journal();
    let mut sync_target: Option<Lsn> = None;
    let mut armed: Option<u64> = None;
    loop {
        let ack = match wire::recv(r, FrameLimits::MEMBER) {
            Ok(Message::Ack(a)) => a,
            Ok(other) => {
                tracing::warn!(
                    follower = name,
                    "unexpected {} on a journal stream",
                    other.name()
                );
                return armed;
            }
            Err(_) => return armed,
        };
        shared.view.lock().followers.insert(
            name.to_string(),
            FollowerView {
                durable: ack.durable,
                applied: ack.applied,
                last_ack: Instant::now(),
            },
        );
        keep_journal_for_followers(shared);
        if !is_peer || !matches!(engine.access(), Access::Primary { .. }) {
            continue;
        }
        engine.backup_acked(Lsn(ack.durable));
        if !engine.is_sync() {
            if journal.durable_lsn().0.saturating_sub(ack.durable) <= NEAR {
                // From here on commits wait for the backup; once it has all
                // that was written before, it may be counted active.
                if let Some(gen) = engine.arm_sync() {
                    armed = Some(gen);
                    // Every commit acknowledged without the backup was
                    // durable here by now; later ones wait for it.
                    let target = journal.durable_lsn();
                    if ack.durable >= target.0 {
                        shared.send(Msg::CaughtUp { gen });
                    } else {
                        sync_target = Some(target);
                    }
                }
            }
        } else if let (Some(target), Some(gen)) = (sync_target, armed) {
            if ack.durable >= target.0 {
                sync_target = None;
                shared.send(Msg::CaughtUp { gen });
            }
        }
    }
}

fn qos_of(shared: &Shared) -> Duration {
    shared.qos()
}

/// Where two journals part, from their epoch histories: the last epoch
/// both began at the same position is shared up to where either of them
/// began its next epoch (or ended). With no epoch in common, at 0.
pub(crate) fn common_point(
    mine: &[(u64, Lsn)],
    mine_end: Lsn,
    theirs: &[(u64, u64)],
    their_end: u64,
) -> u64 {
    let shared = theirs
        .iter()
        .rev()
        .find(|(e, start)| mine.iter().any(|(me, ms)| me == e && ms.0 == *start));
    let Some((epoch, _)) = shared else {
        return 0;
    };
    let next_mine = mine
        .iter()
        .find(|(e, _)| e > epoch)
        .map_or(mine_end.0, |(_, s)| s.0);
    let next_theirs = theirs
        .iter()
        .find(|(e, _)| e > epoch)
        .map_or(their_end, |(_, s)| *s);
    next_mine.min(next_theirs).min(their_end)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(v: &[(u64, u64)]) -> Vec<(u64, Lsn)> {
        v.iter().map(|(e, s)| (*e, Lsn(*s))).collect()
    }

    #[test]
    fn where_histories_part() {
        // A follower that is a prefix of the primary.
        assert_eq!(
            common_point(&h(&[(1, 0), (2, 500)]), Lsn(900), &[(1, 0)], 300),
            300
        );
        assert_eq!(
            common_point(&h(&[(1, 0), (2, 500)]), Lsn(900), &[(1, 0), (2, 500)], 700),
            700
        );
        // A former primary that wrote past where the next epoch began.
        assert_eq!(
            common_point(&h(&[(1, 0), (2, 500)]), Lsn(900), &[(1, 0)], 640),
            500
        );
        // An epoch the new primary never saw (skipped by an operator failover).
        assert_eq!(
            common_point(
                &h(&[(1, 0), (4, 1300)]),
                Lsn(1500),
                &[(1, 0), (3, 1200)],
                1290
            ),
            1200
        );
        // Nothing in common.
        assert_eq!(common_point(&h(&[(2, 0)]), Lsn(100), &[(1, 0)], 50), 0);
        // An empty follower.
        assert_eq!(common_point(&h(&[(1, 0)]), Lsn(100), &[], 0), 0);
    }
}
