//! [`ClientOptions`] and [`Target`].

use std::time::Duration;

use crate::wire::FrameLimits;

/// Which member a client wants, like libpq's `target_session_attrs`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Target {
    /// The primary (`read-write`): the client follows `Welcome.primary` and
    /// `RemoteError.primary` hints to it, and after a failover finds the
    /// new one. Reads go to the primary too.
    #[default]
    Primary,
    /// The first address that answers, whatever its role (`any`): reads
    /// on a backup or async member; writes there fail with a read-only
    /// error naming the primary, and are not redirected.
    Any,
}

/// How a [`Client`](super::Client) connects.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// The client's name, sent in the Hello (for the member's logs).
    pub name: String,
    /// The mirror the client expects; `None` accepts any. A member of
    /// another mirror is skipped (and refuses the Hello).
    pub mirror: Option<String>,
    /// Limit on establishing one TCP connection.
    pub connect_timeout: Duration,
    /// Limit on waiting for one answer (a `lock` adds its own timeout).
    /// A write whose answer does not come in time is
    /// [`OutcomeUnknown`](super::ClientError::OutcomeUnknown).
    pub io_timeout: Duration,
    pub target: Target,
    /// How long to keep looking when no address is (yet) the primary, e.g.
    /// during a failover; zero tries each address once.
    pub primary_wait: Duration,
    /// Largest frame sent or accepted.
    pub limits: FrameLimits,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            name: "redoubt-client".into(),
            mirror: None,
            connect_timeout: Duration::from_secs(5),
            io_timeout: Duration::from_secs(30),
            target: Target::Primary,
            primary_wait: Duration::ZERO,
            limits: FrameLimits::CLIENT,
        }
    }
}
