//! OS files.
