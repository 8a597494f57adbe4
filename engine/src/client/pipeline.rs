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
use super::{discover, ClientError, Target};
use crate::wire::{ClientOp, ErrorCode, RemoteError, Reply, Request, WireError};

/// Requests sent and not yet answered, at most, and their encoded bytes
/// at most (a request larger than that goes alone, when nothing else is
/// in flight). The bytes bound is what keeps the two sides from blocking
/// each other: the member writes answers while it does not read, and this
/// client sends while it does not read; with no more than
/// [`PIPELINE_BYTES`] unread requests, which the member's socket buffer
/// holds, this client's sends return and it goes on to read the answers,
/// however large they are.
pub const PIPELINE_WINDOW: usize = 256;
pub const PIPELINE_BYTES: usize = 32 << 10;

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
    /// transaction is for the caller to roll back). A `TCOMMIT`'s
    /// `Ok(Level(0))` acknowledges its commit exactly as
    /// [`Client::tcommit`] does. A failed outermost `TCOMMIT` is the
    /// exception: the member ends the connection after answering it (the
    /// transaction is rolled back; see `mirror/serve.rs`), so the ops
    /// behind it never run inside that transaction, and the error says
    /// what they may have done.
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
        // The sizes of the requests in flight, oldest first.
        let mut sizes = std::collections::VecDeque::new();
        let mut in_flight_bytes = 0usize;
        // The next request, encoded, if it waits for room.
        let mut next: Option<Vec<u8>> = None;
        let mut refused_here = false;
        let mut closing = false;
        while answered.len() < ops.len() {
            let conn = self
                .conn
                .as_mut()
                .expect("connected above; dropped only on return");
            while sent < ops.len()
                && (sent == answered.len() || sent - answered.len() < PIPELINE_WINDOW)
            {
                let idle = sent == answered.len();
                let frame = match next.take() {
                    Some(frame) => Ok(frame),
                    None => conn.encode(&Request {
                        id: first_id + sent as u64,
                        op: ops[sent].clone(),
                    }),
                };
                let sending = frame.and_then(|frame| {
                    if !idle && in_flight_bytes + frame.len() > PIPELINE_BYTES {
                        // Sent once the answers in flight have come.
                        next = Some(frame);
                        return Ok(None);
                    }
                    conn.send_frame(&frame, idle).map(|()| Some(frame.len()))
                });
                match sending {
                    Ok(Some(len)) => {
                        sent += 1;
                        sizes.push_back(len);
                        in_flight_bytes += len;
                    }
                    Ok(None) => break,
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
                    let op = &ops[answered.len()];
                    match &resp.result {
                        Ok(reply) => self.track(op, reply),
                        Err(e) => {
                            // The member closes the connection after a
                            // failed outermost TCOMMIT.
                            closing |= self.track_refusal(op, e);
                            refused_here |=
                                matches!(e.code, ErrorCode::ReadOnly | ErrorCode::NotPrimary);
                        }
                    }
                    in_flight_bytes -= sizes.pop_front().unwrap_or(0);
                    answered.push(resp.result);
                }
                Err(CallError::Local(e) | CallError::NotSent(e) | CallError::Lost(e)) => {
                    return Err(self.broken(ops, answered, sent, e));
                }
            }
        }
        // Not (or no longer) the primary: the next call looks for the one
        // that is.
        let elsewhere = refused_here
            && self.opts.target == Target::Primary
            && self.level == 0
            && self.locks == 0;
        if closing || elsewhere {
            // The member's session goes with the connection.
            self.conn = None;
            self.level = 0;
            self.locks = 0;
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
