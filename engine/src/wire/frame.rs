//! Framing: a 12-byte header with magic, version, kind, length and checksum
//! in front of every message payload.
//!
//! ```text
//!  offset  size  field
//!  ------  ----  ---------------------------------------------------------
//!  0       2     magic    u16 LE = 0x5244 (bytes 44 52, "DR")
//!  2       1     version  u8 = 1 (FRAME_VERSION)
//!  3       1     kind     u8: which message (see `message::kind`); 0 unused
//!  4       4     len      u32 LE: payload bytes, at most the receiver's limit
//!  8       4     crc      u32 LE = crc32c(kind | len LE | payload)
//!  12      len   payload  the message's fields (see each message type)
//! ```
//!
//! The receiver checks, in this order: magic, version, `len` against its
//! [`FrameLimits`] (before reading or allocating the payload), then the
//! checksum once the payload is in. The kind is judged by
//! [`Message::decode`](super::Message::decode). Any failure closes the
//! connection: there is no resynchronisation inside a stream.
//!
//! A frame is handed to the transport as one buffer (header and payload
//! together, see [`encode_frame`]) so that a failed write means the peer
//! cannot have received a whole frame, which the client relies on to know
//! a request was not sent.

use std::io::{self, Read, Write};
use std::net::TcpStream;

use super::WireError;

/// `magic` field value.
pub const MAGIC: u16 = 0x5244;
/// `version` field value this build writes and reads.
pub const FRAME_VERSION: u8 = 1;
/// Bytes of the header.
pub const HEADER_LEN: usize = 12;

/// Largest payload a receiver accepts on one connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameLimits {
    /// Payload bytes; a larger frame is [`WireError::Oversize`].
    pub max_payload: u32,
}

impl FrameLimits {
    /// Client connections: 32 MiB (a value is at most 16 MiB).
    pub const CLIENT: FrameLimits = FrameLimits {
        max_payload: 32 << 20,
    };
    /// Member-to-member streams: 80 MiB (a journal record is at most 64 MiB).
    pub const MEMBER: FrameLimits = FrameLimits {
        max_payload: 80 << 20,
    };
}

impl Default for FrameLimits {
    fn default() -> Self {
        FrameLimits::CLIENT
    }
}

/// One frame as read: its kind and checked payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub kind: u8,
    pub payload: Vec<u8>,
}

/// crc32c(kind | len LE | payload).
pub fn frame_crc(kind: u8, payload: &[u8]) -> u32 {
    let len = payload.len() as u32;
    let mut head = [0u8; 5];
    head[0] = kind;
    head[1..5].copy_from_slice(&len.to_le_bytes());
    crc32c::crc32c_append(crc32c::crc32c(&head), payload)
}

/// The header for `payload`, or `Oversize` if it cannot be framed at all
/// (longer than `u32::MAX`).
pub fn header(kind: u8, payload: &[u8]) -> Result<[u8; HEADER_LEN], WireError> {
    let len = u32::try_from(payload.len()).map_err(|_| WireError::Oversize {
        len: payload.len() as u64,
        limit: u64::from(u32::MAX),
    })?;
    let mut h = [0u8; HEADER_LEN];
    h[0..2].copy_from_slice(&MAGIC.to_le_bytes());
    h[2] = FRAME_VERSION;
    h[3] = kind;
    h[4..8].copy_from_slice(&len.to_le_bytes());
    h[8..12].copy_from_slice(&frame_crc(kind, payload).to_le_bytes());
    Ok(h)
}

/// A whole frame (header and payload) in one buffer.
pub fn encode_frame(kind: u8, payload: &[u8]) -> Result<Vec<u8>, WireError> {
    let h = header(kind, payload)?;
    let mut out = Vec::with_capacity(HEADER_LEN + payload.len());
    out.extend_from_slice(&h);
    out.extend_from_slice(payload);
    Ok(out)
}

/// Writes one frame and flushes. Small frames go out in a single write.
pub fn write_frame(w: &mut impl Write, kind: u8, payload: &[u8]) -> Result<(), WireError> {
    if payload.len() <= 64 * 1024 {
        w.write_all(&encode_frame(kind, payload)?)?;
    } else {
        w.write_all(&header(kind, payload)?)?;
        w.write_all(payload)?;
    }
    w.flush()?;
    Ok(())
}

/// Reads one frame, checking magic, version, the length against `limits`
/// and the checksum. A clean end of stream before the first header byte is
/// [`WireError::Closed`]; an end inside a frame is `Io(UnexpectedEof)`.
pub fn read_frame(r: &mut impl Read, limits: FrameLimits) -> Result<Frame, WireError> {
    let mut h = [0u8; HEADER_LEN];
    let mut got = 0;
    while got < HEADER_LEN {
        match r.read(&mut h[got..]) {
            Ok(0) if got == 0 => return Err(WireError::Closed),
            Ok(0) => {
                return Err(WireError::Io(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("connection closed after {got} of {HEADER_LEN} frame header bytes"),
                )))
            }
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(WireError::Io(e)),
        }
    }
    let magic = u16::from_le_bytes([h[0], h[1]]);
    if magic != MAGIC {
        return Err(WireError::BadMagic { got: magic });
    }
    if h[2] != FRAME_VERSION {
        return Err(WireError::UnsupportedVersion {
            got: h[2],
            supported: FRAME_VERSION,
        });
    }
    let kind = h[3];
    let len = u32::from_le_bytes([h[4], h[5], h[6], h[7]]);
    let stored = u32::from_le_bytes([h[8], h[9], h[10], h[11]]);
    if len > limits.max_payload {
        return Err(WireError::Oversize {
            len: u64::from(len),
            limit: u64::from(limits.max_payload),
        });
    }
    // Grow the buffer as bytes arrive rather than trusting `len` up front.
    let mut payload = Vec::with_capacity((len as usize).min(64 * 1024));
    r.take(u64::from(len)).read_to_end(&mut payload)?;
    if payload.len() < len as usize {
        return Err(WireError::Io(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            format!(
                "connection closed after {} of {len} payload bytes",
                payload.len()
            ),
        )));
    }
    let computed = frame_crc(kind, &payload);
    if computed != stored {
        return Err(WireError::Checksum {
            kind,
            len,
            stored,
            computed,
        });
    }
    Ok(Frame { kind, payload })
}

/// One non-blocking peek at the socket (a single `recv` with
/// `MSG_PEEK | MSG_DONTWAIT`; the socket itself stays blocking).
#[cfg(unix)]
pub(crate) fn peek_now(s: &TcpStream) -> io::Result<usize> {
    use std::os::fd::AsRawFd;
    let mut b = [0u8; 1];
    // SAFETY: `b` is a valid, writable buffer of the length passed, and the
    // descriptor is owned by `s` for the duration of the call.
    let n = unsafe {
        libc::recv(
            s.as_raw_fd(),
            b.as_mut_ptr().cast(),
            b.len(),
            libc::MSG_PEEK | libc::MSG_DONTWAIT,
        )
    };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

#[cfg(not(unix))]
pub(crate) fn peek_now(s: &TcpStream) -> io::Result<usize> {
    s.set_nonblocking(true)?;
    let r = s.peek(&mut [0u8; 1]);
    s.set_nonblocking(false)?;
    r
}
