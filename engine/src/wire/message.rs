//! [`Message`]: every message of the protocol, with its frame kind.
//!
//! ```text
//!   kind  message       direction
//!   ----  ------------  -----------------------------------------------
//!   1     Hello         connecting side → accepting side (first frame)
//!   2     Welcome       accepting side → connecting side
//!   3     Refuse        accepting side → connecting side, then close
//!   16    Request       client → member
//!   17    Response      member → client
//!   32    StreamFrom    receiving member → sending member
//!   33    Journal       sender → receiver
//!   34    Ack           receiver → sender
//!   35    Heartbeat     sender → receiver
//!   36    Handoff       old primary → backup
//!   37    History       sender → receiver
//!   38    Diverged      sender → receiver
//!   39    SeedNeeded    sender → receiver
//!   40    Status        admin or member → member (empty payload)
//!   41    StatusReply   member → asker
//!   42    PeerState     failover member ↔ failover member (heartbeat link)
//!   43    SeedRequest   seeding member → primary (empty payload)
//!   44    SeedStart     primary → seeding member
//!   45    SeedPages     primary → seeding member
//!   46    SeedDone      primary → seeding member
//!   48    Register      member → arbiter
//!   49    Cas           member → arbiter
//!   50    CasReply      arbiter → member
//!   51    Ping          member → arbiter
//!   52    Pong          arbiter → member
//! ```

use std::io::{Read, Write};

use super::arbiter::{Cas, CasReply, Ping, Pong, Register};
use super::client::{Request, Response};
use super::codec::{Dec, Enc, Fields};
use super::frame::{encode_frame, read_frame, FrameLimits};
use super::hello::{Hello, Refuse, Welcome};
use super::replication::{
    Ack, Diverged, Handoff, Heartbeat, History, JournalChunk, PeerState, SeedNeeded, StatusReply,
    StreamFrom,
};
use super::seed::{SeedDone, SeedPages, SeedStart};
use super::WireError;

/// Frame kinds.
pub mod kind {
    pub const HELLO: u8 = 1;
    pub const WELCOME: u8 = 2;
    pub const REFUSE: u8 = 3;
    pub const REQUEST: u8 = 16;
    pub const RESPONSE: u8 = 17;
    pub const STREAM_FROM: u8 = 32;
    pub const JOURNAL: u8 = 33;
    pub const ACK: u8 = 34;
    pub const HEARTBEAT: u8 = 35;
    pub const HANDOFF: u8 = 36;
    pub const HISTORY: u8 = 37;
    pub const DIVERGED: u8 = 38;
    pub const SEED_NEEDED: u8 = 39;
    pub const STATUS: u8 = 40;
    pub const STATUS_REPLY: u8 = 41;
    pub const PEER_STATE: u8 = 42;
    pub const SEED_REQUEST: u8 = 43;
    pub const SEED_START: u8 = 44;
    pub const SEED_PAGES: u8 = 45;
    pub const SEED_DONE: u8 = 46;
    pub const REGISTER: u8 = 48;
    pub const CAS: u8 = 49;
    pub const CAS_REPLY: u8 = 50;
    pub const PING: u8 = 51;
    pub const PONG: u8 = 52;

    /// Every kind in use.
    pub const ALL: &[u8] = &[
        HELLO,
        WELCOME,
        REFUSE,
        REQUEST,
        RESPONSE,
        STREAM_FROM,
        JOURNAL,
        ACK,
        HEARTBEAT,
        HANDOFF,
        HISTORY,
        DIVERGED,
        SEED_NEEDED,
        STATUS,
        STATUS_REPLY,
        PEER_STATE,
        SEED_REQUEST,
        SEED_START,
        SEED_PAGES,
        SEED_DONE,
        REGISTER,
        CAS,
        CAS_REPLY,
        PING,
        PONG,
    ];
}

/// The message name of a frame kind, `None` if no message has it.
pub fn kind_name(k: u8) -> Option<&'static str> {
    Some(match k {
        kind::HELLO => "Hello",
        kind::WELCOME => "Welcome",
        kind::REFUSE => "Refuse",
        kind::REQUEST => "Request",
        kind::RESPONSE => "Response",
        kind::STREAM_FROM => "StreamFrom",
        kind::JOURNAL => "Journal",
        kind::ACK => "Ack",
        kind::HEARTBEAT => "Heartbeat",
        kind::HANDOFF => "Handoff",
        kind::HISTORY => "History",
        kind::DIVERGED => "Diverged",
        kind::SEED_NEEDED => "SeedNeeded",
        kind::STATUS => "Status",
        kind::STATUS_REPLY => "StatusReply",
        kind::PEER_STATE => "PeerState",
        kind::SEED_REQUEST => "SeedRequest",
        kind::SEED_START => "SeedStart",
        kind::SEED_PAGES => "SeedPages",
        kind::SEED_DONE => "SeedDone",
        kind::REGISTER => "Register",
        kind::CAS => "Cas",
        kind::CAS_REPLY => "CasReply",
        kind::PING => "Ping",
        kind::PONG => "Pong",
        _ => return None,
    })
}

/// Every message of the protocol. Payload layouts are on each type.
#[derive(Debug, Clone, PartialEq)]
pub enum Message {
    Hello(Hello),
    Welcome(Welcome),
    Refuse(Refuse),
    Request(Request),
    Response(Response),
    StreamFrom(StreamFrom),
    Journal(JournalChunk),
    Ack(Ack),
    Heartbeat(Heartbeat),
    Handoff(Handoff),
    History(History),
    Diverged(Diverged),
    SeedNeeded(SeedNeeded),
    Status,
    StatusReply(StatusReply),
    PeerState(PeerState),
    SeedRequest,
    SeedStart(SeedStart),
    SeedPages(SeedPages),
    SeedDone(SeedDone),
    Register(Register),
    Cas(Cas),
    CasReply(CasReply),
    Ping(Ping),
    Pong(Pong),
}

impl Message {
    /// The frame kind.
    pub fn kind(&self) -> u8 {
        match self {
            Message::Hello(_) => kind::HELLO,
            Message::Welcome(_) => kind::WELCOME,
            Message::Refuse(_) => kind::REFUSE,
            Message::Request(_) => kind::REQUEST,
            Message::Response(_) => kind::RESPONSE,
            Message::StreamFrom(_) => kind::STREAM_FROM,
            Message::Journal(_) => kind::JOURNAL,
            Message::Ack(_) => kind::ACK,
            Message::Heartbeat(_) => kind::HEARTBEAT,
            Message::Handoff(_) => kind::HANDOFF,
            Message::History(_) => kind::HISTORY,
            Message::Diverged(_) => kind::DIVERGED,
            Message::SeedNeeded(_) => kind::SEED_NEEDED,
            Message::Status => kind::STATUS,
            Message::StatusReply(_) => kind::STATUS_REPLY,
            Message::PeerState(_) => kind::PEER_STATE,
            Message::SeedRequest => kind::SEED_REQUEST,
            Message::SeedStart(_) => kind::SEED_START,
            Message::SeedPages(_) => kind::SEED_PAGES,
            Message::SeedDone(_) => kind::SEED_DONE,
            Message::Register(_) => kind::REGISTER,
            Message::Cas(_) => kind::CAS,
            Message::CasReply(_) => kind::CAS_REPLY,
            Message::Ping(_) => kind::PING,
            Message::Pong(_) => kind::PONG,
        }
    }

    /// The message name (`"Hello"`), for logs and errors.
    pub fn name(&self) -> &'static str {
        kind_name(self.kind()).expect("every message has a named kind")
    }

    /// The frame kind and payload.
    ///
    /// # Panics
    ///
    /// If a field is longer than `u32::MAX` bytes.
    pub fn encode(&self) -> (u8, Vec<u8>) {
        let mut e = Enc::new();
        match self {
            Message::Hello(m) => m.put(&mut e),
            Message::Welcome(m) => m.put(&mut e),
            Message::Refuse(m) => m.put(&mut e),
            Message::Request(m) => m.put(&mut e),
            Message::Response(m) => m.put(&mut e),
            Message::StreamFrom(m) => m.put(&mut e),
            Message::Journal(m) => m.put(&mut e),
            Message::Ack(m) => m.put(&mut e),
            Message::Heartbeat(m) => m.put(&mut e),
            Message::Handoff(m) => m.put(&mut e),
            Message::History(m) => m.put(&mut e),
            Message::Diverged(m) => m.put(&mut e),
            Message::SeedNeeded(m) => m.put(&mut e),
            Message::Status => {}
            Message::StatusReply(m) => m.put(&mut e),
            Message::PeerState(m) => m.put(&mut e),
            Message::SeedRequest => {}
            Message::SeedStart(m) => m.put(&mut e),
            Message::SeedPages(m) => m.put(&mut e),
            Message::SeedDone(m) => m.put(&mut e),
            Message::Register(m) => m.put(&mut e),
            Message::Cas(m) => m.put(&mut e),
            Message::CasReply(m) => m.put(&mut e),
            Message::Ping(m) => m.put(&mut e),
            Message::Pong(m) => m.put(&mut e),
        }
        (self.kind(), e.buf)
    }

    /// Decodes a payload of frame kind `kind`, checking every field and
    /// that nothing follows the last one. Never panics.
    pub fn decode(kind: u8, payload: &[u8]) -> Result<Message, WireError> {
        let mut d = Dec::new(kind, payload);
        let m = match kind {
            kind::HELLO => Message::Hello(Hello::get(&mut d)?),
            kind::WELCOME => Message::Welcome(Welcome::get(&mut d)?),
            kind::REFUSE => Message::Refuse(Refuse::get(&mut d)?),
            kind::REQUEST => Message::Request(Request::get(&mut d)?),
            kind::RESPONSE => Message::Response(Response::get(&mut d)?),
            kind::STREAM_FROM => Message::StreamFrom(StreamFrom::get(&mut d)?),
            kind::JOURNAL => Message::Journal(JournalChunk::get(&mut d)?),
            kind::ACK => Message::Ack(Ack::get(&mut d)?),
            kind::HEARTBEAT => Message::Heartbeat(Heartbeat::get(&mut d)?),
            kind::HANDOFF => Message::Handoff(Handoff::get(&mut d)?),
            kind::HISTORY => Message::History(History::get(&mut d)?),
            kind::DIVERGED => Message::Diverged(Diverged::get(&mut d)?),
            kind::SEED_NEEDED => Message::SeedNeeded(SeedNeeded::get(&mut d)?),
            kind::STATUS => Message::Status,
            kind::STATUS_REPLY => Message::StatusReply(StatusReply::get(&mut d)?),
            kind::PEER_STATE => Message::PeerState(PeerState::get(&mut d)?),
            kind::SEED_REQUEST => Message::SeedRequest,
            kind::SEED_START => Message::SeedStart(SeedStart::get(&mut d)?),
            kind::SEED_PAGES => Message::SeedPages(SeedPages::get(&mut d)?),
            kind::SEED_DONE => Message::SeedDone(SeedDone::get(&mut d)?),
            kind::REGISTER => Message::Register(Register::get(&mut d)?),
            kind::CAS => Message::Cas(Cas::get(&mut d)?),
            kind::CAS_REPLY => Message::CasReply(CasReply::get(&mut d)?),
            kind::PING => Message::Ping(Ping::get(&mut d)?),
            kind::PONG => Message::Pong(Pong::get(&mut d)?),
            other => return Err(WireError::UnknownKind(other)),
        };
        d.finish()?;
        Ok(m)
    }

    /// The whole frame (header and payload) in one buffer.
    pub fn to_frame(&self) -> Result<Vec<u8>, WireError> {
        let (k, payload) = self.encode();
        encode_frame(k, &payload)
    }
}

/// Writes `msg` as one frame, in a single write, and flushes.
pub fn send<W: Write + ?Sized>(w: &mut W, msg: &Message) -> Result<(), WireError> {
    w.write_all(&msg.to_frame()?)?;
    w.flush()?;
    Ok(())
}

/// Reads one frame (see [`read_frame`]) and decodes it.
pub fn recv<R: Read + ?Sized>(r: &mut R, limits: FrameLimits) -> Result<Message, WireError> {
    let mut r = r;
    let f = read_frame(&mut r, limits)?;
    Message::decode(f.kind, &f.payload)
}
