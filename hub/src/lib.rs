//! The redoubt node process and the `redoubt` command.

pub mod demo;
pub mod load;
pub mod shell;
