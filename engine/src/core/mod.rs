//! The pure core: workflow model, DSL parsing and validation, templates,
//! versions, and (as it lands) events, `evolve` and `decide`.
//!
//! Nothing here performs I/O, reads a clock or draws randomness.

pub mod dsl;
pub mod graph;
pub mod template;
pub mod version;
pub mod workflow;
