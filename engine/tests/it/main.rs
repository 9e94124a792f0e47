//! The engine's one integration test binary; each concern is a module.

mod dsl;
