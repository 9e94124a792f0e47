//! The replay crate's integration tests.
