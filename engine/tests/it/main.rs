//! The engine's one integration test binary; each module tests one concern.

mod cron;
mod executor;
mod kafka;
mod merkle;
mod runtime;
mod store;
mod webhook;

/// A path in the repository, from its root.
pub(crate) fn repo_path(relative: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(relative)
}
