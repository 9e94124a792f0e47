//! The engine's one integration test binary; each module tests one concern.

mod core;
mod dsl;
mod graph;
mod runtime;
mod schema;
mod template;
mod version;
