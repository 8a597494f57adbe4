//! [`Presence`]: which members are alive, as the arbiter sees them.
//!
//! A member is **present** while it has at least one open connection to
//! the arbiter whose last [`Ping`](crate::wire::Ping) is younger than the
//! QoS timeout that ping carried. So:
//!
//! - a member that connected but never pinged is absent;
//! - after the first ping, a `Cas` or `Register` on the connection counts
//!   as a ping too (it proves the member alive just as well);
//! - closing the connection (a crashed process closes its sockets) makes
//!   it absent at once;
//! - a frozen or partitioned member becomes absent `qos` after its last
//!   ping, even while its connection looks open.
//!
//! The QoS comes from the member (every member of a mirror is configured
//! with the mirror's QoS and sends it in each ping), so one arbiter serves
//! mirrors with different timeouts, and a backup that waits one QoS for a
//! silent primary finds the arbiter agreeing that the primary is gone. It
//! is clamped to [`MIN_QOS`, `MAX_QOS`].

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// Shortest QoS a ping may set.
pub const MIN_QOS: Duration = Duration::from_millis(10);
/// Longest QoS a ping may set.
pub const MAX_QOS: Duration = Duration::from_secs(3600);

/// Identifies one connection to the arbiter.
pub type ConnId = u64;

#[derive(Debug, Clone, Copy)]
struct Conn {
    id: ConnId,
    last_ping: Option<Instant>,
    qos: Duration,
}

impl Conn {
    fn fresh(&self, now: Instant) -> bool {
        self.last_ping
            .is_some_and(|t| now.saturating_duration_since(t) < self.qos)
    }
}

/// Open connections and pings, per (mirror, member).
#[derive(Default)]
pub struct Presence {
    conns: HashMap<(String, String), Vec<Conn>>,
}

impl Presence {
    /// A connection of `member` of `mirror` has handshaken.
    pub fn open(&mut self, mirror: &str, member: &str, id: ConnId) {
        self.conns
            .entry((mirror.to_string(), member.to_string()))
            .or_default()
            .push(Conn {
                id,
                last_ping: None,
                qos: MIN_QOS,
            });
    }

    /// A ping arrived on connection `id`; returns the QoS in force.
    pub fn ping(
        &mut self,
        mirror: &str,
        member: &str,
        id: ConnId,
        qos: Duration,
        now: Instant,
    ) -> Duration {
        let qos = qos.clamp(MIN_QOS, MAX_QOS);
        if let Some(c) = self
            .conns
            .get_mut(&(mirror.to_string(), member.to_string()))
            .and_then(|v| v.iter_mut().find(|c| c.id == id))
        {
            c.last_ping = Some(now);
            c.qos = qos;
        }
        qos
    }

    /// Another request arrived on connection `id`: it proves the member
    /// alive like a ping, once a ping has set the connection's QoS.
    pub fn touch(&mut self, mirror: &str, member: &str, id: ConnId, now: Instant) {
        if let Some(c) = self
            .conns
            .get_mut(&(mirror.to_string(), member.to_string()))
            .and_then(|v| v.iter_mut().find(|c| c.id == id))
        {
            if c.last_ping.is_some() {
                c.last_ping = Some(now);
            }
        }
    }

    /// Connection `id` closed.
    pub fn close(&mut self, mirror: &str, member: &str, id: ConnId) {
        let k = (mirror.to_string(), member.to_string());
        if let Some(v) = self.conns.get_mut(&k) {
            v.retain(|c| c.id != id);
            if v.is_empty() {
                self.conns.remove(&k);
            }
        }
    }

    /// Whether `member` of `mirror` is present at `now`.
    pub fn is_present(&self, mirror: &str, member: &str, now: Instant) -> bool {
        self.live(mirror, member, now).is_some()
    }

    /// How long ago the freshest live connection of the member pinged.
    pub fn last_ping_age(&self, mirror: &str, member: &str, now: Instant) -> Option<Duration> {
        self.live(mirror, member, now)
            .and_then(|c| c.last_ping)
            .map(|t| now.saturating_duration_since(t))
    }

    fn live(&self, mirror: &str, member: &str, now: Instant) -> Option<&Conn> {
        self.conns
            .get(&(mirror.to_string(), member.to_string()))?
            .iter()
            .filter(|c| c.fresh(now))
            .max_by_key(|c| c.last_ping)
    }
}
