//! The cron trigger (issue #15; being built).
