//! [`Client`]: a connection to the mirror that survives failovers where
//! that is safe, and says so plainly where it is not.
//!
//! # What is retried
//!
//! | what happened                                  | outside a transaction, no locks        | inside a transaction or holding locks |
//! |------------------------------------------------|----------------------------------------|---------------------------------------|
//! | request not sent (connection already closed, write failed) | reconnect, retry once        | `TransactionLost`                     |
//! | `ReadOnly` / `NotPrimary` answer (not executed), target Primary | reconnect (hint first), retry once | `Remote` error            |
//! | sent, answer lost (closed, reset, timed out, garbage) — a read | reconnect, retry once     | `TransactionLost`                     |
//! | sent, answer lost — a write                    | `OutcomeUnknown`, never retried        | `TCommit` at level 1: `OutcomeUnknown`; else `TransactionLost` |
//!
//! An error answer to the `TCOMMIT` that ends a transaction leaves no
//! transaction open: the member ends the connection (rolling it back), and
//! the next call reconnects.
//!
//! A retry that fails again is reported as it failed. Members answer
//! `ReadOnly` and `NotPrimary` only for ops they did not execute, which is
//! what makes that retry safe. The connection is dropped after any of
//! these failures; the next call reconnects.

use std::time::Duration;

use super::conn::{CallError, Conn};
use super::discover;
use super::{ClientError, ClientOptions, Target};
use crate::wire::{ClientOp, ErrorCode, RemoteError, Reply, Request, Welcome, WireError};

/// A client of one mirror. Calls are sequential; use one client per thread.
pub struct Client {
    pub(super) addrs: Vec<String>,
    pub(super) opts: ClientOptions,
    pub(super) conn: Option<Conn>,
    pub(super) next_id: u64,
    pub(super) level: u32,
    pub(super) locks: u32,
}

impl Client {
    /// Connects to the member `opts.target` asks for among `addrs`
    /// (`host:port`, tried in order, following primary hints).
    pub fn connect(addrs: &[String], opts: ClientOptions) -> Result<Client, ClientError> {
        let conn = discover::find(addrs, None, &opts)?;
        Ok(Client {
            addrs: addrs.to_vec(),
            opts,
            conn: Some(conn),
            next_id: 1,
            level: 0,
            locks: 0,
        })
    }

    /// The address of the member this client is connected to, if it is.
    pub fn server(&self) -> Option<&str> {
        self.conn.as_ref().map(|c| c.addr.as_str())
    }

    /// That member's handshake answer (its name, role, epoch).
    pub fn welcome(&self) -> Option<&Welcome> {
        self.conn.as_ref().map(|c| &c.welcome)
    }

    /// `$TLEVEL` as this client knows it.
    pub fn tlevel(&self) -> u32 {
        self.level
    }

    /// Sends one op and returns the member's reply, following the retry
    /// rules of this module.
    pub fn call(&mut self, op: ClientOp) -> Result<Reply, ClientError> {
        let extra = match &op {
            ClientOp::Lock { timeout_ms, .. } => Duration::from_millis(*timeout_ms),
            _ => Duration::ZERO,
        };
        let mut op = op;
        let mut hint: Option<String> = None;
        let mut retried = false;
        loop {
            let in_session = self.level > 0 || self.locks > 0;
            if self.conn.is_none() {
                self.conn = Some(discover::find(&self.addrs, hint.as_deref(), &self.opts)?);
            }
            let Some(conn) = self.conn.as_mut() else {
                unreachable!("connected just above");
            };
            let req = Request {
                id: self.next_id,
                op,
            };
            self.next_id += 1;
            let result = conn.call(&req, extra);
            op = req.op;
            let e = match result {
                Ok(resp) => match resp.result {
                    Ok(reply) => {
                        self.track(&op, &reply);
                        return Ok(reply);
                    }
                    Err(e)
                        if matches!(e.code, ErrorCode::ReadOnly | ErrorCode::NotPrimary)
                            && self.opts.target == Target::Primary
                            && !in_session
                            && !retried =>
                    {
                        tracing::debug!(op = %op, error = %e, "not the primary; looking for it");
                        self.conn = None;
                        hint = e.primary;
                        retried = true;
                        continue;
                    }
                    Err(e) => {
                        if self.track_refusal(&op, &e) {
                            self.conn = None;
                        }
                        return Err(ClientError::Remote(e));
                    }
                },
                Err(CallError::Local(e)) => return Err(ClientError::Wire(e)),
                Err(CallError::NotSent(e)) => {
                    self.conn = None;
                    if in_session {
                        return Err(self.session_lost(&op, &e));
                    }
                    e
                }
                Err(CallError::Lost(e)) => {
                    self.conn = None;
                    if self.level == 1 && op == ClientOp::TCommit {
                        self.level = 0;
                        self.locks = 0;
                        return Err(unknown(&op, &e));
                    }
                    if in_session {
                        return Err(self.session_lost(&op, &e));
                    }
                    if op.is_write() {
                        return Err(unknown(&op, &e));
                    }
                    e
                }
            };
            if retried {
                return Err(ClientError::Wire(e));
            }
            tracing::debug!(op = %op, error = %e, "connection lost before the op took effect; retrying once");
            hint = None;
            retried = true;
        }
    }

    /// Drops the connection (the member rolls back an open transaction and
    /// releases this client's locks).
    pub fn close(mut self) {
        self.conn = None;
    }

    /// Follows `$TLEVEL` and the lock count from successful replies.
    pub(super) fn track(&mut self, op: &ClientOp, reply: &Reply) {
        match (op, reply) {
            (
                ClientOp::TStart | ClientOp::TCommit | ClientOp::TRollback { .. },
                Reply::Level(n),
            ) => {
                self.level = *n;
            }
            (ClientOp::Lock { .. }, Reply::Bool(true)) => self.locks += 1,
            (ClientOp::Unlock { .. }, Reply::Bool(true)) => {
                self.locks = self.locks.saturating_sub(1);
            }
            _ => {}
        }
    }

    /// Follows `$TLEVEL` from an error answer: the member has no
    /// transaction open after `NoTransaction`, nor after a failed
    /// `TCOMMIT` at level 1 (the member ends the connection and rolls the
    /// transaction back; see `mirror/serve.rs`). True in that last case:
    /// the connection is closing, and the locks it held are released.
    pub(super) fn track_refusal(&mut self, op: &ClientOp, e: &RemoteError) -> bool {
        let failed_commit = *op == ClientOp::TCommit && self.level == 1;
        if e.code == ErrorCode::NoTransaction || failed_commit {
            self.level = 0;
        }
        if failed_commit {
            self.locks = 0;
        }
        failed_commit
    }

    fn session_lost(&mut self, op: &ClientOp, e: &WireError) -> ClientError {
        let err = ClientError::TransactionLost {
            op: op.to_string(),
            level: self.level,
            locks: self.locks,
            reason: e.to_string(),
        };
        self.level = 0;
        self.locks = 0;
        err
    }
}

fn unknown(op: &ClientOp, e: &WireError) -> ClientError {
    ClientError::OutcomeUnknown {
        op: op.to_string(),
        reason: e.to_string(),
    }
}
