//! The engine operations on a [`Client`], with the same shapes as
//! [`Session`](crate::Session)'s. Each sends one [`ClientOp`] and checks
//! the reply's shape.

use std::time::Duration;

use super::{Client, ClientError};
use crate::wire::{ClientOp, Reply};
use crate::{Direction, Key, Subscript, Value};

fn mismatch(op: &str, got: &Reply) -> ClientError {
    ClientError::UnexpectedReply {
        op: op.to_string(),
        got: got.name(),
    }
}

macro_rules! expect {
    ($self:ident, $op:expr, $pat:pat => $out:expr) => {{
        let op = $op;
        let name = op.to_string();
        match $self.call(op)? {
            $pat => Ok($out),
            other => Err(mismatch(&name, &other)),
        }
    }};
}

fn db(db: &str) -> String {
    db.to_string()
}

impl Client {
    pub fn get(&mut self, d: &str, key: &Key) -> Result<Option<Value>, ClientError> {
        expect!(self, ClientOp::Get { db: db(d), key: key.clone() }, Reply::Value(v) => v)
    }

    pub fn set(&mut self, d: &str, key: &Key, value: &Value) -> Result<(), ClientError> {
        let op = ClientOp::Set {
            db: db(d),
            key: key.clone(),
            value: value.clone(),
        };
        expect!(self, op, Reply::Done => ())
    }

    /// `KILL`: removes the node and its subtree; how many nodes had values.
    pub fn kill(&mut self, d: &str, key: &Key) -> Result<u64, ClientError> {
        let op = ClientOp::Kill {
            db: db(d),
            key: key.clone(),
        };
        expect!(self, op, Reply::Int(n) => n.max(0) as u64)
    }

    /// `ZKILL`: removes the node's value only; whether it had one.
    pub fn zkill(&mut self, d: &str, key: &Key) -> Result<bool, ClientError> {
        expect!(self, ClientOp::ZKill { db: db(d), key: key.clone() }, Reply::Bool(b) => b)
    }

    /// `$DATA`: 0, 1, 10 or 11.
    pub fn data(&mut self, d: &str, key: &Key) -> Result<u8, ClientError> {
        expect!(self, ClientOp::Data { db: db(d), key: key.clone() }, Reply::Data(n) => n)
    }

    /// `$ORDER`.
    pub fn order(
        &mut self,
        d: &str,
        key: &Key,
        dir: Direction,
    ) -> Result<Option<Subscript>, ClientError> {
        let op = ClientOp::Order {
            db: db(d),
            key: key.clone(),
            backward: dir == Direction::Backward,
        };
        expect!(self, op, Reply::Subscript(s) => s)
    }

    /// `$QUERY`.
    pub fn query(
        &mut self,
        d: &str,
        key: &Key,
        dir: Direction,
    ) -> Result<Option<Key>, ClientError> {
        let op = ClientOp::Query {
            db: db(d),
            key: key.clone(),
            backward: dir == Direction::Backward,
        };
        expect!(self, op, Reply::Key(k) => k)
    }

    /// `$INCREMENT`: the new value.
    pub fn increment(&mut self, d: &str, key: &Key, by: i64) -> Result<i64, ClientError> {
        let op = ClientOp::Increment {
            db: db(d),
            key: key.clone(),
            by,
        };
        expect!(self, op, Reply::Int(n) => n)
    }

    /// `TSTART`; the new level.
    pub fn tstart(&mut self) -> Result<u32, ClientError> {
        expect!(self, ClientOp::TStart, Reply::Level(n) => n)
    }

    /// `TCOMMIT`; the level after (0: committed durably).
    pub fn tcommit(&mut self) -> Result<u32, ClientError> {
        expect!(self, ClientOp::TCommit, Reply::Level(n) => n)
    }

    /// `TROLLBACK` (all levels) or `TROLLBACK 1`; the level after.
    pub fn trollback(&mut self, innermost_only: bool) -> Result<u32, ClientError> {
        expect!(self, ClientOp::TRollback { innermost_only }, Reply::Level(n) => n)
    }

    /// `LOCK +key:timeout`; false if it timed out.
    pub fn lock(&mut self, d: &str, key: &Key, timeout: Duration) -> Result<bool, ClientError> {
        let op = ClientOp::Lock {
            db: db(d),
            key: key.clone(),
            timeout_ms: u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX),
        };
        expect!(self, op, Reply::Bool(b) => b)
    }

    /// `LOCK -key`; false if this client did not hold it.
    pub fn unlock(&mut self, d: &str, key: &Key) -> Result<bool, ClientError> {
        expect!(self, ClientOp::Unlock { db: db(d), key: key.clone() }, Reply::Bool(b) => b)
    }

    /// The first `limit` nodes with values in the subtree of `key`.
    pub fn scan(
        &mut self,
        d: &str,
        key: &Key,
        limit: u32,
    ) -> Result<Vec<(Key, Value)>, ClientError> {
        let op = ClientOp::Scan {
            db: db(d),
            key: key.clone(),
            limit,
        };
        expect!(self, op, Reply::Rows(r) => r)
    }
}
