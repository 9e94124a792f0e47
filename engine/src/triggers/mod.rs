//! What starts runs besides an explicit start, and what follows the log.
pub mod kafka;
pub mod relay;
