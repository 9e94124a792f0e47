//! The node's loops: workers that claim tasks with a lease (bounded by
//! `workers`), the timer loop that turns due timers into tasks, recovery of
//! unfinished runs on start, and graceful shutdown.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;
use tracing::Instrument;
use tracing::field::Empty;

use crate::executor::Executor;
use crate::store::{ClaimedTask, EventStore, RunQuery};

use super::local::LocalWorkers;
use super::queues::{AttemptTask, TIMER_QUEUE, TimerTask};
use super::{Error, Runtime};

/// Most tasks claimed in one call.
const CLAIM_BATCH_MAX: u32 = 32;
/// Most due timers fired in one call.
const TIMER_BATCH_MAX: u32 = 256;
/// Runs listed per page while resuming.
const RESUME_PAGE_MAX: u32 = 500;

/// A started node: stop it with [`RuntimeHandle::shutdown`].
#[derive(Debug)]
pub struct RuntimeHandle {
    stop: watch::Sender<bool>,
    loops: JoinSet<()>,
}

impl RuntimeHandle {
    /// Stops claiming, lets running attempts finish within the grace period
    /// (then drops them: their leases expire and another node takes them).
    pub async fn shutdown(mut self) {
        let _ = self.stop.send(true);
        while self.loops.join_next().await.is_some() {}
    }
}

impl<S: EventStore> Runtime<S> {
    /// Resumes every unfinished run (unless `resume_on_start` is off), then
    /// runs the timer loop and workers for the kinds this node has executors for.
    pub async fn start(self: &Arc<Self>) -> Result<RuntimeHandle, Error> {
        if self.config.resume_on_start {
            self.resume().await?;
        }
        let queues: HashMap<String, Arc<dyn Executor>> = self.executors.clone();
        let mut handle = self.spawn_workers(queues);
        let (runtime, stop) = (Arc::clone(self), handle.stop.subscribe());
        handle
            .loops
            .spawn(async move { runtime.timer_loop(stop).await });
        Ok(handle)
    }

    /// Workers for one agent queue only (`imx agent`): no timers, no resume.
    pub fn start_agent(
        self: &Arc<Self>,
        queue: String,
        executor: Arc<dyn Executor>,
    ) -> RuntimeHandle {
        self.spawn_workers(HashMap::from([(queue, executor)]))
    }

    fn spawn_workers(
        self: &Arc<Self>,
        queues: HashMap<String, Arc<dyn Executor>>,
    ) -> RuntimeHandle {
        let (stop, receiver) = watch::channel(false);
        let mut loops = JoinSet::new();
        let runtime = Arc::clone(self);
        loops.spawn(async move { runtime.work_loop(queues, receiver).await });
        RuntimeHandle { stop, loops }
    }

    /// Re-issues what every unfinished run still waits on that is not in the
    /// store already (tasks and timers are durable with their events): child
    /// runs to start or to report, and a settle in case decisions were owed.
    pub async fn resume(&self) -> Result<usize, Error> {
        let mut resumed = 0;
        for status in ["running", "waiting", "paused", "pending"] {
            let mut query = RunQuery {
                status: Some(status.to_owned()),
                limit: RESUME_PAGE_MAX,
                ..RunQuery::default()
            };
            loop {
                let page = self.store.list_runs(&query).await?;
                for run in &page.items {
                    self.recover_run(run.row.run_id).await;
                    resumed += 1;
                }
                match page.next {
                    Some(next) => query.after = Some(next),
                    None => break,
                }
            }
        }
        Ok(resumed)
    }

    async fn recover_run(&self, run_id: crate::store::RunId) {
        self.reconcile(run_id).await;
        let result = self.advance(run_id, |_, _| Ok(Vec::new()), None).await;
        if let Err(error) = result {
            tracing::warn!(run_id = %run_id, %error, "cannot resume the run");
        }
    }

    async fn timer_loop(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        let poll = Duration::from_millis(self.config.poll_ms.max(1));
        while !*stop.borrow() {
            self.retry_follow_ups().await;
            match self.store.due_timers(self.now(), TIMER_BATCH_MAX).await {
                Ok(fired) if fired.len() as u32 == TIMER_BATCH_MAX => continue,
                Ok(_) => {}
                Err(error) => tracing::warn!(%error, "firing due timers failed; retrying"),
            }
            tokio::select! {
                _ = tokio::time::sleep(poll) => {}
                _ = stop.changed() => {}
            }
        }
    }

    async fn work_loop(
        self: Arc<Self>,
        queues: HashMap<String, Arc<dyn Executor>>,
        mut stop: watch::Receiver<bool>,
    ) {
        let slots = Arc::new(Semaphore::new(self.config.workers.max(1)));
        let mut names: Vec<String> = queues.keys().cloned().collect();
        names.push(TIMER_QUEUE.to_owned());
        let local = Arc::new(LocalWorkers {
            queues: queues.clone(),
            slots: Arc::clone(&slots),
            running: Mutex::new(Some(JoinSet::new())),
            stop: stop.clone(),
        });
        self.add_local_workers(&local);
        let poll = Duration::from_millis(self.config.poll_ms.max(1));
        while !*stop.borrow() {
            local.reap();
            let mut claimed_any = false;
            for queue in &names {
                let free = slots.available_permits() as u32;
                if free == 0 {
                    break;
                }
                // Slots first, then the claim: appends take slots too
                // (local dispatch), and a claimed task without a slot would
                // wait for its lease to expire.
                let wanted = free.min(CLAIM_BATCH_MAX);
                let Ok(mut permits) = Arc::clone(&slots).try_acquire_many_owned(wanted) else {
                    continue;
                };
                let claimed = self
                    .store
                    .claim_tasks(&self.config.node, queue, wanted, self.config.lease_ms)
                    .await;
                let tasks = match claimed {
                    Ok(tasks) => tasks,
                    Err(error) => {
                        tracing::warn!(%queue, %error, "claiming tasks failed; retrying");
                        continue;
                    }
                };
                claimed_any |= !tasks.is_empty();
                if !tasks.is_empty() {
                    crate::failpoint::crash_point(crate::failpoint::AFTER_CLAIM);
                }
                for task in tasks {
                    // The claim returned at most `wanted` tasks.
                    let Some(permit) = permits.split(1) else {
                        break;
                    };
                    let runtime = Arc::clone(&self);
                    let executor = queues.get(queue).cloned();
                    let stop = stop.clone();
                    let span = task_span(&task);
                    local.spawn(
                        async move {
                            runtime.handle_task(task, executor, stop).await;
                            drop(permit);
                        }
                        .instrument(span),
                    );
                }
            }
            if claimed_any {
                continue;
            }
            tokio::select! {
                woken = self.store.wait_for_work(poll) => {
                    // The database is away: do not spin on it.
                    if woken.is_err() {
                        tokio::time::sleep(poll).await;
                    }
                }
                _ = stop.changed() => {}
                _ = slots.acquire(), if slots.available_permits() == 0 => {}
            }
        }
        // Appends lease no more attempts to these workers.
        self.remove_local_workers(&local);
        let mut running = local.take_running();
        let grace = Duration::from_millis(self.config.shutdown_grace_ms);
        let drained = tokio::time::timeout(grace, async {
            while running.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            // Dropped attempts keep their tasks; the leases expire and
            // another node (or this one, restarted) runs them again.
            running.shutdown().await;
        }
    }

    async fn handle_task(
        &self,
        task: ClaimedTask,
        executor: Option<Arc<dyn Executor>>,
        stop: watch::Receiver<bool>,
    ) {
        let result = match (task.queue.as_str(), executor) {
            (TIMER_QUEUE, _) => self.fire_timer(&task).await,
            (_, Some(executor)) => self.execute_task(&task, executor, stop).await,
            (_, None) => {
                tracing::warn!("no executor on this node for the task's queue");
                Ok(())
            }
        };
        if let Err(error) = result {
            // The task stays; its lease expires and it is tried again.
            tracing::warn!(%error, "the task failed; it is tried again when its lease expires");
        }
    }
}

/// The span every log line about one task is in: the run always; the step,
/// item and attempt whenever the task concerns a step (an attempt, a
/// `sleep` ending, a step's retry or timeout timer).
pub(super) fn task_span(task: &ClaimedTask) -> tracing::Span {
    // A root span: an attempt started by the append of the one before
    // (local dispatch) is not a child of it, or spans would nest a level
    // deeper with every step of a chain.
    let span = tracing::info_span!(
        parent: None,
        "task",
        run_id = %task.run_id,
        task_id = %task.task_id,
        queue = %task.queue,
        step = Empty,
        index = Empty,
        attempt = Empty,
        timer = Empty,
    );
    let step = if task.queue == TIMER_QUEUE {
        match serde_json::from_value::<TimerTask>(task.payload.clone()) {
            Ok(TimerTask::Sleep {
                step,
                index,
                attempt,
                ..
            }) => Some((step, index, attempt)),
            Ok(TimerTask::Core { timer }) => {
                span.record("timer", timer.as_str());
                step_of_timer(&timer)
            }
            Ok(TimerTask::Continue) | Err(_) => None,
        }
    } else {
        serde_json::from_value::<AttemptTask>(task.payload.clone())
            .ok()
            .map(|wanted| (wanted.step, wanted.index, wanted.attempt))
    };
    if let Some((step, index, attempt)) = step {
        span.record("step", step.as_str());
        if let Some(index) = index {
            span.record("index", index);
        }
        span.record("attempt", attempt);
    }
    span
}

/// (step, index, attempt) of a core timer named
/// `timeout|retry/<step>[/<index>]/<attempt>` (see `core::keys`).
fn step_of_timer(timer: &str) -> Option<(String, Option<u32>, u32)> {
    let mut parts = timer.split('/');
    let (Some("timeout" | "retry"), Some(step)) = (parts.next(), parts.next()) else {
        return None;
    };
    let rest: Vec<u32> = parts.map(str::parse).collect::<Result<_, _>>().ok()?;
    match rest[..] {
        [attempt] => Some((step.to_owned(), None, attempt)),
        [index, attempt] => Some((step.to_owned(), Some(index), attempt)),
        _ => None,
    }
}
