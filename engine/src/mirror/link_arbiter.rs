//! The link to the arbiter: pings every QoS/4 (the arbiter's answer carries
//! the mirror's register) and carries the state machine's CAS requests.

use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::failover::{Event, Witness};
use super::member::{Msg, Shared};
use super::receiver::connect;
use crate::wire::{self, FrameLimits, Hello, Message, PeerRole};

pub(crate) enum ArbiterCmd {
    Cas {
        expect: Witness,
        new: Witness,
        require_lost: Option<String>,
    },
    Register(Witness),
}

pub(crate) fn request(shared: &Shared, cmd: ArbiterCmd) {
    let sent = shared
        .arbiter_tx
        .lock()
        .as_ref()
        .is_some_and(|tx| tx.send(cmd).is_ok());
    if !sent {
        shared.send(Msg::Sm(Event::ArbiterLost));
    }
}

fn to_wire(w: &Witness) -> wire::Witness {
    wire::Witness {
        epoch: w.epoch,
        primary: w.primary.clone(),
        backup_active: w.backup_active,
    }
}

fn from_wire(w: wire::Witness) -> Witness {
    Witness {
        epoch: w.epoch,
        primary: w.primary,
        backup_active: w.backup_active,
    }
}

pub(crate) fn run(shared: Arc<Shared>, addr: String, rx: Receiver<ArbiterCmd>) {
    let t0 = shared.started;
    let mut was_up = true; // report the first failure
    while !shared.stopping() {
        let result = session(&shared, &addr, &rx, t0);
        if was_up {
            shared.view.lock().arbiter_up = false;
            shared.send(Msg::Sm(Event::ArbiterLost));
        }
        was_up = result;
        // Requests made while the arbiter is away are answered "lost".
        while rx.try_recv().is_ok() {
            shared.send(Msg::Sm(Event::ArbiterLost));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// One connection; returns whether it ever worked.
fn session(shared: &Shared, addr: &str, rx: &Receiver<ArbiterCmd>, t0: Instant) -> bool {
    let Ok(mut s) = connect(shared, addr) else {
        return false;
    };
    let hello = Hello::new(&shared.cfg.mirror, &shared.cfg.name, PeerRole::Member);
    if wire::send(&mut s, &Message::Hello(hello)).is_err() {
        return false;
    }
    match wire::recv(&mut s, FrameLimits::default()) {
        Ok(Message::Welcome(_)) => {}
        Ok(Message::Refuse(r)) => {
            tracing::error!(arbiter = addr, reason = %r.reason, "the arbiter refused us");
            return false;
        }
        _ => return false,
    }
    shared.view.lock().arbiter_up = true;
    let qos = shared.qos();
    let mut next_ping = Instant::now();
    let mirror = shared.cfg.mirror.clone();
    let member = shared.cfg.name.clone();
    loop {
        if shared.stopping() {
            return true;
        }
        let wait = next_ping.saturating_duration_since(Instant::now());
        let msg = match rx.recv_timeout(wait) {
            Ok(ArbiterCmd::Cas {
                expect,
                new,
                require_lost,
            }) => Message::Cas(wire::Cas {
                mirror: mirror.clone(),
                member: member.clone(),
                expect: to_wire(&expect),
                new: to_wire(&new),
                require_lost,
            }),
            Ok(ArbiterCmd::Register(w)) => Message::Register(wire::Register {
                mirror: mirror.clone(),
                member: member.clone(),
                state: to_wire(&w),
            }),
            Err(RecvTimeoutError::Timeout) => Message::Ping(wire::Ping {
                mirror: mirror.clone(),
                member: member.clone(),
                qos_ms: qos.as_millis() as u32,
            }),
            Err(RecvTimeoutError::Disconnected) => return true,
        };
        let is_ping = matches!(msg, Message::Ping(_));
        let sent_ms = t0.elapsed().as_millis() as u64;
        if wire::send(&mut s, &msg).is_err() {
            if !is_ping {
                shared.send(Msg::Sm(Event::ArbiterLost));
            }
            return true;
        }
        match wire::recv(&mut s, FrameLimits::default()) {
            Ok(Message::Pong(p)) => {
                let state = p.state.map(from_wire);
                shared.view.lock().witness = state.clone();
                shared.send(Msg::Sm(Event::Arbiter { state, sent_ms }));
                next_ping = Instant::now() + qos / 4;
            }
            Ok(Message::CasReply(r)) => {
                let state = r.state.map(from_wire);
                if !r.ok {
                    tracing::info!(reason = %r.reason, "the arbiter refused a change");
                }
                if let Some(w) = &state {
                    shared.view.lock().witness = Some(w.clone());
                }
                shared.send(Msg::Sm(Event::CasDone { ok: r.ok, state }));
            }
            _ => {
                if !is_ping {
                    shared.send(Msg::Sm(Event::ArbiterLost));
                }
                return true;
            }
        }
    }
}
