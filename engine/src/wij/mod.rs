//! The write image journal.
