//! Waking workers when appends create work. This node's own workers are
//! woken in-process after every commit that enqueued a task. Other nodes
//! hear a NOTIFY, sent by this node at most once per `REMOTE_WAKE_INTERVAL`:
//! inside the committing statement when the interval has passed, else once
//! at the interval's end from a short statement of its own, so every commit
//! that creates work still wakes the other nodes within the interval.
//!
//! Why: a NOTIFY makes every committing transaction that sends one take a
//! database-wide lock, and a single writer's one-event transition paid ~25
//! µs (an eighth of its server time) for it; the issue measured a NOTIFY
//! per transaction halving the commit rate with several writers. Wake-ups
//! are hints (workers also poll), so bounding them per node loses nothing.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sqlx::PgPool;
use tokio::sync::Notify;

use super::WORK_CHANNEL;

/// Least time between two NOTIFYs of one node.
pub const REMOTE_WAKE_INTERVAL: Duration = Duration::from_millis(10);

/// One node's wake-ups.
#[derive(Debug, Default)]
pub(super) struct Wakes {
    /// This node's waiting workers (`wait_for_work`).
    pub(super) local: Arc<Notify>,
    remote: Arc<Mutex<Remote>>,
}

#[derive(Debug, Default)]
struct Remote {
    /// When the last NOTIFY was sent (or is being sent).
    last: Option<Instant>,
    /// A NOTIFY at the interval's end is scheduled.
    trailing: bool,
}

impl Wakes {
    /// Whether an append that creates work should send the NOTIFY itself
    /// (the interval has passed); the time is taken if so.
    pub(super) fn notify_now(&self) -> bool {
        let Ok(mut remote) = self.remote.lock() else {
            return true;
        };
        let now = Instant::now();
        if remote
            .last
            .is_some_and(|last| now.duration_since(last) < REMOTE_WAKE_INTERVAL)
        {
            return false;
        }
        remote.last = Some(now);
        true
    }

    /// After an append: `notify` is what `notify_now` said (its statement
    /// carried the NOTIFY), `created_work` whether it committed tasks (and
    /// so the NOTIFY with them).
    pub(super) fn appended(&self, pool: &PgPool, notify: bool, created_work: bool) {
        if notify && !created_work {
            // Taken for a NOTIFY that did not commit: the next one may go.
            if let Ok(mut remote) = self.remote.lock() {
                remote.last = None;
            }
        }
        if !created_work {
            return;
        }
        crate::store::wake_workers(&self.local);
        if !notify {
            self.notify_at_interval_end(pool);
        }
    }

    fn notify_at_interval_end(&self, pool: &PgPool) {
        let (last, delay) = {
            let Ok(mut remote) = self.remote.lock() else {
                return;
            };
            if remote.trailing {
                return;
            }
            remote.trailing = true;
            let now = Instant::now();
            let last = remote.last.unwrap_or(now);
            (
                last,
                (last + REMOTE_WAKE_INTERVAL).saturating_duration_since(now),
            )
        };
        let (pool, remote) = (pool.clone(), Arc::clone(&self.remote));
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            {
                let Ok(mut remote) = remote.lock() else {
                    return;
                };
                remote.trailing = false;
                // An append committed a NOTIFY meanwhile: it came after the
                // work this one is for, so it told the other nodes already.
                if remote.last.is_some_and(|sent| sent > last) {
                    return;
                }
                remote.last = Some(Instant::now());
            }
            // A lost wake-up costs the other nodes one poll interval.
            let sent = sqlx::query("SELECT pg_notify($1, '')")
                .bind(WORK_CHANNEL)
                .execute(&pool)
                .await;
            if let Err(error) = sent {
                tracing::debug!(%error, "the trailing NOTIFY was not sent");
            }
        });
    }
}
