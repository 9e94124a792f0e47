//! Canned histories.
