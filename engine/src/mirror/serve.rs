//! Accepting connections: the handshake, then a client session, a
//! follower's journal stream, the peer link, or a status request.

use std::net::{TcpListener, TcpStream};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use super::member::Shared;
use super::{link_peer, seed, sender};
use crate::db::{PendingCommit, Session};
use crate::error::EngineError;
use crate::wire::{
    self, ClientOp, ErrorCode, FrameLimits, Hello, Message, PeerRole, Refuse, RefuseCode,
    RemoteError, Reply, Response, StatusReply, Welcome, PROTOCOL_VERSION,
};
use crate::Direction;

pub(crate) fn accept_loop(shared: Arc<Shared>, listener: TcpListener) {
    for conn in listener.incoming() {
        if shared.stopping() {
            return;
        }
        let Ok(s) = conn else { continue };
        let shared = shared.clone();
        let span = tracing::Span::current();
        let _ = std::thread::Builder::new()
            .name("redoubt-conn".into())
            .spawn(move || {
                let _g = span.enter();
                if let Err(e) = connection(shared, s) {
                    tracing::debug!(error = %e, "connection ended");
                }
            });
    }
}

fn refuse(s: &mut TcpStream, code: RefuseCode, reason: String) -> Result<(), String> {
    let _ = wire::send(
        s,
        &Message::Refuse(Refuse {
            code,
            reason: reason.clone(),
        }),
    );
    Err(reason)
}

fn connection(shared: Arc<Shared>, mut s: TcpStream) -> Result<(), String> {
    s.set_nodelay(true).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| e.to_string())?;
    let hello: Hello =
        match wire::recv(&mut s, FrameLimits::default()).map_err(|e| e.to_string())? {
            Message::Hello(h) => h,
            other => {
                return refuse(
                    &mut s,
                    RefuseCode::Other,
                    format!("expected Hello, got {}", other.name()),
                )
            }
        };
    if hello.protocol != PROTOCOL_VERSION {
        return refuse(
            &mut s,
            RefuseCode::VersionMismatch,
            format!(
                "protocol version {} is not supported; this member speaks {PROTOCOL_VERSION}",
                hello.protocol
            ),
        );
    }
    // Clients and operator tools may connect without naming the mirror.
    let any_mirror = hello.role != PeerRole::Member && hello.mirror.is_empty();
    if hello.mirror != shared.cfg.mirror && !any_mirror {
        return refuse(
            &mut s,
            RefuseCode::WrongMirror,
            format!(
                "this is mirror {:?}, not {:?}",
                shared.cfg.mirror, hello.mirror
            ),
        );
    }
    if hello.role == PeerRole::Member && shared.cfg.member(&hello.from).is_none() {
        return refuse(
            &mut s,
            RefuseCode::UnknownMember,
            format!(
                "{:?} is not a member of mirror {:?}",
                hello.from, shared.cfg.mirror
            ),
        );
    }
    let (role, epoch) = {
        let v = shared.view.lock();
        (v.role, v.epoch)
    };
    wire::send(
        &mut s,
        &Message::Welcome(Welcome {
            mirror: shared.cfg.mirror.clone(),
            member: shared.cfg.name.clone(),
            role,
            epoch,
            primary: shared.primary_addr(),
        }),
    )
    .map_err(|e| e.to_string())?;
    match hello.role {
        PeerRole::Client | PeerRole::Admin => {
            s.set_read_timeout(None).map_err(|e| e.to_string())?;
            serve_client(&shared, s)
        }
        PeerRole::Member => {
            s.set_read_timeout(Some(shared.qos()))
                .map_err(|e| e.to_string())?;
            match wire::recv(&mut s, FrameLimits::MEMBER).map_err(|e| e.to_string())? {
                Message::StreamFrom(f) => sender::serve_follower(shared, s, hello.from, f),
                Message::PeerState(p) => {
                    link_peer::accepted(shared, s, p);
                    Ok(())
                }
                Message::Status => status_reply(&shared, &mut s),
                Message::SeedRequest => seed::serve(shared, s, hello.from),
                other => Err(format!(
                    "unexpected {} from member {}",
                    other.name(),
                    hello.from
                )),
            }
        }
    }
}

fn status_reply(shared: &Shared, s: &mut TcpStream) -> Result<(), String> {
    let json = serde_json::to_string(&shared.status()).map_err(|e| e.to_string())?;
    wire::send(s, &Message::StatusReply(StatusReply { json })).map_err(|e| e.to_string())
}

/// Serves one client's requests in order. A `TCOMMIT` that ends a
/// transaction is *pipelined*: its commit record is journaled and its sync
/// started, and the requests the client has already sent behind it run
/// while the sync does. No reply is sent before the replies of earlier
/// requests, so every reply behind a commit waits for that commit's
/// acknowledgement (see [`Outbox`]): a client that sends one request at a
/// time sees exactly the synchronous `TCOMMIT`, and one that pipelines
/// overlaps its next transaction with the commit's sync.
fn serve_client(shared: &Shared, mut s: TcpStream) -> Result<(), String> {
    let mut session = shared.engine.session();
    // Buffered reads: a request's header and payload in one read, and
    // several pipelined requests per read.
    let mut r =
        std::io::BufReader::with_capacity(64 << 10, s.try_clone().map_err(|e| e.to_string())?);
    // Declared after the session, so dropped before it: whatever way the
    // connection ends, its pending commits complete before the session
    // releases its locks (see `Outbox`'s drop).
    let mut outbox = Outbox::default();
    loop {
        if outbox.holds_any() && nothing_sent_yet(&r, &s) {
            outbox.flush(shared, &mut s)?;
        } else if outbox.too_full() {
            outbox.relieve(shared, &mut s)?;
        }
        let msg = match wire::recv(&mut r, FrameLimits::CLIENT) {
            Ok(m) => m,
            // The client has sent its last request (it may have shut down
            // only its sending side and be waiting for the answers): they
            // go out once the pending commits complete, if it still reads.
            Err(wire::WireError::Closed) => return outbox.flush(shared, &mut s).or(Ok(())),
            Err(e) => return Err(e.to_string()),
        };
        match msg {
            Message::Request(r) => {
                let ends_txn = r.op == ClientOp::TCommit && session.tlevel() == 1;
                if ends_txn {
                    match session.tcommit_pipelined() {
                        Ok(commit) => outbox.push(r.id, Held::Commit(commit)),
                        Err(e) if session.tlevel() == 0 => {
                            outbox.push(r.id, Held::Ready(Err(remote_error(shared, e)), false));
                        }
                        Err(e) => {
                            // Requests pipelined behind this commit would
                            // run inside the transaction it failed to end.
                            let why = format!(
                                "TCOMMIT failed with its transaction still open ({e}); \
                                 closing the connection and rolling the transaction back"
                            );
                            let mut error = remote_error(shared, e);
                            error.message.push_str(
                                "; the transaction is rolled back and the connection closed \
                                 (its locks are released once it is)",
                            );
                            outbox.push(r.id, Held::Ready(Err(error), false));
                            outbox.flush(shared, &mut s)?;
                            close_after_answers(&mut s);
                            // Dropping the session rolls the transaction back
                            // (once commits resume, if they are paused).
                            return Err(why);
                        }
                    }
                    continue;
                }
                if matches!(r.op, ClientOp::Lock { .. } | ClientOp::Unlock { .. }) {
                    // A LOCK may wait for its timeout, and an UNLOCK lets
                    // another client read what this one wrote under the
                    // lock: both wait until the earlier commits are
                    // acknowledged, and their replies go first.
                    outbox.flush(shared, &mut s)?;
                }
                let write = r.op.is_write();
                let result = execute(&mut session, r.op).map_err(|e| remote_error(shared, e));
                outbox.push(r.id, Held::Ready(result, write));
                if !outbox.holds_commit() {
                    outbox.flush(shared, &mut s)?;
                }
            }
            Message::Status => {
                outbox.flush(shared, &mut s)?;
                status_reply(shared, &mut s)?
            }
            other => return Err(format!("unexpected {} from a client", other.name())),
        }
    }
}

/// Replies not sent yet, in request order. A pipelined commit's reply is
/// its acknowledgement: it is sent once [`PendingCommit::wait`] returns,
/// and every later reply after it. The journal is one sequence, so
/// waiting for the commits in order waits for each exactly once.
#[derive(Default)]
struct Outbox {
    held: std::collections::VecDeque<(u64, Held)>,
    commits: usize,
}

impl Drop for Outbox {
    /// The connection ended with commits pending (the client went away,
    /// or an answer could not be written): wait for them, so that the
    /// session's locks, released when it is dropped next, are never free
    /// before the commits made under them are acknowledged or failed.
    fn drop(&mut self) {
        for (_, held) in self.held.drain(..) {
            if let Held::Commit(commit) = held {
                if let Err(e) = commit.wait() {
                    tracing::debug!(error = %e, "a commit of a closed connection failed");
                }
            }
        }
    }
}

enum Held {
    /// A result to send; whether the op was a write (counted when sent).
    Ready(Result<Reply, RemoteError>, bool),
    /// A pipelined `TCOMMIT`, answered when acknowledged.
    Commit(PendingCommit),
}

/// Replies held at most, and commits pending at most, before the server
/// sends what it can (waiting for all but the newest commit): a client
/// that pipelines without reading its replies is slowed down, not
/// buffered without bound.
const MAX_HELD: usize = 4096;
const MAX_COMMITS: usize = 64;

impl Outbox {
    fn push(&mut self, id: u64, held: Held) {
        if matches!(held, Held::Commit(_)) {
            self.commits += 1;
        }
        self.held.push_back((id, held));
    }

    fn holds_any(&self) -> bool {
        !self.held.is_empty()
    }

    fn holds_commit(&self) -> bool {
        self.commits > 0
    }

    fn too_full(&self) -> bool {
        self.held.len() >= MAX_HELD || self.commits >= MAX_COMMITS
    }

    /// Sends replies until the outbox is no longer too full: while only
    /// commits are too many, the newest keeps syncing as the client goes
    /// on; when replies are too many, all of them go.
    fn relieve(&mut self, shared: &Shared, s: &mut TcpStream) -> Result<(), String> {
        let keep = usize::from(self.held.len() < MAX_HELD);
        self.send(shared, s, keep)
    }

    /// Sends every held reply, waiting for each pending commit first.
    fn flush(&mut self, shared: &Shared, s: &mut TcpStream) -> Result<(), String> {
        self.send(shared, s, 0)
    }

    /// Sends held replies from the front, waiting for pending commits,
    /// until at most `keep` commits are held and the next reply waits for
    /// one of them.
    fn send(&mut self, shared: &Shared, s: &mut TcpStream, keep: usize) -> Result<(), String> {
        loop {
            let next_waits = matches!(self.held.front(), Some((_, Held::Commit(_))));
            if next_waits && self.commits <= keep {
                return Ok(());
            }
            let Some((id, held)) = self.held.pop_front() else {
                return Ok(());
            };
            let (result, write) = match held {
                Held::Ready(result, write) => (result, write),
                Held::Commit(commit) => {
                    self.commits -= 1;
                    let done = commit.wait().map_err(|e| remote_error(shared, e));
                    // The session's level after an outermost commit.
                    (done.map(|()| Reply::Level(0)), true)
                }
            };
            if write && result.is_ok() {
                shared.commits.fetch_add(1, Ordering::Relaxed);
            }
            wire::send(s, &Message::Response(Response { id, result }))
                .map_err(|e| e.to_string())?;
        }
    }
}

/// Ends a connection whose client may still be sending: shuts down the
/// sending side, then reads and drops what comes in (for a second at
/// most). Closing a socket with unread bytes resets the connection, and a
/// reset can throw away answers the client has not read yet.
fn close_after_answers(s: &mut TcpStream) {
    use std::io::Read;
    let _ = s.shutdown(std::net::Shutdown::Write);
    let deadline = std::time::Instant::now() + Duration::from_secs(1);
    let mut sink = [0u8; 8192];
    while let Some(left) = deadline.checked_duration_since(std::time::Instant::now()) {
        if left.is_zero() || s.set_read_timeout(Some(left)).is_err() {
            break;
        }
        match s.read(&mut sink) {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
    }
}

/// Whether the client has nothing more on its way right now (no request
/// buffered or waiting in the socket): then held replies go out, since it
/// may be waiting for them.
fn nothing_sent_yet(r: &std::io::BufReader<TcpStream>, s: &TcpStream) -> bool {
    r.buffer().is_empty()
        && matches!(wire::peek_now(s), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
}

fn execute(session: &mut Session, op: ClientOp) -> Result<Reply, EngineError> {
    let dir = |backward: bool| {
        if backward {
            Direction::Backward
        } else {
            Direction::Forward
        }
    };
    Ok(match op {
        ClientOp::Get { db, key } => Reply::Value(session.get(&db, &key)?),
        ClientOp::Set { db, key, value } => {
            session.set(&db, &key, &value)?;
            Reply::Done
        }
        ClientOp::Kill { db, key } => Reply::Int(session.kill(&db, &key)? as i64),
        ClientOp::ZKill { db, key } => Reply::Bool(session.zkill(&db, &key)?),
        ClientOp::Data { db, key } => Reply::Data(session.data(&db, &key)?),
        ClientOp::Order { db, key, backward } => {
            Reply::Subscript(session.order(&db, &key, dir(backward))?)
        }
        ClientOp::Query { db, key, backward } => {
            Reply::Key(session.query(&db, &key, dir(backward))?)
        }
        ClientOp::Increment { db, key, by } => Reply::Int(session.increment(&db, &key, by)?),
        ClientOp::TStart => Reply::Level(session.tstart()? as u32),
        ClientOp::TCommit => {
            session.tcommit()?;
            Reply::Level(session.tlevel() as u32)
        }
        ClientOp::TRollback { innermost_only } => {
            session.trollback(innermost_only)?;
            Reply::Level(session.tlevel() as u32)
        }
        ClientOp::Lock {
            db,
            key,
            timeout_ms,
        } => Reply::Bool(session.lock(&db, &key, Duration::from_millis(timeout_ms))?),
        ClientOp::Unlock { db, key } => Reply::Bool(session.unlock(&db, &key)),
        ClientOp::Scan { db, key, limit } => {
            let mut rows = Vec::new();
            session.scan(&db, &key, |k, v| {
                rows.push((k, v));
                rows.len() < limit as usize
            })?;
            Reply::Rows(rows)
        }
    })
}

fn remote_error(shared: &Shared, e: EngineError) -> RemoteError {
    let code = match &e {
        EngineError::ReadOnly { .. } => ErrorCode::ReadOnly,
        EngineError::NotPrimary(_) => ErrorCode::NotPrimary,
        EngineError::CommitOutcomeUnknown(_) => ErrorCode::OutcomeUnknown,
        EngineError::Paused(_) => ErrorCode::Trouble,
        EngineError::NoSuchDatabase(_) => ErrorCode::NoSuchDatabase,
        EngineError::KeyTooLong { .. } => ErrorCode::KeyTooLong,
        EngineError::ValueTooLarge { .. } => ErrorCode::ValueTooLarge,
        EngineError::NoTransaction => ErrorCode::NoTransaction,
        EngineError::Poisoned(_) => ErrorCode::Poisoned,
        EngineError::Model(_) | EngineError::BadArgument(_) | EngineError::NotAnInteger { .. } => {
            ErrorCode::BadArgument
        }
        _ => ErrorCode::Internal,
    };
    let primary = match code {
        ErrorCode::ReadOnly | ErrorCode::NotPrimary => shared.primary_addr(),
        _ => None,
    };
    let message = match code {
        // The primary's address travels in its own field.
        ErrorCode::ReadOnly => format!("{} is read-only; write to the primary", shared.cfg.name),
        _ => e.to_string(),
    };
    RemoteError {
        code,
        message,
        primary,
    }
}

#[cfg(test)]
mod tests;
