//! The pure core: workflow model, DSL parser and validator, templates,
//! versions, events, `evolve` and `decide`.
//!
//! Nothing here performs I/O, reads a clock or draws randomness: time, run ids
//! and secrets are arguments. The runtime's loop is
//! `events = decide(..)` → append → `evolve`, see [`run::settle`].

pub mod compat;
pub mod cron;
pub mod decide;
pub mod defaults;
pub mod dsl;
pub mod effect;
pub mod event;
pub mod evolve;
mod execution;
pub mod graph;
pub mod keys;
pub mod matrix;
pub mod run;
mod schedule;
pub mod scope;
pub mod state;
pub mod surgery;
pub mod template;
pub mod version;
pub mod workflow;

pub use decide::{decide, decide_within};
pub use effect::{Decision, Effect};
pub use event::{Event, EventEnvelope};
pub use evolve::{evolve, replay};
pub use run::{Settled, Start, outstanding, settle, start_run};
pub use schedule::add_ms;
pub use scope::{Host, Secrets};
pub use state::{RunState, RunStatus, StepStatus};
