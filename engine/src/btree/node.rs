//! Pages in memory. The buffer pool holds leaves and branches as
//! [`Entries`]: their cells packed in one buffer, exactly as the page body
//! stores them, so loading a page and flushing it copy the cells in one
//! piece (no allocation per key or value).
//!
//! Bodies (after the 32-byte header of `page.rs`; integers LE):
//!
//! ```text
//! leaf    header[24..26] = n (u16)
//!         n cells: klen u16 | plen u16 | key | payload      (see entries.rs)
//!           payload 0 | bytes                  inline value (plen - 1 <= INLINE_MAX)
//!           payload 1 | total u64 | first u64  value in an overflow chain
//! branch  header[24..26] = n keys (u16)
//!         child0 u64 | n cells: klen u16 | plen u16 = 8 | key | child u64
//!         child i holds keys k with key[i-1] <= k < key[i]
//! overflow header[24..28] = used bytes (u32) | next page u64 (0 = last) | bytes
//! free    header[24..28] = n (u32)
//! list    next free-list page u64 (0 = last) | n free pages u64 (see free.rs)
//! meta    see `Meta`
//! ```
//!
//! The rest of a body is zero. Every page is checksummed and stamped with
//! its LSN and number (`page.rs`); a page that fails to decode is an error,
//! never a panic.

use super::entries::Entries;
use super::page::{self, PageError, BODY_SIZE, HEADER_SIZE};
use crate::wij::PAGE_SIZE;

/// Free pages one free-list page names.
pub const FREE_LIST_CAPACITY: usize = (BODY_SIZE - 8) / 8;

/// Largest value stored inside a leaf; larger ones go to overflow pages.
/// Chosen so that two cells with maximal keys always fit in one leaf.
pub const INLINE_MAX: usize = 2048;
/// Payload bytes of one overflow page.
pub const OVERFLOW_CAPACITY: usize = BODY_SIZE - 8;

const VALUE_INLINE: u8 = 0;
const VALUE_OVERFLOW: u8 = 1;

/// A leaf value, borrowed from its page: inline bytes or a chain of
/// overflow pages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cell<'a> {
    Inline(&'a [u8]),
    Overflow { len: u64, first: u64 },
}

impl<'a> Cell<'a> {
    /// The value a leaf payload holds (payloads are vetted by
    /// [`Cell::check`] when a page is loaded).
    pub fn from_payload(p: &'a [u8]) -> Cell<'a> {
        match p {
            [VALUE_OVERFLOW, rest @ ..] if rest.len() == 16 => Cell::Overflow {
                len: u64::from_le_bytes(rest[..8].try_into().expect("8 bytes")),
                first: u64::from_le_bytes(rest[8..].try_into().expect("8 bytes")),
            },
            [_, rest @ ..] => Cell::Inline(rest),
            [] => Cell::Inline(p),
        }
    }

    /// Whether `p` is a well-formed leaf payload.
    pub fn check(p: &[u8]) -> Result<(), String> {
        match p {
            [VALUE_INLINE, rest @ ..] if rest.len() <= INLINE_MAX => Ok(()),
            [VALUE_INLINE, rest @ ..] => Err(format!("inline value of {} bytes", rest.len())),
            [VALUE_OVERFLOW, rest @ ..] if rest.len() == 16 => Ok(()),
            [kind, ..] => Err(format!("value kind {kind} with {} bytes", p.len())),
            [] => Err("empty payload".into()),
        }
    }

    /// Calls `f` with the payload parts that store this cell.
    pub fn with_payload<R>(&self, f: impl FnOnce(&[&[u8]]) -> R) -> R {
        match *self {
            Cell::Inline(v) => f(&[&[VALUE_INLINE], v]),
            Cell::Overflow { len, first } => {
                f(&[&[VALUE_OVERFLOW], &len.to_le_bytes(), &first.to_le_bytes()])
            }
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
    /// First free-list page (see `free.rs`), 0 if no page is free.
    pub free_head: u64,
    /// Every journal record before this position is reflected in the pages
    /// that were written with this meta page.
    pub redo_from: u64,
    /// Where recovery must start reading to see every change of the
    /// transactions that were open when the meta page was written (it can
    /// be after `redo_from`, which keys in the insert buffer hold back).
    pub undo_from: u64,
}

const META_MAGIC: &[u8; 8] = b"RDBTDB02";
/// 3: the free list is a chain of free-list pages naming the free pages (2
/// chained the free pages themselves); 2: cells packed as `klen | plen |
/// key | payload` (1 had per-kind cells).
const META_VERSION: u32 = 3;

#[derive(Debug, Clone, PartialEq)]
pub enum Node {
    /// Payloads are leaf values (see [`Cell`]).
    Leaf(Entries),
    /// Cell `i` holds key `i` and child `i + 1`; child 0 is `first`. A
    /// branch whose last child was unlinked has `first == 0` (page 0 is
    /// never a child) and no cells, and is freed at once.
    Branch {
        first: u64,
        entries: Entries,
    },
    Overflow {
        data: Vec<u8>,
        next: u64,
    },
    /// A page of the free list: free pages, and the next page of the list
    /// (0 for the last). The free pages themselves are never read.
    FreeList {
        next: u64,
        pages: Vec<u64>,
    },
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
        Node::Leaf(Entries::new())
    }

    /// The keys of a leaf or a branch (none for other pages).
    pub fn entries(&self) -> Option<&Entries> {
        match self {
            Node::Leaf(e) | Node::Branch { entries: e, .. } => Some(e),
            _ => None,
        }
    }

    /// Bytes the body needs when encoded; a node fits its page when this is
    /// at most `BODY_SIZE`.
    pub fn encoded_len(&self) -> usize {
        match self {
            Node::Leaf(e) => e.bytes().len(),
            Node::Branch { entries, .. } => 8 + entries.bytes().len(),
            Node::Overflow { data, .. } => 8 + data.len(),
            Node::FreeList { pages, .. } => 8 + 8 * pages.len(),
        }
    }

    /// Memory the node takes in the buffer pool: the shared allocation
    /// (`Arc` counts and the node) and what it holds on the heap, as
    /// allocated. The allocator's rounding to its size classes is not
    /// counted.
    pub fn memory(&self) -> usize {
        let shared = 2 * std::mem::size_of::<usize>() + std::mem::size_of::<Node>();
        shared
            + match self {
                Node::Leaf(e) | Node::Branch { entries: e, .. } => e.heap_bytes(),
                Node::Overflow { data, .. } => data.capacity(),
                Node::FreeList { pages, .. } => pages.capacity() * std::mem::size_of::<u64>(),
            }
    }

    /// Where a search of this page first reads its search index (see
    /// [`Entries::first_probe`]), 0 for pages that have none: the pool
    /// keeps it next to the page, to start loading it before the node.
    pub fn first_probe(&self) -> usize {
        match self {
            Node::Leaf(e) | Node::Branch { entries: e, .. } => e.first_probe(),
            _ => 0,
        }
    }

    pub fn fits(&self) -> bool {
        self.encoded_len() <= BODY_SIZE
    }

    /// Encodes into a full, sealed page.
    pub fn encode(&self, page_no: u64, lsn: u64) -> Vec<u8> {
        let mut buf = Vec::new();
        self.encode_into(&mut buf, page_no, lsn);
        buf
    }

    /// [`Node::encode`] into `buf` (any previous content is replaced), so
    /// a caller can reuse its buffers.
    pub fn encode_into(&self, buf: &mut Vec<u8>, page_no: u64, lsn: u64) {
        buf.clear();
        buf.resize(PAGE_SIZE, 0);
        let body = HEADER_SIZE;
        let kind = match self {
            Node::Leaf(e) => {
                buf[24..26].copy_from_slice(&(e.len() as u16).to_le_bytes());
                buf[body..body + e.bytes().len()].copy_from_slice(e.bytes());
                page::KIND_LEAF
            }
            Node::Branch { first, entries } => {
                buf[24..26].copy_from_slice(&(entries.len() as u16).to_le_bytes());
                buf[body..body + 8].copy_from_slice(&first.to_le_bytes());
                let cells = entries.bytes();
                buf[body + 8..body + 8 + cells.len()].copy_from_slice(cells);
                page::KIND_BRANCH
            }
            Node::Overflow { data, next } => {
                buf[24..28].copy_from_slice(&(data.len() as u32).to_le_bytes());
                buf[body..body + 8].copy_from_slice(&next.to_le_bytes());
                buf[body + 8..body + 8 + data.len()].copy_from_slice(data);
                page::KIND_OVERFLOW
            }
            Node::FreeList { next, pages } => {
                buf[24..28].copy_from_slice(&(pages.len() as u32).to_le_bytes());
                buf[body..body + 8].copy_from_slice(&next.to_le_bytes());
                for (i, p) in pages.iter().enumerate() {
                    let at = body + 8 + 8 * i;
                    buf[at..at + 8].copy_from_slice(&p.to_le_bytes());
                }
                page::KIND_FREE_LIST
            }
        };
        page::seal(buf, kind, lsn, page_no);
    }

    /// Decodes a full page, verifying its checksum, placement and
    /// structure.
    pub fn decode(buf: &[u8], page_no: u64) -> Result<(Node, u64), PageError> {
        let h = page::verify(buf, page_no)?;
        let body = &buf[HEADER_SIZE..];
        let count = u16::from_le_bytes([buf[24], buf[25]]) as usize;
        let malformed =
            |kind: &'static str| move |reason: String| PageError::Malformed { kind, reason };
        let u64_at = |at: usize| u64::from_le_bytes(body[at..at + 8].try_into().expect("8 bytes"));
        let node = match h.kind {
            page::KIND_LEAF => {
                Node::Leaf(Entries::decode(body, count, Cell::check).map_err(malformed("leaf"))?)
            }
            page::KIND_BRANCH => {
                let child = |p: &[u8]| match p.len() {
                    8 => Ok(()),
                    n => Err(format!("child of {n} bytes")),
                };
                Node::Branch {
                    first: u64_at(0),
                    entries: Entries::decode(&body[8..], count, child)
                        .map_err(malformed("branch"))?,
                }
            }
            page::KIND_OVERFLOW => {
                let used = u32::from_le_bytes(buf[24..28].try_into().expect("4 bytes")) as usize;
                if used > OVERFLOW_CAPACITY {
                    return Err(malformed("overflow")(format!("{used} bytes used")));
                }
                Node::Overflow {
                    data: body[8..8 + used].to_vec(),
                    next: u64_at(0),
                }
            }
            page::KIND_FREE_LIST => {
                let n = u32::from_le_bytes(buf[24..28].try_into().expect("4 bytes")) as usize;
                if n > FREE_LIST_CAPACITY {
                    return Err(malformed("free list")(format!("{n} pages listed")));
                }
                Node::FreeList {
                    next: u64_at(0),
                    pages: (0..n).map(|i| u64_at(8 + 8 * i)).collect(),
                }
            }
            other => return Err(PageError::UnknownKind(other)),
        };
        Ok((node, h.lsn))
    }

    /// Points child `i` of a branch (`i <= entries.len()`) at `page`.
    pub fn set_child(first: &mut u64, entries: &mut Entries, i: usize, page: u64) {
        if i == 0 {
            *first = page;
        } else {
            entries.set_payload(i - 1, &[&page.to_le_bytes()]);
        }
    }

    /// Child `i` of a branch (`i <= entries.len()`).
    pub fn child(first: u64, entries: &Entries, i: usize) -> u64 {
        if i == 0 {
            first
        } else {
            u64::from_le_bytes(entries.payload(i - 1).try_into().expect("8-byte child"))
        }
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

    fn leaf(cells: &[(&[u8], Cell)]) -> Node {
        let mut e = Entries::new();
        for (i, (k, c)) in cells.iter().enumerate() {
            c.with_payload(|p| e.insert(i, k, p));
        }
        Node::Leaf(e)
    }

    #[test]
    fn nodes_round_trip_through_pages() {
        let mut branch = Entries::new();
        branch.insert(0, b"m", &[&4u64.to_le_bytes()]);
        let nodes = [
            leaf(&[
                (b"a", Cell::Inline(b"x")),
                (
                    b"b",
                    Cell::Overflow {
                        len: 99999,
                        first: 7,
                    },
                ),
            ]),
            Node::Branch {
                first: 3,
                entries: branch,
            },
            Node::Overflow {
                data: vec![9; OVERFLOW_CAPACITY],
                next: 0,
            },
            Node::FreeList {
                next: 12,
                pages: (1..=FREE_LIST_CAPACITY as u64).collect(),
            },
            Node::FreeList {
                next: 0,
                pages: Vec::new(),
            },
        ];
        for (i, n) in nodes.iter().enumerate() {
            assert!(n.fits());
            let page = n.encode(i as u64 + 1, 42);
            assert_eq!(Node::decode(&page, i as u64 + 1).unwrap(), (n.clone(), 42));
        }
        let Node::Leaf(e) = &nodes[0] else {
            unreachable!()
        };
        assert_eq!(Cell::from_payload(e.payload(0)), Cell::Inline(b"x"));
        assert_eq!(
            Cell::from_payload(e.payload(1)),
            Cell::Overflow {
                len: 99999,
                first: 7
            }
        );
        let Node::Branch { first, entries } = &nodes[1] else {
            unreachable!()
        };
        assert_eq!(
            (
                Node::child(*first, entries, 0),
                Node::child(*first, entries, 1)
            ),
            (3, 4)
        );
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
        let mut key2 = key.clone();
        *key2.last_mut().unwrap() = 2;
        let v = vec![0; INLINE_MAX];
        let leaf = leaf(&[(&key, Cell::Inline(&v)), (&key2, Cell::Inline(&v))]);
        assert!(leaf.fits());
    }

    #[test]
    fn a_malformed_page_is_an_error_not_a_panic() {
        let good = leaf(&[(b"a", Cell::Inline(b"v")), (b"b", Cell::Inline(b"w"))]).encode(1, 0);
        type Damage = dyn Fn(&mut Vec<u8>);
        let bad = |f: &Damage| {
            let mut page = good.clone();
            f(&mut page);
            page::seal(&mut page, page::KIND_LEAF, 0, 1);
            Node::decode(&page, 1)
        };
        let cases: [&Damage; 5] = [
            &|p| p[24] = 200,               // claims 200 cells
            &|p| p[HEADER_SIZE] = 0xff,     // key runs past the page
            &|p| p[HEADER_SIZE + 2] = 0,    // empty payload
            &|p| p[HEADER_SIZE + 5] = 7,    // unknown value kind
            &|p| p[HEADER_SIZE + 4] = b'c', // keys out of order
        ];
        for (i, case) in cases.iter().enumerate() {
            assert!(
                matches!(bad(case), Err(PageError::Malformed { .. })),
                "case {i}: {:?}",
                bad(case)
            );
        }
    }
}
