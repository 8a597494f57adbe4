//! `redoubt local`: the command language on a data directory opened in
//! this process. (The networked `redoubt shell` will speak the same
//! language to a member.)

pub mod command;
pub mod exec;
pub mod repl;
