//! The [`WorkQueue`] trait: tasks leased to workers (fenced by a lease
//! token), durable timers that fire into tasks exactly once, wake-ups, and
//! the queue's size for metrics.

use std::future::Future;
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::error::Error;
use super::types::*;

/// The work queue appends fill: tasks, leases and timers.
pub trait WorkQueue: Send + Sync {
    /// Leases up to `max` ready tasks of `queue` to `worker` for `lease_ms`.
    /// A task whose lease expired is ready again.
    fn claim_tasks(
        &self,
        worker: &str,
        queue: &str,
        max: u32,
        lease_ms: u64,
    ) -> impl Future<Output = Result<Vec<ClaimedTask>, Error>> + Send;

    /// Extends a lease still held; `LeaseLost` otherwise.
    fn renew_lease(
        &self,
        task_id: TaskId,
        token: LeaseToken,
        lease_ms: u64,
    ) -> impl Future<Output = Result<Lease, Error>> + Send;

    /// Removes a task whose lease is still held, without appending events.
    fn complete_task(
        &self,
        task_id: TaskId,
        token: LeaseToken,
    ) -> impl Future<Output = Result<(), Error>> + Send;

    /// Fires up to `max` timers due at `now`, earliest first: each becomes a
    /// task (`task_id == timer_id`) exactly once, in the same transaction.
    fn due_timers(
        &self,
        now: DateTime<Utc>,
        max: u32,
    ) -> impl Future<Output = Result<Vec<FiredTimer>, Error>> + Send;

    /// Waits until new work may be ready (tasks enqueued or timers fired by
    /// any node sharing the database) or `timeout` passes. True when woken.
    /// Wake-ups are hints: always claim to find out.
    fn wait_for_work(&self, timeout: Duration) -> impl Future<Output = Result<bool, Error>> + Send;

    /// Tasks waiting in every queue (leased ones included).
    fn queue_depth(&self) -> impl Future<Output = Result<u64, Error>> + Send;

    /// Tasks whose lease ran out at `now` without being completed: a worker
    /// died or stalled, and the task waits to be claimed again.
    fn expired_leases(&self, now: DateTime<Utc>)
    -> impl Future<Output = Result<u64, Error>> + Send;
}
