//! The redoubt node process and the `redoubt` command.

pub mod admin;
pub mod allocator;
pub mod cluster;
pub mod cmd;
pub mod config;
pub mod demo;
pub mod load;
pub mod shell;
