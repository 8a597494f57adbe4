//! The handshake: the first frame each way on every connection.
//!
//! The connecting side sends [`Hello`]; the accepting side answers
//! [`Welcome`] or [`Refuse`] (and then closes). Nothing else may be sent
//! before the answer. `auth` is reserved for member authentication and is
//! empty today; TLS, when it comes, will wrap the stream before the Hello.

use super::codec::{code_enum, Dec, Enc, Fields};
use super::WireError;

/// The protocol version in [`Hello::protocol`]. A member refuses a Hello
/// with another version ([`RefuseCode::VersionMismatch`]).
pub const PROTOCOL_VERSION: u16 = 1;

code_enum! {
    /// Who is connecting.
    pub enum PeerRole {
        /// An application (the Rust client, the CLI shell).
        Client = 1 => "client",
        /// Another member of the mirror, or a member talking to the arbiter.
        Member = 2 => "member",
        /// An operator tool (`redoubt list`, `switchover`, ...).
        Admin = 3 => "admin",
    }
}

code_enum! {
    /// What the answering member is now.
    pub enum MemberRole {
        Primary = 1 => "primary",
        Backup = 2 => "backup",
        Async = 3 => "async",
        /// Starting up or catching up; not yet a primary or a backup.
        Starting = 4 => "starting",
        /// A failover member that cannot safely go on (lost its peer and the
        /// arbiter) and refuses writes until it can.
        Trouble = 5 => "trouble",
        Arbiter = 6 => "arbiter",
    }
}

code_enum! {
    /// Why a Hello was refused.
    pub enum RefuseCode {
        VersionMismatch = 1 => "version mismatch",
        WrongMirror = 2 => "wrong mirror",
        UnknownMember = 3 => "unknown member",
        Other = 4 => "refused",
    }
}

/// First frame from the connecting side.
///
/// ```text
///   protocol u16 | mirror string | from string | role u8 | auth bytes
/// ```
///
/// `mirror` may be empty from a client that does not check which mirror it
/// reached (members accept it and name theirs in the Welcome); members and
/// admin tools always name it. `from` is the member name, or a client name
/// for logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hello {
    pub protocol: u16,
    pub mirror: String,
    pub from: String,
    pub role: PeerRole,
    /// Reserved for authentication; empty today.
    pub auth: Vec<u8>,
}

impl Hello {
    /// A Hello of this build's protocol version, without auth.
    pub fn new(mirror: impl Into<String>, from: impl Into<String>, role: PeerRole) -> Hello {
        Hello {
            protocol: PROTOCOL_VERSION,
            mirror: mirror.into(),
            from: from.into(),
            role,
            auth: Vec::new(),
        }
    }
}

impl Fields for Hello {
    fn put(&self, e: &mut Enc) {
        e.u16(self.protocol).str(&self.mirror).str(&self.from);
        self.role.put(e);
        e.bytes(&self.auth);
    }

    fn get(d: &mut Dec<'_>) -> Result<Self, WireError> {
        Ok(Hello {
            protocol: d.u16("protocol")?,
            mirror: d.string("mirror")?,
            from: d.string("from")?,
            role: PeerRole::get(d)?,
            auth: d.bytes("auth")?.to_vec(),
        })
    }
}

/// Accepting answer to a [`Hello`].
///
/// ```text
///   mirror string | member string | role u8 | epoch u64 | primary option<string>
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Welcome {
    /// The mirror the answering side belongs to.
    pub mirror: String,
    /// Its member name.
    pub member: String,
    pub role: MemberRole,
    /// The newest epoch it knows.
    pub epoch: u64,
    /// The client address of the current primary, if known (itself when it
    /// is the primary).
    pub primary: Option<String>,
}

impl Fields for Welcome {
    fn put(&self, e: &mut Enc) {
        e.str(&self.mirror).str(&self.member);
        self.role.put(e);
        e.u64(self.epoch).option(self.primary.as_ref(), |e, p| {
            e.str(p);
        });
    }

    fn get(d: &mut Dec<'_>) -> Result<Self, WireError> {
        Ok(Welcome {
            mirror: d.string("mirror")?,
            member: d.string("member")?,
            role: MemberRole::get(d)?,
            epoch: d.u64("epoch")?,
            primary: d.option("primary", |d| d.string("primary"))?,
        })
    }
}

/// Refusing answer to a [`Hello`]; the refusing side closes after it.
///
/// ```text
///   code u8 | reason string
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refuse {
    pub code: RefuseCode,
    /// For people: what did not match, e.g. "this is mirror M1, not M2".
    pub reason: String,
}

impl Fields for Refuse {
    fn put(&self, e: &mut Enc) {
        self.code.put(e);
        e.str(&self.reason);
    }

    fn get(d: &mut Dec<'_>) -> Result<Self, WireError> {
        Ok(Refuse {
            code: RefuseCode::get(d)?,
            reason: d.string("reason")?,
        })
    }
}
