//! The arbiter: a witness register per mirror, changed only by
//! compare-and-set, that decides between "the backup takes over" and "the
//! primary goes on alone" so that exactly one can happen
//! (DESIGN.md §3.2). `redoubt arbiter --listen ADDR --data DIR` runs
//! [`serve`].
//!
//! # State
//!
//! Per mirror, a [`Witness`](crate::wire::Witness) `(epoch, primary,
//! backup_active)`, durable in one file per mirror ([`state`]); every
//! change is on disk before its answer is sent.
//!
//! # Liveness
//!
//! Each member keeps a TCP connection to the arbiter and sends `Ping {
//! qos_ms }` every ~QoS/4. The arbiter counts it **present** while that
//! connection is open and its last ping is younger than the QoS the ping
//! carried ([`presence`]). We chose to carry the QoS in the ping rather than
//! configure it on the arbiter: the QoS belongs to the mirror, an arbiter
//! serves mirrors with different QoS, and the backup (which waits one QoS
//! for a silent primary) and the arbiter then agree on when the primary is
//! lost. A closed connection makes the member absent at once.
//!
//! # Rules ([`registers`])
//!
//! - `Cas { expect, new, require_lost }` succeeds iff the stored state
//!   equals `expect` and, if `require_lost` names a member, that member is
//!   absent; `new.epoch` may not be below `expect.epoch`. The answer carries
//!   the current state either way and a reason on refusal.
//!   - backup takeover: `expect (e, a, true)`, `new (e+1, b, false)`,
//!     `require_lost: a`;
//!   - primary alone: `expect (e, a, true)`, `new (e, a, false)`.
//!
//!   Both expect the same state, so at most one succeeds.
//! - An arbiter without state for a mirror (new, or started on an empty
//!   data directory) refuses every `Cas` until a `Register` arrives.
//!   `Register` is accepted only when there is no state (or it repeats the
//!   stored state exactly), and only from the member the state names as
//!   primary. **A primary registers after it has taken its epoch**: when it
//!   starts a tenure with no arbiter state, and whenever its arbiter answers
//!   "no state" (the arbiter lost its data): the primary re-registers the
//!   state it holds, and only then can anyone CAS again.
//! - After a failed write of a witness file the mirror's register refuses
//!   everything until the arbiter restarts (the file then holds the old
//!   or the new state, whole; a refused requester must re-read the state).
//!
//! Files: [`state`] (durable store), [`presence`], [`registers`] (the
//! rules), [`server`] (threads and sockets), [`link`] (the member's side),
//! [`error`].

pub mod error;
pub mod link;
pub mod presence;
pub mod registers;
pub mod server;
pub mod state;

#[cfg(test)]
mod tests;

pub use error::ArbiterError;
pub use link::ArbiterLink;
pub use presence::{MAX_QOS, MIN_QOS};
pub use registers::Registers;
pub use server::{serve, ArbiterHandle, ArbiterOptions};
pub use state::{validate_mirror_name, WitnessStore};
