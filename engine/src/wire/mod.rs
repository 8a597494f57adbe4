//! The wire protocol: framing and every message between clients, members
//! and the arbiter.
//!
//! This module depends only on the data model ([`crate::model`]), never on
//! the engine's or the mirror's internals, so a client can use it alone.
//!
//! - [`frame`]: the 12-byte frame header (magic, version, kind, length,
//!   checksum), per-connection size limits, blocking [`read_frame`] /
//!   [`write_frame`].
//! - [`message`]: [`Message`], the kind table, [`send`] / [`recv`].
//! - Messages by concern: [`hello`] (handshake), [`client`] (requests and
//!   responses), [`replication`] (member to member), [`seed`] (a copy for a
//!   new member), [`arbiter`] (member to arbiter).
//! - [`codec`]: how fields are laid out inside a payload.
//! - [`error`]: the error type, [`WireError`].
//!
//! Every connection starts with a handshake: the connecting side sends
//! [`Hello`], the other answers [`Welcome`] or [`Refuse`]. Integers are
//! fixed-width little-endian; decoding never panics and never allocates
//! more than the bytes received justify.

pub mod arbiter;
pub mod client;
pub mod codec;
pub mod error;
pub mod frame;
pub mod hello;
pub mod message;
pub mod replication;
pub mod seed;

#[cfg(test)]
mod tests;

pub use arbiter::{Cas, CasReply, Ping, Pong, Register, Witness};
pub use client::{ClientOp, ErrorCode, RemoteError, Reply, Request, Response};
pub use error::WireError;
pub(crate) use frame::peek_now;
pub use frame::{read_frame, write_frame, Frame, FrameLimits, FRAME_VERSION, HEADER_LEN, MAGIC};
pub use hello::{Hello, MemberRole, PeerRole, Refuse, RefuseCode, Welcome, PROTOCOL_VERSION};
pub use message::{kind, kind_name, recv, send, Message};
pub use replication::{
    Ack, Diverged, Handoff, Heartbeat, History, JournalChunk, PeerState, SeedNeeded, StatusReply,
    StreamFrom,
};
pub use seed::{SeedDatabase, SeedDone, SeedPages, SeedStart};
