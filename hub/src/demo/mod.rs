//! `redoubt demo`: walkthroughs on a temporary folder that clean up after
//! themselves and exit non-zero if any step misbehaves.

pub mod engine;
pub mod mirror;

pub use mirror::run;
