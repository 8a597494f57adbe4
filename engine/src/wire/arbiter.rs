//! Member ↔ arbiter messages. The arbiter answers each request on the same
//! connection: `Register` and `Cas` with [`CasReply`], [`Ping`] with
//! [`Pong`]. See [`crate::arbiter`] for the semantics.

use std::fmt;

use super::codec::{Dec, Enc, Fields};
use super::WireError;

/// The witness register of one mirror.
///
/// ```text
///   epoch u64 | primary string | backup_active bool
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Witness {
    /// The current primary tenure.
    pub epoch: u64,
    /// Member name of the primary of `epoch`.
    pub primary: String,
    /// Whether the primary counts a backup as active (commits wait for it).
    pub backup_active: bool,
}

/// `epoch 5 primary b (backup active)`.
impl fmt::Display for Witness {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "epoch {} primary {} ({})",
            self.epoch,
            self.primary,
            if self.backup_active {
                "backup active"
            } else {
                "no active backup"
            }
        )
    }
}

impl Fields for Witness {
    fn put(&self, e: &mut Enc) {
        e.u64(self.epoch)
            .str(&self.primary)
            .bool(self.backup_active);
    }

    fn get(d: &mut Dec<'_>) -> Result<Self, WireError> {
        Ok(Witness {
            epoch: d.u64("epoch")?,
            primary: d.string("primary")?,
            backup_active: d.bool("backup_active")?,
        })
    }
}

fn opt_witness(e: &mut Enc, w: Option<&Witness>) {
    e.option(w, |e, w| w.put(e));
}

fn get_opt_witness(d: &mut Dec<'_>) -> Result<Option<Witness>, WireError> {
    d.option("state", Witness::get)
}

/// A primary's first registration of a mirror's state.
///
/// ```text
///   mirror string | member string | state Witness
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Register {
    pub mirror: String,
    pub member: String,
    pub state: Witness,
}

impl Fields for Register {
    fn put(&self, e: &mut Enc) {
        e.str(&self.mirror).str(&self.member);
        self.state.put(e);
    }

    fn get(d: &mut Dec<'_>) -> Result<Self, WireError> {
        Ok(Register {
            mirror: d.string("mirror")?,
            member: d.string("member")?,
            state: Witness::get(d)?,
        })
    }
}

/// Compare-and-set: succeeds iff the state is `expect` and, when
/// `require_lost` names a member, that member is absent.
///
/// ```text
///   mirror string | member string | expect Witness | new Witness
///   | require_lost option<string>
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cas {
    pub mirror: String,
    /// Who asks (for logs).
    pub member: String,
    pub expect: Witness,
    pub new: Witness,
    pub require_lost: Option<String>,
}

impl Fields for Cas {
    fn put(&self, e: &mut Enc) {
        e.str(&self.mirror).str(&self.member);
        self.expect.put(e);
        self.new.put(e);
        e.option(self.require_lost.as_ref(), |e, m| {
            e.str(m);
        });
    }

    fn get(d: &mut Dec<'_>) -> Result<Self, WireError> {
        Ok(Cas {
            mirror: d.string("mirror")?,
            member: d.string("member")?,
            expect: Witness::get(d)?,
            new: Witness::get(d)?,
            require_lost: d.option("require_lost", |d| d.string("require_lost"))?,
        })
    }
}

/// Answer to [`Register`] and [`Cas`].
///
/// ```text
///   ok bool | state option<Witness> | reason string
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CasReply {
    pub ok: bool,
    /// The state after the request (whether or not it changed it); `None`
    /// if the arbiter has no state for the mirror.
    pub state: Option<Witness>,
    /// Why it was refused; empty on success.
    pub reason: String,
}

impl Fields for CasReply {
    fn put(&self, e: &mut Enc) {
        e.bool(self.ok);
        opt_witness(e, self.state.as_ref());
        e.str(&self.reason);
    }

    fn get(d: &mut Dec<'_>) -> Result<Self, WireError> {
        Ok(CasReply {
            ok: d.bool("ok")?,
            state: get_opt_witness(d)?,
            reason: d.string("reason")?,
        })
    }
}

/// A member's liveness heartbeat to the arbiter, every ~`qos_ms / 4`.
///
/// ```text
///   mirror string | member string | qos_ms u32
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ping {
    pub mirror: String,
    pub member: String,
    /// The mirror's QoS timeout: the arbiter counts the member absent when
    /// no ping has come for this long.
    pub qos_ms: u32,
}

impl Fields for Ping {
    fn put(&self, e: &mut Enc) {
        e.str(&self.mirror).str(&self.member).u32(self.qos_ms);
    }

    fn get(d: &mut Dec<'_>) -> Result<Self, WireError> {
        Ok(Ping {
            mirror: d.string("mirror")?,
            member: d.string("member")?,
            qos_ms: d.u32("qos_ms")?,
        })
    }
}

/// Answer to [`Ping`]: the mirror's current state, so a member learns of a
/// newer epoch even without asking.
///
/// ```text
///   state option<Witness>
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pong {
    pub state: Option<Witness>,
}

impl Fields for Pong {
    fn put(&self, e: &mut Enc) {
        opt_witness(e, self.state.as_ref());
    }

    fn get(d: &mut Dec<'_>) -> Result<Self, WireError> {
        Ok(Pong {
            state: get_opt_witness(d)?,
        })
    }
}
