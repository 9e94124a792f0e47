//! The SQLite store's doorbell: how an append in one process wakes the
//! waiting workers of the other processes on the same file (`imx agent`
//! beside `imx serve`), as PostgreSQL's `NOTIFY` does; without it they find
//! the work only when their `wait_for_work` times out (the poll interval).
//!
//! The doorbell is a one-byte file beside the database (`<file>-wake`).
//! An append that commits work any node may take (tasks not leased at
//! append time, fired timers) rewrites its byte; every process on the file
//! watches it (inotify on Linux, through the `notify` crate) and wakes its
//! workers when it changes. A process also sees its own rings: those come
//! within [`OWN_RING_ECHO`] of a ring it made and are ignored (its workers
//! were woken in-process already). A foreign ring in that window is ignored
//! too; its work is then found at the next poll: a doorbell only ever makes
//! work found sooner, never decides whether it is found.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use notify::{EventKind, RecursiveMode, Watcher};
use tokio::sync::Notify;

/// How long after its own ring a change of the doorbell is taken for that
/// ring's echo.
pub(super) const OWN_RING_ECHO: std::time::Duration = std::time::Duration::from_millis(2);

/// The doorbell of one SQLite file in this process.
pub(super) struct Doorbell {
    file: File,
    path: PathBuf,
    /// Microseconds from `epoch` to this process's last ring.
    rang_at: Arc<AtomicU64>,
    epoch: Instant,
    /// Watching stops when it is dropped.
    _watcher: notify::RecommendedWatcher,
}

impl std::fmt::Debug for Doorbell {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("Doorbell")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl Doorbell {
    /// Opens (creating) the doorbell of `database` and wakes `work` when
    /// another process rings it. `None` when the file system offers no
    /// watch (the store then works as without a doorbell: by polling).
    pub(super) fn open(database: &Path, work: &Arc<Notify>) -> Option<Doorbell> {
        let mut name = database.as_os_str().to_owned();
        name.push("-wake");
        let path = PathBuf::from(name);
        let opened = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path);
        let file = match opened {
            Ok(file) => file,
            Err(error) => {
                tracing::warn!(path = %path.display(), %error, "cannot open the SQLite doorbell; other processes on this file find work by polling");
                return None;
            }
        };
        let epoch = Instant::now();
        let rang_at = Arc::new(AtomicU64::new(u64::MAX));
        let watcher = {
            let (work, rang_at) = (Arc::clone(work), Arc::clone(&rang_at));
            notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
                let Ok(event) = event else { return };
                if !matches!(event.kind, EventKind::Modify(_)) {
                    return;
                }
                let own = rang_at.load(Ordering::Relaxed);
                let now = micros_since(epoch);
                if own != u64::MAX && now.saturating_sub(own) < OWN_RING_ECHO.as_micros() as u64 {
                    return;
                }
                super::super::wake_workers(&work);
            })
        };
        let watched = watcher.and_then(|mut watcher| {
            watcher.watch(&path, RecursiveMode::NonRecursive)?;
            Ok(watcher)
        });
        match watched {
            Ok(watcher) => Some(Doorbell {
                file,
                path,
                rang_at,
                epoch,
                _watcher: watcher,
            }),
            Err(error) => {
                tracing::warn!(path = %path.display(), %error, "cannot watch the SQLite doorbell; this process finds other processes' work by polling");
                None
            }
        }
    }

    /// Tells the other processes on the file that work is ready: one
    /// one-byte write (no fsync: a lost ring costs a poll interval).
    pub(super) fn ring(&self) {
        self.rang_at
            .store(micros_since(self.epoch), Ordering::Relaxed);
        if let Err(error) = self.file.write_at(b"1", 0) {
            tracing::debug!(path = %self.path.display(), %error, "ringing the SQLite doorbell failed");
        }
    }
}

fn micros_since(epoch: Instant) -> u64 {
    u64::try_from(epoch.elapsed().as_micros()).unwrap_or(u64::MAX - 1)
}
