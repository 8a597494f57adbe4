//! Journal records: what changed, in a payload encoding of our own.
//!
//! A payload is a sequence of fields, each either a fixed-width little-endian
//! integer or a byte string with a `u32` LE length prefix. Field order is the
//! declaration order of the variant's fields:
//!
//! ```text
//! kind 1 Set         txn u64 | time_us u64 | db str | key bytes | value bytes | has_before u8 (0/1) | [before bytes]
//! kind 2 Kill        txn u64 | time_us u64 | db str | key bytes | before bytes
//! kind 3 TxnBegin    txn u64 | level u8 | time_us u64
//! kind 4 TxnCommit   txn u64 | time_us u64
//! kind 5 TxnRollback txn u64 | to u64 | full u8 (0/1) | time_us u64
//! kind 6 Checkpoint  redo_from u64 | n u32 | n x (txn u64, lsn u64) | time_us u64
//! kind 7 Epoch       epoch u64 | time_us u64
//! kind 8 Database    name str | time_us u64
//!
//! bytes = len u32 LE | len bytes          str = bytes holding UTF-8
//! ```
//!
//! `time_us` is the wall clock when the record was made, in microseconds
//! since the Unix epoch, to within a few milliseconds (`db::now_us`).
//!
//! The kind byte is not part of the payload: it travels in the frame header
//! (see [`super::frame::FrameHeader`]). Decoding never panics and never
//! allocates more than the payload holds: every length is checked against the
//! bytes left, and trailing bytes are an error.

use super::error::RecordError;
use super::frame::MAX_RECORD;
use crate::Lsn;

/// A transaction id; 0 means "not in a transaction".
pub type TxnId = u64;

/// The kind byte of a record's frame header. 0 is never used, so a
/// zero-filled region is never a valid header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum RecordKind {
    Set = 1,
    Kill = 2,
    TxnBegin = 3,
    TxnCommit = 4,
    TxnRollback = 5,
    Checkpoint = 6,
    Epoch = 7,
    Database = 8,
}

impl RecordKind {
    pub const ALL: [RecordKind; 8] = [
        RecordKind::Set,
        RecordKind::Kill,
        RecordKind::TxnBegin,
        RecordKind::TxnCommit,
        RecordKind::TxnRollback,
        RecordKind::Checkpoint,
        RecordKind::Epoch,
        RecordKind::Database,
    ];

    pub fn from_u8(kind: u8) -> Option<RecordKind> {
        RecordKind::ALL
            .get(usize::from(kind).wrapping_sub(1))
            .copied()
    }

    pub fn as_u8(self) -> u8 {
        self as u8
    }
}

/// One logical change, or a marker, in the journal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record {
    /// SET of one node. `before` = the node's previous value (encoded), None if it had none.
    Set {
        txn: TxnId,
        time_us: u64,
        db: String,
        key: Vec<u8>,
        value: Vec<u8>,
        before: Option<Vec<u8>>,
    },
    /// Removal of one node's value (ZKILL; a KILL of a subtree is journaled
    /// as one Kill per node). `before` = removed value.
    Kill {
        txn: TxnId,
        time_us: u64,
        db: String,
        key: Vec<u8>,
        before: Vec<u8>,
    },
    /// TSTART at nesting level `level` (1 = outermost).
    TxnBegin { txn: TxnId, level: u8, time_us: u64 },
    /// Outermost TCOMMIT: the transaction's changes are committed.
    TxnCommit { txn: TxnId, time_us: u64 },
    /// TROLLBACK: undo, in reverse order, every change of `txn` journaled at
    /// or after position `to` (the position of the TxnBegin of the level
    /// being rolled back; the outermost level's TxnBegin for a full
    /// rollback). `full` = true when the whole transaction ends here.
    TxnRollback {
        txn: TxnId,
        to: Lsn,
        full: bool,
        time_us: u64,
    },
    /// A checkpoint: every change before `redo_from` is in the database
    /// files. `open_txns` = transactions open at the checkpoint, with the
    /// position of their outermost TxnBegin.
    Checkpoint {
        redo_from: Lsn,
        open_txns: Vec<(TxnId, Lsn)>,
        time_us: u64,
    },
    /// A new primary tenure begins; positions from here on belong to `epoch`.
    Epoch { epoch: u64, time_us: u64 },
    /// A database was created (so every member of a mirror has it, even
    /// before anything is stored in it).
    Database { name: String, time_us: u64 },
}

/// Bytes of a length-prefixed field holding `n` bytes.
fn var(n: usize) -> u64 {
    4 + n as u64
}

/// A SET or a KILL, borrowing its parts: the write path journals its
/// changes so, without building an owned [`Record`] first. It encodes byte
/// for byte as the record it stands for.
#[derive(Debug, Clone, Copy)]
pub struct ChangeRef<'a> {
    txn: TxnId,
    time_us: u64,
    db: &'a str,
    key: &'a [u8],
    /// `Some` for a SET, `None` for a KILL.
    value: Option<&'a [u8]>,
    /// A KILL always has one.
    before: Option<&'a [u8]>,
}

impl<'a> ChangeRef<'a> {
    pub fn set(
        txn: TxnId,
        time_us: u64,
        db: &'a str,
        key: &'a [u8],
        value: &'a [u8],
        before: Option<&'a [u8]>,
    ) -> Self {
        ChangeRef {
            txn,
            time_us,
            db,
            key,
            value: Some(value),
            before,
        }
    }

    pub fn kill(txn: TxnId, time_us: u64, db: &'a str, key: &'a [u8], before: &'a [u8]) -> Self {
        ChangeRef {
            txn,
            time_us,
            db,
            key,
            value: None,
            before: Some(before),
        }
    }

    pub fn kind(&self) -> RecordKind {
        match self.value {
            Some(_) => RecordKind::Set,
            None => RecordKind::Kill,
        }
    }

    /// Like [`Record::payload_len`].
    pub fn payload_len(&self) -> u64 {
        let before = self.before.map_or(0, |b| var(b.len()));
        16 + var(self.db.len())
            + var(self.key.len())
            + match self.value {
                Some(v) => var(v.len()) + 1 + before,
                None => before,
            }
    }

    /// Like [`Record::check_size`].
    pub fn check_size(&self) -> Result<u32, RecordError> {
        checked_len(self.payload_len())
    }

    /// Like [`Record::encode_into`].
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        put_u64(out, self.txn);
        put_u64(out, self.time_us);
        put_bytes(out, self.db.as_bytes());
        put_bytes(out, self.key);
        match self.value {
            Some(v) => {
                put_bytes(out, v);
                match self.before {
                    Some(b) => {
                        out.push(1);
                        put_bytes(out, b);
                    }
                    None => out.push(0),
                }
            }
            None => put_bytes(out, self.before.unwrap_or_default()),
        }
    }
}

fn checked_len(len: u64) -> Result<u32, RecordError> {
    if len > u64::from(MAX_RECORD) {
        return Err(RecordError::TooLarge {
            len,
            max: MAX_RECORD,
        });
    }
    Ok(len as u32)
}

impl Record {
    /// A SET or KILL as a [`ChangeRef`]; `None` for other kinds.
    pub fn as_change(&self) -> Option<ChangeRef<'_>> {
        match self {
            Record::Set {
                txn,
                time_us,
                db,
                key,
                value,
                before,
            } => Some(ChangeRef::set(
                *txn,
                *time_us,
                db,
                key,
                value,
                before.as_deref(),
            )),
            Record::Kill {
                txn,
                time_us,
                db,
                key,
                before,
            } => Some(ChangeRef::kill(*txn, *time_us, db, key, before)),
            _ => None,
        }
    }

    pub fn kind(&self) -> RecordKind {
        match self {
            Record::Set { .. } => RecordKind::Set,
            Record::Kill { .. } => RecordKind::Kill,
            Record::TxnBegin { .. } => RecordKind::TxnBegin,
            Record::TxnCommit { .. } => RecordKind::TxnCommit,
            Record::TxnRollback { .. } => RecordKind::TxnRollback,
            Record::Checkpoint { .. } => RecordKind::Checkpoint,
            Record::Epoch { .. } => RecordKind::Epoch,
            Record::Database { .. } => RecordKind::Database,
        }
    }

    /// The transaction the record belongs to (0 for none and for markers).
    pub fn txn(&self) -> TxnId {
        match self {
            Record::Set { txn, .. }
            | Record::Kill { txn, .. }
            | Record::TxnBegin { txn, .. }
            | Record::TxnCommit { txn, .. }
            | Record::TxnRollback { txn, .. } => *txn,
            Record::Checkpoint { .. } | Record::Epoch { .. } | Record::Database { .. } => 0,
        }
    }

    pub fn time_us(&self) -> u64 {
        match self {
            Record::Set { time_us, .. }
            | Record::Kill { time_us, .. }
            | Record::TxnBegin { time_us, .. }
            | Record::TxnCommit { time_us, .. }
            | Record::TxnRollback { time_us, .. }
            | Record::Checkpoint { time_us, .. }
            | Record::Epoch { time_us, .. }
            | Record::Database { time_us, .. } => *time_us,
        }
    }

    /// Exact number of bytes [`Record::encode_into`] appends, computed
    /// without encoding (so an oversized record is rejected before copying it).
    pub fn payload_len(&self) -> u64 {
        match self {
            Record::Set { .. } | Record::Kill { .. } => {
                self.as_change().map_or(0, |c| c.payload_len())
            }
            Record::TxnBegin { .. } => 17,
            Record::TxnCommit { .. } => 16,
            Record::TxnRollback { .. } => 25,
            Record::Checkpoint { open_txns, .. } => 8 + 4 + 16 * open_txns.len() as u64 + 8,
            Record::Epoch { .. } => 16,
            Record::Database { name, .. } => var(name.len()) + 8,
        }
    }

    /// Checks that the record fits in one frame; returns its payload length.
    pub fn check_size(&self) -> Result<u32, RecordError> {
        checked_len(self.payload_len())
    }

    /// Appends the payload encoding to `out`. Call [`Record::check_size`]
    /// first: a field longer than `u32::MAX` bytes cannot be encoded.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        out.reserve(self.payload_len().min(u64::from(MAX_RECORD)) as usize);
        match self {
            Record::Set { .. } | Record::Kill { .. } => {
                if let Some(c) = self.as_change() {
                    c.encode_into(out);
                }
            }
            Record::TxnBegin {
                txn,
                level,
                time_us,
            } => {
                put_u64(out, *txn);
                out.push(*level);
                put_u64(out, *time_us);
            }
            Record::TxnCommit { txn, time_us } => {
                put_u64(out, *txn);
                put_u64(out, *time_us);
            }
            Record::TxnRollback {
                txn,
                to,
                full,
                time_us,
            } => {
                put_u64(out, *txn);
                put_u64(out, to.0);
                out.push(u8::from(*full));
                put_u64(out, *time_us);
            }
            Record::Checkpoint {
                redo_from,
                open_txns,
                time_us,
            } => {
                put_u64(out, redo_from.0);
                out.extend_from_slice(&(open_txns.len() as u32).to_le_bytes());
                for (txn, lsn) in open_txns {
                    put_u64(out, *txn);
                    put_u64(out, lsn.0);
                }
                put_u64(out, *time_us);
            }
            Record::Epoch { epoch, time_us } => {
                put_u64(out, *epoch);
                put_u64(out, *time_us);
            }
            Record::Database { name, time_us } => {
                put_bytes(out, name.as_bytes());
                put_u64(out, *time_us);
            }
        }
    }

    /// Decodes a payload of the given kind byte.
    pub fn decode(kind: u8, payload: &[u8]) -> Result<Record, RecordError> {
        let kind = RecordKind::from_u8(kind).ok_or(RecordError::UnknownKind(kind))?;
        let mut c = Cursor { rest: payload };
        let rec = match kind {
            RecordKind::Set => Record::Set {
                txn: c.u64("txn")?,
                time_us: c.u64("time_us")?,
                db: c.string("db")?,
                key: c.bytes("key")?,
                value: c.bytes("value")?,
                before: if c.flag("before")? {
                    Some(c.bytes("before")?)
                } else {
                    None
                },
            },
            RecordKind::Kill => Record::Kill {
                txn: c.u64("txn")?,
                time_us: c.u64("time_us")?,
                db: c.string("db")?,
                key: c.bytes("key")?,
                before: c.bytes("before")?,
            },
            RecordKind::TxnBegin => Record::TxnBegin {
                txn: c.u64("txn")?,
                level: c.u8("level")?,
                time_us: c.u64("time_us")?,
            },
            RecordKind::TxnCommit => Record::TxnCommit {
                txn: c.u64("txn")?,
                time_us: c.u64("time_us")?,
            },
            RecordKind::TxnRollback => Record::TxnRollback {
                txn: c.u64("txn")?,
                to: Lsn(c.u64("to")?),
                full: c.flag("full")?,
                time_us: c.u64("time_us")?,
            },
            RecordKind::Checkpoint => {
                let redo_from = Lsn(c.u64("redo_from")?);
                let n = c.u32("open_txns")?;
                let need = u64::from(n) * 16;
                if need > c.rest.len() as u64 {
                    return Err(RecordError::FieldTooLong {
                        field: "open_txns",
                        len: need,
                        remaining: c.rest.len(),
                    });
                }
                let mut open_txns = Vec::with_capacity(n as usize);
                for _ in 0..n {
                    open_txns.push((c.u64("open_txns.txn")?, Lsn(c.u64("open_txns.lsn")?)));
                }
                Record::Checkpoint {
                    redo_from,
                    open_txns,
                    time_us: c.u64("time_us")?,
                }
            }
            RecordKind::Epoch => Record::Epoch {
                epoch: c.u64("epoch")?,
                time_us: c.u64("time_us")?,
            },
            RecordKind::Database => Record::Database {
                name: c.string("name")?,
                time_us: c.u64("time_us")?,
            },
        };
        if !c.rest.is_empty() {
            return Err(RecordError::TrailingBytes(c.rest.len()));
        }
        Ok(rec)
    }
}

fn put_u64(out: &mut Vec<u8>, v: u64) {
    out.extend_from_slice(&v.to_le_bytes());
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    out.extend_from_slice(&(b.len() as u32).to_le_bytes());
    out.extend_from_slice(b);
}

/// Reads fields off the front of a payload.
struct Cursor<'a> {
    rest: &'a [u8],
}

impl<'a> Cursor<'a> {
    fn take<const N: usize>(&mut self, field: &'static str) -> Result<[u8; N], RecordError> {
        let (head, rest) = self
            .rest
            .split_first_chunk::<N>()
            .ok_or(RecordError::Truncated { field })?;
        self.rest = rest;
        Ok(*head)
    }

    fn u8(&mut self, field: &'static str) -> Result<u8, RecordError> {
        Ok(self.take::<1>(field)?[0])
    }

    fn u32(&mut self, field: &'static str) -> Result<u32, RecordError> {
        Ok(u32::from_le_bytes(self.take(field)?))
    }

    fn u64(&mut self, field: &'static str) -> Result<u64, RecordError> {
        Ok(u64::from_le_bytes(self.take(field)?))
    }

    fn flag(&mut self, field: &'static str) -> Result<bool, RecordError> {
        match self.u8(field)? {
            0 => Ok(false),
            1 => Ok(true),
            value => Err(RecordError::BadFlag { field, value }),
        }
    }

    fn slice(&mut self, field: &'static str) -> Result<&'a [u8], RecordError> {
        let len = self.u32(field)?;
        if len as usize > self.rest.len() {
            return Err(RecordError::FieldTooLong {
                field,
                len: u64::from(len),
                remaining: self.rest.len(),
            });
        }
        let (head, rest) = self.rest.split_at(len as usize);
        self.rest = rest;
        Ok(head)
    }

    fn bytes(&mut self, field: &'static str) -> Result<Vec<u8>, RecordError> {
        Ok(self.slice(field)?.to_vec())
    }

    fn string(&mut self, field: &'static str) -> Result<String, RecordError> {
        let s =
            std::str::from_utf8(self.slice(field)?).map_err(|_| RecordError::BadUtf8 { field })?;
        Ok(s.to_owned())
    }
}
