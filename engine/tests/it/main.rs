//! The engine's one integration test binary; each module tests one concern.

mod core;
mod dsl;
mod executor;
mod graph;
mod kafka;
mod runtime;
mod schema;
mod store;
mod template;
mod version;
