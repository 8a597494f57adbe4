//! The service and operator subcommands.

pub mod actions;
pub mod list;
pub mod services;
