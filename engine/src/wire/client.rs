//! Client messages: [`Request`] (client → member) and [`Response`]
//! (member → client), one response per request, in order.
//!
//! Keys and values travel as their engine byte encodings and are validated
//! by decoding on receipt. Each [`ClientOp`] has one [`Reply`] shape,
//! listed on the op.

use std::fmt;

use super::codec::{code_enum, Dec, Enc, Fields};
use super::WireError;
use crate::model::{Key, Subscript, Value};

/// ```text
///   id u64 | op (ClientOp)
/// ```
/// `id` is chosen by the client (increasing per connection) and echoed in
/// the [`Response`].
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    pub id: u64,
    pub op: ClientOp,
}

/// ```text
///   id u64 | 0 u8 | Reply         (success)
///   id u64 | 1 u8 | RemoteError   (failure)
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Response {
    pub id: u64,
    pub result: Result<Reply, RemoteError>,
}

/// One engine operation, as a `Session` offers them.
///
/// ```text
///   tag u8 | fields, in the order declared
///   db is a string, key a key, value a value, backward/innermost_only bool
/// ```
#[derive(Debug, Clone, PartialEq)]
pub enum ClientOp {
    /// tag 1 → `Reply::Value`
    Get { db: String, key: Key },
    /// tag 2 → `Reply::Done`
    Set { db: String, key: Key, value: Value },
    /// tag 3 → `Reply::Int` (nodes with values removed)
    Kill { db: String, key: Key },
    /// tag 4 → `Reply::Bool` (whether the node had a value)
    ZKill { db: String, key: Key },
    /// tag 5 → `Reply::Data` (`$DATA`: 0, 1, 10 or 11)
    Data { db: String, key: Key },
    /// tag 6 → `Reply::Subscript` (`$ORDER`)
    Order {
        db: String,
        key: Key,
        backward: bool,
    },
    /// tag 7 → `Reply::Key` (`$QUERY`)
    Query {
        db: String,
        key: Key,
        backward: bool,
    },
    /// tag 8 (`by` i64) → `Reply::Int` (the new value)
    Increment { db: String, key: Key, by: i64 },
    /// tag 9 → `Reply::Level` (the new `$TLEVEL`)
    TStart,
    /// tag 10 → `Reply::Level` (`$TLEVEL` after; 0 = committed durably)
    TCommit,
    /// tag 11 → `Reply::Level` (`$TLEVEL` after)
    TRollback { innermost_only: bool },
    /// tag 12 (`timeout_ms` u64) → `Reply::Bool` (false: timed out)
    Lock {
        db: String,
        key: Key,
        timeout_ms: u64,
    },
    /// tag 13 → `Reply::Bool` (false: this session did not hold it)
    Unlock { db: String, key: Key },
    /// tag 14 (`limit` u32) → `Reply::Rows`: the first `limit` nodes with
    /// values in the subtree of `key`, in collation order.
    Scan { db: String, key: Key, limit: u32 },
}

impl ClientOp {
    /// The command name, lower case (`"set"`).
    pub fn name(&self) -> &'static str {
        match self {
            ClientOp::Get { .. } => "get",
            ClientOp::Set { .. } => "set",
            ClientOp::Kill { .. } => "kill",
            ClientOp::ZKill { .. } => "zkill",
            ClientOp::Data { .. } => "data",
            ClientOp::Order { .. } => "order",
            ClientOp::Query { .. } => "query",
            ClientOp::Increment { .. } => "increment",
            ClientOp::TStart => "tstart",
            ClientOp::TCommit => "tcommit",
            ClientOp::TRollback { .. } => "trollback",
            ClientOp::Lock { .. } => "lock",
            ClientOp::Unlock { .. } => "unlock",
            ClientOp::Scan { .. } => "scan",
        }
    }

    /// True if the op changes data or session state (transactions, locks),
    /// so sending it twice is not the same as once.
    pub fn is_write(&self) -> bool {
        !matches!(
            self,
            ClientOp::Get { .. }
                | ClientOp::Data { .. }
                | ClientOp::Order { .. }
                | ClientOp::Query { .. }
                | ClientOp::Scan { .. }
        )
    }

    fn target(&self) -> Option<(&str, &Key)> {
        match self {
            ClientOp::Get { db, key }
            | ClientOp::Set { db, key, .. }
            | ClientOp::Kill { db, key }
            | ClientOp::ZKill { db, key }
            | ClientOp::Data { db, key }
            | ClientOp::Order { db, key, .. }
            | ClientOp::Query { db, key, .. }
            | ClientOp::Increment { db, key, .. }
            | ClientOp::Lock { db, key, .. }
            | ClientOp::Unlock { db, key }
            | ClientOp::Scan { db, key, .. } => Some((db, key)),
            ClientOp::TStart | ClientOp::TCommit | ClientOp::TRollback { .. } => None,
        }
    }
}

/// `set ^x(1) in DB`: names the op for messages (values are left out).
impl fmt::Display for ClientOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.target() {
            Some((db, key)) => write!(f, "{} {key} in {db}", self.name()),
            None => f.write_str(self.name()),
        }
    }
}

impl Fields for ClientOp {
    fn put(&self, e: &mut Enc) {
        match self {
            ClientOp::Get { db, key } => e.u8(1).str(db).key(key),
            ClientOp::Set { db, key, value } => e.u8(2).str(db).key(key).value(value),
            ClientOp::Kill { db, key } => e.u8(3).str(db).key(key),
            ClientOp::ZKill { db, key } => e.u8(4).str(db).key(key),
            ClientOp::Data { db, key } => e.u8(5).str(db).key(key),
            ClientOp::Order { db, key, backward } => e.u8(6).str(db).key(key).bool(*backward),
            ClientOp::Query { db, key, backward } => e.u8(7).str(db).key(key).bool(*backward),
            ClientOp::Increment { db, key, by } => e.u8(8).str(db).key(key).i64(*by),
            ClientOp::TStart => e.u8(9),
            ClientOp::TCommit => e.u8(10),
            ClientOp::TRollback { innermost_only } => e.u8(11).bool(*innermost_only),
            ClientOp::Lock {
                db,
                key,
                timeout_ms,
            } => e.u8(12).str(db).key(key).u64(*timeout_ms),
            ClientOp::Unlock { db, key } => e.u8(13).str(db).key(key),
            ClientOp::Scan { db, key, limit } => e.u8(14).str(db).key(key).u32(*limit),
        };
    }

    fn get(d: &mut Dec<'_>) -> Result<Self, WireError> {
        let tag = d.u8("op")?;
        if (9..=11).contains(&tag) {
            return Ok(match tag {
                9 => ClientOp::TStart,
                10 => ClientOp::TCommit,
                _ => ClientOp::TRollback {
                    innermost_only: d.bool("innermost_only")?,
                },
            });
        }
        if !(1..=14).contains(&tag) {
            return Err(d.err(format!("unknown client op tag {tag}")));
        }
        let db = d.string("db")?;
        let key = d.key("key")?;
        Ok(match tag {
            1 => ClientOp::Get { db, key },
            2 => ClientOp::Set {
                db,
                key,
                value: d.value("value")?,
            },
            3 => ClientOp::Kill { db, key },
            4 => ClientOp::ZKill { db, key },
            5 => ClientOp::Data { db, key },
            6 => ClientOp::Order {
                db,
                key,
                backward: d.bool("backward")?,
            },
            7 => ClientOp::Query {
                db,
                key,
                backward: d.bool("backward")?,
            },
            8 => ClientOp::Increment {
                db,
                key,
                by: d.i64("by")?,
            },
            12 => ClientOp::Lock {
                db,
                key,
                timeout_ms: d.u64("timeout_ms")?,
            },
            13 => ClientOp::Unlock { db, key },
            _ => ClientOp::Scan {
                db,
                key,
                limit: d.u32("limit")?,
            },
        })
    }
}

/// The successful result of a [`ClientOp`].
///
/// ```text
///   0 Done
///   1 Value      option<value>
///   2 Int        i64
///   3 Bool       bool
///   4 Data       u8
///   5 Subscript  option<subscript>
///   6 Key        option<key>
///   7 Level      u32
///   8 Rows       list<key | value>
/// ```
#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    Done,
    Value(Option<Value>),
    Int(i64),
    Bool(bool),
    Data(u8),
    Subscript(Option<Subscript>),
    Key(Option<Key>),
    Level(u32),
    Rows(Vec<(Key, Value)>),
}

impl Reply {
    /// The variant's name, for "expected X, got Y" messages.
    pub fn name(&self) -> &'static str {
        match self {
            Reply::Done => "done",
            Reply::Value(_) => "value",
            Reply::Int(_) => "int",
            Reply::Bool(_) => "bool",
            Reply::Data(_) => "data",
            Reply::Subscript(_) => "subscript",
            Reply::Key(_) => "key",
            Reply::Level(_) => "level",
            Reply::Rows(_) => "rows",
        }
    }
}

impl Fields for Reply {
    fn put(&self, e: &mut Enc) {
        match self {
            Reply::Done => e.u8(0),
            Reply::Value(v) => e.u8(1).option(v.as_ref(), |e, v| {
                e.value(v);
            }),
            Reply::Int(n) => e.u8(2).i64(*n),
            Reply::Bool(b) => e.u8(3).bool(*b),
            Reply::Data(n) => e.u8(4).u8(*n),
            Reply::Subscript(s) => e.u8(5).option(s.as_ref(), |e, s| {
                e.subscript(s);
            }),
            Reply::Key(k) => e.u8(6).option(k.as_ref(), |e, k| {
                e.key(k);
            }),
            Reply::Level(n) => e.u8(7).u32(*n),
            Reply::Rows(rows) => {
                e.u8(8).count(rows.len());
                for (k, v) in rows {
                    e.key(k).value(v);
                }
                e
            }
        };
    }

    fn get(d: &mut Dec<'_>) -> Result<Self, WireError> {
        Ok(match d.u8("reply")? {
            0 => Reply::Done,
            1 => Reply::Value(d.option("value", |d| d.value("value"))?),
            2 => Reply::Int(d.i64("int")?),
            3 => Reply::Bool(d.bool("bool")?),
            4 => Reply::Data(d.u8("data")?),
            5 => Reply::Subscript(d.option("subscript", |d| d.subscript("subscript"))?),
            6 => Reply::Key(d.option("key", |d| d.key("key"))?),
            7 => Reply::Level(d.u32("level")?),
            8 => {
                // Each row is at least two length fields.
                let n = d.count("rows", 8)?;
                let mut rows = Vec::new();
                for _ in 0..n {
                    rows.push((d.key("row key")?, d.value("row value")?));
                }
                Reply::Rows(rows)
            }
            t => return Err(d.err(format!("unknown reply tag {t}"))),
        })
    }
}

code_enum! {
    /// What kind of failure a [`RemoteError`] is; callers branch on it.
    pub enum ErrorCode {
        /// A write on a backup or async member; `primary` names the primary.
        ReadOnly = 1 => "read-only",
        /// The member was primary but no longer is (demoted, fenced by a
        /// newer epoch); the op was not executed.
        NotPrimary = 2 => "not primary",
        /// The primary cannot commit safely right now (lost its backup and
        /// the arbiter); the op was not executed.
        Trouble = 3 => "trouble",
        NoSuchDatabase = 4 => "no such database",
        BadArgument = 5 => "bad argument",
        KeyTooLong = 6 => "key too long",
        ValueTooLarge = 7 => "value too large",
        NoTransaction = 8 => "no transaction",
        LockTimeout = 9 => "lock timeout",
        /// The member's store is poisoned (a failed fsync) and refuses writes.
        Poisoned = 10 => "poisoned",
        Internal = 11 => "internal error",
        /// The write was executed but could not be acknowledged (the member
        /// stopped being primary while waiting for the backup): it may or
        /// may not survive. Never retried automatically.
        OutcomeUnknown = 12 => "outcome unknown",
    }
}

/// A failure reported by the member.
///
/// ```text
///   code u8 | message string | primary option<string>
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}{}", primary.as_ref().map(|p| format!(" (the primary is at {p})")).unwrap_or_default())]
pub struct RemoteError {
    pub code: ErrorCode,
    /// For people.
    pub message: String,
    /// The client address of the current primary, when the member knows it
    /// (set with `ReadOnly` and `NotPrimary`).
    pub primary: Option<String>,
}

impl Fields for RemoteError {
    fn put(&self, e: &mut Enc) {
        self.code.put(e);
        e.str(&self.message).option(self.primary.as_ref(), |e, p| {
            e.str(p);
        });
    }

    fn get(d: &mut Dec<'_>) -> Result<Self, WireError> {
        Ok(RemoteError {
            code: ErrorCode::get(d)?,
            message: d.string("message")?,
            primary: d.option("primary", |d| d.string("primary"))?,
        })
    }
}

impl Fields for Request {
    fn put(&self, e: &mut Enc) {
        e.u64(self.id);
        self.op.put(e);
    }

    fn get(d: &mut Dec<'_>) -> Result<Self, WireError> {
        Ok(Request {
            id: d.u64("id")?,
            op: ClientOp::get(d)?,
        })
    }
}

impl Fields for Response {
    fn put(&self, e: &mut Enc) {
        e.u64(self.id);
        match &self.result {
            Ok(r) => {
                e.u8(0);
                r.put(e);
            }
            Err(err) => {
                e.u8(1);
                err.put(e);
            }
        }
    }

    fn get(d: &mut Dec<'_>) -> Result<Self, WireError> {
        let id = d.u64("id")?;
        let result = match d.u8("result")? {
            0 => Ok(Reply::get(d)?),
            1 => Err(RemoteError::get(d)?),
            t => return Err(d.err(format!("result tag {t} is neither 0 nor 1"))),
        };
        Ok(Response { id, result })
    }
}
