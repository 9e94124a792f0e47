//! The pure core's one integration test binary; each module tests one concern.

// The purity guard (clippy.toml) is for the library; tests and benchmarks
// read clocks and the environment.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

mod core;
mod cron;
mod dsl;
mod graph;
mod schema;
mod template;
mod version;
