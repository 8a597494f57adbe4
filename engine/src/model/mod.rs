//! Global keys and values.
