//! The service and operator subcommands.

pub mod list;
pub mod services;
