//! [`ArbiterLink`]: a member's connection to the arbiter.
//!
//! Blocking request/answer on one TCP connection. The member runtime keeps
//! one link open for as long as it runs and calls [`ArbiterLink::ping`]
//! every ~QoS/4 (the connection itself is part of the liveness signal:
//! closing it makes the member absent at once); CAS and registration go on
//! the same link. Any error leaves the link unusable: drop it and connect
//! again.

use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::Duration;

use super::ArbiterError;
use crate::wire::{
    recv, send, Cas, CasReply, FrameLimits, Hello, Message, PeerRole, Ping, Register, Welcome,
    Witness,
};

/// A member's open connection to the arbiter.
pub struct ArbiterLink {
    stream: TcpStream,
    mirror: String,
    member: String,
    welcome: Welcome,
}

impl ArbiterLink {
    /// Connects to `addr` (`host:port`), waiting at most `timeout` to
    /// connect and then for each answer, and handshakes as `member` of
    /// `mirror`.
    pub fn connect(
        addr: &str,
        mirror: &str,
        member: &str,
        timeout: Duration,
    ) -> Result<ArbiterLink, ArbiterError> {
        let addrs: Vec<SocketAddr> = addr
            .to_socket_addrs()
            .map_err(|e| ArbiterError::io(format!("resolve arbiter address {addr}"), e))?
            .collect();
        let mut last = None;
        let mut stream = None;
        for a in &addrs {
            match TcpStream::connect_timeout(a, timeout) {
                Ok(s) => {
                    stream = Some(s);
                    break;
                }
                Err(e) => last = Some(e),
            }
        }
        let Some(mut stream) = stream else {
            let e = last.unwrap_or_else(|| std::io::Error::other("no address"));
            return Err(ArbiterError::io(
                format!("connect to the arbiter at {addr}"),
                e,
            ));
        };
        let ctx = |e| ArbiterError::io(format!("set up the connection to {addr}"), e);
        stream.set_nodelay(true).map_err(ctx)?;
        stream.set_read_timeout(Some(timeout)).map_err(ctx)?;
        stream.set_write_timeout(Some(timeout)).map_err(ctx)?;
        send(
            &mut stream,
            &Message::Hello(Hello::new(mirror, member, PeerRole::Member)),
        )?;
        let welcome = match recv(&mut stream, FrameLimits::CLIENT)? {
            Message::Welcome(w) => w,
            Message::Refuse(r) => {
                return Err(ArbiterError::Refused {
                    code: r.code,
                    reason: r.reason,
                })
            }
            other => {
                return Err(ArbiterError::Protocol(format!(
                    "the arbiter answered Hello with {}",
                    other.name()
                )))
            }
        };
        Ok(ArbiterLink {
            stream,
            mirror: mirror.to_string(),
            member: member.to_string(),
            welcome,
        })
    }

    /// The arbiter's answer to the handshake.
    pub fn welcome(&self) -> &Welcome {
        &self.welcome
    }

    /// Says "alive" with the mirror's QoS; returns the mirror's state.
    pub fn ping(&mut self, qos: Duration) -> Result<Option<Witness>, ArbiterError> {
        let qos_ms = u32::try_from(qos.as_millis()).unwrap_or(u32::MAX);
        let ping = Ping {
            mirror: self.mirror.clone(),
            member: self.member.clone(),
            qos_ms,
        };
        match self.call(Message::Ping(ping))? {
            Message::Pong(p) => Ok(p.state),
            other => Err(self.unexpected("Ping", &other)),
        }
    }

    /// Registers the mirror's state; see [`Registers`](super::Registers).
    pub fn register(&mut self, state: &Witness) -> Result<CasReply, ArbiterError> {
        let r = Register {
            mirror: self.mirror.clone(),
            member: self.member.clone(),
            state: state.clone(),
        };
        self.cas_reply("Register", Message::Register(r))
    }

    /// Compare-and-set; see [`Registers`](super::Registers).
    pub fn cas(
        &mut self,
        expect: &Witness,
        new: &Witness,
        require_lost: Option<&str>,
    ) -> Result<CasReply, ArbiterError> {
        let c = Cas {
            mirror: self.mirror.clone(),
            member: self.member.clone(),
            expect: expect.clone(),
            new: new.clone(),
            require_lost: require_lost.map(str::to_string),
        };
        self.cas_reply("Cas", Message::Cas(c))
    }

    fn cas_reply(&mut self, what: &str, m: Message) -> Result<CasReply, ArbiterError> {
        match self.call(m)? {
            Message::CasReply(r) => Ok(r),
            other => Err(self.unexpected(what, &other)),
        }
    }

    fn call(&mut self, m: Message) -> Result<Message, ArbiterError> {
        send(&mut self.stream, &m)?;
        Ok(recv(&mut self.stream, FrameLimits::CLIENT)?)
    }

    fn unexpected(&self, what: &str, got: &Message) -> ArbiterError {
        ArbiterError::Protocol(format!("the arbiter answered {what} with {}", got.name()))
    }
}
