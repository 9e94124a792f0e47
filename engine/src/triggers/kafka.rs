//! The kafka trigger (issue #15; being built).
