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
    // Where the follower's history can still be ours: its last epoch's
    // records are the mirror's only up to where the next epoch began here.
    let durable = journal.durable_lsn();
    let limit = engine
        .epoch_history()
        .into_iter()
        .find(|(e, _)| *e > from.epoch)
        .map_or(durable, |(_, start)| start.min(durable));
    let consistent = from.lsn <= limit.0
        && journal
            .crc_before(Lsn(from.lsn))
            .is_ok_and(|c| c == from.crc);
    if !consistent {
        if from.lsn <= limit.0 {
            // Same epochs but different bytes: do not guess; the follower
            // must start over from a point it cannot share wrongly.
            if let Err(JournalError::NotHeld { .. }) = journal.crc_before(Lsn(from.lsn)) {
                send(
                    &mut s,
                    Message::SeedNeeded(SeedNeeded {
                        reason: format!("the primary no longer holds journal from {}", from.lsn),
                    }),
                )?;
                return Err(format!("{name} needs a seed"));
            }
        }
        let common = limit.0.min(from.lsn);
        send(
            &mut s,
            Message::Diverged(Diverged {
                common,
                reason: format!(
                    "{name} has journal to {} in epoch {}, but this mirror's history left epoch {} at {}",
                    from.lsn, from.epoch, from.epoch, limit.0
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
                read_acks(&shared, &mut r, &name, is_peer);
                dead.store(true, Ordering::SeqCst);
            })
            .map_err(|e| e.to_string())?
    };
    let qos = shared.qos();
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
            let (bytes, end) = journal.read_raw(pos, CHUNK).map_err(|e| e.to_string())?;
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
            journal.wait_durable_beyond(pos, (qos / 4).min(Duration::from_millis(50)));
        }
        Ok(())
    })();
    let _ = s.shutdown(std::net::Shutdown::Both);
    let _ = reader.join();
    shared.view.lock().followers.remove(&name);
    if is_peer {
        shared.send(Msg::StreamEnded { follower: name });
    }
    result
}

fn read_acks(shared: &Shared, r: &mut TcpStream, name: &str, is_peer: bool) {
    let engine = &shared.engine;
    let journal = engine.journal();
    let mut sync_target: Option<Lsn> = None;
    loop {
        let ack = match wire::recv(r, FrameLimits::MEMBER) {
            Ok(Message::Ack(a)) => a,
            Ok(other) => {
                tracing::warn!(
                    follower = name,
                    "unexpected {} on a journal stream",
                    other.name()
                );
                return;
            }
            Err(_) => return,
        };
        shared.view.lock().followers.insert(
            name.to_string(),
            FollowerView {
                durable: ack.durable,
                applied: ack.applied,
                last_ack: Instant::now(),
            },
        );
        if !is_peer || !matches!(engine.access(), Access::Primary { .. }) {
            continue;
        }
        engine.backup_acked(Lsn(ack.durable));
        if !engine.is_sync() {
            if journal.durable_lsn().0.saturating_sub(ack.durable) <= NEAR {
                // From here on commits wait for the backup; once it has all
                // that was written before, it may be counted active.
                engine.set_sync(true);
                sync_target = Some(journal.end_lsn());
            }
        } else if let Some(target) = sync_target {
            if ack.durable >= target.0 {
                sync_target = None;
                shared.send(Msg::Sm(Event::BackupCaughtUp));
            }
        }
    }
}
