//! The relay trigger (issue #15; being built).
