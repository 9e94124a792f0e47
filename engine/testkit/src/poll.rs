//! Waiting for things in tests without sleeping for them: poll a condition
//! with a deadline, or follow a runtime's change notifications until a
//! run's state is reached (tests never sleep a fixed time and hope).

use std::time::Duration;

use engine::core::RunState;
use engine::runtime::Runtime;
use engine::store::{EventStore, RunId};

/// How often [`eventually`] and [`until`] look again.
pub const POLL_EVERY_MS: u64 = 10;
/// The longest a missed change notification delays [`run_state`]: it looks
/// again after this long even when nothing woke it.
pub const MISSED_WAKE_UP_MS: u64 = 50;

/// Polls `done` until it holds or `within` passes; whether it held.
pub async fn eventually(within: Duration, mut done: impl FnMut() -> bool) -> bool {
    let give_up = tokio::time::Instant::now() + within;
    loop {
        if done() {
            return true;
        }
        if tokio::time::Instant::now() >= give_up {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(POLL_EVERY_MS)).await;
    }
}

/// [`eventually`], failing the test (naming `what`) when `within` passes.
pub async fn until(what: &str, within: Duration, done: impl FnMut() -> bool) {
    assert!(
        eventually(within, done).await,
        "{what} did not happen within {within:?}"
    );
}

/// Polls the async `check` until it yields a value, failing the test
/// (naming `what`) when `within` passes.
pub async fn until_some<T, F, Fut>(what: &str, within: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let give_up = tokio::time::Instant::now() + within;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < give_up,
            "{what} did not happen within {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(POLL_EVERY_MS)).await;
    }
}

/// [`eventually`] for synchronous tests (polls every `every`).
pub fn eventually_blocking(
    within: Duration,
    every: Duration,
    mut done: impl FnMut() -> bool,
) -> bool {
    let give_up = std::time::Instant::now() + within;
    loop {
        if done() {
            return true;
        }
        if std::time::Instant::now() >= give_up {
            return false;
        }
        std::thread::sleep(every);
    }
}

/// Waits until the run's state satisfies `done`, woken by the runtime's
/// appends; fails the test with the run's document when `within` passes.
pub async fn run_state<S: EventStore>(
    runtime: &Runtime<S>,
    run_id: RunId,
    within: Duration,
    done: impl Fn(&RunState) -> bool,
) -> RunState {
    let mut changes = runtime.changes();
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let state = runtime.state(run_id).await.expect("read the run");
        if done(&state) {
            return state;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "run {run_id} did not get there within {within:?}: {:#}",
            state.document()
        );
        // Appends of this node wake it; the timeout covers a missed wake-up
        // and appends made by other nodes.
        let _ =
            tokio::time::timeout(Duration::from_millis(MISSED_WAKE_UP_MS), changes.recv()).await;
    }
}
