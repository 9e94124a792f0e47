//! The engine's one integration test binary; each module tests one concern.

mod dsl;
mod graph;
mod schema;
mod template;
mod version;
