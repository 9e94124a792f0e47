//! Group commit: every append this node makes goes through one committer
//! task, which writes whatever is queued (up to `Config::commit_batch_max`) in ONE
//! `append_batch` transaction and answers each caller with its own result.
//!
//! A caller alone is committed at once (a batch of one); batches form from
//! the requests that queue while a commit is in flight, so many concurrent
//! runs share one commit (one fsync) instead of paying one each.

use std::collections::{HashSet, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::{mpsc, oneshot};

use crate::store::{self, AppendRequest, Appended, EventStore};

use super::Runtime;

/// Default for `Config::commit_batch_max`: most appends written in one
/// transaction.
pub const COMMIT_BATCH_MAX: usize = 128;
/// A group commit this long is logged (a warning).
const SLOW_COMMIT: std::time::Duration = std::time::Duration::from_millis(500);
/// Most appends waiting for the committer; senders wait beyond it.
pub const COMMIT_QUEUE_MAX: usize = 4_096;
/// Most times one append is retried while the database is unavailable.
const UNAVAILABLE_RETRIES_MAX: u32 = 20;
/// Wait between those retries, in ms (doubling, capped at 2 s).
const UNAVAILABLE_BACKOFF_MS: u64 = 50;

/// Transactions and appends this node has committed through the committer:
/// `appends / transactions` is the mean batch size.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CommitCounts {
    /// `append_batch` calls (one transaction each).
    pub transactions: u64,
    /// Append requests answered by those calls.
    pub appends: u64,
    /// Append requests waiting for the committer right now.
    pub queued: u64,
}

/// What a caller learns from the committer.
enum Reply {
    /// The request's own result within the batch.
    Done(Result<Appended, store::Error>),
    /// The whole batch failed (an outage, one invalid request): append alone
    /// to learn this request's own outcome.
    Alone,
}

struct Job {
    request: AppendRequest,
    reply: oneshot::Sender<Reply>,
}

/// The node's committer: its queue (started on first use, from inside the
/// tokio runtime that uses it) and its counters.
#[derive(Debug, Default)]
pub(super) struct Committer {
    sender: Mutex<Option<mpsc::Sender<Job>>>,
    transactions: Arc<AtomicU64>,
    appends: Arc<AtomicU64>,
    queued: Arc<AtomicU64>,
}

impl std::fmt::Debug for Job {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("Job")
            .field("run_id", &self.request.run_id)
            .finish_non_exhaustive()
    }
}

impl Committer {
    pub fn counts(&self) -> CommitCounts {
        CommitCounts {
            transactions: self.transactions.load(Ordering::Relaxed),
            appends: self.appends.load(Ordering::Relaxed),
            queued: self.queued.load(Ordering::Relaxed),
        }
    }

    /// The queue, with a committer task behind it. A new task is started
    /// when there is none or the last one is gone (its tokio runtime ended).
    /// The task ends when the node (the only sender) is dropped, after
    /// answering everything queued.
    fn sender<S: EventStore>(&self, store: &Arc<S>, batch_max: usize) -> Option<mpsc::Sender<Job>> {
        let mut slot = self.sender.lock().ok()?;
        if let Some(sender) = slot.as_ref().filter(|sender| !sender.is_closed()) {
            return Some(sender.clone());
        }
        let (sender, receiver) = mpsc::channel(COMMIT_QUEUE_MAX);
        let task = CommitTask {
            store: Arc::clone(store),
            batch_max: batch_max.max(1),
            transactions: Arc::clone(&self.transactions),
            appends: Arc::clone(&self.appends),
            queued: Arc::clone(&self.queued),
        };
        tokio::spawn(task.run(receiver));
        *slot = Some(sender.clone());
        Some(sender)
    }
}

impl<S: EventStore> Runtime<S> {
    /// Appends through the committer, retrying while the database is
    /// briefly unavailable (not when its disk is full) (the append id makes a retried append idempotent,
    /// alone or in a batch: a request already written returns its events).
    pub(super) async fn append_retrying(
        &self,
        request: &AppendRequest,
    ) -> Result<Appended, store::Error> {
        let mut backoff_ms = UNAVAILABLE_BACKOFF_MS;
        for _ in 0..UNAVAILABLE_RETRIES_MAX {
            match self.timed_append(request).await {
                // A full disk is not a blip: the caller (an API request, a
                // worker whose task comes back after its lease) hears now.
                Err(error) if error.is_retryable() && !error.is_storage_full() => {
                    tokio::time::sleep(std::time::Duration::from_millis(backoff_ms)).await;
                    backoff_ms = (backoff_ms * 2).min(2_000);
                }
                other => return other,
            }
        }
        self.timed_append(request).await
    }

    /// Transactions and appends committed so far (see [`CommitCounts`]).
    pub fn commit_counts(&self) -> CommitCounts {
        self.committer.counts()
    }

    /// One append as its caller sees it (queueing included), the duration
    /// sent to [`Runtime::append_timings`].
    async fn timed_append(&self, request: &AppendRequest) -> Result<Appended, store::Error> {
        let begin = std::time::Instant::now();
        let appended = self.group_append(request).await;
        // No receiver is fine: nobody exports timings.
        let _ = self.append_timings.send(begin.elapsed());
        appended
    }

    async fn group_append(&self, request: &AppendRequest) -> Result<Appended, store::Error> {
        let batch_max = self.config.commit_batch_max;
        let Some(sender) = self.committer.sender(&self.store, batch_max) else {
            return self.store.append(request.clone()).await;
        };
        let (reply, answer) = oneshot::channel();
        let job = Job {
            request: request.clone(),
            reply,
        };
        let queued = &self.committer.queued;
        queued.fetch_add(1, Ordering::Relaxed);
        if sender.send(job).await.is_err() {
            queued.fetch_sub(1, Ordering::Relaxed);
            return self.store.append(request.clone()).await;
        }
        match answer.await {
            Ok(Reply::Done(result)) => result,
            // The committer is gone (its runtime ended) or the batch failed
            // as a whole; alone, this request gets its own outcome.
            Ok(Reply::Alone) | Err(_) => self.store.append(request.clone()).await,
        }
    }
}

/// The committer task's side.
struct CommitTask<S> {
    store: Arc<S>,
    batch_max: usize,
    transactions: Arc<AtomicU64>,
    appends: Arc<AtomicU64>,
    queued: Arc<AtomicU64>,
}

impl<S: EventStore> CommitTask<S> {
    async fn run(self, mut receiver: mpsc::Receiver<Job>) {
        let mut pending: VecDeque<Job> = VecDeque::new();
        loop {
            if pending.is_empty() {
                match receiver.recv().await {
                    Some(job) => pending.push_back(job),
                    None => return,
                }
                self.queued.fetch_sub(1, Ordering::Relaxed);
            }
            while pending.len() < self.batch_max {
                match receiver.try_recv() {
                    Ok(job) => pending.push_back(job),
                    Err(_) => break,
                }
                self.queued.fetch_sub(1, Ordering::Relaxed);
            }
            let batch = take_batch(&mut pending, self.batch_max);
            self.commit(batch).await;
        }
    }

    async fn commit(&self, batch: Vec<Job>) {
        let (requests, replies): (Vec<_>, Vec<_>) = batch
            .into_iter()
            .map(|job| (job.request, job.reply))
            .unzip();
        let size = requests.len();
        let started = std::time::Instant::now();
        let outcome = self.store.append_batch(requests).await;
        let took = started.elapsed();
        if took >= SLOW_COMMIT {
            tracing::warn!(
                appends = size,
                took_ms = took.as_millis() as u64,
                "a group commit took long: every run waiting on it waited as long"
            );
        }
        self.transactions.fetch_add(1, Ordering::Relaxed);
        self.appends.fetch_add(size as u64, Ordering::Relaxed);
        match outcome {
            Ok(results) => {
                let mut results = results.into_iter();
                for reply in replies {
                    let result = results.next().unwrap_or_else(|| {
                        Err(store::Error::corrupt("a batched append produced no result"))
                    });
                    // A caller that went away (dropped at shutdown) needs no answer.
                    let _ = reply.send(Reply::Done(result));
                }
            }
            Err(error) if size == 1 => {
                if let Some(reply) = replies.into_iter().next() {
                    let _ = reply.send(Reply::Done(Err(error)));
                }
            }
            Err(_) => {
                for reply in replies {
                    let _ = reply.send(Reply::Alone);
                }
            }
        }
    }
}

/// The next batch from the front of `queued`: at most `batch_max` requests,
/// at most one per run (the store refuses a run twice in one batch). A
/// second append of the same run waits for the next batch, where it meets
/// the first one's outcome as it would alone (a seq conflict). Two starts
/// with one idempotency key may share a batch: the store answers the
/// second with the key taken, so that start returns the existing run.
fn take_batch(queued: &mut VecDeque<Job>, batch_max: usize) -> Vec<Job> {
    let mut batch = Vec::new();
    let mut runs = HashSet::new();
    let mut later = VecDeque::new();
    while let Some(job) = queued.pop_front() {
        if batch.len() < batch_max && runs.insert(job.request.run_id) {
            batch.push(job);
        } else {
            later.push_back(job);
        }
    }
    *queued = later;
    batch
}
