//! The engine's one integration test binary; each area adds its module.

mod store;
