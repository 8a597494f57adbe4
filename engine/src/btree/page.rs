//! The on-disk page: every database file is an array of 8 KiB pages.
//!
//! ```text
//! offset  size  field
//!      0     4  crc32c of bytes 4..8192 (u32 LE)
//!      4     1  kind: 1 meta, 2 leaf, 3 branch, 4 overflow, 5 free list
//!      5     3  zero
//!      8     8  lsn: journal position of the last change to this page (u64 LE)
//!     16     8  page number (u64 LE), so a page written to the wrong place is caught
//!     24     8  kind-specific (see `node.rs`)
//!     32  8160  body (see `node.rs`)
//! ```
//!
//! Crash model: a page is written whole (8 KiB) but the disk may tear it at
//! any 512-byte sector. A torn page fails its checksum; it is never read as
//! data. Torn pages cannot survive recovery: a page the tree on disk uses
//! reaches the database file only after its image is durable in the write
//! image journal, from which an interrupted write is restored; any other
//! page (fresh, or free in that tree; see `free.rs`) is written directly,
//! and a tear in it is in no page recovery reads.

use crate::wij::PAGE_SIZE;

pub const HEADER_SIZE: usize = 32;
pub const BODY_SIZE: usize = PAGE_SIZE - HEADER_SIZE;

pub const KIND_META: u8 = 1;
pub const KIND_LEAF: u8 = 2;
pub const KIND_BRANCH: u8 = 3;
pub const KIND_OVERFLOW: u8 = 4;
pub const KIND_FREE_LIST: u8 = 5;

/// Why a page could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PageError {
    #[error("checksum mismatch (stored {stored:#010x}, computed {computed:#010x})")]
    Checksum { stored: u32, computed: u32 },
    #[error("page claims to be page {found}, expected {expected}")]
    Misplaced { expected: u64, found: u64 },
    #[error("unknown page kind {0}")]
    UnknownKind(u8),
    #[error("malformed {kind} page: {reason}")]
    Malformed { kind: &'static str, reason: String },
    #[error("page is all zeros (never written)")]
    Zero,
}

/// Stamps header fields and the checksum into a full page buffer.
pub fn seal(buf: &mut [u8], kind: u8, lsn: u64, page_no: u64) {
    debug_assert_eq!(buf.len(), PAGE_SIZE);
    buf[4] = kind;
    buf[5..8].fill(0);
    buf[8..16].copy_from_slice(&lsn.to_le_bytes());
    buf[16..24].copy_from_slice(&page_no.to_le_bytes());
    let crc = crc32c::crc32c(&buf[4..]);
    buf[0..4].copy_from_slice(&crc.to_le_bytes());
}

/// Header fields of a page whose checksum and placement were verified.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageHeader {
    pub kind: u8,
    pub lsn: u64,
    pub page_no: u64,
}

/// Verifies checksum and placement of a full page buffer.
pub fn verify(buf: &[u8], expected_page: u64) -> Result<PageHeader, PageError> {
    if buf.len() != PAGE_SIZE {
        return Err(PageError::Malformed {
            kind: "any",
            reason: format!("page buffer is {} bytes", buf.len()),
        });
    }
    if buf.iter().all(|b| *b == 0) {
        return Err(PageError::Zero);
    }
    let stored = u32::from_le_bytes(buf[0..4].try_into().expect("4 bytes"));
    let computed = crc32c::crc32c(&buf[4..]);
    if stored != computed {
        return Err(PageError::Checksum { stored, computed });
    }
    let page_no = u64::from_le_bytes(buf[16..24].try_into().expect("8 bytes"));
    if page_no != expected_page {
        return Err(PageError::Misplaced {
            expected: expected_page,
            found: page_no,
        });
    }
    Ok(PageHeader {
        kind: buf[4],
        lsn: u64::from_le_bytes(buf[8..16].try_into().expect("8 bytes")),
        page_no,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_page_verifies_and_a_flipped_bit_does_not() {
        let mut buf = vec![0u8; PAGE_SIZE];
        buf[HEADER_SIZE..HEADER_SIZE + 5].copy_from_slice(b"hello");
        seal(&mut buf, KIND_LEAF, 77, 3);
        let h = verify(&buf, 3).unwrap();
        assert_eq!((h.kind, h.lsn, h.page_no), (KIND_LEAF, 77, 3));
        assert!(matches!(verify(&buf, 4), Err(PageError::Misplaced { .. })));
        buf[5000] ^= 0x10;
        assert!(matches!(verify(&buf, 3), Err(PageError::Checksum { .. })));
        assert_eq!(verify(&vec![0u8; PAGE_SIZE], 3), Err(PageError::Zero));
    }
}
