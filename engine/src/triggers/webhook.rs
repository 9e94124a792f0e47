//! The webhook trigger (issue #15; being built).
