//! Decoded pages. The buffer pool holds pages decoded into [`Node`]s; they
//! are encoded again only when the write daemon flushes them.
//!
//! Bodies (after the 32-byte header of `page.rs`; integers LE):
//!
//! ```text
//! leaf    header[24..26] = n (u16)
//!         n cells: klen u16 | key | vkind u8 | value
//!           vkind 0 inline:   vlen u32 | bytes        (vlen <= INLINE_MAX)
//!           vkind 1 overflow: total u64 | first page u64
//! branch  header[24..26] = n keys (u16)
//!         child0 u64 | n x (klen u16 | key | child u64)
//!         child i holds keys k with key[i-1] <= k < key[i]
//! overflow header[24..28] = used bytes (u32) | next page u64 (0 = last) | bytes
//! free    next free page u64 (0 = end of the free list)
//! meta    see `Meta`
//! ```

use super::keys::Keys;
use super::page::{self, PageError, BODY_SIZE, HEADER_SIZE};
use crate::wij::PAGE_SIZE;

/// Largest value stored inside a leaf; larger ones go to overflow pages.
/// Chosen so that two cells with maximal keys always fit in one leaf.
pub const INLINE_MAX: usize = 2048;
/// Payload bytes of one overflow page.
pub const OVERFLOW_CAPACITY: usize = BODY_SIZE - 8;

/// A leaf value: inline bytes or a chain of overflow pages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cell {
    Inline(Vec<u8>),
    Overflow { len: u64, first: u64 },
}

impl Cell {
    fn encoded_len(&self) -> usize {
        match self {
            Cell::Inline(v) => 1 + 4 + v.len(),
            Cell::Overflow { .. } => 1 + 16,
        }
    }
}

/// The state in page 0 of every database file.
///
/// ```text
/// body: magic "RDBTDB01" | version u32 | file_id u32 | root u64 | page_count u64
///       | free_head u64 | redo_from u64 | undo_from u64 | name_len u16 | name
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Meta {
    pub file_id: u32,
    pub name: String,
    /// Root page of the B+tree (a leaf or a branch; never 0).
    pub root: u64,
    /// Pages in use or free: the file holds pages `0..page_count`.
    pub page_count: u64,
    /// First page of the free list, 0 if it is empty.
    pub free_head: u64,
    /// Every journal record before this position is reflected in the pages
    /// that were written with this meta page.
    pub redo_from: u64,
    /// Where recovery must start reading to see every change of the
    /// transactions that were open at `redo_from` (`<= redo_from`).
    pub undo_from: u64,
}

const META_MAGIC: &[u8; 8] = b"RDBTDB01";
const META_VERSION: u32 = 1;

#[derive(Debug, Clone, PartialEq)]
pub enum Node {
    Leaf { keys: Keys, cells: Vec<Cell> },
    Branch { keys: Keys, children: Vec<u64> },
    Overflow { data: Vec<u8>, next: u64 },
    Free { next: u64 },
}

/// `a.cmp(b)` for encoded keys, eight bytes at a time without a call into
/// `memcmp` (keys are short and searches compare many of them).
#[inline]
pub fn cmp_key(a: &[u8], b: &[u8]) -> std::cmp::Ordering {
    let n = a.len().min(b.len());
    let (mut a8, mut b8) = (a[..n].chunks_exact(8), b[..n].chunks_exact(8));
    for (x, y) in (&mut a8).zip(&mut b8) {
        let x = u64::from_be_bytes(x.try_into().expect("8 bytes"));
        let y = u64::from_be_bytes(y.try_into().expect("8 bytes"));
        if x != y {
            return x.cmp(&y);
        }
    }
    for (x, y) in a8.remainder().iter().zip(b8.remainder()) {
        if x != y {
            return x.cmp(y);
        }
    }
    a.len().cmp(&b.len())
}

impl Node {
    pub fn empty_leaf() -> Node {
        Node::Leaf {
            keys: Keys::new(),
            cells: Vec::new(),
        }
    }

    /// Bytes the body needs when encoded; a node fits its page when this is
    /// at most `BODY_SIZE`.
    pub fn encoded_len(&self) -> usize {
        match self {
            Node::Leaf { keys, cells } => keys
                .iter()
                .zip(cells)
                .map(|(k, c)| 2 + k.len() + c.encoded_len())
                .sum(),
            Node::Branch { keys, .. } => 8 + keys.iter().map(|k| 2 + k.len() + 8).sum::<usize>(),
            Node::Overflow { data, .. } => 8 + data.len(),
            Node::Free { .. } => 8,
        }
    }

    pub fn fits(&self) -> bool {
        self.encoded_len() <= BODY_SIZE
    }

    /// Encodes into a full, sealed page.
    pub fn encode(&self, page_no: u64, lsn: u64) -> Vec<u8> {
        let mut buf = vec![0u8; PAGE_SIZE];
        let kind = match self {
            Node::Leaf { keys, cells } => {
                buf[24..26].copy_from_slice(&(keys.len() as u16).to_le_bytes());
                let mut w = Writer::new(&mut buf[HEADER_SIZE..]);
                for (k, c) in keys.iter().zip(cells) {
                    w.put(&(k.len() as u16).to_le_bytes());
                    w.put(k);
                    match c {
                        Cell::Inline(v) => {
                            w.put(&[0]);
                            w.put(&(v.len() as u32).to_le_bytes());
                            w.put(v);
                        }
                        Cell::Overflow { len, first } => {
                            w.put(&[1]);
                            w.put(&len.to_le_bytes());
                            w.put(&first.to_le_bytes());
                        }
                    }
                }
                page::KIND_LEAF
            }
            Node::Branch { keys, children } => {
                buf[24..26].copy_from_slice(&(keys.len() as u16).to_le_bytes());
                let mut w = Writer::new(&mut buf[HEADER_SIZE..]);
                w.put(&children[0].to_le_bytes());
                for (k, c) in keys.iter().zip(&children[1..]) {
                    w.put(&(k.len() as u16).to_le_bytes());
                    w.put(k);
                    w.put(&c.to_le_bytes());
                }
                page::KIND_BRANCH
            }
            Node::Overflow { data, next } => {
                buf[24..28].copy_from_slice(&(data.len() as u32).to_le_bytes());
                let mut w = Writer::new(&mut buf[HEADER_SIZE..]);
                w.put(&next.to_le_bytes());
                w.put(data);
                page::KIND_OVERFLOW
            }
            Node::Free { next } => {
                buf[HEADER_SIZE..HEADER_SIZE + 8].copy_from_slice(&next.to_le_bytes());
                page::KIND_FREE
            }
        };
        page::seal(&mut buf, kind, lsn, page_no);
        buf
    }

    /// Decodes a full page, verifying its checksum and placement.
    pub fn decode(buf: &[u8], page_no: u64) -> Result<(Node, u64), PageError> {
        let h = page::verify(buf, page_no)?;
        let body = &buf[HEADER_SIZE..];
        let count = u16::from_le_bytes([buf[24], buf[25]]) as usize;
        let node = match h.kind {
            page::KIND_LEAF => {
                let mut r = Reader::new(body, "leaf");
                let mut keys = Vec::with_capacity(count);
                let mut cells = Vec::with_capacity(count);
                for _ in 0..count {
                    let klen = r.u16()? as usize;
                    keys.push(r.bytes(klen)?.to_vec());
                    cells.push(match r.u8()? {
                        0 => {
                            let vlen = r.u32()? as usize;
                            if vlen > INLINE_MAX {
                                return Err(r.bad(format!("inline value of {vlen} bytes")));
                            }
                            Cell::Inline(r.bytes(vlen)?.to_vec())
                        }
                        1 => Cell::Overflow {
                            len: r.u64()?,
                            first: r.u64()?,
                        },
                        other => return Err(r.bad(format!("value kind {other}"))),
                    });
                }
                if keys.windows(2).any(|w| w[0] >= w[1]) {
                    return Err(r.bad("keys out of order".into()));
                }
                Node::Leaf {
                    keys: keys.into(),
                    cells,
                }
            }
            page::KIND_BRANCH => {
                let mut r = Reader::new(body, "branch");
                let mut keys = Vec::with_capacity(count);
                let mut children = Vec::with_capacity(count + 1);
                children.push(r.u64()?);
                for _ in 0..count {
                    let klen = r.u16()? as usize;
                    keys.push(r.bytes(klen)?.to_vec());
                    children.push(r.u64()?);
                }
                if keys.windows(2).any(|w| w[0] >= w[1]) {
                    return Err(r.bad("keys out of order".into()));
                }
                Node::Branch {
                    keys: keys.into(),
                    children,
                }
            }
            page::KIND_OVERFLOW => {
                let used = u32::from_le_bytes(buf[24..28].try_into().expect("4 bytes")) as usize;
                let mut r = Reader::new(body, "overflow");
                let next = r.u64()?;
                if used > OVERFLOW_CAPACITY {
                    return Err(r.bad(format!("{used} bytes used")));
                }
                Node::Overflow {
                    data: r.bytes(used)?.to_vec(),
                    next,
                }
            }
            page::KIND_FREE => Node::Free {
                next: Reader::new(body, "free").u64()?,
            },
            other => return Err(PageError::UnknownKind(other)),
        };
        Ok((node, h.lsn))
    }
}

impl Meta {
    pub fn encode(&self, lsn: u64) -> Vec<u8> {
        let mut buf = vec![0u8; PAGE_SIZE];
        let mut w = Writer::new(&mut buf[HEADER_SIZE..]);
        w.put(META_MAGIC);
        w.put(&META_VERSION.to_le_bytes());
        w.put(&self.file_id.to_le_bytes());
        for v in [
            self.root,
            self.page_count,
            self.free_head,
            self.redo_from,
            self.undo_from,
        ] {
            w.put(&v.to_le_bytes());
        }
        w.put(&(self.name.len() as u16).to_le_bytes());
        w.put(self.name.as_bytes());
        page::seal(&mut buf, page::KIND_META, lsn, 0);
        buf
    }

    pub fn decode(buf: &[u8]) -> Result<Meta, PageError> {
        let h = page::verify(buf, 0)?;
        if h.kind != page::KIND_META {
            return Err(PageError::Malformed {
                kind: "meta",
                reason: format!("page 0 has kind {}", h.kind),
            });
        }
        let mut r = Reader::new(&buf[HEADER_SIZE..], "meta");
        if r.bytes(8)? != META_MAGIC {
            return Err(r.bad("bad magic: not a redoubt database file".into()));
        }
        let version = r.u32()?;
        if version != META_VERSION {
            return Err(r.bad(format!("format version {version}, expected {META_VERSION}")));
        }
        let file_id = r.u32()?;
        let (root, page_count, free_head, redo_from, undo_from) =
            (r.u64()?, r.u64()?, r.u64()?, r.u64()?, r.u64()?);
        let name_len = r.u16()? as usize;
        let name = String::from_utf8(r.bytes(name_len)?.to_vec())
            .map_err(|_| r.bad("database name is not UTF-8".into()))?;
        Ok(Meta {
            file_id,
            name,
            root,
            page_count,
            free_head,
            redo_from,
            undo_from,
        })
    }
}

struct Writer<'a> {
    buf: &'a mut [u8],
    pos: usize,
}

impl<'a> Writer<'a> {
    fn new(buf: &'a mut [u8]) -> Self {
        Writer { buf, pos: 0 }
    }
    fn put(&mut self, bytes: &[u8]) {
        self.buf[self.pos..self.pos + bytes.len()].copy_from_slice(bytes);
        self.pos += bytes.len();
    }
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    kind: &'static str,
}

impl<'a> Reader<'a> {
    fn new(buf: &'a [u8], kind: &'static str) -> Self {
        Reader { buf, pos: 0, kind }
    }
    fn bad(&self, reason: String) -> PageError {
        PageError::Malformed {
            kind: self.kind,
            reason,
        }
    }
    fn bytes(&mut self, n: usize) -> Result<&'a [u8], PageError> {
        if self.pos + n > self.buf.len() {
            return Err(self.bad(format!(
                "{n} bytes at body offset {} pass the end of the page",
                self.pos
            )));
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }
    fn u8(&mut self) -> Result<u8, PageError> {
        Ok(self.bytes(1)?[0])
    }
    fn u16(&mut self) -> Result<u16, PageError> {
        Ok(u16::from_le_bytes(
            self.bytes(2)?.try_into().expect("2 bytes"),
        ))
    }
    fn u32(&mut self) -> Result<u32, PageError> {
        Ok(u32::from_le_bytes(
            self.bytes(4)?.try_into().expect("4 bytes"),
        ))
    }
    fn u64(&mut self) -> Result<u64, PageError> {
        Ok(u64::from_le_bytes(
            self.bytes(8)?.try_into().expect("8 bytes"),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nodes_round_trip_through_pages() {
        let nodes = [
            Node::Leaf {
                keys: vec![b"a".to_vec(), b"b".to_vec()].into(),
                cells: vec![
                    Cell::Inline(b"x".to_vec()),
                    Cell::Overflow {
                        len: 99999,
                        first: 7,
                    },
                ],
            },
            Node::Branch {
                keys: vec![b"m".to_vec()].into(),
                children: vec![3, 4],
            },
            Node::Overflow {
                data: vec![9; OVERFLOW_CAPACITY],
                next: 0,
            },
            Node::Free { next: 12 },
        ];
        for (i, n) in nodes.iter().enumerate() {
            assert!(n.fits());
            let page = n.encode(i as u64 + 1, 42);
            assert_eq!(Node::decode(&page, i as u64 + 1).unwrap(), (n.clone(), 42));
        }
        let meta = Meta {
            file_id: 3,
            name: "DB".into(),
            root: 1,
            page_count: 9,
            free_head: 4,
            redo_from: 100,
            undo_from: 50,
        };
        assert_eq!(Meta::decode(&meta.encode(5)).unwrap(), meta);
    }

    #[test]
    fn cmp_key_is_byte_order() {
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let mut bytes = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let len = (x % 24) as usize;
            (0..len)
                .map(|i| [0u8, 1, 0x7f, 0x80, 0xff][(x >> i) as usize % 5])
                .collect::<Vec<u8>>()
        };
        for _ in 0..20_000 {
            let (a, b) = (bytes(), bytes());
            assert_eq!(super::cmp_key(&a, &b), a.cmp(&b), "{a:?} vs {b:?}");
            assert_eq!(super::cmp_key(&a, &a), std::cmp::Ordering::Equal);
        }
    }

    #[test]
    fn two_maximal_cells_fit_a_leaf() {
        let key = vec![1u8; crate::model::MAX_ENCODED_KEY];
        let leaf = Node::Leaf {
            keys: vec![key.clone(), key].into(),
            cells: vec![
                Cell::Inline(vec![0; INLINE_MAX]),
                Cell::Inline(vec![0; INLINE_MAX]),
            ],
        };
        assert!(leaf.fits());
    }

    #[test]
    fn a_malformed_page_is_an_error_not_a_panic() {
        let mut page = Node::Leaf {
            keys: vec![b"a".to_vec()].into(),
            cells: vec![Cell::Inline(b"v".to_vec())],
        }
        .encode(1, 0);
        page[24] = 200; // claims 200 cells
        page::seal(&mut page, page::KIND_LEAF, 0, 1);
        assert!(matches!(
            Node::decode(&page, 1),
            Err(PageError::Malformed { .. })
        ));
    }
}
