//! Tests of the wire protocol.
//!
//! - [`strategies`]: proptest generators for every message.
//! - [`roundtrip`]: every message survives encode → frame → read → decode.
//! - [`damage`]: random, truncated, bit-flipped and oversize frames and
//!   payloads give the right error and never panic.

mod damage;
mod roundtrip;
pub(crate) mod strategies;
