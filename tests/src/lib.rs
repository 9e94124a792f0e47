//! The fault battery's harness: clusters of real `imx serve` processes on
//! one real PostgreSQL (or SQLite file), a real local HTTP target server
//! that records the idempotency keys of the side effects it receives, a
//! fault-injecting TCP proxy, signals (SIGKILL, SIGSTOP, SIGCONT) for the
//! nodes, and the ONE invariant checker every scenario ends with
//! (docs/reliability.md lists the invariants and the scenarios).

pub mod binary;
pub mod checker;
pub mod cluster;
pub mod database;
pub mod graphql;
pub mod load;
pub mod probe;
pub mod proxy;
pub mod random;
pub mod target;

/// How long the scenarios' longer variants run instead of the CI size:
/// `IMX_E2E_LONG=1` (docs/reliability.md, "Running the battery").
pub const LONG_ENV: &str = "IMX_E2E_LONG";

/// Whether the long variants were asked for.
pub fn long() -> bool {
    std::env::var(LONG_ENV).is_ok_and(|value| !value.is_empty() && value != "0")
}

/// The CI size, or the long one with [`LONG_ENV`].
pub fn sized<T>(ci: T, long: T) -> T {
    if self::long() { long } else { ci }
}

/// Scenarios run one at a time whatever the test threads: each starts
/// several processes and times faults, and two at once on a 2-core
/// machine would measure each other. Hold the guard for the whole test.
pub async fn one_at_a_time() -> tokio::sync::MutexGuard<'static, ()> {
    SCENARIOS.lock().await
}

/// [`one_at_a_time`] for synchronous tests.
pub fn one_at_a_time_blocking() -> tokio::sync::MutexGuard<'static, ()> {
    SCENARIOS.blocking_lock()
}

static SCENARIOS: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Prints a scenario's figures (to stdout: `scripts/test` shows them).
pub fn figures(scenario: &str, text: &str) {
    println!("e2e figures: {scenario}: {text}");
}
