//! The Infinity Matrix engine: the workflow model, the pure core, and (as they
//! land) the stores, executors and runtime that carry the core's effects out.
//!
//! Architecture invariant: everything under [`core`] is pure. It performs no
//! I/O and reads no clock or randomness; time and ids are arguments.

pub mod bench;
pub mod chain;
pub mod core;
pub mod executor;
pub mod runtime;
pub mod sandbox;
pub mod secrets;
pub mod store;
