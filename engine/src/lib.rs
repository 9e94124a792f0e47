//! The Infinity Matrix engine: the workflow model, the pure core, and (as they
//! land) the stores, executors and runtime that carry the core's effects out.
//!
//! The pure core is its own crate, `imx-core` (`engine/core/`), re-exported
//! here as [`core`]: its manifest cannot reach tokio, sqlx, reqwest or
//! rdkafka and its clippy configuration denies clocks, randomness and the
//! file system, so the compiler holds the invariant that it performs no I/O.

pub mod chain;
pub mod checkpoint;
pub mod merkle;
pub use imx_core as core;
pub mod executor;
pub mod failpoint;
pub mod runtime;
pub mod sandbox;
pub mod secrets;
pub mod store;
pub mod triggers;
