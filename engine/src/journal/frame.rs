//! Record framing: length, kind and a chained checksum in front of every
//! payload.

use super::crc::{self, Shift};
use super::error::Damage;
use super::record::RecordKind;

/// Largest payload a record may carry (64 MiB). Larger records are refused
/// on append, and a header claiming more is damage on read.
pub const MAX_RECORD: u32 = 64 * 1024 * 1024;

/// The 9-byte header in front of every record's payload.
///
/// ```text
///  offset  size  field
///  ------  ----  -----------------------------------------------------------
///  0       4     len      u32 LE: payload bytes, 0..=MAX_RECORD
///  4       1     kind     u8: RecordKind, 1..=7 (0 is never written, so a
///                         zero-filled region is never a valid header)
///  5       4     crc      u32 LE: crc32c(prev_crc LE | len LE | kind | payload)
///  9       len   payload  see super::record
/// ```
///
/// `prev_crc` is the *stored* `crc` field of the previous record in the
/// journal; for the first record of a segment it is the segment header's
/// `prev_crc` seed, which is itself the stored crc of the last record of the
/// previous segment (0 for the first segment of a new journal). So:
///
/// - a record can be validated knowing only its predecessor's header;
/// - reordering, splicing, or replaying an old record at a new place breaks
///   the chain even if every record is intact on its own;
/// - a record whose payload is damaged breaks only its own check: its
///   successor still validates against the damaged record's stored crc,
///   which recovery uses to tell a torn tail from corruption in the middle.
///
/// A record's [`crate::Lsn`] is the position of the first byte of this header
/// in the record stream (segment headers are not counted).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    pub len: u32,
    pub kind: u8,
    pub crc: u32,
}

impl FrameHeader {
    /// Bytes of the header.
    pub const LEN: usize = 9;

    /// Header of a record with this payload, chained to `prev_crc`.
    pub fn new(prev_crc: u32, kind: RecordKind, payload: &[u8]) -> FrameHeader {
        let len = payload.len() as u32;
        let kind = kind.as_u8();
        FrameHeader {
            len,
            kind,
            crc: frame_crc(prev_crc, len, kind, payload),
        }
    }

    /// Like [`FrameHeader::new`], given `crc32c(payload)` instead of the
    /// payload.
    pub fn from_payload_crc(
        prev_crc: u32,
        kind: RecordKind,
        len: u32,
        payload_crc: u32,
    ) -> FrameHeader {
        let kind = kind.as_u8();
        let shift = Shift::for_len(u64::from(len));
        FrameHeader {
            len,
            kind,
            crc: shift.combine(prefix_crc(prev_crc, len, kind), payload_crc),
        }
    }

    /// Like [`FrameHeader::new`], with what [`PayloadSum::of`] computed
    /// earlier (outside a lock): tens of nanoseconds whatever the payload
    /// size.
    pub fn chained(
        prev_crc: u32,
        kind: RecordKind,
        payload: &[u8],
        sum: PayloadSum,
    ) -> FrameHeader {
        match sum {
            PayloadSum::Small => FrameHeader::new(prev_crc, kind, payload),
            PayloadSum::Large { crc, shift } => {
                let len = payload.len() as u32;
                let kind = kind.as_u8();
                FrameHeader {
                    len,
                    kind,
                    crc: shift.combine(prefix_crc(prev_crc, len, kind), crc),
                }
            }
        }
    }

    pub fn to_bytes(self) -> [u8; FrameHeader::LEN] {
        let mut b = [0u8; FrameHeader::LEN];
        b[0..4].copy_from_slice(&self.len.to_le_bytes());
        b[4] = self.kind;
        b[5..9].copy_from_slice(&self.crc.to_le_bytes());
        b
    }

    /// Reads the three fields without judging them.
    pub fn from_bytes(b: &[u8; FrameHeader::LEN]) -> FrameHeader {
        FrameHeader {
            len: u32::from_le_bytes([b[0], b[1], b[2], b[3]]),
            kind: b[4],
            crc: u32::from_le_bytes([b[5], b[6], b[7], b[8]]),
        }
    }

    /// Reads a header and checks what can be checked without the payload:
    /// the length bound and the kind.
    pub fn parse(b: &[u8; FrameHeader::LEN]) -> Result<FrameHeader, Damage> {
        let h = FrameHeader::from_bytes(b);
        if b.iter().all(|&x| x == 0) {
            return Err(Damage::ZeroFilled);
        }
        if h.len > MAX_RECORD {
            return Err(Damage::BadLength {
                len: h.len,
                max: MAX_RECORD,
            });
        }
        if RecordKind::from_u8(h.kind).is_none() {
            return Err(Damage::BadKind { kind: h.kind });
        }
        Ok(h)
    }

    /// Bytes of header plus payload.
    pub fn frame_len(&self) -> u64 {
        FrameHeader::LEN as u64 + u64::from(self.len)
    }

    /// Checks the payload against the stored crc, chained to `prev_crc`.
    pub fn check(&self, prev_crc: u32, payload: &[u8]) -> Result<(), Damage> {
        let computed = frame_crc(prev_crc, self.len, self.kind, payload);
        if computed == self.crc {
            Ok(())
        } else {
            Err(Damage::ChecksumMismatch {
                stored: self.crc,
                computed,
            })
        }
    }
}

/// Payloads up to this many bytes are checksummed in one pass under the
/// append lock (hardware CRC: tens of nanoseconds, less than combining).
pub const SMALL_PAYLOAD: usize = 1024;

/// What a frame's crc needs from its payload, computed without knowing the
/// previous record: nothing for a small payload; for a larger one, its own
/// crc32c and the shift that chains a prefix crc in front of it (see
/// [`super::crc`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PayloadSum {
    Small,
    Large { crc: u32, shift: Shift },
}

impl PayloadSum {
    /// Prepares the checksum of `payload` (at most [`MAX_RECORD`] bytes).
    pub fn of(payload: &[u8]) -> PayloadSum {
        debug_assert!(payload.len() <= MAX_RECORD as usize);
        if payload.len() <= SMALL_PAYLOAD {
            return PayloadSum::Small;
        }
        PayloadSum::Large {
            crc: crc32c::crc32c(payload),
            shift: Shift::for_len(payload.len() as u64),
        }
    }
}

fn prefix_crc(prev_crc: u32, len: u32, kind: u8) -> u32 {
    let mut b = [0u8; 9];
    b[0..4].copy_from_slice(&prev_crc.to_le_bytes());
    b[4..8].copy_from_slice(&len.to_le_bytes());
    b[8] = kind;
    crc::append(0, &b)
}

/// `crc32c(prev_crc LE | len LE | kind | payload)`.
pub fn frame_crc(prev_crc: u32, len: u32, kind: u8, payload: &[u8]) -> u32 {
    crc::append(prefix_crc(prev_crc, len, kind), payload)
}
