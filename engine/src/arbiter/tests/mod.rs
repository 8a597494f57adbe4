//! Tests of the arbiter.
//!
//! - [`store`]: the witness file format, corruption, durability.
//! - [`rules`]: the compare-and-set rules on [`Registers`](super::Registers)
//!   directly, including a threaded race of the two competing CASes.
//! - [`service`]: the service over TCP: handshake, the race over sockets,
//!   restart with and without state, presence on close and on silence.

mod rules;
mod service;
mod store;

use crate::wire::Witness;

pub(crate) fn w(epoch: u64, primary: &str, backup_active: bool) -> Witness {
    Witness {
        epoch,
        primary: primary.into(),
        backup_active,
    }
}
