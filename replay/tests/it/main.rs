//! The replay crate's one integration test binary: histories driven through
//! the core, appended to real stores, exported, verified, tampered with,
//! inspected and checked.

mod canonical;
mod check;
mod closed;
mod driver;
mod equivalence;
mod example;
mod fast;
mod reader;
mod support;
mod tamper;
