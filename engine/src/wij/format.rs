//! The WIJ file format: where things are and how each block is encoded.
//!
//! ```text
//!  offset 0            4096           8192                 8192 + S*SLOT_SIZE
//!  +------------------+--------------+--------------------+--------------------+--------------------+----
//!  | header copy A    | header copy B| stripe 0: S slots  | stripe 1: S slots  | stripe 2: S slots  | ...
//!  | (4 KiB block)    | (4 KiB block)| (even cycles)      | (odd cycles)       | (even cycles)      |
//!  +------------------+--------------+--------------------+--------------------+--------------------+----
//! ```
//!
//! Slots come in stripes of `S` = [`STRIPE_SLOTS`] (about 1 MiB each, one
//! write call); even stripes hold the slots of even cycles, odd stripes
//! those of odd cycles. Slot `i` of cycle `c` is at
//! [`slot_offset`]`(c, i)`: stripe `2 * (i / S) + c % 2`, place `i % S`.
//! So a cycle never overwrites the slots of the cycle before it, which
//! lets a cycle begin while the previous one is still `Active` in the
//! header (see the crash model in [`super`]).
//!
//! The two header copies hold the same header once an update is complete;
//! an update writes copy A, syncs, then writes copy B and syncs, so at most
//! one copy is ever in flight (see the crash model in [`super`]).
//!
//! # Header (first 64 bytes of each 4 KiB block; the rest is zero)
//!
//! ```text
//!  0      8  magic          b"RDBTWIJ\0"
//!  8      4  version        u32 = 2 (FORMAT_VERSION; 1 had one run of
//!                           slots reused by every cycle)
//!  12     4  state          u32: 0 Empty, 1 Clean, 2 Active
//!  16     8  cycle          u64: the cycle whose images the slots hold
//!                           (0 when Empty)
//!  24     8  image_count    u64: slots of that cycle (0 when Empty)
//!  32     8  total_len      u64: the end of the cycle's last slot
//!                           (SLOTS_OFFSET when it has none)
//!  40     8  seq            u64: header generation, +1 per update; the
//!                           copy with the higher seq is the newer
//!  48     4  page_size      u32 = 8192
//!  52     4  slot_size      u32 = 8224
//!  56     4  reserved       u32 = 0
//!  60     4  crc            u32: CRC32C of bytes 0..60
//! ```
//!
//! A copy whose 64 header bytes are all zero is *blank* (never written).
//!
//! # Slot (SLOT_SIZE = 32 + 8192 bytes)
//!
//! ```text
//!  0      4  magic          b"WIJS"
//!  4      4  index          u32: position of the slot in its cycle
//!  8      8  cycle          u64: the cycle that wrote the slot
//!  16     8  page_no        u64
//!  24     4  file_id        u32
//!  28     4  crc            u32: CRC32C of bytes 0..28 followed by the data
//!  32  8192  data           the page image
//! ```
//!
//! All integers are little-endian.

use super::{PageImage, WijState, PAGE_SIZE};

/// Size of one header block; each copy sits alone in one.
pub const HEADER_BLOCK: usize = 4096;
/// Offsets of the two header copies, in the order an update writes them.
pub const HEADER_COPIES: [u64; 2] = [0, HEADER_BLOCK as u64];
/// Where slot 0 starts; also the length of a freshly made WIJ.
pub const SLOTS_OFFSET: u64 = 2 * HEADER_BLOCK as u64;
/// Bytes of a slot before the page data.
pub const SLOT_HEADER_LEN: usize = 32;
/// Bytes of one slot: slot header and page data.
pub const SLOT_SIZE: usize = SLOT_HEADER_LEN + PAGE_SIZE;
/// Slots per stripe: about 1 MiB, written (or read) with one call. Tests
/// use stripes of 5 slots, so that the engine's tests, whose cycles write
/// a few dozen images, cross stripes as a large cycle does (a cycle of the
/// real size needs a tree of over 127 branch pages).
pub const STRIPE_SLOTS: u64 = if cfg!(test) {
    5
} else {
    ((1 << 20) / SLOT_SIZE) as u64
};
/// The only format version this build reads and writes.
pub const FORMAT_VERSION: u32 = 2;

const MAGIC: [u8; 8] = *b"RDBTWIJ\0";
const SLOT_MAGIC: [u8; 4] = *b"WIJS";
/// Bytes of the header that are meaningful (checksum included).
const HEADER_LEN: usize = 64;

/// Offset of slot `index` of cycle `cycle`; the slots of one stripe are
/// contiguous.
pub fn slot_offset(cycle: u64, index: u64) -> u64 {
    let stripe = 2 * (index / STRIPE_SLOTS) + cycle % 2;
    SLOTS_OFFSET + (stripe * STRIPE_SLOTS + index % STRIPE_SLOTS) * SLOT_SIZE as u64
}

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    let mut raw = [0u8; 4];
    raw.copy_from_slice(&bytes[at..at + 4]);
    u32::from_le_bytes(raw)
}

fn u64_at(bytes: &[u8], at: usize) -> u64 {
    let mut raw = [0u8; 8];
    raw.copy_from_slice(&bytes[at..at + 8]);
    u64::from_le_bytes(raw)
}

/// One header copy, decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub state: WijState,
    /// Slots of `state`'s cycle; 0 when Empty.
    pub image_count: u64,
    /// Generation: every update writes `seq + 1` into both copies.
    pub seq: u64,
}

impl Header {
    /// End of the last slot of the header's cycle.
    pub fn total_len(&self) -> u64 {
        match self.image_count.checked_sub(1) {
            Some(last) => slot_offset(self.state.cycle(), last) + SLOT_SIZE as u64,
            None => SLOTS_OFFSET,
        }
    }

    /// The whole 4 KiB block of a copy.
    pub fn encode(&self) -> Vec<u8> {
        let (code, cycle) = match self.state {
            WijState::Empty => (0u32, 0u64),
            WijState::Clean { cycle } => (1, cycle),
            WijState::Active { cycle } => (2, cycle),
        };
        let mut block = vec![0u8; HEADER_BLOCK];
        block[0..8].copy_from_slice(&MAGIC);
        block[8..12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
        block[12..16].copy_from_slice(&code.to_le_bytes());
        block[16..24].copy_from_slice(&cycle.to_le_bytes());
        block[24..32].copy_from_slice(&self.image_count.to_le_bytes());
        block[32..40].copy_from_slice(&self.total_len().to_le_bytes());
        block[40..48].copy_from_slice(&self.seq.to_le_bytes());
        block[48..52].copy_from_slice(&(PAGE_SIZE as u32).to_le_bytes());
        block[52..56].copy_from_slice(&(SLOT_SIZE as u32).to_le_bytes());
        let crc = crc32c::crc32c(&block[0..60]);
        block[60..64].copy_from_slice(&crc.to_le_bytes());
        block
    }

    /// Decodes a copy from (at least) its first 64 bytes.
    pub fn decode(bytes: &[u8]) -> HeaderCopy {
        let bytes = &bytes[..HEADER_LEN];
        if bytes.iter().all(|&b| b == 0) {
            return HeaderCopy::Blank;
        }
        if bytes[0..8] != MAGIC {
            return HeaderCopy::Damaged("bad magic".into());
        }
        let stored = u32_at(bytes, 60);
        let computed = crc32c::crc32c(&bytes[0..60]);
        let version = u32_at(bytes, 8);
        if stored != computed {
            let hint = if version == FORMAT_VERSION {
                String::new()
            } else {
                format!(" (version field says {version}; this build knows {FORMAT_VERSION})")
            };
            return HeaderCopy::Damaged(format!(
                "checksum mismatch: stored {stored:#010x}, computed {computed:#010x}{hint}"
            ));
        }
        if version != FORMAT_VERSION {
            return HeaderCopy::Unsupported(version);
        }
        let (cycle, image_count) = (u64_at(bytes, 16), u64_at(bytes, 24));
        let state = match (u32_at(bytes, 12), cycle, image_count) {
            (0, 0, 0) => WijState::Empty,
            (0, _, _) => return HeaderCopy::Damaged("Empty state with a cycle or images".into()),
            (1, cycle, _) if cycle > 0 => WijState::Clean { cycle },
            (2, cycle, _) if cycle > 0 => WijState::Active { cycle },
            (code, cycle, _) => {
                return HeaderCopy::Damaged(format!("state {code} with cycle {cycle}"))
            }
        };
        let header = Header {
            state,
            image_count,
            seq: u64_at(bytes, 40),
        };
        let sizes = (u32_at(bytes, 48), u32_at(bytes, 52), u32_at(bytes, 56));
        if sizes != (PAGE_SIZE as u32, SLOT_SIZE as u32, 0) {
            return HeaderCopy::Damaged(format!("page size, slot size, reserved = {sizes:?}"));
        }
        let total_len = u64_at(bytes, 32);
        if image_count > u64::from(u32::MAX) || total_len != header.total_len() {
            return HeaderCopy::Damaged(format!(
                "{image_count} images but total length {total_len}"
            ));
        }
        HeaderCopy::Valid(header)
    }
}

/// What one header copy holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeaderCopy {
    /// All zero: never written.
    Blank,
    /// Not a header this build can trust: torn, rotten, or not a WIJ.
    Damaged(String),
    /// A well-formed header of another format version.
    Unsupported(u32),
    Valid(Header),
}

/// The fixed fields of a slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SlotHeader {
    pub index: u32,
    pub cycle: u64,
    pub file_id: u32,
    pub page_no: u64,
}

/// What one slot holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlotRead {
    /// The checksum does not match: a torn or damaged slot.
    BadChecksum,
    /// The checksum matches but the magic is wrong: not a slot.
    BadMagic,
    Valid(SlotHeader),
}

impl SlotHeader {
    /// Appends the whole slot (header and `data`) to `out`.
    pub fn encode_into(&self, data: &[u8], out: &mut Vec<u8>) {
        debug_assert_eq!(data.len(), PAGE_SIZE);
        let mut head = self.head();
        let crc = crc32c::crc32c_append(crc32c::crc32c(&head[0..28]), data);
        head[28..32].copy_from_slice(&crc.to_le_bytes());
        out.extend_from_slice(&head);
        out.extend_from_slice(data);
    }

    /// [`SlotHeader::encode_into`] for a *sealed* page image (its first 4
    /// bytes are the CRC32C of the other 8188, as `btree::page::seal`
    /// leaves every page): the same bytes, but the slot's checksum is
    /// derived from the page's own instead of reading the 8 KiB again
    /// (CRC32C of a concatenation from the CRCs of its parts). A flush
    /// cycle spent a fifth of its time checksumming before.
    pub fn encode_sealed_into(&self, data: &[u8], out: &mut Vec<u8>) {
        out.extend_from_slice(&self.sealed_head(data));
        out.extend_from_slice(data);
    }

    /// The header [`SlotHeader::encode_sealed_into`] puts before `data`.
    pub fn sealed_head(&self, data: &[u8]) -> [u8; SLOT_HEADER_LEN] {
        debug_assert_eq!(data.len(), PAGE_SIZE);
        let page_crc = u32_at(data, 0);
        debug_assert_eq!(
            page_crc,
            crc32c::crc32c(&data[4..]),
            "page image is not sealed"
        );
        let mut head = self.head();
        // crc(head ++ data) = crc(head ++ data[..4]) shifted past the
        // other 8188 bytes, xor crc(data[4..]) (= the page's stored crc).
        let front = crc32c::crc32c_append(crc32c::crc32c(&head[0..28]), &data[0..4]);
        let crc = shift_past_page_body(front) ^ page_crc;
        head[28..32].copy_from_slice(&crc.to_le_bytes());
        head
    }

    /// The header's first 28 bytes (the checksum's 4 left zero).
    fn head(&self) -> [u8; SLOT_HEADER_LEN] {
        let mut head = [0u8; SLOT_HEADER_LEN];
        head[0..4].copy_from_slice(&SLOT_MAGIC);
        head[4..8].copy_from_slice(&self.index.to_le_bytes());
        head[8..16].copy_from_slice(&self.cycle.to_le_bytes());
        head[16..24].copy_from_slice(&self.page_no.to_le_bytes());
        head[24..28].copy_from_slice(&self.file_id.to_le_bytes());
        head
    }

    /// Decodes and verifies a whole slot (`SLOT_SIZE` bytes).
    pub fn decode(slot: &[u8]) -> SlotRead {
        let (head, data) = slot[..SLOT_SIZE].split_at(SLOT_HEADER_LEN);
        let crc = crc32c::crc32c_append(crc32c::crc32c(&head[0..28]), data);
        if crc != u32_at(head, 28) {
            return SlotRead::BadChecksum;
        }
        if head[0..4] != SLOT_MAGIC {
            return SlotRead::BadMagic;
        }
        SlotRead::Valid(SlotHeader {
            index: u32_at(head, 4),
            cycle: u64_at(head, 8),
            page_no: u64_at(head, 16),
            file_id: u32_at(head, 24),
        })
    }

    /// The image a valid slot carries.
    pub fn image(&self, slot: &[u8]) -> PageImage {
        PageImage {
            file_id: self.file_id,
            page_no: self.page_no,
            data: slot[SLOT_HEADER_LEN..SLOT_SIZE].to_vec(),
        }
    }
}

/// CRC32C is linear: the CRC of `a ++ b` is `crc(a)` carried past
/// `len(b)` zero bytes, xor `crc(b)`. Carrying past `n` bytes is a fixed
/// 32x32 bit matrix; here for the 8188 bytes of a page after its stored
/// checksum, as its 32 columns (built once, from `crc32c_combine`).
fn shift_past_page_body(crc: u32) -> u32 {
    static COLUMNS: std::sync::OnceLock<[u32; 32]> = std::sync::OnceLock::new();
    let cols = COLUMNS.get_or_init(|| {
        std::array::from_fn(|bit| crc32c::crc32c_combine(1 << bit, 0, PAGE_SIZE - 4))
    });
    (0..32)
        .filter(|bit| crc >> bit & 1 == 1)
        .fold(0, |acc, bit| acc ^ cols[bit])
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn state_strategy() -> impl Strategy<Value = WijState> {
        prop_oneof![
            Just(WijState::Empty),
            (1u64..u64::MAX).prop_map(|cycle| WijState::Clean { cycle }),
            (1u64..u64::MAX).prop_map(|cycle| WijState::Active { cycle }),
        ]
    }

    proptest! {
        #[test]
        fn header_round_trips(state in state_strategy(), count in 0u64..=u64::from(u32::MAX), seq: u64) {
            let image_count = if state == WijState::Empty { 0 } else { count };
            let header = Header { state, image_count, seq };
            let block = header.encode();
            prop_assert_eq!(block.len(), HEADER_BLOCK);
            prop_assert_eq!(Header::decode(&block), HeaderCopy::Valid(header));
        }

        #[test]
        fn any_flipped_header_bit_is_caught(byte in 0usize..64, bit in 0u8..8) {
            let header = Header { state: WijState::Active { cycle: 9 }, image_count: 3, seq: 17 };
            let mut block = header.encode();
            block[byte] ^= 1 << bit;
            prop_assert!(!matches!(Header::decode(&block), HeaderCopy::Valid(_)));
        }

        #[test]
        fn slot_round_trips(index: u32, cycle: u64, file_id: u32, page_no: u64, fill: u8) {
            let head = SlotHeader { index, cycle, file_id, page_no };
            let mut slot = Vec::new();
            head.encode_into(&[fill; PAGE_SIZE], &mut slot);
            prop_assert_eq!(slot.len(), SLOT_SIZE);
            prop_assert_eq!(SlotHeader::decode(&slot), SlotRead::Valid(head));
            prop_assert_eq!(head.image(&slot).data, vec![fill; PAGE_SIZE]);
        }
    }

    proptest! {
        #[test]
        fn sealed_slots_are_the_same_bytes(index: u32, cycle: u64, file_id: u32, page_no: u64, seed: u64) {
            let mut data = vec![0u8; PAGE_SIZE];
            let mut x = seed | 1;
            for b in data.iter_mut() {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                *b = x as u8;
            }
            let crc = crc32c::crc32c(&data[4..]);
            data[0..4].copy_from_slice(&crc.to_le_bytes());
            let head = SlotHeader { index, cycle, file_id, page_no };
            let (mut slow, mut fast) = (Vec::new(), Vec::new());
            head.encode_into(&data, &mut slow);
            head.encode_sealed_into(&data, &mut fast);
            prop_assert_eq!(&fast, &slow);
            prop_assert_eq!(SlotHeader::decode(&fast), SlotRead::Valid(head));
        }
    }

    #[test]
    fn blank_and_foreign_headers() {
        assert_eq!(Header::decode(&[0u8; HEADER_BLOCK]), HeaderCopy::Blank);
        let mut block = Header {
            state: WijState::Empty,
            image_count: 0,
            seq: 0,
        }
        .encode();
        // Version 1: the layout before stripes.
        block[8..12].copy_from_slice(&1u32.to_le_bytes());
        let crc = crc32c::crc32c(&block[0..60]);
        block[60..64].copy_from_slice(&crc.to_le_bytes());
        assert_eq!(Header::decode(&block), HeaderCopy::Unsupported(1));
        assert!(matches!(Header::decode(&[7u8; 64]), HeaderCopy::Damaged(_)));
    }

    #[test]
    fn consecutive_cycles_use_disjoint_slots() {
        let s = STRIPE_SLOTS;
        for cycle in 1..5u64 {
            let mine: Vec<u64> = (0..3 * s).map(|i| slot_offset(cycle, i)).collect();
            let next: Vec<u64> = (0..3 * s).map(|i| slot_offset(cycle + 1, i)).collect();
            assert!(mine.iter().all(|o| !next.contains(o)), "cycle {cycle}");
            assert!(mine
                .iter()
                .all(|o| (o - SLOTS_OFFSET).is_multiple_of(SLOT_SIZE as u64)));
            // Within a stripe, slots are contiguous.
            assert_eq!(mine[1] - mine[0], SLOT_SIZE as u64);
            assert_eq!(
                mine[s as usize] - mine[s as usize - 1],
                (s + 1) * SLOT_SIZE as u64
            );
        }
        assert_eq!(slot_offset(2, 0), SLOTS_OFFSET);
        assert_eq!(slot_offset(1, 0), SLOTS_OFFSET + s * SLOT_SIZE as u64);
    }

    #[test]
    fn any_flipped_slot_bit_is_caught() {
        let head = SlotHeader {
            index: 1,
            cycle: 2,
            file_id: 3,
            page_no: 4,
        };
        let mut slot = Vec::new();
        head.encode_into(&[0x5a; PAGE_SIZE], &mut slot);
        for byte in (0..SLOT_SIZE).step_by(97).chain(0..SLOT_HEADER_LEN) {
            let mut bad = slot.clone();
            bad[byte] ^= 0x10;
            assert_eq!(
                SlotHeader::decode(&bad),
                SlotRead::BadChecksum,
                "byte {byte}"
            );
        }
    }
}
