//! [`Conn`]: one handshaken TCP connection to a member, and one request /
//! response exchange on it, with a precise account of whether a failed
//! request can have reached the member.

use std::io::{self, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::Duration;

use super::ClientOptions;
use crate::wire::{
    peek_now, recv, send, FrameLimits, Hello, Message, PeerRole, Refuse, Request, Response,
    Welcome, WireError,
};

/// An open, handshaken connection.
pub struct Conn {
    stream: TcpStream,
    /// Reads go through a buffer: a frame's header and payload usually
    /// arrive in one read.
    reader: io::BufReader<TcpStream>,
    /// The read timeout set on the socket, so it is set only on change.
    read_timeout: Option<Duration>,
    pub addr: String,
    pub welcome: Welcome,
    limits: FrameLimits,
    io_timeout: Duration,
}

/// Why a connection attempt failed.
pub enum ConnectError {
    Refused(Refuse),
    Failed(String),
}

/// How a request failed.
pub enum CallError {
    /// Not sent (the connection was already closed, or the write failed):
    /// the member cannot have received the whole request frame.
    NotSent(WireError),
    /// Sent, but no valid answer came: the member may have executed it.
    Lost(WireError),
    /// Refused before sending (too large); the connection is still good.
    Local(WireError),
}

impl Conn {
    /// Connects to `addr` and handshakes.
    pub fn open(addr: &str, opts: &ClientOptions) -> Result<Conn, ConnectError> {
        let failed =
            |what: &str, e: &dyn std::fmt::Display| ConnectError::Failed(format!("{what}: {e}"));
        let sockets: Vec<SocketAddr> = addr
            .to_socket_addrs()
            .map_err(|e| failed("cannot resolve the address", &e))?
            .collect();
        let mut last: Option<io::Error> = None;
        let mut stream = None;
        for a in &sockets {
            match TcpStream::connect_timeout(a, opts.connect_timeout) {
                Ok(s) => {
                    stream = Some(s);
                    break;
                }
                Err(e) => last = Some(e),
            }
        }
        let Some(mut stream) = stream else {
            return Err(match last {
                Some(e) => failed("cannot connect", &e),
                None => ConnectError::Failed("the address resolves to nothing".into()),
            });
        };
        let setup = |s: &TcpStream| {
            s.set_nodelay(true)?;
            s.set_read_timeout(Some(opts.connect_timeout))?;
            s.set_write_timeout(Some(opts.io_timeout))
        };
        setup(&stream).map_err(|e| failed("cannot set up the connection", &e))?;
        let hello = Hello::new(
            opts.mirror.clone().unwrap_or_default(),
            opts.name.clone(),
            PeerRole::Client,
        );
        send(&mut stream, &Message::Hello(hello)).map_err(|e| failed("handshake", &e))?;
        match recv(&mut stream, opts.limits) {
            Ok(Message::Welcome(welcome)) => Ok(Conn {
                reader: io::BufReader::new(
                    stream
                        .try_clone()
                        .map_err(|e| failed("cannot set up the connection", &e))?,
                ),
                stream,
                read_timeout: Some(opts.connect_timeout),
                addr: addr.to_string(),
                welcome,
                limits: opts.limits,
                io_timeout: opts.io_timeout,
            }),
            Ok(Message::Refuse(r)) => Err(ConnectError::Refused(r)),
            Ok(other) => Err(ConnectError::Failed(format!(
                "handshake: the member answered with {}",
                other.name()
            ))),
            Err(e) => Err(failed("handshake", &e)),
        }
    }

    /// Sends `req` and waits up to the I/O timeout plus `extra` for its
    /// response. After an error other than `Local` the connection is
    /// unusable.
    pub fn call(&mut self, req: &Request, extra: Duration) -> Result<Response, CallError> {
        self.send(req, true)?;
        self.receive(req.id, extra)
    }

    /// Sends `req` without waiting for its response. `idle`: no response
    /// is outstanding, so any byte from the member means it closed the
    /// connection or misbehaves (checked before sending).
    pub fn send(&mut self, req: &Request, idle: bool) -> Result<(), CallError> {
        let frame = self.encode(req)?;
        self.send_frame(&frame, idle)
    }

    /// `req` as the frame [`Conn::send_frame`] sends; `Local` if it is
    /// larger than the limit.
    pub fn encode(&self, req: &Request) -> Result<Vec<u8>, CallError> {
        let frame = Message::Request(req.clone())
            .to_frame()
            .map_err(CallError::Local)?;
        let len = frame.len() - crate::wire::HEADER_LEN;
        if len > self.limits.max_payload as usize {
            return Err(CallError::Local(WireError::Oversize {
                len: len as u64,
                limit: u64::from(self.limits.max_payload),
            }));
        }
        Ok(frame)
    }

    /// [`Conn::send`] of a frame from [`Conn::encode`].
    pub fn send_frame(&mut self, frame: &[u8], idle: bool) -> Result<(), CallError> {
        if idle {
            if let Some(why) = self.closed_by_peer() {
                return Err(CallError::NotSent(WireError::Io(why)));
            }
        }
        // One write of the whole frame: if it fails, the member has at most
        // a partial frame, which it can only reject.
        self.stream
            .write_all(frame)
            .and_then(|()| self.stream.flush())
            .map_err(|e| CallError::NotSent(WireError::Io(e)))
    }

    /// Waits up to the I/O timeout plus `extra` for the response to
    /// request `id`, the next one the member owes.
    pub fn receive(&mut self, id: u64, extra: Duration) -> Result<Response, CallError> {
        let timeout = self.io_timeout.saturating_add(extra);
        if self.read_timeout != Some(timeout) {
            if let Err(e) = self.stream.set_read_timeout(Some(timeout)) {
                return Err(CallError::Lost(WireError::Io(e)));
            }
            self.read_timeout = Some(timeout);
        }
        match recv(&mut self.reader, self.limits) {
            Ok(Message::Response(r)) if r.id == id => Ok(r),
            Ok(Message::Response(r)) => Err(CallError::Lost(WireError::malformed(
                crate::wire::kind::RESPONSE,
                format!("response to request {} while waiting for {id}", r.id),
            ))),
            Ok(other) => Err(CallError::Lost(WireError::malformed(
                other.kind(),
                format!("a {} message while waiting for a response", other.name()),
            ))),
            Err(WireError::Io(e))
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                Err(CallError::Lost(WireError::Io(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("no answer within {} ms", timeout.as_millis()),
                ))))
            }
            Err(e) => Err(CallError::Lost(e)),
        }
    }

    /// `Some(why)` if the member has closed (or reset) the connection, or
    /// sent something unasked, so that nothing more can be sent on it.
    /// Checked without blocking before each request.
    fn closed_by_peer(&self) -> Option<io::Error> {
        if !self.reader.buffer().is_empty() {
            return Some(io::Error::new(
                io::ErrorKind::InvalidData,
                "the member sent data nobody asked for",
            ));
        }
        match peek_now(&self.stream) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => None,
            Err(e) => Some(e),
            Ok(0) => Some(io::Error::new(
                io::ErrorKind::ConnectionAborted,
                "the member closed the connection",
            )),
            Ok(_) => Some(io::Error::new(
                io::ErrorKind::InvalidData,
                "the member sent data nobody asked for",
            )),
        }
    }
}
