//! Tests of the client against fake members.
//!
//! - [`fake`]: a member that answers the handshake and requests with
//!   canned messages, on real sockets.
//! - [`finding`]: finding the primary, following hints, refusals.
//! - [`outcomes`]: what is retried, what is `OutcomeUnknown`, what is
//!   `TransactionLost`.

mod fake;
mod finding;
mod outcomes;
