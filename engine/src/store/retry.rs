//! Retry with capped exponential backoff for operations that failed with a
//! retryable error (the database went away, a lock race).

use std::future::Future;
use std::time::Duration;

use super::error::Error;

/// How long to keep trying. Every field is a limit; units last.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all, the first included.
    pub attempts_max: u32,
    pub backoff_initial_ms: u64,
    pub backoff_max_ms: u64,
    /// Give up once this much time has passed since the first attempt.
    pub elapsed_ms_max: u64,
}

impl Default for RetryPolicy {
    /// About half a minute of retries: long enough to ride out a database
    /// restart, short enough for a caller to report an outage.
    fn default() -> Self {
        RetryPolicy {
            attempts_max: 60,
            backoff_initial_ms: 20,
            backoff_max_ms: 1_000,
            elapsed_ms_max: 30_000,
        }
    }
}

impl RetryPolicy {
    /// The pause before attempt `attempt + 1` (attempt counts from 1):
    /// doubling from `backoff_initial_ms`, capped, with up to 50% jitter so
    /// that many nodes do not retry in lockstep.
    pub fn backoff(&self, attempt: u32) -> Duration {
        let doubled = self
            .backoff_initial_ms
            .saturating_mul(1u64 << attempt.saturating_sub(1).min(20));
        let capped = doubled.min(self.backoff_max_ms);
        // The random bits of a v7 UUID are good enough for jitter.
        let random = (uuid::Uuid::now_v7().as_u128() & 0xffff) as u64;
        let jitter = capped / 2 * random / 0xffff;
        Duration::from_millis(capped / 2 + jitter)
    }
}

/// Runs `operation` until it succeeds, fails with an error that is not
/// retryable, or the policy is exhausted (then the last error is returned).
/// Appends are safe to retry: a request whose first attempt did commit is
/// recognised by its `append_id` and returns what it wrote.
pub async fn retry<T, F, Fut>(policy: &RetryPolicy, mut operation: F) -> Result<T, Error>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, Error>>,
{
    let started = tokio::time::Instant::now();
    let mut attempt = 1;
    loop {
        match operation().await {
            Err(error) if error.is_retryable() => {
                let pause = policy.backoff(attempt);
                let elapsed = started.elapsed() + pause;
                if attempt >= policy.attempts_max
                    || elapsed.as_millis() > u128::from(policy.elapsed_ms_max)
                {
                    return Err(error);
                }
                tokio::time::sleep(pause).await;
                attempt += 1;
            }
            result => return result,
        }
    }
}
