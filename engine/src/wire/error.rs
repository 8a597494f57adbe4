//! [`WireError`]: everything that can go wrong reading or decoding a frame.

use std::io;

use super::message::kind_name;

/// An error from the wire layer.
///
/// After any error from [`read_frame`](super::read_frame) or
/// [`recv`](super::recv) the connection is out of step (part of a frame may
/// have been consumed) and must be closed; [`WireError::Malformed`] and
/// [`WireError::UnknownKind`] from [`Message::decode`](super::Message::decode)
/// alone leave it in step, but a peer that sends them is broken and is
/// closed too.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    /// The transport failed, or the peer closed the connection in the
    /// middle of a frame (`UnexpectedEof`), or a read timed out.
    #[error("connection error: {0}")]
    Io(#[from] io::Error),

    /// The first two bytes of a frame are not `0x5244` ("RD" read as LE
    /// bytes `44 52`): the peer does not speak this protocol.
    #[error("bad frame magic 0x{got:04x} (expected 0x5244): the peer does not speak the redoubt protocol")]
    BadMagic { got: u16 },

    /// A frame version this build does not read.
    #[error("frame version {got} is not supported (this build speaks version {supported})")]
    UnsupportedVersion { got: u8, supported: u8 },

    /// A frame whose payload is longer than the connection's limit. Raised
    /// from the header alone, before any payload byte is read or any
    /// buffer for it allocated.
    #[error("frame of {len} bytes exceeds this connection's limit of {limit} bytes")]
    Oversize { len: u64, limit: u64 },

    /// The frame's checksum does not match its kind, length and payload.
    #[error("frame checksum mismatch (kind {kind}, {len} bytes): stored 0x{stored:08x}, computed 0x{computed:08x}")]
    Checksum {
        kind: u8,
        len: u32,
        stored: u32,
        computed: u32,
    },

    /// A payload that does not decode as its kind's message.
    #[error("malformed {} message (kind {kind}): {reason}", kind_name(*kind).unwrap_or("unknown"))]
    Malformed { kind: u8, reason: String },

    /// A frame kind no message has.
    #[error("unknown message kind {0}")]
    UnknownKind(u8),

    /// The peer closed the connection cleanly, between frames.
    #[error("the peer closed the connection")]
    Closed,
}

impl WireError {
    pub(crate) fn malformed(kind: u8, reason: impl Into<String>) -> WireError {
        WireError::Malformed {
            kind,
            reason: reason.into(),
        }
    }

    /// True if the error says the connection is gone (closed, reset, timed
    /// out or broken mid-frame) rather than that the peer sent bad bytes.
    pub fn is_disconnect(&self) -> bool {
        matches!(self, WireError::Io(_) | WireError::Closed)
    }
}
