//! Local dispatch: the append that makes an attempt ready also leases its
//! task to this node (when a local worker of the task's queue has a free
//! slot), and the attempt starts as soon as the append commits: one commit
//! per step, no claim transaction, no wake-up, no poll. The lease is the
//! one a claim would give (first claim, fenced by its token, renewed while
//! the attempt runs); if this node dies, the lease expires and any node
//! claims the task, as after a claim. Tasks it cannot take (no slot, no
//! executor for the queue, the node stopping) are enqueued unleased for
//! any node, as before.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio::task::JoinSet;
use tracing::Instrument;

use crate::executor::{Attempt, Executor};
use crate::store::{ClaimedTask, EventStore, Lease, LeaseToken, NewTask, RunId, TaskLease, new_id};

use super::Runtime;
use super::queues::AttemptTask;

/// The workers of one `work_loop`: the queues it serves, its slots (shared
/// with its claims) and its running attempts (drained on shutdown).
#[derive(Debug)]
pub(super) struct LocalWorkers {
    pub queues: HashMap<String, Arc<dyn Executor>>,
    pub slots: Arc<Semaphore>,
    /// `None` once the work loop stopped and waits for what runs.
    pub running: Mutex<Option<JoinSet<()>>>,
    pub stop: watch::Receiver<bool>,
}

impl LocalWorkers {
    /// Starts `work` among the running attempts; not once the loop stopped
    /// (a task leased in that moment waits for its lease to expire, as the
    /// attempts a shutdown drops after its grace period do).
    pub fn spawn(&self, work: impl Future<Output = ()> + Send + 'static) {
        if let Ok(mut running) = self.running.lock()
            && let Some(running) = running.as_mut()
        {
            running.spawn(work);
        }
    }

    /// Forgets attempts that ended.
    pub fn reap(&self) {
        if let Ok(mut running) = self.running.lock()
            && let Some(running) = running.as_mut()
        {
            while running.try_join_next().is_some() {}
        }
    }

    /// The running attempts, for the shutdown to wait on; nothing starts after.
    pub fn take_running(&self) -> JoinSet<()> {
        self.running
            .lock()
            .ok()
            .and_then(|mut running| running.take())
            .unwrap_or_default()
    }
}

/// An attempt this node leased to itself in the append being built, with
/// the slot it runs in. Dropped unused (the append failed or conflicted),
/// it gives the slot back; its task was never written.
#[derive(Debug)]
pub(super) struct Reserved {
    task: NewTask,
    wanted: AttemptTask,
    attempt: Attempt,
    executor: Arc<dyn Executor>,
    workers: Arc<LocalWorkers>,
    permit: OwnedSemaphorePermit,
    /// When the lease was asked for: the store counts it from its own
    /// clock at the append, a little later, so the lease lasts at least
    /// until `reserved_at + lease_ms`.
    reserved_at: chrono::DateTime<chrono::Utc>,
}

impl<S: EventStore> Runtime<S> {
    pub(super) fn add_local_workers(&self, workers: &Arc<LocalWorkers>) {
        if let Ok(mut local) = self.local.lock() {
            local.push(Arc::clone(workers));
        }
    }

    pub(super) fn remove_local_workers(&self, workers: &Arc<LocalWorkers>) {
        if let Ok(mut local) = self.local.lock() {
            local.retain(|other| !Arc::ptr_eq(other, workers));
        }
    }

    /// Leases `task` (an attempt on `queue`) to this node when a local
    /// worker of its queue has a free slot; the slot is held until the
    /// attempt ends.
    pub(super) fn reserve(
        &self,
        task: &mut NewTask,
        wanted: &AttemptTask,
        attempt: Attempt,
    ) -> Option<Reserved> {
        if !self.config.local_dispatch || task.available_at.is_some() {
            return None;
        }
        let workers = self.local.lock().ok()?.iter().find_map(|workers| {
            let executor = workers.queues.get(&task.queue)?;
            Some((Arc::clone(workers), Arc::clone(executor)))
        });
        let (workers, executor) = workers?;
        if *workers.stop.borrow() {
            return None;
        }
        let permit = Arc::clone(&workers.slots).try_acquire_owned().ok()?;
        task.lease = Some(TaskLease {
            owner: self.config.node.clone(),
            token: LeaseToken(new_id()),
            lease_ms: self.config.lease_ms,
        });
        Some(Reserved {
            task: task.clone(),
            wanted: wanted.clone(),
            attempt,
            executor,
            workers,
            permit,
            reserved_at: self.now(),
        })
    }

    /// Starts the attempts whose leases the committed append took.
    pub(super) fn dispatch(&self, run_id: RunId, reserved: Vec<Reserved>) {
        let Some(runtime) = self.me.upgrade() else {
            return;
        };
        if !reserved.is_empty() {
            // This node holds leased tasks it has not started: the same
            // moment as right after a claim.
            crate::failpoint::crash_point(crate::failpoint::AFTER_CLAIM);
        }
        for reserved in reserved {
            let Reserved {
                task,
                wanted,
                attempt,
                executor,
                workers,
                permit,
                reserved_at,
            } = reserved;
            let Some(lease) = task.lease else { continue };
            let claimed = ClaimedTask {
                task_id: task.task_id,
                run_id,
                queue: task.queue,
                payload: task.payload,
                claims: 1,
                lease: Lease {
                    owner: lease.owner,
                    token: lease.token,
                    // The earliest the store's expiry can be: the attempt
                    // renews relative to it, however long the commit took.
                    expires_at: reserved_at + chrono::Duration::milliseconds(lease.lease_ms as i64),
                },
            };
            let runtime = Arc::clone(&runtime);
            let span = super::worker::task_span(&claimed);
            workers.spawn(
                async move {
                    runtime
                        .run_leased(&claimed, executor, wanted, attempt)
                        .await;
                    drop(permit);
                }
                .instrument(span),
            );
        }
    }
}
