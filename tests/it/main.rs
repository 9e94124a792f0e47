//! The fault battery (issue #19): each scenario starts real `imx`
//! processes on a real PostgreSQL (or SQLite), injects its fault, prints
//! its figures and ends with the shared invariant checker
//! (`e2e::checker`). Sizes fit CI; `IMX_E2E_LONG=1` runs the longer
//! variants (docs/reliability.md).

mod bad_input;
mod checkpoints;
mod crash;
mod disk;
mod failpoints;
mod network;
mod pg_restart;
mod stall;
mod storm;
