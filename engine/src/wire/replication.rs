//! Member-to-member messages: journal streaming, acknowledgements,
//! heartbeats, planned handoff, history comparison and status.
//!
//! A receiving member (backup or async) connects to the sender (the
//! primary), handshakes, and sends [`StreamFrom`]; the sender answers with
//! [`History`] and then [`JournalChunk`]s and [`Heartbeat`]s, or with
//! [`Diverged`] / [`SeedNeeded`]. The receiver sends [`Ack`]s. Positions
//! are journal LSNs ([`crate::Lsn`] values), the same on every member.

use super::codec::{Dec, Enc, Fields};
use super::WireError;

/// Receiver → sender: stream journal from `lsn`.
///
/// ```text
///   epoch u64 | lsn u64 | crc u32
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamFrom {
    /// The newest epoch the receiver knows.
    pub epoch: u64,
    /// Where the receiver's journal ends: the first byte it wants.
    pub lsn: u64,
    /// The stored crc of the receiver's record just before `lsn` (0 when
    /// `lsn` is 0), so the sender can check the two journals continue the
    /// same chain.
    pub crc: u32,
}

impl Fields for StreamFrom {
    fn put(&self, e: &mut Enc) {
        e.u64(self.epoch).u64(self.lsn).u32(self.crc);
    }

    fn get(d: &mut Dec<'_>) -> Result<Self, WireError> {
        Ok(StreamFrom {
            epoch: d.u64("epoch")?,
            lsn: d.u64("lsn")?,
            crc: d.u32("crc")?,
        })
    }
}

/// Sender → receiver: journal bytes (the `Journal` message).
///
/// ```text
///   start u64 | bytes bytes
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JournalChunk {
    /// LSN of the first byte; always a record boundary.
    pub start: u64,
    /// Whole framed journal records, back to back, exactly as stored.
    pub bytes: Vec<u8>,
}

impl Fields for JournalChunk {
    fn put(&self, e: &mut Enc) {
        e.u64(self.start).bytes(&self.bytes);
    }

    fn get(d: &mut Dec<'_>) -> Result<Self, WireError> {
        Ok(JournalChunk {
            start: d.u64("start")?,
            bytes: d.bytes("bytes")?.to_vec(),
        })
    }
}

/// Receiver → sender: how far the receiver got.
///
/// ```text
///   received u64 | durable u64 | applied u64
/// ```
/// Invariant: `applied <= durable <= received`, all at record boundaries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ack {
    /// End of what has arrived (may not be durable yet).
    pub received: u64,
    /// End of what is durable in the receiver's journal.
    pub durable: u64,
    /// End of what has been applied to the receiver's databases.
    pub applied: u64,
}

impl Fields for Ack {
    fn put(&self, e: &mut Enc) {
        e.u64(self.received).u64(self.durable).u64(self.applied);
    }

    fn get(d: &mut Dec<'_>) -> Result<Self, WireError> {
        Ok(Ack {
            received: d.u64("received")?,
            durable: d.u64("durable")?,
            applied: d.u64("applied")?,
        })
    }
}

/// Sender → receiver, when there is nothing else to send (and at least
/// every QoS/4).
///
/// ```text
///   epoch u64 | end u64 | durable u64 | time_us u64 | active u8
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Heartbeat {
    pub epoch: u64,
    /// End of the sender's journal.
    pub end: u64,
    /// End of what is durable on the sender.
    pub durable: u64,
    /// Sender's clock, microseconds since the Unix epoch (for lag in time).
    pub time_us: u64,
    /// Whether the sender counts this receiver as its active backup.
    pub active: bool,
}

impl Fields for Heartbeat {
    fn put(&self, e: &mut Enc) {
        e.u64(self.epoch)
            .u64(self.end)
            .u64(self.durable)
            .u64(self.time_us)
            .bool(self.active);
    }

    fn get(d: &mut Dec<'_>) -> Result<Self, WireError> {
        Ok(Heartbeat {
            epoch: d.u64("epoch")?,
            end: d.u64("end")?,
            durable: d.u64("durable")?,
            time_us: d.u64("time_us")?,
            active: d.bool("active")?,
        })
    }
}

/// Old primary → active backup, on a planned switchover: "you are primary
/// at `epoch`; my journal ends at `end`".
///
/// ```text
///   epoch u64 | end u64
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Handoff {
    pub epoch: u64,
    pub end: u64,
}

impl Fields for Handoff {
    fn put(&self, e: &mut Enc) {
        e.u64(self.epoch).u64(self.end);
    }

    fn get(d: &mut Dec<'_>) -> Result<Self, WireError> {
        Ok(Handoff {
            epoch: d.u64("epoch")?,
            end: d.u64("end")?,
        })
    }
}

/// Sender → receiver: where each epoch began, so the receiver can find
/// where its own history diverges.
///
/// ```text
///   count u32 | count × (epoch u64 | start u64)
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct History {
    /// `(epoch, LSN of its first record)`, oldest first.
    pub epochs: Vec<(u64, u64)>,
}

impl Fields for History {
    fn put(&self, e: &mut Enc) {
        e.count(self.epochs.len());
        for (epoch, start) in &self.epochs {
            e.u64(*epoch).u64(*start);
        }
    }

    fn get(d: &mut Dec<'_>) -> Result<Self, WireError> {
        let n = d.count("epochs", 16)?;
        let mut epochs = Vec::with_capacity(n as usize);
        for _ in 0..n {
            epochs.push((d.u64("epoch")?, d.u64("start")?));
        }
        Ok(History { epochs })
    }
}

/// Sender → receiver: the receiver's journal is not a prefix of the
/// sender's; the histories agree up to `common`.
///
/// ```text
///   common u64 | reason string
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diverged {
    pub common: u64,
    pub reason: String,
}

impl Fields for Diverged {
    fn put(&self, e: &mut Enc) {
        e.u64(self.common).str(&self.reason);
    }

    fn get(d: &mut Dec<'_>) -> Result<Self, WireError> {
        Ok(Diverged {
            common: d.u64("common")?,
            reason: d.string("reason")?,
        })
    }
}

/// Sender → receiver: the sender cannot stream from where the receiver
/// asked (purged, or the receiver has nothing); the receiver must seed.
///
/// ```text
///   reason string
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeedNeeded {
    pub reason: String,
}

impl Fields for SeedNeeded {
    fn put(&self, e: &mut Enc) {
        e.str(&self.reason);
    }

    fn get(d: &mut Dec<'_>) -> Result<Self, WireError> {
        Ok(SeedNeeded {
            reason: d.string("reason")?,
        })
    }
}

/// Answer to `Status` (which has an empty payload): the member's status as
/// JSON, for `redoubt list`.
///
/// ```text
///   json string
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusReply {
    pub json: String,
}

impl Fields for StatusReply {
    fn put(&self, e: &mut Enc) {
        e.str(&self.json);
    }

    fn get(d: &mut Dec<'_>) -> Result<Self, WireError> {
        Ok(StatusReply {
            json: d.string("json")?,
        })
    }
}

/// Failover member ↔ failover member, every QoS/4 on the heartbeat link:
/// what the sender is, so a starting member can decide its role and a
/// silent or closed link means the peer is gone.
///
/// ```text
///   epoch u64 | primary bool | end u64
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerState {
    /// The newest epoch the sender knows.
    pub epoch: u64,
    /// Whether the sender is the primary (of `epoch`).
    pub primary: bool,
    /// End of the sender's journal.
    pub end: u64,
}

impl Fields for PeerState {
    fn put(&self, e: &mut Enc) {
        e.u64(self.epoch).bool(self.primary).u64(self.end);
    }

    fn get(d: &mut Dec<'_>) -> Result<Self, WireError> {
        Ok(PeerState {
            epoch: d.u64("epoch")?,
            primary: d.bool("primary")?,
            end: d.u64("end")?,
        })
    }
}
