//! What starts runs besides an explicit start, carried out by `imx serve`:
//! cron schedules, signed webhooks and Kafka consumers; and the relay that
//! publishes the event log to Kafka. Every trigger starts its run through
//! `Runtime::start_run` with an idempotency key derived from what fired
//! (the scheduled instant, the delivery id, the topic/partition/offset), so
//! a redelivery or a second node starts nothing new, and records what fired
//! in `run.started` (`TriggerContext`).

pub mod cron;
pub mod kafka;
pub mod relay;
pub mod webhook;
