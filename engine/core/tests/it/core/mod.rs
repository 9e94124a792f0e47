//! Tests of the pure core: canned histories and their decisions, every DSL
//! rule, events and their schemas, secrets, properties and the deterministic
//! simulation.

mod context;
mod decisions;
mod driver;
mod endings;
mod events;
mod finally;
mod matrix;
mod props;
mod retry_run;
mod rules;
mod sim;
mod support;
mod surgery;
