//! Test support shared by every crate's tests and benchmarks, kept out of
//! the shipped libraries: canned histories of the core, and (feature
//! `store`) scratch PostgreSQL databases, the test Kafka broker, polling
//! with a deadline and the baselines benchmarks compare a store against.

pub mod histories;

#[cfg(feature = "store")]
pub mod bench;
#[cfg(feature = "store")]
pub mod kafka;
#[cfg(feature = "store")]
pub mod poll;
#[cfg(feature = "store")]
pub mod postgres;
