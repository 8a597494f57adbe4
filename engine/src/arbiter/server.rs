//! The arbiter service: [`serve`] accepts connections on a listener and
//! runs one thread per connection; [`ArbiterHandle`] stops it.
//!
//! A connection opens with `Hello { role: Member, mirror, from }` and is
//! answered `Welcome { role: Arbiter, epoch: the mirror's epoch or 0 }` or
//! `Refuse`. Then the member sends requests and the arbiter answers each
//! in turn: `Ping` → `Pong`, `Register` and `Cas` → `CasReply`. Requests
//! must name the mirror and member of the Hello. The arbiter closes a
//! connection that sends anything else, that stays silent past its QoS
//! (after its first ping) or past `idle_timeout` (before it), and every
//! connection at shutdown.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use super::registers::Registers;
use super::state::{validate_member_name, validate_mirror_name, WitnessStore};
use super::ArbiterError;
use crate::wire::{
    recv, send, FrameLimits, Hello, MemberRole, Message, PeerRole, Refuse, RefuseCode, Welcome,
    WireError, PROTOCOL_VERSION,
};

/// How the arbiter runs.
#[derive(Debug, Clone)]
pub struct ArbiterOptions {
    /// The name in its Welcome.
    pub name: String,
    /// Frame size limit for incoming messages (they are all small).
    pub limits: FrameLimits,
    /// A connection must send its Hello within this.
    pub handshake_timeout: Duration,
    /// A connection that has not pinged yet is closed after this much
    /// silence.
    pub idle_timeout: Duration,
}

impl Default for ArbiterOptions {
    fn default() -> Self {
        ArbiterOptions {
            name: "arbiter".into(),
            limits: FrameLimits {
                max_payload: 1 << 20,
            },
            handshake_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
        }
    }
}

/// An open connection: a clone of its stream (to shut it down) and the
/// thread serving it (set once spawned).
type ConnEntry = (TcpStream, Option<JoinHandle<()>>);

struct Shared {
    registers: Registers,
    opts: ArbiterOptions,
    stopping: AtomicBool,
    next_conn: AtomicU64,
    conns: Mutex<HashMap<u64, ConnEntry>>,
}

/// A running arbiter. Dropping it shuts it down too.
pub struct ArbiterHandle {
    addr: SocketAddr,
    shared: Arc<Shared>,
    accept: Option<JoinHandle<()>>,
}

/// Loads the witness files in `data_dir` and serves `listener` on threads.
/// Fails if a witness file is corrupt.
pub fn serve(
    listener: TcpListener,
    data_dir: &Path,
    opts: ArbiterOptions,
) -> Result<ArbiterHandle, ArbiterError> {
    let store = WitnessStore::open(data_dir)?;
    for (mirror, w) in store.mirrors() {
        tracing::info!(mirror, state = %w, "loaded witness");
    }
    let addr = listener
        .local_addr()
        .map_err(|e| ArbiterError::io("read the listener's address", e))?;
    let shared = Arc::new(Shared {
        registers: Registers::new(store),
        opts,
        stopping: AtomicBool::new(false),
        next_conn: AtomicU64::new(1),
        conns: Mutex::new(HashMap::new()),
    });
    let s = shared.clone();
    let accept = thread::Builder::new()
        .name("arbiter-accept".into())
        .spawn(move || accept_loop(listener, s))
        .map_err(|e| ArbiterError::io("start the arbiter's accept thread", e))?;
    tracing::info!(%addr, dir = %data_dir.display(), "arbiter listening");
    Ok(ArbiterHandle {
        addr,
        shared,
        accept: Some(accept),
    })
}

impl ArbiterHandle {
    /// The address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The stored state of `mirror`.
    pub fn state(&self, mirror: &str) -> Option<crate::wire::Witness> {
        self.shared.registers.state(mirror)
    }

    /// Whether `member` of `mirror` is present now (see
    /// [`presence`](super::presence)).
    pub fn is_present(&self, mirror: &str, member: &str) -> bool {
        self.shared.registers.is_present(mirror, member)
    }

    /// Stops accepting, closes every connection and joins every thread.
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        let Some(accept) = self.accept.take() else {
            return;
        };
        self.shared.stopping.store(true, Ordering::SeqCst);
        // Wake the accept loop with a connection of our own.
        let wake = match self.addr.ip() {
            IpAddr::V4(ip) if ip.is_unspecified() => {
                SocketAddr::new(Ipv4Addr::LOCALHOST.into(), self.addr.port())
            }
            IpAddr::V6(ip) if ip.is_unspecified() => {
                SocketAddr::new(Ipv6Addr::LOCALHOST.into(), self.addr.port())
            }
            _ => self.addr,
        };
        let _ = TcpStream::connect_timeout(&wake, Duration::from_secs(1));
        let _ = accept.join();
        let conns: Vec<_> = self.shared.conns.lock().drain().collect();
        for (_, (stream, handle)) in conns {
            let _ = stream.shutdown(Shutdown::Both);
            if let Some(h) = handle {
                let _ = h.join();
            }
        }
        tracing::info!(addr = %self.addr, "arbiter stopped");
    }
}

impl Drop for ArbiterHandle {
    fn drop(&mut self) {
        self.stop();
    }
}

fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    for stream in listener.incoming() {
        if shared.stopping.load(Ordering::SeqCst) {
            break;
        }
        let stream = match stream {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                thread::sleep(Duration::from_millis(50));
                continue;
            }
        };
        let id = shared.next_conn.fetch_add(1, Ordering::Relaxed);
        let Ok(clone) = stream.try_clone() else {
            continue;
        };
        // Register before spawning so the thread's own removal comes after.
        let mut conns = shared.conns.lock();
        conns.insert(id, (clone, None));
        let s = shared.clone();
        let spawned = thread::Builder::new()
            .name(format!("arbiter-conn-{id}"))
            .spawn(move || {
                serve_conn(&s, id, stream);
                s.conns.lock().remove(&id);
            });
        match spawned {
            Ok(h) => {
                if let Some(entry) = conns.get_mut(&id) {
                    entry.1 = Some(h);
                }
            }
            Err(e) => {
                conns.remove(&id);
                tracing::warn!(error = %e, "could not start a connection thread");
            }
        }
    }
}

fn serve_conn(shared: &Shared, id: u64, mut stream: TcpStream) {
    let peer = stream
        .peer_addr()
        .map_or_else(|_| "?".to_string(), |a| a.to_string());
    let _ = stream.set_nodelay(true);
    let _ = stream.set_read_timeout(Some(shared.opts.handshake_timeout));
    let _ = stream.set_write_timeout(Some(shared.opts.handshake_timeout));
    let hello = match recv(&mut stream, shared.opts.limits) {
        Ok(Message::Hello(h)) => h,
        Ok(other) => {
            tracing::debug!(%peer, got = other.name(), "connection did not start with Hello");
            return;
        }
        Err(e) => {
            if !shared.stopping.load(Ordering::SeqCst) {
                tracing::debug!(%peer, error = %e, "handshake failed");
            }
            return;
        }
    };
    if let Err(refusal) = check_hello(&hello) {
        tracing::info!(%peer, mirror = %hello.mirror, member = %hello.from, reason = %refusal.reason, "refused");
        let _ = send(&mut stream, &Message::Refuse(refusal));
        return;
    }
    let span = tracing::info_span!("arbiter", mirror = %hello.mirror, member = %hello.from);
    let _enter = span.enter();
    let welcome = Welcome {
        mirror: hello.mirror.clone(),
        member: shared.opts.name.clone(),
        role: MemberRole::Arbiter,
        epoch: shared.registers.state(&hello.mirror).map_or(0, |w| w.epoch),
        primary: None,
    };
    if send(&mut stream, &Message::Welcome(welcome)).is_err() {
        return;
    }
    shared.registers.open(&hello.mirror, &hello.from, id);
    tracing::debug!(%peer, "member connected");
    let why = requests(shared, id, &hello, &mut stream);
    shared.registers.close(&hello.mirror, &hello.from, id);
    match why {
        Err(e) if !shared.stopping.load(Ordering::SeqCst) => {
            tracing::info!(%peer, reason = %e, "member connection closed");
        }
        _ => tracing::debug!(%peer, "member connection closed"),
    }
}

fn check_hello(h: &Hello) -> Result<(), Refuse> {
    let refuse = |code, reason| Err(Refuse { code, reason });
    if h.protocol != PROTOCOL_VERSION {
        return refuse(
            RefuseCode::VersionMismatch,
            format!(
                "protocol version {} is not supported; this arbiter speaks version {PROTOCOL_VERSION}",
                h.protocol
            ),
        );
    }
    if h.role != PeerRole::Member {
        return refuse(
            RefuseCode::Other,
            format!(
                "the arbiter serves mirror members only, not a {} connection",
                h.role
            ),
        );
    }
    if let Err(e) = validate_mirror_name(&h.mirror) {
        return refuse(RefuseCode::WrongMirror, e);
    }
    if let Err(e) = validate_member_name(&h.from) {
        return refuse(RefuseCode::UnknownMember, e);
    }
    Ok(())
}

/// Answers requests until the connection ends; the error says why.
fn requests(
    shared: &Shared,
    id: u64,
    hello: &Hello,
    stream: &mut TcpStream,
) -> Result<(), ArbiterError> {
    let check = |what: &str, mirror: &str, member: &str| {
        if mirror == hello.mirror && member == hello.from {
            Ok(())
        } else {
            Err(ArbiterError::Protocol(format!(
                "{what} names mirror {mirror} member {member}, but the connection is for mirror {} member {}",
                hello.mirror, hello.from
            )))
        }
    };
    let mut timeout = shared.opts.idle_timeout;
    loop {
        stream
            .set_read_timeout(Some(timeout))
            .map_err(|e| ArbiterError::io("set the read timeout", e))?;
        let msg = match recv(stream, shared.opts.limits) {
            Ok(m) => m,
            Err(WireError::Closed) => return Ok(()),
            Err(WireError::Io(e))
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                return Err(ArbiterError::Protocol(format!(
                    "silent for {} ms",
                    timeout.as_millis()
                )));
            }
            Err(e) => return Err(e.into()),
        };
        let reply = match msg {
            Message::Ping(p) => {
                check("Ping", &p.mirror, &p.member)?;
                let (pong, qos) = shared.registers.ping(id, &p, Instant::now());
                timeout = qos;
                Message::Pong(pong)
            }
            Message::Cas(c) => {
                check("Cas", &c.mirror, &c.member)?;
                shared
                    .registers
                    .touch(&c.mirror, &c.member, id, Instant::now());
                let r = shared.registers.cas(&c, Instant::now());
                if !r.ok {
                    tracing::info!(reason = %r.reason, "compare-and-set refused");
                }
                Message::CasReply(r)
            }
            Message::Register(r) => {
                check("Register", &r.mirror, &r.member)?;
                shared
                    .registers
                    .touch(&r.mirror, &r.member, id, Instant::now());
                let r = shared.registers.register(&r);
                if !r.ok {
                    tracing::info!(reason = %r.reason, "registration refused");
                }
                Message::CasReply(r)
            }
            other => {
                return Err(ArbiterError::Protocol(format!(
                    "unexpected {} message",
                    other.name()
                )))
            }
        };
        send(stream, &reply)?;
    }
}
