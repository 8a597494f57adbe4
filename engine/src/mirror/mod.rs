//! Mirroring: the failover state machine, journal streaming between
//! members, and the member runtime.

pub mod config;
mod epoch_file;
pub mod failover;
mod link_arbiter;
mod link_peer;
mod member;
mod receiver;
pub mod seed;
mod sender;
mod serve;
pub mod status;

pub use config::{MemberConfig, MemberKind, MemberSpec};
pub use member::{Actions, Member, MemberError};
pub use status::{FollowerStatus, MemberStatus};
