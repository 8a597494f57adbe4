//! [`Registers`]: the compare-and-set rules over the stored states and the
//! members' presence. No sockets here; the server calls it.
//!
//! | request  | stored state        | other condition             | outcome                    |
//! |----------|---------------------|-----------------------------|----------------------------|
//! | Register | none                | member = state.primary      | stored (durably), ok       |
//! | Register | equal to the given  | member = state.primary      | ok, nothing written        |
//! | Register | different           |                             | refused                    |
//! | Cas      | none                |                             | refused: waiting to register |
//! | Cas      | ≠ expect            |                             | refused, state returned    |
//! | Cas      | = expect            | require_lost is present     | refused                    |
//! | Cas      | = expect            | new.epoch < expect.epoch    | refused                    |
//! | Cas      | = expect            | otherwise                   | new stored durably, ok     |
//!
//! Every request on a mirror whose file write failed is refused (see
//! [`WitnessStore`]). Requests on one mirror are serialised, the durable
//! write included, so of two CASes expecting the same state at most one
//! succeeds: the loser sees the winner's state.

use std::time::{Duration, Instant};

use parking_lot::Mutex;

use super::presence::{ConnId, Presence};
use super::state::{validate_member_name, validate_mirror_name, WitnessStore};
use crate::wire::{Cas, CasReply, Ping, Pong, Register, Witness};

/// The witness registers of every mirror, with presence.
pub struct Registers {
    store: Mutex<WitnessStore>,
    presence: Mutex<Presence>,
}

fn refuse(state: Option<&Witness>, reason: String) -> CasReply {
    CasReply {
        ok: false,
        state: state.cloned(),
        reason,
    }
}

impl Registers {
    pub fn new(store: WitnessStore) -> Registers {
        Registers {
            store: Mutex::new(store),
            presence: Mutex::new(Presence::default()),
        }
    }

    /// The state of `mirror`.
    pub fn state(&self, mirror: &str) -> Option<Witness> {
        self.store.lock().get(mirror).cloned()
    }

    /// Whether `member` of `mirror` is present now.
    pub fn is_present(&self, mirror: &str, member: &str) -> bool {
        self.presence
            .lock()
            .is_present(mirror, member, Instant::now())
    }

    pub fn open(&self, mirror: &str, member: &str, id: ConnId) {
        self.presence.lock().open(mirror, member, id);
    }

    pub fn close(&self, mirror: &str, member: &str, id: ConnId) {
        self.presence.lock().close(mirror, member, id);
    }

    /// Records a request other than a ping on connection `id` (see
    /// [`Presence::touch`]).
    pub fn touch(&self, mirror: &str, member: &str, id: ConnId, now: Instant) {
        self.presence.lock().touch(mirror, member, id, now);
    }

    /// Records a ping on connection `id`; returns the answer and the QoS
    /// in force for the connection.
    pub fn ping(&self, id: ConnId, p: &Ping, now: Instant) -> (Pong, Duration) {
        let qos = self.presence.lock().ping(
            &p.mirror,
            &p.member,
            id,
            Duration::from_millis(u64::from(p.qos_ms)),
            now,
        );
        (
            Pong {
                state: self.state(&p.mirror),
            },
            qos,
        )
    }

    /// A primary registers the state of its mirror (first registration,
    /// or after the arbiter lost its data).
    pub fn register(&self, r: &Register) -> CasReply {
        let mut store = self.store.lock();
        let current = store.get(&r.mirror).cloned();
        if let Some(why) = store.poisoned(&r.mirror) {
            return refuse(current.as_ref(), why.to_string());
        }
        if let Err(e) = validate_mirror_name(&r.mirror).and(validate_member_name(&r.state.primary))
        {
            return refuse(current.as_ref(), e);
        }
        if r.member != r.state.primary {
            return refuse(
                current.as_ref(),
                format!(
                    "member {} cannot register a state whose primary is {}: only the primary registers",
                    r.member, r.state.primary
                ),
            );
        }
        match current {
            Some(w) if w == r.state => CasReply {
                ok: true,
                state: Some(w),
                reason: String::new(),
            },
            Some(w) => refuse(
                Some(&w),
                format!(
                    "mirror {} is already registered with state {w}; change it with a compare-and-set",
                    r.mirror
                ),
            ),
            None => match store.put(&r.mirror, r.state.clone()) {
                Ok(()) => {
                    tracing::info!(mirror = %r.mirror, member = %r.member, state = %r.state, "registered");
                    CasReply {
                        ok: true,
                        state: Some(r.state.clone()),
                        reason: String::new(),
                    }
                }
                Err(e) => {
                    tracing::error!(mirror = %r.mirror, error = %e, "storing a registration failed");
                    refuse(None, e.to_string())
                }
            },
        }
    }

    /// Compare-and-set, at time `now` for presence.
    pub fn cas(&self, c: &Cas, now: Instant) -> CasReply {
        let mut store = self.store.lock();
        let Some(current) = store.get(&c.mirror).cloned() else {
            return refuse(
                None,
                format!(
                    "arbiter has no state for mirror {}; waiting for the primary to register",
                    c.mirror
                ),
            );
        };
        if let Some(why) = store.poisoned(&c.mirror) {
            return refuse(Some(&current), why.to_string());
        }
        if current != c.expect {
            return refuse(
                Some(&current),
                format!("state is {current}, expected {}", c.expect),
            );
        }
        if let Some(lost) = &c.require_lost {
            let presence = self.presence.lock();
            if let Some(age) = presence.last_ping_age(&c.mirror, lost, now) {
                let who = if *lost == current.primary {
                    "primary"
                } else {
                    "member"
                };
                return refuse(
                    Some(&current),
                    format!(
                        "{who} {lost} is still connected to the arbiter (last ping {} ms ago)",
                        age.as_millis()
                    ),
                );
            }
        }
        if c.new.epoch < c.expect.epoch {
            return refuse(
                Some(&current),
                format!(
                    "new epoch {} is older than the current epoch {}: epochs never go back",
                    c.new.epoch, c.expect.epoch
                ),
            );
        }
        if let Err(e) = validate_member_name(&c.new.primary) {
            return refuse(Some(&current), e);
        }
        if c.new == current {
            return CasReply {
                ok: true,
                state: Some(current),
                reason: String::new(),
            };
        }
        match store.put(&c.mirror, c.new.clone()) {
            Ok(()) => {
                tracing::info!(
                    mirror = %c.mirror, member = %c.member, from = %current, to = %c.new,
                    "compare-and-set"
                );
                CasReply {
                    ok: true,
                    state: Some(c.new.clone()),
                    reason: String::new(),
                }
            }
            Err(e) => {
                tracing::error!(mirror = %c.mirror, error = %e, "storing a compare-and-set failed");
                refuse(Some(&current), e.to_string())
            }
        }
    }
}
