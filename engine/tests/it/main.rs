//! The engine's one integration test binary; each area is a module.

mod core;
