//! Mirroring: the failover state machine, journal streaming between
//! members, and the member runtime.

pub mod failover;
