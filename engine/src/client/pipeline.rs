//! [`Client::pipeline`]: many requests in flight on one connection.
//!
//! The member runs a connection's requests in order and answers them in
//! order. A `TCOMMIT` that ends a transaction is answered once the commit
//! is acknowledged (durable, and on the backup while it is synchronous),
//! as always; but the member goes on with the requests already sent behind
//! it while the commit syncs, and holds their answers until the commit's
//! (`mirror/serve.rs`). A loader that sends its next transaction before
//! the last commit's answer has come overlaps the two, as
//! `Session::tcommit_pipelined` does in process.
//!
//! Nothing here is retried. When the connection breaks, the ops answered
//! so far are returned with the error, and the error says what the rest
//! may have done:
//!
//! | unanswered ops that were sent                          | error                  |
//! |--------------------------------------------------------|------------------------|
//! | one could have made a change durable: a write outside a transaction, or the `TCOMMIT` that ends one | `OutcomeUnknown` (naming the first) |
//! | none could, but a transaction or locks were open, or one was started | `TransactionLost` |
//! | none (or only reads)                                   | the connection error   |

use std::time::Duration;

use super::conn::CallError;
use super::session::Client;
use super::{discover, ClientError};
use crate::wire::{ClientOp, RemoteError, Reply, Request, WireError};

/// Requests sent and not yet answered, at most: the member's answers to
/// them fit in the sockets' buffers, so neither side blocks writing while
/// the other does.
pub const PIPELINE_WINDOW: usize = 256;

/// What a pipeline got done before its connection failed.
#[derive(Debug, thiserror::Error)]
#[error("{error} (after {} of the pipeline's ops were answered)", answered.len())]
pub struct PipelineError {
    /// The answers to the first `answered.len()` ops, in order.
    pub answered: Vec<Result<Reply, RemoteError>>,
    /// Why the rest got no answer, and what they may have done.
    pub error: ClientError,
}

impl Client {
    /// Sends `ops` without waiting for each answer (at most
    /// [`PIPELINE_WINDOW`] unanswered at a time) and returns each op's
    /// answer in order: its reply, or the error the member answered with
    /// (which does not stop the ops after it; a failed op inside a
    /// transaction is for the caller to roll back). A `TCOMMIT`'s `Ok`
    /// acknowledges its commit exactly as [`Client::tcommit`] does.
    pub fn pipeline(
        &mut self,
        ops: &[ClientOp],
    ) -> Result<Vec<Result<Reply, RemoteError>>, PipelineError> {
        let mut answered = Vec::with_capacity(ops.len());
        if self.conn.is_none() {
            match discover::find(&self.addrs, None, &self.opts) {
                Ok(c) => self.conn = Some(c),
                Err(error) => return Err(PipelineError { answered, error }),
            }
        }
        // Lock requests may wait for their timeout before they are answered.
        let extra = ops
            .iter()
            .map(|op| match op {
                ClientOp::Lock { timeout_ms, .. } => Duration::from_millis(*timeout_ms),
                _ => Duration::ZERO,
            })
            .max()
            .unwrap_or_default();
        let first_id = self.next_id;
        self.next_id += ops.len() as u64;
        let mut sent = 0usize;
        while answered.len() < ops.len() {
            let conn = self
                .conn
                .as_mut()
                .expect("connected above; dropped only on return");
            while sent < ops.len() && sent - answered.len() < PIPELINE_WINDOW {
                let req = Request {
                    id: first_id + sent as u64,
                    op: ops[sent].clone(),
                };
                match conn.send(&req, sent == answered.len()) {
                    Ok(()) => sent += 1,
                    Err(CallError::Local(e)) if sent == answered.len() => {
                        // Too large to send, and nothing is in flight:
                        // the connection is still good, nothing after it ran.
                        return Err(PipelineError {
                            answered,
                            error: ClientError::Wire(e),
                        });
                    }
                    Err(CallError::Local(e) | CallError::NotSent(e) | CallError::Lost(e)) => {
                        return Err(self.broken(ops, answered, sent, e));
                    }
                }
            }
            let id = first_id + answered.len() as u64;
            let conn = self
                .conn
                .as_mut()
                .expect("connected above; dropped only on return");
            match conn.receive(id, extra) {
                Ok(resp) => {
                    if let Ok(reply) = &resp.result {
                        self.track(&ops[answered.len()], reply);
                    }
                    answered.push(resp.result);
                }
                Err(CallError::Local(e) | CallError::NotSent(e) | CallError::Lost(e)) => {
                    return Err(self.broken(ops, answered, sent, e));
                }
            }
        }
        Ok(answered)
    }

    /// The connection failed with ops `answered.len()..sent` sent and not
    /// answered: drops it and says what those may have done (see the
    /// module's table).
    fn broken(
        &mut self,
        ops: &[ClientOp],
        answered: Vec<Result<Reply, RemoteError>>,
        sent: usize,
        e: WireError,
    ) -> PipelineError {
        self.conn = None;
        let (level, locks) = (self.level, self.locks);
        self.level = 0;
        self.locks = 0;
        let in_flight = &ops[answered.len()..sent];
        let error = match may_have_made_durable(level, in_flight) {
            Some(op) => ClientError::OutcomeUnknown {
                op: op.to_string(),
                reason: e.to_string(),
            },
            None if level > 0
                || locks > 0
                || in_flight.iter().any(|op| matches!(op, ClientOp::TStart)) =>
            {
                let op = in_flight.first().or(ops.get(answered.len()));
                ClientError::TransactionLost {
                    op: op.map_or_else(String::new, ToString::to_string),
                    level,
                    locks,
                    reason: e.to_string(),
                }
            }
            None => ClientError::Wire(e),
        };
        PipelineError { answered, error }
    }
}

/// The first of `ops` (run from transaction level `level`) that could have
/// made a change durable if the member ran it: a write outside a
/// transaction, or the `TCOMMIT` that ends one. Ops that failed would not
/// have, but their answers are what is missing, so each counts.
fn may_have_made_durable(mut level: u32, ops: &[ClientOp]) -> Option<&ClientOp> {
    for op in ops {
        match op {
            ClientOp::TStart => level += 1,
            ClientOp::TCommit if level == 1 => return Some(op),
            ClientOp::TCommit => level = level.saturating_sub(1),
            ClientOp::TRollback { innermost_only } => {
                level = if *innermost_only {
                    level.saturating_sub(1)
                } else {
                    0
                };
            }
            op if level == 0 && op.is_write() => return Some(op),
            _ => {}
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Key, Value};

    fn set() -> ClientOp {
        ClientOp::Set {
            db: "DB".into(),
            key: Key::new("K", vec![]).unwrap(),
            value: Value::Int(1),
        }
    }

    #[test]
    fn what_unanswered_ops_may_have_done() {
        use ClientOp::{TCommit, TStart};
        // Inside a transaction, a SET alone commits nothing.
        assert!(may_have_made_durable(1, &[set()]).is_none());
        // The TCOMMIT that ends it does.
        assert_eq!(may_have_made_durable(1, &[set(), TCommit]), Some(&TCommit));
        // An inner level's TCOMMIT does not.
        assert!(may_have_made_durable(0, &[TStart, TStart, set(), TCommit]).is_none());
        // A write outside any transaction does.
        assert!(may_have_made_durable(0, &[set()]).is_some());
        // After a full rollback, a write is outside again.
        let rolled_back = [
            TStart,
            ClientOp::TRollback {
                innermost_only: false,
            },
            set(),
        ];
        assert!(may_have_made_durable(0, &rolled_back).is_some());
        // Reads never do.
        let get = ClientOp::Get {
            db: "DB".into(),
            key: Key::new("K", vec![]).unwrap(),
        };
        assert!(may_have_made_durable(0, &[get]).is_none());
    }
}
